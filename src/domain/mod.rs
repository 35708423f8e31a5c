//! Pure rules and types: no actix, no Redis, no I/O.

pub mod audit;
pub mod directory;
pub mod error;
pub mod id;
pub mod policy;
pub mod session;
pub mod visibility;

pub use audit::{Actor, ActorKind, AuditAction, AuditEntry};
pub use directory::{Account, Agent, AgentRef, DisplayName, LogoutReason, Portal};
pub use error::DomainError;
pub use id::{AccountId, AgentId, InvitationId, MessageId, PortalId, SessionId};
pub use policy::{Policy, PolicyInput, SessionMode};
pub use session::{Command, Event, Invitation, Message, Outcome, Rules, Session};

#[cfg(test)]
mod session_rules_tests;
#[cfg(test)]
mod visibility_props;
