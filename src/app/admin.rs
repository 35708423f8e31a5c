//! Administration (API.md v2, "Administration"): reading what is stored,
//! and the cascades that take things away. Each cascade is one use case
//! that emits what the people it touches would expect to see: a forced
//! logout is a `logged_out` event, an agent that is deleted leaves its
//! sessions as on leave, a deleted portal's invitations are cancelled.
//!
//! A cascade runs step by step (a session at a time), each step atomic on
//! its own: if it fails half-way, running it again finishes it — every
//! step is idempotent — and the record itself goes last, so a retry still
//! finds what is left to do.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use super::Error;
use super::agents::{log_out, log_out_by};
use super::provisioning::{
    existing_account, existing_account_and_agent, existing_agent, store_account, store_agent,
};
use super::{audited, run};
use crate::actors::Node;
use crate::actors::session::Want;
use crate::backplane::SessionCursor;
use crate::domain::session::{AdminCancel, AdminEnd, Leave, SessionStatus, Target};
use crate::domain::visibility::{AgentSessionView, agent_session_view};
use crate::domain::{
    Account, AccountId, Actor, Agent, AgentId, AuditAction, AuditEntry, DisplayName, DomainError,
    LogoutReason, Policy, PolicyInput, Portal, PortalId, SessionId,
};

/// A page size when none is asked for.
pub const PAGE: usize = 50;
/// The largest page.
pub const PAGE_MAX: usize = 200;

/// A page of a list, and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A page size as asked: the default when none, 400 outside 1 to [`PAGE_MAX`].
pub(crate) fn checked_limit(limit: Option<usize>) -> Result<usize, Error> {
    match limit {
        None => Ok(PAGE),
        Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        Some(_) => Err(DomainError::Invalid(format!("limit must be 1 to {PAGE_MAX}")).into()),
    }
}

/// A cursor this list cannot have given: 400.
pub(crate) fn bad_cursor() -> Error {
    DomainError::Invalid("cursor is not one this list gave".into()).into()
}

