//! The session aggregate: the *hot state* every rule needs now —
//! participants, open invitations, the customer's client state, counters —
//! and the rules that change it. Pure: time and policy come in with the
//! command, nothing here does I/O.
//!
//! The hot state is bounded by the policy (agents per session, pending
//! invitations), so a command costs the same in the first minute of a
//! session as after a thousand invitations. What is over — a closed
//! invitation, a chat message — leaves the hot state in the [`Outcome`] of
//! the command that produced it and is appended to the session's history
//! or transcript by the same atomic commit.
//!
//! Rules change the state in place (no clone of the session per command)
//! and check everything before they change anything: a refused command
//! leaves the state exactly as it was (`session_rules_tests.rs` checks this
//! for every refusal).

mod audited;
mod chat;
mod command;
mod event;
mod invitation;
mod participants;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use chat::{Audience, Author, MAX_MESSAGE_CHARS, Message, Poster};
pub use command::{
    Accept, AdminCancel, AdminEnd, Cancel, CheckIdle, Command, CustomerReconnected, Decline, End,
    Escalate, Expire, Invite, Leave, Post, RecipientGone, SetMasked,
};
pub use event::{Event, InvitationSummary, SessionBrief};
pub use invitation::{
    Comment, EscalateAfter, Escalation, Invitation, InvitationKind, InvitationStatus,
    MAX_COMMENT_CHARS, MIN_ESCALATE_SECS, Target, WithdrawReason, check_accept, check_joiner,
};
pub use participants::{Customer, EndReason, Ending, Participant, Role};

use super::audit::AuditEntry;
use super::directory::{AgentRef, DisplayName};
use super::error::DomainError;
use super::id::{AccountId, AgentId, InvitationId, SessionId};
use super::policy::{Policy, SessionMode};

/// Whether a session is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Live.
    Active,
    /// Over; nothing changes any more.
    Ended,
}

/// Running counts a session keeps so that its history and transcript need
/// not be read to number or bound what comes next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Chat messages written (the last message's `seq`), by either side.
    pub messages: u64,
    /// Messages the customer may see (the last one's customer `seq`).
    pub customer_messages: u64,
    /// Invitations sent.
    pub invitations: u64,
    /// Masks and unmasks made by the lead (each one is an audit entry:
    /// they are bounded like everything else a session keeps).
    pub mask_changes: u64,
    /// Messages the customer wrote: the customer's side of the message
    /// budget, so that a customer alone cannot use up the agents' side.
    pub customer_posts: u64,
    /// Masks and unmasks collaborators made of themselves: their own
    /// budget, so that a collaborator cannot use up the lead's.
    pub collaborator_mask_changes: u64,
}

impl Counters {
    /// Messages the session's agents wrote.
    pub fn agent_posts(&self) -> u64 {
        self.messages.saturating_sub(self.customer_posts)
    }
}

/// The most masks and unmasks of one side of a session: the lead's, and
/// the collaborators' of themselves, each.
pub const MAX_MASK_CHANGES: u64 = 1000;

/// The session aggregate's hot state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// The tenant it belongs to.
    pub account: AccountId,
    /// Web or queue.
    pub mode: SessionMode,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When and why it ended; `None` while it is active.
    pub ended: Option<Ending>,
    /// The lead agent; `None` once no agent is left.
    pub lead: Option<AgentId>,
    /// Agents in the session, in the order they joined.
    pub participants: Vec<Participant>,
    /// The customer's client state.
    pub customer: Customer,
    /// Invitations open now, oldest first. Closed ones are in the history.
    pub invitations: Vec<Invitation>,
    /// Running counts of messages and invitations.
    pub counters: Counters,
    /// The last time one of its agents did something in it.
    pub last_activity: DateTime<Utc>,
}

/// A durable timer of a session, armed and disarmed by the commits that
/// change the session (so no open invitation lacks its expiry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// Expire this invitation if it is still open.
    Expiry(InvitationId),
    /// End the session if it has been idle for the policy's time.
    Idle,
    /// Send this invitation to its escalation portal if its agent has not
    /// taken it.
    Escalate(InvitationId),
}

