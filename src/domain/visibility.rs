//! The visibility gate: the one place that decides what each viewer may see
//! of a session. Every byte that leaves the server for a customer — stream
//! events, REST answers, chat history — is built here. Masked agents, their
//! messages, `agents` messages, comments, invitations and agent ids never
//! reach a customer.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::directory::AgentRef;
use super::id::{AgentId, InvitationId, SessionId};
use super::policy::SessionMode;
use super::session::{
    Audience, Author, Event, Invitation, InvitationStatus, Message, Participant, Role, Session,
    SessionStatus, Target, WithdrawReason,
};

/// Who is looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    /// The session's customer.
    Customer,
    /// An agent in the session.
    Participant(&'a AgentId),
    /// An agent offered one of the session's invitations.
    Recipient(&'a AgentId),
    /// Anyone else: sees nothing.
    Other,
}

/// One event as a client receives it: the SSE `event:` name and its `data:`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    /// Event type, e.g. `invitation_offered`.
    pub name: &'static str,
    /// The JSON payload.
    pub data: Value,
}

/// An invitation as agents see it.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationView {
    /// The invitation's id.
    pub id: InvitationId,
    /// The session it invites into.
    pub session: SessionId,
    /// Who sent it.
    pub inviter: AgentRef,
    /// `{"agent": id}` or `{"portal": id}`.
    pub target: Target,
    /// The joining agent will be masked.
    pub masked: bool,
    /// The inviter's note for the invitees.
    pub comment: Option<String>,
    /// Whom it was offered to.
    pub recipients: Vec<AgentId>,
    /// Who declined.
    pub declined_by: Vec<AgentId>,
    /// Its state.
    pub status: InvitationStatus,
    /// Who joined through it.
    pub accepted_by: Option<AgentId>,
    /// Why it closed, when cancelled or expired.
    pub closed_reason: Option<WithdrawReason>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it runs out.
    pub expires_at: DateTime<Utc>,
}

