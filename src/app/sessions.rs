//! Sessions, their chat and their invitations: what the session's agents
//! and the invitees do.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::tokens::{Subject, Tokens};
use super::{AgentCaller, Error, run};
use crate::actors::Node;
use crate::actors::session::{Accept, Create, Executed, Read, Want};
use crate::backplane::{Guard, Transcript};
use crate::domain::session::{
    Audience, Cancel, Comment, Decline, End, Escalate, EscalateAfter, InvitationKind,
    InvitationSummary, Invite, Leave, Post, Poster, SetMasked, Target,
};
use crate::domain::visibility::{AgentSessionView, InvitationView, Viewer, message_view};
use crate::domain::{
    AgentId, DisplayName, DomainError, InvitationId, MessageId, Rules, Session, SessionId,
    SessionMode,
};
use crate::metrics::AcceptOutcome;

/// The default page of chat messages.
pub const MESSAGE_PAGE: usize = 50;
/// The largest page of chat messages.
pub const MESSAGE_PAGE_MAX: usize = 200;

/// A page of chat messages, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct MessagePage {
    /// The messages as the reader may see them.
    pub messages: Vec<Value>,
    /// Where the next (older) page starts, if there is one.
    pub next_before: Option<u64>,
}

/// A session just created, and the token its customer joins with.
#[derive(Debug, Serialize)]
pub struct Created {
    /// The session, as its lead sees it.
    pub session: AgentSessionView,
    /// The customer's token (`auth.customer_token_ttl_secs`).
    pub customer_token: String,
}

/// `POST /v1/sessions`: the caller leads a new session (which counts toward
/// its `max_active_sessions_per_agent`, checked atomically with creating it).
pub async fn create(
    node: &Arc<Node>,
    tokens: &Tokens,
    caller: &AgentCaller,
    mode: SessionMode,
    customer_name: DisplayName,
) -> Result<Created, Error> {
    let policy = &caller.account.policy;
    let (session, outcome) = Session::create(
        SessionId::random(),
        caller.account.id.clone(),
        mode,
        caller.agent.as_ref(),
        customer_name,
        Rules {
            policy,
            now: Utc::now(),
        },
    )?;
    let create = Create {
        guard: Guard {
            agent: caller.agent.id.clone(),
            below: policy.max_active_sessions_per_agent,
        },
        policy: policy.clone(),
        outcome,
        session: session.clone(),
    };
    let session = node
        .session(&caller.account.id, &session.id)
        .send(create)
        .await??;
    let ttl = chrono::Duration::seconds(node.settings.auth.customer_token_ttl_secs as i64);
    let subject = Subject::Customer {
        account: caller.account.id.clone(),
        session: session.id.clone(),
    };
    Ok(Created {
        customer_token: tokens.mint(subject, Utc::now() + ttl),
        session,
    })
}

async fn read(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    want: Want,
) -> Result<Executed, Error> {
    let read = Read {
        participant: Some(caller.agent.id.clone()),
        want,
    };
    Ok(node
        .ask_session(&caller.account.id, session, read)
        .await??)
}

/// `GET /v1/sessions/{id}`: only its agents may read it.
pub async fn get(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
) -> Result<AgentSessionView, Error> {
    let want = Want {
        agent_view: true,
        ..Want::default()
    };
    read(node, caller, session, want)
        .await?
        .agent_view
        .ok_or(Error::NotFound("session"))
}

/// `GET /v1/sessions/{id}/invitations/{inv}`: one invitation, open or
/// closed, for the session's agents.
pub async fn invitation(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    invitation: &InvitationId,
) -> Result<InvitationView, Error> {
    let want = Want {
        invitation: Some(invitation.clone()),
        ..Want::default()
    };
    read(node, caller, session, want)
        .await?
        .invitation
        .ok_or(Error::NotFound("invitation"))
}

/// What an invitation asks for.
#[derive(Debug, Clone)]
pub struct InviteRequest {
    /// One agent or a portal.
    pub target: Target,
    /// Collaborate or transfer.
    pub kind: InvitationKind,
    /// Escalate to a portal if the agent does not take it in time.
    pub escalate: Option<EscalateAfter>,
    /// Join masked.
    pub masked: bool,
    /// A note for the invitees.
    pub comment: Option<Comment>,
}

