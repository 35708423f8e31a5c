#!/usr/bin/env bash
# How the work spreads over Redis Cluster masters (issue #20): the same run
# twice in a row, on one Redis and on a 3 + 3 Redis Cluster
# (deploy/local-cluster.sh, AOF on, as shipped), `collabd load` with
# ACCOUNTS accounts. Before and after each run it reads every Redis's
# `INFO commandstats` (calls, summed) and `INFO cpu` (used_cpu_user +
# used_cpu_sys), and prints per-master commands, their spread from the
# mean, and Redis CPU per invitation on each side. Writes shards.md and the
# load reports to $OUT.
#
#   benches/peer/shards.sh                  # 30 accounts, 200 inv/s, 20 s
#   ACCOUNTS=1 benches/peer/shards.sh       # one account: one master does it all
#
# Environment (all optional): ACCOUNTS (30), RATE (200), DURATION (20s),
# AGENTS (1000), PORTALS (30, at least ACCOUNTS), SESSIONS (50),
# IDLE_SECONDS (10: how long each side's idle Redis CPU is measured first),
# OUT (target/peer), BIN (target/release/collabd).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ACCOUNTS="${ACCOUNTS:-30}"
RATE="${RATE:-200}"
DURATION="${DURATION:-20s}"
AGENTS="${AGENTS:-1000}"
PORTALS="${PORTALS:-30}"
SESSIONS="${SESSIONS:-50}"
IDLE_SECONDS="${IDLE_SECONDS:-10}"
OUT="${OUT:-$ROOT/target/peer}"
BIN="${BIN:-$ROOT/target/release/collabd}"
WORK="$(mktemp -d /tmp/collabd-shards.XXXXXX)"
mkdir -p "$OUT"
trap 'STATE_DIR="$WORK/state" "$ROOT/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

if (( PORTALS < ACCOUNTS )); then
    echo "PORTALS ($PORTALS) must be at least ACCOUNTS ($ACCOUNTS): every account needs a portal" >&2
    exit 2
fi

# A free port whose cluster bus port (+10000) is free too, below 55535.
free_port() {
    python3 - <<'PY'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); port = a.getsockname()[1]
    if port >= 55535:
        a.close(); continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 10000))
    except OSError:
        a.close(); continue
    b.close(); a.close(); print(port); break
PY
}

# "<commands> <cpu seconds> <role>" of the Redis on port $1.
redis_reading() {
    local info
    info="$(redis-cli -p "$1" INFO all)"
    awk -F'[:,=]' '
        /^cmdstat_/ { calls += $3 }
        /^used_cpu_user:/ { cpu += $2 }
        /^used_cpu_sys:/ { cpu += $2 }
        /^role:/ { role = $2 }
        END { gsub(/\r/, "", role); printf "%d %.3f %s\n", calls, cpu, role }
    ' <<<"$info"
}

# One run: $1 = single | cluster. Prints one line per Redis:
# "<port> <role> <commands> <cpu seconds> <idle cpu seconds over as long>
# <accounts held>",
# then "invitations <n>".
run_side() {
    local side=$1 token ports="" nodes="" redis_ports
    token="peer-shards-admin-token-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    for _ in 1 2 3; do ports="$ports $(free_port)"; done
    for port in $ports; do nodes="${nodes:+$nodes,}http://127.0.0.1:$port"; done
    rm -rf "$WORK/state"
    if [[ "$side" == cluster ]]; then
        redis_ports=""
        for _ in 1 2 3 4 5 6; do redis_ports="$redis_ports $(free_port)"; done
        STATE_DIR="$WORK/state" NODE_PORTS="${ports# }" REDIS_CLUSTER_PORTS="${redis_ports# }" \
            ADMIN_TOKEN="$token" COLLABD_BIN="$BIN" LOG_LEVEL=warn \
            "$ROOT/deploy/local-cluster.sh" start --redis-cluster >"$WORK/start.log"
    else
        redis_ports="$(free_port)"
        STATE_DIR="$WORK/state" NODE_PORTS="${ports# }" REDIS_PORT="$redis_ports" \
            ADMIN_TOKEN="$token" COLLABD_BIN="$BIN" LOG_LEVEL=warn \
            "$ROOT/deploy/local-cluster.sh" start >"$WORK/start.log"
    fi
    local pids
    pids="$(cat "$WORK"/state/node-*.pid | paste -sd,)"
    declare -A before idle
    # What the Redis processes spend with no traffic at all (cron, and on a
    # cluster the bus's gossip), over IDLE_SECONDS, so it can be told apart.
    for p in $redis_ports; do idle[$p]="$(redis_reading "$p")"; done
    sleep "$IDLE_SECONDS"
    for p in $redis_ports; do before[$p]="$(redis_reading "$p")"; done
    local started
    started="$(date +%s.%N)"
    "$BIN" load --nodes "$nodes" --admin-token "$token" --agents "$AGENTS" \
        --portals "$PORTALS" --accounts "$ACCOUNTS" --sessions "$SESSIONS" --rate "$RATE" \
        --duration "$DURATION" --node-pids "$pids" --report "$OUT/shards-$side.json" \
        >"$OUT/shards-$side.txt"
    for p in $redis_ports; do
        redis-cli -p "$p" INFO commandstats | tr -d '\r' >"$OUT/shards-$side-$p.commandstats"
    done
    local elapsed
    elapsed="$(python3 -c "import time; print(round(time.time() - $started, 3))")"
    for p in $redis_ports; do
        read -r _ i0 _ <<<"${idle[$p]}"
        read -r c0 u0 _ <<<"${before[$p]}"
        read -r c1 u1 role <<<"$(redis_reading "$p")"
        # Idle CPU per second, scaled to the run's length.
        # The run's accounts whose keys this Redis holds (its slots').
        held="$(redis-cli -p "$p" --scan --pattern 'collabd:*:account' | wc -l)"
        echo "$p $role $((c1 - c0)) $(python3 -c "print(round($u1 - $u0, 3), round(($u0 - $i0) / $IDLE_SECONDS * $elapsed, 3))") $held"
    done
    echo "invitations $(python3 -c "import json; print(json.load(open('$OUT/shards-$side.json'))['invitations'])")"
    STATE_DIR="$WORK/state" "$ROOT/deploy/local-cluster.sh" stop >/dev/null
}