impl From<&Invitation> for InvitationView {
    fn from(i: &Invitation) -> Self {
        Self {
            id: i.id.clone(),
            session: i.session.clone(),
            inviter: i.inviter.clone(),
            target: i.target.clone(),
            masked: i.masked,
            comment: i.comment.clone(),
            recipients: i.recipients.clone(),
            declined_by: i.declined_by.clone(),
            status: i.status,
            accepted_by: i.accepted_by.clone(),
            closed_reason: i.closed_reason,
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// What a recipient's alert shows: the invitation plus who the customer is.
#[derive(Debug, Clone, Serialize)]
pub struct OfferView {
    /// The invitation.
    #[serde(flatten)]
    pub invitation: InvitationView,
    /// The customer, by name.
    pub customer: NameView,
    /// The session's mode.
    pub mode: SessionMode,
}

/// Just a display name.
#[derive(Debug, Clone, Serialize)]
pub struct NameView {
    /// The name.
    pub name: String,
}

/// The session as its agents see it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSessionView {
    /// The session's id.
    pub id: SessionId,
    /// Web or queue.
    pub mode: SessionMode,
    /// Active or ended.
    pub status: SessionStatus,
    /// The lead's id.
    pub lead: Option<AgentId>,
    /// Agents in the session.
    pub participants: Vec<ParticipantView>,
    /// The customer's client state.
    pub customer: CustomerStateView,
    /// Open invitations.
    pub invitations: Vec<InvitationView>,
    /// When it started.
    pub created_at: DateTime<Utc>,
}

/// A participant as agents see it.
#[derive(Debug, Clone, Serialize)]
pub struct ParticipantView {
    /// Who.
    pub agent: AgentRef,
    /// Lead or collaborator.
    pub role: Role,
    /// Hidden from the customer.
    pub masked: bool,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

impl From<&Participant> for ParticipantView {
    fn from(p: &Participant) -> Self {
        Self {
            agent: p.agent.clone(),
            role: p.role,
            masked: p.masked,
            joined_at: p.joined_at,
        }
    }
}

/// The customer's client state, for agents.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerStateView {
    /// Display name.
    pub name: String,
    /// Client generation.
    pub generation: u32,
    /// Must re-run the download.
    pub reconnect_required: bool,
    /// Shares its screen.
    pub screen_shared: bool,
}

/// The session as its customer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerSessionView {
    /// The session's id.
    pub id: SessionId,
    /// Active or ended.
    pub status: SessionStatus,
    /// Unmasked agents, by name only.
    pub agents: Vec<NameView>,
    /// Client generation.
    pub generation: u32,
    /// Must re-run the download (and re-share the screen).
    pub reconnect_required: bool,
}

/// The agents' view of a session.
pub fn agent_session_view(s: &Session) -> AgentSessionView {
    AgentSessionView {
        id: s.id.clone(),
        mode: s.mode,
        status: s.status,
        lead: s.lead.clone(),
        participants: s.participants.iter().map(ParticipantView::from).collect(),
        customer: CustomerStateView {
            name: s.customer.name.clone(),
            generation: s.customer.generation,
            reconnect_required: s.customer.reconnect_required,
            screen_shared: s.customer.screen_shared,
        },
        invitations: s.pending_invitations().map(InvitationView::from).collect(),
        created_at: s.created_at,
    }
}

/// The customer's view of a session.
pub fn customer_session_view(s: &Session) -> CustomerSessionView {
    CustomerSessionView {
        id: s.id.clone(),
        status: s.status,
        agents: s
            .participants
            .iter()
            .filter(|p| !p.masked)
            .map(|p| NameView {
                name: p.agent.name.clone(),
            })
            .collect(),
        generation: s.customer.generation,
        reconnect_required: s.customer.reconnect_required,
    }
}

/// A recipient's alert for `invitation`.
pub fn offer_view(s: &Session, invitation: &Invitation) -> OfferView {
    OfferView {
        invitation: InvitationView::from(invitation),
        customer: NameView {
            name: s.customer.name.clone(),
        },
        mode: s.mode,
    }
}

/// A chat message as `viewer` may see it, or `None` if it may not.
pub fn message_view(viewer: &Viewer<'_>, m: &Message) -> Option<Value> {
    match viewer {
        Viewer::Participant(_) => {
            let author = match &m.author {
                Author::Agent { agent, masked } => {
                    json!({"kind": "agent", "id": agent.id, "name": agent.name, "masked": masked})
                }
                Author::Customer { name } => json!({"kind": "customer", "name": name}),
            };
            Some(json!({
                "id": m.id, "seq": m.seq, "author": author, "text": m.text,
                "audience": m.audience, "sent_at": m.sent_at,
            }))
        }
        Viewer::Customer => {
            if m.audience != Audience::Everyone {
                return None;
            }
            let author = match &m.author {
                Author::Agent { masked: true, .. } => return None,
                Author::Agent {
                    agent,
                    masked: false,
                } => json!({"kind": "agent", "name": agent.name}),
                Author::Customer { name } => json!({"kind": "customer", "name": name}),
            };
            Some(json!({
                "id": m.id, "seq": m.seq, "author": author, "text": m.text, "sent_at": m.sent_at,
            }))
        }
        Viewer::Recipient(_) | Viewer::Other => None,
    }
}

/// What `viewer` may see of `event` in session `session`, if anything.
pub fn view(viewer: &Viewer<'_>, session: &SessionId, event: &Event) -> Option<ClientEvent> {
    match viewer {
        Viewer::Customer => customer_view(event),
        Viewer::Participant(_) => participant_view(viewer, session, event),
        Viewer::Recipient(agent) => recipient_view(agent, event),
        Viewer::Other => None,
    }
}

fn ev(name: &'static str, data: Value) -> Option<ClientEvent> {
    Some(ClientEvent { name, data })
}

fn customer_view(event: &Event) -> Option<ClientEvent> {
    match event {
        Event::MessagePosted { message } => message_view(&Viewer::Customer, message)
            .and_then(|m| ev("message", json!({"message": m}))),
        Event::ParticipantJoined { participant } if !participant.masked => ev(
            "agent_joined",
            json!({"agent": {"name": participant.agent.name}}),
        ),
        Event::ParticipantLeft { participant } if !participant.masked => ev(
            "agent_left",
            json!({"agent": {"name": participant.agent.name}}),
        ),
        Event::CustomerReconnectRequired { generation } => ev(
            "reconnect_required",
            json!({"generation": generation, "reshare_screen": true}),
        ),
        Event::SessionEnded { at } => ev("session_ended", json!({"at": at})),
        _ => None,
    }
}

fn recipient_view(agent: &AgentId, event: &Event) -> Option<ClientEvent> {
    match event {
        Event::InvitationOffered {
            invitation,
            session,
        } if invitation.recipients.contains(agent) => {
            let offer = OfferView {
                invitation: InvitationView::from(invitation),
                customer: NameView {
                    name: session.customer_name.clone(),
                },
                mode: session.mode,
            };
            ev("invitation_offered", serde_json::to_value(offer).ok()?)
        }
        Event::InvitationWithdrawn {
            invitation,
            recipients,
            reason,
        } if recipients.contains(agent) => ev(
            "invitation_withdrawn",
            json!({"invitation": invitation.id, "session": invitation.session, "reason": reason}),
        ),
        _ => None,
    }
}

fn participant_view(
    viewer: &Viewer<'_>,
    session: &SessionId,
    event: &Event,
) -> Option<ClientEvent> {
    let inv = |i: &Invitation| serde_json::to_value(InvitationView::from(i)).unwrap_or(Value::Null);
    let (name, data) = match event {
        Event::InvitationOffered { invitation, .. } => (
            "invitation_sent",
            json!({"session": session, "invitation": inv(invitation)}),
        ),
        // The session's agents learn the outcome from accepted / cancelled /
        // expired; the per-recipient withdrawal is for the recipients.
        Event::InvitationWithdrawn { .. } => return None,
        Event::InvitationAccepted { invitation } => (
            "invitation_accepted",
            json!({"session": session, "invitation": inv(invitation), "by": invitation.accepted_by}),
        ),
        Event::InvitationDeclined { invitation, by } => (
            "invitation_declined",
            json!({"session": session, "invitation": inv(invitation), "by": by}),
        ),
        Event::InvitationExpired { invitation } => (
            "invitation_expired",
            json!({"session": session, "invitation": inv(invitation)}),
        ),
        Event::InvitationCancelled { invitation, reason } => (
            "invitation_cancelled",
            json!({"session": session, "invitation": inv(invitation), "reason": reason}),
        ),
        Event::ParticipantJoined { participant } => (
            "participant_joined",
            json!({"session": session, "participant": ParticipantView::from(participant)}),
        ),
        Event::ParticipantLeft { participant } => (
            "participant_left",
            json!({"session": session, "participant": ParticipantView::from(participant)}),
        ),
        Event::LeadChanged { lead } => ("lead_changed", json!({"session": session, "lead": lead})),
        Event::MessagePosted { message } => (
            "message",
            json!({"session": session, "message": message_view(viewer, message)}),
        ),
        Event::CustomerReconnectRequired { generation } => (
            "customer_reconnect_required",
            json!({"session": session, "generation": generation}),
        ),
        Event::CustomerReconnected {
            generation,
            screen_shared,
        } => (
            "customer_reconnected",
            json!({"session": session, "generation": generation, "screen_shared": screen_shared}),
        ),
        Event::SessionEnded { at } => ("session_ended", json!({"session": session, "at": at})),
    };
    Some(ClientEvent { name, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Policy, SessionMode};
    use crate::domain::session::{Command, Session, Target, WithdrawReason};
    use crate::domain::{AccountId, AgentRef, InvitationId, PortalId};

    fn id(s: &str) -> AgentId {
        AgentId::parse(s).unwrap()
    }

    /// PortalActor views an offer once per node for the first local
    /// recipient and hands the result to every other one: that is only
    /// right because a recipient's view does not depend on who looks.
    #[test]
    fn every_recipient_sees_the_same_offer_and_withdrawal() {
        let now = chrono::Utc::now();
        let policy = Policy::default();
        let lead = AgentRef {
            id: id("lead"),
            name: "Lead".into(),
        };
        let session = Session::create(
            SessionId::random(),
            AccountId::parse("acme").unwrap(),
            SessionMode::Web,
            lead,
            "Carl".into(),
            &policy,
            now,
        )
        .unwrap();
        let invite = Command::Invite {
            id: InvitationId::random(),
            inviter: id("lead"),
            target: Target::Portal(PortalId::parse("support").unwrap()),
            masked: true,
            comment: Some("note".into()),
            online: vec![id("ann"), id("bob"), id("cid")],
        };
        let outcome = session.apply(invite, &policy, now).unwrap();
        let offered = &outcome.events[0];
        let Event::InvitationOffered { invitation, .. } = offered else {
            panic!("an offer")
        };
        let withdrawn = Event::InvitationWithdrawn {
            invitation: invitation.clone(),
            recipients: vec![id("ann"), id("bob"), id("cid")],
            reason: WithdrawReason::AcceptedByOther,
        };
        for event in [offered, &withdrawn] {
            let views: Vec<_> = ["ann", "bob", "cid"]
                .iter()
                .map(|a| view(&Viewer::Recipient(&id(a)), &session.id, event))
                .collect();
            assert!(views[0].is_some());
            assert!(views.iter().all(|v| v == &views[0]), "{views:?}");
            assert_eq!(
                view(&Viewer::Recipient(&id("zed")), &session.id, event),
                None
            );
        }
    }
}
