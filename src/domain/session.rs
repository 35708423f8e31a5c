//! The session aggregate: participants, invitations, the customer's client
//! state, and every rule about how they change. Pure: time comes in with the
//! command, nothing here does I/O.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::directory::AgentRef;
use super::error::DomainError;
use super::id::{AccountId, AgentId, InvitationId, MessageId, PortalId, SessionId};
use super::policy::{Policy, SessionMode};

/// Longest invitation comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;
/// Longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Whether a session is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Live.
    Active,
    /// Over; nothing changes any more.
    Ended,
}

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
    /// Who.
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
    pub name: String,
    /// Bumped each time the customer's client must reconnect.
    pub generation: u32,
    /// The client must re-run the download (and may re-share the screen).
    pub reconnect_required: bool,
    /// Whether the client says it shares its screen.
    pub screen_shared: bool,
    /// A second agent has joined at some point: the reconnect was asked once.
    pub second_agent_joined: bool,
}

/// Whom an invitation is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One agent.
    Agent(AgentId),
    /// Every agent logged into a portal when it was sent.
    Portal(PortalId),
}

/// Where an invitation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    /// Open: recipients may accept.
    Pending,
    /// One recipient joined the session.
    Accepted,
    /// Every recipient declined.
    Declined,
    /// Taken back by the session's agents, by the session ending, or because
    /// nobody it was offered to is still logged in.
    Cancelled,
    /// Nobody accepted within the policy's time.
    Expired,
}

/// Why a recipient's alert disappears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    /// Another recipient accepted first.
    AcceptedByOther,
    /// A session agent cancelled it.
    Cancelled,
    /// Its time ran out.
    Expired,
    /// The session ended.
    SessionEnded,
    /// The recipient is no longer logged in.
    RecipientUnavailable,
}

/// An invitation to join a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The invitation's id.
    pub id: InvitationId,
    /// The session it invites into.
    pub session: SessionId,
    /// The agent who sent it.
    pub inviter: AgentRef,
    /// One agent or a portal.
    pub target: Target,
    /// The joining agent will be invisible to the customer.
    pub masked: bool,
    /// A note for the invitees only.
    pub comment: Option<String>,
    /// The agents it was offered to.
    pub recipients: Vec<AgentId>,
    /// Recipients who said no.
    pub declined_by: Vec<AgentId>,
    /// Recipients who logged out while it was open.
    pub unavailable: Vec<AgentId>,
    /// Its state.
    pub status: InvitationStatus,
    /// The recipient who joined, once accepted.
    pub accepted_by: Option<AgentId>,
    /// The claim's fencing token the acceptance was applied with.
    pub fence: Option<u64>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it expires if nobody accepts.
    pub expires_at: DateTime<Utc>,
    /// Why it closed, if it closed without being accepted or declined.
    pub closed_reason: Option<WithdrawReason>,
}

impl Invitation {
    /// Whether it is still open.
    pub fn is_pending(&self) -> bool {
        self.status == InvitationStatus::Pending
    }

    /// Recipients who still have the alert: not declined, not gone.
    pub fn live_recipients(&self) -> Vec<AgentId> {
        self.recipients
            .iter()
            .filter(|a| !self.declined_by.contains(a) && !self.unavailable.contains(a))
            .cloned()
            .collect()
    }

    /// Whether `agent` still holds this alert.
    pub fn is_live_recipient(&self, agent: &AgentId) -> bool {
        self.recipients.contains(agent)
            && !self.declined_by.contains(agent)
            && !self.unavailable.contains(agent)
    }
}

/// Who may read a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Customer and agents.
    Everyone,
    /// The session's agents only.
    Agents,
}

