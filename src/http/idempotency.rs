//! `Idempotency-Key` on creating requests (sessions, invitations,
//! messages): a retry with the same key within 24 h answers the first
//! result and changes nothing, so a client that lost an answer, or got 503
//! because replicas did not confirm in time, can always retry safely.
//!
//! The first request holds the key (an atomic reserve in the backplane,
//! on the account's hash tag) while it runs; its result replaces the hold,
//! kept 24 h. A key is the caller's own (agent or customer), and bound to
//! the request it was first used with: the same key with another request
//! is 422 `idempotency_key_reused`; while the first still runs, 409
//! `idempotency_in_progress`. A request that fails changes nothing and
//! gives its key back.

use std::future::Future;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::actors::Node;
use crate::domain::AccountId;

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// The response header set on an answer replayed from a record.
pub const REPLAYED: &str = "Idempotent-Replayed";
/// How long a result is kept for retries.
pub const KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a request may hold its key while it runs: a node that dies
/// mid-request frees the key after this.
const RUNNING_FOR: Duration = Duration::from_secs(30);
/// The longest key accepted.
const MAX_KEY: usize = 255;

/// What is stored under a key.
#[derive(Serialize, Deserialize)]
struct Record {
    /// Digest of the method, path and body the key was first used with.
    request: String,
    /// The answer, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<serde_json::Value>,
}

/// Runs `create` (which answers 201 with its JSON) once per
/// `Idempotency-Key` of `caller` in `account`; without the header, simply
/// runs it. `request` is the parsed body, so that a retry that sends the
/// same JSON formatted differently is still the same request.
pub async fn once<R, F>(
    req: &HttpRequest,
    node: &Node,
    account: &AccountId,
    caller: &str,
    request: &R,
    create: F,
) -> Result<HttpResponse, ApiError>
where
    R: Serialize,
    F: Future<Output = Result<serde_json::Value, ApiError>>,
{
    let Some(key) = key_of(req)? else {
        return Ok(HttpResponse::Created().json(create.await?));
    };
    let body = serde_json::to_string(request)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    let fingerprint = digest(&[req.method().as_str(), req.path(), &body]);
    let slot = digest(&[caller, key]);
    let running = record_json(&Record {
        request: fingerprint.clone(),
        status: None,
        body: None,
    });
    let held = node
        .backplane
        .reserve(account, &slot, &running, RUNNING_FOR)
        .await
        .map_err(crate::actors::Failure::from)?;
    if let Some(held) = held {
        return replay(node, &held, &fingerprint);
    }
    match create.await {
        Ok(body) => {
            let done = record_json(&Record {
                request: fingerprint,
                status: Some(StatusCode::CREATED.as_u16()),
                body: Some(body.clone()),
            });
            // Written before the answer, so `WAIT` (`durable.rs`) covers it.
            if let Err(e) = node.backplane.record(account, &slot, &done, KEEP).await {
                tracing::warn!(error = %e, "an Idempotency-Key result could not be recorded");
            }
            Ok(HttpResponse::Created().json(body))
        }
        Err(e) => {
            if let Err(e) = node.backplane.forget(account, &slot).await {
                tracing::warn!(error = %e, "an Idempotency-Key hold could not be released");
            }
            Err(e)
        }
    }
}

/// The answer to a key that is already held or used.
fn replay(node: &Node, held: &str, fingerprint: &str) -> Result<HttpResponse, ApiError> {
    let held: Record = serde_json::from_str(held)
        .map_err(|_| ApiError::unavailable("an Idempotency-Key record is unreadable"))?;
    if held.request != fingerprint {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request; use a new key",
        ));
    }
    match (
        held.status.and_then(|s| StatusCode::from_u16(s).ok()),
        held.body,
    ) {
        (Some(status), Some(body)) => {
            crate::metrics::Metrics::inc(&node.metrics.idempotent_replays);
            Ok(HttpResponse::build(status)
                .insert_header((REPLAYED, "true"))
                .json(body))
        }
        _ => Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still running; retry shortly",
            )
        }),
    }
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

fn record_json(record: &Record) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// SHA-256 of the parts, each ended by a NUL, in hex.
fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
    fn digests_separate_their_parts() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_eq!(digest(&["a"]).len(), 64);
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
