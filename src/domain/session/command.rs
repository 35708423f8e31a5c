//! The changes someone may ask of a session, one struct each. Validated
//! text arrives already parsed; each struct's `apply` lives beside the
//! concept it changes (`invitation.rs`, `chat.rs`, `participants.rs`).

use super::chat::{Audience, Poster};
use super::invitation::{Comment, EscalateAfter, InvitationKind, Target};
use crate::domain::directory::AgentRef;
use crate::domain::id::{AgentId, InvitationId, MessageId};

/// A change someone asks of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Invite one agent or a portal.
    Invite(Invite),
    /// A recipient accepts.
    Accept(Accept),
    /// A recipient declines.
    Decline(Decline),
    /// A session agent takes an invitation back.
    Cancel(Cancel),
    /// An invitation's expiry timer fired.
    Expire(Expire),
    /// An invitation's escalation is due (its timer fired, or its agent
    /// declined or left).
    Escalate(Escalate),
    /// A recipient logged out: its alerts go away.
    RecipientGone(RecipientGone),
    /// Someone writes in the chat.
    Post(Post),
    /// An agent leaves.
    Leave(Leave),
    /// The lead, or the agent itself, masks or unmasks an agent.
    SetMasked(SetMasked),
    /// The lead ends the session.
    End(End),
    /// An administrator ends the session.
    AdminEnd(AdminEnd),
    /// An administrator's change cancels an invitation (its portal was deleted).
    AdminCancel(AdminCancel),
    /// The customer's client reconnected.
    CustomerReconnected(CustomerReconnected),
    /// The session's idle timer fired.
    CheckIdle(CheckIdle),
}

/// Invite one agent or a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Id for the new invitation (made with `InvitationId::within`).
    pub id: InvitationId,
    /// The inviting agent.
    pub inviter: AgentId,
    /// Whom.
    pub target: Target,
    /// Collaborate, or hand the session over (lead only, never masked).
    pub kind: InvitationKind,
    /// The joining agent will be invisible to the customer.
    pub masked: bool,
    /// A note for the invitees only.
    pub comment: Option<Comment>,
    /// Agents logged in for the target now (the direct target, or the
    /// portal's agents). The rule removes the inviter and participants.
    pub online: Vec<AgentId>,
    /// Escalate to a portal if the agent does not take it in time.
    pub escalate: Option<EscalateAfter>,
    /// The direct target is at its session limit now.
    pub target_busy: bool,
    /// With `escalate`, when the target is not logged in or busy: the
    /// portal's agents logged in and below their session limit now.
    pub escalation_online: Vec<AgentId>,
}

/// An invitation's escalation is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalate {
    /// Which invitation.
    pub invitation: InvitationId,
    /// Its portal's agents logged in and below their session limit now.
    pub online: Vec<AgentId>,
}

/// A recipient accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// Which invitation.
    pub invitation: InvitationId,
    /// Who accepts.
    pub agent: AgentRef,
    /// How many sessions the agent is active in now.
    pub active_sessions: u32,
    /// The fencing token of the agent's won claim.
    pub fence: u64,
}

/// A recipient declines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    /// Which invitation.
    pub invitation: InvitationId,
    /// Who declines.
    pub agent: AgentRef,
}

/// A session agent takes an invitation back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// Which invitation.
    pub invitation: InvitationId,
    /// Who cancels.
    pub by: AgentId,
}

/// An invitation's expiry timer fired (maybe late, maybe twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expire {
    /// Which invitation.
    pub invitation: InvitationId,
}

/// A recipient logged out: its alerts go away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientGone {
    /// Who.
    pub agent: AgentId,
}

/// Someone writes in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// Id for the new message.
    pub id: MessageId,
    /// Who writes.
    pub author: Poster,
    /// What (length-checked by the rule).
    pub text: String,
    /// Who may read it (customers always write to everyone).
    pub audience: Audience,
}

/// An agent leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    /// Who.
    pub agent: AgentId,
    /// An administrator takes the agent out (its deletion), not the agent
    /// itself: the audit trail names the administrator.
    pub by_admin: bool,
}

/// The lead, or the agent itself, masks or unmasks an agent in the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMasked {
    /// Whose mask.
    pub agent: AgentId,
    /// Who asks.
    pub by: AgentId,
    /// Hidden from the customer from now on, or visible.
    pub masked: bool,
}

/// The lead ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Who asks.
    pub by: AgentId,
}

/// An administrator ends the session (its account's admin, or the
/// account's deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEnd;

/// An administrator's change cancels an invitation: its portal was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCancel {
    /// Which invitation.
    pub invitation: InvitationId,
}

/// The customer's client reconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerReconnected {
    /// The generation the client reconnected for.
    pub generation: u32,
    /// Whether it shares its screen again.
    pub screen_shared: bool,
}

/// The session's idle timer fired: end it if nobody did anything for the
/// policy's idle time, or move the timer to when that will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckIdle;

macro_rules! into_command {
    ($($variant:ident),*) => {$(
        impl From<$variant> for Command {
            fn from(c: $variant) -> Self {
                Command::$variant(c)
            }
        }
    )*};
}

into_command!(
    Invite,
    Accept,
    Decline,
    Cancel,
    Expire,
    Escalate,
    RecipientGone,
    Post,
    Leave,
    SetMasked,
    End,
    AdminEnd,
    AdminCancel,
    CustomerReconnected,
    CheckIdle
);
