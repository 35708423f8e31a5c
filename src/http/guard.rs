//! Request-level guards that sit in front of every handler: a body is read
//! in full before any handler takes a place among the node's requests, and
//! one that does not arrive in time is refused (408), and a known path asked
//! with a method it does not have is 405 with `Allow`, not 404.

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::StreamExt;

use super::AppState;
use super::error::ApiError;

/// Middleware: the request's body is read in full, within
/// `http.request_timeout_secs` and `http.max_body_bytes`, before the
/// handler's extractors run. So a caller's place among the node's requests
/// (taken by the caller extractor) is held while its request is handled,
/// never while a slow client trickles its body in: 64 such bodies used to
/// fill `limits.max_in_flight` and shed everyone else's requests with 503.
/// A body that does not arrive in time is 408, one too large 413.
pub async fn read_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let (secs, max) = req
        .app_data::<web::Data<AppState>>()
        .map_or((10, 64 * 1024), |s| {
            let http = &s.node.settings.http;
            (http.request_timeout_secs, http.max_body_bytes)
        });
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Ok(req
            .error_response(ApiError::payload_too_large())
            .map_into_right_body());
    }
    let mut payload = req.take_payload();
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::invalid(format!("unreadable body: {e}")))?;
            if body.len() + chunk.len() > max {
                return Err(ApiError::payload_too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let body = match tokio::time::timeout(Duration::from_secs(secs), read).await {
        Ok(Ok(body)) => body,
        Ok(Err(refused)) => return Ok(req.error_response(refused).map_into_right_body()),
        Err(_) => {
            return Ok(req
                .error_response(ApiError::request_timeout())
                .map_into_right_body());
        }
    };
    if !body.is_empty() {
        req.set_payload(Payload::from(body));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Every path of the API with its methods, read from the OpenAPI document
/// the node serves (a test keeps the two in step).
static PATHS: LazyLock<Vec<(ResourceDef, String)>> = LazyLock::new(|| {
    let doc: serde_json::Value = serde_json::from_str(super::ops::OPENAPI).unwrap_or_default();
    let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) else {
        return Vec::new();
    };
    paths
        .iter()
        .map(|(path, item)| {
            let methods: Vec<String> = ["get", "put", "post", "patch", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| m.to_ascii_uppercase())
                .collect();
            (ResourceDef::new(path.as_str()), methods.join(", "))
        })
        .collect()
});

/// The methods `path` has, if it is a path of the API.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    PATHS
        .iter()
        .find(|(def, _)| def.is_match(path))
        .map(|(_, allow)| allow.as_str())
}

/// The default service: 405 for a known path, 404 otherwise.
pub async fn no_route(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let console = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.node.settings.console.enabled)
        && super::console::is_console_path(req.path());
    let allow = match allowed_methods(req.path()) {
        Some(allow) => Some(allow),
        // The console's pages and assets are read-only.
        None if console => Some("GET, HEAD"),
        None => None,
    };
    match allow {
        Some(allow) => Err(ApiError::method_not_allowed(
            req.method().as_str(),
            allow.to_owned(),
        )),
        None => Err(ApiError::not_found("route")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_paths_come_from_the_openapi_document() {
        assert!(PATHS.len() > 20, "{} paths", PATHS.len());
        assert_eq!(allowed_methods("/v1/sessions"), Some("POST"));
        assert_eq!(
            allowed_methods("/v1/sessions/ses-1/messages"),
            Some("GET, POST")
        );
        assert_eq!(allowed_methods("/v1/nothing-here"), None);
    }

    #[test]
    fn docs_api_lists_every_operation() {
        let docs = include_str!("../../docs/API.md");
        let doc: serde_json::Value = serde_json::from_str(super::super::ops::OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut missing = Vec::new();
        for (path, item) in paths {
            for method in ["get", "put", "post", "patch", "delete"] {
                if item.get(method).is_some() {
                    let entry = format!("`{} {path}`", method.to_ascii_uppercase());
                    if !docs.contains(&entry) {
                        missing.push(entry);
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/API.md lacks {missing:?}; regenerate its operation index"
        );
    }
}
