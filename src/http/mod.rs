//! The HTTP surface (API.md): thin handlers that extract, call the actors
//! or reads, and map the result; errors as problem+json.

pub mod agents;
pub mod auth;
pub mod customer;
pub mod error;
pub mod ops;
pub mod provisioning;
pub mod sessions;
pub mod sse;
pub mod token;

use std::str::FromStr;
use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::actors::Node;
use crate::actors::session::Execute;
use crate::domain::{Account, Command, Outcome, SessionId};
use error::ApiError;
use token::Tokens;

/// What every handler shares.
pub struct AppState {
    /// This node.
    pub node: Arc<Node>,
    /// Token minting and checking.
    pub tokens: Tokens,
}

/// An id from the path of a lookup: one that cannot exist is simply not found.
pub fn lookup_id<T: FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(what))
}

/// Runs a command on a session through this node's session actor, under
/// the account's current policy.
pub async fn run_command(
    state: &AppState,
    account: &Account,
    session: &SessionId,
    command: Command,
) -> Result<Outcome, ApiError> {
    let execute = Execute {
        policy: account.policy.clone(),
        command,
    };
    Ok(state
        .node
        .session(&account.id, session)
        .send(execute)
        .await??)
}

/// Mounts every route.
pub fn configure(max_body: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(
            web::JsonConfig::default()
                .limit(max_body)
                .error_handler(|err, _| error::json_error(err).into()),
        )
        .app_data(web::PayloadConfig::default().limit(max_body))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| ApiError::invalid(format!("invalid query: {err}")).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _| ApiError::not_found(&format!("path ({err})")).into()),
        )
        .configure(ops::routes)
        .service(
            web::scope("/v1")
                .configure(provisioning::routes)
                .configure(agents::routes)
                .configure(sessions::routes)
                .configure(customer::routes),
        )
        .default_service(web::to(not_found));
    }
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("route"))
}
