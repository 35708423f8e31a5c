//! `SessionActor`: one per session active on this node. It serializes the
//! commands that arrive here, keeps the session's `(state, version)` so a
//! command on the node that holds the latest version reads nothing from
//! the backplane, commits with optimistic concurrency (the version check is
//! the only guard; a conflict reloads and retries), and holds the
//! customer's streams.
//!
//! The cached state is changed in place by the rules and committed; it is
//! never cloned per command. A refusal computed on a cached state is
//! confirmed against the stored version first (another node may have
//! changed the session), so a stale cache can delay an answer by one small
//! read but never change it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::outbox::{CloseStreams, Connect, Prepared, Resync, StreamSet};
use super::{Failure, Metrics, Node};
use crate::backplane::{
    AcceptContext, BusMessage, Claim, Commit, Committed, Fresh, Guard, Route, Routed, Topic,
    Transcript, Versioned,
};
use crate::domain::session::{
    Accept as AcceptCommand, InvitationSummary, Target, WithdrawReason, check_accept, check_joiner,
};
use crate::domain::visibility::{
    AgentSessionView, CustomerSessionView, InvitationView, Viewer, agent_session_view, audiences,
    customer_session_view, message_view, view,
};
use crate::domain::{
    AccountId, AgentId, AgentRef, Command, DomainError, Event, Invitation, InvitationId, Outcome,
    Policy, PortalId, Rules, Session, SessionId,
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
/// Messages a customer's snapshot carries.
pub const SNAPSHOT_MESSAGES: usize = 50;

/// The session actor.
pub struct SessionActor {
    node: Arc<Node>,
    account: AccountId,
    id: SessionId,
    /// The latest state this node knows, with its version.
    cache: Option<Versioned>,
    customers: StreamSet,
    subscribed: bool,
    idle_checks: u32,
    /// A stop is due shortly: the session was not found.
    stop_armed: bool,
}

/// How long an actor for a session that does not exist stays, serving what
/// is queued for it, before it stops.
const MISSING_GRACE: Duration = Duration::from_millis(500);

impl SessionActor {
    /// A session actor for `account`/`id`.
    pub fn new(node: Arc<Node>, account: AccountId, id: SessionId) -> Self {
        Self {
            node,
            account,
            id,
            cache: None,
            customers: StreamSet::default(),
            subscribed: false,
            idle_checks: 0,
            stop_armed: false,
        }
    }

    /// Puts the cache back after a request. An actor started for a session
    /// that does not exist (any well-formed id in a path starts one) stops
    /// soon instead of idling for minutes — not at once: requests already
    /// queued behind this one would find its mailbox closed.
    fn settle<T>(&mut self, cache: Cached, result: &Result<T, Failure>, ctx: &mut Context<Self>) {
        self.cache = cache;
        if self.cache.is_none()
            && self.customers.is_empty()
            && matches!(result, Err(Failure::NotFound(_)))
            && !self.stop_armed
        {
            self.stop_armed = true;
            ctx.run_later(MISSING_GRACE, |act, ctx| {
                act.stop_armed = false;
                if act.cache.is_none() && act.customers.is_empty() {
                    act.node
                        .forget_session(&act.account, &act.id, &ctx.address());
                    ctx.stop();
                }
            });
        }
    }

    fn deliver_to_customers(&mut self, event: &Prepared) {
        let (delivered, slow) = self.customers.broadcast(event);
        self.node.metrics.record_delivery(delivered, slow);
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(IDLE_CHECK, |act, ctx| {
            act.customers.prune();
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

/// Which views of the session a caller wants back with the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Want {
    /// The agents' view of the session.
    pub agent_view: bool,
    /// The customer's view of the session.
    pub customer_view: bool,
    /// This invitation, as the command left it.
    pub invitation: Option<InvitationId>,
}

/// What a command did, with the views its caller asked for.
#[derive(Debug, Clone, Default)]
pub struct Executed {
    /// What happened; its events went to the fan-out (they are not kept here).
    pub outcome: Outcome,
    /// The agents' view, if wanted.
    pub agent_view: Option<AgentSessionView>,
    /// The customer's view, if wanted.
    pub customer_view: Option<CustomerSessionView>,
    /// The wanted invitation, if it exists.
    pub invitation: Option<InvitationView>,
    /// The same, as its recipients see it (without the recipient lists).
    pub invitation_summary: Option<InvitationSummary>,
}

impl Executed {
    fn new(session: &Session, outcome: Outcome, want: &Want, closed: Option<&Invitation>) -> Self {
        let wanted = want.invitation.as_ref().and_then(|id| {
            outcome
                .invitation(session, id)
                .or(closed.filter(|c| &c.id == id))
        });
        Self {
            agent_view: want.agent_view.then(|| agent_session_view(session)),
            customer_view: want.customer_view.then(|| customer_session_view(session)),
            invitation: wanted.map(InvitationView::from),
            invitation_summary: wanted.map(InvitationSummary::from),
            outcome,
        }
    }
}

/// A cache taken out of the actor for the length of one request (the actor
/// handles one request at a time), and what to put back.
type Cached = Option<Versioned>;

async fn load(node: &Node, account: &AccountId, id: &SessionId) -> Result<Versioned, Failure> {
    Metrics::inc(&node.metrics.session_loads);
    node.backplane
        .load(account, id)
        .await?
        .ok_or(Failure::NotFound("session"))
}

/// The latest state: the cached one if it is still current.
async fn fresh(
    node: &Node,
    account: &AccountId,
    id: &SessionId,
    cache: Cached,
) -> Result<Versioned, Failure> {
    match cache {
        None => load(node, account, id).await,
        Some(current) => match node.backplane.refresh(account, id, current.version).await? {
            Fresh::Current => Ok(current),
            Fresh::Changed(newer) => {
                Metrics::inc(&node.metrics.session_loads);
                Ok(*newer)
            }
            Fresh::Gone => Err(Failure::NotFound("session")),
        },
    }
}

/// Where each committed event goes: the session's agents (before and after
/// the command, so a leaver hears of its own leaving), the customer, and an
/// invitation's recipients (one agent's topic, or the portal's: one publish
/// however many agents the portal has). Events a viewer cannot see at all
/// are not published for it.
pub fn deliveries(
    account: &AccountId,
    session: &Session,
    version: u64,
    outcome: &Outcome,
    events: &[Arc<Event>],
) -> Vec<(Topic, BusMessage)> {
    // Per topic, in the order topics are first needed, the events for it.
    let mut topics: Vec<(Topic, Vec<Routed>)> = Vec::new();
    let mut add = |topic: Topic, routed: Routed| match topics.iter_mut().find(|(t, _)| *t == topic)
    {
        Some((_, list)) => list.push(routed),
        None => topics.push((topic, vec![routed])),
    };
    for (index, event) in events.iter().enumerate() {
        let seen_by = audiences(event);
        let routed = |route| Routed {
            index: index as u32,
            route,
            event: event.clone(),
        };
        if seen_by.participants {
            for agent in &outcome.audience {
                add(
                    Topic::Agent(account.clone(), agent.clone()),
                    routed(Route::Participant),
                );
            }
        }
        if seen_by.customer {
            add(
                Topic::Session(account.clone(), session.id.clone()),
                routed(Route::Customer),
            );
        }
        if seen_by.recipients
            && let Some(target) = recipients_target(session, outcome, event)
        {
            let topic = match target {
                Target::Agent(agent) => Topic::Agent(account.clone(), agent.clone()),
                Target::Portal(portal) => Topic::Portal(account.clone(), portal.clone()),
            };
            add(topic, routed(Route::Recipient));
        }
    }
    topics
        .into_iter()
        .map(|(topic, events)| {
            let message = BusMessage::Session {
                session: session.id.clone(),
                version,
                events,
            };
            (topic, message)
        })
        .collect()
}

/// The target of the invitation an offer or withdrawal is about — but an
/// escalation's withdrawal goes to the agent it was taken from: the
/// invitation's target is the portal by then.
fn recipients_target(session: &Session, outcome: &Outcome, event: &Event) -> Option<Target> {
    match event {
        Event::InvitationOffered { invitation, .. } => Some(invitation.target.clone()),
        Event::InvitationWithdrawn {
            reason: WithdrawReason::Escalated,
            recipients,
            ..
        } => recipients.first().cloned().map(Target::Agent),
        Event::InvitationWithdrawn { invitation, .. } => outcome
            .invitation(session, invitation)
            .map(|i| i.target.clone()),
        _ => None,
    }
}

/// Applies `command` to the session and commits it; on a version conflict
/// reloads and tries again. A command that changes nothing is not committed.
/// Where a command runs: this node, and the session's account and id.
#[derive(Clone, Copy)]
struct Here<'a> {
    node: &'a Node,
    account: &'a AccountId,
    id: &'a SessionId,
}

/// A command to run, what it is checked against, and the views wanted.
#[derive(Clone, Copy)]
struct Run<'a> {
    policy: &'a Policy,
    command: &'a Command,
    guard: Option<&'a Guard>,
    want: &'a Want,
}

async fn execute(
    here: Here<'_>,
    run: Run<'_>,
    cache: Cached,
    cache_is_fresh: bool,
) -> (Result<Executed, Failure>, Cached) {
    let Here { node, account, id } = here;
    let Run {
        policy,
        command,
        guard,
        want,
    } = run;
    let mut cache = cache;
    let mut fresh_state = cache_is_fresh;
    for _ in 0..MAX_COMMIT_ATTEMPTS {
        let mut current = match cache.take() {
            Some(c) => c,
            None => match load(node, account, id).await {
                Ok(c) => {
                    fresh_state = true;
                    c
                }
                Err(e) => return (Err(e), None),
            },
        };
        let rules = Rules {
            policy,
            now: Utc::now(),
        };
        let outcome = match current.session.apply(command, rules) {
            Ok(outcome) if outcome.is_noop() && !fresh_state => {
                // Nothing to do on a cached state is not nothing to do:
                // another node may have opened what this command is about
                // (an invitation a timer expires, a recipient who logs out).
                match fresh(node, account, id, Some(current)).await {
                    Ok(latest) => {
                        cache = Some(latest);
                        fresh_state = true;
                        continue;
                    }
                    Err(e) => return (Err(e), None),
                }
            }
            Ok(outcome) => outcome,
            Err(_) if !fresh_state => {
                // Refused on a cached state: only the stored one may refuse.
                match fresh(node, account, id, Some(current)).await {
                    Ok(latest) => {
                        cache = Some(latest);
                        fresh_state = true;
                        continue;
                    }
                    Err(e) => return (Err(e), None),
                }
            }
            Err(refusal) => return (Err(refusal.into()), Some(current)),
        };
        if outcome.is_noop() {
            let done = Executed::new(&current.session, outcome, want, None);
            return (Ok(done), Some(current));
        }
        // The events move into the fan-out (shared, not copied per topic).
        let mut outcome = outcome;
        let sent = outcome
            .events
            .iter()
            .filter(|e| matches!(e, Event::InvitationOffered { .. }))
            .count();
        let events: Vec<Arc<Event>> = std::mem::take(&mut outcome.events)
            .into_iter()
            .map(Arc::new)
            .collect();
        let publish = deliveries(
            account,
            &current.session,
            current.version + 1,
            &outcome,
            &events,
        );
        let commit = Commit {
            expected_version: current.version,
            session: &current.session,
            outcome: &outcome,
            publish: &publish,
            guard,
            retention: Duration::from_secs(u64::from(policy.retention_secs)),
        };
        match node.backplane.commit(account, commit).await {
            Ok(Committed::Stored(version)) => {
                current.version = version;
                node.metrics.invitations_sent.inc_by(sent as u64);
                let done = Executed::new(&current.session, outcome, want, None);
                return (Ok(done), Some(current));
            }
            // The state was changed for a commit that did not happen: it
            // is no longer the stored one either way.
            Ok(Committed::Conflict) => {
                Metrics::inc(&node.metrics.commit_conflicts);
                fresh_state = false;
            }
            Ok(Committed::Refused) => return (Err(DomainError::AgentBusy.into()), None),
            Err(e) => return (Err(e.into()), None),
        }
    }
    (Err(Failure::Contended), None)
}

/// First accept wins: read what an accept needs (one round trip), check
/// what can be checked, claim through the backplane, then apply the join
/// with the claim's fence — guarded so the agent's session limit holds.
async fn accept(
    here: Here<'_>,
    msg: &Accept,
    cache: Cached,
) -> (Result<Executed, Failure>, Cached) {
    let (context, current) = match accept_state(here, msg, cache).await {
        Ok(read) => read,
        Err((e, cache)) => return (Err(e), cache),
    };
    let want = Want {
        agent_view: true,
        invitation: Some(msg.invitation.clone()),
        ..Want::default()
    };
    if current.session.invitation(&msg.invitation).is_none() {
        // Closed (or never here): the history says how.
        let answer = accepted_again(&current, context.closed.as_ref(), msg, &want);
        return (answer, Some(current));
    }
    let checked = check_accept(
        &current.session,
        &msg.invitation,
        &msg.agent.id,
        context.active_sessions,
        &msg.policy,
        Utc::now(),
    )
    .and_then(|()| {
        check_joiner(
            &current.session,
            &msg.invitation,
            context.portal.as_ref(),
            &msg.member_of,
        )
    });
    if let Err(e) = checked {
        return (Err(e.into()), Some(current));
    }
    let (node, account) = (here.node, here.account);
    let fence = match node
        .backplane
        .claim(account, &msg.invitation, &msg.agent.id, CLAIM_TTL)
        .await
    {
        Ok(Claim::Won { fence }) => fence,
        Ok(Claim::Lost { .. }) => {
            return (Err(DomainError::InvitationTaken.into()), Some(current));
        }
        Err(e) => return (Err(e.into()), Some(current)),
    };
    let command = Command::Accept(AcceptCommand {
        invitation: msg.invitation.clone(),
        agent: msg.agent.clone(),
        active_sessions: context.active_sessions,
        fence,
    });
    let guard = Guard {
        agent: msg.agent.id.clone(),
        below: msg.policy.max_active_sessions_per_agent,
    };
    let run = Run {
        policy: &msg.policy,
        command: &command,
        guard: Some(&guard),
        want: &want,
    };
    match execute(here, run, Some(current), true).await {
        (Ok(done), cache) => (Ok(done), cache),
        (Err(e), cache) => not_joined(here, msg, &want, e, cache).await,
    }
}

/// What an accept needs, in one round trip: the accepting agent's login
/// and session count, and the session as stored (the cached copy when it
/// is still the stored one). When it cannot be read, the cache is kept
/// unless the session turned out to be gone.
async fn accept_state(
    here: Here<'_>,
    msg: &Accept,
    cache: Cached,
) -> Result<(AcceptContext, Versioned), (Failure, Cached)> {
    let Here { node, account, id } = here;
    let known = cache.as_ref().map(|c| c.version);
    let mut context = match node
        .backplane
        .accept_context(account, id, &msg.invitation, &msg.agent.id, known)
        .await
    {
        Ok(context) => context,
        Err(e) => return Err((e.into(), cache)),
    };
    let current = match (context.version, context.current.take(), cache) {
        (None, _, _) => return Err((Failure::NotFound("invitation"), None)),
        (_, Some(newer), _) => {
            Metrics::inc(&node.metrics.session_loads);
            newer
        }
        (Some(_), None, Some(cached)) => cached,
        (Some(_), None, None) => load(node, account, id).await.map_err(|e| (e, None))?,
    };
    Ok((context, current))
}

/// The answer to accepting an invitation that is closed: success again
/// for its winner, or how it closed.
fn accepted_again(
    current: &Versioned,
    closed: Option<&Invitation>,
    msg: &Accept,
    want: &Want,
) -> Result<Executed, Failure> {
    let closed = closed.ok_or(Failure::NotFound("invitation"))?;
    closed.accept_again(&msg.agent.id)?;
    Ok(Executed::new(
        &current.session,
        Outcome::default(),
        want,
        Some(closed),
    ))
}

/// After a claim was won but the join not stored: the claim goes back so
/// others may try, and the answer says why.
async fn not_joined(
    here: Here<'_>,
    msg: &Accept,
    want: &Want,
    failure: Failure,
    cache: Cached,
) -> (Result<Executed, Failure>, Cached) {
    let Here { node, account, id } = here;
    let released = node
        .backplane
        .release(account, &msg.invitation, &msg.agent.id)
        .await;
    if let Err(e) = released {
        // Best effort: the claim expires by itself after CLAIM_TTL.
        tracing::warn!(error = %e, "could not release a claim");
    }
    if !matches!(failure, Failure::Domain(DomainError::InvitationNotFound)) {
        // Could not join after all (closed meanwhile, full, busy).
        return (Err(failure), cache);
    }
    // Closed between the read and the commit: the claim was taken again
    // after the winner's commit deleted it, and the commit's version check
    // refused the second join. The history says how it closed.
    let answer = match node
        .backplane
        .closed_invitation(account, id, &msg.invitation)
        .await
    {
        Ok(closed) => match &cache {
            Some(current) => accepted_again(current, closed.as_ref(), msg, want),
            None => Err(Failure::NotFound("invitation")),
        },
        Err(e) => Err(e.into()),
    };
    (answer, cache)
}

/// Runs a command on this session.
#[derive(Message, Clone)]
#[rtype(result = "Result<Executed, Failure>")]
pub struct Execute {
    /// The account's policy now.
    pub policy: Policy,
    /// What to do.
    pub command: Command,
    /// Checked atomically with the commit.
    pub guard: Option<Guard>,
    /// The views to answer with.
    pub want: Want,
}

impl Handler<Execute> for SessionActor {
    type Result = AtomicResponse<Self, Result<Executed, Failure>>;

    fn handle(&mut self, msg: Execute, _: &mut Self::Context) -> Self::Result {
        self.idle_checks = 0;
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        let cache = self.cache.take();
        AtomicResponse::new(Box::pin(
            async move {
                let here = Here {
                    node: &node,
                    account: &account,
                    id: &id,
                };
                let run = Run {
                    policy: &msg.policy,
                    command: &msg.command,
                    guard: msg.guard.as_ref(),
                    want: &msg.want,
                };
                execute(here, run, cache, false).await
            }
            .into_actor(self)
            .map(|(result, cache), act, ctx| {
                act.settle(cache, &result, ctx);
                result
            }),
        ))
    }
}

/// Creates this session (version 1): the creating node keeps its state.
#[derive(Message)]
#[rtype(result = "Result<AgentSessionView, Failure>")]
pub struct Create {
    /// The new session.
    pub session: Session,
    /// What creating it changes.
    pub outcome: Outcome,
    /// The lead's session limit.
    pub guard: Guard,
    /// The account's policy.
    pub policy: Policy,
}

impl Handler<Create> for SessionActor {
    type Result = AtomicResponse<Self, Result<AgentSessionView, Failure>>;

    fn handle(&mut self, msg: Create, _: &mut Self::Context) -> Self::Result {
        self.idle_checks = 0;
        let (node, account) = (self.node.clone(), self.account.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let commit = Commit {
                    expected_version: 0,
                    session: &msg.session,
                    outcome: &msg.outcome,
                    publish: &[],
                    guard: Some(&msg.guard),
                    retention: Duration::from_secs(u64::from(msg.policy.retention_secs)),
                };
                match node.backplane.commit(&account, commit).await? {
                    Committed::Stored(version) => {
                        Metrics::inc(&node.metrics.sessions_created);
                        Ok(Versioned {
                            version,
                            session: msg.session,
                        })
                    }
                    Committed::Refused => Err(DomainError::AgentBusy.into()),
                    Committed::Conflict => Err(Failure::Domain(DomainError::Conflict(
                        "a session with this id already exists".into(),
                    ))),
                }
            }
            .into_actor(self)
            .map(|created, act, _| {
                created.map(|v| {
                    let view = agent_session_view(&v.session);
                    act.cache = Some(v);
                    view
                })
            }),
        ))
    }
}

