//! Every Lua script the Redis backplane runs. Each one touches the keys of
//! one hash tag only (one account, or a `{ns}` index), all declared
//! in `KEYS`, so each runs on one Redis Cluster slot. Their layouts are
//! documented at the top of each; `keys.rs` builds the keys.

use redis::Script;

/// The scripts, each loaded once per Redis (EVALSHA after the first call).
pub(super) struct Scripts {
    pub(super) commit: Script,
    pub(super) refresh: Script,
    pub(super) account_and_agent: Script,
    pub(super) account_for_token: Script,
    pub(super) token_holder: Script,
    pub(super) rate: Script,
    pub(super) revoke: Script,
    pub(super) audited_set: Script,
    pub(super) audited_hdel: Script,
    pub(super) audited_unlink: Script,
    pub(super) audit_page: Script,
    pub(super) sessions_page: Script,
    pub(super) claim: Script,
    pub(super) release: Script,
    pub(super) accept_context: Script,
    pub(super) login: Script,
    pub(super) logout: Script,
    pub(super) online_in: Script,
    pub(super) window: Script,
    pub(super) transcript_page: Script,
    pub(super) index_touch: Script,
    pub(super) index_take: Script,
    pub(super) timers_take: Script,
    pub(super) index_settle: Script,
    pub(super) timer_complete: Script,
    pub(super) timers_earliest: Script,
    pub(super) idempotency_reserve: Script,
    pub(super) heartbeat: Script,
    pub(super) lease: Script,
    pub(super) lease_done: Script,
    pub(super) reap: Script,
}

impl Scripts {
    /// The scripts; on a cluster the commit publishes with `SPUBLISH`, to
    /// the shard that owns the channel (which is the account's: channels
    /// carry its hash tag), instead of `PUBLISH`, which a cluster copies
    /// to every node.
    pub(super) fn new(cluster: bool) -> Self {
        let commit = if cluster {
            COMMIT.replace("'PUBLISH'", "'SPUBLISH'")
        } else {
            COMMIT.to_owned()
        };
        Self {
            commit: Script::new(&commit),
            refresh: Script::new(REFRESH),
            account_and_agent: Script::new(&with_bucket(ACCOUNT_AND_AGENT)),
            account_for_token: Script::new(&with_bucket(ACCOUNT_FOR_TOKEN)),
            rate: Script::new(&with_bucket(RATE)),
            token_holder: Script::new(TOKEN_HOLDER),
            revoke: Script::new(&with_audit(REVOKE)),
            audited_set: Script::new(&with_audit(AUDITED_SET)),
            audited_hdel: Script::new(&with_audit(AUDITED_HDEL)),
            audited_unlink: Script::new(&with_audit(AUDITED_UNLINK)),
            audit_page: Script::new(AUDIT_PAGE),
            sessions_page: Script::new(SESSIONS_PAGE),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            accept_context: Script::new(ACCEPT_CONTEXT),
            login: Script::new(LOGIN),
            logout: Script::new(&with_audit(LOGOUT)),
            online_in: Script::new(ONLINE_IN),
            window: Script::new(WINDOW),
            transcript_page: Script::new(TRANSCRIPT_PAGE),
            index_touch: Script::new(TIMER_INDEX_TOUCH),
            index_take: Script::new(TIMER_INDEX_TAKE),
            timers_take: Script::new(TIMERS_TAKE),
            index_settle: Script::new(TIMER_INDEX_SETTLE),
            timer_complete: Script::new(TIMER_COMPLETE),
            timers_earliest: Script::new(TIMERS_EARLIEST),
            idempotency_reserve: Script::new(IDEMPOTENCY_RESERVE),
            heartbeat: Script::new(HEARTBEAT),
            lease: Script::new(LEASE),
            lease_done: Script::new(LEASE_DONE),
            reap: Script::new(REAP),
        }
    }
}

