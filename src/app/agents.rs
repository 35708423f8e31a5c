//! The agent's own calls: presence, the collaboration window, its alerts,
//! and its event stream.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::Error;
use super::{AgentCaller, run};
use crate::actors::outbox::Inbox;
use crate::actors::reads::{self, CollaboratorsView, MeView, PortalRef};
use crate::actors::session::Want;
use crate::actors::{Node, StreamPermit};
use crate::backplane::{Audited, BusMessage, Faded, Topic};
use crate::domain::session::RecipientGone;
use crate::domain::visibility::OfferView;
use crate::domain::{
    Account, Actor, Agent, AuditAction, AuditEntry, DomainError, LogoutReason, PortalId,
};

/// `POST /v1/me/login`: the agent is logged into `portal` (one of its own).
pub async fn login(
    node: &Arc<Node>,
    caller: &AgentCaller,
    portal: &PortalId,
) -> Result<PortalRef, Error> {
    let (account, agent) = (&caller.account.id, &caller.agent);
    let portal = node
        .backplane
        .portal(account, portal)
        .await?
        .ok_or(Error::NotFound("portal"))?;
    if !agent.is_member_of(&portal.id) {
        return Err(Error::Forbidden("this agent may not log into that portal"));
    }
    node.backplane.login(account, agent, &portal.id).await?;
    // A change of its portals (or the portal's deletion) that raced this
    // login wrote first and then read presence, or it reads this login:
    // read the records again, and undo the login if it is no longer allowed.
    let still_member = node
        .backplane
        .agent(account, &agent.id)
        .await?
        .is_some_and(|now| now.is_member_of(&portal.id));
    let still_there = node.backplane.portal(account, &portal.id).await?.is_some();
    if !(still_member && still_there) {
        node.backplane.logout(account, agent, Audited::NONE).await?;
        return Err(Error::Forbidden("this agent may not log into that portal"));
    }
    let presence = BusMessage::Presence {
        agent: agent.id.clone(),
        portal: Some(portal.id.clone()),
    };
    node.backplane
        .publish(Topic::Agent(account.clone(), agent.id.clone()), presence)
        .await?;
    Ok(PortalRef {
        id: portal.id,
        name: portal.name,
    })
}

/// `POST /v1/me/logout`.
pub async fn logout(node: &Arc<Node>, caller: &AgentCaller) -> Result<(), Error> {
    log_out(node, &caller.account, &caller.agent, None).await
}

/// Logs an agent out, by itself (`reason` none) or by someone else (its
/// streams get `logged_out` with the reason). Logging out withdraws the
/// agent's open alerts: nobody may join a session through an invitation it
/// received while it is gone. Order matters: out of presence first (no new
/// offers), then the withdrawals (still delivered through its portal), then
/// the presence change that moves its streams out of the portal's fan-out.
pub(crate) async fn log_out(
    node: &Arc<Node>,
    account: &Account,
    agent: &Agent,
    reason: Option<LogoutReason>,
) -> Result<(), Error> {
    log_out_by(node, account, agent, reason, Actor::admin()).await
}

/// [`log_out`], made by `by`: a logout for a reason (someone else's doing,
/// or the agent revoking its own tokens) is recorded in the audit trail.
pub(crate) async fn log_out_by(
    node: &Arc<Node>,
    account: &Account,
    agent: &Agent,
    reason: Option<LogoutReason>,
    by: Actor,
) -> Result<(), Error> {
    let entries: Vec<AuditEntry> = reason
        .map(|reason| AuditEntry {
            actor: by,
            ..AuditEntry::admin(
                Utc::now(),
                AuditAction::AgentLoggedOut,
                json!({"agent": agent.id, "reason": reason}),
            )
        })
        .into_iter()
        .collect();
    node.backplane
        .logout(&account.id, agent, super::audited(account, &entries))
        .await?;
    let failed = withdraw_alerts(node, account, agent).await.err();
    let message = match reason {
        None => BusMessage::Presence {
            agent: agent.id.clone(),
            portal: None,
        },
        Some(reason) => BusMessage::LoggedOut {
            agent: agent.id.clone(),
            reason,
        },
    };
    node.backplane
        .publish(Topic::Agent(account.id.clone(), agent.id.clone()), message)
        .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Withdraws the open alerts of `agent` (gone: logged out, or faded with
/// the node it streamed from), and runs the escalations that made due.
/// Every session gets its withdrawal even if one of them fails; the first
/// failure is returned.
async fn withdraw_alerts(node: &Arc<Node>, account: &Account, agent: &Agent) -> Result<(), Error> {
    let offers = reads::offers(node, &account.id, agent).await?;
    let sessions: BTreeSet<_> = offers.into_iter().map(|o| o.invitation.session).collect();
    let mut failed = None;
    for session in sessions {
        let command = RecipientGone {
            agent: agent.id.clone(),
        };
        let gone = run(
            node,
            account,
            &session,
            command.into(),
            None,
            Want::default(),
        )
        .await;
        match gone {
            Ok(done) => super::sessions::escalate_due(node, account, &session, &done).await,
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Agents that faded because the node they streamed from died: their
/// alerts are withdrawn as at a logout (direct invitations to them
/// escalate now), but they stay logged in: a stream through another node
/// brings them back. One that is back already is left alone.
pub(crate) async fn fade(node: &Arc<Node>, faded: &Faded) -> Result<(), Error> {
    let Some(account) = node.backplane.account(&faded.account).await? else {
        return Ok(());
    };
    let mut failed = None;
    for id in &faded.agents {
        let gone = async {
            if node.backplane.presence(&account.id, id).await?.is_some() {
                return Ok(());
            }
            match node.backplane.agent(&account.id, id).await? {
                Some(agent) => withdraw_alerts(node, &account, &agent).await,
                None => Ok(()),
            }
        };
        if let Err(e) = gone.await {
            failed.get_or_insert(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `GET /v1/me`.
pub async fn me(node: &Arc<Node>, caller: &AgentCaller) -> Result<MeView, Error> {
    Ok(reads::me(node, &caller.account.id, &caller.agent).await?)
}

/// `GET /v1/me/invitations`: the open offers the agent may still accept.
pub async fn offers(node: &Arc<Node>, caller: &AgentCaller) -> Result<Vec<OfferView>, Error> {
    Ok(reads::offers(node, &caller.account.id, &caller.agent).await?)
}

/// `GET /v1/collaborators?q=&limit=&cursor=`.
pub async fn collaborators(
    node: &Arc<Node>,
    caller: &AgentCaller,
    q: Option<&str>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<CollaboratorsView, Error> {
    if !(1..=reads::WINDOW_PAGE_MAX).contains(&limit) {
        return Err(
            DomainError::Invalid(format!("limit must be 1 to {}", reads::WINDOW_PAGE_MAX)).into(),
        );
    }
    Ok(reads::collaborators(node, &caller.account.id, &caller.agent.id, q, limit, cursor).await?)
}

/// `GET /v1/me/events`: the agent's stream, once the token has a place left.
pub async fn events(
    node: &Arc<Node>,
    caller: &AgentCaller,
) -> Result<(Inbox, StreamPermit), Error> {
    let actor = node.agent(&caller.account.id, &caller.agent.id);
    super::open_stream(
        node,
        &caller.token,
        caller.minted,
        crate::metrics::Role::Agent,
        actor,
    )
    .await
}
