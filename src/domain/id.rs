//! Identifiers. Every id that crosses the edge is validated here, so an
//! invalid id cannot exist past the HTTP layer.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest id we accept (the API's `[a-z0-9][a-z0-9_-]{0,63}`).
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ids are 1 to 64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit")]
pub struct InvalidId;

/// Checks the API's id grammar: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_valid_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an id, rejecting anything outside the id grammar.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if is_valid_id(s) { Ok(Self(s.to_owned())) } else { Err(InvalidId) }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A tenant.
    AccountId
);
id_type!(
    /// A named group of agents inside an account.
    PortalId
);
id_type!(
    /// A support agent.
    AgentId
);
id_type!(
    /// A support session with one customer.
    SessionId
);
id_type!(
    /// An invitation to join a session.
    InvitationId
);
id_type!(
    /// A chat message in a session.
    MessageId
);

/// Makes a fresh random id with a readable prefix, e.g. `ses-4f1c…`.
pub fn random_id(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}-{:024x}", n >> 32)
}

impl SessionId {
    /// A new, unguessable session id.
    pub fn random() -> Self {
        Self(random_id("ses"))
    }
}

/// The random part of a session id: `ses-` and 24 hex digits.
const SESSION_HEX: usize = 24;

impl InvitationId {
    /// A new, unguessable invitation id in `session`. The session is part of
    /// the id (`inv-<session>-<random>`), so any node finds the session an
    /// invitation belongs to without a lookup: accepting costs one Redis
    /// round trip less, and no index from invitations to sessions has to be
    /// kept (and expired) beside them.
    pub fn within(session: &SessionId) -> Self {
        let n: u64 = rand::random();
        let hex = session.0.strip_prefix("ses-").unwrap_or(&session.0);
        Self(format!("inv-{hex}-{:012x}", n >> 16))
    }

    /// The session this invitation belongs to, when the id says so.
    pub fn session(&self) -> Option<SessionId> {
        let rest = self.0.strip_prefix("inv-")?;
        let (hex, random) = rest.split_once('-')?;
        let well_formed = hex.len() == SESSION_HEX
            && !random.is_empty()
            && hex.bytes().all(|b| b.is_ascii_hexdigit());
        well_formed.then(|| SessionId(format!("ses-{hex}")))
    }
}

impl MessageId {
    /// A new message id.
    pub fn random() -> Self {
        Self(random_id("msg"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_grammar_is_enforced() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("0portal_1-x"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id("_a"));
        assert!(!is_valid_id("-a"));
        assert!(!is_valid_id("Abc"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("é"));
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert!(SessionId::parse(a.as_str()).is_ok());
    }

    #[test]
    fn an_invitation_id_names_its_session() {
        let session = SessionId::random();
        let invitation = InvitationId::within(&session);
        assert!(InvitationId::parse(invitation.as_str()).is_ok());
        assert_eq!(invitation.session(), Some(session));
        assert_ne!(InvitationId::within(&SessionId::random()), invitation);
        for foreign in [
            "inv-1",
            "inv-zz",
            "x-0123456789abcdef01234567-1",
            "inv-0123-1",
        ] {
            assert_eq!(InvitationId::parse(foreign).unwrap().session(), None);
        }
    }

    #[test]
    fn deserializing_checks_the_grammar() {
        assert!(serde_json::from_str::<AgentId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<AgentId>("\"NOT OK\"").is_err());
    }
}
