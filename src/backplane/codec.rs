//! The node-to-node wire format: a one-byte format version followed by a
//! bincode (v2, serde mode) body. Only this module names bincode, so the
//! encoding can be swapped by bumping [`FORMAT_VERSION`] and teaching
//! `decode` the old one.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The envelope's current format version.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Empty input.
    #[error("empty payload")]
    Empty,
    /// Written by a format this node does not know (a newer node?).
    #[error("unknown wire format version {0}")]
    UnknownVersion(u8),
    /// The body does not decode as the expected type.
    #[error("malformed payload: {0}")]
    Malformed(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value in the current envelope.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Encoding our own serde types into a Vec cannot fail: no I/O, no
    // unsupported serde features (no flatten/tag/untagged/skip on wire types).
    if let Err(e) = bincode::serde::encode_into_std_write(value, &mut out, config()) {
        tracing::error!(error = %e, "wire encoding failed");
    }
    out
}

/// Decodes a value from an envelope of a known version.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        FORMAT_VERSION => {
            let (value, used) = bincode::serde::decode_from_slice(body, config())
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
            if used != body.len() {
                return Err(CodecError::Malformed(format!(
                    "{} trailing bytes",
                    body.len() - used
                )));
            }
            Ok(value)
        }
        other => Err(CodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Policy, SessionMode};
    use crate::domain::{Account, AccountId, AgentId, Portal, PortalId};

    fn account() -> Account {
        Account {
            id: AccountId::parse("acme").unwrap(),
            name: "Acme".into(),
            policy: Policy {
                session_modes: vec![SessionMode::Web],
                ..Policy::default()
            },
        }
    }

    #[test]
    fn values_round_trip() {
        let a = account();
        assert_eq!(decode::<Account>(&encode(&a)).unwrap(), a);
        let p = Portal {
            id: PortalId::parse("p1").unwrap(),
            name: "Tier 1".into(),
        };
        assert_eq!(decode::<Portal>(&encode(&p)).unwrap(), p);
    }

    /// Golden bytes: if this changes, nodes of two versions can no longer
    /// read each other's data — bump FORMAT_VERSION and keep decoding v1.
    #[test]
    fn the_v1_format_is_stable() {
        let bytes = encode(&account());
        let golden: &[u8] = &[
            1, // format version
            4, b'a', b'c', b'm', b'e', // id
            4, b'A', b'c', b'm', b'e', // name
            1, 1, 1, 1, // collaboration, portal_invitations, masking, comments
            1, 0, // session_modes: [web]
            120, 8, 10, // ttl, max agents, max sessions (varints)
        ];
        assert_eq!(bytes, golden);
        let agent = AgentId::parse("ann").unwrap();
        assert_eq!(encode(&agent), vec![1, 3, b'a', b'n', b'n']);
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let mut bytes = encode(&account());
        bytes[0] = 9;
        assert!(matches!(
            decode::<Account>(&bytes),
            Err(CodecError::UnknownVersion(9))
        ));
        assert!(matches!(decode::<Account>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<Account>(&[1, 200]),
            Err(CodecError::Malformed(_))
        ));
        let mut trailing = encode(&account());
        trailing.push(0);
        assert!(matches!(
            decode::<Account>(&trailing),
            Err(CodecError::Malformed(_))
        ));
    }
}
