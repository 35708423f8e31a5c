//! Provisioning data: accounts, portals, agents.

use serde::{Deserialize, Serialize};

use super::id::{AccountId, AgentId, PortalId};
use super::policy::Policy;

/// Longest display name we keep.
pub const MAX_NAME_CHARS: usize = 200;

/// A tenant and its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account's id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// What the account may use.
    pub policy: Policy,
}

/// A named group of agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portal {
    /// The portal's id, unique inside its account.
    pub id: PortalId,
    /// Display name.
    pub name: String,
}

/// A support agent and the portals it may log into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// The agent's id, unique inside its account.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// Portals this agent may log into.
    pub portals: Vec<PortalId>,
}

impl Agent {
    /// Whether the agent may log into `portal`.
    pub fn is_member_of(&self, portal: &PortalId) -> bool {
        self.portals.contains(portal)
    }

    /// The agent as others see it in a session.
    pub fn as_ref(&self) -> AgentRef {
        AgentRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }
}

/// An agent as carried inside sessions and events: id and display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentRef {
    /// The agent's id.
    pub id: AgentId,
    /// Display name at the time it was recorded.
    pub name: String,
}

/// Checks a display name: 1 to 200 characters after trimming, no control characters.
pub fn parse_name(field: &str, raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "{field} must be at most {MAX_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("name", "  Ann ").unwrap(), "Ann");
        assert!(parse_name("name", "   ").is_err());
        assert!(parse_name("name", &"x".repeat(201)).is_err());
        assert!(parse_name("name", "a\u{0007}b").is_err());
    }
}
