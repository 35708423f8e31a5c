//! Administration (admin token): reads of what is stored, the cascades
//! that take things away, forced logout and token revocation. Each handler
//! calls one use case of `app::admin`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::Admin;
use super::body::Object;
use super::error::ApiError;
use super::{AppState, lookup_id};
use crate::app::admin::{self as use_case, AccountPatch};
use crate::app::provisioning::existing_account;
use crate::domain::session::SessionStatus;
use crate::domain::{AccountId, AgentId, DisplayName, PortalId, SessionId};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(accounts))
        .route("/{account}", web::get().to(account))
        .route("/{account}", web::patch().to(patch_account))
        .route("/{account}", web::delete().to(delete_account))
        .route("/{account}/portals", web::get().to(portals))
        .route("/{account}/portals/{portal}", web::get().to(portal))
        .route(
            "/{account}/portals/{portal}",
            web::delete().to(delete_portal),
        )
        .route("/{account}/agents", web::get().to(agents))
        .route("/{account}/agents/{agent}", web::get().to(agent))
        .route("/{account}/agents/{agent}", web::delete().to(delete_agent))
        .route(
            "/{account}/agents/{agent}/logout",
            web::post().to(force_logout),
        )
        .route(
            "/{account}/agents/{agent}/tokens/revoke",
            web::post().to(revoke),
        )
        .route("/{account}/sessions", web::get().to(sessions))
        .route("/{account}/sessions/{session}", web::get().to(session))
        .route(
            "/{account}/sessions/{session}/end",
            web::post().to(end_session),
        )
        .route("/{account}/audit", web::get().to(audit));
}

/// `?session=&agent=&since=&cursor=&limit=` of the account's audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    session: Option<String>,
    agent: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let invalid = |what: &str| ApiError::invalid(format!("{what} is not a valid id"));
    let filter = crate::app::audit::AccountQuery {
        session: query
            .session
            .map(|s| SessionId::parse(&s).map_err(|_| invalid("session")))
            .transpose()?,
        agent: query
            .agent
            .map(|a| AgentId::parse(&a).map_err(|_| invalid("agent")))
            .transpose()?,
        since: query.since,
        cursor: query.cursor,
        limit: query.limit,
    };
    let page = crate::app::audit::account(&state.node, &account_id(&path)?, filter).await?;
    Ok(HttpResponse::Ok().json(json!({"entries": page.items, "next_cursor": page.next_cursor})))
}

fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    lookup_id(raw, "account")
}

fn agent_path(path: &(String, String)) -> Result<(AccountId, AgentId), ApiError> {
    Ok((account_id(&path.0)?, lookup_id(&path.1, "agent")?))
}

/// `?cursor=&limit=` of an admin list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn accounts(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = use_case::accounts(&state.node, query.cursor.as_deref(), query.limit).await?;
    Ok(HttpResponse::Ok().json(json!({"accounts": page.items, "next_cursor": page.next_cursor})))
}

async fn account(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account = existing_account(&state.node, &account_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(account))
}

/// A JSON merge patch (RFC 7396) of an account: `name`, and `policy` field
/// by field (`null` returns a field to its default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountPatchBody {
    name: Option<String>,
    policy: Option<serde_json::Map<String, serde_json::Value>>,
}

async fn patch_account(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<AccountPatchBody>>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    let body = body.into_inner().0;
    let name = body
        .name
        .map(|n| DisplayName::parse("name", &n))
        .transpose()
        .map_err(ApiError::invalid)?;
    let patch = AccountPatch {
        name,
        policy: body.policy,
    };
    let account = use_case::patch_account(&state.node, &id, patch).await?;
    Ok(HttpResponse::Ok().json(account))
}

async fn delete_account(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    use_case::delete_account(&state.node, &account_id(&path)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn portals(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let portals = use_case::portals(&state.node, &account_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(json!({"portals": portals})))
}

fn portal_path(path: &(String, String)) -> Result<(AccountId, PortalId), ApiError> {
    Ok((account_id(&path.0)?, lookup_id(&path.1, "portal")?))
}

async fn portal(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, portal) = portal_path(&path)?;
    Ok(HttpResponse::Ok().json(use_case::portal(&state.node, &account, &portal).await?))
}

async fn delete_portal(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, portal) = portal_path(&path)?;
    use_case::delete_portal(&state.node, &account, &portal).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn agents(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = use_case::agents(
        &state.node,
        &account_id(&path)?,
        query.cursor.as_deref(),
        query.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"agents": page.items, "next_cursor": page.next_cursor})))
}

async fn agent(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, agent) = agent_path(&path)?;
    Ok(HttpResponse::Ok().json(use_case::agent(&state.node, &account, &agent).await?))
}

async fn delete_agent(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, agent) = agent_path(&path)?;
    use_case::delete_agent(&state.node, &account, &agent).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn force_logout(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, agent) = agent_path(&path)?;
    use_case::force_logout(&state.node, &account, &agent).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn revoke(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, agent) = agent_path(&path)?;
    use_case::revoke(&state.node, &account, &agent).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `?status=&cursor=&limit=` of the sessions list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsQuery {
    status: Option<SessionStatus>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn sessions(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<SessionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = use_case::sessions(
        &state.node,
        &account_id(&path)?,
        query.status.unwrap_or(SessionStatus::Active),
        query.cursor.as_deref(),
        query.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"sessions": page.items, "next_cursor": page.next_cursor})))
}

fn session_path(path: &(String, String)) -> Result<(AccountId, SessionId), ApiError> {
    Ok((account_id(&path.0)?, lookup_id(&path.1, "session")?))
}

async fn session(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, session) = session_path(&path)?;
    Ok(HttpResponse::Ok().json(use_case::session(&state.node, &account, &session).await?))
}

async fn end_session(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, session) = session_path(&path)?;
    Ok(HttpResponse::Ok().json(use_case::end_session(&state.node, &account, &session).await?))
}
