//! The customer's calls. Everything it reads is built by the visibility gate.

use std::sync::Arc;

use serde_json::Value;

use super::Error;
use super::sessions::{MessagePage, page};
use super::{CustomerCaller, run};
use crate::actors::outbox::Inbox;
use crate::actors::session::{Read, Want};
use crate::actors::{Node, StreamPermit};
use crate::backplane::Transcript;
use crate::domain::MessageId;
use crate::domain::session::{Audience, CustomerReconnected, Post, Poster};
use crate::domain::visibility::{CustomerSessionView, Viewer, message_view};

async fn view(node: &Arc<Node>, caller: &CustomerCaller) -> Result<CustomerSessionView, Error> {
    let read = Read {
        participant: None,
        want: Want {
            customer_view: true,
            ..Want::default()
        },
    };
    node.ask_session(&caller.account.id, &caller.session, read)
        .await??
        .customer_view
        .ok_or(Error::NotFound("session"))
}

/// `GET /v1/customer/session`.
pub async fn session(
    node: &Arc<Node>,
    caller: &CustomerCaller,
) -> Result<CustomerSessionView, Error> {
    view(node, caller).await
}

/// `GET /v1/customer/messages?before=&limit=`: numbered in the customer's
/// own sequence.
pub async fn messages(
    node: &Arc<Node>,
    caller: &CustomerCaller,
    before: Option<u64>,
    limit: usize,
) -> Result<MessagePage, Error> {
    view(node, caller).await?;
    page(
        node,
        &caller.account.id,
        &caller.session,
        Transcript::Customer,
        Viewer::Customer,
        before,
        limit,
    )
    .await
}

/// `POST /v1/customer/messages`: the message as the customer sees it.
pub async fn post(node: &Arc<Node>, caller: &CustomerCaller, text: String) -> Result<Value, Error> {
    let command = Post {
        id: MessageId::random(),
        author: Poster::Customer,
        text,
        audience: Audience::Everyone,
    };
    let done = run(
        node,
        &caller.account,
        &caller.session,
        command.into(),
        None,
        Want::default(),
    )
    .await?;
    done.outcome
        .message
        .as_ref()
        .and_then(|m| message_view(&Viewer::Customer, m))
        .ok_or(Error::NotFound("message"))
}

/// `POST /v1/customer/reconnected`.
pub async fn reconnected(
    node: &Arc<Node>,
    caller: &CustomerCaller,
    generation: u32,
    screen_shared: bool,
) -> Result<CustomerSessionView, Error> {
    let command = CustomerReconnected {
        generation,
        screen_shared,
    };
    let want = Want {
        customer_view: true,
        ..Want::default()
    };
    run(
        node,
        &caller.account,
        &caller.session,
        command.into(),
        None,
        want,
    )
    .await?
    .customer_view
    .ok_or(Error::NotFound("session"))
}

/// `GET /v1/customer/events`: the customer's stream, once the session is
/// known to exist and the token has a place left.
pub async fn events(
    node: &Arc<Node>,
    caller: &CustomerCaller,
) -> Result<(Inbox, StreamPermit), Error> {
    view(node, caller).await?;
    let actor = node.session(&caller.account.id, &caller.session);
    super::open_stream(
        node,
        &caller.token,
        caller.minted,
        crate::metrics::Role::Customer,
        actor,
    )
    .await
}
