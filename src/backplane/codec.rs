//! The node-to-node wire format: a one-byte format version followed by a
//! bincode (v2, serde mode) body. Only this module names bincode.
//!
//! The version is per type: a type's shape changes, its version goes up,
//! and everything else keeps being written as before (so that nodes of the
//! previous release still read it). Sessions are at version 4 (each side's
//! message and mask budgets counted apart); everything else, bus messages
//! and timers included, at version 3 (invitations have a kind: collaborate
//! or transfer). Versions 3 of a session, 2 (the session's bounded hot
//! state, messages numbered for the customer, accounts with the v2 policy
//! limits) and 1 (the first release) are still read by [`decode`], through
//! the shapes in `legacy.rs`, so a node of this release reads what an older
//! one stored.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::legacy;
use crate::domain::{Account, Agent, AgentId, Invitation, Message, Portal, Session};

/// The envelope's current format version: of every type whose shape has
/// not changed since (see [`Wire::VERSION`]), and of bus messages and timers.
pub const FORMAT_VERSION: u8 = 3;
/// A session's current format version (v3 plus each side's budgets).
pub const SESSION_FORMAT: u8 = 4;
/// The second release's format, still read.
pub const FORMAT_V2: u8 = 2;
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

/// A type stored or sent between nodes: the version it is written at, and
/// how to read it when an older release wrote it. Types whose shape did not
/// change read v1 as v2 and v2 as v3.
pub trait Wire: Serialize + DeserializeOwned {
    /// The version this release writes the type at.
    const VERSION: u8 = FORMAT_VERSION;

    /// Reads a v1 body.
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of(body)
    }

    /// Reads a v2 body.
    fn from_v2(body: &[u8]) -> Result<Self, CodecError> {
        body_of(body)
    }

    /// Reads a v3 body (of a type now written at a later version).
    fn from_v3(body: &[u8]) -> Result<Self, CodecError> {
        body_of(body)
    }
}

impl Wire for Portal {}
impl Wire for Agent {}
impl Wire for AgentId {}
impl Wire for Invitation {
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        Self::from_v2(body)
    }

    fn from_v2(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::InvitationV2>(body).map(Into::into)
    }
}

impl Wire for Account {
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::AccountV1>(body).map(Into::into)
    }
}

impl Wire for Session {
    const VERSION: u8 = SESSION_FORMAT;

    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::SessionV1>(body).map(Into::into)
    }

    fn from_v2(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::SessionV2>(body).map(Into::into)
    }

    fn from_v3(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::SessionV3>(body).map(Into::into)
    }
}

impl Wire for Message {
    fn from_v1(body: &[u8]) -> Result<Self, CodecError> {
        body_of::<legacy::MessageV1>(body).map(Into::into)
    }
}

/// Encodes a stored value at its type's current version.
pub fn encode<T: Wire>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_at(T::VERSION, value, &mut out);
    out
}

/// Encodes a value that exists only in the current format (bus messages,
/// timers; read back with [`decode_current`]).
pub fn encode_current<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_at(FORMAT_VERSION, value, &mut out);
    out
}

fn encode_at<T: Serialize + ?Sized>(version: u8, value: &T, out: &mut Vec<u8>) {
    out.push(version);
    // Encoding our own serde types into a Vec cannot fail: no I/O, no
    // unsupported serde features (no flatten/tag/untagged/skip on wire types).
    if let Err(e) = bincode::serde::encode_into_std_write(value, out, config()) {
        tracing::error!(error = %e, "wire encoding failed");
    }
}

