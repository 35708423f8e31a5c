//! The customer's calls. Everything here is built by the visibility gate.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::auth::CustomerCaller;
use super::body::Object;
use super::error::ApiError;
use super::{AppState, PageQuery, sse};
use crate::app::customer as use_case;
use crate::app::idempotency::Side;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/customer/session", web::get().to(session))
        .route("/customer/events", web::get().to(events))
        .route("/customer/messages", web::get().to(messages))
        .route("/customer/messages", web::post().to(post_message))
        .route("/customer/reconnected", web::post().to(reconnected));
}

async fn session(
    caller: CustomerCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(use_case::session(&state.node, &caller).await?))
}

async fn messages(
    caller: CustomerCaller,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let page = use_case::messages(&state.node, &caller, query.before, limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
}

async fn post_message(
    req: HttpRequest,
    caller: CustomerCaller,
    state: web::Data<AppState>,
    body: web::Json<Object<MessageBody>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner().0;
    let owner = format!("customer:{}", caller.session.as_str());
    super::idempotency::once(
        &req,
        &state.node,
        &caller.account.id,
        (Side::Customer, &owner),
        &body,
        async {
            let message = use_case::post(&state.node, &caller, body.text.clone()).await?;
            super::idempotency::json(message)
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconnectedBody {
    generation: u32,
    #[serde(default)]
    screen_shared: bool,
}

async fn reconnected(
    caller: CustomerCaller,
    state: web::Data<AppState>,
    body: web::Json<Object<ReconnectedBody>>,
) -> Result<HttpResponse, ApiError> {
    let view =
        use_case::reconnected(&state.node, &caller, body.generation, body.screen_shared).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn events(
    caller: CustomerCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (inbox, permit) = use_case::events(&state.node, &caller).await?;
    let keep_alive = Duration::from_secs(state.node.settings.sse.keep_alive_secs);
    Ok(sse::respond(inbox, permit, keep_alive))
}
