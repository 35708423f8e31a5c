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

/// Why an agent was logged out by someone else (the `logged_out` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutReason {
    /// An administrator logged it out.
    Admin,
    /// Its portals changed and no longer include the one it was in.
    MembershipChanged,
    /// The portal it was logged into was deleted.
    PortalDeleted,
    /// The agent was deleted.
    AgentDeleted,
    /// Its tokens were revoked.
    TokensRevoked,
    /// Its account was deleted.
    AccountDeleted,
}

impl LogoutReason {
    /// Whether the agent's open event streams end too (its tokens are no
    /// longer good, or it no longer exists).
    pub fn ends_streams(self) -> bool {
        matches!(
            self,
            Self::AgentDeleted | Self::TokensRevoked | Self::AccountDeleted
        )
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

/// Unicode's format characters (general category Cf, Unicode 16): invisible
/// characters that change how the text around them is shown — bidi
/// overrides that reverse a name, zero-width characters that make it look
/// blank or like another one.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether a name may not contain `c`: controls (Cc), format characters
/// (Cf) and the line and paragraph separators (Zl, Zp).
fn refused_in_names(c: char) -> bool {
    c.is_control()
        || c == '\u{2028}'
        || c == '\u{2029}'
        || FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Checks a display name: 1 to 200 characters after trimming; no control
/// or format characters and no line or paragraph separators (they let a
/// name look blank, reversed or like someone else's).
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
    if let Some(c) = name.chars().find(|&c| refused_in_names(c)) {
        return Err(format!(
            "{field} must not contain control or invisible formatting characters (found U+{:04X})",
            u32::from(c)
        ));
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

    #[test]
    fn invisible_and_bidi_characters_are_refused() {
        for spoof in [
            "\u{202e}\u{200b}",
            "Ann\u{202e}nimda",
            "A\u{200d}nn",
            "\u{2066}Ann\u{2069}",
            "Ann\u{2028}Admin",
            "Ann\u{2029}Bob",
            "\u{feff}Ann",
            "Ann\u{e0041}",
            "Ann\u{00ad}",
        ] {
            let err = parse_name("name", spoof).unwrap_err();
            assert!(err.contains("formatting"), "{spoof:?}: {err}");
        }
        // Letters of every script, emoji and their joiners' neighbours stay fine.
        for fine in ["Zoë", "Łukasz", "山田 太郎", "محمد", "Ann 🎧"] {
            assert_eq!(parse_name("name", fine).unwrap(), fine);
        }
    }
}
