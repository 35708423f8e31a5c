//! The agent's own calls: presence, the collaboration window, alerts, and
//! the agent's event stream.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::AgentCaller;
use super::body::Object;
use super::error::ApiError;
use super::{AppState, sse};
use crate::actors::reads::WINDOW_PAGE;
use crate::app::agents as use_case;
use crate::domain::PortalId;

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
    Ok(HttpResponse::Ok().json(use_case::me(&state.node, &caller).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    portal: PortalId,
}

async fn login(
    caller: AgentCaller,
    state: web::Data<AppState>,
    body: web::Json<Object<LoginBody>>,
) -> Result<HttpResponse, ApiError> {
    let portal = use_case::login(&state.node, &caller, &body.portal).await?;
    Ok(HttpResponse::Ok().json(json!({"agent": caller.agent.id, "portal": portal})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutBody {
    /// Also refuse every token of this agent minted until now.
    #[serde(default)]
    revoke: bool,
}

async fn logout(
    caller: AgentCaller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: LogoutBody = super::optional_json(&body)?;
    if body.revoke {
        let by = crate::domain::Actor::agent(&caller.agent.id);
        crate::app::admin::revoke_tokens(&state.node, &caller.account, &caller.agent, by).await?;
    } else {
        use_case::logout(&state.node, &caller).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn invitations(
    caller: AgentCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let offers = use_case::offers(&state.node, &caller).await?;
    Ok(HttpResponse::Ok().json(json!({"invitations": offers})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollaboratorsQuery {
    q: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
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
    let view = use_case::collaborators(
        &state.node,
        &caller,
        query.q.as_deref(),
        query.limit.unwrap_or(WINDOW_PAGE),
        query.cursor.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn events(caller: AgentCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (inbox, permit) = use_case::events(&state.node, &caller).await?;
    let keep_alive = Duration::from_secs(state.node.settings.sse.keep_alive_secs);
    Ok(sse::respond(inbox, permit, keep_alive))
}