/// A recipient accepts an invitation of this session.
#[derive(Message, Clone)]
#[rtype(result = "Result<Executed, Failure>")]
pub struct Accept {
    /// The account's policy now.
    pub policy: Policy,
    /// Which invitation.
    pub invitation: InvitationId,
    /// Who accepts.
    pub agent: AgentRef,
    /// The portals it is a member of now.
    pub member_of: Vec<PortalId>,
}

impl Handler<Accept> for SessionActor {
    type Result = AtomicResponse<Self, Result<Executed, Failure>>;

    fn handle(&mut self, msg: Accept, _: &mut Self::Context) -> Self::Result {
        self.idle_checks = 0;
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        let cache = self.cache.take();
        AtomicResponse::new(Box::pin(
            async move {
                let here = Here {
                    node: &node,
                    account: &account,
                    id: &id,
                };
                accept(here, &msg, cache).await
            }
            .into_actor(self)
            .map(|(result, cache), act, ctx| {
                act.settle(cache, &result, ctx);
                result
            }),
        ))
    }
}

/// Reads the session as it is now: for its agents (only a participant may
/// read it) or for anyone the caller vouches for.
#[derive(Message, Clone)]
#[rtype(result = "Result<Executed, Failure>")]
pub struct Read {
    /// Only this agent's participation lets the read through.
    pub participant: Option<AgentId>,
    /// The views wanted.
    pub want: Want,
}

