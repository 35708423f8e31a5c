//! The audit trail: one entry per session change and per administrative
//! change, made by the rules that make the change (so the commit that
//! stores the change stores its entries in the same atomic step, and a
//! refused command, which produces no outcome, has none).
//!
//! Entries say who did what to which session or record, never what was
//! written: no message texts and no comment texts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::id::{AgentId, InvitationId, SessionId};
use super::session::{Command, Event, InvitationKind, InvitationSummary, Poster, Session};

/// The most entries an account's trail keeps, whatever its retention: the
/// oldest go first. A session's own trail is bounded by the session's
/// limits and kept whole for its retention.
pub const MAX_ACCOUNT_ENTRIES: usize = 1_000_000;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An agent, by its token.
    Agent,
    /// The administrator (the admin token).
    Admin,
    /// The session's customer.
    Customer,
    /// collabd itself: a timer fired, or a logout cascaded.
    System,
}

/// Who made a change: its kind, and the agent's id for an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// What kind of actor.
    pub kind: ActorKind,
    /// The agent's id; `None` for the others.
    pub id: Option<AgentId>,
}

impl Actor {
    /// An agent.
    pub fn agent(id: &AgentId) -> Self {
        Self {
            kind: ActorKind::Agent,
            id: Some(id.clone()),
        }
    }

    /// The administrator.
    pub fn admin() -> Self {
        Self {
            kind: ActorKind::Admin,
            id: None,
        }
    }

