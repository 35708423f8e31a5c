//! The visibility gate: the one place that decides what each viewer may see
//! of a session. Every byte that leaves the server for a customer — stream
//! events, REST answers, chat history — is built here. Masked agents, their
//! messages, `agents` messages, comments, invitations and agent ids never
//! reach a customer.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::directory::{AgentRef, DisplayName};
use super::id::{AgentId, InvitationId, SessionId};
use super::policy::SessionMode;
use super::session::{
    Audience, Author, Comment, EndReason, Escalation, Event, Invitation, InvitationKind,
    InvitationStatus, InvitationSummary, Message, Participant, Role, Session, SessionStatus,
    Target, WithdrawReason,
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

/// An invitation as the session's agents see it in the session view and
/// in the answers to their own requests: with its recipients.
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
    /// `collaborate` or `transfer`.
    pub kind: InvitationKind,
    /// The joining agent will be masked.
    pub masked: bool,
    /// The inviter's note for the invitees.
    pub comment: Option<Comment>,
    /// Whom it was offered to.
    pub recipients: Vec<AgentId>,
    /// How many it was offered to.
    pub recipient_count: usize,
    /// Who declined.
    pub declined_by: Vec<AgentId>,
    /// Its state.
    pub status: InvitationStatus,
    /// Who joined through it.
    pub accepted_by: Option<AgentId>,
    /// Why it closed, when cancelled or expired.
    pub closed_reason: Option<WithdrawReason>,
    /// Its escalation, if it was sent with one.
    pub escalation: Option<Escalation>,
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
            kind: i.kind,
            masked: i.masked,
            comment: i.comment.clone(),
            recipients: i.recipients.clone(),
            recipient_count: i.recipients.len(),
            declined_by: i.declined_by.clone(),
            status: i.status,
            accepted_by: i.accepted_by.clone(),
            closed_reason: i.closed_reason,
            escalation: i.escalation.clone(),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// What a recipient's alert shows: the invitation (with how many it was
/// offered to, not to whom) plus who the customer is.
#[derive(Debug, Clone, Serialize)]
pub struct OfferView {
    /// The invitation.
    #[serde(flatten)]
    pub invitation: InvitationSummary,
    /// The customer, by name.
    pub customer: NameView,
    /// The session's mode.
    pub mode: SessionMode,
}

/// Just a display name.
#[derive(Debug, Clone, Serialize)]
pub struct NameView {
    /// The name.
    pub name: DisplayName,
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
    /// Why it ended, once it has.
    pub ended_reason: Option<EndReason>,
    /// The lead's id.
    pub lead: Option<AgentId>,
    /// Agents in the session.
    pub participants: Vec<ParticipantView>,
    /// The customer's client state.
    pub customer: CustomerStateView,
    /// Open invitations.
    pub invitations: Vec<InvitationView>,
    /// Chat messages so far.
    pub message_count: u64,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When an agent last did something in it.
    pub last_activity: DateTime<Utc>,
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
    pub name: DisplayName,
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
        status: s.status(),
        ended_reason: s.ended.map(|e| e.reason),
        lead: s.lead.clone(),
        participants: s.participants.iter().map(ParticipantView::from).collect(),
        customer: CustomerStateView {
            name: s.customer.name.clone(),
            generation: s.customer.generation,
            reconnect_required: s.customer.reconnect_required,
            screen_shared: s.customer.screen_shared,
        },
        invitations: s.pending_invitations().map(InvitationView::from).collect(),
        message_count: s.counters.messages,
        created_at: s.created_at,
        last_activity: s.last_activity,
    }
}

/// The customer's view of a session.
pub fn customer_session_view(s: &Session) -> CustomerSessionView {
    CustomerSessionView {
        id: s.id.clone(),
        status: s.status(),
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
        invitation: InvitationSummary::from(invitation),
        customer: NameView {
            name: s.customer.name.clone(),
        },
        mode: s.mode,
    }
}