/// Who wrote a chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// A session agent; `masked` as it was when the message was written.
    Agent {
        /// Who.
        agent: AgentRef,
        /// Whether the agent was masked.
        masked: bool,
    },
    /// The customer.
    Customer {
        /// The customer's display name.
        name: String,
    },
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message's id.
    pub id: MessageId,
    /// Position in the session's chat, from 1.
    pub seq: u64,
    /// Who wrote it.
    pub author: Author,
    /// What it says.
    pub text: String,
    /// Who may read it.
    pub audience: Audience,
    /// When it was written.
    pub sent_at: DateTime<Utc>,
}

/// The session aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// The tenant it belongs to.
    pub account: AccountId,
    /// Web or queue.
    pub mode: SessionMode,
    /// Active or ended.
    pub status: SessionStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The lead agent; `None` once no agent is left.
    pub lead: Option<AgentId>,
    /// Agents in the session, in the order they joined.
    pub participants: Vec<Participant>,
    /// The customer's client state.
    pub customer: Customer,
    /// Every invitation ever sent into this session.
    pub invitations: Vec<Invitation>,
    /// Chat messages so far (the messages themselves are stored beside the state).
    pub message_count: u64,
}

/// A change someone asks of a session. Validated text arrives already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Invite one agent or a portal.
    Invite {
        /// Id for the new invitation.
        id: InvitationId,
        /// The inviting agent.
        inviter: AgentId,
        /// Whom.
        target: Target,
        /// Join masked.
        masked: bool,
        /// Note for the invitees.
        comment: Option<String>,
        /// Agents logged in for the target now (the direct target, or the
        /// portal's agents). The rule removes the inviter and participants.
        online: Vec<AgentId>,
    },
    /// A recipient accepts.
    Accept {
        /// Which invitation.
        invitation: InvitationId,
        /// Who accepts.
        agent: AgentRef,
        /// How many sessions the agent is active in now.
        active_sessions: u32,
        /// The fencing token of the agent's won claim.
        fence: u64,
    },
    /// A recipient declines.
    Decline {
        /// Which invitation.
        invitation: InvitationId,
        /// Who declines.
        agent: AgentId,
    },
    /// A session agent takes an invitation back.
    Cancel {
        /// Which invitation.
        invitation: InvitationId,
        /// Who cancels.
        by: AgentId,
    },
    /// The invitation's timer fired.
    Expire {
        /// Which invitation.
        invitation: InvitationId,
    },
    /// A recipient logged out: its alerts go away.
    RecipientGone {
        /// Who.
        agent: AgentId,
    },
    /// Someone writes in the chat.
    Post {
        /// Id for the new message.
        id: MessageId,
        /// Who writes.
        author: Poster,
        /// What (already length-checked).
        text: String,
        /// Who may read it (customers always write to everyone).
        audience: Audience,
    },
    /// An agent leaves.
    Leave {
        /// Who.
        agent: AgentId,
    },
    /// The lead ends the session.
    End {
        /// Who.
        by: AgentId,
    },
    /// The customer's client reconnected.
    CustomerReconnected {
        /// The generation the client reconnected for.
        generation: u32,
        /// Whether it shares its screen again.
        screen_shared: bool,
    },
}

/// Who posts a chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poster {
    /// A session agent.
    Agent(AgentId),
    /// The customer.
    Customer,
}

/// A brief of the session, carried with offers so a recipient can decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBrief {
    /// The session's id.
    pub id: SessionId,
    /// Web or queue.
    pub mode: SessionMode,
    /// The customer's display name.
    pub customer_name: String,
}

