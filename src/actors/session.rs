//! `SessionActor`: one per session active on this node. It serializes the
//! commands that arrive here, commits them through the backplane with
//! optimistic concurrency, and holds the customer's streams.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::outbox::{CloseStreams, Connect, Outbox, Prepared, Resync, broadcast};
use super::{Failure, Metrics, Node, reads};
use crate::backplane::{BusMessage, Claim, Commit, Committed, Deadline, Route, Topic};
use crate::domain::session::{IndexDelta, Target};
use crate::domain::visibility::{Viewer, view};
use crate::domain::{
    AccountId, AgentId, AgentRef, Command, DomainError, Event, InvitationId, Outcome, Policy,
    Session, SessionId,
};

/// How often an idle session actor checks whether it can stop.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// Idle checks without work after which an actor with no streams stops.
const IDLE_CHECKS_BEFORE_STOP: u32 = 4;
/// Commit attempts before a request gives up with `conflict`.
const MAX_COMMIT_ATTEMPTS: usize = 8;
/// How long a claim holds off other accepters. The versioned commit decides
/// the winner; the claim only spares the losers a commit, so a claimer that
/// died between claim and commit blocks the invitation for this long only.
const CLAIM_TTL: Duration = Duration::from_secs(10);

/// The session actor.
pub struct SessionActor {
    node: Arc<Node>,
    account: AccountId,
    id: SessionId,
    customers: Vec<Outbox>,
    subscribed: bool,
    idle_checks: u32,
}

