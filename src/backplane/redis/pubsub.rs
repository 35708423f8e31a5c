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
use crate::backplane::legacy::EventV3;
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
    /// A session's events as the previous release sends them (no winner in
    /// withdrawals, no decliner's name): read, so that during a rolling
    /// upgrade this node still delivers what older nodes commit.
    SessionV3 {
        session: SessionId,
        version: u64,
        events: Vec<(u32, Route, EventV3)>,
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
    /// A session's events, today's shape. A new variant rather than a
    /// changed one: a node of the previous release refuses it cleanly (an
    /// unknown variant, logged and dropped) instead of misreading it.
    Session {
        session: SessionId,
        version: u64,
        events: Vec<(u32, Route, Event)>,
    },
}

/// The same shape, borrowed, for encoding without cloning the events.
#[derive(Serialize)]
enum WireRef<'a> {
    /// Holds [`WireMessage::SessionV3`]'s place (variants are numbered in
    /// order); this release never sends it.
    #[allow(dead_code)]
    SessionV3,
    Presence {
        agent: &'a AgentId,
        portal: &'a Option<PortalId>,
    },
    LoggedOut {
        agent: &'a AgentId,
        reason: LogoutReason,
    },
    Session {
        session: &'a SessionId,
        version: u64,
        events: Vec<(u32, Route, &'a Event)>,
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
    codec::encode_current(&wire)
}

fn decode(payload: &[u8]) -> Result<BusMessage, codec::CodecError> {
    Ok(match codec::decode_current::<WireMessage>(payload)? {
        WireMessage::Session {
            session,
            version,
            events,
        } => session_message(session, version, events),
        WireMessage::SessionV3 {
            session,
            version,
            events,
        } => session_message(
            session,
            version,
            events
                .into_iter()
                .map(|(index, route, event)| (index, route, Event::from(event)))
                .collect(),
        ),
        WireMessage::Presence { agent, portal } => BusMessage::Presence { agent, portal },
        WireMessage::LoggedOut { agent, reason } => BusMessage::LoggedOut { agent, reason },
    })
}

fn session_message(
    session: SessionId,
    version: u64,
    events: Vec<(u32, Route, Event)>,
) -> BusMessage {
    BusMessage::Session {
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
    }
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
    use crate::domain::directory::display;
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

    /// Today's session messages are variant 3, so a node of the previous
    /// release (which knows 0 to 2) refuses them instead of misreading
    /// withdrawals and declines of another shape.
    #[test]
    fn session_messages_take_a_variant_the_previous_release_does_not_know() {
        let message = BusMessage::Session {
            session: SessionId::random(),
            version: 1,
            events: Vec::new(),
        };
        let bytes = encode(&message);
        assert_eq!(&bytes[..2], &[codec::FORMAT_VERSION, 3]);
    }

    /// What a node of the previous release publishes still reaches this
    /// node's clients: a withdrawal without its winner, a decline named by id.
    #[test]
    fn the_previous_releases_session_messages_are_read() {
        use crate::domain::session::{InvitationSummary, WithdrawReason};
        use crate::domain::{AgentRef, InvitationId};

        // The previous release's `Event`, up to the variants this test sends.
        #[derive(Serialize)]
        #[allow(dead_code, clippy::large_enum_variant, clippy::enum_variant_names)]
        enum OldEvent {
            InvitationOffered,
            InvitationSent,
            InvitationWithdrawn {
                invitation: InvitationId,
                recipients: Vec<AgentId>,
                reason: WithdrawReason,
            },
            InvitationEscalated,
            InvitationAccepted,
            InvitationDeclined {
                invitation: InvitationSummary,
                by: AgentId,
            },
        }
        #[derive(Serialize)]
        enum OldWire {
            Session {
                session: SessionId,
                version: u64,
                events: Vec<(u32, Route, OldEvent)>,
            },
        }
        let session = SessionId::random();
        let invitation = InvitationId::within(&session);
        let bob = AgentId::parse("bob").unwrap();
        let summary = InvitationSummary {
            id: invitation.clone(),
            session: session.clone(),
            inviter: AgentRef {
                id: AgentId::parse("ann").unwrap(),
                name: display("Ann"),
            },
            target: crate::domain::session::Target::Agent(bob.clone()),
            kind: crate::domain::session::InvitationKind::Collaborate,
            masked: false,
            comment: None,
            recipient_count: 1,
            status: crate::domain::session::InvitationStatus::Declined,
            accepted_by: None,
            closed_reason: None,
            escalation: None,
            created_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now(),
        };
        let old = OldWire::Session {
            session: session.clone(),
            version: 4,
            events: vec![
                (
                    0,
                    Route::Recipient,
                    OldEvent::InvitationWithdrawn {
                        invitation: invitation.clone(),
                        recipients: vec![bob.clone()],
                        reason: WithdrawReason::AcceptedByOther,
                    },
                ),
                (
                    1,
                    Route::Participant,
                    OldEvent::InvitationDeclined {
                        invitation: summary.clone(),
                        by: bob.clone(),
                    },
                ),
            ],
        };
        let BusMessage::Session { events, .. } = decode(&codec::encode_current(&old)).unwrap()
        else {
            panic!("a session message");
        };
        assert_eq!(
            *events[0].event,
            Event::InvitationWithdrawn {
                invitation,
                recipients: vec![bob.clone()],
                reason: WithdrawReason::AcceptedByOther,
                accepted_by: None,
            }
        );
        assert_eq!(
            *events[1].event,
            Event::InvitationDeclined {
                invitation: summary,
                by: AgentRef {
                    id: bob,
                    name: display("bob"),
                },
            }
        );
    }
}