impl Handler<Read> for SessionActor {
    type Result = AtomicResponse<Self, Result<Executed, Failure>>;

    fn handle(&mut self, msg: Read, _: &mut Self::Context) -> Self::Result {
        self.idle_checks = 0;
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        let cache = self.cache.take();
        AtomicResponse::new(Box::pin(
            async move {
                let current = match fresh(&node, &account, &id, cache).await {
                    Ok(c) => c,
                    Err(e) => return (Err(e), None),
                };
                if let Some(agent) = &msg.participant
                    && !current.session.is_participant(agent)
                {
                    return (Err(DomainError::NotParticipant.into()), Some(current));
                }
                let mut closed = None;
                if let Some(inv) = &msg.want.invitation
                    && current.session.invitation(inv).is_none()
                {
                    closed = match node.backplane.closed_invitation(&account, &id, inv).await {
                        Ok(c) => c,
                        Err(e) => return (Err(e.into()), Some(current)),
                    };
                }
                let read = Executed::new(
                    &current.session,
                    Outcome::default(),
                    &msg.want,
                    closed.as_ref(),
                );
                (Ok(read), Some(current))
            }
            .into_actor(self)
            .map(|(result, cache), act, ctx| {
                act.settle(cache, &result, ctx);
                result
            }),
        ))
    }
}

