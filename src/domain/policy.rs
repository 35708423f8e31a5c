//! What an account may use of the collaboration feature.

use serde::{Deserialize, Serialize};

/// A support session's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// Started from the web.
    Web,
    /// Picked up from a queue.
    Queue,
}

/// The per-account feature switches and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Collaboration at all: inviting anyone into a session.
    pub collaboration: bool,
    /// Inviting every agent logged into a portal.
    pub portal_invitations: bool,
    /// Inviting an agent to join masked (invisible to the customer).
    pub masking: bool,
    /// Attaching a comment for the invitees.
    pub comments: bool,
    /// Modes in which sessions may be created.
    pub session_modes: Vec<SessionMode>,
    /// How long an invitation stays open.
    pub invitation_ttl_secs: u32,
    /// Agents in one session at most, lead included.
    pub max_agents_per_session: u32,
    /// Sessions one agent may be active in at once.
    pub max_active_sessions_per_agent: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            collaboration: true,
            portal_invitations: true,
            masking: true,
            comments: true,
            session_modes: vec![SessionMode::Web, SessionMode::Queue],
            invitation_ttl_secs: 120,
            max_agents_per_session: 8,
            max_active_sessions_per_agent: 10,
        }
    }
}

/// A policy as a client sends it: every field optional, defaults fill the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// See [`Policy::collaboration`].
    pub collaboration: Option<bool>,
    /// See [`Policy::portal_invitations`].
    pub portal_invitations: Option<bool>,
    /// See [`Policy::masking`].
    pub masking: Option<bool>,
    /// See [`Policy::comments`].
    pub comments: Option<bool>,
    /// See [`Policy::session_modes`].
    pub session_modes: Option<Vec<SessionMode>>,
    /// See [`Policy::invitation_ttl_secs`].
    pub invitation_ttl_secs: Option<u32>,
    /// See [`Policy::max_agents_per_session`].
    pub max_agents_per_session: Option<u32>,
    /// See [`Policy::max_active_sessions_per_agent`].
    pub max_active_sessions_per_agent: Option<u32>,
}

/// Bounds that keep a policy meaningful.
pub const MAX_TTL_SECS: u32 = 24 * 3600;
/// The most agents a policy may allow in one session.
pub const MAX_AGENTS_PER_SESSION: u32 = 64;
/// The most sessions a policy may allow one agent to be in.
pub const MAX_ACTIVE_SESSIONS: u32 = 1000;

impl PolicyInput {
    /// Fills defaults and checks bounds; the error names the offending field.
    pub fn into_policy(self) -> Result<Policy, String> {
        let d = Policy::default();
        let mut modes = self.session_modes.unwrap_or(d.session_modes);
        modes.sort_by_key(|m| *m as u8);
        modes.dedup();
        if modes.is_empty() {
            return Err("policy.session_modes must allow at least one mode".into());
        }
        let policy = Policy {
            collaboration: self.collaboration.unwrap_or(d.collaboration),
            portal_invitations: self.portal_invitations.unwrap_or(d.portal_invitations),
            masking: self.masking.unwrap_or(d.masking),
            comments: self.comments.unwrap_or(d.comments),
            session_modes: modes,
            invitation_ttl_secs: self.invitation_ttl_secs.unwrap_or(d.invitation_ttl_secs),
            max_agents_per_session: self
                .max_agents_per_session
                .unwrap_or(d.max_agents_per_session),
            max_active_sessions_per_agent: self
                .max_active_sessions_per_agent
                .unwrap_or(d.max_active_sessions_per_agent),
        };
        if !(1..=MAX_TTL_SECS).contains(&policy.invitation_ttl_secs) {
            return Err(format!(
                "policy.invitation_ttl_secs must be 1 to {MAX_TTL_SECS}"
            ));
        }
        if !(1..=MAX_AGENTS_PER_SESSION).contains(&policy.max_agents_per_session) {
            return Err(format!(
                "policy.max_agents_per_session must be 1 to {MAX_AGENTS_PER_SESSION}"
            ));
        }
        if !(1..=MAX_ACTIVE_SESSIONS).contains(&policy.max_active_sessions_per_agent) {
            return Err(format!(
                "policy.max_active_sessions_per_agent must be 1 to {MAX_ACTIVE_SESSIONS}"
            ));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_gets_the_seed_defaults() {
        let p = PolicyInput::default().into_policy().unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(p.max_agents_per_session, 8);
        assert_eq!(p.invitation_ttl_secs, 120);
    }

    #[test]
    fn out_of_range_limits_are_refused() {
        let zero_ttl = PolicyInput {
            invitation_ttl_secs: Some(0),
            ..Default::default()
        };
        assert!(
            zero_ttl
                .into_policy()
                .unwrap_err()
                .contains("invitation_ttl_secs")
        );
        let no_modes = PolicyInput {
            session_modes: Some(vec![]),
            ..Default::default()
        };
        assert!(no_modes.into_policy().is_err());
        let huge = PolicyInput {
            max_agents_per_session: Some(1000),
            ..Default::default()
        };
        assert!(huge.into_policy().is_err());
    }

    #[test]
    fn unknown_policy_fields_are_refused() {
        assert!(serde_json::from_str::<PolicyInput>(r#"{"colaboration": true}"#).is_err());
    }
}
