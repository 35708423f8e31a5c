//! `Idempotency-Key` on creating requests (sessions, invitations,
//! messages), as HTTP: the header, and the answer replayed from a record.
//! What a key means is `app::idempotency`'s.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use crate::actors::Node;
use crate::app::idempotency::{self, Answer, Keyed, Side};
use crate::domain::AccountId;

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// The response header set on an answer replayed from a record.
pub const REPLAYED: &str = "Idempotent-Replayed";
/// The longest key accepted.
const MAX_KEY: usize = 255;

/// Runs `create` (which answers 201 with its JSON) once per
/// `Idempotency-Key` of `caller` in `account`; without the header, simply
/// runs it. `request` is the parsed body, so that a retry that sends the
/// same JSON formatted differently is still the same request.
pub async fn once<R, F>(
    req: &HttpRequest,
    node: &Node,
    account: &AccountId,
    (side, caller): (Side, &str),
    request: &R,
    create: F,
) -> Result<HttpResponse, ApiError>
where
    R: Serialize,
    F: Future<Output = Result<serde_json::Value, ApiError>>,
{
    let key = key_of(req)?;
    let body = match key {
        Some(_) => serde_json::to_string(request)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?,
        None => String::new(),
    };
    let parts = [req.method().as_str(), req.path(), &body];
    let keyed = key.map(|key| Keyed {
        side,
        caller,
        key,
        request: &parts,
    });
    Ok(
        match idempotency::once(node, account, keyed, create).await? {
            Answer::Created(body) => HttpResponse::Created().json(body),
            Answer::Replayed { status, body } => {
                HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED))
                    .insert_header((REPLAYED, "true"))
                    .json(body)
            }
        },
    )
}

/// The key sent, if any: 1 to 255 visible ASCII characters.
fn key_of(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| (1..=MAX_KEY).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{HEADER} must be 1 to {MAX_KEY} visible ASCII characters"
            ))
        })
}

/// A created thing as the JSON `once` answers with.
pub fn json(created: impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(created).map_err(|e| ApiError::unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_problem_codes_are_in_the_openapi_document() {
        let doc: serde_json::Value =
            serde_json::from_str(super::super::ops::OPENAPI).unwrap_or_default();
        let codes = &doc["components"]["schemas"]["ProblemCode"]["enum"];
        for code in ["idempotency_key_reused", "idempotency_in_progress"] {
            assert!(
                codes.as_array().is_some_and(|c| c.contains(&code.into())),
                "{code} missing from ProblemCode"
            );
        }
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        let with = |k: &str| {
            actix_web::test::TestRequest::default()
                .insert_header((HEADER, k))
                .to_http_request()
        };
        assert_eq!(key_of(&with("retry-1")).ok().flatten(), Some("retry-1"));
        assert!(key_of(&with("has space")).is_err());
        assert!(key_of(&with(&"k".repeat(256))).is_err());
        assert!(key_of(&with(&"k".repeat(255))).is_ok());
        let none = actix_web::test::TestRequest::default().to_http_request();
        assert!(matches!(key_of(&none), Ok(None)));
    }
}