/// `POST /v1/sessions/{id}/invitations`.
pub async fn invite(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    request: InviteRequest,
) -> Result<InvitationView, Error> {
    let account = &caller.account.id;
    let backplane = &node.backplane;
    // Who could receive it, as of now: the direct target if logged in, or
    // everyone logged into the portal (one read, however big the account).
    // The domain removes the inviter and the participants.
    let online = match &request.target {
        Target::Agent(agent) => {
            let record = backplane
                .agent(account, agent)
                .await?
                .ok_or(Error::NotFound("agent"))?;
            // Logged in, into a portal it is (still) a member of.
            match backplane.presence(account, agent).await? {
                Some(portal) if record.is_member_of(&portal) => vec![agent.clone()],
                _ => Vec::new(),
            }
        }
        Target::Portal(portal) => backplane
            .online_in(account, portal)
            .await?
            .ok_or(Error::NotFound("portal"))?,
    };
    let (target_busy, escalation_online) = match (&request.escalate, &request.target) {
        (Some(escalate), Target::Agent(agent)) => {
            let policy = &caller.account.policy;
            let busy = backplane
                .active_counts(account, std::slice::from_ref(agent))
                .await?
                .first()
                .is_some_and(|n| *n >= policy.max_active_sessions_per_agent);
            // The portal's agents only when it escalates at once; otherwise
            // only that the portal exists (one small read, not the portal).
            let portal = if busy || online.is_empty() {
                escalation_candidates(node, account, &escalate.portal, policy).await?
            } else {
                backplane
                    .portal(account, &escalate.portal)
                    .await?
                    .ok_or(Error::NotFound("portal"))?;
                Vec::new()
            };
            (busy, portal)
        }
        _ => (false, Vec::new()),
    };
    let id = InvitationId::within(session);
    let command = Invite {
        id: id.clone(),
        inviter: caller.agent.id.clone(),
        target: request.target,
        kind: request.kind,
        masked: request.masked,
        comment: request.comment,
        online,
        escalate: request.escalate,
        target_busy,
        escalation_online,
    };
    let want = Want {
        invitation: Some(id),
        ..Want::default()
    };
    run(node, &caller.account, session, command.into(), None, want)
        .await?
        .invitation
        .ok_or(Error::NotFound("invitation"))
}

/// The command an escalation timer of `invitation` runs: where it goes,
/// and who is there now, read when it is due.
pub(crate) async fn escalation_command(
    node: &Node,
    account: &crate::domain::Account,
    session: &SessionId,
    invitation: &InvitationId,
) -> Result<crate::domain::Command, Error> {
    let portal = node
        .backplane
        .load(&account.id, session)
        .await?
        .and_then(|v| v.session.invitation(invitation).cloned())
        .and_then(|i| i.escalation)
        .map(|e| e.portal);
    let online = match portal {
        Some(portal) => escalation_candidates(node, &account.id, &portal, &account.policy)
            .await
            .or_else(|e| match e {
                // The portal was deleted: nobody to go to.
                Error::NotFound(_) => Ok(Vec::new()),
                e => Err(e),
            })?,
        None => Vec::new(),
    };
    Ok(Escalate {
        invitation: invitation.clone(),
        online,
    }
    .into())
}

