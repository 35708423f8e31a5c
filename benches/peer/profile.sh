#!/usr/bin/env bash
# Where one collabd node's CPU goes under the peer benchmark's shape: three
# nodes on one Redis (deploy/local-cluster.sh), `collabd load` with 1,000
# agents in 10 portals at RATE invitations/s, and `perf record` of node 1
# (or of the generator, WHO=generator) for SECONDS_PROFILED in the middle of
# the run. Writes the folded stacks and a flamegraph (inferno) to $OUT.
#
#   benches/peer/profile.sh                   # node 1 at 200 inv/s
#   RATE=500 benches/peer/profile.sh
#   WHO=generator benches/peer/profile.sh     # the load generator itself
#
# Needs perf (Debian's linux-perf) and inferno (`cargo install inferno`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RATE="${RATE:-200}"
WHO="${WHO:-node}"
SECONDS_PROFILED="${SECONDS_PROFILED:-10}"
OUT="${OUT:-$ROOT/target/peer}"
BIN="${BIN:-$ROOT/target/release/collabd}"
WORK="$(mktemp -d /tmp/collabd-profile.XXXXXX)"
mkdir -p "$OUT"
trap 'STATE_DIR="$WORK/state" "$ROOT/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

token="peer-profile-admin-token-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ports="$(free_port) $(free_port) $(free_port)"
nodes=""
for port in $ports; do nodes="${nodes:+$nodes,}http://127.0.0.1:$port"; done
STATE_DIR="$WORK/state" NODE_PORTS="$ports" REDIS_PORT="$(free_port)" ADMIN_TOKEN="$token" \
    COLLABD_BIN="$BIN" LOG_LEVEL=warn "$ROOT/deploy/local-cluster.sh" start >/dev/null
pids="$(cat "$WORK"/state/node-*.pid | paste -sd,)"
node1="$(cut -d, -f2 <<<"$pids")"
sessions=$(( RATE / 4 > 50 ? RATE / 4 : 50 ))

"$BIN" load --nodes "$nodes" --admin-token "$token" --agents 1000 --portals 10 \
    --sessions "$sessions" --rate "$RATE" --duration "$(( SECONDS_PROFILED + 10 ))s" \
    --node-pids "$pids" --report "$OUT/profile-load-$RATE.json" >"$OUT/profile-load-$RATE.txt" &
load=$!
# The set-up (1,000 agents and their tokens) takes about 10 s; then 5 s in.
for _ in $(seq 1 600); do
    if curl -s "http://127.0.0.1:$(cut -d' ' -f2 <<<"$ports")/metrics" |
        grep -q '^collabd_invitations_sent_total [1-9]'; then
        break
    fi
    sleep 0.5
done
sleep 5
case "$WHO" in
    node) target="$node1" name="profile-$RATE" title="collabd node" ;;
    generator) target="$load" name="profile-generator-$RATE" title="collabd load (the generator)" ;;
    *) echo "WHO is node or generator, not $WHO" >&2; exit 2 ;;
esac
perf record -e cpu-clock -F 999 --call-graph dwarf,32768 -p "$target" -o "$WORK/perf.data" \
    -- sleep "$SECONDS_PROFILED" 2>"$WORK/perf.log"
wait "$load" || true
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$OUT/$name.folded"
inferno-flamegraph --minwidth 0.5 --title "$title at $RATE inv/s (1,000 agents, 10 portals)" \
    <"$OUT/$name.folded" >"$OUT/$name.svg"
echo "$OUT/$name.svg"
