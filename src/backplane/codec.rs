//! The node-to-node wire format: a one-byte format version followed by a
//! bincode (v2, serde mode) body. Only this module names bincode.
//!
//! Version 2 is what this release writes: the session's bounded hot state,
//! messages numbered for the customer, accounts with the v2 policy limits.
//! Version 1 is what the first release wrote; [`decode`] still reads it
//! (through the shapes in `legacy.rs`), so a node of this release reads what
//! an older one stored.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::legacy;
use crate::domain::{Account, Agent, AgentId, Invitation, Message, Portal, Session};

/// The envelope's current format version.
pub const FORMAT_VERSION: u8 = 2;
/// The first release's format, still read.
pub const FORMAT_V1: u8 = 1;

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

/// A type stored or sent between nodes: how to read it when an older
/// release wrote it. Types whose shape did not change read v1 as v2.
pub trait Wire: Serialize + DeserializeOwned {
    /// Reads a v1 body.
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of(body)
    }
}

impl Wire for Portal {}
impl Wire for Agent {}
impl Wire for AgentId {}
impl Wire for Invitation {}

impl Wire for Account {
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::AccountV1>(body).map(Into::into)
    }
}

impl Wire for Session {
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::SessionV1>(body).map(Into::into)
    }
}

impl Wire for Message {
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::MessageV1>(body).map(Into::into)
    }
}

/// Encodes a value in the current envelope.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out);
    out
}

/// Appends a value in the current envelope to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    // Encoding our own serde types into a Vec cannot fail: no I/O, no
    // unsupported serde features (no flatten/tag/untagged/skip on wire types).
    if let Err(e) = bincode::serde::encode_into_std_write(value, out, config()) {
        tracing::error!(error = %e, "wire encoding failed");
    }
}

/// Decodes a value from an envelope of a known version.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        FORMAT_VERSION => body_of(body),
        FORMAT_V1 => T::from_v1(body),
        other => Err(CodecError::UnknownVersion(other)),
    }
}

/// Decodes a value that exists only in the current format (bus messages,
/// timers): an older release's bytes are refused.
pub fn decode_current<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_VERSION, body)) => body_of(body),
        Some((&other, _)) => Err(CodecError::UnknownVersion(other)),
    }
}

fn body_of<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Policy, SessionMode};
    use crate::domain::{AccountId, PortalId};

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

    /// Golden bytes of v2: if this changes, nodes of two versions can no
    /// longer read each other's data — bump FORMAT_VERSION and keep
    /// decoding this one.
    #[test]
    fn the_v2_format_is_stable() {
        let bytes = encode(&account());
        let golden: &[u8] = &[
            2, // format version
            4, b'a', b'c', b'm', b'e', // id
            4, b'A', b'c', b'm', b'e', // name
            1, 1, 1, 1, // collaboration, portal_invitations, masking, comments
            1, 0, // session_modes: [web]
            120, 8, 10, // ttl, max agents, max sessions (varints)
            16, // max pending invitations
            251, 0x10, 0x27, // max messages: 10000 (u16 varint)
            251, 0x10, 0x27, // max invitations: 10000
            251, 0x10, 0x0e, // idle timeout: 3600
            252, 0x80, 0x3a, 0x09, 0x00, // retention: 604800 (u32 varint)
        ];
        assert_eq!(bytes, golden);
        let agent = AgentId::parse("ann").unwrap();
        assert_eq!(encode(&agent), vec![2, 3, b'a', b'n', b'n']);
    }

    /// Golden bytes of v1, as the first release wrote them: still read, with
    /// the v2 limits at their defaults.
    #[test]
    fn the_v1_format_is_still_read() {
        let golden_v1: &[u8] = &[
            1, // format version
            4, b'a', b'c', b'm', b'e', // id
            4, b'A', b'c', b'm', b'e', // name
            1, 1, 1, 1, // collaboration, portal_invitations, masking, comments
            1, 0, // session_modes: [web]
            120, 8, 10, // ttl, max agents, max sessions (varints)
        ];
        assert_eq!(decode::<Account>(golden_v1).unwrap(), account());
        assert_eq!(
            decode::<AgentId>(&[1, 3, b'a', b'n', b'n']).unwrap(),
            AgentId::parse("ann").unwrap()
        );
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
            decode::<Account>(&[2, 200]),
            Err(CodecError::Malformed(_))
        ));
        let mut trailing = encode(&account());
        trailing.push(0);
        assert!(matches!(
            decode::<Account>(&trailing),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            decode_current::<AgentId>(&[1, 3, b'a', b'n', b'n']),
            Err(CodecError::UnknownVersion(1))
        ));
    }
}
