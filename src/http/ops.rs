//! Operations: liveness, readiness, metrics, and the contract as OpenAPI.

use std::fmt::Write;
use std::sync::atomic::Ordering;

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
    let m = &state.node.metrics;
    let counters = [
        (
            "collabd_sessions_created_total",
            "Sessions created on this node.",
            &m.sessions_created,
        ),
        (
            "collabd_invitations_sent_total",
            "Invitations sent from this node.",
            &m.invitations_sent,
        ),
        (
            "collabd_accepts_won_total",
            "Accepts that won their claim.",
            &m.accepts_won,
        ),
        (
            "collabd_accepts_lost_total",
            "Accepts refused: another agent won.",
            &m.accepts_lost,
        ),
        (
            "collabd_commit_conflicts_total",
            "Session commits retried after a version conflict.",
            &m.commit_conflicts,
        ),
        (
            "collabd_streams_opened_total",
            "Event streams opened.",
            &m.streams_opened,
        ),
        (
            "collabd_slow_clients_dropped_total",
            "Streams dropped because the client fell behind.",
            &m.slow_clients_dropped,
        ),
        (
            "collabd_events_delivered_total",
            "Events written to client outboxes.",
            &m.events_delivered,
        ),
        (
            "collabd_events_prepared_total",
            "Events viewed and serialized (once per node per event and kind of viewer).",
            &m.events_prepared,
        ),
        (
            "collabd_streams_refused_total",
            "Event streams refused: the token had as many open as it may.",
            &m.streams_refused,
        ),
        (
            "collabd_requests_shed_total",
            "Requests refused with 503 because the node was at capacity.",
            &m.requests_shed,
        ),
        (
            "collabd_requests_rate_limited_total",
            "Requests refused with 429 because their token's rate was used up.",
            &m.requests_rate_limited,
        ),
        (
            "collabd_session_loads_total",
            "Session states read from the backplane (not served from the node's cache).",
            &m.session_loads,
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP collabd_open_streams Event streams open on this node.\n# TYPE collabd_open_streams gauge\ncollabd_open_streams {}",
        state.node.permits.open_streams()
    );
    let _ = writeln!(
        out,
        "# HELP collabd_requests_in_flight Requests being handled on this node.\n# TYPE collabd_requests_in_flight gauge\ncollabd_requests_in_flight {}",
        state.node.admission.in_flight()
    );
    let (sessions, agents, portals) = state.node.actor_counts();
    let _ = writeln!(
        out,
        "# HELP collabd_live_actors Actors running on this node, by kind.\n# TYPE collabd_live_actors gauge"
    );
    for (kind, n) in [
        ("session", sessions),
        ("agent", agents),
        ("portal", portals),
    ] {
        let _ = writeln!(out, "collabd_live_actors{{kind=\"{kind}\"}} {n}");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