/// The customer's snapshot: its view of the session and the last messages
/// it may read, oldest first, with whether there are older ones.
async fn customer_snapshot(
    node: &Node,
    account: &AccountId,
    session: &Session,
) -> Result<crate::domain::visibility::ClientEvent, Failure> {
    let mut page = node
        .backplane
        .messages(
            account,
            &session.id,
            Transcript::Customer,
            None,
            SNAPSHOT_MESSAGES + 1,
        )
        .await?;
    let has_more = page.len() > SNAPSHOT_MESSAGES;
    page.truncate(SNAPSHOT_MESSAGES);
    page.reverse();
    let messages: Vec<_> = page
        .iter()
        .filter_map(|m| message_view(&Viewer::Customer, m))
        .collect();
    Ok(crate::domain::visibility::ClientEvent {
        name: "snapshot",
        data: json!({
            "session": customer_session_view(session),
            "messages": messages,
            "has_more": has_more,
        }),
    })
}

impl Handler<Connect> for SessionActor {
    type Result = ();

    /// A customer stream: subscribe first, then snapshot, so nothing
    /// committed after the snapshot is missed.
    fn handle(&mut self, Connect { mut outbox, .. }: Connect, ctx: &mut Self::Context) {
        self.idle_checks = 0;
        Metrics::inc(&self.node.metrics.streams_opened);
        let subscribe = !self.subscribed;
        let (node, account, id) = (self.node.clone(), self.account.clone(), self.id.clone());
        let cache = self.cache.take();
        let setup = async move {
            let rx = match subscribe {
                true => match node
                    .backplane
                    .subscribe(&Topic::Session(account.clone(), id.clone()))
                    .await
                {
                    Ok(rx) => Some(rx),
                    Err(e) => return (Err(Failure::from(e)), cache),
                },
                false => None,
            };
            let current = match fresh(&node, &account, &id, cache).await {
                Ok(c) => c,
                Err(e) => return (Err(e), None),
            };
            let snapshot = customer_snapshot(&node, &account, &current.session).await;
            (snapshot.map(|s| (rx, s)), Some(current))
        };
        ctx.wait(setup.into_actor(self).map(move |(setup, cache), act, ctx| {
            act.cache = cache;
            match setup {
                Ok((rx, snapshot)) => {
                    if let Some(rx) = rx {
                        ctx.add_stream(BroadcastStream::new(rx));
                        act.subscribed = true;
                    }
                    outbox.push(&Prepared::from(&snapshot));
                    // An ended session's stream is its snapshot, then its end.
                    let live = act.cache.as_ref().is_none_or(|c| c.session.ended.is_none());
                    if live {
                        act.customers.add(outbox);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "customer stream setup failed; closing it")
                }
            }
        }));
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
        let cache = self.cache.take();
        ctx.wait(
            async move {
                let current = match fresh(&node, &account, &id, cache).await {
                    Ok(c) => c,
                    Err(e) => return (Err(e), None),
                };
                let snapshot = customer_snapshot(&node, &account, &current.session).await;
                (snapshot, Some(current))
            }
            .into_actor(self)
            .map(|(snapshot, cache), act, _| {
                act.cache = cache;
                match snapshot {
                    Ok(snapshot) => act.deliver_to_customers(&Prepared::from(&snapshot)),
                    Err(_) => act.customers.clear(),
                }
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
                let BusMessage::Session {
                    session, events, ..
                } = msg.as_ref()
                else {
                    return;
                };
                let mut ended = false;
                for routed in events.iter().filter(|r| r.route == Route::Customer) {
                    if let Some(client_event) = view(&Viewer::Customer, session, &routed.event) {
                        Metrics::inc(&self.node.metrics.events_prepared);
                        self.deliver_to_customers(&Prepared::from(&client_event));
                    }
                    ended |= matches!(*routed.event, Event::SessionEnded { .. });
                }
                if ended {
                    // Nothing more will happen in it: each customer stream
                    // ends once it has sent what is queued, session_ended last.
                    self.customers.clear();
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
