#!/usr/bin/env bash
# A three-node collabd cluster on this machine, no Docker needed: Redis and
# N collabd nodes on loopback, all sharing one Redis namespace, one admin
# token and one token secret. Redis is one redis-server (the default,
# backplane.kind = "redis") or, with --redis-cluster, a Redis Cluster of
# 3 masters with one or two replicas each (backplane.kind = "redis-cluster"):
# six redis-servers (3 + 3) by default, nine (3 + 6) when WAIT_REPLICAS >= 1.
#
#   deploy/local-cluster.sh [start] [--redis-cluster] [--foreground] [--build]
#   deploy/local-cluster.sh stop
#   deploy/local-cluster.sh status
#
# start            builds target/release/collabd if missing (--build: always),
#                  starts Redis and the nodes in the background, waits until
#                  every node's /readyz answers 200, prints URLs and the token.
# --redis-cluster  Redis is a Redis Cluster: 3 x (1 + REPLICAS_PER_MASTER)
#                  redis-servers (cluster-enabled, AOF on, each in
#                  <state>/redis-cluster/<port>), joined with redis-cli
#                  --cluster create --cluster-replicas REPLICAS_PER_MASTER on
#                  the first start (later starts reuse the cluster in the
#                  state dir, if it has the same ports and layout); the nodes
#                  start once every Redis reports cluster_state:ok, every
#                  master has its replicas linked and every replica is in
#                  sync, with all the redis-servers as seed nodes.
# --foreground     the same, then stays attached; Ctrl-C (or SIGTERM) stops all,
#                  and so does a node or the single Redis exiting on its own
#                  (one Redis of a Redis Cluster exiting is only reported).
# stop             stops everything recorded in the state directory's PID
#                  files (nodes first, then Redis; either Redis kind).
# status           shows what is running, each node's /readyz code and, for a
#                  Redis Cluster, each Redis's role, cluster_state and its
#                  replicas (a master) or its master and link (a replica).
#
# Environment (all optional):
#   STATE_DIR        state directory (PID files, logs, Redis AOF, cluster.env)
#                    default: <repo>/target/local-cluster
#   REDIS_PORT       Redis port; default 6390, or the next free port above it
#                    when 6390 is taken (an explicit REDIS_PORT must be free)
#   REPLICAS_PER_MASTER  --redis-cluster: replicas of each master, 1 or 2;
#                    default 2 when WAIT_REPLICAS >= 1, else 1. With
#                    WAIT_REPLICAS=1 two are needed to survive a failover: a
#                    promoted replica has no replica of its own with only one,
#                    and every write of its shard answers 503 (WAIT 1 fails)
#                    until the failed redis-server is restarted
#   REDIS_CLUSTER_PORTS  --redis-cluster: the Redis ports, space- or comma-
#                    separated, a multiple of (1 + REPLICAS_PER_MASTER), at
#                    least 3 masters' worth (the first third, or half, become
#                    masters); default 7301-7306 with one replica per master,
#                    7301-7309 with two. Each port and port+10000 (the
#                    cluster bus) must be free, and the port below 55535
#   WAIT_REPLICAS    --redis-cluster: backplane.wait_replicas, 0 to
#                    REPLICAS_PER_MASTER (default 0, collabd's default): N
#                    acknowledges a change only once N replicas of its master
#                    have it (WAIT N). WAIT_REPLICAS = REPLICAS_PER_MASTER is
#                    allowed with a warning: one Redis failure then stops the
#                    writes of that shard until it is restarted
#   WAIT_TIMEOUT_MS  backplane.wait_timeout_ms; default collabd's (100)
#   NODE_PORTS       space-separated node ports; default "8081 8082 8083"
#   NAMESPACE        backplane namespace; default "local-cluster"
#   ADMIN_TOKEN      admin bearer token; default: kept from cluster.env, else generated
#   CLUSTER_SECRET   token HMAC secret;  default: kept from cluster.env, else generated
#   LOG_FORMAT       json (default) or pretty
#   LOG_LEVEL        tracing filter; default info
#   COLLABD_BIN      binary to run; default <repo>/target/release/collabd
#   READY_TIMEOUT    seconds to wait for /readyz (and for cluster_state:ok);
#                    default 30
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
# Redis is redis.pid (one redis-server) or redis-<port>.pid (Redis Cluster).
pid_files() {
  local f
  for f in "$STATE_DIR"/node-*.pid; do [[ -e "$f" ]] && echo "$f"; done
  for f in "$STATE_DIR"/redis.pid "$STATE_DIR"/redis-*.pid; do [[ -e "$f" ]] && echo "$f"; done
  return 0
}