/// Whether the customer may read `m` at all: written to everyone, and not
/// by an agent who was masked when it wrote it. The chat numbers such
/// messages in the customer's own sequence.
pub fn customer_may_read(m: &Message) -> bool {
    m.audience == Audience::Everyone && !matches!(m.author, Author::Agent { masked: true, .. })
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
            if !customer_may_read(m) {
                return None;
            }
            // Numbered in the customer's own sequence: `seq` must not
            // reveal how many messages the customer does not see.
            let seq = m.customer_seq?;
            let author = match &m.author {
                Author::Agent { masked: true, .. } => return None,
                Author::Agent {
                    agent,
                    masked: false,
                } => json!({"kind": "agent", "name": agent.name}),
                Author::Customer { name } => json!({"kind": "customer", "name": name}),
            };
            Some(json!({
                "id": m.id, "seq": seq, "author": author, "text": m.text, "sent_at": m.sent_at,
            }))
        }
        Viewer::Recipient(_) | Viewer::Other => None,
    }
}

/// Which kinds of viewers see anything of an event — without building
/// what they see: who it must be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audiences {
    /// The session's agents.
    pub participants: bool,
    /// The session's customer.
    pub customer: bool,
    /// An invitation's recipients.
    pub recipients: bool,
}

/// Who sees anything of `event`; agrees with [`view`] (a unit test checks).
pub fn audiences(event: &Event) -> Audiences {
    let customer = match event {
        Event::MessagePosted { message } => customer_may_read(message),
        Event::ParticipantJoined { participant } | Event::ParticipantLeft { participant } => {
            !participant.masked
        }
        // Unmasked: the agent appears; masked: it goes, as if it left.
        Event::ParticipantUpdated { .. } => true,
        Event::CustomerReconnectRequired { .. } | Event::SessionEnded { .. } => true,
        _ => false,
    };
    let recipients = matches!(
        event,
        Event::InvitationOffered { .. } | Event::InvitationWithdrawn { .. }
    );
    Audiences {
        participants: !recipients,
        customer,
        recipients,
    }
}

/// What `viewer` may see of `event` in session `session`, if anything.
pub fn view(viewer: &Viewer<'_>, session: &SessionId, event: &Event) -> Option<ClientEvent> {
    match viewer {
        Viewer::Customer => customer_view(event),
        Viewer::Participant(_) => participant_view(viewer, session, event),
        Viewer::Recipient(agent) => recipient_view(agent, session, event),
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
        Event::ParticipantUpdated { participant } => ev(
            if participant.masked {
                "agent_left"
            } else {
                "agent_joined"
            },
            json!({"agent": {"name": participant.agent.name}}),
        ),
        Event::CustomerReconnectRequired { generation } => ev(
            "reconnect_required",
            json!({"generation": generation, "reshare_screen": true}),
        ),
        Event::SessionEnded { at, reason } => {
            ev("session_ended", json!({"at": at, "reason": reason}))
        }
        _ => None,
    }
}

fn recipient_view(agent: &AgentId, session: &SessionId, event: &Event) -> Option<ClientEvent> {
    match event {
        Event::InvitationOffered {
            invitation,
            session: brief,
        } if invitation.recipients.contains(agent) => {
            let offer = OfferView {
                invitation: InvitationSummary::from(invitation),
                customer: NameView {
                    name: brief.customer_name.clone(),
                },
                mode: brief.mode,
            };
            ev("invitation_offered", serde_json::to_value(offer).ok()?)
        }
        Event::InvitationWithdrawn {
            invitation,
            recipients,
            reason,
            accepted_by,
        } if recipients.contains(agent) => {
            let mut data = json!({"invitation": invitation, "session": session, "reason": reason});
            // A loser is told who won (an agent like itself: no customer
            // ever sees this).
            if let (Some(winner), Some(map)) = (accepted_by, data.as_object_mut()) {
                map.insert("accepted_by".into(), json!(winner));
            }
            ev("invitation_withdrawn", data)
        }
        _ => None,
    }
}

