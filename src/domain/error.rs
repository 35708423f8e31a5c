//! Why a command was refused. Each variant maps to one stable API code.

/// A rule of the domain that a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The account's policy does not allow this feature.
    #[error("this account's policy does not allow {0}")]
    FeatureDisabled(&'static str),
    /// The invited agent is not logged in.
    #[error("the agent is not logged in")]
    AgentUnavailable,
    /// The agent is already in the session.
    #[error("the agent is already a participant of this session")]
    AlreadyParticipant,
    /// Nobody who could be invited is logged into the portal.
    #[error("no other agent is logged into this portal")]
    NoAgentsOnline,
    /// The session has reached the policy's agent limit.
    #[error("the session already has the most agents the policy allows")]
    SessionFull,
    /// The session is over.
    #[error("the session has ended")]
    SessionEnded,
    /// The caller was not offered this invitation.
    #[error("this invitation was not offered to you")]
    NotARecipient,
    /// Another agent accepted first.
    #[error("another agent accepted this invitation first")]
    InvitationTaken,
    /// The invitation is no longer pending.
    #[error("the invitation is no longer open")]
    InvitationClosed,
    /// The agent is in as many sessions as the policy allows.
    #[error("the agent is already in the most sessions the policy allows")]
    AgentBusy,
    /// Only the session's agents may do this.
    #[error("only the session's agents may do this")]
    NotParticipant,
    /// The accepting agent is no longer a member of a portal it needs.
    #[error("{0}")]
    NotAMember(&'static str),
    /// Only the session's lead may do this.
    #[error("only the session's lead may do this")]
    NotLead,
    /// No such invitation in this session.
    #[error("no such invitation")]
    InvitationNotFound,
    /// The agent named is not in this session.
    #[error("no such participant in this session")]
    ParticipantNotFound,
    /// A bound of the policy is reached (the name of the policy field).
    #[error("the policy's {0} is reached")]
    LimitReached(&'static str),
    /// The caller's side (the lead, or the collaborators masking
    /// themselves) masked and unmasked as often as allowed.
    #[error(
        "the lead, and the collaborators of themselves, may each mask or unmask at most 1000 times per session"
    )]
    TooManyMaskChanges,
    /// The client's view is out of date (e.g. an old customer generation).
    #[error("{0}")]
    Conflict(String),
    /// The command is malformed in a way only the domain can see.
    #[error("{0}")]
    Invalid(String),
}
