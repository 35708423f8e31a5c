//! `AgentActor`: one per agent with a live event stream on this node. It owns
//! the agent's streams, listens on the agent's topic, and is a member of
//! the local `PortalActor` of the portal the agent is logged into (which
//! pushes offers straight into the same streams).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::outbox::{CloseStreams, Connect, Prepared, Resync, SharedStreams, streams};
use super::portal::{Join, Leave};
use super::{Failure, Metrics, Node, reads};
use crate::backplane::{BusMessage, Route, Topic};
use crate::domain::visibility::{ClientEvent, Viewer, view};
use crate::domain::{AccountId, AgentId, Event, PortalId};

/// Resync attempts, RESYNC_RETRY apart, before streams are closed instead.
const RESYNC_ATTEMPTS: u32 = 20;
/// Pause between resync attempts.
const RESYNC_RETRY: Duration = Duration::from_millis(250);
/// How long streams of a revoked or deleted agent stay open after
/// `logged_out`, so the event is written before the stream ends.
const STREAM_END_GRACE: Duration = Duration::from_millis(200);
/// How often the actor forgets clients that went away, and stops once none is left.
const CLIENT_CHECK: Duration = Duration::from_secs(5);

/// The agent actor.
pub struct AgentActor {
    node: Arc<Node>,
    account: AccountId,
    agent: AgentId,
    streams: SharedStreams,
    portal: Option<PortalId>,
    resync_failures: u32,
    /// When the oldest token among the open streams' was minted: a
    /// revocation later than this concerns one of them.
    oldest_token: Option<chrono::DateTime<chrono::Utc>>,
    /// A logout is being carried out (see `leave_portal_soon`).
    left_at_logout: bool,
}

/// How long a logged-out agent's streams stay in its portal's fan-out.
const LEAVE_GRACE: Duration = Duration::from_millis(250);

/// Re-reads the agent, its account and its revocation marks, and ends the
/// streams if its tokens may no longer be good. The `logged_out` message
/// on the bus does that at once; this catches a message lost in a pub/sub
/// gap (run after every resync) and a stream whose request was checked
/// just before a revocation (run after every connect).
#[derive(Message)]
#[rtype(result = "()")]
struct CheckTokens;

impl AgentActor {
    /// An agent actor for `account`/`agent`.
    pub fn new(node: Arc<Node>, account: AccountId, agent: AgentId) -> Self {
        Self {
            node,
            account,
            agent,
            streams: SharedStreams::default(),
            portal: None,
            resync_failures: 0,
            oldest_token: None,
            left_at_logout: false,
        }
    }

    fn deliver(&mut self, event: &Prepared) {
        let (delivered, slow) = streams(&self.streams).broadcast(event);
        self.node.metrics.record_delivery(delivered, slow);
        if slow > 0 {
            tracing::info!(agent = %self.agent, "dropped a slow agent stream");
        }
    }

    /// Membership of a portal actor: this agent's streams, and this actor.
    fn join(&self, me: Addr<Self>) -> Join {
        Join(self.agent.clone(), self.streams.clone(), me.recipient())
    }

    /// Leaves the portal's fan-out a moment after a logout: the withdrawals
    /// of its offers were published just before the logout, on the
    /// portal's topic, and reach this agent's streams through the portal
    /// actor, which may take them after this actor took the logout.
    fn leave_portal_soon(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(LEAVE_GRACE, |act, ctx| {
            // Logged in again meanwhile: a later presence message moved it.
            if act.left_at_logout {
                act.move_to(None, ctx);
            }
        });
        self.left_at_logout = true;
    }