fn participant_view(
    viewer: &Viewer<'_>,
    session: &SessionId,
    event: &Event,
) -> Option<ClientEvent> {
    let (name, data) = match event {
        // Recipients learn of an invitation from `invitation_offered`; the
        // session's agents from `invitation_sent`.
        Event::InvitationOffered { .. } | Event::InvitationWithdrawn { .. } => return None,
        Event::InvitationSent { invitation } => (
            "invitation_sent",
            json!({"session": session, "invitation": invitation}),
        ),
        Event::InvitationEscalated { invitation, portal } => (
            "invitation_escalated",
            json!({"session": session, "invitation": invitation, "portal": portal}),
        ),
        Event::InvitationAccepted { invitation } => (
            "invitation_accepted",
            json!({"session": session, "invitation": invitation, "by": invitation.accepted_by}),
        ),
        Event::InvitationDeclined { invitation, by } => (
            "invitation_declined",
            json!({"session": session, "invitation": invitation, "by": by.id, "agent": by}),
        ),
        Event::InvitationExpired { invitation } => (
            "invitation_expired",
            json!({"session": session, "invitation": invitation}),
        ),
        Event::InvitationCancelled { invitation, reason } => (
            "invitation_cancelled",
            json!({"session": session, "invitation": invitation, "reason": reason}),
        ),
        Event::ParticipantJoined { participant } => (
            "participant_joined",
            json!({"session": session, "participant": ParticipantView::from(participant)}),
        ),
        Event::ParticipantLeft { participant } => (
            "participant_left",
            json!({"session": session, "participant": ParticipantView::from(participant)}),
        ),
        Event::ParticipantUpdated { participant } => (
            "participant_updated",
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
        Event::SessionEnded { at, reason } => (
            "session_ended",
            json!({"session": session, "at": at, "reason": reason}),
        ),
    };
    Some(ClientEvent { name, data })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::directory::display;
    use crate::domain::id::MessageId;
    use crate::domain::policy::{Policy, SessionMode};
    use crate::domain::session::{Invite, Rules, Session, SessionBrief, Target, WithdrawReason};
    use crate::domain::{AccountId, AgentRef, InvitationId, PortalId};

    fn id(s: &str) -> AgentId {
        AgentId::parse(s).unwrap()
    }

    fn agent(s: &str) -> AgentRef {
        AgentRef {
            id: id(s),
            name: display(&format!("Agent {s}")),
        }
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
            name: display("Lead"),
        };
        let rules = Rules {
            policy: &policy,
            now,
        };
        let (mut session, _) = Session::create(
            SessionId::random(),
            AccountId::parse("acme").unwrap(),
            SessionMode::Web,
            lead,
            display("Carl"),
            rules,
        )
        .unwrap();
        let invite = Invite {
            id: InvitationId::within(&session.id),
            inviter: id("lead"),
            target: Target::Portal(PortalId::parse("support").unwrap()),
            kind: InvitationKind::Collaborate,
            masked: true,
            comment: Comment::parse("note").unwrap(),
            online: vec![id("ann"), id("bob"), id("cid")],
            escalate: None,
            target_busy: false,
            escalation_online: Vec::new(),
        };
        let outcome = session.apply(&invite.into(), rules).unwrap();
        let offered = outcome
            .events
            .iter()
            .find(|e| matches!(e, Event::InvitationOffered { .. }))
            .unwrap();
        let Event::InvitationOffered { invitation, .. } = offered else {
            panic!("an offer")
        };
        let withdrawn = Event::InvitationWithdrawn {
            invitation: invitation.id.clone(),
            recipients: vec![id("ann"), id("bob"), id("cid")],
            reason: WithdrawReason::AcceptedByOther,
            accepted_by: Some(agent("dan")),
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

    /// A recipient who lost the race is told who won, by id and name; a
    /// withdrawal for another reason names nobody; the customer sees neither.
    #[test]
    fn a_loser_is_told_who_won() {
        let session = SessionId::parse("ses-1").unwrap();
        let lost = Event::InvitationWithdrawn {
            invitation: InvitationId::parse("inv-1").unwrap(),
            recipients: vec![id("bob")],
            reason: WithdrawReason::AcceptedByOther,
            accepted_by: Some(agent("ann")),
        };
        let seen = view(&Viewer::Recipient(&id("bob")), &session, &lost).unwrap();
        assert_eq!(
            seen.data["accepted_by"],
            json!({"id": "ann", "name": "Agent ann"})
        );
        assert_eq!(seen.data["reason"], "accepted_by_other");
        assert_eq!(view(&Viewer::Customer, &session, &lost), None);
        let cancelled = Event::InvitationWithdrawn {
            invitation: InvitationId::parse("inv-1").unwrap(),
            recipients: vec![id("bob")],
            reason: WithdrawReason::Cancelled,
            accepted_by: None,
        };
        let seen = view(&Viewer::Recipient(&id("bob")), &session, &cancelled).unwrap();
        assert!(seen.data.get("accepted_by").is_none(), "{}", seen.data);
    }

    /// The session's agents see who declined by id (`by`, as before) and
    /// by name (`agent`).
    #[test]
    fn a_decline_names_its_agent() {
        let session = SessionId::parse("ses-1").unwrap();
        let declined = Event::InvitationDeclined {
            invitation: InvitationSummary::from(&invitation(InvitationStatus::Pending)),
            by: agent("bob"),
        };
        let seen = view(&Viewer::Participant(&id("lead")), &session, &declined).unwrap();
        assert_eq!(seen.data["by"], "bob");
        assert_eq!(
            seen.data["agent"],
            json!({"id": "bob", "name": "Agent bob"})
        );
        assert_eq!(view(&Viewer::Customer, &session, &declined), None);
    }

    /// An invitation of session `ses-1` from `lead` to `ann` and `bob`.
    fn invitation(status: InvitationStatus) -> Invitation {
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        Invitation {
            id: InvitationId::parse("inv-1").unwrap(),
            session: SessionId::parse("ses-1").unwrap(),
            inviter: agent("lead"),
            target: Target::Portal(PortalId::parse("support").unwrap()),
            masked: false,
            comment: Comment::parse("note").unwrap(),
            recipients: vec![id("ann"), id("bob")],
            declined_by: Vec::new(),
            unavailable: Vec::new(),
            status,
            kind: InvitationKind::Collaborate,
            accepted_by: (status == InvitationStatus::Accepted).then(|| id("ann")),
            fence: None,
            created_at: at,
            expires_at: at + chrono::Duration::seconds(120),
            closed_reason: None,
            escalation: None,
        }
    }

    fn participant(name: &str, masked: bool) -> Participant {
        Participant {
            agent: agent(name),
            role: Role::Collaborator,
            masked,
            joined_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
        }
    }

    /// A message as the chat rule writes it: numbered for the customer
    /// exactly when the customer may read it.
    fn message(author: Author, audience: Audience) -> Message {
        let mut m = Message {
            id: MessageId::parse("msg-1").unwrap(),
            seq: 7,
            customer_seq: None,
            author,
            text: "hello".into(),
            audience,
            sent_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
        };
        m.customer_seq = customer_may_read(&m).then_some(3);
        m
    }

    /// One event of every kind, and of every variant the gate tells apart.
    fn every_kind_of_event() -> Vec<Event> {
        let summary = |status| InvitationSummary::from(&invitation(status));
        let by_agent = |masked| Author::Agent {
            agent: agent("ann"),
            masked,
        };
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 13, 0, 0).unwrap();
        let mut events = vec![
            Event::InvitationOffered {
                invitation: invitation(InvitationStatus::Pending),
                session: SessionBrief {
                    id: SessionId::parse("ses-1").unwrap(),
                    mode: SessionMode::Web,
                    customer_name: display("Carl"),
                },
            },
            Event::InvitationSent {
                invitation: summary(InvitationStatus::Pending),
            },
            Event::InvitationWithdrawn {
                invitation: InvitationId::parse("inv-1").unwrap(),
                recipients: vec![id("ann")],
                reason: WithdrawReason::Cancelled,
                accepted_by: None,
            },
            Event::InvitationAccepted {
                invitation: summary(InvitationStatus::Accepted),
            },
            Event::InvitationEscalated {
                invitation: summary(InvitationStatus::Pending),
                portal: PortalId::parse("support").unwrap(),
            },
            Event::InvitationDeclined {
                invitation: summary(InvitationStatus::Declined),
                by: agent("bob"),
            },
            Event::InvitationExpired {
                invitation: summary(InvitationStatus::Expired),
            },
            Event::InvitationCancelled {
                invitation: summary(InvitationStatus::Cancelled),
                reason: WithdrawReason::SessionEnded,
            },
            Event::LeadChanged { lead: agent("ann") },
            Event::CustomerReconnectRequired { generation: 2 },
            Event::CustomerReconnected {
                generation: 2,
                screen_shared: true,
            },
        ];
        for masked in [false, true] {
            events.push(Event::ParticipantJoined {
                participant: participant("ann", masked),
            });
            events.push(Event::ParticipantLeft {
                participant: participant("ann", masked),
            });
            events.push(Event::ParticipantUpdated {
                participant: participant("ann", masked),
            });
        }
        for (author, audience) in [
            (by_agent(false), Audience::Everyone),
            (by_agent(false), Audience::Agents),
            (by_agent(true), Audience::Everyone),
            (by_agent(true), Audience::Agents),
            (
                Author::Customer {
                    name: display("Carl"),
                },
                Audience::Everyone,
            ),
        ] {
            events.push(Event::MessagePosted {
                message: message(author, audience),
            });
        }
        for reason in [
            EndReason::EndedByLead,
            EndReason::LastAgentLeft,
            EndReason::Idle,
            EndReason::Admin,
        ] {
            events.push(Event::SessionEnded { at, reason });
        }
        events
    }

    fn kind(event: &Event) -> &'static str {
        match event {
            Event::InvitationOffered { .. } => "offered",
            Event::InvitationSent { .. } => "sent",
            Event::InvitationWithdrawn { .. } => "withdrawn",
            Event::InvitationEscalated { .. } => "escalated",
            Event::InvitationAccepted { .. } => "accepted",
            Event::InvitationDeclined { .. } => "declined",
            Event::InvitationExpired { .. } => "expired",
            Event::InvitationCancelled { .. } => "cancelled",
            Event::ParticipantJoined { .. } => "joined",
            Event::ParticipantLeft { .. } => "left",
            Event::ParticipantUpdated { .. } => "updated",
            Event::LeadChanged { .. } => "lead_changed",
            Event::MessagePosted { .. } => "message",
            Event::CustomerReconnectRequired { .. } => "reconnect_required",
            Event::CustomerReconnected { .. } => "reconnected",
            Event::SessionEnded { .. } => "session_ended",
        }
    }

    /// Delivery routes by `audiences` without building views: it must name
    /// exactly the kinds of viewers `view` shows something to.
    #[test]
    fn audiences_agrees_with_view_on_every_kind_of_event() {
        let session = SessionId::parse("ses-1").unwrap();
        let events = every_kind_of_event();
        let kinds: std::collections::BTreeSet<_> = events.iter().map(kind).collect();
        assert_eq!(kinds.len(), 16, "one of each kind: {kinds:?}");
        let mut customer_sees = 0;
        for event in &events {
            let to = audiences(event);
            let sees = |viewer: Viewer<'_>| view(&viewer, &session, event).is_some();
            assert_eq!(sees(Viewer::Customer), to.customer, "customer: {event:?}");
            for agent in ["lead", "ann", "zed"] {
                let agent = id(agent);
                assert_eq!(
                    sees(Viewer::Participant(&agent)),
                    to.participants,
                    "participant {agent}: {event:?}"
                );
                if sees(Viewer::Recipient(&agent)) {
                    assert!(to.recipients, "recipient {agent}: {event:?}");
                }
            }
            // The recipient every recipient event names does see it.
            assert_eq!(
                sees(Viewer::Recipient(&id("ann"))),
                to.recipients,
                "{event:?}"
            );
            assert!(!sees(Viewer::Other), "{event:?}");
            assert!(
                !(to.recipients && (to.customer || to.participants)),
                "a recipient event is for recipients only: {event:?}"
            );
            customer_sees += usize::from(to.customer);
        }
        // Unmasked join and leave, mask and unmask, two readable messages,
        // reconnect, four ends.
        assert_eq!(customer_sees, 11);
    }
}