/// `GET /v1/accounts?cursor=&limit=`.
pub async fn accounts(
    node: &Arc<Node>,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<Account>, Error> {
    let limit = checked_limit(limit)?;
    let after = cursor
        .map(|c| AccountId::parse(c).map_err(|_| bad_cursor()))
        .transpose()?;
    let items = node.backplane.accounts(after.as_ref(), limit).await?;
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// What `PATCH /v1/accounts/{a}` may change (a JSON merge patch).
#[derive(Debug, Default)]
pub struct AccountPatch {
    /// A new display name.
    pub name: Option<DisplayName>,
    /// Policy fields to change; the others keep their values.
    pub policy: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `PATCH /v1/accounts/{a}`: changes the name and the named policy fields.
/// A policy change applies to every request from now on, including accepts
/// of invitations sent before it.
pub async fn patch_account(
    node: &Arc<Node>,
    id: &AccountId,
    patch: AccountPatch,
) -> Result<Account, Error> {
    super::provisioning::audited_write(|| async {
        let before = node
            .backplane
            .account_record(id)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let mut account = before.value.clone();
        if let Some(name) = &patch.name {
            account.name = name.clone();
        }
        if let Some(fields) = &patch.policy {
            account.policy = merge_policy(&account.policy, fields.clone())?;
        }
        store_account(node, Some(&before), &account).await?;
        Ok(account)
    })
    .await
}

/// The policy with `fields` replaced (a `null` field returns to its default).
fn merge_policy(
    policy: &Policy,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<Policy, Error> {
    let invalid = |e: String| Error::from(DomainError::Invalid(e));
    let mut current = match serde_json::to_value(policy) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(invalid("the stored policy cannot be patched".into())),
    };
    for (key, value) in fields {
        if value.is_null() {
            current.remove(&key);
        } else {
            current.insert(key, value);
        }
    }
    let input: PolicyInput = serde_json::from_value(serde_json::Value::Object(current))
        .map_err(|e| invalid(format!("invalid policy: {e}")))?;
    input.into_policy().map_err(invalid)
}

/// `DELETE /v1/accounts/{a}`: every token of the account is refused from
/// now on, its sessions end (reason `admin`), its agents are logged out
/// (`logged_out`, reason `account_deleted`), then everything of it is deleted.
pub async fn delete_account(node: &Arc<Node>, id: &AccountId) -> Result<(), Error> {
    let account = existing_account(node, id).await?;
    let keep_for = token_lifetime(node);
    let now = Utc::now();
    let revoked = [AuditEntry::admin(
        now,
        AuditAction::TokensRevoked,
        json!({"agent": null}),
    )];
    node.backplane
        .revoke_tokens(id, None, now, keep_for, audited(&account, &revoked))
        .await?;
    let mut after: Option<SessionCursor> = None;
    loop {
        let page = node
            .backplane
            .sessions_page(id, SessionStatus::Active, after.as_ref(), PAGE_MAX)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, stored) in page {
            // Ended meanwhile: nothing left to do.
            run_step(node, &account, &stored.session.id, AdminEnd.into(), |_| {
                false
            })
            .await?;
        }
    }
    let mut after: Option<AgentId> = None;
    loop {
        let agents = node.backplane.agents(id, after.as_ref(), PAGE_MAX).await?;
        let Some(last) = agents.last() else { break };
        after = Some(last.id.clone());
        // Every agent, logged in or not: an open stream of one that is not
        // logged in must end too (its token is no longer good).
        for agent in &agents {
            log_out(node, &account, agent, Some(LogoutReason::AccountDeleted)).await?;
        }
    }
    let deleted = [AuditEntry::admin(
        Utc::now(),
        AuditAction::AccountDeleted,
        json!({"account": id}),
    )];
    node.backplane
        .delete_account(id, audited(&account, &deleted))
        .await?;
    Ok(())
}

/// `GET /v1/accounts/{a}/portals`.
pub async fn portals(node: &Arc<Node>, account: &AccountId) -> Result<Vec<Portal>, Error> {
    existing_account(node, account).await?;
    Ok(node.backplane.portals(account).await?)
}

/// `GET /v1/accounts/{a}/portals/{p}`.
pub async fn portal(
    node: &Arc<Node>,
    account: &AccountId,
    portal: &PortalId,
) -> Result<Portal, Error> {
    existing_account(node, account).await?;
    node.backplane
        .portal(account, portal)
        .await?
        .ok_or(Error::NotFound("portal"))
}

/// `DELETE /v1/accounts/{a}/portals/{p}`: agents logged into it are logged
/// out (`logged_out`, reason `portal_deleted`), its open invitations are
/// cancelled, it leaves every agent's portals (the agents keep their
/// others), then it is deleted.
pub async fn delete_portal(
    node: &Arc<Node>,
    account_id: &AccountId,
    portal_id: &PortalId,
) -> Result<(), Error> {
    let account = existing_account(node, account_id).await?;
    node.backplane
        .portal(account_id, portal_id)
        .await?
        .ok_or(Error::NotFound("portal"))?;
    for agent_id in node
        .backplane
        .online_in(account_id, portal_id)
        .await?
        .unwrap_or_default()
    {
        if let Some(agent) = node.backplane.agent(account_id, &agent_id).await? {
            log_out(node, &account, &agent, Some(LogoutReason::PortalDeleted)).await?;
        }
    }
    let target = Target::Portal(portal_id.clone());
    for (invitation, session) in node.backplane.open_invitations(account_id, &target).await? {
        // Closed or ended meanwhile: nothing left to cancel.
        let cancel = AdminCancel { invitation };
        run_step(node, &account, &session, cancel.into(), |e| {
            matches!(e, DomainError::InvitationNotFound)
        })
        .await?;
    }
    let mut after: Option<AgentId> = None;
    loop {
        let agents = node
            .backplane
            .agents(account_id, after.as_ref(), PAGE_MAX)
            .await?;
        let Some(last) = agents.last() else { break };
        after = Some(last.id.clone());
        for listed in agents {
            if listed.is_member_of(portal_id) {
                super::provisioning::audited_write(|| async {
                    let Some(stored) = node.backplane.agent_record(account_id, &listed.id).await?
                    else {
                        return Ok(()); // deleted meanwhile
                    };
                    let mut without = stored.value.clone();
                    without.portals.retain(|p| p != portal_id);
                    if without != stored.value {
                        store_agent(node, &account, Some(&stored), &without).await?;
                    }
                    Ok(())
                })
                .await?;
            }
        }
    }
    let deleted = [AuditEntry::admin(
        Utc::now(),
        AuditAction::PortalDeleted,
        json!({"portal": portal_id}),
    )];
    node.backplane
        .delete_portal(account_id, portal_id, audited(&account, &deleted))
        .await?;
    Ok(())
}

/// An agent as the administrator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentAdminView {
    /// Its id.
    pub id: AgentId,
    /// Display name.
    pub name: DisplayName,
    /// Portals it may log into.
    pub portals: Vec<PortalId>,
    /// Where it is logged in now, if anywhere.
    pub presence: Option<PresenceView>,
    /// Sessions it is active in.
    pub active_sessions: usize,
}

/// Where an agent is logged in.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceView {
    /// The portal.
    pub portal: PortalId,
}

