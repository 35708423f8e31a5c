#!/usr/bin/env bash
# Failover drill for the Redis Cluster of local-cluster.sh: writes keep
# coming while the Redis master that owns the test account is killed with
# SIGKILL, and the drill measures how long writes fail and whether they come
# back WITHOUT restarting the killed redis-server.
#
#   deploy/failover-drill.sh
#   WAIT_REPLICAS=1 deploy/failover-drill.sh                        # 3 masters + 6 replicas
#   WAIT_REPLICAS=1 REPLICAS_PER_MASTER=1 STATE_DIR=/tmp/old deploy/failover-drill.sh   # 3 + 3
#
# Steps:
#  1. Unless a cluster of local-cluster.sh is running in STATE_DIR (then it
#     is used as it is, and left running), starts one with
#     `local-cluster.sh start --redis-cluster`, passing the environment on
#     (WAIT_REPLICAS, REPLICAS_PER_MASTER, REDIS_CLUSTER_PORTS, NODE_PORTS,
#     COLLABD_BIN, …), and stops it at the end (KEEP=1: leave it running).
#  2. Through node DRILL_NODE (default 1), with the admin token of
#     <state>/cluster.env: PUT an account ACCOUNT (default drill-<time>), a
#     portal "desk" and an agent "ann" in it, mints ann a token, logs her in
#     and creates a session.
#  3. Finds the master owning the account's slot (CLUSTER KEYSLOT of
#     collabd:{<namespace>:<account>}:account, then CLUSTER NODES) and its
#     PID (<state>/redis-<port>.pid, checked against /proc).
#  4. Posts one chat message every INTERVAL_MS ms (default 100), each in
#     the background so a slow answer does not shift the cadence (curl -m
#     REQUEST_TIMEOUT, default 10 s); records for each its send and answer
#     times (ms since the epoch) and HTTP status, plus the problem code of a
#     failure (000 = no HTTP answer).
#  5. After PRE_SECONDS (default 5) sends SIGKILL to that master; posts on
#     for POST_SECONDS (default 30) after the kill; never restarts it.
#  6. Reads every message of the session back (GET …/messages, paged) and
#     checks that every acknowledged (2xx) message is there.
#  7. Prints the report: the kill → first 2xx figure, the failed answers by
#     status and problem code, whether writes stayed 2xx afterwards, the
#     promotion time from the replicas' logs, the slot's new master and its
#     replicas, cluster-node-timeout and the durability settings.
#
# Files (in <state>/drill-<time>/): posts.tsv (seq, sent_ms, answered_ms,
# status, problem code; by seq), readback.txt (texts read back), cluster-nodes-
# before.txt / -after.txt, report.txt (what is printed).
#
# Environment (all optional): those of local-cluster.sh (STATE_DIR default
# <repo>/target/local-cluster) and DRILL_NODE, ACCOUNT, INTERVAL_MS,
# PRE_SECONDS, POST_SECONDS, REQUEST_TIMEOUT, KEEP described above.
# Needs curl, jq, redis-cli. Traffic goes to 127.0.0.1 only; the loop is
# bounded (PRE_SECONDS + POST_SECONDS at one request per INTERVAL_MS).
# Exit 0 when every acknowledged message was read back and writes were 2xx
# again by the end without a restart; 1 otherwise (the report says why).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LC="$REPO_ROOT/deploy/local-cluster.sh"
export STATE_DIR="${STATE_DIR:-$REPO_ROOT/target/local-cluster}"
DRILL_NODE="${DRILL_NODE:-1}"
INTERVAL_MS="${INTERVAL_MS:-100}"
PRE_SECONDS="${PRE_SECONDS:-5}"
POST_SECONDS="${POST_SECONDS:-30}"
REQUEST_TIMEOUT="${REQUEST_TIMEOUT:-10}"
KEEP="${KEEP:-0}"

die() {
  echo "failover-drill: $*" >&2
  exit 1
}
say() { echo "failover-drill: $*"; }

for tool in curl jq redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
for v in DRILL_NODE INTERVAL_MS PRE_SECONDS POST_SECONDS REQUEST_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive whole number"
done

# Milliseconds since the epoch, without forking.
now_ms() {
  local t=${EPOCHREALTIME/./}
  echo $((t / 1000))
}

# ---------------------------------------------------------------- the cluster

