//! `PortalActor`: one per portal with at least one agent stream on this
//! node. It listens on the portal's topic — one delivery per node however
//! many agents the portal has — views and serializes each offer or
//! withdrawal once, and pushes the same bytes straight into the streams of
//! its local recipients.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::outbox::{Prepared, Resync, SharedStreams, streams};
use super::{Metrics, Node};
use crate::backplane::{BusMessage, Route, Topic};
use crate::domain::visibility::{Viewer, view};
use crate::domain::{AccountId, AgentId, Event, PortalId, SessionId};

/// A local agent logged into this portal: where its streams are, and its
/// actor (told to resync when offers were lost).
struct Member {
    streams: SharedStreams,
    actor: Recipient<Resync>,
}

/// The portal actor.
pub struct PortalActor {
    node: Arc<Node>,
    account: AccountId,
    portal: PortalId,
    members: HashMap<AgentId, Member>,
}

impl PortalActor {
    /// A portal actor for `account`/`portal`.
    pub fn new(node: Arc<Node>, account: AccountId, portal: PortalId) -> Self {
        Self {
            node,
            account,
            portal,
            members: HashMap::new(),
        }
    }
}

impl Actor for PortalActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let topic = Topic::Portal(self.account.clone(), self.portal.clone());
        let node = self.node.clone();
        ctx.wait(async move { node.backplane.subscribe(&topic).await }.into_actor(self).map(
            |subscribed, act, ctx| match subscribed {
                Ok(rx) => {
                    ctx.add_stream(BroadcastStream::new(rx));
                }
                Err(e) => {
                    tracing::warn!(error = %e, portal = %act.portal, "cannot subscribe to portal");
                    ctx.stop();
                }
            },
        ));
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.node
            .forget_portal(&self.account, &self.portal, &ctx.address());
    }
}

/// A local agent logged into this portal.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join(pub AgentId, pub SharedStreams, pub Recipient<Resync>);

/// A local agent left this portal (or its streams closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave(pub AgentId);

impl PortalActor {
    /// Pushes an offer or withdrawal into the streams of its local recipients.
    fn fan_out(&self, session: &SessionId, event: &Event) {
        let recipients = match event {
            Event::InvitationOffered { invitation, .. } => &invitation.recipients,
            Event::InvitationWithdrawn { recipients, .. } => recipients,
            _ => return,
        };
        let Some(first) = recipients.iter().find(|a| self.members.contains_key(*a)) else {
            return;
        };
        // What a recipient sees of an offer or withdrawal does not depend on
        // which recipient looks (visibility.rs checks this): view and
        // serialize once per node, not once per recipient.
        let Some(client_event) = view(&Viewer::Recipient(first), session, event) else {
            return;
        };
        Metrics::inc(&self.node.metrics.events_prepared);
        let prepared = Prepared::from(&client_event);
        let (mut delivered, mut slow) = (0, 0);
        for agent in recipients {
            if let Some(member) = self.members.get(agent) {
                let (d, s) = streams(&member.streams).broadcast(&prepared);
                delivered += d;
                slow += s;
            }
        }
        self.node.metrics.record_delivery(delivered, slow);
        if let Event::InvitationOffered { invitation, .. } = event {
            self.node.metrics.offer_delivered(invitation.created_at);
        }
    }
}

impl Handler<Join> for PortalActor {
    type Result = ();

    fn handle(&mut self, Join(agent, streams, actor): Join, _: &mut Self::Context) {
        self.members.insert(agent, Member { streams, actor });
    }
}

impl Handler<Leave> for PortalActor {
    type Result = ();

    fn handle(&mut self, Leave(agent): Leave, ctx: &mut Self::Context) {
        self.members.remove(&agent);
        if self.members.is_empty() {
            // Out of the registry now, so the next Join starts a fresh actor.
            self.node
                .forget_portal(&self.account, &self.portal, &ctx.address());
            ctx.stop();
        }
    }
}

impl StreamHandler<Result<Arc<BusMessage>, BroadcastStreamRecvError>> for PortalActor {
    fn handle(
        &mut self,
        item: Result<Arc<BusMessage>, BroadcastStreamRecvError>,
        _: &mut Self::Context,
    ) {
        let msg = match item {
            Ok(msg) => msg,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                // Offers or withdrawals were lost: the members re-read the truth.
                tracing::warn!(portal = %self.portal, lost = n, "portal topic lagged; resyncing members");
                for member in self.members.values() {
                    member.actor.do_send(Resync);
                }
                return;
            }
        };
        let BusMessage::Session {
            session, events, ..
        } = msg.as_ref()
        else {
            return;
        };
        for routed in events.iter().filter(|r| r.route == Route::Recipient) {
            self.fan_out(session, &routed.event);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}