# Both sides count everything from before the load's set-up (agents,
# tokens) to after its drain: the same work on each side.
run_side single >"$WORK/single.txt"
run_side cluster >"$WORK/cluster.txt"

python3 - "$WORK/single.txt" "$WORK/cluster.txt" "$ACCOUNTS" "$RATE" "$DURATION" >"$OUT/shards.md" <<'PY'
import sys

def load(path):
    redis, invitations = [], 0
    for line in open(path):
        parts = line.split()
        if parts[0] == "invitations":
            invitations = int(parts[1])
        else:
            redis.append((int(parts[0]), parts[1], int(parts[2]), float(parts[3]), float(parts[4]), int(parts[5])))
    return redis, invitations

single, single_inv = load(sys.argv[1])
cluster, cluster_inv = load(sys.argv[2])
accounts, rate, duration = sys.argv[3:6]
masters = [r for r in cluster if r[1] == "master"]
mean = sum(r[2] for r in masters) / len(masters)
print(f"{accounts} accounts, {rate} inv/s for {duration}; commands and CPU from before the set-up to after the drain.\n")
print("| Redis | role | accounts | commands | vs mean of masters | CPU s | of it idle |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for port, role, calls, cpu, idle, held in [("one Redis",) + single[0][1:]] + sorted(cluster, key=lambda r: (r[1] != "master", r[0])):
    spread = f"{100 * (calls - mean) / mean:+.1f} %" if role == "master" and port != "one Redis" else ""
    print(f"| {port} | {role} | {held} | {calls:,} | {spread} | {cpu:.2f} | {idle:.2f} |")
s_calls, s_cpu, s_idle = single[0][2], single[0][3], single[0][4]
m_cpu = sum(r[3] for r in masters)
m_idle = sum(r[4] for r in masters)
all_cpu = sum(r[3] for r in cluster)
worst = max(abs(r[2] - mean) / mean for r in masters)
per = lambda cpu, n: 1e6 * cpu / n
print()
print(f"- Masters' commands: widest spread from their mean {100 * worst:.1f} % (aim: within ±25 %).")
print(f"- Commands: one Redis {s_calls:,}; the masters together {sum(r[2] for r in masters):,}.")
print(f"- Redis CPU per invitation: one Redis {per(s_cpu, single_inv):.0f} µs ({single_inv:,} invitations); "
      f"the cluster's masters {per(m_cpu, cluster_inv):.0f} µs "
      f"({per(m_cpu, cluster_inv) / per(s_cpu, single_inv):.2f}×, aim ≤ 1.2×); "
      f"all six {per(all_cpu, cluster_inv):.0f} µs ({cluster_inv:,} invitations).")
print(f"- Less what each spends idle over as long: one Redis {per(s_cpu - s_idle, single_inv):.0f} µs, "
      f"the masters {per(m_cpu - m_idle, cluster_inv):.0f} µs "
      f"({per(m_cpu - m_idle, cluster_inv) / per(s_cpu - s_idle, single_inv):.2f}×).")
PY
cat "$OUT/shards.md"
