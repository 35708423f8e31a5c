#!/usr/bin/env bash
# A three-node collabd cluster on this machine, no Docker needed: one
# redis-server and N collabd nodes on loopback, all sharing one Redis
# namespace, one admin token and one token secret.
#
#   deploy/local-cluster.sh [start] [--foreground] [--build]
#   deploy/local-cluster.sh stop
#   deploy/local-cluster.sh status
#
# start          builds target/release/collabd if missing (--build: always),
#                starts Redis and the nodes in the background, waits until
#                every node's /readyz answers 200, prints URLs and the token.
# --foreground   the same, then stays attached; Ctrl-C (or SIGTERM) stops all.
# stop           stops everything recorded in the state directory's PID files.
# status         shows what is running and each node's /readyz code.
#
# Environment (all optional):
#   STATE_DIR        state directory (PID files, logs, Redis AOF, cluster.env)
#                    default: <repo>/target/local-cluster
#   REDIS_PORT       Redis port; default 6390, or the next free port above it
#                    when 6390 is taken (an explicit REDIS_PORT must be free)
#   NODE_PORTS       space-separated node ports; default "8081 8082 8083"
#   NAMESPACE        backplane namespace; default "local-cluster"
#   ADMIN_TOKEN      admin bearer token; default: kept from cluster.env, else generated
#   CLUSTER_SECRET   token HMAC secret;  default: kept from cluster.env, else generated
#   LOG_FORMAT       json (default) or pretty
#   LOG_LEVEL        tracing filter; default info
#   COLLABD_BIN      binary to run; default <repo>/target/release/collabd
#   READY_TIMEOUT    seconds to wait for /readyz; default 30
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${STATE_DIR:-$REPO_ROOT/target/local-cluster}"
NODE_PORTS="${NODE_PORTS:-8081 8082 8083}"
NAMESPACE="${NAMESPACE:-local-cluster}"
LOG_FORMAT="${LOG_FORMAT:-json}"
LOG_LEVEL="${LOG_LEVEL:-info}"
COLLABD_BIN="${COLLABD_BIN:-$REPO_ROOT/target/release/collabd}"
READY_TIMEOUT="${READY_TIMEOUT:-30}"
# collabd's http.shutdown_timeout_secs; stop waits this long plus a margin
# before it resorts to SIGKILL.
SHUTDOWN_TIMEOUT_SECS=5

