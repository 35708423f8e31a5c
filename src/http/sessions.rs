//! Sessions, their chat, and invitations: everything the session's agents
//! and the invitees do.

use actix_web::{HttpResponse, web};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::json;

use super::auth::AgentCaller;
use super::error::ApiError;
use super::token::Subject;
use super::{AppState, lookup_id, run_command};
use crate::actors::session::{self as session_actor, Accept};
use crate::domain::directory::parse_name;
use crate::domain::session::{Audience, Poster, Target};
use crate::domain::visibility::{InvitationView, Viewer, agent_session_view, message_view};
use crate::domain::{
    Command, DomainError, InvitationId, MessageId, Session, SessionId, SessionMode,
};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sessions", web::post().to(create))
        .route("/sessions/{session}", web::get().to(get))
        .route("/sessions/{session}/invitations", web::post().to(invite))
        .route(
            "/sessions/{session}/invitations/{invitation}",
            web::delete().to(cancel),
        )
        .route("/sessions/{session}/messages", web::post().to(post_message))
        .route("/sessions/{session}/messages", web::get().to(messages))
        .route("/sessions/{session}/leave", web::post().to(leave))
        .route("/sessions/{session}/end", web::post().to(end))
        .route("/invitations/{invitation}/accept", web::post().to(accept))
        .route("/invitations/{invitation}/decline", web::post().to(decline));
}