/// Commits one change of a session atomically.
///
/// ```text
/// KEYS[1]   session hash (fields v = version, s = hot state)
/// KEYS[2]   the account's `active` hash (agent → sessions it is active in)
/// KEYS[3]   the account's timer set
/// KEYS[4]   the account's audit trail (stream)
/// KEYS[5..] one key per operation, in the order of the operations
/// ARGV[1]   expected version (0: the session must not exist)
/// ARGV[2]   the new hot state
/// ARGV[3]   guard: an agent that must be active in fewer than ARGV[4]
///           sessions, or '' for no guard
/// ARGV[4]   the guard's bound
/// ARGV[5]   number of operations; then three arguments per operation:
///           kind, a, b — kind is one of
///             rpush  key a        append a to a list (a transcript)
///             hset   key a b      set field a to b
///             hdel   key a        delete field a
///             del    key          delete the key (a decided claim)
///             join   key a b      SADD session a to agent b's session set;
///                                 count it in `active` if it was not there
///             leave  key a b      SREM session a from agent b's set; uncount
///             arm    key a b      timer member a due at b (ms): ZADD
///             disarm key a        ZREM timer member a
///             expire key a        EXPIRE key a seconds (retention)
///             zadd   key a b      ZADD member a with score b
///             zrem   key a        ZREM member a
///             zprune key a        ZREMRANGEBYSCORE below score a
///             keepfor key a       EXPIRE key a seconds unless it already
///                                 lives longer (an index of several sessions)
///             audit  key a b      RPUSH audit entry a to key (the session's
///                                 trail) and XADD it (field `e`) to KEYS[4],
///                                 MAXLEN ~ b: one copy of the entry crosses
///             xprune key a b      XTRIM key MINID ~ a (entries past the
///                                 retention), then EXPIRE key b seconds
/// then      number of payloads; per payload: the payload, the number of
///           channels, the channels — each channel gets PUBLISH payload
/// ```
///
/// Returns `{version, earliest}`: version -1 on a version conflict, -2 when
/// the guard refused (nothing written either way); `earliest` is the
/// account's earliest timer (ms) when this commit made it earlier (or the
/// set was empty), else '' — the node then lowers the timer index.
pub const COMMIT: &str = r#"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {-1, ''} end
if ARGV[3] ~= '' then
  local active = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
  if active >= tonumber(ARGV[4]) then return {-2, ''} end
end
local before = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]
v = v + 1
redis.call('HSET', KEYS[1], 'v', v, 's', ARGV[2])
local i = 6
local armed = false
for k = 1, tonumber(ARGV[5]) do
  local kind, a, b, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], KEYS[4 + k]
  i = i + 3
  if kind == 'rpush' then redis.call('RPUSH', key, a)
  elseif kind == 'hset' then redis.call('HSET', key, a, b)
  elseif kind == 'hdel' then redis.call('HDEL', key, a)
  elseif kind == 'del' then redis.call('DEL', key)
  elseif kind == 'join' then
    if redis.call('SADD', key, a) == 1 then redis.call('HINCRBY', KEYS[2], b, 1) end
  elseif kind == 'leave' then
    if redis.call('SREM', key, a) == 1 then
      if redis.call('HINCRBY', KEYS[2], b, -1) <= 0 then redis.call('HDEL', KEYS[2], b) end
    end
  elseif kind == 'arm' then redis.call('ZADD', key, b, a); armed = true
  elseif kind == 'disarm' then redis.call('ZREM', key, a)
  elseif kind == 'expire' then redis.call('EXPIRE', key, a)
  elseif kind == 'zadd' then redis.call('ZADD', key, b, a)
  elseif kind == 'zrem' then redis.call('ZREM', key, a)
  elseif kind == 'zprune' then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. a)
  elseif kind == 'keepfor' then
    if redis.call('TTL', key) < tonumber(a) then redis.call('EXPIRE', key, a) end
  elseif kind == 'audit' then
    redis.call('RPUSH', key, a)
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', b, '*', 'e', a)
  elseif kind == 'xprune' then
    redis.call('XTRIM', key, 'MINID', '~', a)
    redis.call('EXPIRE', key, b)
  end
end
local payloads = tonumber(ARGV[i])
i = i + 1
for p = 1, payloads do
  local payload, channels = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  for c = 1, channels do
    redis.call('PUBLISH', ARGV[i], payload)
    i = i + 1
  end
end
local earliest = ''
if armed then
  local after = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]
  if after and (not before or tonumber(after) < tonumber(before)) then earliest = after end
