//! The Redis keyspace: every key and channel collabd uses is built here and
//! nowhere else.
//!
//! Every key and channel of an account carries the hash tag `{ns:account}`,
//! so all of an account lives in one Redis Cluster slot and every script
//! touches one slot. The only keys outside an account are the small index
//! of accounts with timers and the list of accounts. On one Redis each is
//! one key (`{ns}` tag); on a Redis Cluster each is split into
//! [`CLUSTER_BUCKETS`] buckets (`{ns/b}` tags, an account always in the
//! same bucket) so that no shard holds them all and none is hot: an index
//! update is one command on the account's bucket. `/` cannot appear in an
//! account id, so a bucket's tag never equals an account's.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `collabd:{ns:a}:account` | string | the account (codec) |
//! | `collabd:{ns:a}:portals` | hash | portal id → portal |
//! | `collabd:{ns:a}:agents` | hash | agent id → agent |
//! | `collabd:{ns:a}:presence` | hash | agent id → portal id it logged into |
//! | `collabd:{ns:a}:online` | zset | agent id → presence expiry (ms) |
//! | `collabd:{ns:a}:portal:{p}:online` | set | agents logged into portal p |
//! | `collabd:{ns:a}:active` | hash | agent id → sessions it is active in |
//! | `collabd:{ns:a}:agent:{g}:sessions` | set | session ids agent g is active in |
//! | `collabd:{ns:a}:open:agent:{g}` / `open:portal:{p}` | hash | open invitation → session |
//! | `collabd:{ns:a}:session:{s}` | hash | `v` version, `s` hot state |
//! | `collabd:{ns:a}:session:{s}:chat` | list | every message, index = seq - 1 |
//! | `collabd:{ns:a}:session:{s}:customer-chat` | list | customer-visible messages, index = customer seq - 1 |
//! | `collabd:{ns:a}:session:{s}:history` | hash | closed invitation id → invitation |
//! | `collabd:{ns:a}:session:{s}:audit` | list | the session's audit entries (JSON), oldest first |
//! | `collabd:{ns:a}:audit` | stream | the account's audit entries (field `e`, JSON): trimmed to its retention and to `MAX_ACCOUNT_ENTRIES`; kept when the account is deleted, until it expires |
//! | `collabd:{ns:a}:claim:{i}` | string | `agent|fence`, with a TTL |
//! | `collabd:{ns:a}:fence` | string | the account's fencing counter |
//! | `collabd:{ns:a}:timers` | zset | timer member → due time (ms) |
//! | `collabd:{ns:a}:sessions:active` | zset | active session → created (ms) |
//! | `collabd:{ns:a}:sessions:ended` | zset | ended session → ended (ms), until its retention ends |
//! | `collabd:{ns:a}:revoked:agent:{g}` | string | tokens of g minted before (ms) are refused; TTL: the longest token life |
//! | `collabd:{ns:a}:revoked:account` | string | the same for every agent of the account (a deleted account) |
//! | `collabd:{ns}:accounts` (cluster: `{ns/b}`) | zset | every account id of the bucket (score 0, listed by id) |
//! | `collabd:{ns:a}:rate:{token}` | hash | a token's request bucket (`t` left, `ts` ms); expires when full |
//! | `collabd:{ns}:rate:admin` | hash | the admin token's request bucket (one token, one bucket: the one key of no account or bucket) |
//! | `collabd:{ns}:timer-index` (cluster: `{ns/b}`) | zset | account → when to look at its timers (ms) |
//! | `collabd:{ns}:timer-gen` (cluster: `{ns/b}`) | hash | account → bumped whenever a timer may have become its earliest |
//! | `collabd:{ns}:nodes` | zset | node id → the end of its lease (ms, Redis time), renewed twice a second |
//! | `collabd:{ns}:nodes:since` | hash | node id → when its unbroken run of renewals began |
//! | `collabd:{ns}:nodes:reaping` | hash | node id taken for dead → the node reaping it (until it is done) |
//! | `collabd:{ns}:node:{n}:accounts` | set | accounts node n holds agents of; expires a minute after n stops renewing it |
//! | `collabd:{ns:a}:held:{n}` | hash | agent → `s` (streams from node n) or `l` (logged in through it); expires a minute after n's last heartbeat, deleted when n is reaped |
//!
//! Channels: `collabd:{ns:a}:chan:session:{s}`, `…:chan:agent:{g}`,
//! `…:chan:portal:{p}`.

use crate::domain::session::{SessionStatus, Target, Timer};
use crate::domain::{AccountId, AgentId, InvitationId, PortalId, SessionId};

