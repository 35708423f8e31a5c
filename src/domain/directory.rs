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
    pub name: DisplayName,
    /// What the account may use.
    pub policy: Policy,
}

/// A named group of agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portal {
    /// The portal's id, unique inside its account.
    pub id: PortalId,
    /// Display name.
    pub name: DisplayName,
}

/// A support agent and the portals it may log into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// The agent's id, unique inside its account.
    pub id: AgentId,
    /// Display name.
    pub name: DisplayName,
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
    pub name: DisplayName,
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

/// Letters that render as nothing: the Hangul fillers (U+115F, U+1160,
/// U+3164, U+FFA0) and the blank Braille pattern (U+2800). They are not
/// whitespace, so trimming keeps them, and a name of them looks blank.
const BLANK_LETTERS: [char; 5] = ['\u{115F}', '\u{1160}', '\u{2800}', '\u{3164}', '\u{FFA0}'];

/// Whether a name may not contain `c`: controls (Cc), format characters
/// (Cf), the line and paragraph separators (Zl, Zp), and letters that
/// render as nothing.
fn refused_in_names(c: char) -> bool {
    c.is_control()
        || c == '\u{2028}'
        || c == '\u{2029}'
        || BLANK_LETTERS.contains(&c)
        || FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// A display name (of an account, a portal, an agent or a customer),
/// parsed once where it enters: 1 to 200 characters after trimming; no
/// control or format characters and no line or paragraph separators (they
/// let a name look blank, reversed or like someone else's). What is stored
/// was parsed when it was written, so it is read back as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses `raw`, sent as `field`; the error says why it is refused.
    pub fn parse(field: &str, raw: &str) -> Result<Self, String> {
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
        Ok(Self(name.to_owned()))
    }

    /// An id standing in for a name that is not known (ids are short and
    /// printable, always a valid name).
    pub fn of_id(id: &str) -> Self {
        Self(id.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name for tests, parsed as a request's would be.
#[cfg(test)]
pub(crate) fn display(name: &str) -> DisplayName {
    DisplayName::parse("name", name).expect("a valid display name")
}

impl std::ops::Deref for DisplayName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DisplayName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<DisplayName> for String {
    fn from(name: DisplayName) -> Self {
        name.0
    }
}

impl PartialEq<str> for DisplayName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DisplayName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("name", "  Ann ").unwrap(), "Ann");
        assert!(DisplayName::parse("name", "   ").is_err());
        assert!(DisplayName::parse("name", &"x".repeat(201)).is_err());
        assert!(DisplayName::parse("name", "a\u{0007}b").is_err());
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
            let err = DisplayName::parse("name", spoof).unwrap_err();
            assert!(err.contains("formatting"), "{spoof:?}: {err}");
        }
        // Letters of every script, emoji and their joiners' neighbours stay fine.
        for fine in ["Zoë", "Łukasz", "山田 太郎", "محمد", "Ann 🎧"] {
            assert_eq!(DisplayName::parse("name", fine).unwrap(), fine);
        }
    }
}
