//! Reading the audit trail (API.md, "Collaboration beyond the seed"): a
//! session's, by its lead; an account's, by the administrator, with
//! filters. The entries themselves are written by the changes they record.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AgentCaller;
use super::Error;
use super::admin::{PAGE_MAX, Page, bad_cursor, checked_limit};
use crate::actors::Node;
use crate::actors::session::{Read, Want};
use crate::backplane::AuditCursor;
use crate::domain::{AccountId, AgentId, AuditEntry, DomainError, SessionId};

/// How many entries one request of the account's trail looks at, at most,
/// to find a page that matches its filters: a request costs the same
/// however big the trail is, and the cursor says where to go on.
pub const SCAN_MAX: usize = 2000;

/// An entry of the account's trail, with its id.
#[derive(Debug, Clone, Serialize)]
pub struct AccountEntry {
    /// Its id in the account's trail (`ms-seq`).
    pub id: String,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// `GET /v1/sessions/{id}/audit?cursor=&limit=`: the session's trail,
/// oldest first, for its lead (also once it ended).
pub async fn session(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<AuditEntry>, Error> {
    let limit = checked_limit(limit)?;
    let from = cursor
        .map(|c| c.parse::<u64>().map_err(|_| bad_cursor()))
        .transpose()?
        .unwrap_or(0);
    // Not only its agents: the lead at the end of a session its last agent
    // left is in it no more, and still reads its trail.
    let read = Read {
        participant: None,
        want: Want {
            agent_view: true,
            ..Want::default()
        },
    };
    let view = node
        .ask_session(&caller.account.id, session, read)
        .await??
        .agent_view
        .ok_or(Error::NotFound("session"))?;
    let me = &caller.agent.id;
    if view.lead.as_ref() != Some(me) {
        let agent = view.participants.iter().any(|p| &p.agent.id == me);
        return Err(match agent {
            true => DomainError::NotLead,
            false => DomainError::NotParticipant,
        }
        .into());
    }
    let items = node
        .backplane
        .session_audit(&caller.account.id, session, from, limit)
        .await?;
    let next_cursor = (items.len() == limit).then(|| (from + limit as u64).to_string());
    Ok(Page { items, next_cursor })
}

/// The filters of `GET /v1/accounts/{a}/audit`.
#[derive(Debug, Default)]
pub struct AccountQuery {
    /// Only this session's entries.
    pub session: Option<SessionId>,
    /// Only entries made by or naming this agent.
    pub agent: Option<AgentId>,
    /// Only entries made at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

/// `GET /v1/accounts/{a}/audit`: the account's trail, oldest first,
/// filtered. A page may hold fewer entries than `limit` (even none) and
/// still have a `next_cursor`: the request looked at [`SCAN_MAX`] entries.
/// The trail of a deleted account is read until it expires (404 once it
/// has, as for an account that never was).
pub async fn account(
    node: &Arc<Node>,
    account: &AccountId,
    query: AccountQuery,
) -> Result<Page<AccountEntry>, Error> {
    let limit = checked_limit(query.limit)?;
    let stored = node.backplane.account(account).await?;
    if stored.is_none()
        && node
            .backplane
            .account_audit(account, None, 1)
            .await?
            .is_empty()
    {
        return Err(Error::NotFound("account"));
    }
    // Entries of the account's trail past its retention are trimmed when
    // it is written next; until then they are not shown either. (A deleted
    // account's trail expires whole.)
    let kept_since = stored.and_then(|a| {
        chrono::Duration::from_std(a.policy.trail_retention())
            .ok()
            .map(|r| Utc::now() - r)
    });
    let matches = |e: &AuditEntry| {
        query
            .session
            .as_ref()
            .is_none_or(|s| e.session.as_ref() == Some(s))
            && query.agent.as_ref().is_none_or(|a| e.mentions(a))
            && query.since.is_none_or(|t| e.at >= t)
    };
    let kept = |e: &AuditEntry| kept_since.is_none_or(|t| e.at >= t) && matches(e);
    if let Some(session) = &query.session {
        // The session's own trail: no scan of the account's.
        let from = query
            .cursor
            .as_deref()
            .map(|c| c.parse::<u64>().map_err(|_| bad_cursor()))
            .transpose()?
            .unwrap_or(0);
        let batch = node
            .backplane
            .session_audit(account, session, from, SCAN_MAX.min(limit * 4))
            .await?;
        return Ok(collect(
            batch
                .into_iter()
                .enumerate()
                .map(|(i, e)| ((from + i as u64 + 1).to_string(), e)),
            limit,
            SCAN_MAX.min(limit * 4),
            matches,
        ));
    }
    let mut after = query
        .cursor
        .as_deref()
        .map(|c| c.parse::<AuditCursor>().map_err(|()| bad_cursor()))
        .transpose()?;
    if let Some(since) = query.since
        && let Some(floor) = u64::try_from(since.timestamp_millis())
            .ok()
            .and_then(AuditCursor::before_ms)
        && after.is_none_or(|a| a < floor)
    {
        after = Some(floor);
    }
    let mut scanned = Vec::new();
    while scanned.len() < SCAN_MAX {
        let want = (SCAN_MAX - scanned.len()).min(PAGE_MAX);
        let batch = node.backplane.account_audit(account, after, want).await?;
        let done = batch.len() < want;
        after = batch.last().map(|(id, _)| *id).or(after);
        scanned.extend(batch);
        if done || scanned.iter().filter(|(_, e)| kept(e)).count() >= limit {
            break;
        }
    }
    Ok(collect(
        scanned.into_iter().map(|(id, e)| (id.to_string(), e)),
        limit,
        SCAN_MAX,
        kept,
    ))
}

/// The first `limit` matching entries of `scanned`, and the cursor after the
/// last entry looked at — `None` when fewer than `scan` were there to look
/// at and none is left behind.
fn collect(
    scanned: impl ExactSizeIterator<Item = (String, AuditEntry)>,
    limit: usize,
    scan: usize,
    matches: impl Fn(&AuditEntry) -> bool,
) -> Page<AccountEntry> {
    let total = scanned.len();
    let mut items = Vec::new();
    let mut last = None;
    for (looked, (id, entry)) in scanned.enumerate() {
        last = Some(id.clone());
        if matches(&entry) {
            items.push(AccountEntry { id, entry });
            if items.len() == limit {
                // More may follow unless this was the very last entry.
                let more = looked + 1 < total || total >= scan;
                return Page {
                    items,
                    next_cursor: more.then_some(last).flatten(),
                };
            }
        }
    }
    Page {
        items,
        next_cursor: (total >= scan).then_some(last).flatten(),
    }
}