/// How a command changed the indexes kept beside sessions: who is in which
/// session, and which invitations are open for which target. Open
/// invitations are indexed by their target (one agent, or a portal) rather
/// than by recipient, so that opening or closing a portal invitation costs
/// the same however many agents the portal has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexDelta {
    /// Agents now active in the session who were not before.
    pub joined: Vec<AgentId>,
    /// Agents no longer active in it (they left, or the session ended).
    pub left: Vec<AgentId>,
    /// Invitations that opened, and for whom.
    pub opened: Vec<(InvitationId, Target)>,
    /// Invitations that closed (accepted, declined, cancelled, expired).
    pub closed: Vec<(InvitationId, Target)>,
}

impl IndexDelta {
    /// Whether no index changes.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
            && self.left.is_empty()
            && self.opened.is_empty()
            && self.closed.is_empty()
    }
}

/// What a command produced besides the new hot state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What happened, in order.
    pub events: Vec<Event>,
    /// Invitations that closed: they leave the hot state for the history.
    pub closed: Vec<Invitation>,
    /// A message to append to the transcript.
    pub message: Option<Message>,
    /// Index changes.
    pub delta: IndexDelta,
    /// Timers to arm (or move), with when they fire.
    pub arm: Vec<(Timer, DateTime<Utc>)>,
    /// Timers no longer needed.
    pub disarm: Vec<Timer>,
    /// The session's agents before and after the command: whom its events
    /// concern (a leaver hears of its own leaving).
    pub audience: Vec<AgentId>,
    /// Set when this command ended the session.
    pub ended: bool,
    /// The audit trail's entries for this change (stored with it).
    pub audit: Vec<AuditEntry>,
}

impl Outcome {
    /// Whether the command changed nothing, so there is nothing to store.
    pub fn is_noop(&self) -> bool {
        self.events.is_empty()
            && self.message.is_none()
            && self.arm.is_empty()
            && self.disarm.is_empty()
    }

    /// The invitation `id` as this command left it: closed by it, or still
    /// open in `session`.
    pub fn invitation<'a>(
        &'a self,
        session: &'a Session,
        id: &InvitationId,
    ) -> Option<&'a Invitation> {
        self.closed
            .iter()
            .find(|i| &i.id == id)
            .or_else(|| session.invitation(id))
    }

    fn close(&mut self, invitation: Invitation) {
        self.delta
            .closed
            .push((invitation.id.clone(), invitation.target.clone()));
        self.disarm.push(Timer::Expiry(invitation.id.clone()));
        if invitation.escalates() {
            self.disarm.push(Timer::Escalate(invitation.id.clone()));
        }
        self.closed.push(invitation);
    }
}

/// What every rule is applied under: the account's policy now and the time.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The account's policy as it is now.
    pub policy: &'a Policy,
    /// The time of the command.
    pub now: DateTime<Utc>,
}

impl Session {
    /// A new session with `lead` as its only agent, and what creating it
    /// changes (the lead's index entry, the idle timer).
    pub fn create(
        id: SessionId,
        account: AccountId,
        mode: SessionMode,
        lead: AgentRef,
        customer_name: DisplayName,
        rules: Rules<'_>,
    ) -> Result<(Self, Outcome), DomainError> {
        if !rules.policy.session_modes.contains(&mode) {
            return Err(DomainError::FeatureDisabled("sessions in this mode"));
        }
        let now = rules.now;
        let session = Self {
            id,
            account,
            mode,
            created_at: now,
            ended: None,
            lead: Some(lead.id.clone()),
            participants: vec![Participant {
                agent: lead,
                role: Role::Lead,
                masked: false,
                joined_at: now,
            }],
            customer: Customer::new(customer_name),
            invitations: Vec::new(),
            counters: Counters::default(),
            last_activity: now,
        };
        let mut outcome = Outcome {
            audience: session.agent_ids(),
            ..Outcome::default()
        };
        outcome.delta.joined = session.agent_ids();
        outcome
            .arm
            .push((Timer::Idle, session.idle_deadline(rules.policy)));
        outcome.audit.push(audited::session_created(&session));
        Ok((session, outcome))
    }

    /// Active or ended.
    pub fn status(&self) -> SessionStatus {
        match self.ended {
            None => SessionStatus::Active,
            Some(_) => SessionStatus::Ended,
        }
    }

