//! Admin: accounts, portals, agents, agent tokens.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::auth::Admin;
use super::body::Object;
use super::error::ApiError;
use super::{AppState, lookup_id};
use crate::app::provisioning as use_case;
use crate::domain::{
    Account, AccountId, Agent, AgentId, DisplayName, PolicyInput, Portal, PortalId,
};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/{account}", web::put().to(put_account))
        .route("/{account}/portals/{portal}", web::put().to(put_portal))
        .route("/{account}/agents/{agent}", web::put().to(put_agent))
        .route(
            "/{account}/agents/{agent}/tokens",
            web::post().to(mint_token),
        );
}

/// An id a caller chooses: a bad one is a bad request.
fn new_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "{what} id must match [a-z0-9][a-z0-9_-]{{0,63}}, got {raw:?}"
        ))
    })
}

fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    name: String,
    #[serde(default)]
    policy: PolicyInput,
}

async fn put_account(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<AccountBody>>,
) -> Result<HttpResponse, ApiError> {
    let id: AccountId = new_id(&path, "account")?;
    let body = body.into_inner().0;
    let name = DisplayName::parse("name", &body.name).map_err(ApiError::invalid)?;
    let policy = body.policy.into_policy().map_err(ApiError::invalid)?;
    let account = Account { id, name, policy };
    let created = use_case::put_account(&state.node, &account).await?;
    Ok(HttpResponse::build(created_or_ok(created)).json(account))
}

fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    lookup_id(raw, "account")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalBody {
    name: String,
}

async fn put_portal(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<Object<PortalBody>>,
) -> Result<HttpResponse, ApiError> {
    let account = account_id(&path.0)?;
    let id: PortalId = new_id(&path.1, "portal")?;
    let name = DisplayName::parse("name", &body.name).map_err(ApiError::invalid)?;
    let portal = Portal { id, name };
    let created = use_case::put_portal(&state.node, &account, &portal).await?;
    Ok(HttpResponse::build(created_or_ok(created)).json(portal))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    name: String,
    #[serde(default)]
    portals: Vec<PortalId>,
}

async fn put_agent(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<Object<AgentBody>>,
) -> Result<HttpResponse, ApiError> {
    let account = account_id(&path.0)?;
    let id: AgentId = new_id(&path.1, "agent")?;
    let body = body.into_inner().0;
    let name = DisplayName::parse("name", &body.name).map_err(ApiError::invalid)?;
    let mut portals = body.portals;
    portals.sort();
    portals.dedup();
    let agent = Agent { id, name, portals };
    let created = use_case::put_agent(&state.node, &account, &agent).await?;
    Ok(HttpResponse::build(created_or_ok(created)).json(agent))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// Lifetime in seconds; at most the configured `auth.agent_token_ttl_secs`.
    ttl_secs: Option<u64>,
}

async fn mint_token(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let account = account_id(&path.0)?;
    let agent: AgentId = lookup_id(&path.1, "agent")?;
    let body: TokenBody = super::optional_json(&body)?;
    let minted =
        use_case::agent_token(&state.node, &state.tokens, &account, &agent, body.ttl_secs).await?;
    Ok(HttpResponse::Created().json(minted))
}
