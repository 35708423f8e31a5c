//! The customer's calls. Everything here is built by the visibility gate.

use std::time::Duration;

use actix_web::{HttpResponse, Responder, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::CustomerCaller;
use super::error::ApiError;
use super::{AppState, run_command, sse};
use crate::actors::outbox::{Connect, Outbox};
use crate::actors::reads;
use crate::domain::session::{Audience, Poster};
use crate::domain::visibility::{Viewer, customer_session_view, message_view};
use crate::domain::{Command, MessageId};

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
    let (view, _) =
        reads::customer_session(&state.node, &caller.account.id, &caller.session).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn messages(
    caller: CustomerCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, messages) =
        reads::customer_session(&state.node, &caller.account.id, &caller.session).await?;
    Ok(HttpResponse::Ok().json(json!({"messages": messages})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
}

async fn post_message(
    caller: CustomerCaller,
    state: web::Data<AppState>,
    body: web::Json<MessageBody>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::Post {
        id: MessageId::random(),
        author: Poster::Customer,
        text: body.into_inner().text,
        audience: Audience::Everyone,
    };
    let outcome = run_command(&state, &caller.account, &caller.session, command).await?;
    let message = outcome
        .message
        .as_ref()
        .and_then(|m| message_view(&Viewer::Customer, m));
    Ok(HttpResponse::Created().json(message))
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
    body: web::Json<ReconnectedBody>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::CustomerReconnected {
        generation: body.generation,
        screen_shared: body.screen_shared,
    };
    let outcome = run_command(&state, &caller.account, &caller.session, command).await?;
    Ok(HttpResponse::Ok().json(customer_session_view(&outcome.session)))
}

async fn events(
    caller: CustomerCaller,
    state: web::Data<AppState>,
) -> Result<impl Responder, ApiError> {
    // Fail before opening a stream if the session is gone.
    reads::customer_session(&state.node, &caller.account.id, &caller.session).await?;
    let settings = &state.node.settings.sse;
    let (outbox, rx) = Outbox::channel(settings.outbox);
    state
        .node
        .session(&caller.account.id, &caller.session)
        .send(Connect(outbox))
        .await?;
    Ok(sse::respond(
        rx,
        Duration::from_secs(settings.keep_alive_secs),
    ))
}
