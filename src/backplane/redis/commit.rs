//! A commit as one call of the COMMIT script (`scripts::COMMIT`): each
//! [`Effect`] of the plan becomes one or more typed [`Op`]s, the script's
//! only vocabulary. A test holds the script's op names and [`Op::ALL`]
//! together, so neither side can grow an op the other does not know.

use std::sync::Arc;

use super::{RedisBackplane, audit_floor, audit_json, pubsub};
use crate::backplane::keys::{AccountKeys, timer_member};
use crate::backplane::plan::{self, Effect};
use crate::backplane::{BusMessage, Commit, SessionCursor, Topic, codec};
use crate::domain::AccountId;
use crate::domain::audit::MAX_ACCOUNT_ENTRIES;
use crate::domain::policy::trail_kept;
use crate::domain::session::SessionStatus;

/// Declares [`Op`], its [`Op::ALL`] and its names at once, so an op cannot
/// be added without a name nor left out of the script test.
macro_rules! ops {
    ($($(#[$doc:meta])* $op:ident => $name:literal,)+) => {
        /// What the COMMIT script does with one key and two arguments `a`, `b`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum Op {
            $($(#[$doc])* $op,)+
        }

        impl Op {
            /// Every op, for the test against the script.
            #[cfg(test)]
            pub(super) const ALL: &[Op] = &[$(Op::$op,)+];

            /// Its name in the script.
            pub(super) fn name(self) -> &'static str {
                match self {
                    $(Op::$op => $name,)+
                }
            }
        }
    };
}

ops! {
    /// `RPUSH key a`.
    Rpush => "rpush",
    /// `HSET key a b`.
    Hset => "hset",
    /// `HDEL key a`.
    Hdel => "hdel",
    /// `DEL key`.
    Del => "del",
    /// `SADD key a`; if new, the active counter of agent `b` goes up.
    Join => "join",
    /// `SREM key a`; if it was there, the counter of agent `b` goes down.
    Leave => "leave",
    /// `ZADD key b a` on the timer set (the answer tells whether it is now
    /// the earliest).
    Arm => "arm",
    /// `ZREM key a` on the timer set.
    Disarm => "disarm",
    /// `EXPIRE key a`.
    Expire => "expire",
    /// `ZADD key b a`.
    Zadd => "zadd",
    /// `ZREM key a`.
    Zrem => "zrem",
    /// Removes the members scored below `a`.
    Zprune => "zprune",
    /// `EXPIRE key a` unless the key lives longer already.
    Keepfor => "keepfor",
    /// `RPUSH key a` (the session's trail) and `XADD` to the account's
    /// stream, bounded by `b`.
    Audit => "audit",
    /// `XTRIM key MINID a`, `EXPIRE key b`.
    Xprune => "xprune",
}

/// One op with its key and arguments.
struct Encoded {
    key: String,
    op: Op,
    a: Vec<u8>,
    b: Vec<u8>,
}

/// The ops of `commit`, effect by effect.
fn ops(k: &AccountKeys, commit: &Commit<'_>) -> Vec<Encoded> {
    let sid = &commit.session.id;
    let bytes = |s: &str| s.as_bytes().to_vec();
    let number = |n: i64| n.to_string().into_bytes();
    let effects = plan::effects(commit);
    let mut out = Vec::with_capacity(effects.len() + 8);
    let mut op = |key: String, op: Op, a: Vec<u8>, b: Vec<u8>| {
        out.push(Encoded { key, op, a, b });
    };
    for effect in effects {
        match effect {
            Effect::Listed => {
                let listed = SessionCursor::of(commit.session);
                op(
                    k.sessions_index(SessionStatus::Active),
                    Op::Zadd,
                    bytes(sid.as_str()),
                    number(listed.at_ms),
                );
            }
            Effect::Posted {
                message,
                to_customer,
            } => {
                op(k.chat(sid), Op::Rpush, codec::encode(message), Vec::new());
                if to_customer {
                    // The customer transcript holds positions in the full one.
                    op(
                        k.customer_chat(sid),
                        Op::Rpush,
                        message.seq.to_string().into_bytes(),
                        Vec::new(),
                    );
                }
            }
            Effect::Audited(entry) => op(
                k.session_audit(sid),
                Op::Audit,
                audit_json(entry).into_bytes(),
                MAX_ACCOUNT_ENTRIES.to_string().into_bytes(),
            ),
            Effect::AuditTrimmed => op(
                k.audit(),
                Op::Xprune,
                number(audit_floor(trail_kept(commit.retention))),
                trail_kept(commit.retention)
                    .as_secs()
                    .to_string()
                    .into_bytes(),
            ),
            Effect::Archived(invitation) => op(
                k.history(sid),
                Op::Hset,
                bytes(invitation.id.as_str()),
                codec::encode(invitation),
            ),
            Effect::ClaimDropped(invitation) => {
                op(k.claim(invitation), Op::Del, Vec::new(), Vec::new());
            }
            Effect::Opened { invitation, target } => op(
                k.open(target),
                Op::Hset,
                bytes(invitation.as_str()),
                bytes(sid.as_str()),
            ),
            Effect::Unlisted { invitation, target } => op(
                k.open(target),
                Op::Hdel,
                bytes(invitation.as_str()),
                Vec::new(),
            ),
            Effect::Joined(agent) => op(
                k.agent_sessions(agent),
                Op::Join,
                bytes(sid.as_str()),
                bytes(agent.as_str()),
            ),
            Effect::Left(agent) => op(
                k.agent_sessions(agent),
                Op::Leave,
                bytes(sid.as_str()),
                bytes(agent.as_str()),
            ),
            Effect::Disarmed(timer) => op(
                k.timers(),
                Op::Disarm,
                timer_member(sid, timer).into_bytes(),
                Vec::new(),
            ),
            Effect::Armed(timer, at) => op(
                k.timers(),
                Op::Arm,
                timer_member(sid, timer).into_bytes(),
                number(at.timestamp_millis()),
            ),
            Effect::Ended { retention } => {
                let listed = SessionCursor::of(commit.session);
                let ended = k.sessions_index(SessionStatus::Ended);
                let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                op(
                    k.sessions_index(SessionStatus::Active),
                    Op::Zrem,
                    bytes(sid.as_str()),
                    Vec::new(),
                );
                // Sessions whose retention ended leave the list as this one
                // joins it.
                op(
                    ended.clone(),
                    Op::Zprune,
                    number(listed.at_ms.saturating_sub(retention_ms)),
                    Vec::new(),
                );
                op(
                    ended.clone(),
                    Op::Zadd,
                    bytes(sid.as_str()),
                    number(listed.at_ms),
                );
                let secs = retention.as_secs().max(1).to_string().into_bytes();
                op(ended, Op::Keepfor, secs.clone(), Vec::new());
                for key in [
                    k.session(sid),
                    k.chat(sid),
                    k.customer_chat(sid),
                    k.history(sid),
                    k.session_audit(sid),
                ] {
                    op(key, Op::Expire, secs.clone(), Vec::new());
                }
            }
        }
    }
    out
}

impl RedisBackplane {
    /// Builds the commit script's call (see `scripts::COMMIT` for the layout).
    pub(super) fn commit_call<'s>(
        &'s self,
        account: &AccountId,
        commit: &Commit<'_>,
    ) -> redis::ScriptInvocation<'s> {
        let k = self.account_keys(account);
        let sid = &commit.session.id;
        let mut call = self.scripts.commit.prepare_invoke();
        call.key(k.session(sid))
            .key(k.active())
            .key(k.timers())
            .key(k.audit());
        call.arg(commit.expected_version)
            .arg(codec::encode(commit.session));
        match commit.guard {
            Some(g) => call.arg(g.agent.as_str()).arg(g.below),
            None => call.arg("").arg(0),
        };
        let ops = ops(&k, commit);
        call.arg(ops.len());
        for Encoded { key, op, a, b } in ops {
            call.key(key).arg(op.name()).arg(a).arg(b);
        }
        // One payload per event and route, published to each of its channels.
        let groups = group_publishes(commit.publish);
        call.arg(groups.len());
        for (message, topics) in groups {
            call.arg(pubsub::encode(message)).arg(topics.len());
            for topic in topics {
                call.arg(self.keys.channel(topic));
            }
        }
        call
    }
}

