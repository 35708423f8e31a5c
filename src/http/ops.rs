//! Operations: liveness, readiness, metrics, and the contract as OpenAPI.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// The HTTP contract (API.md) as OpenAPI 3.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi));
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "node": state.node.settings.node.id}))
}

async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    crate::app::ready(&state.node).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready", "node": state.node.settings.node.id})))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

async fn metrics(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::metrics_caller(&req, &state)?;
    Ok(render_metrics(&state))
}

fn render_metrics(state: &AppState) -> HttpResponse {
    let node = &state.node;
    let m = &node.metrics;
    m.requests_in_flight.set(node.admission.in_flight() as i64);
    let (sessions, agents, portals) = node.actor_counts();
    for (kind, n) in [
        ("session", sessions),
        ("agent", agents),
        ("portal", portals),
    ] {
        m.live_actors
            .get_or_create(&crate::metrics::KindLabel {
                kind: kind.to_owned(),
            })
            .set(n as i64);
    }
    for (kind, bytes) in crate::metrics::heap() {
        m.heap_bytes
            .get_or_create(&crate::metrics::KindLabel {
                kind: kind.to_owned(),
            })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.render())
}