end
return {v, earliest}
"#;

/// The state of a session whose version the caller holds, only if it
/// changed (reads only).
///
/// ```text
/// KEYS[1] session hash   ARGV[1] the caller's version
/// ```
///
/// Returns `{version, state}`: `{}` when the session does not exist,
/// `{version}` alone when it is still the caller's.
pub const REFRESH: &str = r#"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return {} end
if v == ARGV[1] then return {v} end
return {v, redis.call('HGET', KEYS[1], 's')}
"#;

/// Takes one request from a token bucket (a Lua function other scripts
/// start with; see [`with_bucket`]). The bucket is a hash `{t = tokens
/// left, ts = when (ms)}` refilled at `per_sec` up to `burst`, on Redis's
/// clock (so nodes' clocks do not matter); it expires once it would be
/// full again. Returns 0 when taken, else the ms until one fits.
pub const TAKE: &str = r#"
local function take(key, per_sec, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local b = redis.call('HMGET', key, 't', 'ts')
  local tokens, at = tonumber(b[1]), tonumber(b[2])
  if not tokens or not at then tokens, at = burst, now end
  tokens = math.min(burst, tokens + math.max(0, now - at) * per_sec / 1000)
  if tokens >= 1 then
    tokens = tokens - 1
    redis.call('HSET', key, 't', tostring(tokens), 'ts', now)
    redis.call('PEXPIRE', key, math.ceil((burst - tokens) * 1000 / per_sec) + 1)
    return 0
  end
  return math.ceil((1 - tokens) * 1000 / per_sec)
end
"#;

/// A script that may call `take` (see [`TAKE`]).
pub fn with_bucket(body: &str) -> String {
    format!("{TAKE}{body}")
}

/// An account, one of its agents and their revocation marks, and one
/// request from the calling token's bucket: every agent request starts
/// with it, so it is one command.
///
/// ```text
/// KEYS[1] the account   KEYS[2] its agents hash
/// KEYS[3] the agent's revocation mark   KEYS[4] the account's
/// KEYS[5] the token's bucket
/// ARGV[1] agent   ARGV[2] requests a second   ARGV[3] burst
/// ```
///
/// Returns `{account, agent, mark, account mark, wait}`, `false` for what
/// does not exist; `wait` is 0 when the request was taken, else the ms
/// until one fits.
pub const ACCOUNT_AND_AGENT: &str = r#"
return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], ARGV[1]),
        redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4]),
        take(KEYS[5], tonumber(ARGV[2]), tonumber(ARGV[3]))}
"#;

/// An account, one of its agents and their revocation marks (reads only).
///
/// ```text
/// KEYS[1] the account   KEYS[2] its agents hash
/// KEYS[3] the agent's revocation mark   KEYS[4] the account's
/// ARGV[1] agent
/// ```
///
/// Returns `{account, agent, mark, account mark}`, `false` for what does
/// not exist.
pub const TOKEN_HOLDER: &str = r#"
return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], ARGV[1]),
        redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4])}
"#;