/// Something that happened to a session. Who may see what of it is decided
/// by [`crate::domain::visibility::view`] alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A new invitation went out.
    InvitationOffered {
        /// The invitation.
        invitation: Invitation,
        /// The session it is for.
        session: SessionBrief,
    },
    /// These recipients' alerts go away.
    InvitationWithdrawn {
        /// The invitation as it is now.
        invitation: Invitation,
        /// Whose alerts.
        recipients: Vec<AgentId>,
        /// Why.
        reason: WithdrawReason,
    },
    /// A recipient accepted.
    InvitationAccepted {
        /// The invitation as it is now.
        invitation: Invitation,
    },
    /// A recipient declined.
    InvitationDeclined {
        /// The invitation as it is now (declined if everyone has).
        invitation: Invitation,
        /// Who declined.
        by: AgentId,
    },
    /// Nobody accepted in time.
    InvitationExpired {
        /// The invitation as it is now.
        invitation: Invitation,
    },
    /// Taken back, or closed because its recipients are gone or the session ended.
    InvitationCancelled {
        /// The invitation as it is now.
        invitation: Invitation,
        /// Why.
        reason: WithdrawReason,
    },
    /// An agent joined.
    ParticipantJoined {
        /// Who, and how.
        participant: Participant,
    },
    /// An agent left.
    ParticipantLeft {
        /// Who, and how they were in.
        participant: Participant,
    },
    /// The lead changed hands.
    LeadChanged {
        /// The new lead.
        lead: AgentRef,
    },
    /// A chat message.
    MessagePosted {
        /// The message.
        message: Message,
    },
    /// The customer's client must reconnect.
    CustomerReconnectRequired {
        /// The generation to reconnect to.
        generation: u32,
    },
    /// The customer's client did reconnect.
    CustomerReconnected {
        /// Its generation.
        generation: u32,
        /// Whether it shares its screen.
        screen_shared: bool,
    },
    /// The session is over.
    SessionEnded {
        /// When.
        at: DateTime<Utc>,
    },
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The session after the command.
    pub session: Session,
    /// What happened, in order.
    pub events: Vec<Event>,
    /// A message the command wrote, to store beside the state.
    pub message: Option<Message>,
}

impl Session {
    /// A new session with `lead` as its only agent.
    pub fn create(
        id: SessionId,
        account: AccountId,
        mode: SessionMode,
        lead: AgentRef,
        customer_name: String,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        if !policy.session_modes.contains(&mode) {
            return Err(DomainError::FeatureDisabled("sessions in this mode"));
        }
        Ok(Self {
            id,
            account,
            mode,
            status: SessionStatus::Active,
            created_at: now,
            lead: Some(lead.id.clone()),
            participants: vec![Participant {
                agent: lead,
                role: Role::Lead,
                masked: false,
                joined_at: now,
            }],
            customer: Customer {
                name: customer_name,
                generation: 1,
                reconnect_required: false,
                screen_shared: false,
                second_agent_joined: false,
            },
            invitations: Vec::new(),
            message_count: 0,
        })
    }

    /// The participant entry of `agent`, if it is in the session.
    pub fn participant(&self, agent: &AgentId) -> Option<&Participant> {
        self.participants.iter().find(|p| &p.agent.id == agent)
    }

    /// Whether `agent` is in the session.
    pub fn is_participant(&self, agent: &AgentId) -> bool {
        self.participant(agent).is_some()
    }

    /// The invitation with this id.
    pub fn invitation(&self, id: &InvitationId) -> Option<&Invitation> {
        self.invitations.iter().find(|i| &i.id == id)
    }

    /// Invitations still open.
    pub fn pending_invitations(&self) -> impl Iterator<Item = &Invitation> {
        self.invitations.iter().filter(|i| i.is_pending())
    }

    /// A short description for recipients.
    pub fn brief(&self) -> SessionBrief {
        SessionBrief {
            id: self.id.clone(),
            mode: self.mode,
            customer_name: self.customer.name.clone(),
        }
    }