started=0
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
  if [[ $started == 1 && $KEEP != 1 ]]; then
    say "stopping the cluster this drill started"
    bash "$LC" stop || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if compgen -G "$STATE_DIR/*.pid" >/dev/null; then
  st="$(bash "$LC" status || true)"
  if grep -q DEAD <<<"$st"; then
    echo "$st" >&2
    die "the cluster in $STATE_DIR is partly dead; run 'STATE_DIR=$STATE_DIR $LC stop' first (a later start brings a killed Redis back as a replica)"
  fi
  say "using the cluster already running in $STATE_DIR (it is left running)"
else
  bash "$LC" start --redis-cluster
  started=1
fi

env_of() { sed -n "s/^$1=//p" "$STATE_DIR/cluster.env"; }
[[ "$(env_of REDIS_KIND)" == redis-cluster ]] ||
  die "the cluster in $STATE_DIR is not a Redis Cluster one (start it with --redis-cluster)"
ADMIN_TOKEN="$(env_of ADMIN_TOKEN)"
NAMESPACE="$(env_of NAMESPACE)"
read -r -a RPORTS <<<"$(env_of REDIS_CLUSTER_PORTS)"
RUN_REPLICAS="$(env_of REPLICAS_PER_MASTER)"
RUN_WAIT="$(env_of WAIT_REPLICAS)"
NODE_PORT="$(env_of "NODE_${DRILL_NODE}_PORT")"
[[ -n "$NODE_PORT" ]] || die "no node $DRILL_NODE in $STATE_DIR/cluster.env"
BASE="http://127.0.0.1:$NODE_PORT"
ACCOUNT="${ACCOUNT:-drill-$(date +%s)}"
OUT="$STATE_DIR/drill-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
POSTS="$OUT/posts.tsv"
: >"$POSTS"

# A live Redis of the cluster to ask (the first that answers PING).
live_redis() {
  local p
  for p in "${RPORTS[@]}"; do
    [[ "$(redis-cli -p "$p" ping 2>/dev/null || true)" == PONG ]] && {
      echo "$p"
      return 0
    }
  done
  return 1
}

# ---------------------------------------------------------------- provisioning

# call METHOD PATH TOKEN [BODY]: prints the body; dies unless 2xx.
call() {
  local method=$1 path=$2 token=$3 body=${4:-} out code
  out="$(curl -s -m 10 -w '\n%{http_code}' -X "$method" "$BASE$path" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    ${body:+-d "$body"} || true)"
  code="${out##*$'\n'}"
  [[ "$code" == 2?? ]] || die "$method $path answered ${code:-nothing}: ${out%$'\n'*}"
  printf '%s\n' "${out%$'\n'*}"
}

say "provisioning account $ACCOUNT through node-$DRILL_NODE ($BASE)"
call PUT "/v1/accounts/$ACCOUNT" "$ADMIN_TOKEN" '{"name":"Failover drill"}' >/dev/null
call PUT "/v1/accounts/$ACCOUNT/portals/desk" "$ADMIN_TOKEN" '{"name":"Desk"}' >/dev/null
call PUT "/v1/accounts/$ACCOUNT/agents/ann" "$ADMIN_TOKEN" '{"name":"Ann","portals":["desk"]}' >/dev/null
AGENT_TOKEN="$(call POST "/v1/accounts/$ACCOUNT/agents/ann/tokens" "$ADMIN_TOKEN" '{}' | jq -r .token)"
call POST /v1/me/login "$AGENT_TOKEN" '{"portal":"desk"}' >/dev/null
SESSION="$(call POST /v1/sessions "$AGENT_TOKEN" '{"mode":"web","customer":{"name":"Drill"}}' | jq -r .session.id)"
say "session $SESSION"

# ---------------------------------------------------------------- the master