is_redis_pidfile() {
  [[ "$(basename "$1")" == redis*.pid ]]
}

# The program a PID file's process must be (see pid_is).
expect_for() {
  if is_redis_pidfile "$1"; then echo redis-server; else echo collabd; fi
}

# The ports of REDIS_CLUSTER_PORTS (space- or comma-separated), one a line;
# default 3 masters x (1 + $1 replicas) ports from 7301 (7301-7306 for one
# replica per master, 7301-7309 for two).
cluster_ports() {
  local spec="${REDIS_CLUSTER_PORTS:-$(seq -s ' ' 7301 $((7300 + 3 * (1 + $1))))}"
  tr -s ', ' '\n' <<<"$spec" | sed '/^$/d'
}

# The value of field $2 in `redis-cli -p $1 $3...` output (INFO-style
# "key:value" lines), without the carriage return.
redis_field() {
  local port=$1 field=$2
  shift 2
  redis-cli -p "$port" "$@" 2>/dev/null | tr -d '\r' | sed -n "s/^$field://p" | head -n 1
}

# Sends SIGTERM to the process recorded in PID file $1, waits up to $2 s,
# then SIGKILLs it; removes the PID file.
stop_pidfile() {
  local file=$1 grace=$2 pid name
  pid="$(cat "$file" 2>/dev/null || true)"
  name="$(basename "$file" .pid)"
  local expect
  expect="$(expect_for "$file")"
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
  # then Redis (every redis-server of a Redis Cluster in parallel), so the
  # nodes never see their backplane vanish first.
  local pids=()
  for f in "${files[@]}"; do
    is_redis_pidfile "$f" && continue
    stop_pidfile "$f" $((SHUTDOWN_TIMEOUT_SECS + 5)) &
    pids+=($!)
  done
  ((${#pids[@]} == 0)) || wait "${pids[@]}"
  pids=()
  for f in "${files[@]}"; do
    is_redis_pidfile "$f" || continue
    stop_pidfile "$f" 10 &
    pids+=($!)
  done
  ((${#pids[@]} == 0)) || wait "${pids[@]}"
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
    elif [[ "$name" == redis-* ]]; then
      local rport="${name#redis-}"
      if pid_is "$pid" redis-server; then
        local role links
        role="$(redis_field "$rport" role info replication)"
        if [[ "$role" == master ]]; then
          links="replicas=$(redis_field "$rport" connected_slaves info replication)"
        else
          links="master=$(redis_field "$rport" master_host info replication):$(redis_field "$rport" master_port info replication)  link=$(redis_field "$rport" master_link_status info replication)"
        fi
        echo "$name pid $pid running  127.0.0.1:$rport  role=$role  cluster_state=$(redis_field "$rport" cluster_state cluster info)  $links"
      else
        echo "$name pid $pid DEAD"
      fi
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

# ---------------------------------------------------------------- Redis

# Starts one redis-server of a Redis Cluster on 127.0.0.1:$1, its data
# (nodes.conf, AOF) in $STATE_DIR/redis-cluster/$1; PID file redis-$1.pid.
start_cluster_redis() {
  local port=$1 dir="$STATE_DIR/redis-cluster/$1"
  mkdir -p "$dir"
  (cd "$dir" && detached redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --appendonly yes --dir "$dir" --save "" \
    --logfile "$STATE_DIR/redis-$port.log" >/dev/null 2>&1 </dev/null) &
  echo $! >"$STATE_DIR/redis-$port.pid"
}

# Waits until redis-server on port $1 (PID file $2, log $3) answers PING.
wait_redis_ping() {
  local port=$1 pidfile=$2 log=$3 i
  for ((i = 0; i < 100; i++)); do
    [[ "$(redis-cli -p "$port" ping 2>/dev/null || true)" == PONG ]] && return 0
    kill -0 "$(cat "$pidfile")" 2>/dev/null || {
      echo "local-cluster: redis-server on port $port exited; last lines of $log:" >&2
      tail -n 20 "$log" >&2 || true
      return 1
    }
    sleep 0.1
  done
  echo "local-cluster: redis-server on port $port did not answer PING within 10 s; see $log" >&2
  return 1
}

# True when every Redis of the cluster ($2...) reports cluster_state:ok and
# knows all the others, there are as many masters as the layout has (the
# ports / (1 + $1 replicas per master)), every master has its replicas
# linked and in sync (INFO replication: connected_slaves >= 1, each
# slaveN:…,state=online) and every replica's link to its master is up with
# no sync in progress, all replicas accounted for. So WAIT N can succeed
# from the first request and, with two replicas per master, still after one
# failover. A master is not required to have exactly $1: after failovers a
# replica may have migrated to another master (start_redis_cluster warns).
cluster_healthy() {
  local r=$1 p n masters=0 replicas=0 info k
  shift
  n=$#
  for p in "$@"; do
    [[ "$(redis_field "$p" cluster_state cluster info)" == ok ]] || return 1
    [[ "$(redis_field "$p" cluster_known_nodes cluster info)" == "$n" ]] || return 1
    info="$(redis-cli -p "$p" info replication 2>/dev/null | tr -d '\r')" || return 1
    case "$(sed -n 's/^role://p' <<<"$info")" in
      master)
        k="$(sed -n 's/^connected_slaves://p' <<<"$info")"
        [[ "$k" =~ ^[0-9]+$ ]] || return 1
        ((k >= 1)) || return 1
        (($(grep -c '^slave[0-9]*:.*state=online' <<<"$info") == k)) || return 1
        masters=$((masters + 1))
        replicas=$((replicas + k))
        ;;
      slave)
        [[ "$(sed -n 's/^master_link_status://p' <<<"$info")" == up ]] || return 1
        [[ "$(sed -n 's/^master_sync_in_progress://p' <<<"$info")" == 0 ]] || return 1
        ;;
      *) return 1 ;;
    esac
  done
  ((masters == n / (1 + r) && replicas == n - masters))
}

# The layout of the Redis Cluster formed earlier in this state dir, from the
# first of its nodes.conf files that knows every node of it: "<nodes>
# <masters>" (masters = nodes holding slots); nothing if none knows all.
formed_layout() {
  local f dirs=0 nodes masters
  for f in "$STATE_DIR"/redis-cluster/*/nodes.conf; do [[ -e "$f" ]] && dirs=$((dirs + 1)); done
  for f in "$STATE_DIR"/redis-cluster/*/nodes.conf; do
    [[ -e "$f" ]] || continue
    nodes="$(awk '$1 != "vars" && NF >= 8' "$f" | wc -l)"
    masters="$(awk '$1 != "vars" && NF > 8 && $3 ~ /master/' "$f" | wc -l)"
    if ((nodes == dirs && masters > 0)); then
      echo "$nodes $masters"
      return 0
    fi
  done
  return 0
}

# True if a Redis Cluster was formed earlier in this state dir (it is then
# reused: its nodes.conf files know each other by port); dies if that
# cluster is on other ports than "$2...", or has another number of masters
# than $1 replicas per master make of them (so a six-node cluster of one
# replica per master is never mixed with a nine-node layout, or the other
# way round).
cluster_formed_here() {
  local r=$1 existing=() d layout
  shift
  for d in "$STATE_DIR"/redis-cluster/*/nodes.conf; do
    [[ -e "$d" ]] && existing+=("$(basename "$(dirname "$d")")")
  done
  ((${#existing[@]} > 0)) || return 1
  mapfile -t existing < <(printf '%s\n' "${existing[@]}" | sort -n)
  layout="$(formed_layout)"
  local nodes="${layout% *}" masters="${layout#* }" old_r="" old_desc="layout unknown"
  if [[ -n "$layout" ]]; then
    old_desc="$masters masters + $((nodes - masters)) replicas"
    (((nodes - masters) % masters == 0)) && old_r=$(((nodes - masters) / masters))
  fi
  if [[ "${existing[*]}" != "$(printf '%s\n' "$@" | sort -n | paste -sd' ')" ]] ||
    [[ -n "$layout" && "$masters" != $(($# / (1 + r))) ]]; then
    local reuse="REDIS_CLUSTER_PORTS=\"${existing[*]}\""
    [[ -z "$old_r" ]] || reuse="REPLICAS_PER_MASTER=$old_r $reuse"
    die "$STATE_DIR/redis-cluster holds a Redis Cluster formed earlier on ports ${existing[*]} ($old_desc), but this start asks for $# ports ($*) as $(($# / (1 + r))) masters with $r replica(s) each; the two are not mixed. Either start it with its own settings ($reuse), or run '$0 stop', remove $STATE_DIR/redis-cluster (rm -rf \"$STATE_DIR/redis-cluster\"; its data is lost) and start again to form the new layout"
  fi
  return 0
}

# Starts the Redis Cluster of $1 replicas per master on ports "$2...": the
# redis-servers, then, unless the state dir already holds this cluster,
# redis-cli --cluster create with $1 replicas per master; returns once
# cluster_healthy.
start_redis_cluster() {
  local r=$1 p formed=0
  shift
  local ports=("$@")
  mkdir -p "$STATE_DIR/redis-cluster"
  cluster_formed_here "$r" "${ports[@]}" && formed=1

  say "starting ${#ports[@]} redis-servers (Redis Cluster, $((${#ports[@]} / (1 + r))) masters x $r replica(s)) on 127.0.0.1:${ports[*]} (AOF in $STATE_DIR/redis-cluster/<port>)"
  for p in "${ports[@]}"; do start_cluster_redis "$p"; done
  for p in "${ports[@]}"; do
    wait_redis_ping "$p" "$STATE_DIR/redis-$p.pid" "$STATE_DIR/redis-$p.log" || false
  done

  if ((formed == 0)); then
    local addrs=()
    for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    say "creating the cluster: redis-cli --cluster create ${addrs[*]} --cluster-replicas $r"
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$r" --cluster-yes \
      >"$STATE_DIR/redis-cluster-create.log" 2>&1 || {
      echo "local-cluster: redis-cli --cluster create failed; $STATE_DIR/redis-cluster-create.log:" >&2
      tail -n 20 "$STATE_DIR/redis-cluster-create.log" >&2 || true
      false
    }
  else
    say "reusing the Redis Cluster formed earlier in $STATE_DIR/redis-cluster"
  fi

  local deadline=$((SECONDS + READY_TIMEOUT))
  until cluster_healthy "$r" "${ports[@]}"; do
    if ((SECONDS >= deadline)); then
      echo "local-cluster: the Redis Cluster is not healthy after ${READY_TIMEOUT}s (every node cluster_state:ok, knowing all ${#ports[@]}, $((${#ports[@]} / (1 + r))) masters each with its replicas linked and in sync):" >&2
      for p in "${ports[@]}"; do
        echo "  127.0.0.1:$p role=$(redis_field "$p" role info replication) cluster_state=$(redis_field "$p" cluster_state cluster info) known_nodes=$(redis_field "$p" cluster_known_nodes cluster info) replicas=$(redis_field "$p" connected_slaves info replication) master_link=$(redis_field "$p" master_link_status info replication)" >&2
      done
      echo "  logs: $STATE_DIR/redis-<port>.log; to start afresh delete $STATE_DIR/redis-cluster" >&2
      false
    fi
    sleep 0.2
  done
  local masters=0 k
  for p in "${ports[@]}"; do
    [[ "$(redis_field "$p" role info replication)" == master ]] || continue
    masters=$((masters + 1))
    k="$(redis_field "$p" connected_slaves info replication)"
    [[ "$k" == "$r" ]] ||
      say "warning: master 127.0.0.1:$p has $k replica(s), not $r (a replica moved to another master after failovers); a failover of this shard may leave it without one"
  done
  say "Redis Cluster ready: cluster_state:ok on all ${#ports[@]} nodes, $masters masters, $((${#ports[@]} - masters)) replicas linked and in sync"
}

# ---------------------------------------------------------------- start

start() {
  local foreground=$1 build=$2 cluster=$3

  command -v redis-server >/dev/null 2>&1 ||
    die "redis-server is not installed; install it with: apt-get install redis-server (the cluster does not need Docker)"
  command -v redis-cli >/dev/null 2>&1 ||
    die "redis-cli is not installed; install it with: apt-get install redis-tools"
  command -v curl >/dev/null 2>&1 || die "curl is not installed; install it with: apt-get install curl"

  mkdir -p "$STATE_DIR"
  local f files=()
  mapfile -t files < <(pid_files)
  for f in "${files[@]}"; do
    local pid expect
    pid="$(cat "$f")"
    expect="$(expect_for "$f")"
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

  # Durability (backplane.wait_replicas / wait_timeout_ms), passed on only
  # when set, so collabd's defaults apply otherwise; and the replicas per
  # master of a Redis Cluster, two by default when changes wait for one.
  local wait_replicas="${WAIT_REPLICAS:-}" wait_timeout_ms="${WAIT_TIMEOUT_MS:-}"
  local replicas="${REPLICAS_PER_MASTER:-}"
  if [[ -n "$wait_replicas" ]]; then
    [[ "$wait_replicas" =~ ^[0-9]+$ ]] || die "WAIT_REPLICAS must be a number"
    if [[ "$cluster" != 1 ]]; then
      ((wait_replicas == 0)) || die "WAIT_REPLICAS=$wait_replicas needs --redis-cluster (the single redis-server has no replica: every change would answer 503)"
    fi
  fi
  if [[ "$cluster" == 1 ]]; then
    if [[ -z "$replicas" ]]; then
      replicas=1
      ((${wait_replicas:-0} < 1)) || replicas=2
    fi
    [[ "$replicas" == 1 || "$replicas" == 2 ]] ||
      die "REPLICAS_PER_MASTER=$replicas: 1 or 2 replicas per master"
    ((${wait_replicas:-0} <= replicas)) ||
      die "WAIT_REPLICAS=$wait_replicas: each master has $replicas replica(s) here (REPLICAS_PER_MASTER), so 0 to $replicas (every change would answer 503)"
    if ((${wait_replicas:-0} == replicas)); then
      local better="REPLICAS_PER_MASTER=2 (the default with WAIT_REPLICAS=1) keeps it writable through a failover"
      ((replicas < 2)) || better="WAIT_REPLICAS=1 keeps it writable through one failover"
      say "warning: WAIT_REPLICAS=$wait_replicas and REPLICAS_PER_MASTER=$replicas: every change must reach every replica of its master, so ONE Redis failure (a master, whose promoted replica is left with $((replicas - 1)) replica(s), or a replica) stops the writes of that shard (503 unavailable) until the failed redis-server is restarted; $better" >&2
    fi
  elif [[ -n "$replicas" ]]; then
    die "REPLICAS_PER_MASTER=$replicas needs --redis-cluster (the single redis-server has no replicas)"
  fi
  [[ -z "$wait_timeout_ms" || "$wait_timeout_ms" =~ ^[0-9]+$ ]] || die "WAIT_TIMEOUT_MS must be a number of milliseconds"

  # Ports.
  local redis_port="" rports=() busy=() p
  if [[ "$cluster" == 1 ]]; then
    mapfile -t rports < <(cluster_ports "$replicas")
    ((${#rports[@]} >= 3 * (1 + replicas) && ${#rports[@]} % (1 + replicas) == 0)) ||
      die "REDIS_CLUSTER_PORTS: with $replicas replica(s) per master (REPLICAS_PER_MASTER), need a multiple of $((1 + replicas)) ports, at least $((3 * (1 + replicas))) (3 masters or more; each master and its $replicas replica(s)); got ${#rports[@]}"
    for p in "${rports[@]}"; do
      [[ "$p" =~ ^[0-9]+$ ]] || die "REDIS_CLUSTER_PORTS: $p is not a port"
      ((p > 0 && p < 55535)) ||
        die "REDIS_CLUSTER_PORTS: $p is not a port below 55535 (its cluster bus is port+10000)"
      port_in_use "$p" && die "Redis Cluster port $p is already in use; set REDIS_CLUSTER_PORTS (e.g. REDIS_CLUSTER_PORTS=\"$(seq -s ' ' 7401 $((7400 + ${#rports[@]})))\")"
      port_in_use $((p + 10000)) && die "port $((p + 10000)) (the cluster bus of Redis port $p) is already in use; set REDIS_CLUSTER_PORTS"
      busy+=("$p" $((p + 10000)))
    done
    [[ "$(printf '%s\n' "${busy[@]}" | sort | uniq -d)" == "" ]] ||
      die "REDIS_CLUSTER_PORTS: ports and their cluster bus ports (port+10000) overlap: ${rports[*]}"
    cluster_formed_here "$replicas" "${rports[@]}" || true
  elif [[ -n "${REDIS_PORT:-}" ]]; then
    redis_port=$REDIS_PORT
    port_in_use "$redis_port" && die "REDIS_PORT=$redis_port is already in use; pick a free port"
  else
    redis_port=6390
    while port_in_use "$redis_port"; do
      redis_port=$((redis_port + 1))
      ((redis_port < 6490)) || die "no free Redis port in 6390-6489; set REDIS_PORT"
    done
  fi
  [[ -z "$redis_port" ]] || busy=("$redis_port")
  local ports=() p
  read -r -a ports <<<"$NODE_PORTS"
  ((${#ports[@]} > 0)) || die "NODE_PORTS is empty"
  for p in "${ports[@]}"; do
    [[ "$p" =~ ^[0-9]+$ ]] || die "NODE_PORTS: $p is not a port"
    port_in_use "$p" && die "port $p is already in use; set NODE_PORTS (e.g. NODE_PORTS=\"9081 9082 9083\")"
    local b
    for b in "${busy[@]}"; do
      [[ "$p" != "$b" ]] || die "port $p is both a node port and a Redis port (or a Redis Cluster bus port)"
    done
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

  local redis_urls="" redis_desc
  if [[ "$cluster" == 1 ]]; then
    start_redis_cluster "$replicas" "${rports[@]}"
    for p in "${rports[@]}"; do redis_urls+="${redis_urls:+,}redis://127.0.0.1:$p"; done
    local nmasters=$((${#rports[@]} / (1 + replicas)))
    redis_desc="Redis Cluster on 127.0.0.1 ports ${rports[*]}: $nmasters masters + $((${#rports[@]} - nmasters)) replicas ($replicas per master), AOF on, wait_replicas ${wait_replicas:-0}"
  else
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
    redis_desc="Redis 127.0.0.1:$redis_port, AOF on"
  fi

  {
    echo "# written by deploy/local-cluster.sh; holds secrets, mode 600"
    if [[ "$cluster" == 1 ]]; then
      echo "REDIS_KIND=redis-cluster"
      echo "REDIS_CLUSTER_PORTS=${rports[*]}"
      echo "REPLICAS_PER_MASTER=$replicas"
      echo "REDIS_URLS=$redis_urls"
      echo "WAIT_REPLICAS=${wait_replicas:-0}"
    else
      echo "REDIS_KIND=redis"
      echo "REDIS_PORT=$redis_port"
    fi
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
      if [[ "$cluster" == 1 ]]; then
        export COLLABD__BACKPLANE__KIND=redis-cluster
        export COLLABD__BACKPLANE__REDIS_URLS="$redis_urls"
      else
        export COLLABD__BACKPLANE__KIND=redis
        export COLLABD__BACKPLANE__REDIS_URL="redis://127.0.0.1:$redis_port"
      fi
      [[ -z "$wait_replicas" ]] || export COLLABD__BACKPLANE__WAIT_REPLICAS="$wait_replicas"
      [[ -z "$wait_timeout_ms" ]] || export COLLABD__BACKPLANE__WAIT_TIMEOUT_MS="$wait_timeout_ms"
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
  echo "collabd local cluster is up (namespace \"$NAMESPACE\", $redis_desc)"
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
    # Stay attached until a node or Redis exits on its own, or Ctrl-C. One
    # redis-server of a Redis Cluster exiting is reported, not fatal: one of
    # its replicas takes over (a failover to watch); `stop` still cleans it up.
    local -A reported=()
    while :; do
      mapfile -t files < <(pid_files)
      for f in "${files[@]}"; do
        local pid expect
        pid="$(cat "$f")"
        expect="$(expect_for "$f")"
        if ! pid_is "$pid" "$expect"; then
          if [[ "$cluster" == 1 ]] && is_redis_pidfile "$f"; then
            [[ -n "${reported[$f]:-}" ]] ||
              say "$(basename "$f" .pid) (pid $pid) exited; if it was a master, the Redis Cluster fails over to one of its replicas (still attached)"
            reported[$f]=1
            continue
          fi
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

cmd=start foreground=0 build=0 cluster=0
while (($# > 0)); do
  case "$1" in
    start) cmd=start ;;
    stop) cmd=stop ;;
    status) cmd=status ;;
    --foreground | -f) foreground=1 ;;
    --build) build=1 ;;
    --redis-cluster) cluster=1 ;;
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
  start) start "$foreground" "$build" "$cluster" ;;
  stop) stop_all ;;
  status) status ;;
esac