impl SessionActor {
    /// A session actor for `account`/`id`.
    pub fn new(node: Arc<Node>, account: AccountId, id: SessionId) -> Self {
        Self {
            node,
            account,
            id,
            customers: Vec::new(),
            subscribed: false,
            idle_checks: 0,
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(IDLE_CHECK, |act, ctx| {
            act.customers.retain(|c| !c.is_closed());
            act.idle_checks += 1;
            if act.customers.is_empty() && act.idle_checks >= IDLE_CHECKS_BEFORE_STOP {
                // Out of the registry first, so the next command starts a fresh actor.
                act.node
                    .forget_session(&act.account, &act.id, &ctx.address());
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.node
            .forget_session(&self.account, &self.id, &ctx.address());
    }
}

/// Creates a session (through the backplane, version 1).
pub async fn create(node: &Node, session: Session) -> Result<Session, Failure> {
    let account = session.account.clone();
    let commit = Commit {
        expected_version: 0,
        delta: IndexDelta::between(None, &session),
        session: session.clone(),
        message: None,
        publish: Vec::new(),
        deadlines: Vec::new(),
    };
    match node.backplane.commit(&account, commit).await? {
        Committed::Stored(_) => {
            Metrics::inc(&node.metrics.sessions_created);
            Ok(session)
        }
        Committed::Conflict => Err(Failure::Domain(DomainError::Conflict(
            "a session with this id already exists".into(),
        ))),
    }
}

/// Loads the session, applies `command`, commits; on a version conflict
/// reloads and tries again. A command that changes nothing is not committed.
pub async fn execute(
    node: &Node,
    account: &AccountId,
    id: &SessionId,
    policy: &Policy,
    command: Command,
) -> Result<Outcome, Failure> {
    for _ in 0..MAX_COMMIT_ATTEMPTS {
        let current = node
            .backplane
            .load(account, id)
            .await?
            .ok_or(Failure::NotFound("session"))?;
        let outcome = current.session.apply(command.clone(), policy, Utc::now())?;
        if outcome.events.is_empty() && outcome.message.is_none() {
            return Ok(outcome);
        }
        let commit = Commit {
            expected_version: current.version,
            delta: IndexDelta::between(Some(&current.session), &outcome.session),
            publish: deliveries(account, &current.session, &outcome.session, &outcome.events),
            session: outcome.session.clone(),
            message: outcome.message.clone(),
            deadlines: deadlines(account, &outcome.events),
        };
        match node.backplane.commit(account, commit).await? {
            Committed::Stored(_) => {
                let opened = outcome
                    .events
                    .iter()
                    .filter(|e| matches!(e, Event::InvitationOffered { .. }));
                node.metrics
                    .invitations_sent
                    .fetch_add(opened.count() as u64, std::sync::atomic::Ordering::Relaxed);
                return Ok(outcome);
            }
            Committed::Conflict => Metrics::inc(&node.metrics.commit_conflicts),
        }
    }
    Err(Failure::Contended)
}

/// The expiry timers of the invitations a command opened.
fn deadlines(account: &AccountId, events: &[Event]) -> Vec<Deadline> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::InvitationOffered { invitation, .. } => Some(Deadline {
                at: invitation.expires_at,
                account: account.clone(),
                session: invitation.session.clone(),
                invitation: invitation.id.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// First accept wins: check what can be checked, claim through the
/// backplane, then apply the join with the claim's fence.
async fn accept(
    node: &Node,
    account: &AccountId,
    id: &SessionId,
    policy: &Policy,
    invitation: &InvitationId,
    agent: &AgentRef,
) -> Result<Session, Failure> {
    let current = node
        .backplane
        .load(account, id)
        .await?
        .ok_or(Failure::NotFound("session"))?;
    let active = node
        .backplane
        .agent_sessions(account, &agent.id)
        .await?
        .len() as u32;
    let now = Utc::now();
    if current
        .session
        .check_accept(invitation, &agent.id, active, policy, now)?
    {
        return Ok(current.session); // the winner asking again
    }
    // Only an agent logged in now may join (a logout may have raced the invite).
    if node.backplane.presence(account, &agent.id).await?.is_none() {
        return Err(DomainError::AgentUnavailable.into());
    }
    let fence = match node
        .backplane
        .claim(account, invitation, &agent.id, CLAIM_TTL)
        .await?
    {
        Claim::Won { fence } => fence,
        Claim::Lost { .. } => {
            Metrics::inc(&node.metrics.accepts_lost);
            return Err(DomainError::InvitationTaken.into());
        }
    };
    let command = Command::Accept {
        invitation: invitation.clone(),
        agent: agent.clone(),
        active_sessions: active,
        fence,
    };
    match execute(node, account, id, policy, command).await {
        Ok(outcome) => {
            Metrics::inc(&node.metrics.accepts_won);
            Ok(outcome.session)
        }
        Err(e) => {
            // Could not join after all (closed meanwhile, full, busy): let others try.
            if !matches!(e, Failure::Domain(DomainError::InvitationTaken))
                && let Err(release) = node.backplane.release(account, invitation, &agent.id).await
            {
                // Best effort: the claim expires by itself after CLAIM_TTL.
                tracing::warn!(error = %release, "could not release a claim");
            }
            Err(e)
        }
    }
}

/// Where each committed event goes: the session's agents (before and after
/// the change, so a leaver hears of its own leaving), the customer, and an
/// invitation's recipients (one agent's topic, or the portal's: one publish
/// however many agents the portal has). Events a viewer cannot see at all
/// are not published for it.
pub fn deliveries(
    account: &AccountId,
    before: &Session,
    after: &Session,
    events: &[Event],
) -> Vec<(Topic, BusMessage)> {
    let mut agents: Vec<&AgentId> = before.participants.iter().map(|p| &p.agent.id).collect();
    for p in &after.participants {
        if !agents.contains(&&p.agent.id) {
            agents.push(&p.agent.id);
        }
    }
    let mut out = Vec::new();
    for event in events {
        let event = Arc::new(event.clone());
        let msg = |route| BusMessage::Session {
            session: after.id.clone(),
            route,
            event: event.clone(),
        };
        if let Some(first) = agents.first()
            && view(&Viewer::Participant(first), &after.id, &event).is_some()
        {
            for agent in &agents {
                out.push((
                    Topic::Agent(account.clone(), (*agent).clone()),
                    msg(Route::Participant),
                ));
            }
        }
        if view(&Viewer::Customer, &after.id, &event).is_some() {
            out.push((
                Topic::Session(account.clone(), after.id.clone()),
                msg(Route::Customer),
            ));
        }
        let invitation = match event.as_ref() {
            Event::InvitationOffered { invitation, .. }
            | Event::InvitationWithdrawn { invitation, .. } => Some(invitation),
            _ => None,
        };
        if let Some(invitation) = invitation {
            let topic = match &invitation.target {
                Target::Agent(agent) => Topic::Agent(account.clone(), agent.clone()),
                Target::Portal(portal) => Topic::Portal(account.clone(), portal.clone()),
            };
            out.push((topic, msg(Route::Recipient)));
        }
    }
    out
}

/// Run a command on this session.
#[derive(Message)]
#[rtype(result = "Result<Outcome, Failure>")]
pub struct Execute {
    /// The account's policy now.
    pub policy: Policy,
    /// What to do.
    pub command: Command,
}

impl Handler<Execute> for SessionActor {
    type Result = AtomicResponse<Self, Result<Outcome, Failure>>;

    fn handle(&mut self, msg: Execute, _: &mut Self::Context) -> Self::Result {
        self.idle_checks = 0;
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        AtomicResponse::new(Box::pin(
            async move { execute(&node, &account, &id, &msg.policy, msg.command).await }
                .into_actor(self),
        ))
    }
}

/// A recipient accepts an invitation of this session.
#[derive(Message)]
#[rtype(result = "Result<Session, Failure>")]
pub struct Accept {
    /// The account's policy now.
    pub policy: Policy,
    /// Which invitation.
    pub invitation: InvitationId,
    /// Who accepts.
    pub agent: AgentRef,
}

impl Handler<Accept> for SessionActor {
    type Result = AtomicResponse<Self, Result<Session, Failure>>;

    fn handle(&mut self, msg: Accept, _: &mut Self::Context) -> Self::Result {
        self.idle_checks = 0;
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        AtomicResponse::new(Box::pin(
            async move {
                accept(
                    &node,
                    &account,
                    &id,
                    &msg.policy,
                    &msg.invitation,
                    &msg.agent,
                )
                .await
            }
            .into_actor(self),
        ))
    }
}

impl Handler<Connect> for SessionActor {
    type Result = ();

    /// A customer stream: subscribe first, then snapshot, so nothing
    /// committed after the snapshot is missed.
    fn handle(&mut self, Connect(mut outbox): Connect, ctx: &mut Self::Context) {
        self.idle_checks = 0;
        Metrics::inc(&self.node.metrics.streams_opened);
        let subscribe = !self.subscribed;
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        let setup = async move {
            let rx = match subscribe {
                true => Some(
                    node.backplane
                        .subscribe(&Topic::Session(account.clone(), id.clone()))
                        .await?,
                ),
                false => None,
            };
            Ok::<_, Failure>((rx, reads::customer_snapshot(&node, &account, &id).await?))
        };
        ctx.wait(
            setup
                .into_actor(self)
                .map(move |setup, act, ctx| match setup {
                    Ok((rx, snapshot)) => {
                        if let Some(rx) = rx {
                            ctx.add_stream(BroadcastStream::new(rx));
                            act.subscribed = true;
                        }
                        outbox.push(&Prepared::from(&snapshot));
                        act.customers.push(outbox);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "customer stream setup failed; closing it")
                    }
                }),
        );
    }
}

impl Handler<Resync> for SessionActor {
    type Result = ();

    /// Messages may have been lost: send each customer client a fresh snapshot.
    fn handle(&mut self, _: Resync, ctx: &mut Self::Context) {
        if self.customers.is_empty() {
            return;
        }
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        ctx.wait(
            async move { reads::customer_snapshot(&node, &account, &id).await }
                .into_actor(self)
                .map(|snapshot, act, _| match snapshot {
                    Ok(snapshot) => {
                        let (delivered, slow) =
                            broadcast(&mut act.customers, &Prepared::from(&snapshot));
                        act.node.metrics.record_delivery(delivered, slow);
                    }
                    Err(_) => act.customers.clear(),
                }),
        );
    }
}

impl StreamHandler<Result<Arc<BusMessage>, BroadcastStreamRecvError>> for SessionActor {
    fn handle(
        &mut self,
        item: Result<Arc<BusMessage>, BroadcastStreamRecvError>,
        _: &mut Self::Context,
    ) {
        match item {
            Ok(msg) => {
                if let BusMessage::Session {
                    session,
                    route: Route::Customer,
                    event,
                } = msg.as_ref()
                    && let Some(client_event) = view(&Viewer::Customer, session, event)
                {
                    let (delivered, slow) =
                        broadcast(&mut self.customers, &Prepared::from(&client_event));
                    self.node.metrics.record_delivery(delivered, slow);
                }
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                // Events were lost for these clients: make them resync.
                tracing::warn!(session = %self.id, lost = n, "customer streams lagged; closing them");
                self.customers.clear();
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        self.subscribed = false;
    }
}

impl Handler<CloseStreams> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: CloseStreams, _: &mut Self::Context) {
        self.customers.clear();
    }
}
