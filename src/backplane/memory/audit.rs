//! The audit trail: the account's log, bounded and kept for its
//! retention, and the reads of it and of a session's trail.

use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;

use super::MemoryBackplane;
use crate::backplane::{Audit, AuditCursor, Audited, Result};
use crate::domain::audit::MAX_ACCOUNT_ENTRIES;
use crate::domain::{AccountId, AuditEntry, SessionId};

/// An account's audit trail: entries by id, oldest first, each stored
/// until its account's retention after it was written.
#[derive(Default)]
pub(super) struct AuditLog {
    pub(super) entries: std::collections::VecDeque<(AuditCursor, Instant, AuditEntry)>,
    pub(super) last: Option<AuditCursor>,
}

impl AuditLog {
    /// Appends `audit`'s entries and drops what is past retention or bound.
    pub(super) fn append(&mut self, audit: Audited<'_>, now: Instant) {
        for entry in audit.entries {
            self.push(entry, now + audit.retention);
        }
        self.prune(now);
    }

    /// Appends one entry, kept until `until`, with an id after the last one
    /// (as a Redis stream numbers them); the oldest go past the bound.
    pub(super) fn push(&mut self, entry: &AuditEntry, until: Instant) {
        let ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let id = match self.last {
            Some(last) if last.ms >= ms => AuditCursor {
                ms: last.ms,
                seq: last.seq + 1,
            },
            _ => AuditCursor { ms, seq: 0 },
        };
        self.last = Some(id);
        self.entries.push_back((id, until, entry.clone()));
        while self.entries.len() > MAX_ACCOUNT_ENTRIES {
            self.entries.pop_front();
        }
    }

    pub(super) fn prune(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|(_, until, _)| *until <= now)
        {
            self.entries.pop_front();
        }
    }
}

#[async_trait]
impl Audit for MemoryBackplane {
    async fn session_audit(
        &self,
        account: &AccountId,
        session: &SessionId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let s = self.store();
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(s.data(account)
            .and_then(|d| d.session(session, Instant::now()))
            .map(|stored| {
                stored
                    .audit
                    .iter()
                    .skip(from)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn account_audit(
        &self,
        account: &AccountId,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        let now = Instant::now();
        let s = self.store();
        let Some(log) = s.audit.get(account) else {
            return Ok(Vec::new());
        };
        let start = after.map_or(0, |a| log.entries.partition_point(|(id, _, _)| *id <= a));
        Ok(log
            .entries
            .iter()
            .skip(start)
            .filter(|(_, until, _)| *until > now)
            .take(limit)
            .map(|(id, _, e)| (*id, e.clone()))
            .collect())
    }
}
