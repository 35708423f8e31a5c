//! Who is in the session and how it ends: joining is the accept rule
//! (`invitation.rs`); leaving, the lead's hand-over, ending (by the lead,
//! by the last agent leaving, or for idleness), and the customer's client.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::Event;
use super::invitation::{InvitationStatus, WithdrawReason, cancel_transfers, close};
use super::{
    AdminEnd, CheckIdle, CustomerReconnected, End, Leave, MAX_MASK_CHANGES, Outcome, Rules,
    Session, SetMasked, Timer,
};
use crate::domain::directory::{AgentRef, DisplayName};
use crate::domain::error::DomainError;
use crate::domain::id::InvitationId;

/// An agent's part in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the session; may end it.
    Lead,
    /// Joined through an invitation.
    Collaborator,
}

/// An agent in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The agent, by id and display name.
    pub agent: AgentRef,
    /// Lead or collaborator.
    pub role: Role,
    /// Invisible to the customer.
    pub masked: bool,
    /// When the agent joined.
    pub joined_at: DateTime<Utc>,
}

/// The customer's side of the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// Display name given when the session was created.
    pub name: DisplayName,
    /// Bumped each time the customer's client must reconnect.
    pub generation: u32,
    /// The client must re-run the download (and may re-share the screen).
    pub reconnect_required: bool,
    /// Whether the client says it shares its screen.
    pub screen_shared: bool,
    /// A second agent has joined at some point: the reconnect was asked once.
    pub second_agent_joined: bool,
}

impl Customer {
    /// A customer at its first generation.
    pub fn new(name: DisplayName) -> Self {
        Self {
            name,
            generation: 1,
            reconnect_required: false,
            screen_shared: false,
            second_agent_joined: false,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Its lead ended it.
    EndedByLead,
    /// Its last agent left.
    LastAgentLeft,
    /// No agent did anything in it for the policy's idle time.
    Idle,
    /// An administrator ended it. (New variants go last: the codec stores
    /// the variant's position.)
    Admin,
}

/// When and why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: EndReason,
}

impl Leave {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        let index = s
            .participants
            .iter()
            .position(|p| p.agent.id == self.agent)
            .ok_or(DomainError::NotParticipant)?;
        let participant = s.participants.remove(index);
        let was_lead = participant.role == Role::Lead;
        out.delta.left.push(participant.agent.id.clone());
        out.events.push(Event::ParticipantLeft { participant });
        s.touch(rules.now);
        if s.participants.is_empty() {
            // The lead stays: the lead at the end is who reads the ended
            // session's trail (`GET /v1/sessions/{id}/audit`), and the last
            // agent to leave was the lead.
            end(s, rules.now, EndReason::LastAgentLeft, out);
            return Ok(());
        }
        if was_lead {
            // The longest-joined agent the customer sees takes over (the lead
            // is the customer's agent), else the longest-joined of the masked
            // ones: participants are in join order.
            let index = s.participants.iter().position(|p| !p.masked).unwrap_or(0);
            let next = &mut s.participants[index];
            next.role = Role::Lead;
            s.lead = Some(next.agent.id.clone());
            out.events.push(Event::LeadChanged {
                lead: next.agent.clone(),
            });
            cancel_transfers(s, out);
        }
        Ok(())
    }
}

impl SetMasked {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        s.require_participant(&self.by)?;
        if self.by != self.agent && s.lead.as_ref() != Some(&self.by) {
            return Err(DomainError::NotLead);
        }
        if !rules.policy.masking {
            return Err(DomainError::FeatureDisabled("masked agents"));
        }
        let masked = s
            .participant(&self.agent)
            .ok_or(DomainError::ParticipantNotFound)?
            .masked;
        if masked == self.masked {
            return Ok(()); // as asked already: nothing changes, nobody is told
        }
        if self.masked && s.lead.as_ref() == Some(&self.agent) {
            return Err(DomainError::Conflict(
                "the lead is the customer's agent and cannot be masked; transfer the session first"
                    .into(),
            ));
        }
        // The lead and the collaborators masking themselves have a budget
        // each: a collaborator toggling itself cannot use up the lead's.
        let by_lead = s.lead.as_ref() == Some(&self.by);
        let made = if by_lead {
            s.counters.mask_changes
        } else {
            s.counters.collaborator_mask_changes
        };
        if made >= MAX_MASK_CHANGES {
            return Err(DomainError::TooManyMaskChanges);
        }
        let p = s
            .participants
            .iter_mut()
            .find(|p| p.agent.id == self.agent)
            .ok_or(DomainError::ParticipantNotFound)?;
        p.masked = self.masked;
        let participant = p.clone();
        if by_lead {
            s.counters.mask_changes += 1;
        } else {
            s.counters.collaborator_mask_changes += 1;
        }
        s.touch(rules.now);
        out.events.push(Event::ParticipantUpdated { participant });
        Ok(())
    }
}

impl End {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        s.require_participant(&self.by)?;
        if s.lead.as_ref() != Some(&self.by) {
            return Err(DomainError::NotLead);
        }
        s.touch(rules.now);
        end(s, rules.now, EndReason::EndedByLead, out);
        Ok(())
    }
}

impl AdminEnd {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        end(s, rules.now, EndReason::Admin, out);
        Ok(())
    }
}

impl CustomerReconnected {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        _: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        if self.generation != s.customer.generation {
            return Err(DomainError::Conflict(format!(
                "the client's generation is {}, not {}",
                s.customer.generation, self.generation
            )));
        }
        s.customer.reconnect_required = false;
        s.customer.screen_shared = self.screen_shared;
        out.events.push(Event::CustomerReconnected {
            generation: self.generation,
            screen_shared: self.screen_shared,
        });
        Ok(())
    }
}

impl CheckIdle {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        if s.ended.is_some() {
            return Ok(());
        }
        let deadline = s.idle_deadline(rules.policy);
        if rules.now < deadline {
            // Something happened since the timer was armed: wait for the new time.
            out.arm.push((Timer::Idle, deadline));
        } else {
            end(s, rules.now, EndReason::Idle, out);
        }
        Ok(())
    }
}

/// Ends the session: its open invitations are cancelled and withdrawn, its
/// agents are no longer active in it, its timers go.
fn end(s: &mut Session, now: DateTime<Utc>, reason: EndReason, out: &mut Outcome) {
    let pending: Vec<InvitationId> = s.invitations.iter().map(|i| i.id.clone()).collect();
    for id in pending {
        close(
            s,
            &id,
            InvitationStatus::Cancelled,
            WithdrawReason::SessionEnded,
            None,
            out,
        );
    }
    s.ended = Some(Ending { at: now, reason });
    for p in &s.participants {
        out.delta.left.push(p.agent.id.clone());
    }
    out.disarm.push(Timer::Idle);
    out.ended = true;
    out.events.push(Event::SessionEnded { at: now, reason });
}