use super::Topic;

/// Buckets of the account list and the timer index on a Redis Cluster.
pub const CLUSTER_BUCKETS: u16 = 8;

/// Builds the keys of one namespace.
#[derive(Debug, Clone)]
pub struct Keyspace {
    namespace: String,
    /// 1 on one Redis (the keys keep their `{ns}` names), else
    /// [`CLUSTER_BUCKETS`].
    buckets: u16,
}

/// The keys of one account.
#[derive(Debug, Clone)]
pub struct AccountKeys {
    /// `collabd:{ns:account}:`
    prefix: String,
}

impl Keyspace {
    /// The keyspace of `namespace` on one Redis.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            buckets: 1,
        }
    }

    /// The keyspace of `namespace` on a Redis Cluster.
    pub fn clustered(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            buckets: CLUSTER_BUCKETS,
        }
    }

    /// Every bucket of the account list and the timer index.
    pub fn buckets(&self) -> std::ops::Range<u16> {
        0..self.buckets
    }

    /// The bucket `account` is listed and indexed in.
    pub fn bucket_of(&self, account: &AccountId) -> u16 {
        slot(account.as_str().as_bytes()) % self.buckets
    }

    /// The hash tag of bucket `b`: `{ns}` when there is one bucket.
    fn bucket_key(&self, bucket: u16, name: &str) -> String {
        if self.buckets == 1 {
            format!("collabd:{{{}}}:{name}", self.namespace)
        } else {
            format!("collabd:{{{}/{bucket}}}:{name}", self.namespace)
        }
    }

    /// The keys of `account`.
    pub fn account(&self, account: &AccountId) -> AccountKeys {
        AccountKeys {
            prefix: format!("collabd:{{{}:{}}}:", self.namespace, account.as_str()),
        }
    }

    /// Accounts of `bucket` with timers, scored by when to look at them next.
    pub fn timer_index(&self, bucket: u16) -> String {
        self.bucket_key(bucket, "timer-index")
    }

    /// The admin token's request bucket.
    pub fn admin_bucket(&self) -> String {
        format!("collabd:{{{}}}:rate:admin", self.namespace)
    }

    /// The ids of the accounts in `bucket`, for the admin's list.
    pub fn accounts(&self, bucket: u16) -> String {
        self.bucket_key(bucket, "accounts")
    }

    /// Per account of `bucket`, a counter bumped whenever a timer may have
    /// become its earliest (so a poller never raises the index past it).
    pub fn timer_gen(&self, bucket: u16) -> String {
        self.bucket_key(bucket, "timer-gen")
    }

    /// The nodes' leases (`lease.rs`): few members, one key of the `{ns}`
    /// tag on a cluster too (two small calls per node per second).
    pub fn nodes(&self) -> String {
        format!("collabd:{{{}}}:nodes", self.namespace)
    }

    /// When each node's unbroken run of lease renewals began.
    pub fn nodes_since(&self) -> String {
        format!("collabd:{{{}}}:nodes:since", self.namespace)
    }

    /// Nodes taken for dead → the node reaping each.
    pub fn nodes_reaping(&self) -> String {
        format!("collabd:{{{}}}:nodes:reaping", self.namespace)
    }

    /// The accounts `node` holds agents of (read when it is reaped).
    pub fn node_accounts(&self, node: &str) -> String {
        format!("collabd:{{{}}}:node:{node}:accounts", self.namespace)
    }

    /// The channel of a topic.
    pub fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::Session(a, s) => self.account(a).key(&["chan", "session", s.as_str()]),
            Topic::Agent(a, g) => self.account(a).key(&["chan", "agent", g.as_str()]),
            Topic::Portal(a, p) => self.account(a).key(&["chan", "portal", p.as_str()]),
        }
    }
}

