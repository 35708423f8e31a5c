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
    /// Sessions one agent may be active in at once (creating one counts).
    pub max_active_sessions_per_agent: u32,
    /// Invitations open at once in one session.
    pub max_pending_invitations_per_session: u32,
    /// Chat messages one session may hold.
    pub max_messages_per_session: u32,
    /// Invitations one session may send in its life (each is kept in its
    /// history until the session's retention ends).
    pub max_invitations_per_session: u32,
    /// A session without agent activity for this long ends (reason `idle`).
    pub session_idle_timeout_secs: u32,
    /// How long an ended session, its transcript and history are kept;
    /// the account's trail keeps entries this long too, but never less
    /// than [`TRAIL_MIN_SECS`] (see [`Policy::trail_retention`]).
    pub retention_secs: u32,
}

/// The shortest time the account's trail keeps an entry, whatever
/// `retention_secs` says: a policy change to `retention_secs = 1` would
/// otherwise hide its own `policy_changed` entry, and every entry before
/// it, at once. The trail holds no message or comment texts.
pub const TRAIL_MIN_SECS: u32 = 86_400;

impl Policy {
    /// How long the account's trail keeps an entry: `retention_secs`, at
    /// least [`TRAIL_MIN_SECS`].
    pub fn trail_retention(&self) -> std::time::Duration {
        trail_kept(std::time::Duration::from_secs(u64::from(
            self.retention_secs,
        )))
    }
}

/// How long the account's trail keeps an entry of a session whose ended
/// state is kept `retention`: at least [`TRAIL_MIN_SECS`].
pub fn trail_kept(retention: std::time::Duration) -> std::time::Duration {
    retention.max(std::time::Duration::from_secs(u64::from(TRAIL_MIN_SECS)))
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
            max_pending_invitations_per_session: 16,
            max_messages_per_session: 10_000,
            max_invitations_per_session: 10_000,
            session_idle_timeout_secs: 3600,
            retention_secs: 604_800,
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
    /// See [`Policy::max_pending_invitations_per_session`].
    pub max_pending_invitations_per_session: Option<u32>,
    /// See [`Policy::max_messages_per_session`].
    pub max_messages_per_session: Option<u32>,
    /// See [`Policy::max_invitations_per_session`].
    pub max_invitations_per_session: Option<u32>,
    /// See [`Policy::session_idle_timeout_secs`].
    pub session_idle_timeout_secs: Option<u32>,
    /// See [`Policy::retention_secs`].
    pub retention_secs: Option<u32>,
}

/// Bounds that keep a policy meaningful.
pub const MAX_TTL_SECS: u32 = 24 * 3600;
/// The most agents a policy may allow in one session.
pub const MAX_AGENTS_PER_SESSION: u32 = 64;
/// The most sessions a policy may allow one agent to be in.
pub const MAX_ACTIVE_SESSIONS: u32 = 1000;
/// The most invitations a policy may allow open at once in one session: each
/// is part of the session's hot state, read and written by every command.
pub const MAX_PENDING_INVITATIONS: u32 = 256;
/// The most chat messages a policy may allow in one session.
pub const MAX_MESSAGES: u32 = 100_000;
/// The most invitations a policy may allow one session to send.
pub const MAX_INVITATIONS: u32 = 100_000;
/// The longest idle time and retention a policy may set (one year).
pub const MAX_LIFETIME_SECS: u32 = 365 * 24 * 3600;

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
            max_pending_invitations_per_session: self
                .max_pending_invitations_per_session
                .unwrap_or(d.max_pending_invitations_per_session),
            max_messages_per_session: self
                .max_messages_per_session
                .unwrap_or(d.max_messages_per_session),
            max_invitations_per_session: self
                .max_invitations_per_session
                .unwrap_or(d.max_invitations_per_session),
            session_idle_timeout_secs: self
                .session_idle_timeout_secs
                .unwrap_or(d.session_idle_timeout_secs),
            retention_secs: self.retention_secs.unwrap_or(d.retention_secs),
        };
        let bounds = [
            (
                "invitation_ttl_secs",
                policy.invitation_ttl_secs,
                MAX_TTL_SECS,
            ),
            (
                "max_agents_per_session",
                policy.max_agents_per_session,
                MAX_AGENTS_PER_SESSION,
            ),
            (
                "max_active_sessions_per_agent",
                policy.max_active_sessions_per_agent,
                MAX_ACTIVE_SESSIONS,
            ),
            (
                "max_pending_invitations_per_session",
                policy.max_pending_invitations_per_session,
                MAX_PENDING_INVITATIONS,
            ),
            (
                "max_messages_per_session",
                policy.max_messages_per_session,
                MAX_MESSAGES,
            ),
            (
                "max_invitations_per_session",
                policy.max_invitations_per_session,
                MAX_INVITATIONS,
            ),
            (
                "session_idle_timeout_secs",
                policy.session_idle_timeout_secs,
                MAX_LIFETIME_SECS,
            ),
            ("retention_secs", policy.retention_secs, MAX_LIFETIME_SECS),
        ];
        for (field, value, max) in bounds {
            if !(1..=max).contains(&value) {
                return Err(format!("policy.{field} must be 1 to {max}"));
            }
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
