//! The audit entries of a session's changes, made by the rules that make
//! the change (`Session::apply` puts them in its `Outcome`), so the commit
//! that stores the change stores its entries in the same atomic step. The
//! entry type itself is `domain::audit`'s, which knows nothing of sessions.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Command, Event, InvitationKind, InvitationSummary, Poster, Session};
use crate::domain::audit::{Actor, AuditAction, AuditEntry};
use crate::domain::id::{AgentId, SessionId};

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
    use crate::domain::audit::ActorKind;
    use crate::domain::session::{AdminEnd, CheckIdle, CustomerReconnected, End, Leave, SetMasked};

    fn id(s: &str) -> AgentId {
        AgentId::parse(s).unwrap()
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
