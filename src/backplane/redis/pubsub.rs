//! Fan-out over Redis pub/sub: one subscriber connection per node, one
//! subscription per topic however many local actors listen, and the wire
//! shape of a bus message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{REDIS_TIMEOUT, lock};
use crate::backplane::{BusMessage, Route, Routed, codec};
use crate::domain::{AgentId, Event, LogoutReason, PortalId, SessionId};

/// Pub/sub reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// How often the pub/sub connection is pinged and unused topics dropped.
const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// A bus message as it crosses between nodes (decoded side).
#[derive(Deserialize)]
enum WireMessage {
    Session {
        session: SessionId,
        version: u64,
        events: Vec<(u32, Route, Event)>,
    },
    Presence {
        agent: AgentId,
        portal: Option<PortalId>,
    },
    // New variants go last: a node of the previous release still decodes
    // every earlier one (and logs, then drops, this one).
    LoggedOut {
        agent: AgentId,
        reason: LogoutReason,
    },
}

/// The same shape, borrowed, for encoding without cloning the events.
#[derive(Serialize)]
enum WireRef<'a> {
    Session {
        session: &'a SessionId,
        version: u64,
        events: Vec<(u32, Route, &'a Event)>,
    },
    Presence {
        agent: &'a AgentId,
        portal: &'a Option<PortalId>,
    },
    LoggedOut {
        agent: &'a AgentId,
        reason: LogoutReason,
    },
}

/// Encodes a bus message for the wire.
pub(super) fn encode(message: &BusMessage) -> Vec<u8> {
    let wire = match message {
        BusMessage::Session {
            session,
            version,
            events,
        } => WireRef::Session {
            session,
            version: *version,
            events: events
                .iter()
                .map(|r| (r.index, r.route, r.event.as_ref()))
                .collect(),
        },
        BusMessage::Presence { agent, portal } => WireRef::Presence { agent, portal },
        BusMessage::LoggedOut { agent, reason } => WireRef::LoggedOut {
            agent,
            reason: *reason,
        },
    };
    codec::encode(&wire)
}

fn decode(payload: &[u8]) -> Result<BusMessage, codec::CodecError> {
    Ok(match codec::decode_current::<WireMessage>(payload)? {
        WireMessage::Session {
            session,
            version,
            events,
        } => BusMessage::Session {
            session,
            version,
            events: events
                .into_iter()
                .map(|(index, route, event)| Routed {
                    index,
                    route,
                    event: Arc::new(event),
                })
                .collect(),
        },
        WireMessage::Presence { agent, portal } => BusMessage::Presence { agent, portal },
        WireMessage::LoggedOut { agent, reason } => BusMessage::LoggedOut { agent, reason },
    })
}

/// A request to the subscriber connection.
pub(super) enum SubCommand {
    /// Subscribe to a channel; answer once Redis confirmed it.
    Subscribe(String, oneshot::Sender<()>),
}

/// Local receivers by channel.
pub(super) type Senders = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<BusMessage>>>>>;

/// Keeps one pub/sub connection: connects with backoff, resubscribes every
/// topic this node listens to, dispatches messages to local receivers, and
/// bumps `resync` after each (re)connection so streams re-read the truth.
pub(super) async fn run(
    client: Client,
    senders: Senders,
    mut commands: mpsc::UnboundedReceiver<SubCommand>,
    up: Arc<AtomicBool>,
    resync: watch::Sender<u64>,
) {
    let mut backoff = BACKOFF_MIN;
    // Why connecting fails is logged once per outage (not on every retry):
    // a refused TLS handshake (untrusted certificate) shows only here.
    let mut failure_logged = false;
    loop {
        let connected = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => Some(pubsub),
            Ok(Err(e)) => {
                if !std::mem::replace(&mut failure_logged, true) {
                    tracing::warn!(error = %e, "pub/sub cannot connect to Redis; retrying");
                }
                None
            }
            Err(_) => {
                if !std::mem::replace(&mut failure_logged, true) {
                    tracing::warn!("pub/sub connection to Redis timed out; retrying");
                }
                None
            }
        };
        let Some(pubsub) = pubsub else {
            up.store(false, Ordering::Relaxed);
            // Confirm nothing while down: subscribers fail fast and retry.
            while let Ok(SubCommand::Subscribe(..)) = commands.try_recv() {}
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        let channels: Vec<String> = lock(&senders).keys().cloned().collect();
        if !channels.is_empty() && !answered(sink.subscribe(&channels)).await {
            continue;
        }
        backoff = BACKOFF_MIN;
        failure_logged = false;
        up.store(true, Ordering::Relaxed);
        resync.send_modify(|n| *n += 1);
        tracing::info!(topics = channels.len(), "pub/sub connected");
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    dispatch(&senders, msg.get_channel_name(), msg.get_payload_bytes());
                }
                cmd = commands.recv() => {
                    let Some(SubCommand::Subscribe(channel, ack)) = cmd else { return };
                    if !answered(sink.subscribe(&channel)).await { break }
                    let _ = ack.send(());
                }
                _ = housekeeping.tick() => {
                    let unused: Vec<String> = {
                        let mut senders = lock(&senders);
                        let unused: Vec<String> = senders
                            .iter()
                            .filter(|(_, tx)| tx.receiver_count() == 0)
                            .map(|(c, _)| c.clone())
                            .collect();
                        for c in &unused {
                            senders.remove(c);
                        }
                        unused
                    };
                    if !unused.is_empty() && !answered(sink.unsubscribe(&unused)).await { break }
                    let pong = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) { break }
                }
            }
        }
        up.store(false, Ordering::Relaxed);
        tracing::warn!("pub/sub connection lost; reconnecting");
    }
}

/// Whether a pub/sub command was answered in time: a Redis that stops
/// answering without closing the socket must not hang the loop.
async fn answered<T>(call: impl std::future::Future<Output = redis::RedisResult<T>>) -> bool {
    matches!(tokio::time::timeout(REDIS_TIMEOUT, call).await, Ok(Ok(_)))
}

pub(super) fn dispatch(senders: &Senders, channel: &str, payload: &[u8]) {
    let message = match decode(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, channel, "dropping undecodable bus message");
            return;
        }
    };
    if let Some(tx) = lock(senders).get(channel) {
        let _ = tx.send(Arc::new(message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::EndReason;

    #[test]
    fn a_bus_message_survives_the_wire() {
        let message = BusMessage::Session {
            session: SessionId::random(),
            version: 7,
            events: vec![Routed {
                index: 2,
                route: Route::Customer,
                event: Arc::new(Event::SessionEnded {
                    at: chrono::Utc::now(),
                    reason: EndReason::Idle,
                }),
            }],
        };
        assert_eq!(decode(&encode(&message)).unwrap(), message);
        let presence = BusMessage::Presence {
            agent: AgentId::parse("ann").unwrap(),
            portal: None,
        };
        assert_eq!(decode(&encode(&presence)).unwrap(), presence);
    }
}