    /// Moves this agent's membership to the local actor of `portal`.
    fn move_to(&mut self, portal: Option<PortalId>, ctx: &mut Context<Self>) {
        self.left_at_logout = false;
        if portal == self.portal {
            return;
        }
        if let Some(old) = self.portal.take() {
            self.node
                .portal(&self.account, &old)
                .do_send(Leave(self.agent.clone()));
        }
        if let Some(new) = &portal {
            // Offers sent before the portal actor had this agent (or had
            // subscribed) were not delivered: once it has, re-read the truth.
            let joined = self
                .node
                .portal(&self.account, new)
                .send(self.join(ctx.address()));
            ctx.spawn(joined.into_actor(self).map(|_, act, ctx| {
                if !streams(&act.streams).is_empty() {
                    ctx.notify(Resync);
                }
            }));
        }
        self.portal = portal;
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.node
            .backplane
            .hold_presence(&self.account, &self.agent, true);
        let (node, account, agent) = (self.node.clone(), self.account.clone(), self.agent.clone());
        // Subscribe before reading presence, so a login in between is not
        // missed; ctx.wait: no client is served before both are done.
        let join = self.join(ctx.address());
        let setup = async move {
            let rx = node
                .backplane
                .subscribe(&Topic::Agent(account.clone(), agent.clone()))
                .await?;
            // Other nodes see at once that it streams from here: it does
            // not fade if the node its other streams are on dies, and it is
            // back if it faded when that node died (its client reconnected).
            node.backplane.hold(&account, &agent).await?;
            let portal = node.backplane.presence(&account, &agent).await?;
            // Joined (and so subscribed) before any client's snapshot is read.
            if let Some(portal) = &portal {
                node.portal(&account, portal).send(join).await?;
            }
            Ok::<_, Failure>((rx, portal))
        };
        ctx.wait(setup.into_actor(self).map(|setup, act, ctx| match setup {
            Ok((rx, portal)) => {
                ctx.add_stream(BroadcastStream::new(rx));
                act.portal = portal;
            }
            Err(e) => {
                tracing::warn!(error = %e, agent = %act.agent, "cannot serve agent streams now");
                ctx.stop();
            }
        }));
        ctx.run_interval(CLIENT_CHECK, |act, ctx| {
            let empty = {
                let mut set = streams(&act.streams);
                set.prune();
                set.is_empty()
            };
            if empty {
                ctx.stop();
            } else if let Some(portal) = act.portal.clone() {
                // Joining is idempotent; re-asserting it heals a Join that
                // reached a portal actor just as it stopped.
                let join = act.join(ctx.address());
                act.node.portal(&act.account, &portal).do_send(join);
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.node
            .backplane
            .hold_presence(&self.account, &self.agent, false);
        if let Some(old) = self.portal.take() {
            self.node
                .portal(&self.account, &old)
                .do_send(Leave(self.agent.clone()));
        }
        streams(&self.streams).clear();
        self.node
            .forget_agent(&self.account, &self.agent, &ctx.address());
    }
}

impl Handler<Connect> for AgentActor {
    type Result = ();

    fn handle(&mut self, Connect { mut outbox, minted }: Connect, ctx: &mut Self::Context) {
        Metrics::inc(&self.node.metrics.streams_opened);
        let (node, account, agent) = (self.node.clone(), self.account.clone(), self.agent.clone());
        // ctx.wait: no delivery overtakes the snapshot.
        ctx.wait(
            async move { reads::agent_snapshot(&node, &account, &agent).await }
                .into_actor(self)
                .map(move |snapshot, act, ctx| match snapshot {
                    Ok(snapshot) => {
                        outbox.push(&Prepared::from(&snapshot));
                        let mut open = streams(&act.streams);
                        open.prune();
                        if open.is_empty() {
                            // The streams of older tokens are all gone.
                            act.oldest_token = None;
                        }
                        open.add(outbox);
                        drop(open);
                        act.oldest_token = Some(act.oldest_token.map_or(minted, |t| t.min(minted)));
                        ctx.notify(CheckTokens);
                    }
                    Err(e) => tracing::warn!(error = %e, "agent snapshot failed; closing stream"),
                }),
        );
    }
}

impl Handler<CheckTokens> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: CheckTokens, ctx: &mut Self::Context) {
        let (node, account, agent) = (self.node.clone(), self.account.clone(), self.agent.clone());
        let read = async move { node.backplane.token_holder(&account, &agent).await };
        ctx.spawn(read.into_actor(self).map(|holder, act, _| {
            let Ok(holder) = holder else {
                return; // Redis unreachable: the next resync checks again.
            };
            let gone = holder.account.is_none() || holder.agent.is_none();
            let revoked = matches!(
                (holder.not_before, act.oldest_token),
                (Some(mark), Some(since)) if mark > since
            );
            if gone || revoked {
                tracing::info!(agent = %act.agent, gone, revoked, "ending the streams of tokens no longer good");
                streams(&act.streams).clear();
                act.oldest_token = None;
            }
        }));
    }
}

impl Handler<Resync> for AgentActor {
    type Result = ();

