//! A client's bounded outbox: events are pushed without waiting, so a slow
//! or vanished client can never slow the fan-out; one that falls behind —
//! by events (`sse.outbox`) or by bytes (`sse.outbox_bytes`) — is dropped
//! and resyncs from a snapshot when it reconnects.
//!
//! An event is rendered to its SSE frame once per node ([`Prepared`]) and
//! the same bytes go to every stream; each stream only adds its own `id:`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use actix::Message;
use actix_web::web::Bytes;

use crate::domain::visibility::ClientEvent;

/// One event ready for the wire: `event: <name>\ndata: <json>\n\n`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Event type.
    pub name: &'static str,
    /// The frame's bytes after the `id:` line, shared by every stream.
    pub frame: Bytes,
}

impl From<&ClientEvent> for Prepared {
    fn from(event: &ClientEvent) -> Self {
        let data = event.data.to_string();
        // serde_json escapes newlines in strings: the data is one line.
        let mut frame = String::with_capacity(event.name.len() + data.len() + 16);
        frame.push_str("event: ");
        frame.push_str(event.name);
        frame.push_str("\ndata: ");
        frame.push_str(&data);
        frame.push_str("\n\n");
        Self {
            name: event.name,
            frame: Bytes::from(frame),
        }
    }
}

/// One event queued for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamItem {
    /// Sequence number within the stream, from 1.
    pub seq: u64,
    /// The prepared frame.
    pub frame: Bytes,
}

/// What an outbox and its stream share: the queued events, bounded in
/// number and bytes. A plain queue under a lock rather than a channel: a
/// connected agent that is not being sent anything holds no buffer at all
/// (a channel allocates its first block up front), which is most of the
/// time for most agents.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<StreamItem>,
    bytes: usize,
    /// The outbox was dropped: the stream ends once drained.
    closed: bool,
    /// The stream was dropped: pushing is pointless.
    gone: bool,
    waker: Option<Waker>,
}

type Shared = Arc<Mutex<Queue>>;

fn locked(shared: &Shared) -> MutexGuard<'_, Queue> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The receiving end of an outbox: what the HTTP response drains.
#[derive(Debug)]
pub struct Inbox {
    shared: Shared,
}

/// What an inbox has for its stream now.
#[derive(Debug, PartialEq)]
pub enum Taken {
    /// These events, in order.
    Items(Vec<StreamItem>),
    /// Nothing yet; the task will be woken when there is.
    Pending,
    /// The outbox is gone and everything was taken: the stream ends.
    Ended,
}

impl Inbox {
    /// Takes queued events, up to about `max_bytes`, or registers `waker`.
    pub fn take(&self, max_bytes: usize, waker: &Waker) -> Taken {
        let mut q = locked(&self.shared);
        if q.items.is_empty() {
            if q.closed {
                return Taken::Ended;
            }
            if !q.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                q.waker = Some(waker.clone());
            }
            return Taken::Pending;
        }
        let mut out = Vec::new();
        let mut size = 0;
        while let Some(item) = q.items.front() {
            if !out.is_empty() && size + item.frame.len() > max_bytes {
                break;
            }
            size += item.frame.len();
            if let Some(item) = q.items.pop_front() {
                out.push(item);
            }
        }
        q.bytes -= size;
        if q.items.is_empty() {
            // An idle stream keeps no buffer.
            q.items = VecDeque::new();
        }
        Taken::Items(out)
    }

    /// Bytes queued and not yet taken.
    pub fn queued_bytes(&self) -> usize {
        locked(&self.shared).bytes
    }

    /// Takes one queued event without waiting (tests).
    pub fn try_take(&mut self) -> Option<StreamItem> {
        let mut q = locked(&self.shared);
        let item = q.items.pop_front()?;
        q.bytes -= item.frame.len();
        Some(item)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        locked(&self.shared).gone = true;
    }
}

/// The sending side of one client's stream.
#[derive(Debug)]
pub struct Outbox {
    shared: Shared,
    max_events: usize,
    max_bytes: usize,
    seq: u64,
}

/// What happened to an event pushed into an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// The client is too far behind; drop it.
    Full,
    /// The client went away.
    Gone,
}

impl Outbox {
    /// A new outbox holding at most `events` events and `bytes` bytes.
    pub fn channel(events: usize, bytes: usize) -> (Self, Inbox) {
        let shared = Shared::default();
        (
            Self {
                shared: shared.clone(),
                max_events: events.max(1),
                max_bytes: bytes.max(1),
                seq: 0,
            },
            Inbox { shared },
        )
    }