    /// Applies `command` at time `now` under `policy`: the new session and
    /// what happened, or the rule it broke (and then nothing changed).
    pub fn apply(
        &self,
        command: Command,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Outcome, DomainError> {
        let mut next = self.clone();
        let mut events = Vec::new();
        let mut message = None;
        match command {
            Command::Invite {
                id,
                inviter,
                target,
                masked,
                comment,
                online,
            } => {
                let invitation =
                    next.invite(id, &inviter, target, masked, comment, online, policy, now)?;
                events.push(Event::InvitationOffered {
                    invitation,
                    session: next.brief(),
                });
            }
            Command::Accept {
                invitation,
                agent,
                active_sessions,
                fence,
            } => {
                next.accept(
                    &invitation,
                    agent,
                    active_sessions,
                    fence,
                    policy,
                    now,
                    &mut events,
                )?;
            }
            Command::Decline { invitation, agent } => {
                next.decline(&invitation, &agent, &mut events)?;
            }
            Command::Cancel { invitation, by } => {
                next.require_active()?;
                next.require_participant(&by)?;
                let inv = next.invitation_mut(&invitation)?;
                if !inv.is_pending() {
                    return Err(DomainError::InvitationClosed);
                }
                next.close(
                    &invitation,
                    InvitationStatus::Cancelled,
                    WithdrawReason::Cancelled,
                    &mut events,
                );
            }
            Command::Expire { invitation } => {
                let inv = next.invitation_mut(&invitation)?;
                // A timer may fire late or twice; only a pending, due invitation expires.
                if inv.is_pending() && now >= inv.expires_at {
                    next.close(
                        &invitation,
                        InvitationStatus::Expired,
                        WithdrawReason::Expired,
                        &mut events,
                    );
                }
            }
            Command::RecipientGone { agent } => next.recipient_gone(&agent, &mut events),
            Command::Post {
                id,
                author,
                text,
                audience,
            } => {
                message = Some(next.post(id, author, text, audience, now, &mut events)?);
            }
            Command::Leave { agent } => next.leave(&agent, now, &mut events)?,
            Command::End { by } => {
                next.require_active()?;
                next.require_participant(&by)?;
                if next.lead.as_ref() != Some(&by) {
                    return Err(DomainError::NotLead);
                }
                next.end(now, &mut events);
            }
            Command::CustomerReconnected {
                generation,
                screen_shared,
            } => {
                next.require_active()?;
                if generation != next.customer.generation {
                    return Err(DomainError::Conflict(format!(
                        "the client's generation is {}, not {generation}",
                        next.customer.generation
                    )));
                }
                next.customer.reconnect_required = false;
                next.customer.screen_shared = screen_shared;
                events.push(Event::CustomerReconnected {
                    generation,
                    screen_shared,
                });
            }
        }
        Ok(Outcome {
            session: next,
            events,
            message,
        })
    }

    /// Checks everything about an accept that can be checked before claiming,
    /// so a claim is only taken by an agent who could join. `Ok(true)` means
    /// the agent already accepted (a repeat).
    pub fn check_accept(
        &self,
        invitation: &InvitationId,
        agent: &AgentId,
        active_sessions: u32,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<bool, DomainError> {
        let inv = self
            .invitation(invitation)
            .ok_or(DomainError::InvitationNotFound)?;
        if !inv.recipients.contains(agent) {
            return Err(DomainError::NotARecipient);
        }
        match inv.status {
            InvitationStatus::Accepted if inv.accepted_by.as_ref() == Some(agent) => {
                return Ok(true);
            }
            InvitationStatus::Accepted => return Err(DomainError::InvitationTaken),
            InvitationStatus::Pending => {}
            _ => return Err(DomainError::InvitationClosed),
        }
        if !inv.is_live_recipient(agent) || now >= inv.expires_at {
            return Err(DomainError::InvitationClosed);
        }
        self.require_active()?;
        if self.is_participant(agent) {
            return Err(DomainError::AlreadyParticipant);
        }
        if self.participants.len() as u32 >= policy.max_agents_per_session {
            return Err(DomainError::SessionFull);
        }
        if active_sessions >= policy.max_active_sessions_per_agent {
            return Err(DomainError::AgentBusy);
        }
        Ok(false)
    }

    fn require_active(&self) -> Result<(), DomainError> {
        match self.status {
            SessionStatus::Active => Ok(()),
            SessionStatus::Ended => Err(DomainError::SessionEnded),
        }
    }

    fn require_participant(&self, agent: &AgentId) -> Result<(), DomainError> {
        if self.is_participant(agent) {
            Ok(())
        } else {
            Err(DomainError::NotParticipant)
        }
    }

    fn invitation_mut(&mut self, id: &InvitationId) -> Result<&mut Invitation, DomainError> {
        self.invitations
            .iter_mut()
            .find(|i| &i.id == id)
            .ok_or(DomainError::InvitationNotFound)
    }

    #[allow(clippy::too_many_arguments)]
    fn invite(
        &mut self,
        id: InvitationId,
        inviter: &AgentId,
        target: Target,
        masked: bool,
        comment: Option<String>,
        online: Vec<AgentId>,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Invitation, DomainError> {
        self.require_active()?;
        let inviter = self
            .participant(inviter)
            .ok_or(DomainError::NotParticipant)?
            .agent
            .clone();
        if !policy.collaboration {
            return Err(DomainError::FeatureDisabled("collaboration"));
        }
        if matches!(target, Target::Portal(_)) && !policy.portal_invitations {
            return Err(DomainError::FeatureDisabled("portal invitations"));
        }
        if masked && !policy.masking {
            return Err(DomainError::FeatureDisabled("masked agents"));
        }
        if comment.is_some() && !policy.comments {
            return Err(DomainError::FeatureDisabled("invitation comments"));
        }
        if let Some(c) = &comment
            && c.chars().count() > MAX_COMMENT_CHARS
        {
            return Err(DomainError::Invalid(format!(
                "comment must be at most {MAX_COMMENT_CHARS} characters"
            )));
        }
        if self.participants.len() as u32 >= policy.max_agents_per_session {
            return Err(DomainError::SessionFull);
        }
        let mut recipients: Vec<AgentId> = Vec::new();
        for agent in online {
            if agent != inviter.id && !self.is_participant(&agent) && !recipients.contains(&agent) {
                recipients.push(agent);
            }
        }
        match &target {
            Target::Agent(agent) => {
                if agent == &inviter.id || self.is_participant(agent) {
                    return Err(DomainError::AlreadyParticipant);
                }
                recipients.retain(|a| a == agent);
                if recipients.is_empty() {
                    return Err(DomainError::AgentUnavailable);
                }
            }
            Target::Portal(_) => {
                if recipients.is_empty() {
                    return Err(DomainError::NoAgentsOnline);
                }
            }
        }
        let invitation = Invitation {
            id,
            session: self.id.clone(),
            inviter,
            target,
            masked,
            comment,
            recipients,
            declined_by: Vec::new(),
            unavailable: Vec::new(),
            status: InvitationStatus::Pending,
            accepted_by: None,
            fence: None,
            created_at: now,
            expires_at: now + Duration::seconds(i64::from(policy.invitation_ttl_secs)),
            closed_reason: None,
        };
        self.invitations.push(invitation.clone());
        Ok(invitation)
    }

    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        id: &InvitationId,
        agent: AgentRef,
        active_sessions: u32,
        fence: u64,
        policy: &Policy,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        if self.check_accept(id, &agent.id, active_sessions, policy, now)? {
            return Ok(()); // the winner asking again: nothing changes
        }
        let inv = self.invitation_mut(id)?;
        inv.status = InvitationStatus::Accepted;
        inv.accepted_by = Some(agent.id.clone());
        inv.fence = Some(fence);
        let masked = inv.masked;
        let losers: Vec<AgentId> = inv
            .live_recipients()
            .into_iter()
            .filter(|a| a != &agent.id)
            .collect();
        let invitation = inv.clone();
        events.push(Event::InvitationAccepted {
            invitation: invitation.clone(),
        });
        if !losers.is_empty() {
            events.push(Event::InvitationWithdrawn {
                invitation,
                recipients: losers,
                reason: WithdrawReason::AcceptedByOther,
            });
        }
        let participant = Participant {
            agent,
            role: Role::Collaborator,
            masked,
            joined_at: now,
        };
        self.participants.push(participant.clone());
        events.push(Event::ParticipantJoined { participant });
        if self.participants.len() >= 2 && !self.customer.second_agent_joined {
            self.customer.second_agent_joined = true;
            self.customer.generation += 1;
            self.customer.reconnect_required = true;
            events.push(Event::CustomerReconnectRequired {
                generation: self.customer.generation,
            });
        }
        Ok(())
    }

    fn decline(
        &mut self,
        id: &InvitationId,
        agent: &AgentId,
        events: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let inv = self.invitation_mut(id)?;
        if !inv.recipients.contains(agent) {
            return Err(DomainError::NotARecipient);
        }
        if inv.declined_by.contains(agent) {
            return Ok(()); // declining twice changes nothing
        }
        if !inv.is_pending() || inv.unavailable.contains(agent) {
            return Err(DomainError::InvitationClosed);
        }
        inv.declined_by.push(agent.clone());
        if inv.live_recipients().is_empty() {
            inv.status = InvitationStatus::Declined;
        }
        events.push(Event::InvitationDeclined {
            invitation: inv.clone(),
            by: agent.clone(),
        });
        Ok(())
    }

    /// Closes a pending invitation and withdraws every live recipient's alert.
    fn close(
        &mut self,
        id: &InvitationId,
        status: InvitationStatus,
        reason: WithdrawReason,
        events: &mut Vec<Event>,
    ) {
        self.close_for(id, status, reason, None, events);
    }

    /// Closes a pending invitation and withdraws the alerts of `holders`
    /// (by default, every live recipient).
    fn close_for(
        &mut self,
        id: &InvitationId,
        status: InvitationStatus,
        reason: WithdrawReason,
        holders: Option<Vec<AgentId>>,
        events: &mut Vec<Event>,
    ) {
        let Some(inv) = self.invitations.iter_mut().find(|i| &i.id == id) else {
            return;
        };
        if !inv.is_pending() {
            return;
        }
        let recipients = holders.unwrap_or_else(|| inv.live_recipients());
        inv.status = status;
        inv.closed_reason = Some(reason);
        let invitation = inv.clone();
        events.push(match status {
            InvitationStatus::Expired => Event::InvitationExpired {
                invitation: invitation.clone(),
            },
            _ => Event::InvitationCancelled {
                invitation: invitation.clone(),
                reason,
            },
        });
        if !recipients.is_empty() {
            events.push(Event::InvitationWithdrawn {
                invitation,
                recipients,
                reason,
            });
        }
    }

    fn recipient_gone(&mut self, agent: &AgentId, events: &mut Vec<Event>) {
        let affected: Vec<InvitationId> = self
            .invitations
            .iter()
            .filter(|i| i.is_pending() && i.is_live_recipient(agent))
            .map(|i| i.id.clone())
            .collect();
        for id in affected {
            let Some(inv) = self.invitations.iter_mut().find(|i| i.id == id) else {
                continue;
            };
            inv.unavailable.push(agent.clone());
            if inv.live_recipients().is_empty() {
                // Nobody is left who could take it.
                self.close_for(
                    &id,
                    InvitationStatus::Cancelled,
                    WithdrawReason::RecipientUnavailable,
                    Some(vec![agent.clone()]),
                    events,
                );
            } else {
                events.push(Event::InvitationWithdrawn {
                    invitation: inv.clone(),
                    recipients: vec![agent.clone()],
                    reason: WithdrawReason::RecipientUnavailable,
                });
            }
        }
    }

    fn post(
        &mut self,
        id: MessageId,
        author: Poster,
        text: String,
        audience: Audience,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<Message, DomainError> {
        self.require_active()?;
        if text.trim().is_empty() {
            return Err(DomainError::Invalid("text must not be empty".into()));
        }
        if text.chars().count() > MAX_MESSAGE_CHARS {
            return Err(DomainError::Invalid(format!(
                "text must be at most {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let (author, audience) = match author {
            Poster::Agent(agent) => {
                let p = self
                    .participant(&agent)
                    .ok_or(DomainError::NotParticipant)?;
                // A masked agent must stay invisible: its words never reach the customer.
                let audience = if p.masked { Audience::Agents } else { audience };
                (
                    Author::Agent {
                        agent: p.agent.clone(),
                        masked: p.masked,
                    },
                    audience,
                )
            }
            Poster::Customer => (
                Author::Customer {
                    name: self.customer.name.clone(),
                },
                Audience::Everyone,
            ),
        };
        self.message_count += 1;
        let message = Message {
            id,
            seq: self.message_count,
            author,
            text,
            audience,
            sent_at: now,
        };
        events.push(Event::MessagePosted {
            message: message.clone(),
        });
        Ok(message)
    }

    fn leave(
        &mut self,
        agent: &AgentId,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        self.require_active()?;
        let index = self
            .participants
            .iter()
            .position(|p| &p.agent.id == agent)
            .ok_or(DomainError::NotParticipant)?;
        let participant = self.participants.remove(index);
        let was_lead = participant.role == Role::Lead;
        events.push(Event::ParticipantLeft { participant });
        if self.participants.is_empty() {
            self.lead = None;
            self.end(now, events);
            return Ok(());
        }
        if was_lead {
            // The longest-joined agent left takes over: participants are in join order.
            let next = &mut self.participants[0];
            next.role = Role::Lead;
            self.lead = Some(next.agent.id.clone());
            events.push(Event::LeadChanged {
                lead: next.agent.clone(),
            });
        }
        Ok(())
    }

    fn end(&mut self, now: DateTime<Utc>, events: &mut Vec<Event>) {
        let pending: Vec<InvitationId> = self.pending_invitations().map(|i| i.id.clone()).collect();
        for id in pending {
            self.close(
                &id,
                InvitationStatus::Cancelled,
                WithdrawReason::SessionEnded,
                events,
            );
        }
        self.status = SessionStatus::Ended;
        events.push(Event::SessionEnded { at: now });
    }
}

/// How a command changed the indexes kept beside sessions: who is in which
/// session, and which invitations are open for which target. Derived, never
/// stored in the session. Open invitations are indexed by their target (one
/// agent, or a portal) rather than by recipient, so that opening or closing
/// a portal invitation costs the same however many agents the portal has;
/// a recipient's own decline or logout changes no index (readers check
/// [`Invitation::is_live_recipient`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexDelta {
    /// Agents now in the session who were not before.
    pub joined: Vec<AgentId>,
    /// Agents no longer in the session (or the session ended).
    pub left: Vec<AgentId>,
    /// Invitations that opened, and for whom.
    pub opened: Vec<(InvitationId, Target)>,
    /// Invitations that closed (accepted, declined, cancelled, expired).
    pub closed: Vec<(InvitationId, Target)>,
}

impl IndexDelta {
    /// The difference between `before` (none for a new session) and `after`.
    pub fn between(before: Option<&Session>, after: &Session) -> Self {
        let active = |s: &Session| -> Vec<AgentId> {
            if s.status == SessionStatus::Active {
                s.participants.iter().map(|p| p.agent.id.clone()).collect()
            } else {
                Vec::new()
            }
        };
        let was_open = |id: &InvitationId| {
            before
                .and_then(|b| b.invitation(id))
                .is_some_and(Invitation::is_pending)
        };
        let was = before.map(active).unwrap_or_default();
        let now = active(after);
        let mut delta = IndexDelta {
            joined: now.iter().filter(|a| !was.contains(a)).cloned().collect(),
            left: was.iter().filter(|a| !now.contains(a)).cloned().collect(),
            ..Default::default()
        };
        for inv in &after.invitations {
            match (was_open(&inv.id), inv.is_pending()) {
                (false, true) => delta.opened.push((inv.id.clone(), inv.target.clone())),
                (true, false) => delta.closed.push((inv.id.clone(), inv.target.clone())),
                _ => {}
            }
        }
        delta
    }
}
