//! What happens to a session. Who may see what of each event is decided by
//! [`crate::domain::visibility::view`] alone.
//!
//! Events are sized by what they tell, not by the session: an invitation's
//! recipient list travels once, in [`Event::InvitationOffered`] (its
//! recipients' nodes need it to find them); everything the session's agents
//! are told about an invitation carries an [`InvitationSummary`] with the
//! recipient *count*.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::chat::Message;
use super::invitation::{
    Comment, Escalation, Invitation, InvitationKind, InvitationStatus, Target, WithdrawReason,
};
use super::participants::{EndReason, Participant};
use crate::domain::directory::{AgentRef, DisplayName};
use crate::domain::id::{AgentId, InvitationId, PortalId, SessionId};
use crate::domain::policy::SessionMode;

/// A brief of the session, carried with offers so a recipient can decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBrief {
    /// The session's id.
    pub id: SessionId,
    /// Web or queue.
    pub mode: SessionMode,
    /// The customer's display name.
    pub customer_name: DisplayName,
}

/// An invitation without its recipient lists: what the session's agents
/// are told when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationSummary {
    /// The invitation's id.
    pub id: InvitationId,
    /// The session it invites into.
    pub session: SessionId,
    /// The agent who sent it.
    pub inviter: AgentRef,
    /// One agent or a portal.
    pub target: Target,
    /// Collaborate, or take the session over.
    pub kind: InvitationKind,
    /// The joining agent will be invisible to the customer.
    pub masked: bool,
    /// A note for the invitees only.
    pub comment: Option<Comment>,
    /// How many agents it was offered to.
    pub recipient_count: u32,
    /// Its state.
    pub status: InvitationStatus,
    /// The recipient who joined, once accepted.
    pub accepted_by: Option<AgentId>,
    /// Why it closed, if it closed without being accepted or declined.
    pub closed_reason: Option<WithdrawReason>,
    /// Its escalation: the portal, when, and (once done) from whom.
    pub escalation: Option<Escalation>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it expires if nobody accepts.
    pub expires_at: DateTime<Utc>,
}

impl From<&Invitation> for InvitationSummary {
    fn from(i: &Invitation) -> Self {
        Self {
            id: i.id.clone(),
            session: i.session.clone(),
            inviter: i.inviter.clone(),
            target: i.target.clone(),
            kind: i.kind,
            masked: i.masked,
            comment: i.comment.clone(),
            recipient_count: u32::try_from(i.recipients.len()).unwrap_or(u32::MAX),
            status: i.status,
            accepted_by: i.accepted_by.clone(),
            closed_reason: i.closed_reason,
            escalation: i.escalation.clone(),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// Something that happened to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A new invitation, for its recipients.
    InvitationOffered {
        /// The invitation, with its recipients.
        invitation: Invitation,
        /// The session it is for.
        session: SessionBrief,
    },
    /// A new invitation, for the session's agents.
    InvitationSent {
        /// The invitation.
        invitation: InvitationSummary,
    },
    /// These recipients' alerts go away.
    InvitationWithdrawn {
        /// Which invitation.
        invitation: InvitationId,
        /// Whose alerts.
        recipients: Vec<AgentId>,
        /// Why.
        reason: WithdrawReason,
        /// Who won it, when another recipient accepted: the losers' alerts
        /// say so instead of just vanishing.
        accepted_by: Option<AgentRef>,
    },
    /// A direct invitation went to a portal.
    InvitationEscalated {
        /// The invitation as it is now.
        invitation: InvitationSummary,
        /// The portal.
        portal: PortalId,
    },
    /// A recipient accepted.
    InvitationAccepted {
        /// The invitation as it is now.
        invitation: InvitationSummary,
    },
    /// A recipient declined.
    InvitationDeclined {
        /// The invitation as it is now (declined if everyone has).
        invitation: InvitationSummary,
        /// Who declined (with the name: the session's agents' race view
        /// says who said no).
        by: AgentRef,
    },
    /// Nobody accepted in time.
    InvitationExpired {
        /// The invitation as it is now.
        invitation: InvitationSummary,
    },
    /// Taken back, or closed because its recipients are gone or the session ended.
    InvitationCancelled {
        /// The invitation as it is now.
        invitation: InvitationSummary,
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
    /// An agent was masked or unmasked.
    ParticipantUpdated {
        /// Who, as they are now.
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
        /// Why.
        reason: EndReason,
    },
}