rp="$(live_redis)" || die "no Redis of the cluster answers"
KEY="collabd:{$NAMESPACE:$ACCOUNT}:account"
SLOT="$(redis-cli -p "$rp" cluster keyslot "$KEY" | tr -d '\r')"
redis-cli -p "$rp" cluster nodes | tr -d '\r' >"$OUT/cluster-nodes-before.txt"
# "<id> <port>" of the (non-failed) master whose slot ranges hold $SLOT.
read -r MASTER_ID MASTER_PORT < <(awk -v s="$SLOT" '
  $3 ~ /master/ && $3 !~ /fail/ {
    for (i = 9; i <= NF; i++) {
      if ($i ~ /^\[/) continue
      n = split($i, r, "-"); lo = r[1] + 0; hi = (n > 1 ? r[2] : r[1]) + 0
      if (s >= lo && s <= hi) { a = $2; sub(/@.*/, "", a); sub(/.*:/, "", a); print $1, a; exit }
    }
  }' "$OUT/cluster-nodes-before.txt")
[[ -n "${MASTER_PORT:-}" ]] || die "no master of slot $SLOT in CLUSTER NODES ($OUT/cluster-nodes-before.txt)"
mapfile -t REPLICA_PORTS < <(awk -v m="$MASTER_ID" '$4 == m { a = $2; sub(/@.*/, "", a); sub(/.*:/, "", a); print a }' "$OUT/cluster-nodes-before.txt")
MASTER_PID="$(cat "$STATE_DIR/redis-$MASTER_PORT.pid" 2>/dev/null || true)"
if ! [[ "$MASTER_PID" =~ ^[0-9]+$ && -r /proc/$MASTER_PID/cmdline ]] ||
  ! tr '\0' ' ' <"/proc/$MASTER_PID/cmdline" | grep -q "redis-server.*:$MASTER_PORT"; then
  die "the PID file of redis-$MASTER_PORT does not name its live redis-server (pid ${MASTER_PID:-?})"
fi
NODE_TIMEOUT="$(redis-cli -p "$MASTER_PORT" config get cluster-node-timeout | tr -d '\r' | sed -n 2p)"
say "slot $SLOT of $KEY: master 127.0.0.1:$MASTER_PORT (pid $MASTER_PID), replicas ${REPLICA_PORTS[*]:-none}; cluster-node-timeout $NODE_TIMEOUT ms"

# ---------------------------------------------------------------- the loop

# post SEQ: one message; appends "seq sent_ms answered_ms status problem".
post() {
  local seq=$1 t0 t1 out code body problem=-
  t0="$(now_ms)"
  out="$(curl -s -m "$REQUEST_TIMEOUT" -w '\n%{http_code}' -X POST "$BASE/v1/sessions/$SESSION/messages" \
    -H "Authorization: Bearer $AGENT_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"text\":\"drill $ACCOUNT $seq\",\"audience\":\"everyone\"}" 2>/dev/null || true)"
  t1="$(now_ms)"
  code="${out##*$'\n'}"
  [[ "$code" =~ ^[0-9]{3}$ ]] || code=000
  if [[ "$code" != 2?? ]]; then
    body="${out%$'\n'*}"
    problem="$(jq -r '.code // "-"' <<<"$body" 2>/dev/null || echo -)"
    [[ -n "$problem" ]] || problem=-
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$seq" "$t0" "$t1" "$code" "$problem" >>"$POSTS"
}

say "posting every ${INTERVAL_MS} ms; SIGKILL of 127.0.0.1:$MASTER_PORT after ${PRE_SECONDS} s; ${POST_SECONDS} s more after it"
t_start="$(now_ms)"
kill_at=$((t_start + PRE_SECONDS * 1000))
kill_ms=0 kill_done_ms=0 seq=0
while :; do
  now="$(now_ms)"
  if ((kill_ms == 0 && now >= kill_at)); then
    kill_ms="$(now_ms)"
    kill -KILL "$MASTER_PID"
    kill_done_ms="$(now_ms)"
    say "SIGKILL sent to pid $MASTER_PID (127.0.0.1:$MASTER_PORT) at $kill_ms"
  fi
  ((kill_ms == 0 || now < kill_ms + POST_SECONDS * 1000)) || break
  post "$seq" &
  seq=$((seq + 1))
  next=$((t_start + seq * INTERVAL_MS))
  now="$(now_ms)"
  if ((next > now)); then
    sleep "$(printf '%d.%03d' $(((next - now) / 1000)) $(((next - now) % 1000)))"
  fi
done
say "waiting for the last answers (at most ${REQUEST_TIMEOUT} s)"
wait
sort -n -o "$POSTS" "$POSTS" # by seq (they were appended as answered)
# The process must really be gone (SIGKILL is not refused, but check).
dead=yes
[[ -e /proc/$MASTER_PID ]] && dead="NO (pid $MASTER_PID still exists)"

# ---------------------------------------------------------------- read back

: >"$OUT/readback.txt"
before="" pages=0 rb_ok=1
while :; do
  page="$(curl -s -m 10 -w '\n%{http_code}' "$BASE/v1/sessions/$SESSION/messages?limit=200${before:+&before=$before}" \
    -H "Authorization: Bearer $AGENT_TOKEN" || true)"
  code="${page##*$'\n'}"
  page="${page%$'\n'*}"
  if [[ "$code" != 200 ]]; then
    rb_ok=0
    echo "read-back page answered ${code:-nothing}: $page" >>"$OUT/readback-errors.txt"
    break
  fi
  jq -r '.messages[].text' <<<"$page" >>"$OUT/readback.txt"
  pages=$((pages + 1))
  before="$(jq -r '.next_before // empty' <<<"$page")"
  [[ -n "$before" ]] || break
  ((pages < 1000)) || break
done

# ---------------------------------------------------------------- report

rp="$(live_redis)" || rp=""
[[ -z "$rp" ]] || redis-cli -p "$rp" cluster nodes | tr -d '\r' >"$OUT/cluster-nodes-after.txt"
new_master="" new_master_replicas=""
if [[ -n "$rp" ]]; then
  read -r _ new_master < <(awk -v s="$SLOT" '
    $3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) {
        if ($i ~ /^\[/) continue
        n = split($i, r, "-"); lo = r[1] + 0; hi = (n > 1 ? r[2] : r[1]) + 0
        if (s >= lo && s <= hi) { a = $2; sub(/@.*/, "", a); sub(/.*:/, "", a); print $1, a; exit }
      }
    }' "$OUT/cluster-nodes-after.txt") || true
  [[ -z "$new_master" ]] || new_master_replicas="$(redis-cli -p "$new_master" info replication | tr -d '\r' | sed -n 's/^connected_slaves://p')"
fi
# The replicas' log lines about the election (times as Redis logs them).
promo_lines="$(for p in "${REPLICA_PORTS[@]}"; do
  grep -h -e 'Failover election won' -e 'configEpoch set to' -e 'Failover auth granted' -e 'Start of election delayed' \
    "$STATE_DIR/redis-$p.log" 2>/dev/null | sed "s/^/  redis-$p: /" || true
done)"
won_line="$(for p in "${REPLICA_PORTS[@]}"; do grep -h 'Failover election won' "$STATE_DIR/redis-$p.log" 2>/dev/null || true; done | tail -n 1)"
won_ms=""
if [[ -n "$won_line" ]]; then
  # "<pid>:S 07 Dec 2026 03:38:51.123 * Failover election won …"
  won_ms="$(date -d "$(awk '{print $2, $3, $4, $5}' <<<"$won_line")" +%s%3N 2>/dev/null || true)"
