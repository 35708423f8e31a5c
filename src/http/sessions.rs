//! Sessions, their chat, and invitations: everything the session's agents
//! and the invitees do.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::AgentCaller;
use super::body::Object;
use super::error::ApiError;
use super::idempotency;
use super::{AppState, PageQuery, lookup_id};
use crate::app::idempotency::Side;
use crate::app::sessions::{self as use_case, InviteRequest};
use crate::domain::session::{Audience, Comment, EscalateAfter, InvitationKind, Target};
use crate::domain::{AgentId, DisplayName, InvitationId, SessionId, SessionMode};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    // Static prefixes first, the busiest routes first inside them: actix
    // tries a scope's routes in order and matches each dynamic one with a
    // regex, and a request to /v1 tried about thirty of them (3-4 % of a
    // node's CPU under load, benches/peer/README.md).
    cfg.service(
        web::scope("/invitations")
            .route("/{invitation}/accept", web::post().to(accept))
            .route("/{invitation}/decline", web::post().to(decline)),
    )
    .service(
        web::scope("/sessions")
            .route("/{session}/invitations", web::post().to(invite))
            .route("/{session}/leave", web::post().to(leave))
            .route("", web::post().to(create))
            .route("/{session}", web::get().to(get))
            .route(
                "/{session}/invitations/{invitation}",
                web::get().to(invitation),
            )
            .route(
                "/{session}/invitations/{invitation}",
                web::delete().to(cancel),
            )
            .route("/{session}/messages", web::post().to(post_message))
            .route("/{session}/messages", web::get().to(messages))
            .route("/{session}/end", web::post().to(end))
            .route("/{session}/audit", web::get().to(audit))
            .route("/{session}/participants/{agent}/mask", web::post().to(mask))
            .route(
                "/{session}/participants/{agent}/unmask",
                web::post().to(unmask),
            ),
    );
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    lookup_id(raw, "session")
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CustomerBody {
    name: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    mode: SessionMode,
    customer: CustomerBody,
}

async fn create(
    req: HttpRequest,
    caller: AgentCaller,
    state: web::Data<AppState>,
    body: web::Json<Object<CreateBody>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner().0;
    let customer_name =
        DisplayName::parse("customer.name", &body.customer.name).map_err(ApiError::invalid)?;
    let owner = caller.key_owner();
    idempotency::once(
        &req,
        &state.node,
        &caller.account.id,
        (Side::Agent, &owner),
        &body,
        async {
            let created = use_case::create(
                &state.node,
                &state.tokens,
                &caller,
                body.mode,
                customer_name,
            )
            .await?;
            idempotency::json(created)
        },
    )
    .await
}

async fn get(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = use_case::get(&state.node, &caller, &session_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    target: Target,
    #[serde(default)]
    kind: InvitationKind,
    escalate: Option<EscalateAfter>,
    #[serde(default)]
    masked: bool,
    comment: Option<String>,
}

async fn invite(
    req: HttpRequest,
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<InviteBody>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner().0;
    let session = session_id(&path)?;
    let owner = caller.key_owner();
    idempotency::once(
        &req,
        &state.node,
        &caller.account.id,
        (Side::Agent, &owner),
        &body,
        async {
            let request = InviteRequest {
                target: body.target.clone(),
                kind: body.kind,
                escalate: body.escalate.clone(),
                masked: body.masked,
                comment: body
                    .comment
                    .as_deref()
                    .map(Comment::parse)
                    .transpose()?
                    .flatten(),
            };
            let view = use_case::invite(&state.node, &caller, &session, request).await?;
            super::idempotency::json(view)
        },
    )
    .await
}

async fn invitation(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let id: InvitationId = lookup_id(&path.1, "invitation")?;
    let view = use_case::invitation(&state.node, &caller, &session_id(&path.0)?, &id).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn cancel(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let id: InvitationId = lookup_id(&path.1, "invitation")?;
    let view = use_case::cancel(&state.node, &caller, &session_id(&path.0)?, &id).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, Serialize)]
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
    req: HttpRequest,
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<MessageBody>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner().0;
    let session = session_id(&path)?;
    let owner = caller.key_owner();
    idempotency::once(
        &req,
        &state.node,
        &caller.account.id,
        (Side::Agent, &owner),
        &body,
        async {
            let message = use_case::post(
                &state.node,
                &caller,
                &session,
                body.text.clone(),
                body.audience,
            )
            .await?;
            super::idempotency::json(message)
        },
    )
    .await
}

async fn messages(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let page = use_case::messages(
        &state.node,
        &caller,
        &session_id(&path)?,
        query.before,
        limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn leave(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = use_case::leave(&state.node, &caller, &session_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn end(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = use_case::end(&state.node, &caller, &session_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `?cursor=&limit=` of a session's audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = crate::app::audit::session(
        &state.node,
        &caller,
        &session_id(&path)?,
        query.cursor.as_deref(),
        query.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"entries": page.items, "next_cursor": page.next_cursor})))
}

async fn mask(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_masked(caller, state, path, true).await
}

async fn unmask(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_masked(caller, state, path, false).await
}

async fn set_masked(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    masked: bool,
) -> Result<HttpResponse, ApiError> {
    let session = session_id(&path.0)?;
    let agent: AgentId = lookup_id(&path.1, "participant")?;
    let view = use_case::set_masked(&state.node, &caller, &session, agent, masked).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn accept(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: InvitationId = lookup_id(&path, "invitation")?;
    let accepted = use_case::accept(&state.node, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(accepted))
}

async fn decline(
    caller: AgentCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: InvitationId = lookup_id(&path, "invitation")?;
    let view = use_case::decline(&state.node, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"invitation": view})))
}