die() {
  echo "local-cluster: $*" >&2
  exit 1
}
say() { echo "local-cluster: $*"; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- helpers

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if PID $1 is alive and its argv[0] contains $2 (guards against
# signalling an unrelated process that reused a stale PID).
pid_is() {
  local pid=$1 name=$2 argv0
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  argv0="$(head -z -n 1 "/proc/$pid/cmdline" 2>/dev/null | tr -d '\0')" || return 1
  [[ "$argv0" == *"$name"* ]]
}

# Runs "$@" detached from the terminal: its own session (so Ctrl-C reaches
# only this script, which then stops nodes before Redis) and immune to
# hangup. Meant to be exec'd from a subshell, so $! is the program's PID.
detached() {
  if command -v setsid >/dev/null 2>&1; then
    exec setsid nohup "$@"
  else
    exec nohup "$@"
  fi
}

http_code() {
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}

random_hex() {
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

# Every PID file of this cluster: nodes first, Redis last (stop order).
pid_files() {
  local f
  for f in "$STATE_DIR"/node-*.pid; do [[ -e "$f" ]] && echo "$f"; done
  [[ -e "$STATE_DIR/redis.pid" ]] && echo "$STATE_DIR/redis.pid"
  return 0
}

# Sends SIGTERM to the process recorded in PID file $1, waits up to $2 s,
# then SIGKILLs it; removes the PID file.
stop_pidfile() {
  local file=$1 grace=$2 pid name
  pid="$(cat "$file" 2>/dev/null || true)"
  name="$(basename "$file" .pid)"
  case "$name" in
    redis) local expect=redis-server ;;
    *) local expect=collabd ;;
  esac
  if pid_is "$pid" "$expect"; then
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while pid_is "$pid" "$expect" && ((waited < grace * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if pid_is "$pid" "$expect"; then
      say "$name (pid $pid) did not stop within ${grace}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    else
      say "stopped $name (pid $pid)"
    fi
  else
    say "$name (pid ${pid:-?}) was not running"
  fi
  rm -f "$file"
}

stop_all() {
  local files=() f
  mapfile -t files < <(pid_files)
  if ((${#files[@]} == 0)); then
    say "nothing to stop (no PID files in $STATE_DIR)"
    return 0
  fi
  # Nodes in parallel (each closes its streams within shutdown_timeout_secs),
  # then Redis, so the nodes never see their backplane vanish first.
  local pids=()
  for f in "${files[@]}"; do
    [[ "$f" == */redis.pid ]] && continue
    stop_pidfile "$f" $((SHUTDOWN_TIMEOUT_SECS + 5)) &
    pids+=($!)
  done
  ((${#pids[@]} == 0)) || wait "${pids[@]}"
  [[ -e "$STATE_DIR/redis.pid" ]] && stop_pidfile "$STATE_DIR/redis.pid" 10
  return 0
}

status() {
  local files=() f pid name
  mapfile -t files < <(pid_files)
  if ((${#files[@]} == 0)); then
    say "not running (no PID files in $STATE_DIR)"
    return 3
  fi
  for f in "${files[@]}"; do
    pid="$(cat "$f")"
    name="$(basename "$f" .pid)"
    if [[ "$name" == redis ]]; then
      if pid_is "$pid" redis-server; then echo "$name pid $pid running"; else echo "$name pid $pid DEAD"; fi
    else
      local port="${name#node-}"
      port="$(sed -n "s/^NODE_${port}_PORT=//p" "$STATE_DIR/cluster.env" 2>/dev/null || true)"
      if pid_is "$pid" collabd; then
        echo "$name pid $pid running  http://127.0.0.1:$port  readyz=$(http_code "http://127.0.0.1:$port/readyz")"
      else
        echo "$name pid $pid DEAD"
      fi
    fi
  done
}

# ---------------------------------------------------------------- start

start() {
  local foreground=$1 build=$2

  command -v redis-server >/dev/null 2>&1 ||
    die "redis-server is not installed; install it with: apt-get install redis-server (the cluster does not need Docker)"
  command -v redis-cli >/dev/null 2>&1 ||
    die "redis-cli is not installed; install it with: apt-get install redis-tools"
  command -v curl >/dev/null 2>&1 || die "curl is not installed; install it with: apt-get install curl"

  mkdir -p "$STATE_DIR"
  local f files=()
  mapfile -t files < <(pid_files)
  for f in "${files[@]}"; do
    local pid expect=collabd
    pid="$(cat "$f")"
    [[ "$f" == */redis.pid ]] && expect=redis-server
    if pid_is "$pid" "$expect"; then
      die "already running ($(basename "$f" .pid), pid $pid); run '$0 stop' first"
    fi
    rm -f "$f" # stale
  done

  # Build the binary if needed.
  if [[ "$build" == 1 || ! -x "$COLLABD_BIN" ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is not installed and $COLLABD_BIN is missing"
    say "building the release binary (cargo build --release --bin collabd)"
    (cd "$REPO_ROOT" && cargo build --release --bin collabd)
  fi
  [[ -x "$COLLABD_BIN" ]] || die "no executable at $COLLABD_BIN"

  # Ports.
  local redis_port
  if [[ -n "${REDIS_PORT:-}" ]]; then
    redis_port=$REDIS_PORT
    port_in_use "$redis_port" && die "REDIS_PORT=$redis_port is already in use; pick a free port"
  else
    redis_port=6390
    while port_in_use "$redis_port"; do
      redis_port=$((redis_port + 1))
      ((redis_port < 6490)) || die "no free Redis port in 6390-6489; set REDIS_PORT"
    done
  fi
  local ports=() p
  read -r -a ports <<<"$NODE_PORTS"
  ((${#ports[@]} > 0)) || die "NODE_PORTS is empty"
  for p in "${ports[@]}"; do
    [[ "$p" =~ ^[0-9]+$ ]] || die "NODE_PORTS: $p is not a port"
    port_in_use "$p" && die "port $p is already in use; set NODE_PORTS (e.g. NODE_PORTS=\"9081 9082 9083\")"
    [[ "$p" != "$redis_port" ]] || die "port $p is both a node port and the Redis port"
  done

  # Credentials: explicit env > the ones this state dir already used
  # (tokens minted earlier stay valid across restarts) > fresh random ones.
  local admin_token="${ADMIN_TOKEN:-}" secret="${CLUSTER_SECRET:-}"
  if [[ -r "$STATE_DIR/cluster.env" ]]; then
    [[ -n "$admin_token" ]] || admin_token="$(sed -n 's/^ADMIN_TOKEN=//p' "$STATE_DIR/cluster.env")"
    [[ -n "$secret" ]] || secret="$(sed -n 's/^CLUSTER_SECRET=//p' "$STATE_DIR/cluster.env")"
  fi
  [[ -n "$admin_token" ]] || admin_token="admin-$(random_hex)"
  [[ -n "$secret" ]] || secret="$(random_hex)$(random_hex)"

  # Anything that fails (or Ctrl-C) from here on stops what was started.
  started_ok=0
  trap '[[ $started_ok == 1 ]] || { say "start failed or interrupted; stopping what was started"; stop_all; }' EXIT
  trap 'exit 130' INT TERM

  # Redis, persistence on (append-only file in the state dir).
  mkdir -p "$STATE_DIR/redis"
  say "starting redis-server on 127.0.0.1:$redis_port (AOF in $STATE_DIR/redis)"
  (detached redis-server --port "$redis_port" --bind 127.0.0.1 --protected-mode yes \
    --appendonly yes --dir "$STATE_DIR/redis" --save "" \
    --logfile "$STATE_DIR/redis.log" >/dev/null 2>&1 </dev/null) &
  echo $! >"$STATE_DIR/redis.pid"
  local i
  for ((i = 0; i < 100; i++)); do
    [[ "$(redis-cli -p "$redis_port" ping 2>/dev/null || true)" == PONG ]] && break
    kill -0 "$(cat "$STATE_DIR/redis.pid")" 2>/dev/null || {
      tail -n 20 "$STATE_DIR/redis.log" >&2 || true
      false
    }
    sleep 0.1
  done
  [[ "$(redis-cli -p "$redis_port" ping 2>/dev/null || true)" == PONG ]] || {
    say "redis-server did not answer PING within 10 s; see $STATE_DIR/redis.log" >&2
    false
  }

  {
    echo "# written by deploy/local-cluster.sh; holds secrets, mode 600"
    echo "REDIS_PORT=$redis_port"
    echo "NAMESPACE=$NAMESPACE"
    echo "ADMIN_TOKEN=$admin_token"
    echo "CLUSTER_SECRET=$secret"
  } >"$STATE_DIR/cluster.env.tmp"

  # The nodes. Run from the repo root so config/default.toml is read; the
  # environment overrides it.
  local n=0
  for p in "${ports[@]}"; do
    n=$((n + 1))
    echo "NODE_${n}_PORT=$p" >>"$STATE_DIR/cluster.env.tmp"
    say "starting node-$n on 127.0.0.1:$p (log: $STATE_DIR/node-$n.log)"
    (
      cd "$REPO_ROOT"
      export COLLABD__HTTP__LISTEN="127.0.0.1:$p"
      export COLLABD__NODE__ID="node-$n"
      export COLLABD__BACKPLANE__KIND=redis
      export COLLABD__BACKPLANE__REDIS_URL="redis://127.0.0.1:$redis_port"
      export COLLABD__BACKPLANE__NAMESPACE="$NAMESPACE"
      export COLLABD__AUTH__ADMIN_TOKEN="$admin_token"
      export COLLABD__AUTH__SECRET="$secret"
      export COLLABD__LOG__FORMAT="$LOG_FORMAT"
      export COLLABD__LOG__LEVEL="$LOG_LEVEL"
      export COLLABD__HTTP__SHUTDOWN_TIMEOUT_SECS="$SHUTDOWN_TIMEOUT_SECS"
      detached "$COLLABD_BIN" serve >"$STATE_DIR/node-$n.log" 2>&1 </dev/null
    ) &
    echo $! >"$STATE_DIR/node-$n.pid"
  done
  (umask 077 && mv "$STATE_DIR/cluster.env.tmp" "$STATE_DIR/cluster.env")
  chmod 600 "$STATE_DIR/cluster.env"

  # Wait for readiness (Redis and pub/sub reachable from every node).
  local deadline=$((SECONDS + READY_TIMEOUT)) code
  n=0
  for p in "${ports[@]}"; do
    n=$((n + 1))
    while :; do
      code="$(http_code "http://127.0.0.1:$p/readyz")"
      [[ "$code" == 200 ]] && break
      if ! kill -0 "$(cat "$STATE_DIR/node-$n.pid")" 2>/dev/null; then
        echo "local-cluster: node-$n exited; last lines of $STATE_DIR/node-$n.log:" >&2
        tail -n 20 "$STATE_DIR/node-$n.log" >&2 || true
        false
      fi
      if ((SECONDS >= deadline)); then
        echo "local-cluster: node-$n (127.0.0.1:$p) not ready after ${READY_TIMEOUT}s (last /readyz: ${code:-no answer}); see $STATE_DIR/node-$n.log" >&2
        false
      fi
      sleep 0.2
    done
    say "node-$n ready: /readyz 200"
  done
  started_ok=1
  trap - EXIT INT TERM

  echo
  echo "collabd local cluster is up (namespace \"$NAMESPACE\", Redis 127.0.0.1:$redis_port, AOF on)"
  n=0
  for p in "${ports[@]}"; do
    n=$((n + 1))
    echo "  node-$n  http://127.0.0.1:$p"
  done
  echo "  admin token:  $admin_token"
  echo "  (token and secret are kept in $STATE_DIR/cluster.env; logs in $STATE_DIR/)"
  echo "  try:   curl -s -X PUT http://127.0.0.1:${ports[0]}/v1/accounts/acme -H \"Authorization: Bearer $admin_token\" -H 'Content-Type: application/json' -d '{\"name\":\"Acme\"}'"

  if [[ "$foreground" == 1 ]]; then
    echo "  stop:  Ctrl-C (foreground mode)"
    echo
    trap 'echo; say "stopping"; stop_all; exit 0' INT TERM
    # Stay attached until a node or Redis exits on its own, or Ctrl-C.
    while :; do
      mapfile -t files < <(pid_files)
      for f in "${files[@]}"; do
        local pid expect=collabd
        pid="$(cat "$f")"
        [[ "$f" == */redis.pid ]] && expect=redis-server
        if ! pid_is "$pid" "$expect"; then
          say "$(basename "$f" .pid) (pid $pid) exited on its own; stopping the rest"
          stop_all
          exit 1
        fi
      done
      sleep 1 &
      wait $! || true
    done
  else
    echo "  stop:  $0 stop"
  fi
}

# ---------------------------------------------------------------- main

cmd=start foreground=0 build=0
while (($# > 0)); do
  case "$1" in
    start) cmd=start ;;
    stop) cmd=stop ;;
    status) cmd=status ;;
    --foreground | -f) foreground=1 ;;
    --build) build=1 ;;
    -h | --help | help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
  shift
done

case "$cmd" in
  start) start "$foreground" "$build" ;;
  stop) stop_all ;;
  status) status ;;
esac
