//! What earlier releases stored (wire formats 1 and 2, and sessions of
//! format 3) or sent on the bus (the previous release's session events), and
//! how it reads today. Only the shapes that changed are here; the codec
//! decodes older bodies into them and converts.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::id::InvitationId;
use crate::domain::session::{
    Audience, Author, Comment, Counters, Customer, EndReason, Ending, Event, Invitation,
    InvitationKind, InvitationStatus, InvitationSummary, Participant, SessionBrief, Target,
    WithdrawReason,
};
use crate::domain::{
    Account, AccountId, AgentId, Message, MessageId, Policy, PortalId, Session, SessionId,
    SessionMode, visibility,
};
use crate::domain::{AgentRef, DisplayName};

/// A v1 policy: the seed's switches and limits, without the v2 bounds.
#[derive(Deserialize)]
pub(super) struct PolicyV1 {
    collaboration: bool,
    portal_invitations: bool,
    masking: bool,
    comments: bool,
    session_modes: Vec<SessionMode>,
    invitation_ttl_secs: u32,
    max_agents_per_session: u32,
    max_active_sessions_per_agent: u32,
}

/// A v1 account.
#[derive(Deserialize)]
pub(super) struct AccountV1 {
    id: AccountId,
    name: DisplayName,
    policy: PolicyV1,
}

impl From<AccountV1> for Account {
    fn from(a: AccountV1) -> Self {
        let p = a.policy;
        Account {
            id: a.id,
            name: a.name,
            policy: Policy {
                collaboration: p.collaboration,
                portal_invitations: p.portal_invitations,
                masking: p.masking,
                comments: p.comments,
                session_modes: p.session_modes,
                invitation_ttl_secs: p.invitation_ttl_secs,
                max_agents_per_session: p.max_agents_per_session,
                max_active_sessions_per_agent: p.max_active_sessions_per_agent,
                ..Policy::default()
            },
        }
    }
}

/// A v1 chat message: one sequence for everyone.
#[derive(Deserialize)]
pub(super) struct MessageV1 {
    id: MessageId,
    seq: u64,
    author: Author,
    text: String,
    audience: Audience,
    sent_at: DateTime<Utc>,
}

impl From<MessageV1> for Message {
    fn from(m: MessageV1) -> Self {
        let mut message = Message {
            id: m.id,
            seq: m.seq,
            customer_seq: None,
            author: m.author,
            text: m.text,
            audience: m.audience,
            sent_at: m.sent_at,
        };
        // v1 showed customers the session's own numbering; keep it for the
        // messages it already showed them.
        if visibility::customer_may_read(&message) {
            message.customer_seq = Some(message.seq);
        }
        message
    }
}

#[derive(Deserialize, PartialEq)]
enum SessionStatusV1 {
    Active,
    Ended,
}

/// A v1 session: every invitation it ever sent, in one state.
#[derive(Deserialize)]
pub(super) struct SessionV1 {
    id: SessionId,
    account: AccountId,
    mode: SessionMode,
    status: SessionStatusV1,
    created_at: DateTime<Utc>,
    lead: Option<AgentId>,
    participants: Vec<Participant>,
    customer: Customer,
    invitations: Vec<InvitationV2>,
    message_count: u64,
}

impl From<SessionV1> for Session {
    /// Keeps the open invitations as hot state; closed ones are dropped (v1
    /// kept no separate history to move them to). Customer numbering goes
    /// on after the session's own, which v1 showed customers.
    fn from(s: SessionV1) -> Self {
        let invitations = s
            .invitations
            .into_iter()
            .map(Invitation::from)
            .filter(Invitation::is_pending)
            .collect::<Vec<_>>();
        let ended = (s.status == SessionStatusV1::Ended).then_some(Ending {
            at: s.created_at,
            reason: EndReason::EndedByLead,
        });
        Session {
            id: s.id,
            account: s.account,
            mode: s.mode,
            created_at: s.created_at,
            ended,
            lead: s.lead,
            participants: s.participants,
            customer: s.customer,
            counters: Counters {
                messages: s.message_count,
                customer_messages: s.message_count,
                invitations: invitations.len() as u64,
                ..Counters::default()
            },
            invitations,
            last_activity: s.created_at,
        }
    }
}

