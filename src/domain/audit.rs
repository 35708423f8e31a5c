//! The audit trail: one entry per session change and per administrative
//! change, made by the rules that make the change (so the commit that
//! stores the change stores its entries in the same atomic step, and a
//! refused command, which produces no outcome, has none).
//!
//! Entries say who did what to which session or record, never what was
//! written: no message texts and no comment texts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::id::{AgentId, InvitationId, SessionId};

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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use serde_json::json;

    use super::*;

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
}