impl AccountKeys {
    fn key(&self, parts: &[&str]) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 48);
        k.push_str(&self.prefix);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(':');
            }
            k.push_str(p);
        }
        k
    }

    /// An `Idempotency-Key` record (`key` is a digest: bounded length).
    pub fn idempotency(&self, key: &str) -> String {
        self.key(&["idem", key])
    }

    /// The marker a node writes before `WAIT` (`durable.rs`), one per
    /// account, short-lived.
    pub fn durable_marker(&self) -> String {
        self.key(&["durable"])
    }

    /// The account itself.
    pub fn account(&self) -> String {
        self.key(&["account"])
    }

    /// Its portals.
    pub fn portals(&self) -> String {
        self.key(&["portals"])
    }

    /// Its agents.
    pub fn agents(&self) -> String {
        self.key(&["agents"])
    }

    /// Agent → portal it logged into.
    pub fn presence(&self) -> String {
        self.key(&["presence"])
    }

    /// Agent → presence expiry.
    pub fn online(&self) -> String {
        self.key(&["online"])
    }

    /// The agents `node` keeps online: `s` streams from it, `l` logged in
    /// through it.
    pub fn held(&self, node: &str) -> String {
        self.key(&["held", node])
    }

    /// Agents logged into `portal`.
    pub fn portal_online(&self, portal: &PortalId) -> String {
        self.key(&["portal", portal.as_str(), "online"])
    }

    /// Agent → number of sessions it is active in.
    pub fn active(&self) -> String {
        self.key(&["active"])
    }

    /// The sessions `agent` is active in.
    pub fn agent_sessions(&self, agent: &AgentId) -> String {
        self.key(&["agent", agent.as_str(), "sessions"])
    }

    /// Open invitations sent to `target`.
    pub fn open(&self, target: &Target) -> String {
        match target {
            Target::Agent(agent) => self.key(&["open", "agent", agent.as_str()]),
            Target::Portal(portal) => self.key(&["open", "portal", portal.as_str()]),
        }
    }

    /// A session's version and hot state.
    pub fn session(&self, session: &SessionId) -> String {
        self.key(&["session", session.as_str()])
    }

    /// A session's full transcript.
    pub fn chat(&self, session: &SessionId) -> String {
        self.key(&["session", session.as_str(), "chat"])
    }

    /// The messages of a session its customer may read.
    pub fn customer_chat(&self, session: &SessionId) -> String {
        self.key(&["session", session.as_str(), "customer-chat"])
    }

    /// A session's closed invitations.
    pub fn history(&self, session: &SessionId) -> String {
        self.key(&["session", session.as_str(), "history"])
    }

    /// A session's audit trail.
    pub fn session_audit(&self, session: &SessionId) -> String {
        self.key(&["session", session.as_str(), "audit"])
    }

    /// The account's audit trail.
    pub fn audit(&self) -> String {
        self.key(&["audit"])
    }

    /// The claim on an invitation.
    pub fn claim(&self, invitation: &InvitationId) -> String {
        self.key(&["claim", invitation.as_str()])
    }

    /// The account's fencing counter.
    pub fn fence(&self) -> String {
        self.key(&["fence"])
    }

    /// The account's timers.
    pub fn timers(&self) -> String {
        self.key(&["timers"])
    }

    /// Its sessions with `status`, scored by when they were created
    /// (active) or ended (ended).
    pub fn sessions_index(&self, status: SessionStatus) -> String {
        match status {
            SessionStatus::Active => self.key(&["sessions", "active"]),
            SessionStatus::Ended => self.key(&["sessions", "ended"]),
        }
    }

    /// The revocation mark of `agent`'s tokens, or of the whole account's.
    pub fn revoked(&self, agent: Option<&AgentId>) -> String {
        match agent {
            Some(agent) => self.key(&["revoked", "agent", agent.as_str()]),
            None => self.key(&["revoked", "account"]),
        }
    }

    /// The request bucket of a token of this account (named by its
    /// signature, base64url: no `:` or glob characters).
    pub fn bucket(&self, token: &str) -> String {
        self.key(&["rate", token])
    }

    /// The bucket every customer of the account takes a request from.
    pub fn customers_bucket(&self) -> String {
        self.key(&["customers-rate"])
    }

    /// A `SCAN` pattern matching every key of the account (ids and
    /// namespaces hold no glob characters).
    pub fn pattern(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// Whether `key` outlives the account's deletion: a revocation mark
    /// (lapses on its own), or the audit trail (which records the deletion
    /// and expires with the account's retention).
    pub fn outlives_account(&self, key: &str) -> bool {
        key.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with("revoked:") || rest == "audit")
    }
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag — the
/// text between the first `{` and the next `}` when that is not empty —
/// or of the whole key, modulo 16384 (the cluster specification's
/// `HASH_SLOT`). The channel subscriber uses it to find each channel's
/// shard without a round trip.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16_xmodem(tagged.unwrap_or(key)) % 16384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A timer's member in its account's timer set: the same text for the same
/// timer, so arming again moves it and disarming finds it.
pub fn timer_member(session: &SessionId, timer: &Timer) -> String {
    match timer {
        Timer::Expiry(invitation) => format!("{}|x|{}", session.as_str(), invitation.as_str()),
        Timer::Idle => format!("{}|idle", session.as_str()),
        Timer::Escalate(invitation) => format!("{}|e|{}", session.as_str(), invitation.as_str()),
    }
}