fi

awk -F'\t' -v k="$kill_ms" -v kd="$kill_done_ms" '
  { n++; code[NR] = $4; sent[NR] = $2; done_[NR] = $3; prob[NR] = $5 }
  END {
    first = 0
    for (i = 1; i <= n; i++) {
      ok = (code[i] ~ /^2/)
      if (sent[i] < k) { pre++; if (ok) pre_ok++; else pre_bad++; continue }
      post++
      if (ok) { post_ok++; if (!first || done_[i] < done_[first]) first = i }
      else { post_bad++; kind[code[i] " " prob[i]]++; if (!last_bad || done_[i] > done_[last_bad]) last_bad = i }
      lat = done_[i] - sent[i]; if (lat > maxlat) maxlat = lat
    }
    printf "requests: %d (sent before the kill: %d, %d 2xx, %d not; sent after it: %d, %d 2xx, %d not)\n", n, pre, pre_ok, pre_bad, post, post_ok, post_bad
    if (first) {
      printf "kill -> first 2xx answer to a write sent after the kill: %d ms (that write sent %d ms after the kill)\n", done_[first] - k, sent[first] - k
      after = 0
      for (i = 1; i <= n; i++) if (sent[i] >= k && sent[i] > sent[first] && code[i] !~ /^2/) after++
      printf "non-2xx among writes sent after that first 2xx: %d\n", after
    } else print "kill -> first 2xx: NONE (no write sent after the kill was acknowledged)"
    if (last_bad) printf "last non-2xx: sent %d ms, answered %d ms after the kill\n", sent[last_bad] - k, done_[last_bad] - k
    for (c in kind) printf "  failed after the kill: %d x status %s\n", kind[c], c
    printf "slowest answer to a write sent after the kill: %d ms\n", maxlat
    printf "kill -9 itself took %d ms\n", kd - k
    # the lines are in order of appending, not of sending: sort the send times
    m = 0
    for (i = 1; i <= n; i++) if (sent[i] >= k) ts[++m] = sent[i]
    for (i = 2; i <= m; i++) { v = ts[i]; j = i - 1; while (j > 0 && ts[j] > v) { ts[j + 1] = ts[j]; j-- } ts[j + 1] = v }
    for (i = 2; i <= m; i++) if (ts[i] - ts[i - 1] > gap) gap = ts[i] - ts[i - 1]
    printf "largest gap between two sends after the kill: %d ms (the target is the interval; a loaded machine stretches it)\n", gap
  }' "$POSTS" >"$OUT/report.txt"