/// An account, whether a session is open, and (if it is) one request from
/// its customer token's bucket, then (if that had one) from the account's
/// bucket of customer requests.
///
/// ```text
/// KEYS[1] the account   KEYS[2] the token's bucket
/// KEYS[3] the session   KEYS[4] the account's ended sessions
/// KEYS[5] the account's customers' bucket
/// ARGV[1] requests a second   ARGV[2] burst   ARGV[3] the session id
/// ARGV[4] the account's customer requests a second   ARGV[5] their burst
/// ```
///
/// Returns `{account or false, open (1/0), wait}` (`wait` as in
/// ACCOUNT_AND_AGENT, of the bucket that refused; 0 when the session is not
/// open: nothing is taken).
pub const ACCOUNT_FOR_TOKEN: &str = r#"
local account = redis.call('GET', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 0 or redis.call('ZSCORE', KEYS[4], ARGV[3]) then
  return {account, 0, 0}
end
local wait = take(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
if wait == 0 then
  wait = take(KEYS[5], tonumber(ARGV[4]), tonumber(ARGV[5]))
end
return {account, 1, wait}
"#;

/// One request from a bucket (the admin token's).
///
/// ```text
/// KEYS[1] the bucket   ARGV[1] requests a second   ARGV[2] burst
/// ```
///
/// Returns `wait` as in ACCOUNT_AND_AGENT.
pub const RATE: &str = r#"
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
"#;

/// Refuses tokens minted before a moment: sets a revocation mark unless a
/// later one is already there.
///
/// ```text
/// KEYS[1] the mark (the agent's or the account's)   KEYS[2] the audit trail
/// ARGV[1] the moment (ms)   ARGV[2] how long to keep the mark (ms)
/// ARGV[3..] audit entries (AUDIT_FN)
/// ```
pub const REVOKE: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
audit(KEYS[2], 3)
return 0
"#;

/// Lua: appends audit entries to an account's trail, in the script that
/// makes the change they record. `audit(stream, i)` reads ARGV[i] = how
/// many entries, ARGV[i+1] = the oldest id to keep (ms: the retention),
/// ARGV[i+2] = the trail's lifetime (s), ARGV[i+3] = its bound, then the
/// entries (JSON).
pub const AUDIT_FN: &str = r#"
local function audit(stream, i)
  local n = tonumber(ARGV[i])
  if n == 0 then return end
  for e = 1, n do
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[i + 3], '*', 'e', ARGV[i + 3 + e])
  end
  redis.call('XTRIM', stream, 'MINID', '~', ARGV[i + 1])
  redis.call('EXPIRE', stream, ARGV[i + 2])
end
"#;

/// Sets a hash field or a string, with its audit entries, if it is still
/// what the entries were made from.
///
/// ```text
/// KEYS[1] the hash (or string)   KEYS[2] the account's audit trail
/// ARGV[1] 'hset' | 'set'   ARGV[2] field ('' for a string)   ARGV[3] value
/// ARGV[4] what it replaces: 'any', 'absent', or 'bytes' (ARGV[5])
/// ARGV[6..] the audit entries (see AUDIT_FN)
/// ```
///
/// Returns 1 if the field (or string) is new, 0 if it was replaced, -1
/// (nothing written) if it is not what ARGV[4] says.
pub const AUDITED_SET: &str = r#"
local cur
if ARGV[1] == 'hset' then cur = redis.call('HGET', KEYS[1], ARGV[2])
else cur = redis.call('GET', KEYS[1]) end
if (ARGV[4] == 'absent' and cur) or (ARGV[4] == 'bytes' and cur ~= ARGV[5]) then
  return -1
end
if ARGV[1] == 'hset' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
else redis.call('SET', KEYS[1], ARGV[3]) end
audit(KEYS[2], 6)
if cur then return 0 end
return 1
"#;

/// Deletes a hash field, and with it more keys; its audit entries are
/// stored only if the field existed.
///
/// ```text
/// KEYS[1] the hash   KEYS[2] the account's audit trail   KEYS[3..] deleted too
/// ARGV[1] field   ARGV[2..] the audit entries (see AUDIT_FN)
/// ```
///
/// Returns 1 if the field existed, else 0.
pub const AUDITED_HDEL: &str = r#"
for k = 3, #KEYS do redis.call('DEL', KEYS[k]) end
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then audit(KEYS[2], 2) end
return removed
"#;

/// Deletes an account's own record last (its other keys are gone), with the
/// audit entries of its deletion if it existed.
///
/// ```text
/// KEYS[1] the account record   KEYS[2] the account's audit trail
/// ARGV[1..] the audit entries (see AUDIT_FN)
/// ```
pub const AUDITED_UNLINK: &str = r#"
local removed = redis.call('UNLINK', KEYS[1])
if removed == 1 then audit(KEYS[2], 1) end
return removed
"#;

/// Prepends [`AUDIT_FN`] to a script that calls `audit`.
pub fn with_audit(script: &str) -> String {
    format!("{AUDIT_FN}{script}")
}

/// A page of an index of sessions (reads only).
///
/// ```text
/// KEYS[1] the index (zset: session → ms)
/// ARGV[1] the cursor's score ('-inf' from the start)
/// ARGV[2] the cursor's session ('' from the start)   ARGV[3] page size
/// ```
///
/// Returns `{session, score, ...}` after the cursor, in order.
pub const SESSIONS_PAGE: &str = r#"
local limit = tonumber(ARGV[3])
local got = redis.call('ZRANGE', KEYS[1], ARGV[1], '+inf', 'BYSCORE', 'LIMIT', 0, limit + 64, 'WITHSCORES')
local out = {}
for i = 1, #got, 2 do
  local member, score = got[i], got[i + 1]
  if not (ARGV[2] ~= '' and tonumber(score) == tonumber(ARGV[1]) and member <= ARGV[2]) then
    out[#out + 1] = member
    out[#out + 1] = score
    if #out >= 2 * limit then break end
  end
end
return out
"#;

/// First accept wins: the claim is a key set if absent, with a fencing
/// token from the account's counter.
///
/// ```text
/// KEYS[1] the invitation's claim   KEYS[2] the account's fencing counter
/// ARGV[1] the agent                ARGV[2] the claim's ttl (ms)
/// ```
///
/// Returns `{1, fence}` when the agent holds the claim (also when it asks
/// again), `{0, holder}` when another agent does.
pub const CLAIM: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local holder = string.sub(cur, 1, sep - 1)
  if holder == ARGV[1] then return {1, string.sub(cur, sep + 1)} end
  return {0, holder}
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
return {1, tostring(fence)}
"#;

/// Gives a claim back, only if `ARGV[1]` holds it.
///
/// ```text
/// KEYS[1] the invitation's claim   ARGV[1] the agent
/// ```
pub const RELEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|' then
  redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Everything an accept needs, in one round trip (reads only).
///
/// ```text
/// KEYS[1] presence hash   KEYS[2] online set     KEYS[3] active hash
/// KEYS[4] session hash    KEYS[5] session history
/// ARGV[1] agent   ARGV[2] invitation   ARGV[3] the caller's known version
/// ('' for none)   ARGV[4] now (ms)
/// ```
///
/// Returns `{portal, active, version, state, closed}`, `false` for what is
/// absent; `state` only when the stored version is not the known one.
pub const ACCEPT_CONTEXT: &str = r#"
local portal = redis.call('HGET', KEYS[1], ARGV[1])
local expires = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expires or tonumber(expires) <= tonumber(ARGV[4]) then portal = false end
local active = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local v = redis.call('HGET', KEYS[4], 'v')
local state = false
if v and v ~= ARGV[3] then state = redis.call('HGET', KEYS[4], 's') end
local closed = redis.call('HGET', KEYS[5], ARGV[2])
return {portal, active, v, state, closed}
"#;

/// Logs an agent into a portal.
///
/// ```text
/// KEYS[1] presence hash   KEYS[2] online set   KEYS[3] the portal's set
/// KEYS[4] this node's `held` hash (the agent is kept there as 'l', logged
///         in through it, unless it streams from it: 's' stays)
/// KEYS[5..] the sets of the agent's other portals
/// ARGV[1] agent   ARGV[2] portal   ARGV[3] presence expiry (ms)   ARGV[4] now (ms)
/// ```
///
/// Returns the portal it was logged into before, if that login was live.
pub const LOGIN: &str = r#"
local previous = redis.call('HGET', KEYS[1], ARGV[1])
local expires = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expires or tonumber(expires) <= tonumber(ARGV[4]) then previous = false end
for k = 5, #KEYS do redis.call('SREM', KEYS[k], ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HSETNX', KEYS[4], ARGV[1], 'l')
return previous
"#;

/// Logs an agent out.
///
/// ```text
/// KEYS[1] presence hash   KEYS[2] online set   KEYS[3] the audit trail
/// KEYS[4..] its portals' sets
/// ARGV[1] agent   ARGV[2] now (ms)   ARGV[3..] audit entries (AUDIT_FN),
/// stored only if the agent was logged in
/// ```
///
/// Returns the portal it was logged into, if that login was live.
pub const LOGOUT: &str = r#"
local previous = redis.call('HGET', KEYS[1], ARGV[1])
local expires = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expires or tonumber(expires) <= tonumber(ARGV[2]) then previous = false end
for k = 4, #KEYS do redis.call('SREM', KEYS[k], ARGV[1]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
-- Recorded only if it was logged in: a logout of nobody changes nothing.
if previous then audit(KEYS[3], 3) end
return previous
"#;

/// The agents logged into one portal now (reads only).
///
/// ```text
/// KEYS[1] the portal's set   KEYS[2] online set   KEYS[3] presence hash
/// KEYS[4] the account's portals
/// ARGV[1] portal   ARGV[2] now (ms)
/// ```
///
/// A member counts if its presence is live and still names this portal.
/// Returns `false` (nil) when the account has no such portal.
pub const ONLINE_IN: &str = r#"
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then return false end
local members = redis.call('SMEMBERS', KEYS[1])
local now = tonumber(ARGV[2])
local live = {}
-- In slices: Lua's unpack takes at most a few thousand values.
for from = 1, #members, 1000 do
  local slice = {unpack(members, from, math.min(from + 999, #members))}
  local scores = redis.call('ZMSCORE', KEYS[2], unpack(slice))
  local portals = redis.call('HMGET', KEYS[3], unpack(slice))
  for k, agent in ipairs(slice) do
    if scores[k] and tonumber(scores[k]) > now and portals[k] == ARGV[1] then
      live[#live + 1] = agent
    end
  end
end
return live
"#;

/// The collaboration window's data (reads only).
///
/// ```text
/// KEYS[1] online set   KEYS[2] presence hash   KEYS[3] agents hash
/// KEYS[4] active hash  KEYS[5] portals hash
/// ARGV[1] now (ms)
/// ```
///
/// Returns `{ids, portal ids, agent profiles, active counts, portals}`: the
/// first four aligned, one entry per agent online now; the last the flat
/// field/value list of the portals hash.
pub const WINDOW: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local portals, profiles, actives = {}, {}, {}
-- In slices: Lua's unpack takes at most a few thousand values.
for from = 1, #ids, 1000 do
  local slice = {unpack(ids, from, math.min(from + 999, #ids))}
  for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(slice))) do portals[#portals + 1] = v end
  for _, v in ipairs(redis.call('HMGET', KEYS[3], unpack(slice))) do profiles[#profiles + 1] = v end
  for _, v in ipairs(redis.call('HMGET', KEYS[4], unpack(slice))) do actives[#actives + 1] = v end
end
return {ids, portals, profiles, actives, redis.call('HGETALL', KEYS[5])}
"#;

/// A timer may have become its account's earliest: make sure the index
/// looks at the account by then, and tell pollers it changed.
///
/// ```text
/// KEYS[1] timer index   KEYS[2] timer generations
/// ARGV[1] account       ARGV[2] the earliest timer (ms)
/// ```
pub const TIMER_INDEX_TOUCH: &str = r#"
redis.call('ZADD', KEYS[1], 'LT', ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 0
"#;

/// Takes accounts whose timers may be due, leasing each (its score moves
/// to ARGV[3]) so that one poller at a time looks at it.
///
/// ```text
/// KEYS[1] timer index   KEYS[2] timer generations
/// ARGV[1] now (ms)      ARGV[2] most accounts   ARGV[3] lease until (ms)
/// ```
///
/// Returns a flat list: account, its generation ('' if none), ...
pub const TIMER_INDEX_TAKE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, account in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], account)
  out[#out + 1] = account
  out[#out + 1] = redis.call('HGET', KEYS[2], account) or ''
end
return out
"#;

/// Takes an account's due timers, leasing each (its score moves to
/// ARGV[3], so it comes back to another node if this one never completes
/// it), and says when the account's next timer is due.
///
/// ```text
/// KEYS[1] the account's timer set
/// ARGV[1] now (ms)   ARGV[2] most timers   ARGV[3] lease until (ms)
/// ```
///
/// Returns `{members, due times, earliest}`; `earliest` is '' when the set
/// is empty.
pub const TIMERS_TAKE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local members, times = {}, {}
for k = 1, #due, 2 do
  members[#members + 1] = due[k]
  times[#times + 1] = due[k + 1]
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], due[k])
end
local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] or ''
return {members, times, earliest}
"#;

/// Settles an account's place in the timer index after its timers were
/// taken — only if no timer became its earliest meanwhile (the generation
/// is unchanged); otherwise the index keeps the earlier time it was given.
///
/// ```text
/// KEYS[1] timer index   KEYS[2] timer generations
/// ARGV[1] account   ARGV[2] the generation read when it was taken
/// ARGV[3] its earliest timer (ms), or '' when it has none
/// ```
pub const TIMER_INDEX_SETTLE: &str = r#"
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  -- The generation stays: removing it could let a stale poller's
  -- generation match again later.
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
"#;

/// A delivered timer was handled: remove it, unless it was armed again
/// since (its score is no longer the lease it was delivered with).
///
/// ```text
/// KEYS[1] the account's timer set   ARGV[1] member   ARGV[2] lease (ms)
/// ```
pub const TIMER_COMPLETE: &str = r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

/// A page of a transcript, newest first (reads only): at most ARGV[2]
/// messages numbered below ARGV[1]. Number n sits at index n - 1 of the
/// paged list; the page is clamped to the list, so a `before` beyond its
/// end reads the newest messages (never more than the limit).
///
/// ```text
/// KEYS[1] the list paged: the full transcript, or the customer's list
///         (which holds positions, seq, in the full one)
/// KEYS[2] the full transcript
/// ARGV[1] number to page below ('' for the newest)   ARGV[2] limit (>= 1)
/// ```
///
/// Returns the messages, oldest first.
pub const TRANSCRIPT_PAGE: &str = r#"
local stop = redis.call('LLEN', KEYS[1]) - 1
if ARGV[1] ~= '' then
  local below = tonumber(ARGV[1]) - 2
  if below < stop then stop = below end
end
if stop < 0 then return {} end
local start = stop - tonumber(ARGV[2]) + 1
if start < 0 then start = 0 end
local items = redis.call('LRANGE', KEYS[1], start, stop)
if KEYS[1] == KEYS[2] then return items end
local out = {}
for _, seq in ipairs(items) do
  local m = redis.call('LINDEX', KEYS[2], tonumber(seq) - 1)
  if m then out[#out + 1] = m end
end
return out
"#;

/// An account's earliest timer (ms), or nil when it has none (reads only).
///
/// ```text
/// KEYS[1] the account's timer set
/// ```
pub const TIMERS_EARLIEST: &str = r#"
return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
"#;

/// `Idempotency-Key`: the record under KEYS[1] if there is one, else
/// stores ARGV[1] there for ARGV[2] ms and answers nil (the caller holds
/// the key). One step, so two racing requests cannot both hold it.
pub const IDEMPOTENCY_RESERVE: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// A page of an account's audit trail (reads only).
///
/// ```text
/// KEYS[1] the trail (stream)
/// ARGV[1] the first id ('-' from the oldest, '(ms-seq' after an id)
/// ARGV[2] page size
/// ```
///
/// Returns `{id, entry, id, entry, ...}`, oldest first.
pub const AUDIT_PAGE: &str = r#"
local got = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local out = {}
for _, item in ipairs(got) do
  out[#out + 1] = item[1]
  out[#out + 1] = item[2][2]
end
return out
"#;

/// Keeps the agents one node serves in one account online.
///
/// ```text
/// KEYS[1] online set   KEYS[2] this node's `held` hash
/// ARGV[1] now (ms)   ARGV[2] presence expiry (ms)   ARGV[3] prune below (ms)
/// ARGV[4] held's lifetime (s)   ARGV[5] n   ARGV[6..5+n] agents streaming
/// from this node   ARGV[6+n..] agents only logged in through it
/// ```
///
/// A streamed agent is refreshed (`XX`: never brought back after a logout,
/// but brought back after a fade: it is reachable here). An agent only
/// logged in here is kept online while it is, never brought back: if its
/// streams were on a node that died, it faded and stays so until a stream
/// or a login brings it back. Writes `held` again (what the ticks wrote,
/// unless a reap that raced a comeback deleted it), prunes presence that
/// expired long ago, and keeps `held` alive while the node is (a dead
/// node's is reaped, or expires).
pub const HEARTBEAT: &str = r#"
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[5])
for i = 6, 5 + n do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], 's')
end
for i = 6 + n, #ARGV do
  local expires = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]))
  if expires and expires > now then redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i]) end
  redis.call('HSET', KEYS[2], ARGV[i], 'l')
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 0
"#;

/// Renews this node's lease and takes the leases of dead nodes, each by
/// one node at a time (the script is atomic). Time is the Redis server's
/// (`TIME`), so the nodes' clocks do not matter.
///
/// ```text
/// KEYS[1] the node leases (zset: node → lease end, ms)
/// KEYS[2] since (hash: node → when its unbroken run of renewals began)
/// KEYS[3] this node's `node:{n}:accounts` set (its lifetime is renewed)
/// KEYS[4] reaping (hash: node taken for dead → the node reaping it)
/// ARGV[1] this node   ARGV[2] lease (ms)   ARGV[3] grace (ms)
/// ARGV[4] backstop (ms)   ARGV[5] the accounts set's lifetime (s)
/// ARGV[6] how long a reaper has before another node takes over (ms)
/// ```
///
/// A lease that ran out more than a grace ago is taken only by a node that
/// was renewing without a break when it ran out, so a Redis outage that
/// stopped every node's renewals reaps nobody; past the backstop it is
/// taken anyway (the node died during such an outage). A taken lease stays,
/// pushed a reaper's time ahead, until its reaper says it is done
/// (`LEASE_DONE`): if this answer is lost or the reaper dies, another node
/// takes it again. Returns `{rejoined, {dead...}, {live...}}`: `rejoined`
/// is 1 when this node had no lease or was being reaped (it starts, or it
/// was taken for dead) and must write what it holds again; `live` are the
/// nodes leased and not being reaped, this one among them.
pub const LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local prev = tonumber(redis.call('ZSCORE', KEYS[1], me))
local since = tonumber(redis.call('HGET', KEYS[2], me))
local rejoined = 0
if (not prev) or redis.call('HDEL', KEYS[4], me) == 1 then rejoined = 1 end
if rejoined == 1 or prev < now or (not since) then
  since = now
  redis.call('HSET', KEYS[2], me, now)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), me)
redis.call('EXPIRE', KEYS[3], ARGV[5])
local dead = {}
local lapsed = redis.call('ZRANGE', KEYS[1], '-inf', now - tonumber(ARGV[3]), 'BYSCORE', 'WITHSCORES')
for i = 1, #lapsed, 2 do
  local ran_out = tonumber(lapsed[i + 1])
  if since < ran_out or ran_out < now - tonumber(ARGV[4]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), lapsed[i])
    redis.call('HSET', KEYS[4], lapsed[i], me)
    dead[#dead + 1] = lapsed[i]
  end
end
local live = {}
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('HEXISTS', KEYS[4], node) == 0 then live[#live + 1] = node end
end
return {rejoined, dead, live}
"#;

/// A dead node was reaped: its lease goes, unless it came back meanwhile
/// (then `LEASE` took its `reaping` entry away, and it keeps its lease).
///
/// ```text
/// KEYS[1] the node leases   KEYS[2] since   KEYS[3] reaping
/// KEYS[4] the dead node's accounts set   ARGV[1] the dead node
/// ```
pub const LEASE_DONE: &str = r#"
if redis.call('HDEL', KEYS[3], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[4])
end
return 0
"#;

/// Fades the agents a dead node served in one account.
///
/// ```text
/// KEYS[1] the dead node's `held` hash (agent → 's' streams, 'l' logged in)
/// KEYS[2] online set   KEYS[3..] the `held` hashes of the live nodes
/// ARGV[1] now (ms)
/// ```
///
/// An agent a live node streams to stays; any other that was online
/// expires now (a node that streams to it later brings it back). Deletes
/// KEYS[1]. Returns the agents it faded.
pub const REAP: &str = r#"
local now = tonumber(ARGV[1])
local faded = {}
for _, agent in ipairs(redis.call('HKEYS', KEYS[1])) do
  local streamed = false
  for k = 3, #KEYS do
    if redis.call('HGET', KEYS[k], agent) == 's' then streamed = true break end
  end
  local expires = tonumber(redis.call('ZSCORE', KEYS[2], agent))
  if not streamed and expires and expires > now then
    redis.call('ZADD', KEYS[2], now, agent)
    faded[#faded + 1] = agent
  end
end
redis.call('DEL', KEYS[1])
return faded
"#;