/// The session and timer a timer member names.
pub fn parse_timer_member(member: &str) -> Option<(SessionId, Timer)> {
    let mut parts = member.split('|');
    let session = SessionId::parse(parts.next()?).ok()?;
    let timer = match (parts.next()?, parts.next()) {
        ("x", Some(invitation)) => Timer::Expiry(InvitationId::parse(invitation).ok()?),
        ("idle", None) => Timer::Idle,
        ("e", Some(invitation)) => Timer::Escalate(InvitationId::parse(invitation).ok()?),
        _ => return None,
    };
    parts.next().is_none().then_some((session, timer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_account_shares_its_hash_tag() {
        let space = Keyspace::new("prod");
        let acme = AccountId::parse("acme").unwrap();
        let keys = space.account(&acme);
        let session = SessionId::random();
        let portal = PortalId::parse("support").unwrap();
        let agent = AgentId::parse("ann").unwrap();
        let all = [
            keys.account(),
            keys.portals(),
            keys.agents(),
            keys.presence(),
            keys.online(),
            keys.portal_online(&portal),
            keys.held("3f2a9c"),
            keys.active(),
            keys.agent_sessions(&agent),
            keys.open(&Target::Portal(portal.clone())),
            keys.session(&session),
            keys.chat(&session),
            keys.customer_chat(&session),
            keys.history(&session),
            keys.claim(&InvitationId::within(&session)),
            keys.fence(),
            keys.timers(),
            keys.sessions_index(SessionStatus::Active),
            keys.sessions_index(SessionStatus::Ended),
            keys.revoked(None),
            keys.revoked(Some(&AgentId::parse("bob").unwrap())),
            keys.bucket("abc_DEF-123"),
            space.channel(&Topic::Portal(acme.clone(), portal)),
            space.channel(&Topic::Agent(acme.clone(), agent)),
            space.channel(&Topic::Session(acme, session)),
        ];
        for key in all {
            assert!(key.starts_with("collabd:{prod:acme}:"), "{key}");
        }
        assert_eq!(space.timer_index(0), "collabd:{prod}:timer-index");
        assert_eq!(space.accounts(0), "collabd:{prod}:accounts");
        assert_eq!(space.nodes(), "collabd:{prod}:nodes");
        assert_eq!(
            space.node_accounts("3f2a"),
            "collabd:{prod}:node:3f2a:accounts"
        );
    }

    #[test]
    fn slots_match_the_cluster_specification() {
        // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(
            slot(b"foo{}{bar}"),
            slot(b"bar"),
            "an empty tag hashes the whole key"
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        let space = Keyspace::new("prod");
        let acme = AccountId::parse("acme").unwrap();
        assert_eq!(
            slot(space.account(&acme).account().as_bytes()),
            slot(b"prod:acme")
        );
    }

    #[test]
    fn a_cluster_spreads_the_shared_indexes_over_buckets() {
        let space = Keyspace::clustered("prod");
        assert_eq!(space.buckets().len(), usize::from(CLUSTER_BUCKETS));
        let tags: std::collections::BTreeSet<String> =
            space.buckets().map(|b| space.timer_index(b)).collect();
        assert_eq!(tags.len(), usize::from(CLUSTER_BUCKETS));
        assert_eq!(space.timer_index(3), "collabd:{prod/3}:timer-index");
        assert_eq!(
            slot(space.timer_index(3).as_bytes()),
            slot(space.timer_gen(3).as_bytes())
        );
        let used: std::collections::BTreeSet<u16> = (0..200)
            .map(|i| space.bucket_of(&AccountId::parse(&format!("acct-{i}")).unwrap()))
            .collect();
        assert_eq!(
            used.len(),
            usize::from(CLUSTER_BUCKETS),
            "accounts use every bucket"
        );
        let one = Keyspace::new("prod");
        assert_eq!(one.bucket_of(&AccountId::parse("acme").unwrap()), 0);
    }

    #[test]
    fn timer_members_round_trip() {
        let session = SessionId::random();
        for timer in [
            Timer::Idle,
            Timer::Expiry(InvitationId::within(&session)),
            Timer::Escalate(InvitationId::within(&session)),
        ] {
            let member = timer_member(&session, &timer);
            assert_eq!(parse_timer_member(&member), Some((session.clone(), timer)));
        }
        assert_eq!(parse_timer_member("garbage"), None);
        assert_eq!(parse_timer_member("ses-1|idle|x"), None);
    }
}