/// Groups consecutive publishes of the same message (the same event for the
/// same route, to several topics) so its payload crosses to Redis once.
fn group_publishes(publish: &[(Topic, BusMessage)]) -> Vec<(&BusMessage, Vec<&Topic>)> {
    let mut groups: Vec<(&BusMessage, Vec<&Topic>)> = Vec::new();
    for (topic, message) in publish {
        match groups.last_mut() {
            Some((last, topics)) if same_payload(last, message) => topics.push(topic),
            _ => groups.push((message, vec![topic])),
        }
    }
    groups
}

fn same_payload(a: &BusMessage, b: &BusMessage) -> bool {
    match (a, b) {
        (
            BusMessage::Session {
                version: va,
                events: ea,
                ..
            },
            BusMessage::Session {
                version: vb,
                events: eb,
                ..
            },
        ) => {
            va == vb
                && ea.len() == eb.len()
                && ea.iter().zip(eb).all(|(x, y)| {
                    x.index == y.index && x.route == y.route && Arc::ptr_eq(&x.event, &y.event)
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Op;
    use crate::backplane::redis::scripts::COMMIT;

    /// The op names the script compares `kind` with.
    fn script_ops() -> BTreeSet<&'static str> {
        COMMIT
            .split("kind == '")
            .skip(1)
            .filter_map(|rest| rest.split('\'').next())
            .collect()
    }

    #[test]
    fn every_op_of_the_script_is_a_rust_op_and_back() {
        let rust: BTreeSet<&str> = Op::ALL.iter().map(|op| op.name()).collect();
        let script = script_ops();
        assert_eq!(
            script.difference(&rust).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "the script knows ops Rust never sends"
        );
        assert_eq!(
            rust.difference(&script).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "Rust sends ops the script does not know"
        );
    }
}