    /// collabd itself.
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
        }
    }

    /// The session's customer.
    pub fn customer() -> Self {
        Self {
            kind: ActorKind::Customer,
            id: None,
        }
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum AuditAction {
    SessionCreated,
    InvitationSent,
    InvitationEscalated,
    InvitationAccepted,
    InvitationDeclined,
    InvitationCancelled,
    InvitationExpired,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMasked,
    ParticipantUnmasked,
    LeadChanged,
    SessionTransferred,
    SessionEnded,
    AgentCreated,
    AgentUpdated,
    AgentDeleted,
    AgentLoggedOut,
    TokensRevoked,
    PortalDeleted,
    AccountUpdated,
    AccountDeleted,
    PolicyChanged,
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// Who made it.
    pub actor: Actor,
    /// What it was.
    pub action: AuditAction,
    /// The session it changed, if any.
    pub session: Option<SessionId>,
    /// The invitation it concerned, if any.
    pub invitation: Option<InvitationId>,
    /// What else identifies the change (ids, reasons, flags; no texts).
    pub details: Value,
}

impl AuditEntry {
    /// An administrative change made with the admin token.
    pub fn admin(at: DateTime<Utc>, action: AuditAction, details: Value) -> Self {
        Self {
            at,
            actor: Actor::admin(),
            action,
            session: None,
            invitation: None,
            details,
        }
    }

    /// Whether the entry concerns `agent`: made by it, or naming it.
    pub fn mentions(&self, agent: &AgentId) -> bool {
        if self.actor.id.as_ref() == Some(agent) {
            return true;
        }
        let named = |v: Option<&Value>| v.and_then(Value::as_str) == Some(agent.as_str());
        ["agent", "by", "lead", "from", "to"]
            .iter()
            .any(|k| named(self.details.get(k)))
            || named(self.details.get("target").and_then(|t| t.get("agent")))
    }
}

/// Who asked for `command`.
pub fn actor_of(command: &Command) -> Actor {
    match command {
        Command::Invite(c) => Actor::agent(&c.inviter),
        Command::Accept(c) => Actor::agent(&c.agent.id),
        Command::Decline(c) => Actor::agent(&c.agent.id),
        Command::Cancel(c) => Actor::agent(&c.by),
        Command::Leave(c) if c.by_admin => Actor::admin(),
        Command::Leave(c) => Actor::agent(&c.agent),
        Command::SetMasked(c) => Actor::agent(&c.by),
        Command::End(c) => Actor::agent(&c.by),
        Command::Post(c) => match &c.author {
            Poster::Agent(a) => Actor::agent(a),
            Poster::Customer => Actor::customer(),
        },
        Command::AdminEnd(_) | Command::AdminCancel(_) => Actor::admin(),
        Command::CustomerReconnected(_) => Actor::customer(),
        // A logout withdraws the agent's alerts: collabd does that for it.
        Command::Expire(_)
        | Command::Escalate(_)
        | Command::CheckIdle(_)
        | Command::RecipientGone(_) => Actor::system(),
    }
}

/// The entry for a new session.
pub fn session_created(session: &Session) -> AuditEntry {
    AuditEntry {
        at: session.created_at,
        actor: session
            .lead
            .as_ref()
            .map_or_else(Actor::system, Actor::agent),
        action: AuditAction::SessionCreated,
        session: Some(session.id.clone()),
        invitation: None,
        details: json!({"mode": session.mode, "lead": session.lead}),
    }
}

/// The entries for what `command` did to `session`, from its events, in
/// their order. Chat, alerts and the customer's client are not changes of
/// the session's membership or invitations: they have no entries.
pub fn session_entries(
    command: &Command,
    session: &SessionId,
    events: &[Event],
    at: DateTime<Utc>,
) -> Vec<AuditEntry> {
    let actor = actor_of(command);
    let entry = |action, invitation: Option<&InvitationSummary>, details| AuditEntry {
        at,
        actor: actor.clone(),
        action,
        session: Some(session.clone()),
        invitation: invitation.map(|i| i.id.clone()),
        details,
    };
    let mut entries = Vec::new();
    let mut transfer: Option<(AgentId, AgentId)> = None;
    for event in events {
        let next = match event {
            Event::InvitationSent { invitation } => entry(
                AuditAction::InvitationSent,
                Some(invitation),
                json!({
                    "target": invitation.target,
                    "kind": invitation.kind,
                    "masked": invitation.masked,
                    "comment": invitation.comment.is_some(),
                    "recipient_count": invitation.recipient_count,
                }),
            ),
            Event::InvitationEscalated { invitation, portal } => entry(
                AuditAction::InvitationEscalated,
                Some(invitation),
                json!({
                    "portal": portal,
                    "from": invitation.escalation.as_ref().and_then(|e| e.from.as_ref()),
                    "recipient_count": invitation.recipient_count,
                }),
            ),
            Event::InvitationAccepted { invitation } => {
                if invitation.kind == InvitationKind::Transfer
                    && let Some(by) = &invitation.accepted_by
                {
                    transfer = Some((invitation.inviter.id.clone(), by.clone()));
                }
                entry(
                    AuditAction::InvitationAccepted,
                    Some(invitation),
                    json!({"by": invitation.accepted_by, "kind": invitation.kind}),
                )
            }
            Event::InvitationDeclined { invitation, by } => entry(
                AuditAction::InvitationDeclined,
                Some(invitation),
                json!({"by": by.id, "status": invitation.status}),
            ),
            Event::InvitationExpired { invitation } => {
                entry(AuditAction::InvitationExpired, Some(invitation), json!({}))
            }
            Event::InvitationCancelled { invitation, reason } => entry(
                AuditAction::InvitationCancelled,
                Some(invitation),
                json!({"reason": reason}),
            ),
            Event::ParticipantJoined { participant } => entry(
                AuditAction::ParticipantJoined,
                None,
                json!({
                    "agent": participant.agent.id,
                    "role": participant.role,
                    "masked": participant.masked,
                }),
            ),
            Event::ParticipantLeft { participant } => entry(
                AuditAction::ParticipantLeft,
                None,
                json!({"agent": participant.agent.id}),
            ),
            Event::ParticipantUpdated { participant } => entry(
                if participant.masked {
                    AuditAction::ParticipantMasked
                } else {
                    AuditAction::ParticipantUnmasked
                },
                None,
                json!({"agent": participant.agent.id}),
            ),
            Event::LeadChanged { lead } => {
                entry(AuditAction::LeadChanged, None, json!({"lead": lead.id}))
            }
            Event::SessionEnded { reason, .. } => {
                entry(AuditAction::SessionEnded, None, json!({"reason": reason}))
            }
            Event::InvitationOffered { .. }
            | Event::InvitationWithdrawn { .. }
            | Event::MessagePosted { .. }
            | Event::CustomerReconnectRequired { .. }
            | Event::CustomerReconnected { .. } => continue,
        };
        entries.push(next);
    }
    if let Some((from, to)) = transfer {
        entries.push(entry(
            AuditAction::SessionTransferred,
            None,
            json!({"from": from, "to": to}),
        ));
    }
    entries
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::session::{AdminEnd, CheckIdle, CustomerReconnected, End, Leave, SetMasked};

    fn id(s: &str) -> AgentId {
        AgentId::parse(s).unwrap()
    }

    #[test]
    fn an_entry_mentions_its_actor_and_the_agents_its_details_name() {
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let mut entry = AuditEntry::admin(
            at,
            AuditAction::AgentLoggedOut,
            json!({"agent": "ann", "reason": "admin"}),
        );
        assert!(entry.mentions(&id("ann")));
        assert!(!entry.mentions(&id("bob")));
        entry.details = json!({"from": "bob", "to": "cid"});
        entry.actor = Actor::agent(&id("dan"));
        for who in ["bob", "cid", "dan"] {
            assert!(entry.mentions(&id(who)), "{who}");
        }
        // An invitation sent to the agent names it as its target.
        entry.details = json!({"target": {"agent": "fay"}});
        assert!(entry.mentions(&id("fay")));
        // A name that happens to equal an id is not a mention.
        entry.details = json!({"name": "eve"});
        assert!(!entry.mentions(&id("eve")));
    }

    #[test]
    fn the_actor_of_a_command_is_who_asked_or_collabd_for_timers() {
        let leave: Command = Leave {
            agent: id("ann"),
            by_admin: false,
        }
        .into();
        assert_eq!(actor_of(&leave), Actor::agent(&id("ann")));
        let removed: Command = Leave {
            agent: id("ann"),
            by_admin: true,
        }
        .into();
        assert_eq!(actor_of(&removed), Actor::admin());
        let mask: Command = SetMasked {
            agent: id("ann"),
            by: id("lead"),
            masked: true,
        }
        .into();
        assert_eq!(actor_of(&mask), Actor::agent(&id("lead")));
        let end: Command = End { by: id("lead") }.into();
        assert_eq!(actor_of(&end).kind, ActorKind::Agent);
        assert_eq!(actor_of(&CheckIdle.into()), Actor::system());
        assert_eq!(actor_of(&AdminEnd.into()), Actor::admin());
    }

    #[test]
    fn the_customers_client_makes_no_entries() {
        let session = SessionId::random();
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let events = [
            Event::CustomerReconnectRequired { generation: 2 },
            Event::CustomerReconnected {
                generation: 2,
                screen_shared: true,
            },
        ];
        let command: Command = CustomerReconnected {
            generation: 2,
            screen_shared: true,
        }
        .into();
        assert_eq!(actor_of(&command), Actor::customer());
        assert!(session_entries(&command, &session, &events, at).is_empty());
    }
}
