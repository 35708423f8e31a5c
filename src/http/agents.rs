//! The agent's own calls: presence, the collaboration window, alerts, and
//! the agent's event stream.

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::{HttpResponse, Responder, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::AgentCaller;
use super::error::ApiError;
use super::{AppState, run_command, sse};
use crate::actors::outbox::{Connect, Outbox};
use crate::actors::reads;
use crate::backplane::{BusMessage, Topic};
use crate::domain::{Command, PortalId};

/// Longest search string for the collaboration window.
const MAX_QUERY_CHARS: usize = 200;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/me", web::get().to(me))
        .route("/me/login", web::post().to(login))
        .route("/me/logout", web::post().to(logout))
        .route("/me/invitations", web::get().to(invitations))
        .route("/me/events", web::get().to(events))
        .route("/collaborators", web::get().to(collaborators));
}

async fn me(caller: AgentCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let me = reads::me(&state.node, &caller.account.id, &caller.agent.id).await?;
    Ok(HttpResponse::Ok().json(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    portal: PortalId,
}

async fn login(
    caller: AgentCaller,
    state: web::Data<AppState>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let (account, agent) = (&caller.account.id, &caller.agent.id);
    let portal = state
        .node
        .backplane
        .portal(account, &body.portal)
        .await?
        .ok_or_else(|| ApiError::not_found("portal"))?;
    if !caller.agent.is_member_of(&portal.id) {
        return Err(ApiError::forbidden(
            "this agent may not log into that portal",
        ));
    }
    let backplane = &state.node.backplane;
    backplane.login(account, agent, &portal.id).await?;
    let presence = BusMessage::Presence {
        agent: agent.clone(),
        portal: Some(portal.id.clone()),
    };
    backplane
        .publish(Topic::Agent(account.clone(), agent.clone()), presence)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"agent": agent, "portal": portal})))
}

/// Logging out withdraws the agent's open alerts: nobody may join a session
/// through an invitation it received while it is gone. Order matters: out
/// of presence first (no new offers), then the withdrawals (still delivered
/// through its portal), then the presence change that moves its streams
/// out of the portal's fan-out.
async fn logout(caller: AgentCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (account, agent) = (&caller.account.id, &caller.agent.id);
    let backplane = &state.node.backplane;
    backplane.logout(account, agent).await?;
    let offers = reads::offers(&state.node, account, agent).await?;
    let sessions: BTreeSet<_> = offers.into_iter().map(|o| o.invitation.session).collect();
    // Every session gets its withdrawal even if one of them fails.
    let mut failed = None;
    for session in sessions {
        let command = Command::RecipientGone {
            agent: agent.clone(),
        };
        if let Err(e) = run_command(&state, &caller.account, &session, command).await {
            failed.get_or_insert(e);
        }
    }
    let presence = BusMessage::Presence {
        agent: agent.clone(),
        portal: None,
    };
    backplane
        .publish(Topic::Agent(account.clone(), agent.clone()), presence)
        .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn invitations(
    caller: AgentCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let offers = reads::offers(&state.node, &caller.account.id, &caller.agent.id).await?;
    Ok(HttpResponse::Ok().json(json!({"invitations": offers})))
}

#[derive(Deserialize)]
struct CollaboratorsQuery {
    q: Option<String>,
}

async fn collaborators(
    caller: AgentCaller,
    state: web::Data<AppState>,
    query: web::Query<CollaboratorsQuery>,
) -> Result<HttpResponse, ApiError> {
    if query
        .q
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS)
    {
        return Err(ApiError::invalid(format!(
            "q must be at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let view = reads::collaborators(
        &state.node,
        &caller.account.id,
        &caller.agent.id,
        query.q.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn events(
    caller: AgentCaller,
    state: web::Data<AppState>,
) -> Result<impl Responder, ApiError> {
    let settings = &state.node.settings.sse;
    let (outbox, rx) = Outbox::channel(settings.outbox);
    state
        .node
        .agent(&caller.account.id, &caller.agent.id)
        .send(Connect(outbox))
        .await?;
    Ok(sse::respond(
        rx,
        Duration::from_secs(settings.keep_alive_secs),
    ))
}
