//! A commit's effects (`backplane::plan`) carried out on the maps, one by
//! one, under the store's lock: the counterpart of `redis/commit.rs`.

use std::time::Instant;

use super::timers::{TimerKey, TimerName};
use super::{Store, StoredSession};
use crate::backplane::plan::Effect;
use crate::backplane::{Commit, SessionCursor};
use crate::domain::AccountId;
use crate::domain::policy::trail_kept;
use crate::domain::session::Timer;

impl Store {
    /// Carries out one effect of `commit` (its hot state is stored
    /// already); `true` if it armed a timer earlier than any before.
    pub(super) fn apply(
        &mut self,
        account: &AccountId,
        commit: &Commit<'_>,
        effect: Effect<'_>,
        now: Instant,
    ) -> bool {
        let session = commit.session;
        let id = &session.id;
        let Store {
            accounts,
            timers,
            audit,
            ..
        } = self;
        let data = accounts.entry(account.clone()).or_default();
        let Some(stored) = data.sessions.get_mut(id) else {
            return false;
        };
        let timer_key = |timer: &Timer| TimerKey {
            account: account.clone(),
            session: id.clone(),
            timer: TimerName::from(timer),
        };
        match effect {
            Effect::Listed => {
                // A session deleted after its retention may not come back
                // with its old transcript.
                *stored = StoredSession {
                    version: stored.version,
                    state: std::mem::take(&mut stored.state),
                    ..StoredSession::default()
                };
                data.active_index.insert(SessionCursor::of(session));
            }
            Effect::Posted {
                message,
                to_customer,
            } => {
                if to_customer {
                    stored.customer_chat.push(stored.chat.len() as u32);
                }
                stored.chat.push(message.clone());
            }
            Effect::Audited(entry) => {
                stored.audit.push(entry.clone());
                audit
                    .entry(account.clone())
                    .or_default()
                    .push(entry, now + trail_kept(commit.retention));
            }
            Effect::AuditTrimmed => {
                if let Some(log) = audit.get_mut(account) {
                    log.prune(now);
                }
            }
            Effect::Archived(invitation) => {
                stored
                    .history
                    .insert(invitation.id.clone(), invitation.clone());
            }
            Effect::ClaimDropped(invitation) => {
                data.claims.remove(invitation);
            }
            Effect::Opened { invitation, target } => {
                data.open
                    .entry(target.clone())
                    .or_default()
                    .insert(invitation.clone(), id.clone());
            }
            Effect::Unlisted { invitation, target } => {
                if let Some(open) = data.open.get_mut(target) {
                    open.remove(invitation);
                    if open.is_empty() {
                        data.open.remove(target);
                    }
                }
            }
            Effect::Joined(agent) => {
                data.agent_sessions
                    .entry(agent.clone())
                    .or_default()
                    .insert(id.clone());
            }
            Effect::Left(agent) => {
                if let Some(set) = data.agent_sessions.get_mut(agent) {
                    set.remove(id);
                    if set.is_empty() {
                        data.agent_sessions.remove(agent);
                    }
                }
            }
            Effect::Disarmed(timer) => timers.disarm(&timer_key(timer)),
            Effect::Armed(timer, at) => return timers.arm(timer_key(timer), at.timestamp_millis()),
            Effect::Ended { retention } => {
                stored.delete_at = Some(now + retention);
                data.active_index.remove(&SessionCursor {
                    at_ms: session.created_at.timestamp_millis(),
                    session: id.clone(),
                });
                data.ended_index.insert(SessionCursor::of(session));
            }
        }
        false
    }
}