/// Loads a session the caller takes part in: another account's or unknown
/// is 404, one the caller is not in is 403.
async fn participant_session(
    state: &AppState,
    caller: &AgentCaller,
    raw: &str,
) -> Result<Session, ApiError> {
    let id: SessionId = lookup_id(raw, "session")?;
    let current = state
        .node
        .backplane
        .load(&caller.account.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    if !current.session.is_participant(&caller.agent.id) {
        return Err(ApiError::forbidden("you are not an agent of this session"));
    }
    Ok(current.session)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    mode: SessionMode,
    customer: CustomerBody,
}

async fn create(
    caller: AgentCaller,
    state: web::Data<AppState>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let customer_name =
        parse_name("customer.name", &body.customer.name).map_err(ApiError::invalid)?;
    let now = Utc::now();
    let session = Session::create(
        SessionId::random(),
        caller.account.id.clone(),
        body.mode,
        caller.agent.as_ref(),
        customer_name,
        &caller.account.policy,
        now,
    )?;
    let session = session_actor::create(&state.node, session).await?;
    let ttl = Duration::seconds(state.node.settings.auth.customer_token_ttl_secs as i64);
    let subject = Subject::Customer {
        account: caller.account.id.clone(),
        session: session.id.clone(),
    };
    let customer_token = state.tokens.mint(subject, now + ttl);
    Ok(HttpResponse::Created().json(json!({
        "session": agent_session_view(&session),
        "customer_token": customer_token,
    })))
}

async fn get(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = participant_session(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(agent_session_view(&session)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    target: Target,
    #[serde(default)]
    masked: bool,
    comment: Option<String>,
}

async fn invite(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    let session = participant_session(&state, &caller, &path).await?;
    let body = body.into_inner();
    let account = &caller.account.id;
    let backplane = &state.node.backplane;
    // Who could receive it, as of now: the direct target if logged in, or
    // everyone logged into the portal. The domain removes inviter and participants.
    let online = match &body.target {
        Target::Agent(agent) => {
            backplane
                .agent(account, agent)
                .await?
                .ok_or_else(|| ApiError::not_found("agent"))?;
            match backplane.presence(account, agent).await? {
                Some(_) => vec![agent.clone()],
                None => Vec::new(),
            }
        }
        Target::Portal(portal) => {
            backplane
                .portal(account, portal)
                .await?
                .ok_or_else(|| ApiError::not_found("portal"))?;
            backplane
                .online(account)
                .await?
                .into_iter()
                .filter(|o| &o.portal == portal)
                .map(|o| o.agent)
                .collect()
        }
    };
    let comment = body
        .comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let id = InvitationId::random();
    let command = Command::Invite {
        id: id.clone(),
        inviter: caller.agent.id.clone(),
        target: body.target,
        masked: body.masked,
        comment,
        online,
    };
    let outcome = run_command(&state, &caller.account, &session.id, command).await?;
    let invitation = outcome
        .session
        .invitation(&id)
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok(HttpResponse::Created().json(InvitationView::from(invitation)))
}

async fn cancel(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let session = participant_session(&state, &caller, &path.0).await?;
    let id: InvitationId = lookup_id(&path.1, "invitation")?;
    let outcome = run_command(
        &state,
        &caller.account,
        &session.id,
        Command::Cancel {
            invitation: id.clone(),
            by: caller.agent.id.clone(),
        },
    )
    .await?;
    let invitation = outcome
        .session
        .invitation(&id)
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok(HttpResponse::Ok().json(InvitationView::from(invitation)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
    #[serde(default = "everyone")]
    audience: Audience,
}

fn everyone() -> Audience {
    Audience::Everyone
}

async fn post_message(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<MessageBody>,
) -> Result<HttpResponse, ApiError> {
    let session = participant_session(&state, &caller, &path).await?;
    let body = body.into_inner();
    let command = Command::Post {
        id: MessageId::random(),
        author: Poster::Agent(caller.agent.id.clone()),
        text: body.text,
        audience: body.audience,
    };
    let outcome = run_command(&state, &caller.account, &session.id, command).await?;
    let message = outcome
        .message
        .as_ref()
        .and_then(|m| message_view(&Viewer::Participant(&caller.agent.id), m));
    Ok(HttpResponse::Created().json(message))
}

async fn messages(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = participant_session(&state, &caller, &path).await?;
    let viewer = Viewer::Participant(&caller.agent.id);
    let all = state
        .node
        .backplane
        .messages(&caller.account.id, &session.id)
        .await?;
    let visible: Vec<_> = all
        .iter()
        .filter_map(|m| message_view(&viewer, m))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"messages": visible})))
}

async fn leave(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::Leave {
        agent: caller.agent.id.clone(),
    };
    participant_command(&state, &caller, &path, command).await
}

async fn end(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::End {
        by: caller.agent.id.clone(),
    };
    participant_command(&state, &caller, &path, command).await
}

/// Runs a participant's command on a session and answers the session as it is now.
async fn participant_command(
    state: &AppState,
    caller: &AgentCaller,
    raw: &str,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let session = participant_session(state, caller, raw).await?;
    let outcome = run_command(state, &caller.account, &session.id, command).await?;
    Ok(HttpResponse::Ok().json(agent_session_view(&outcome.session)))
}

/// The session an invitation belongs to, in the caller's account.
async fn invitation_session(
    state: &AppState,
    caller: &AgentCaller,
    raw: &str,
) -> Result<(InvitationId, SessionId), ApiError> {
    let id: InvitationId = lookup_id(raw, "invitation")?;
    let session = state
        .node
        .backplane
        .invitation_session(&caller.account.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok((id, session))
}

async fn accept(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, session) = invitation_session(&state, &caller, &path).await?;
    let msg = Accept {
        policy: caller.account.policy.clone(),
        invitation: id.clone(),
        agent: caller.agent.as_ref(),
    };
    let session = state
        .node
        .session(&caller.account.id, &session)
        .send(msg)
        .await??;
    let invitation = session
        .invitation(&id)
        .ok_or(DomainError::InvitationNotFound)?;
    Ok(HttpResponse::Ok().json(json!({
        "invitation": InvitationView::from(invitation),
        "session": agent_session_view(&session),
    })))
}

async fn decline(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, session) = invitation_session(&state, &caller, &path).await?;
    let command = Command::Decline {
        invitation: id.clone(),
        agent: caller.agent.id.clone(),
    };
    let outcome = run_command(&state, &caller.account, &session, command).await?;
    let invitation = outcome
        .session
        .invitation(&id)
        .ok_or(DomainError::InvitationNotFound)?;
    Ok(HttpResponse::Ok().json(json!({"invitation": InvitationView::from(invitation)})))
}