    /// Queues an event without waiting.
    pub fn push(&mut self, event: &Prepared) -> Pushed {
        let size = event.frame.len();
        let waker = {
            let mut q = locked(&self.shared);
            if q.gone {
                return Pushed::Gone;
            }
            // A single event larger than the whole budget still goes to an
            // empty outbox (a snapshot of a long chat); otherwise the client
            // is behind by more than it may be.
            let over_bytes = q.bytes > 0 && q.bytes + size > self.max_bytes;
            if q.items.len() >= self.max_events || over_bytes {
                return Pushed::Full;
            }
            self.seq += 1;
            q.items.push_back(StreamItem {
                seq: self.seq,
                frame: event.frame.clone(),
            });
            q.bytes += size;
            q.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Pushed::Queued
    }

    /// Whether the client has gone away.
    pub fn is_closed(&self) -> bool {
        locked(&self.shared).gone
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let waker = {
            let mut q = locked(&self.shared);
            q.closed = true;
            q.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The streams of one actor (an agent's, or a session's customer's): a
/// portal actor pushes offers straight into its members' sets, without a
/// message per recipient.
#[derive(Debug, Default)]
pub struct StreamSet {
    outboxes: Vec<Outbox>,
}

/// A stream set shared between the actor that owns it and the portal
/// actors that deliver into it. All of them run on the node's one actor
/// arbiter, so the lock is never contended.
pub type SharedStreams = Arc<Mutex<StreamSet>>;

/// Locks a shared stream set.
pub fn streams(shared: &SharedStreams) -> MutexGuard<'_, StreamSet> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl StreamSet {
    /// Adds a stream.
    pub fn add(&mut self, outbox: Outbox) {
        // Most clients hold one stream: room for exactly that.
        self.outboxes.reserve_exact(1);
        self.outboxes.push(outbox);
    }

    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.outboxes.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.outboxes.is_empty()
    }

    /// Forgets streams whose client went away.
    pub fn prune(&mut self) {
        self.outboxes.retain(|o| !o.is_closed());
    }

    /// Ends every stream.
    pub fn clear(&mut self) {
        self.outboxes.clear();
    }

    /// Pushes `event` to every stream, dropping clients that are gone or
    /// too slow; returns (delivered, dropped for being slow).
    pub fn broadcast(&mut self, event: &Prepared) -> (usize, usize) {
        let mut slow = 0;
        let mut delivered = 0;
        self.outboxes.retain_mut(|o| match o.push(event) {
            Pushed::Queued => {
                delivered += 1;
                true
            }
            Pushed::Full => {
                slow += 1;
                false
            }
            Pushed::Gone => false,
        });
        (delivered, slow)
    }
}

/// Ends every stream an actor holds (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseStreams;

/// Fan-out was interrupted (messages may be lost): send every client a
/// fresh `snapshot` built from the shared state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resync;

/// Adds a client stream to an actor; it first receives a snapshot.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    /// Where the stream's events go.
    pub outbox: Outbox,
    /// When the token the stream was opened with was minted (a revocation
    /// after this ends the stream; one before it does not concern it).
    pub minted: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(text: &str) -> Prepared {
        Prepared::from(&ClientEvent {
            name: "message",
            data: json!({"x": text}),
        })
    }

    #[test]
    fn a_prepared_event_is_one_sse_frame() {
        let e = event("a\nb");
        assert_eq!(&e.frame[..], b"event: message\ndata: {\"x\":\"a\\nb\"}\n\n");
    }

    #[test]
    fn a_full_outbox_drops_only_that_client() {
        let (slow, _slow_rx) = Outbox::channel(1, 1 << 20);
        let (fast, mut fast_rx) = Outbox::channel(8, 1 << 20);
        let mut all = StreamSet::default();
        all.add(slow);
        all.add(fast);
        assert_eq!(all.broadcast(&event("1")), (2, 0));
        let _ = fast_rx.try_take();
        assert_eq!(all.broadcast(&event("2")), (1, 1));
        assert_eq!(all.len(), 1);
        assert_eq!(fast_rx.try_take().unwrap().seq, 2);
    }

    #[test]
    fn an_outbox_is_bounded_in_bytes_too() {
        let big = event(&"x".repeat(1000));
        let (outbox, mut inbox) = Outbox::channel(1000, 2500);
        let mut all = StreamSet::default();
        all.add(outbox);
        assert_eq!(all.broadcast(&big), (1, 0));
        assert_eq!(all.broadcast(&big), (1, 0));
        // A third would pass 2500 bytes: the client is dropped.
        assert_eq!(all.broadcast(&big), (0, 1));
        assert!(all.is_empty());
        assert!(inbox.try_take().is_some());
        assert_eq!(inbox.queued_bytes(), big.frame.len());
    }

    #[test]
    fn one_event_larger_than_the_budget_still_reaches_an_empty_outbox() {
        let (outbox, mut inbox) = Outbox::channel(4, 10);
        let mut all = StreamSet::default();
        all.add(outbox);
        assert_eq!(all.broadcast(&event("longer than ten bytes")), (1, 0));
        assert!(inbox.try_take().is_some());
    }

    #[test]
    fn a_vanished_client_is_forgotten() {
        let (gone, inbox) = Outbox::channel(4, 1 << 20);
        drop(inbox);
        let mut all = StreamSet::default();
        all.add(gone);
        assert_eq!(all.broadcast(&event("x")), (0, 0));
        assert!(all.is_empty());
    }
}
