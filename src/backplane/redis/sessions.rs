//! Session state read back (load, refresh, transcripts, history, the
//! indexes, the listing) and the commit, whose call `commit.rs` builds.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisBackplane, corrupt, decoded, now_ms, unavailable};
use crate::backplane::{
    AcceptContext, BackplaneError, Commit, Committed, Fresh, Result, SessionCursor, Sessions,
    Transcript, Versioned, codec,
};
use crate::domain::session::{SessionStatus, Target};
use crate::domain::{AccountId, AgentId, Invitation, InvitationId, Message, PortalId, SessionId};

#[async_trait]
impl Sessions for RedisBackplane {
    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>> {
        let (version, state): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.account_keys(account).session(session))
            .arg("v")
            .arg("s")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match (version, state) {
            (Some(version), Some(bytes)) => Self::decode_session(version, &bytes).map(Some),
            _ => Ok(None),
        }
    }

    async fn refresh(&self, account: &AccountId, session: &SessionId, known: u64) -> Result<Fresh> {
        let reply: Vec<Vec<u8>> = self
            .scripts
            .refresh
            .key(self.account_keys(account).session(session))
            .arg(known)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(match reply.as_slice() {
            [] => Fresh::Gone,
            [_] => Fresh::Current,
            [version, state, ..] => {
                let version = std::str::from_utf8(version)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| BackplaneError::Corrupt("bad session version".into()))?;
                Fresh::Changed(Box::new(Self::decode_session(version, state)?))
            }
        })
    }

    async fn commit(&self, account: &AccountId, commit: Commit<'_>) -> Result<Committed> {
        let (version, earliest): (i64, String) = self
            .commit_call(account, &commit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match version {
            -1 => return Ok(Committed::Conflict),
            -2 => return Ok(Committed::Refused),
            _ => {}
        }
        if let Ok(at) = earliest.parse::<f64>() {
            self.touch_index(account, at as i64).await;
        }
        Ok(Committed::Stored(version as u64))
    }

    async fn accept_context(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
        agent: &AgentId,
        known_version: Option<u64>,
    ) -> Result<AcceptContext> {
        let k = self.account_keys(account);
        type Reply = (
            Option<String>,
            i64,
            Option<u64>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let (portal, active, version, state, closed): Reply = self
            .scripts
            .accept_context
            .key(k.presence())
            .key(k.online())
            .key(k.active())
            .key(k.session(session))
            .key(k.history(session))
            .arg(agent.as_str())
            .arg(invitation.as_str())
            .arg(known_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let current = match (version, state) {
            (Some(v), Some(bytes)) => Some(Self::decode_session(v, &bytes)?),
            _ => None,
        };
        Ok(AcceptContext {
            portal: portal.and_then(|p| PortalId::parse(&p).ok()),
            active_sessions: u32::try_from(active.max(0)).unwrap_or(u32::MAX),
            version,
            current,
            closed: decoded(closed)?,
        })
    }

    async fn closed_invitation(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
    ) -> Result<Option<Invitation>> {
        let key = self.account_keys(account).history(session);
        self.hget_decoded(key, invitation.as_str()).await
    }

    async fn messages(
        &self,
        account: &AccountId,
        session: &SessionId,
        transcript: Transcript,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        if limit == 0 || before.is_some_and(|b| b <= 1) {
            return Ok(Vec::new());
        }
        let k = self.account_keys(account);
        let chat = k.chat(session);
        let paged = match transcript {
            Transcript::Agents => chat.clone(),
            Transcript::Customer => k.customer_chat(session),
        };
        // One script clamps the page to the transcript's length.
        let raw: Vec<Vec<u8>> = self
            .scripts
            .transcript_page
            .key(paged)
            .key(chat)
            .arg(before.map(|b| b.to_string()).unwrap_or_default())
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut page = raw
            .iter()
            .map(|b| codec::decode::<Message>(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        page.reverse();
        Ok(page)
    }

    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>> {
        let ids: Vec<String> = self
            .conn()
            .smembers(self.account_keys(account).agent_sessions(agent))
            .await
            .map_err(unavailable)?;
        let mut ids: Vec<SessionId> = ids
            .iter()
            .filter_map(|s| SessionId::parse(s).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn open_invitations(
        &self,
        account: &AccountId,
        target: &Target,
    ) -> Result<Vec<(InvitationId, SessionId)>> {
        let all: HashMap<String, String> = self
            .conn()
            .hgetall(self.account_keys(account).open(target))
            .await
            .map_err(unavailable)?;
        let mut offers: Vec<_> = all
            .iter()
            .filter_map(|(i, s)| Some((InvitationId::parse(i).ok()?, SessionId::parse(s).ok()?)))
            .collect();
        offers.sort();
        Ok(offers)
    }

    async fn sessions_page(
        &self,
        account: &AccountId,
        status: SessionStatus,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<(SessionCursor, Versioned)>> {
        let k = self.account_keys(account);
        let index = k.sessions_index(status);
        let mut out = Vec::with_capacity(limit);
        let mut cursor = after.cloned();
        // A session past its retention may still be listed (the index is
        // pruned as sessions end): it is dropped from the index as it is
        // met, and the page filled from further on.
        while out.len() < limit {
            let want = limit - out.len();
            let (score, member) = match &cursor {
                Some(c) => (c.at_ms.to_string(), c.session.as_str().to_owned()),
                None => ("-inf".to_owned(), String::new()),
            };
            let page: Vec<String> = self
                .scripts
                .sessions_page
                .key(&index)
                .arg(score)
                .arg(member)
                .arg(want)
                .invoke_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            let listed: Vec<SessionCursor> = page
                .chunks(2)
                .filter_map(|pair| match pair {
                    [id, at] => Some(SessionCursor {
                        at_ms: at.parse::<f64>().ok()? as i64,
                        session: SessionId::parse(id).ok()?,
                    }),
                    _ => None,
                })
                .collect();
            let Some(last) = listed.last() else { break };
            cursor = Some(last.clone());
            let mut pipe = redis::pipe();
            for c in &listed {
                pipe.cmd("HMGET")
                    .arg(k.session(&c.session))
                    .arg("v")
                    .arg("s");
            }
            let states: Vec<(Option<u64>, Option<Vec<u8>>)> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            let fetched = listed.len();
            for (listed, state) in listed.into_iter().zip(states) {
                match state {
                    (Some(version), Some(bytes)) => {
                        out.push((listed, Self::decode_session(version, &bytes)?));
                    }
                    _ => {
                        let _: i64 = self
                            .conn()
                            .zrem(&index, listed.session.as_str())
                            .await
                            .map_err(unavailable)?;
                    }
                }
            }
            if fetched < want {
                break;
            }
        }
        Ok(out)
    }
}
