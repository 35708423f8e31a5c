//! Session state and its reads; the commit (versioned, guarded) whose
//! effects `commit.rs` applies.

use std::collections::BTreeSet;
use std::time::Instant;

use async_trait::async_trait;

use super::MemoryBackplane;
use crate::backplane::plan::{self};
use crate::backplane::{
    AcceptContext, Commit, Committed, Fresh, Result, SessionCursor, Sessions, Transcript,
    Versioned, codec,
};
use crate::domain::session::{SessionStatus, Target};
use crate::domain::{AccountId, AgentId, Invitation, InvitationId, Message, SessionId};

#[async_trait]
impl Sessions for MemoryBackplane {
    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>> {
        let encoded = {
            let s = self.store();
            s.data(account)
                .and_then(|d| d.session(session, Instant::now()))
                .map(|stored| (stored.version, stored.state.clone()))
        };
        let Some((version, bytes)) = encoded else {
            return Ok(None);
        };
        let session = codec::decode(&bytes).map_err(|e| {
            super::BackplaneError::Corrupt(format!("undecodable session state: {e}"))
        })?;
        Ok(Some(Versioned { version, session }))
    }

    async fn refresh(&self, account: &AccountId, session: &SessionId, known: u64) -> Result<Fresh> {
        let version = self
            .store()
            .data(account)
            .and_then(|d| d.session(session, Instant::now()))
            .map(|s| s.version);
        match version {
            None => Ok(Fresh::Gone),
            Some(v) if v == known => Ok(Fresh::Current),
            Some(_) => Ok(self
                .load(account, session)
                .await?
                .map_or(Fresh::Gone, |v| Fresh::Changed(Box::new(v)))),
        }
    }

    async fn commit(&self, account: &AccountId, commit: Commit<'_>) -> Result<Committed> {
        let state = codec::encode(commit.session);
        let now = Instant::now();
        let session_id = &commit.session.id;
        let mut s = self.store();
        let data = s.data_mut(account);
        let current = data.session(session_id, now).map_or(0, |v| v.version);
        if current != commit.expected_version {
            return Ok(Committed::Conflict);
        }
        if let Some(guard) = commit.guard {
            let active = data
                .agent_sessions
                .get(&guard.agent)
                .map_or(0, BTreeSet::len);
            if active as u32 >= guard.below {
                return Ok(Committed::Refused);
            }
        }
        let version = current + 1;
        let stored = data.sessions.entry(session_id.clone()).or_default();
        stored.version = version;
        stored.state = state;
        let mut woke = false;
        for effect in plan::effects(&commit) {
            woke |= s.apply(account, &commit, effect, now);
        }
        for (topic, message) in commit.publish {
            s.publish(topic, message.clone());
        }
        drop(s);
        if woke {
            self.wake.notify_one();
        }
        Ok(Committed::Stored(version))
    }

    async fn accept_context(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
        agent: &AgentId,
        known_version: Option<u64>,
    ) -> Result<AcceptContext> {
        let (context, state) = {
            let s = self.store();
            let Some(d) = s.data(account) else {
                return Ok(AcceptContext {
                    portal: None,
                    active_sessions: 0,
                    version: None,
                    current: None,
                    closed: None,
                });
            };
            let stored = d.session(session, Instant::now());
            let version = stored.map(|s| s.version);
            let state = stored
                .filter(|s| Some(s.version) != known_version)
                .map(|s| (s.version, s.state.clone()));
            (
                AcceptContext {
                    portal: d.presence.get(agent).cloned(),
                    active_sessions: d.agent_sessions.get(agent).map_or(0, |s| s.len() as u32),
                    version,
                    current: None,
                    closed: stored.and_then(|s| s.history.get(invitation).cloned()),
                },
                state,
            )
        };
        let mut context = context;
        if let Some((version, bytes)) = state {
            let session = codec::decode(&bytes).map_err(|e| {
                super::BackplaneError::Corrupt(format!("undecodable session state: {e}"))
            })?;
            context.current = Some(Versioned { version, session });
        }
        Ok(context)
    }

    async fn closed_invitation(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
    ) -> Result<Option<Invitation>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.session(session, Instant::now()))
            .and_then(|s| s.history.get(invitation).cloned()))
    }

    async fn messages(
        &self,
        account: &AccountId,
        session: &SessionId,
        transcript: Transcript,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let s = self.store();
        let Some(stored) = s
            .data(account)
            .and_then(|d| d.session(session, Instant::now()))
        else {
            return Ok(Vec::new());
        };
        // Position i holds number i + 1 in either transcript.
        let len = match transcript {
            Transcript::Agents => stored.chat.len(),
            Transcript::Customer => stored.customer_chat.len(),
        };
        let end = before
            .map(|b| (b.saturating_sub(1) as usize).min(len))
            .unwrap_or(len);
        let start = end.saturating_sub(limit);
        let page = (start..end).rev().filter_map(|i| match transcript {
            Transcript::Agents => stored.chat.get(i).cloned(),
            Transcript::Customer => stored
                .customer_chat
                .get(i)
                .and_then(|at| stored.chat.get(*at as usize).cloned()),
        });
        Ok(page.collect())
    }

    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.agent_sessions.get(agent))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn open_invitations(
        &self,
        account: &AccountId,
        target: &Target,
    ) -> Result<Vec<(InvitationId, SessionId)>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.open.get(target))
            .map(|m| m.iter().map(|(i, s)| (i.clone(), s.clone())).collect())
            .unwrap_or_default())
    }

    async fn sessions_page(
        &self,
        account: &AccountId,
        status: SessionStatus,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<(SessionCursor, Versioned)>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let encoded: Vec<(SessionCursor, u64, Vec<u8>)> = {
            let s = self.store();
            let now = Instant::now();
            let Some(d) = s.data(account) else {
                return Ok(Vec::new());
            };
            let index = match status {
                SessionStatus::Active => &d.active_index,
                SessionStatus::Ended => &d.ended_index,
            };
            let from = after.map_or(Unbounded, |c| Excluded(c.clone()));
            index
                .range((from, Unbounded))
                .filter_map(|c| {
                    d.session(&c.session, now)
                        .map(|st| (c.clone(), st.version, st.state.clone()))
                })
                .take(limit)
                .collect()
        };
        encoded
            .into_iter()
            .map(|(cursor, version, bytes)| {
                let session = codec::decode(&bytes).map_err(|e| {
                    super::BackplaneError::Corrupt(format!("undecodable session state: {e}"))
                })?;
                Ok((cursor, Versioned { version, session }))
            })
            .collect()
    }
}
