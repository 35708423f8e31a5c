//! The Redis keyspace: every key and channel collabd uses is built here and
//! nowhere else.
//!
//! Every key and channel of an account carries the hash tag `{ns:account}`,
//! so all of an account lives in one Redis Cluster slot and every script
//! touches one slot. The only keys outside an account are the small index
//! of accounts with timers and the list of accounts (`{ns}` tag).
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
//! | `collabd:{ns:a}:claim:{i}` | string | `agent|fence`, with a TTL |
//! | `collabd:{ns:a}:fence` | string | the account's fencing counter |
//! | `collabd:{ns:a}:timers` | zset | timer member → due time (ms) |
//! | `collabd:{ns:a}:sessions:active` | zset | active session → created (ms) |
//! | `collabd:{ns:a}:sessions:ended` | zset | ended session → ended (ms), until its retention ends |
//! | `collabd:{ns:a}:revoked:agent:{g}` | string | tokens of g minted before (ms) are refused; TTL: the longest token life |
//! | `collabd:{ns:a}:revoked:account` | string | the same for every agent of the account (a deleted account) |
//! | `collabd:{ns}:accounts` | zset | every account id (score 0, listed by id) |
//! | `collabd:{ns:a}:rate:{token}` | hash | a token's request bucket (`t` left, `ts` ms); expires when full |
//! | `collabd:{ns}:rate:admin` | hash | the admin token's request bucket |
//! | `collabd:{ns}:timer-index` | zset | account → when to look at its timers (ms) |
//! | `collabd:{ns}:timer-gen` | hash | account → bumped whenever a timer may have become its earliest |
//!
//! Channels: `collabd:{ns:a}:chan:session:{s}`, `…:chan:agent:{g}`,
//! `…:chan:portal:{p}`.

use crate::domain::session::{SessionStatus, Target, Timer};
use crate::domain::{AccountId, AgentId, InvitationId, PortalId, SessionId};

use super::Topic;

/// Builds the keys of one namespace.
#[derive(Debug, Clone)]
pub struct Keyspace {
    namespace: String,
}

/// The keys of one account.
#[derive(Debug, Clone)]
pub struct AccountKeys {
    /// `collabd:{ns:account}:`
    prefix: String,
}

impl Keyspace {
    /// The keyspace of `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
        }
    }

    /// The keys of `account`.
    pub fn account(&self, account: &AccountId) -> AccountKeys {
        AccountKeys {
            prefix: format!("collabd:{{{}:{}}}:", self.namespace, account.as_str()),
        }
    }

    /// Accounts with timers, scored by when to look at them next.
    pub fn timer_index(&self) -> String {
        format!("collabd:{{{}}}:timer-index", self.namespace)
    }

    /// The admin token's request bucket.
    pub fn admin_bucket(&self) -> String {
        format!("collabd:{{{}}}:rate:admin", self.namespace)
    }

    /// Every account's id, for the admin's list.
    pub fn accounts(&self) -> String {
        format!("collabd:{{{}}}:accounts", self.namespace)
    }

    /// Per account, a counter bumped whenever a timer may have become its
    /// earliest (so a poller never raises the index past it).
    pub fn timer_gen(&self) -> String {
        format!("collabd:{{{}}}:timer-gen", self.namespace)
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

    /// A `SCAN` pattern matching every key of the account (ids and
    /// namespaces hold no glob characters).
    pub fn pattern(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// Whether `key` is a revocation mark (kept when the account is deleted).
    pub fn is_revocation(&self, key: &str) -> bool {
        key.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with("revoked:"))
    }
}

/// A timer's member in its account's timer set: the same text for the same
/// timer, so arming again moves it and disarming finds it.
pub fn timer_member(session: &SessionId, timer: &Timer) -> String {
    match timer {
        Timer::Expiry(invitation) => format!("{}|x|{}", session.as_str(), invitation.as_str()),
        Timer::Idle => format!("{}|idle", session.as_str()),
    }
}

/// The session and timer a timer member names.
pub fn parse_timer_member(member: &str) -> Option<(SessionId, Timer)> {
    let mut parts = member.split('|');
    let session = SessionId::parse(parts.next()?).ok()?;
    let timer = match (parts.next()?, parts.next()) {
        ("x", Some(invitation)) => Timer::Expiry(InvitationId::parse(invitation).ok()?),
        ("idle", None) => Timer::Idle,
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
        assert_eq!(space.timer_index(), "collabd:{prod}:timer-index");
    }

    #[test]
    fn timer_members_round_trip() {
        let session = SessionId::random();
        for timer in [Timer::Idle, Timer::Expiry(InvitationId::within(&session))] {
            let member = timer_member(&session, &timer);
            assert_eq!(parse_timer_member(&member), Some((session.clone(), timer)));
        }
        assert_eq!(parse_timer_member("garbage"), None);
        assert_eq!(parse_timer_member("ses-1|idle|x"), None);
    }
}
