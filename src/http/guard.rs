//! Request-level guards that sit in front of every handler: a body that
//! does not arrive in time is refused (408) instead of holding a worker
//! and a place among the node's requests forever, and a known path asked
//! with a method it does not have is 405 with `Allow`, not 404.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::Stream;

use super::AppState;
use super::error::ApiError;

/// Middleware: the request's body must arrive within
/// `http.request_timeout_secs` of the handler starting to read it.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let secs = req
        .app_data::<web::Data<AppState>>()
        .map_or(10, |s| s.node.settings.http.request_timeout_secs);
    let payload = req.take_payload();
    let timed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(Duration::from_secs(secs))),
        done: false,
    });
    req.set_payload(Payload::from(timed));
    next.call(req).await
}

/// A body stream that fails with `TimedOut` once its time is up.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            self.done = item.is_none();
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(super::error::body_timed_out())));
        }
        Poll::Pending
    }
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