/// Runs at once the escalations `done` made due (its agent declined or
/// logged out), rather than leaving them to the timer poll: the portal's
/// agents get the invitation in milliseconds. The durable timer stays
/// armed as the backstop and finds nothing left to do; a failure here is
/// only logged, for the same reason.
pub(crate) async fn escalate_due(
    node: &Arc<Node>,
    account: &crate::domain::Account,
    session: &SessionId,
    done: &Executed,
) {
    let now = Utc::now();
    for (timer, at) in &done.outcome.arm {
        let crate::domain::session::Timer::Escalate(invitation) = timer else {
            continue;
        };
        if *at > now {
            continue;
        }
        let escalated = match escalation_command(node, account, session, invitation).await {
            Ok(command) => run(node, account, session, command, None, Want::default())
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = escalated {
            tracing::warn!(error = %e, %invitation, "escalation left to its timer");
        }
    }
}

/// The agents an invitation escalated to `portal` may go to: logged into
/// it now and below their session limit (an agent at its limit could not
/// join). 404 for a portal the account does not have.
pub(crate) async fn escalation_candidates(
    node: &Node,
    account: &crate::domain::AccountId,
    portal: &crate::domain::PortalId,
    policy: &crate::domain::Policy,
) -> Result<Vec<AgentId>, Error> {
    let online = node
        .backplane
        .online_in(account, portal)
        .await?
        .ok_or(Error::NotFound("portal"))?;
    let counts = node.backplane.active_counts(account, &online).await?;
    Ok(online
        .into_iter()
        .zip(counts)
        .filter(|(_, n)| *n < policy.max_active_sessions_per_agent)
        .map(|(a, _)| a)
        .collect())
}

/// `DELETE /v1/sessions/{id}/invitations/{inv}`.
pub async fn cancel(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    invitation: &InvitationId,
) -> Result<InvitationView, Error> {
    let command = Cancel {
        invitation: invitation.clone(),
        by: caller.agent.id.clone(),
    };
    let want = Want {
        invitation: Some(invitation.clone()),
        ..Want::default()
    };
    match run(node, &caller.account, session, command.into(), None, want).await {
        Ok(done) => done.invitation.ok_or(Error::NotFound("invitation")),
        Err(Error::Domain(DomainError::InvitationNotFound)) => {
            // Not open: closed already (409), or never sent here (404).
            let closed = node
                .backplane
                .closed_invitation(&caller.account.id, session, invitation)
                .await?;
            Err(match closed {
                Some(_) => DomainError::InvitationClosed.into(),
                None => Error::NotFound("invitation"),
            })
        }
        Err(e) => Err(e),
    }
}

/// `POST /v1/sessions/{id}/messages`: the message as its author sees it.
pub async fn post(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    text: String,
    audience: Audience,
) -> Result<Value, Error> {
    let command = Post {
        id: MessageId::random(),
        author: Poster::Agent(caller.agent.id.clone()),
        text,
        audience,
    };
    let done = run(
        node,
        &caller.account,
        session,
        command.into(),
        None,
        Want::default(),
    )
    .await?;
    done.outcome
        .message
        .as_ref()
        .and_then(|m| message_view(&Viewer::Participant(&caller.agent.id), m))
        .ok_or(Error::NotFound("message"))
}

/// A page of a transcript, newest first, as `viewer` sees it.
pub(crate) async fn page(
    node: &Node,
    account: &crate::domain::AccountId,
    session: &SessionId,
    transcript: Transcript,
    viewer: Viewer<'_>,
    before: Option<u64>,
    limit: usize,
) -> Result<MessagePage, Error> {
    let limit = limit.clamp(1, MESSAGE_PAGE_MAX);
    let page = node
        .backplane
        .messages(account, session, transcript, before, limit)
        .await?;
    let number = |m: &crate::domain::Message| match transcript {
        Transcript::Agents => Some(m.seq),
        Transcript::Customer => m.customer_seq,
    };
    let oldest = page.last().and_then(number);
    let next_before = oldest.filter(|n| page.len() == limit && *n > 1);
    Ok(MessagePage {
        messages: page
            .iter()
            .filter_map(|m| message_view(&viewer, m))
            .collect(),
        next_before,
    })
}

/// `GET /v1/sessions/{id}/messages?before=&limit=`.
pub async fn messages(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    before: Option<u64>,
    limit: usize,
) -> Result<MessagePage, Error> {
    read(node, caller, session, Want::default()).await?;
    page(
        node,
        &caller.account.id,
        session,
        Transcript::Agents,
        Viewer::Participant(&caller.agent.id),
        before,
        limit,
    )
    .await
}

/// `POST /v1/sessions/{id}/leave`.
pub async fn leave(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
) -> Result<AgentSessionView, Error> {
    let command = Leave {
        agent: caller.agent.id.clone(),
        by_admin: false,
    };
    participant_command(node, caller, session, command.into()).await
}

/// `POST /v1/sessions/{id}/participants/{agent}/mask` and `…/unmask`: the
/// lead, or the agent itself, hides an agent from the customer or shows it.
pub async fn set_masked(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    agent: AgentId,
    masked: bool,
) -> Result<AgentSessionView, Error> {
    let command = SetMasked {
        agent,
        by: caller.agent.id.clone(),
        masked,
    };
    participant_command(node, caller, session, command.into()).await
}

/// `POST /v1/sessions/{id}/end`.
pub async fn end(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
) -> Result<AgentSessionView, Error> {
    let command = End {
        by: caller.agent.id.clone(),
    };
    participant_command(node, caller, session, command.into()).await
}

async fn participant_command(
    node: &Arc<Node>,
    caller: &AgentCaller,
    session: &SessionId,
    command: crate::domain::Command,
) -> Result<AgentSessionView, Error> {
    let want = Want {
        agent_view: true,
        ..Want::default()
    };
    run(node, &caller.account, session, command, None, want)
        .await?
        .agent_view
        .ok_or(Error::NotFound("session"))
}

/// What an accepting agent gets back.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The invitation, accepted.
    pub invitation: InvitationView,
    /// The session the agent joined.
    pub session: AgentSessionView,
}