/// A v1 or v2 invitation: every invitation was a collaboration (no `kind`).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct InvitationV2 {
    pub(super) id: InvitationId,
    pub(super) session: SessionId,
    pub(super) inviter: AgentRef,
    pub(super) target: Target,
    pub(super) masked: bool,
    pub(super) comment: Option<Comment>,
    pub(super) recipients: Vec<AgentId>,
    pub(super) declined_by: Vec<AgentId>,
    pub(super) unavailable: Vec<AgentId>,
    pub(super) status: InvitationStatus,
    pub(super) accepted_by: Option<AgentId>,
    pub(super) fence: Option<u64>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) closed_reason: Option<WithdrawReason>,
}

impl From<InvitationV2> for Invitation {
    fn from(i: InvitationV2) -> Self {
        Invitation {
            id: i.id,
            session: i.session,
            inviter: i.inviter,
            target: i.target,
            masked: i.masked,
            comment: i.comment,
            recipients: i.recipients,
            declined_by: i.declined_by,
            unavailable: i.unavailable,
            status: i.status,
            kind: InvitationKind::Collaborate,
            accepted_by: i.accepted_by,
            fence: i.fence,
            created_at: i.created_at,
            expires_at: i.expires_at,
            closed_reason: i.closed_reason,
            escalation: None,
        }
    }
}

/// A v2 session: the bounded hot state, with invitations of v2's shape.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct SessionV2 {
    pub(super) id: SessionId,
    pub(super) account: AccountId,
    pub(super) mode: SessionMode,
    pub(super) created_at: DateTime<Utc>,
    pub(super) ended: Option<Ending>,
    pub(super) lead: Option<AgentId>,
    pub(super) participants: Vec<Participant>,
    pub(super) customer: Customer,
    pub(super) invitations: Vec<InvitationV2>,
    pub(super) counters: CountersV2,
    pub(super) last_activity: DateTime<Utc>,
}

/// v2's running counts: no mask changes (agents were masked only when
/// they joined).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct CountersV2 {
    pub(super) messages: u64,
    pub(super) customer_messages: u64,
    pub(super) invitations: u64,
}

impl From<SessionV2> for Session {
    fn from(s: SessionV2) -> Self {
        Session {
            id: s.id,
            account: s.account,
            mode: s.mode,
            created_at: s.created_at,
            ended: s.ended,
            lead: s.lead,
            participants: s.participants,
            customer: s.customer,
            invitations: s.invitations.into_iter().map(Invitation::from).collect(),
            counters: CountersV3 {
                messages: s.counters.messages,
                customer_messages: s.counters.customer_messages,
                invitations: s.counters.invitations,
                mask_changes: 0,
            }
            .into(),
            last_activity: s.last_activity,
        }
    }
}

/// A v3 session: today's, without each side's budgets.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct SessionV3 {
    pub(super) id: SessionId,
    pub(super) account: AccountId,
    pub(super) mode: SessionMode,
    pub(super) created_at: DateTime<Utc>,
    pub(super) ended: Option<Ending>,
    pub(super) lead: Option<AgentId>,
    pub(super) participants: Vec<Participant>,
    pub(super) customer: Customer,
    pub(super) invitations: Vec<Invitation>,
    pub(super) counters: CountersV3,
    pub(super) last_activity: DateTime<Utc>,
}

/// v3's running counts: one message budget and one mask budget for the
/// whole session.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct CountersV3 {
    pub(super) messages: u64,
    pub(super) customer_messages: u64,
    pub(super) invitations: u64,
    pub(super) mask_changes: u64,
}

impl From<CountersV3> for Counters {
    /// Who wrote a v3 session's messages was not counted. Every message the
    /// customer can read is taken for the customer's (at least as many as
    /// it wrote), so that each side stays within its budget; and every mask
    /// change for the lead's.
    fn from(c: CountersV3) -> Self {
        Counters {
            messages: c.messages,
            customer_messages: c.customer_messages,
            invitations: c.invitations,
            mask_changes: c.mask_changes,
            customer_posts: c.customer_messages.min(c.messages),
            collaborator_mask_changes: 0,
        }
    }
}

