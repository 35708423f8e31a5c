#!/usr/bin/env bash
# collabd against nginx + nchan on the same shape, same machine, same sitting
# (issue #20): 3 nodes of each on one Redis each, 1,000 listeners in 10
# groups (≈100 per message), 1 KB messages, 20 s per rate. Writes one JSON
# report per side and rate and a Markdown table (table.md) to $OUT.
#
#   benches/peer/run.sh            # both sides, RATES
#   SIDES=nchan benches/peer/run.sh
#
# Environment (all optional):
#   RATES      messages (invitations) per second; default "100 200 300 500 800 1000"
#   DURATION   sending time per rate; default 20s
#   SIDES      "nchan collabd" (default), or one of them
#   OUT        where reports go; default target/peer
#   BIN        collabd binary; default target/release/collabd (built if missing)
#   SESSIONS   collabd sessions; default max(50, rate / 4), so each session
#              takes 4 invitations per second whatever the rate (room for
#              every winner to join and leave: `session_full` stays a rule
#              that is measured, not the run's ceiling)
#   WORKERS    nginx worker processes per node; default 2 (collabd's
#              http.workers default: one per core)
#
# nchan: Debian's nginx-light + libnginx-mod-nchan (installed with apt-get
# when missing and this runs as root). Its Redis is started here without
# persistence; collabd's is deploy/local-cluster.sh's (AOF on, as shipped).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RATES="${RATES:-100 200 300 500 800 1000}"
DURATION="${DURATION:-20s}"
SIDES="${SIDES:-nchan collabd}"
OUT="${OUT:-$ROOT/target/peer}"
BIN="${BIN:-$ROOT/target/release/collabd}"
WORKERS="${WORKERS:-2}"
WORK="$(mktemp -d /tmp/collabd-peer.XXXXXX)"
mkdir -p "$OUT"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

PIDS_TO_KILL=()
cleanup() {
    for pid in "${PIDS_TO_KILL[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -f "$WORK/collabd/cluster.env" ]]; then
        STATE_DIR="$WORK/collabd" "$ROOT/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ ! -x "$BIN" ]]; then
    (cd "$ROOT" && cargo build --release --locked)
fi

run_nchan() {
    if [[ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]]; then
        if [[ "$(id -u)" == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                nginx-light libnginx-mod-nchan >/dev/null
        else
            echo "nchan missing: apt-get install nginx-light libnginx-mod-nchan" >&2
            return 1
        fi
    fi
    local redis_port nodes="" pids=""
    redis_port="$(free_port)"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no >"$WORK/nchan-redis.log" 2>&1 &
    PIDS_TO_KILL+=("$!")
    wait_port "$redis_port"
    for i in 0 1 2; do
        local port prefix="$WORK/nchan-$i"
        port="$(free_port)"
        mkdir -p "$prefix"
        sed -e "s|@PORT@|$port|; s|@REDIS_PORT@|$redis_port|; s|@PREFIX@|$prefix|g; s|@WORKERS@|$WORKERS|" \
            "$ROOT/benches/peer/nginx.conf.in" >"$prefix/nginx.conf"
        nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log"
        wait_port "$port"
        local master
        master="$(cat "$prefix/nginx.pid")"
        PIDS_TO_KILL+=("$master")
        nodes="${nodes:+$nodes,}http://127.0.0.1:$port"
        pids="${pids:+$pids,}$(pgrep -P "$master" | paste -sd,)"
    done
    for rate in $RATES; do
        echo "nchan   $rate/s" >&2
        "$BIN" peer-load --nodes "$nodes" --subscribers 1000 --channels 10 --payload 1024 \
            --rate "$rate" --duration "$DURATION" --node-pids "$pids" \
            --report "$OUT/nchan-$rate.json" || true
    done
    # Out of the way before collabd's side is measured.
    for pid in "${PIDS_TO_KILL[@]}"; do kill "$pid" 2>/dev/null || true; done
    PIDS_TO_KILL=()
    sleep 1
}

run_collabd() {
    local token state="$WORK/collabd" nodes="" ports=""
    token="peer-bench-admin-token-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    for _ in 0 1 2; do ports="${ports:+$ports }$(free_port)"; done
    for port in $ports; do nodes="${nodes:+$nodes,}http://127.0.0.1:$port"; done
    STATE_DIR="$state" NODE_PORTS="$ports" REDIS_PORT="$(free_port)" ADMIN_TOKEN="$token" \
        COLLABD_BIN="$BIN" LOG_LEVEL=warn "$ROOT/deploy/local-cluster.sh" start >/dev/null
    local pids
    pids="$(cat "$state"/node-*.pid | paste -sd,)"
    for rate in $RATES; do
        local sessions="${SESSIONS:-$(( rate / 4 > 50 ? rate / 4 : 50 ))}"
        echo "collabd $rate/s ($sessions sessions)" >&2
        "$BIN" load --nodes "$nodes" --admin-token "$token" --agents 1000 --portals 10 \
            --sessions "$sessions" --rate "$rate" --duration "$DURATION" \
            --node-pids "$pids" --report "$OUT/collabd-$rate.json" >/dev/null || true
    done
}

for side in $SIDES; do
    "run_$side"
done

RATES="$RATES" python3 "$ROOT/benches/peer/table.py" "$OUT" | tee "$OUT/table.md"
