//! A client's bounded outbox: events are `try_send`-ed, never awaited, so a
//! slow or vanished client can never slow the fan-out; one that falls
//! behind is dropped and resyncs from a snapshot when it reconnects.

use std::sync::Arc;

use actix::Message;
use tokio::sync::mpsc;

use crate::domain::visibility::ClientEvent;

/// One event ready for the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamItem {
    /// Sequence number within the stream, from 1.
    pub seq: u64,
    /// Event type.
    pub name: &'static str,
    /// JSON text, shared by every stream it goes to.
    pub data: Arc<str>,
}

/// A client event serialized once, to be pushed into any number of outboxes
/// (a portal offer goes to every local recipient: one serialization, not one
/// per recipient).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Event type.
    pub name: &'static str,
    /// JSON text.
    pub data: Arc<str>,
}

impl From<&ClientEvent> for Prepared {
    fn from(event: &ClientEvent) -> Self {
        Self {
            name: event.name,
            data: event.data.to_string().into(),
        }
    }
}

/// The sending side of one client's stream.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<StreamItem>,
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
    /// A new outbox holding at most `capacity` events, and its receiving end.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<StreamItem>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, seq: 0 }, rx)
    }

    /// Queues an event without waiting.
    pub fn push(&mut self, event: &Prepared) -> Pushed {
        self.seq += 1;
        let item = StreamItem {
            seq: self.seq,
            name: event.name,
            data: event.data.clone(),
        };
        match self.tx.try_send(item) {
            Ok(()) => Pushed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Pushed::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Gone,
        }
    }

    /// Whether the client has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Pushes `event` to every outbox, dropping clients that are gone or too
/// slow; returns how many were dropped for being slow.
pub fn broadcast(outboxes: &mut Vec<Outbox>, event: &Prepared) -> (usize, usize) {
    let mut slow = 0;
    let mut delivered = 0;
    outboxes.retain_mut(|o| match o.push(event) {
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
pub struct Connect(pub Outbox);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Prepared {
        Prepared::from(&ClientEvent {
            name: "message",
            data: json!({"x": 1}),
        })
    }

    #[test]
    fn a_full_outbox_drops_only_that_client() {
        let (slow, _slow_rx) = Outbox::channel(1);
        let (fast, mut fast_rx) = Outbox::channel(8);
        let mut all = vec![slow, fast];
        assert_eq!(broadcast(&mut all, &event()), (2, 0));
        let _ = fast_rx.try_recv();
        assert_eq!(broadcast(&mut all, &event()), (1, 1));
        assert_eq!(all.len(), 1);
        assert_eq!(fast_rx.try_recv().unwrap().seq, 2);
    }

    #[test]
    fn a_vanished_client_is_forgotten() {
        let (gone, rx) = Outbox::channel(4);
        drop(rx);
        let mut all = vec![gone];
        assert_eq!(broadcast(&mut all, &event()), (0, 0));
        assert!(all.is_empty());
    }
}