/// `POST /v1/invitations/{inv}/accept`: the first accept wins.
pub async fn accept(
    node: &Arc<Node>,
    caller: &AgentCaller,
    invitation: &InvitationId,
) -> Result<Accepted, Error> {
    let session = invitation.session().ok_or(Error::NotFound("invitation"))?;
    let accept = Accept {
        policy: caller.account.policy.clone(),
        invitation: invitation.clone(),
        agent: caller.agent.as_ref(),
        member_of: caller.agent.portals.clone(),
    };
    let done = node
        .ask_session(&caller.account.id, &session, accept)
        .await?
        .map_err(Error::from);
    if let Some(outcome) = accept_outcome(&done) {
        node.metrics.accepted(outcome);
    }
    let done = done?;
    match (done.invitation, done.agent_view) {
        (Some(invitation), Some(session)) => Ok(Accepted {
            invitation,
            session,
        }),
        _ => Err(Error::NotFound("invitation")),
    }
}

/// How an accept ended, for `/metrics` (`None`: it failed for reasons of
/// the node or the backplane, counted with the requests).
fn accept_outcome(result: &Result<Executed, Error>) -> Option<AcceptOutcome> {
    match result {
        Ok(_) => Some(AcceptOutcome::Won),
        Err(Error::Domain(DomainError::InvitationTaken)) => Some(AcceptOutcome::Taken),
        Err(Error::Domain(DomainError::InvitationClosed)) => Some(AcceptOutcome::Expired),
        Err(Error::Domain(_) | Error::Forbidden(_) | Error::NotFound(_)) => {
            Some(AcceptOutcome::Refused)
        }
        Err(_) => None,
    }
}

/// `POST /v1/invitations/{inv}/decline`: the invitation as a recipient
/// sees it (how many it was offered to, not to whom).
pub async fn decline(
    node: &Arc<Node>,
    caller: &AgentCaller,
    invitation: &InvitationId,
) -> Result<InvitationSummary, Error> {
    let session = invitation.session().ok_or(Error::NotFound("invitation"))?;
    let command = Decline {
        invitation: invitation.clone(),
        agent: caller.agent.as_ref(),
    };
    let want = Want {
        invitation: Some(invitation.clone()),
        ..Want::default()
    };
    match run(node, &caller.account, &session, command.into(), None, want).await {
        Ok(done) => {
            escalate_due(node, &caller.account, &session, &done).await;
            done.invitation_summary.ok_or(Error::NotFound("invitation"))
        }
        Err(Error::Domain(DomainError::InvitationNotFound)) | Err(Error::NotFound("session")) => {
            let closed = node
                .backplane
                .closed_invitation(&caller.account.id, &session, invitation)
                .await?
                .ok_or(Error::NotFound("invitation"))?;
            closed.decline_again(&caller.agent.id)?;
            Ok(InvitationSummary::from(&closed))
        }
        Err(e) => Err(e),
    }
}