impl From<SessionV3> for Session {
    fn from(s: SessionV3) -> Self {
        Session {
            id: s.id,
            account: s.account,
            mode: s.mode,
            created_at: s.created_at,
            ended: s.ended,
            lead: s.lead,
            participants: s.participants,
            customer: s.customer,
            invitations: s.invitations,
            counters: s.counters.into(),
            last_activity: s.last_activity,
        }
    }
}

/// A session event as the previous release sent it on the bus (format 3
/// before this release): withdrawals did not name the winner, declines
/// named the decliner by id only. Every other variant is today's.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum EventV3 {
    InvitationOffered {
        invitation: Invitation,
        session: SessionBrief,
    },
    InvitationSent {
        invitation: InvitationSummary,
    },
    InvitationWithdrawn {
        invitation: InvitationId,
        recipients: Vec<AgentId>,
        reason: WithdrawReason,
    },
    InvitationEscalated {
        invitation: InvitationSummary,
        portal: PortalId,
    },
    InvitationAccepted {
        invitation: InvitationSummary,
    },
    InvitationDeclined {
        invitation: InvitationSummary,
        by: AgentId,
    },
    InvitationExpired {
        invitation: InvitationSummary,
    },
    InvitationCancelled {
        invitation: InvitationSummary,
        reason: WithdrawReason,
    },
    ParticipantJoined {
        participant: Participant,
    },
    ParticipantLeft {
        participant: Participant,
    },
    ParticipantUpdated {
        participant: Participant,
    },
    LeadChanged {
        lead: AgentRef,
    },
    MessagePosted {
        message: Message,
    },
    CustomerReconnectRequired {
        generation: u32,
    },
    CustomerReconnected {
        generation: u32,
        screen_shared: bool,
    },
    SessionEnded {
        at: DateTime<Utc>,
        reason: EndReason,
    },
}

impl From<EventV3> for Event {
    fn from(e: EventV3) -> Self {
        match e {
            EventV3::InvitationOffered {
                invitation,
                session,
            } => Event::InvitationOffered {
                invitation,
                session,
            },
            EventV3::InvitationSent { invitation } => Event::InvitationSent { invitation },
            // The winner's name is unknown: the loser's alert still goes.
            EventV3::InvitationWithdrawn {
                invitation,
                recipients,
                reason,
            } => Event::InvitationWithdrawn {
                invitation,
                recipients,
                reason,
                accepted_by: None,
            },
            EventV3::InvitationEscalated { invitation, portal } => {
                Event::InvitationEscalated { invitation, portal }
            }
            EventV3::InvitationAccepted { invitation } => Event::InvitationAccepted { invitation },
            // The decliner's name is unknown: its id stands in.
            EventV3::InvitationDeclined { invitation, by } => Event::InvitationDeclined {
                invitation,
                by: AgentRef {
                    name: DisplayName::of_id(by.as_str()),
                    id: by,
                },
            },
            EventV3::InvitationExpired { invitation } => Event::InvitationExpired { invitation },
            EventV3::InvitationCancelled { invitation, reason } => {
                Event::InvitationCancelled { invitation, reason }
            }
            EventV3::ParticipantJoined { participant } => Event::ParticipantJoined { participant },
            EventV3::ParticipantLeft { participant } => Event::ParticipantLeft { participant },
            EventV3::ParticipantUpdated { participant } => {
                Event::ParticipantUpdated { participant }
            }
            EventV3::LeadChanged { lead } => Event::LeadChanged { lead },
            EventV3::MessagePosted { message } => Event::MessagePosted { message },
            EventV3::CustomerReconnectRequired { generation } => {
                Event::CustomerReconnectRequired { generation }
            }
            EventV3::CustomerReconnected {
                generation,
                screen_shared,
            } => Event::CustomerReconnected {
                generation,
                screen_shared,
            },
            EventV3::SessionEnded { at, reason } => Event::SessionEnded { at, reason },
        }
    }
}
