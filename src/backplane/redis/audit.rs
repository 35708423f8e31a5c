//! The audit trail read back: a session's list and the account's stream.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisBackplane, unavailable};
use crate::backplane::{Audit, AuditCursor, BackplaneError, Result};
use crate::domain::{AccountId, AuditEntry, SessionId};

/// An audit entry read back from the trail.
fn parse_audit(json: &str) -> Result<AuditEntry> {
    serde_json::from_str(json)
        .map_err(|e| BackplaneError::Corrupt(format!("unreadable audit entry: {e}")))
}

#[async_trait]
impl Audit for RedisBackplane {
    async fn session_audit(
        &self,
        account: &AccountId,
        session: &SessionId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.account_keys(account).session_audit(session);
        let start = isize::try_from(from).unwrap_or(isize::MAX);
        let stop = start.saturating_add(isize::try_from(limit).unwrap_or(isize::MAX) - 1);
        let raw: Vec<String> = self
            .conn()
            .lrange(key, start, stop)
            .await
            .map_err(unavailable)?;
        raw.iter().map(|j| parse_audit(j)).collect()
    }

    async fn account_audit(
        &self,
        account: &AccountId,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let raw: Vec<String> = self
            .scripts
            .audit_page
            .key(self.account_keys(account).audit())
            .arg(start)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        raw.chunks_exact(2)
            .map(|pair| {
                let id = pair[0]
                    .parse::<AuditCursor>()
                    .map_err(|()| BackplaneError::Corrupt("bad audit id".into()))?;
                Ok((id, parse_audit(&pair[1])?))
            })
            .collect()
    }
}
