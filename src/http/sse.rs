//! Turning an outbox into a `text/event-stream` response.
//!
//! Frames arrive already rendered (`event:` and `data:` lines, once per
//! node); each stream only writes its own `id:` line before them. Whatever
//! is queued when the socket is ready goes out as one chunk, so a client
//! that fell behind catches up in one write, not one per event.

use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

use crate::actors::StreamPermit;
use crate::actors::outbox::{Inbox, StreamItem, Taken};

/// The most bytes written in one chunk.
const MAX_CHUNK: usize = 64 * 1024;
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// An SSE response that ends when the outbox's sender is dropped (the client
/// was too slow, or the node is shutting down).
pub fn respond(inbox: Inbox, permit: StreamPermit, keep_alive: Duration) -> HttpResponse {
    let mut tick = interval_at(Instant::now() + keep_alive, keep_alive);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let body = EventBody {
        inbox,
        _permit: permit,
        keep_alive: tick,
    };
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}

/// The body of one event stream.
struct EventBody {
    inbox: Inbox,
    /// Holds the token's place among its streams until the body is dropped.
    _permit: StreamPermit,
    keep_alive: Interval,
}

/// One chunk of the wire: each event's `id:` line and its prepared frame.
fn chunk(items: &[StreamItem]) -> Bytes {
    let size: usize = items.iter().map(|i| i.frame.len() + 24).sum();
    let mut buf = BytesMut::with_capacity(size);
    for item in items {
        let mut writer = (&mut buf).writer();
        let _ = writeln!(writer, "id: {}", item.seq);
        buf.extend_from_slice(&item.frame);
    }
    buf.freeze()
}

impl Stream for EventBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inbox.take(MAX_CHUNK, cx.waker()) {
            Taken::Items(items) => {
                this.keep_alive.reset();
                Poll::Ready(Some(Ok(chunk(&items))))
            }
            Taken::Ended => Poll::Ready(None),
            Taken::Pending => match this.keep_alive.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
