//! Every request is counted, timed and logged as one structured line with
//! a request id (the client's `X-Request-Id` when it sends a sane one,
//! else a new one, echoed in the answer) and the node's id; logs written
//! while handling it carry both, through the request's span.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use super::AppState;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's request id is kept when it is 1 to 64 visible ASCII characters.
fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let id = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let sane = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| id.to_owned())
}

/// Middleware: metrics, the access log line and the request's span.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let node_id = state
        .as_ref()
        .map(|s| s.node.settings.node.id.clone())
        .unwrap_or_default();
    let request_id = client_request_id(&req).unwrap_or_else(|| crate::domain::id::random_id("req"));
    // Label values must stay few: any other method a client makes up is `other`.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let span = tracing::info_span!("request", request_id = %request_id, node = %node_id);
    let mut res = next.call(req).instrument(span.clone()).await?;
    let took = started.elapsed();
    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    if let Some(state) = &state {
        state.node.metrics.request(&route, &method, status, took);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    // An event stream's line is written when it starts (the answer's head
    // is out), not when it ends.
    span.in_scope(|| {
        tracing::info!(
            target: "collabd::http",
            method = %method,
            route = %route,
            path = %res.request().path(),
            status,
            latency_ms = took.as_secs_f64() * 1000.0,
            "request"
        );
    });
    Ok(res)
}
