//! The HTTP surface (API.md): thin handlers that extract, call one use case
//! of `app/`, and map the result; errors as problem+json.

pub mod admin;
pub mod agents;
pub mod auth;
pub mod body;
pub mod console;
pub mod customer;
pub mod durable;
pub mod error;
pub mod guard;
pub mod idempotency;
pub mod observe;
pub mod ops;
pub mod provisioning;
pub mod sessions;
pub mod sse;

use std::str::FromStr;
use std::sync::Arc;

use actix_web::web;
use serde::Deserialize;

use crate::actors::Node;
use crate::app::tokens::Tokens;
use error::ApiError;

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

/// A JSON body that may be left out (empty or only whitespace): the
/// defaults then.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<body::Object<T>>(body)
        .map(|b| b.0)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// `?before=&limit=` of a message page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Only messages numbered below this.
    pub before: Option<u64>,
    /// At most this many (default 50, at most 200).
    pub limit: Option<usize>,
}

impl PageQuery {
    /// The page size asked for, checked against the contract's bounds.
    pub fn limit(&self) -> Result<usize, ApiError> {
        let max = crate::app::sessions::MESSAGE_PAGE_MAX;
        match self.limit {
            None => Ok(crate::app::sessions::MESSAGE_PAGE),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::invalid(format!("limit must be 1 to {max}"))),
        }
    }
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
        .service(
            web::scope("/v1")
                .configure(sessions::routes)
                .configure(agents::routes)
                .configure(customer::routes)
                .service(
                    // One scope for both: a request under /v1/accounts
                    // never falls through to a later sibling scope.
                    web::scope("/accounts")
                        .configure(provisioning::routes)
                        .configure(admin::routes),
                ),
        )
        .configure(ops::routes)
        .configure(console::routes)
        .default_service(web::to(guard::no_route));
    }
}
