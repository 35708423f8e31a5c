//! Turning an actor's outbox into a `text/event-stream` response.

use std::time::Duration;

use actix_web::Responder;
use actix_web_lab::sse;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::actors::outbox::StreamItem;

/// An SSE response that ends when the outbox's sender is dropped (the client
/// was too slow, or the node is shutting down).
pub fn respond(rx: mpsc::Receiver<StreamItem>, keep_alive: Duration) -> impl Responder {
    let events = ReceiverStream::new(rx).map(|item| {
        sse::Event::Data(
            sse::Data::new(&*item.data)
                .event(item.name)
                .id(item.seq.to_string()),
        )
    });
    sse::Sse::from_infallible_stream(events).with_keep_alive(keep_alive)
}