    /// Messages may have been lost: re-read presence and send every client
    /// a fresh snapshot (clients treat a `snapshot` as a full reset).
    fn handle(&mut self, _: Resync, ctx: &mut Self::Context) {
        let (node, account, agent) = (self.node.clone(), self.account.clone(), self.agent.clone());
        let fresh = async move {
            let portal = node.backplane.presence(&account, &agent).await?;
            let snapshot = reads::agent_snapshot(&node, &account, &agent).await?;
            Ok::<_, Failure>((portal, snapshot))
        };
        ctx.wait(fresh.into_actor(self).map(|fresh, act, ctx| match fresh {
            Ok((portal, snapshot)) => {
                act.resync_failures = 0;
                act.move_to(portal, ctx);
                act.deliver(&Prepared::from(&snapshot));
                ctx.notify(CheckTokens);
            }
            // The shared store may lag the pub/sub reconnection: try again
            // shortly; only when it stays unreadable do the clients reconnect.
            Err(e) => {
                act.resync_failures += 1;
                if act.resync_failures > RESYNC_ATTEMPTS {
                    tracing::warn!(error = %e, agent = %act.agent, "cannot resync; closing streams");
                    streams(&act.streams).clear();
                } else {
                    ctx.run_later(RESYNC_RETRY, |_, ctx| ctx.notify(Resync));
                }
            }
        }));
    }
}

impl StreamHandler<Result<Arc<BusMessage>, BroadcastStreamRecvError>> for AgentActor {
    fn handle(
        &mut self,
        item: Result<Arc<BusMessage>, BroadcastStreamRecvError>,
        ctx: &mut Self::Context,
    ) {
        let msg = match item {
            Ok(msg) => msg,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                tracing::warn!(agent = %self.agent, lost = n, "agent topic lagged; closing streams to resync");
                streams(&self.streams).clear();
                return;
            }
        };
        match msg.as_ref() {
            BusMessage::Session {
                session,
                version,
                events,
            } => {
                for routed in events {
                    let event = &routed.event;
                    let prepared = match routed.route {
                        // The same event reaches every participant's topic:
                        // the node views it once for all of them.
                        Route::Participant => {
                            let me = self.agent.clone();
                            let metrics = &self.node.metrics;
                            let key = (
                                &self.account,
                                session,
                                *version,
                                routed.index,
                                Route::Participant,
                            );
                            self.node.views.get_or_make(key, || {
                                Metrics::inc(&metrics.events_prepared);
                                view(&Viewer::Participant(&me), session, event)
                                    .map(|e| Prepared::from(&e))
                            })
                        }
                        Route::Recipient => {
                            if let Event::InvitationOffered { invitation, .. } = event.as_ref() {
                                self.node.metrics.offer_delivered(invitation.created_at);
                            }
                            view(&Viewer::Recipient(&self.agent), session, event)
                                .map(|e| Arc::new(Prepared::from(&e)))
                        }
                        Route::Customer => None,
                    };
                    if let Some(prepared) = prepared {
                        self.deliver(&prepared);
                    }
                }
            }
            BusMessage::Presence { portal: None, .. } => self.leave_portal_soon(ctx),
            BusMessage::Presence { portal, .. } => self.move_to(portal.clone(), ctx),
            BusMessage::LoggedOut { reason, .. } => {
                self.leave_portal_soon(ctx);
                let event = ClientEvent {
                    name: "logged_out",
                    data: serde_json::json!({ "reason": reason }),
                };
                self.deliver(&Prepared::from(&event));
                if reason.ends_streams() {
                    // Its tokens are no longer good: the streams end once
                    // the event had a moment to leave.
                    ctx.run_later(STREAM_END_GRACE, |act, _| streams(&act.streams).clear());
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<CloseStreams> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: CloseStreams, ctx: &mut Self::Context) {
        streams(&self.streams).clear();
        ctx.stop();
    }
}