/// Decodes a value from an envelope of a known version.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version == T::VERSION {
        return body_of(body);
    }
    match version {
        FORMAT_VERSION => T::from_v3(body),
        FORMAT_V2 => T::from_v2(body),
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
    use crate::domain::directory::display;
    use crate::domain::policy::{Policy, SessionMode};
    use crate::domain::{AccountId, PortalId, Session};

    fn account() -> Account {
        Account {
            id: AccountId::parse("acme").unwrap(),
            name: display("Acme"),
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
            name: display("Tier 1"),
        };
        assert_eq!(decode::<Portal>(&encode(&p)).unwrap(), p);
    }

    /// Golden bytes of v3: if this changes, nodes of two versions can no
    /// longer read each other's data — bump FORMAT_VERSION and keep
    /// decoding this one.
    #[test]
    fn the_v3_format_is_stable() {
        let bytes = encode(&account());
        let golden: &[u8] = &[
            3, // format version
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
        assert_eq!(encode(&agent), vec![3, 3, b'a', b'n', b'n']);
        // An account did not change from v2 to v3: v2's bytes read the same.
        let mut v2 = bytes.clone();
        v2[0] = FORMAT_V2;
        assert_eq!(decode::<Account>(&v2).unwrap(), account());
    }

    /// A session and an invitation stored by v2 (no invitation kind) read
    /// as collaborations.
    #[test]
    fn v2_sessions_and_invitations_read_as_collaborations() {
        use crate::domain::session::{InvitationKind, Invite, Rules, Target};
        use crate::domain::{AgentRef, InvitationId, SessionId};
        let policy = Policy::default();
        let rules = Rules {
            policy: &policy,
            now: chrono::Utc::now(),
        };
        let lead = AgentRef {
            id: AgentId::parse("lead").unwrap(),
            name: display("Lead"),
        };
        let (mut session, _) = Session::create(
            SessionId::random(),
            AccountId::parse("acme").unwrap(),
            SessionMode::Web,
            lead.clone(),
            display("Carl"),
            rules,
        )
        .unwrap();
        let ann = AgentId::parse("ann").unwrap();
        let invite = Invite {
            id: InvitationId::within(&session.id),
            inviter: lead.id.clone(),
            target: Target::Agent(ann.clone()),
            kind: InvitationKind::Collaborate,
            masked: false,
            comment: None,
            online: vec![ann],
            escalate: None,
            target_busy: false,
            escalation_online: Vec::new(),
        };
        session.apply(&invite.into(), rules).unwrap();
        let i = session.invitations[0].clone();
        let v2_invitation = legacy::InvitationV2 {
            id: i.id.clone(),
            session: i.session.clone(),
            inviter: i.inviter.clone(),
            target: i.target.clone(),
            masked: i.masked,
            comment: i.comment.clone(),
            recipients: i.recipients.clone(),
            declined_by: i.declined_by.clone(),
            unavailable: i.unavailable.clone(),
            status: i.status,
            accepted_by: i.accepted_by.clone(),
            fence: i.fence,
            created_at: i.created_at,
            expires_at: i.expires_at,
            closed_reason: i.closed_reason,
        };
        let mut bytes = encode_current(&v2_invitation);
        bytes[0] = FORMAT_V2;
        assert_eq!(decode::<Invitation>(&bytes).unwrap(), i);
        let s = session.clone();
        let v2_session = legacy::SessionV2 {
            id: s.id,
            account: s.account,
            mode: s.mode,
            created_at: s.created_at,
            ended: s.ended,
            lead: s.lead,
            participants: s.participants,
            customer: s.customer,
            invitations: vec![v2_invitation],
            counters: legacy::CountersV2 {
                messages: s.counters.messages,
                customer_messages: s.counters.customer_messages,
                invitations: s.counters.invitations,
            },
            last_activity: s.last_activity,
        };
        let mut bytes = encode_current(&v2_session);
        bytes[0] = FORMAT_V2;
        assert_eq!(decode::<Session>(&bytes).unwrap(), session);
        // And today's writes the kind: it round-trips.
        assert_eq!(decode::<Session>(&encode(&session)).unwrap(), session);
    }

    /// A session just created by its lead.
    fn fresh_session() -> Session {
        let policy = Policy::default();
        let rules = crate::domain::session::Rules {
            policy: &policy,
            now: chrono::Utc::now(),
        };
        let lead = crate::domain::AgentRef {
            id: AgentId::parse("lead").unwrap(),
            name: display("Lead"),
        };
        Session::create(
            crate::domain::SessionId::random(),
            AccountId::parse("acme").unwrap(),
            SessionMode::Web,
            lead,
            display("Carl"),
            rules,
        )
        .unwrap()
        .0
    }

    /// Sessions alone moved to v4: everything else is written as before,
    /// so a node of the previous release still reads it.
    #[test]
    fn only_sessions_are_written_at_v4() {
        let session = fresh_session();
        assert_eq!(encode(&session)[0], SESSION_FORMAT);
        assert_eq!(encode(&account())[0], FORMAT_VERSION);
        // A v4 envelope is no account, a v3 body under a v4 byte no session.
        let mut bytes = encode(&account());
        bytes[0] = SESSION_FORMAT;
        assert!(matches!(
            decode::<Account>(&bytes),
            Err(CodecError::UnknownVersion(4))
        ));
    }

    /// A v3 session counted one message budget and one mask budget: read
    /// today, every message the customer could read counts on its side
    /// (at least what it wrote), and every mask change on the lead's.
    #[test]
    fn v3_sessions_read_with_each_sides_budget() {
        let s = fresh_session();
        let v3 = legacy::SessionV3 {
            id: s.id.clone(),
            account: s.account.clone(),
            mode: s.mode,
            created_at: s.created_at,
            ended: s.ended,
            lead: s.lead.clone(),
            participants: s.participants.clone(),
            customer: s.customer.clone(),
            invitations: s.invitations.clone(),
            counters: legacy::CountersV3 {
                messages: 10,
                customer_messages: 7,
                invitations: 2,
                mask_changes: 5,
            },
            last_activity: s.last_activity,
        };
        let bytes = encode_current(&v3);
        assert_eq!(bytes[0], FORMAT_VERSION);
        let read = decode::<Session>(&bytes).unwrap();
        assert_eq!(read.counters.messages, 10);
        assert_eq!(read.counters.customer_posts, 7);
        assert_eq!(read.counters.agent_posts(), 3);
        assert_eq!(read.counters.mask_changes, 5);
        assert_eq!(read.counters.collaborator_mask_changes, 0);
        assert_eq!(read.counters.invitations, 2);
        // Under a v4 byte, v3's shorter body does not pass for a session.
        let mut wrong = bytes.clone();
        wrong[0] = SESSION_FORMAT;
        assert!(matches!(
            decode::<Session>(&wrong),
            Err(CodecError::Malformed(_))
        ));
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
            decode::<Account>(&[FORMAT_VERSION, 200]),
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
