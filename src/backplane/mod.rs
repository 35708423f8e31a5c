//! The only place that knows there may be other nodes. Everything a node
//! shares with the others — provisioning data, presence, session state,
//! claims, timers and fan-out — goes through the [`Backplane`] trait.
//! `memory` is the embedded implementation; a Redis one plugs in beside it.

pub mod codec;
pub mod conformance;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use crate::domain::session::{IndexDelta, Target};
use crate::domain::{
    Account, AccountId, Agent, AgentId, Event, InvitationId, Message, Portal, PortalId, Session,
    SessionId,
};

/// A fan-out channel between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A session's customer stream(s).
    Session(AccountId, SessionId),
    /// One agent's streams.
    Agent(AccountId, AgentId),
    /// Every agent logged into a portal.
    Portal(AccountId, PortalId),
}

/// For whom a delivered session event is meant; the receiving node applies
/// the visibility gate with the matching viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// The session's agents.
    Participant,
    /// Recipients of an invitation.
    Recipient,
    /// The session's customer.
    Customer,
}

/// What travels on a topic.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// A committed session event.
    Session {
        /// Which session.
        session: SessionId,
        /// Meant for whom.
        route: Route,
        /// What happened.
        event: Arc<Event>,
    },
    /// An agent logged into a portal (`Some`) or out (`None`).
    Presence {
        /// Who.
        agent: AgentId,
        /// Where it is logged in now.
        portal: Option<PortalId>,
    },
}

/// A session's state with its version (1 for a new session).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// Bumped by every commit.
    pub version: u64,
    /// The state.
    pub session: Session,
}

/// One atomic change of a session: state, indexes, message, fan-out.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The version the change was computed from; 0 creates the session.
    pub expected_version: u64,
    /// The new state.
    pub session: Session,
    /// Index changes derived from the old and new state.
    pub delta: IndexDelta,
    /// A chat message to append.
    pub message: Option<Message>,
    /// What to publish once the change is stored.
    pub publish: Vec<(Topic, BusMessage)>,
    /// Timers to arm with the change (expiry of the invitations it opens):
    /// stored atomically with it, so no open invitation lacks its timer.
    pub deadlines: Vec<Deadline>,
}

/// How a commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored, at this version.
    Stored(u64),
    /// Someone else committed first: reload and retry.
    Conflict,
}

/// The result of claiming an invitation for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This agent holds the claim (also when it asks again).
    Won {
        /// Strictly increasing fencing token.
        fence: u64,
    },
    /// Another agent holds it.
    Lost {
        /// Who.
        by: AgentId,
    },
}

/// A timer: expire `invitation` of `session` at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// When.
    pub at: DateTime<Utc>,
    /// The account.
    pub account: AccountId,
    /// The session.
    pub session: SessionId,
    /// The invitation.
    pub invitation: InvitationId,
}

/// An agent's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Online {
    /// Who.
    pub agent: AgentId,
    /// Logged into which portal.
    pub portal: PortalId,
}

/// Why a backplane call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    /// The shared store cannot be reached now.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
}

/// Shorthand for backplane results.
pub type Result<T> = std::result::Result<T, BackplaneError>;

/// What a node shares with every other node.
#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// Stores an account; `true` if it is new.
    async fn put_account(&self, account: Account) -> Result<bool>;
    /// An account by id.
    async fn account(&self, id: &AccountId) -> Result<Option<Account>>;
    /// Stores a portal; `true` if it is new.
    async fn put_portal(&self, account: &AccountId, portal: Portal) -> Result<bool>;
    /// A portal by id.
    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>>;
    /// Every portal of an account.
    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>>;
    /// Stores an agent; `true` if it is new.
    async fn put_agent(&self, account: &AccountId, agent: Agent) -> Result<bool>;
    /// An agent by id.
    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>>;

    /// Logs an agent into a portal; returns the portal it was in before.
    async fn login(
        &self,
        account: &AccountId,
        agent: &AgentId,
        portal: &PortalId,
    ) -> Result<Option<PortalId>>;
    /// Logs an agent out; returns the portal it was in.
    async fn logout(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>>;
    /// The portal an agent is logged into.
    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>>;
    /// Every agent of the account logged in now.
    async fn online(&self, account: &AccountId) -> Result<Vec<Online>>;

    /// A session's state.
    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>>;
    /// Stores a change if the session is still at `expected_version`, then publishes.
    async fn commit(&self, account: &AccountId, commit: Commit) -> Result<Committed>;
    /// A session's chat, oldest first.
    async fn messages(&self, account: &AccountId, session: &SessionId) -> Result<Vec<Message>>;
    /// Active sessions an agent is in.
    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>>;
    /// Open invitations sent to a target (one agent, or a portal), with
    /// their sessions.
    async fn open_invitations(
        &self,
        account: &AccountId,
        target: &Target,
    ) -> Result<Vec<(InvitationId, SessionId)>>;
    /// The session an invitation belongs to.
    async fn invitation_session(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
    ) -> Result<Option<SessionId>>;

    /// First accept wins: claims `invitation` for `agent` unless someone else holds it.
    async fn claim(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
        ttl: Duration,
    ) -> Result<Claim>;
    /// Gives a claim back (the claimer could not join after all).
    async fn release(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
    ) -> Result<()>;

    /// Publishes to a topic (at most once; a hint, not the truth).
    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()>;
    /// Subscribes this node to a topic; returns once messages published from
    /// now on will arrive.
    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>>;
    /// This node serves a stream of `agent` (`held`) or stopped serving one:
    /// where presence expires, the node keeps such agents online.
    fn hold_presence(&self, _account: &AccountId, _agent: &AgentId, _held: bool) {}
    /// Bumped each time fan-out was interrupted and restored (messages may
    /// have been lost meanwhile): local streams must re-read the truth.
    fn resyncs(&self) -> watch::Receiver<u64>;

    /// Arms a timer; it fires once on one node through [`Backplane::take_due`].
    async fn schedule(&self, deadline: Deadline) -> Result<()>;
    /// The stream of timers that fell due (taken once, by the node's timer worker).
    /// A timer is delivered at least once: until [`Backplane::complete`] is
    /// called for it, it may be delivered again (to this or another node).
    fn take_due(&self) -> Option<mpsc::UnboundedReceiver<Deadline>>;
    /// A delivered timer was handled: do not deliver it again.
    async fn complete(&self, _deadline: &Deadline) -> Result<()> {
        Ok(())
    }

    /// Whether the shared store answers.
    async fn ping(&self) -> Result<()>;
}