async fn admin_view(
    node: &Arc<Node>,
    account: &AccountId,
    agent: Agent,
) -> Result<AgentAdminView, Error> {
    let presence = node.backplane.presence(account, &agent.id).await?;
    let active = node.backplane.agent_sessions(account, &agent.id).await?;
    Ok(AgentAdminView {
        id: agent.id,
        name: agent.name,
        portals: agent.portals,
        presence: presence.map(|portal| PresenceView { portal }),
        active_sessions: active.len(),
    })
}

/// `GET /v1/accounts/{a}/agents?cursor=&limit=`.
pub async fn agents(
    node: &Arc<Node>,
    account: &AccountId,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<AgentAdminView>, Error> {
    let limit = checked_limit(limit)?;
    existing_account(node, account).await?;
    let after = cursor
        .map(|c| AgentId::parse(c).map_err(|_| bad_cursor()))
        .transpose()?;
    let found = node
        .backplane
        .agents(account, after.as_ref(), limit)
        .await?;
    let next_cursor = (found.len() == limit)
        .then(|| found.last().map(|a| a.id.to_string()))
        .flatten();
    let mut items = Vec::with_capacity(found.len());
    for agent in found {
        items.push(admin_view(node, account, agent).await?);
    }
    Ok(Page { items, next_cursor })
}

/// `GET /v1/accounts/{a}/agents/{g}`.
pub async fn agent(
    node: &Arc<Node>,
    account: &AccountId,
    agent: &AgentId,
) -> Result<AgentAdminView, Error> {
    let agent = existing_agent(node, account, agent).await?;
    admin_view(node, account, agent).await
}

/// The longest an agent token lives: how long a revocation must be kept.
fn token_lifetime(node: &Node) -> std::time::Duration {
    std::time::Duration::from_secs(node.settings.auth.agent_token_ttl_secs)
}

/// `POST /v1/accounts/{a}/agents/{g}/tokens/revoke` (and `POST
/// /v1/me/logout {"revoke": true}`): every token of the agent minted before
/// now is refused, on every node, from the next request on; the agent is
/// logged out and its open streams end (`logged_out`, reason `tokens_revoked`).
pub async fn revoke_tokens(
    node: &Arc<Node>,
    account: &Account,
    agent: &Agent,
    by: Actor,
) -> Result<(), Error> {
    let now = Utc::now();
    let revoked = [AuditEntry {
        actor: by.clone(),
        ..AuditEntry::admin(now, AuditAction::TokensRevoked, json!({"agent": agent.id}))
    }];
    node.backplane
        .revoke_tokens(
            &account.id,
            Some(&agent.id),
            now,
            token_lifetime(node),
            audited(account, &revoked),
        )
        .await?;
    log_out_by(node, account, agent, Some(LogoutReason::TokensRevoked), by).await
}

/// The admin's revocation of an agent's tokens.
pub async fn revoke(
    node: &Arc<Node>,
    account_id: &AccountId,
    agent_id: &AgentId,
) -> Result<(), Error> {
    let (account, agent) = existing_account_and_agent(node, account_id, agent_id).await?;
    revoke_tokens(node, &account, &agent, Actor::admin()).await
}

/// `POST /v1/accounts/{a}/agents/{g}/logout`: a forced logout
/// (`logged_out`, reason `admin`); its tokens stay good.
pub async fn force_logout(
    node: &Arc<Node>,
    account_id: &AccountId,
    agent_id: &AgentId,
) -> Result<(), Error> {
    let (account, agent) = existing_account_and_agent(node, account_id, agent_id).await?;
    log_out(node, &account, &agent, Some(LogoutReason::Admin)).await
}

/// `DELETE /v1/accounts/{a}/agents/{g}`: its tokens are revoked, it is
/// logged out (its offers withdrawn, its streams end), it leaves every
/// session it is in (a lead hands over as on leave; the last agent leaving
/// ends the session), then its record is deleted.
pub async fn delete_agent(
    node: &Arc<Node>,
    account_id: &AccountId,
    agent_id: &AgentId,
) -> Result<(), Error> {
    let (account, agent) = existing_account_and_agent(node, account_id, agent_id).await?;
    let now = Utc::now();
    let revoked = [AuditEntry::admin(
        now,
        AuditAction::TokensRevoked,
        json!({"agent": agent_id}),
    )];
    node.backplane
        .revoke_tokens(
            account_id,
            Some(agent_id),
            now,
            token_lifetime(node),
            audited(&account, &revoked),
        )
        .await?;
    log_out(node, &account, &agent, Some(LogoutReason::AgentDeleted)).await?;
    leave_every_session(node, &account, agent_id).await?;
    let deleted = [AuditEntry::admin(
        Utc::now(),
        AuditAction::AgentDeleted,
        json!({"agent": agent_id}),
    )];
    node.backplane
        .delete_agent(account_id, agent_id, audited(&account, &deleted))
        .await?;
    // An accept already past its checks when the agent was logged out may
    // have joined meanwhile: leave once more, now that no new join can pass.
    leave_every_session(node, &account, agent_id).await
}

async fn leave_every_session(
    node: &Arc<Node>,
    account: &Account,
    agent: &AgentId,
) -> Result<(), Error> {
    let sessions: BTreeSet<SessionId> = node
        .backplane
        .agent_sessions(&account.id, agent)
        .await?
        .into_iter()
        .collect();
    for session in sessions {
        let leave = Leave {
            agent: agent.clone(),
            by_admin: true,
        };
        // Left or ended meanwhile: nothing left to do.
        run_step(node, account, &session, leave.into(), |e| {
            matches!(e, DomainError::NotParticipant)
        })
        .await?;
    }
    Ok(())
}

/// One step of a cascade on one session: done when it applies, and also
/// when the session ended, is gone, or `settled` says the step already
/// happened (a cascade run again finds some steps done).
async fn run_step(
    node: &Arc<Node>,
    account: &Account,
    session: &SessionId,
    command: crate::domain::Command,
    settled: impl Fn(&DomainError) -> bool,
) -> Result<(), Error> {
    match run(node, account, session, command, None, Want::default()).await {
        Ok(_) | Err(Error::Domain(DomainError::SessionEnded)) | Err(Error::NotFound(_)) => Ok(()),
        Err(Error::Domain(e)) if settled(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `GET /v1/accounts/{a}/sessions?status=&cursor=&limit=`.
pub async fn sessions(
    node: &Arc<Node>,
    account: &AccountId,
    status: SessionStatus,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<AgentSessionView>, Error> {
    let limit = checked_limit(limit)?;
    existing_account(node, account).await?;
    let after = cursor
        .map(|c| c.parse::<SessionCursor>().map_err(|()| bad_cursor()))
        .transpose()?;
    let page = node
        .backplane
        .sessions_page(account, status, after.as_ref(), limit)
        .await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|(c, _)| c.to_string()))
        .flatten();
    Ok(Page {
        items: page
            .iter()
            .map(|(_, v)| agent_session_view(&v.session))
            .collect(),
        next_cursor,
    })
}

/// `GET /v1/accounts/{a}/sessions/{id}`: the session as its agents see it.
pub async fn session(
    node: &Arc<Node>,
    account: &AccountId,
    session: &SessionId,
) -> Result<AgentSessionView, Error> {
    existing_account(node, account).await?;
    let stored = node
        .backplane
        .load(account, session)
        .await?
        .ok_or(Error::NotFound("session"))?;
    Ok(agent_session_view(&stored.session))
}

/// `POST /v1/accounts/{a}/sessions/{id}/end`: ends it (reason `admin`):
/// its invitations are cancelled, its agents and customer get
/// `session_ended`.
pub async fn end_session(
    node: &Arc<Node>,
    account_id: &AccountId,
    session: &SessionId,
) -> Result<AgentSessionView, Error> {
    let account = existing_account(node, account_id).await?;
    end(node, &account, session).await
}

async fn end(
    node: &Arc<Node>,
    account: &Account,
    session: &SessionId,
) -> Result<AgentSessionView, Error> {
    let want = Want {
        agent_view: true,
        ..Want::default()
    };
    run(node, account, session, AdminEnd.into(), None, want)
        .await?
        .agent_view
        .ok_or(Error::NotFound("session"))
}