    /// The participant entry of `agent`, if it is in the session.
    pub fn participant(&self, agent: &AgentId) -> Option<&Participant> {
        self.participants.iter().find(|p| &p.agent.id == agent)
    }

    /// Whether `agent` is in the session.
    pub fn is_participant(&self, agent: &AgentId) -> bool {
        self.participant(agent).is_some()
    }

    /// The ids of the session's agents, in join order.
    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.participants
            .iter()
            .map(|p| p.agent.id.clone())
            .collect()
    }

    /// The open invitation with this id.
    pub fn invitation(&self, id: &InvitationId) -> Option<&Invitation> {
        self.invitations.iter().find(|i| &i.id == id)
    }

    /// Invitations still open.
    pub fn pending_invitations(&self) -> impl Iterator<Item = &Invitation> {
        self.invitations.iter()
    }

    /// A short description for recipients.
    pub fn brief(&self) -> SessionBrief {
        SessionBrief {
            id: self.id.clone(),
            mode: self.mode,
            customer_name: self.customer.name.clone(),
        }
    }

    /// When the session ends if nobody does anything in it.
    pub fn idle_deadline(&self, policy: &Policy) -> DateTime<Utc> {
        self.last_activity + Duration::seconds(i64::from(policy.session_idle_timeout_secs))
    }

    /// When an ended session and everything of it is deleted.
    pub fn retained_until(&self, policy: &Policy) -> Option<DateTime<Utc>> {
        self.ended
            .as_ref()
            .map(|e| e.at + Duration::seconds(i64::from(policy.retention_secs)))
    }

    /// Applies `command` under `rules`, changing the session in place, and
    /// returns what happened — or the rule it broke, and then the session
    /// is exactly as it was.
    pub fn apply(&mut self, command: &Command, rules: Rules<'_>) -> Result<Outcome, DomainError> {
        let mut outcome = Outcome {
            audience: self.agent_ids(),
            ..Outcome::default()
        };
        match command {
            Command::Invite(c) => c.apply(self, rules, &mut outcome)?,
            Command::Accept(c) => c.apply(self, rules, &mut outcome)?,
            Command::Decline(c) => c.apply(self, rules, &mut outcome)?,
            Command::Cancel(c) => c.apply(self, rules, &mut outcome)?,
            Command::Expire(c) => c.apply(self, rules, &mut outcome)?,
            Command::Escalate(c) => c.apply(self, rules, &mut outcome)?,
            Command::RecipientGone(c) => c.apply(self, rules, &mut outcome)?,
            Command::Post(c) => c.apply(self, rules, &mut outcome)?,
            Command::Leave(c) => c.apply(self, rules, &mut outcome)?,
            Command::SetMasked(c) => c.apply(self, rules, &mut outcome)?,
            Command::End(c) => c.apply(self, rules, &mut outcome)?,
            Command::AdminEnd(c) => c.apply(self, rules, &mut outcome)?,
            Command::AdminCancel(c) => c.apply(self, rules, &mut outcome)?,
            Command::CustomerReconnected(c) => c.apply(self, rules, &mut outcome)?,
            Command::CheckIdle(c) => c.apply(self, rules, &mut outcome)?,
        }
        for agent in self.agent_ids() {
            if !outcome.audience.contains(&agent) {
                outcome.audience.push(agent);
            }
        }
        outcome.audit = audited::session_entries(command, &self.id, &outcome.events, rules.now);
        Ok(outcome)
    }

    fn require_active(&self) -> Result<(), DomainError> {
        match self.ended {
            None => Ok(()),
            Some(_) => Err(DomainError::SessionEnded),
        }
    }

    fn require_participant(&self, agent: &AgentId) -> Result<&Participant, DomainError> {
        self.participant(agent).ok_or(DomainError::NotParticipant)
    }

    /// An agent of the session did something: the idle clock restarts.
    fn touch(&mut self, now: DateTime<Utc>) {
        if now > self.last_activity {
            self.last_activity = now;
        }
    }

    /// Takes an open invitation out of the hot state.
    fn take_invitation(&mut self, id: &InvitationId) -> Option<Invitation> {
        let index = self.invitations.iter().position(|i| &i.id == id)?;
        Some(self.invitations.remove(index))
    }
}