acked="$(awk -F'\t' -v a="$ACCOUNT" '$4 ~ /^2/ {print "drill " a " " $1}' "$POSTS" | sort)"
unacked="$(awk -F'\t' -v a="$ACCOUNT" '$4 !~ /^2/ {print "drill " a " " $1}' "$POSTS" | sort)"
readback="$(sort "$OUT/readback.txt")"
n_acked="$(grep -c . <<<"$acked" || true)"
n_read="$(grep -c . <<<"$readback" || true)"
missing="$(comm -23 <(echo "$acked") <(echo "$readback") | grep -c . || true)"
dup="$(uniq -d <<<"$readback" | grep -c . || true)"
unacked_there="$(comm -12 <(echo "$unacked") <(echo "$readback") | grep -c . || true)"
n_unacked="$(grep -c . <<<"$unacked" || true)"
tail_bad="$(awk -F'\t' -v k="$kill_ms" -v e="$POST_SECONDS" '$2 >= k + (e * 1000) - 5000 && $4 !~ /^2/' "$POSTS" | wc -l)"
tail_n="$(awk -F'\t' -v k="$kill_ms" -v e="$POST_SECONDS" '$2 >= k + (e * 1000) - 5000' "$POSTS" | wc -l)"

{
  echo "topology: ${#RPORTS[@]} redis-servers, ${RUN_REPLICAS:-?} replica(s) per master; wait_replicas ${RUN_WAIT:-0}; cluster-node-timeout $NODE_TIMEOUT ms"
  echo "account $ACCOUNT, slot $SLOT, master 127.0.0.1:$MASTER_PORT (pid $MASTER_PID; dead after SIGKILL: $dead), its replicas then: ${REPLICA_PORTS[*]:-none}"
  echo "node-$DRILL_NODE $BASE, session $SESSION, one write every $INTERVAL_MS ms, $PRE_SECONDS s before and $POST_SECONDS s after the kill"
  cat "$OUT/report.txt"
  if [[ -n "$won_ms" ]]; then
    echo "kill -> 'Failover election won' in the replica's log: $((won_ms - kill_ms)) ms"
  else
    echo "kill -> promotion: no 'Failover election won' in the replicas' logs"
  fi
  [[ -z "$promo_lines" ]] || echo "$promo_lines"
  echo "writes sent in the last 5 s: $tail_n, non-2xx among them: $tail_bad"
  echo "the slot's master now: ${new_master:+127.0.0.1:}${new_master:-none found}, connected replicas: ${new_master_replicas:-?}"
  echo "read back: $n_read messages in $pages page(s); acknowledged (2xx): $n_acked; acknowledged but missing: $missing; duplicates: $dup; not acknowledged but present: $unacked_there of $n_unacked"
  ((rb_ok == 1)) || echo "read-back FAILED: $(cat "$OUT/readback-errors.txt")"
  echo "files: $OUT"
} | tee "$OUT/report.txt.tmp"
mv "$OUT/report.txt.tmp" "$OUT/report.txt"

verdict=0
((missing == 0 && rb_ok == 1)) || verdict=1
((tail_bad == 0 && tail_n > 0)) || verdict=1
if ((verdict == 0)); then
  say "PASS: writes were 2xx again without restarting the killed Redis, every acknowledged message read back"
else
  say "FAIL: see the report above"
fi
exit "$verdict"
