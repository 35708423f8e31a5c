//! The only place that knows there may be other nodes. Everything a node
//! shares with the others goes through one of the role traits below —
//! [`Directory`], [`Presence`], [`Sessions`], [`Claims`], [`Bus`],
//! [`Timers`], [`Health`], [`RateLimits`], [`Durability`], [`Idempotency`],
//! [`Audit`] —
//! which [`Backplane`] gathers. None has a default method: a new
//! implementation must say what each one does (and then pass the
//! conformance suite of `crates/collabd-test-support`).
//!
//! `memory` is the embedded implementation; `redis` the cluster one, with
//! every key built by `keys.rs`.

pub mod codec;
pub mod keys;
mod legacy;
pub mod memory;
pub mod plan;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use crate::domain::session::{SessionStatus, Target, Timer};
use crate::domain::{
    Account, AccountId, Agent, AgentId, AuditEntry, Event, Invitation, InvitationId, LogoutReason,
    Message, Outcome, Portal, PortalId, Session, SessionId,
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

impl Topic {
    /// How many messages a node buffers on this topic for a local listener
    /// that falls behind before the listener loses the oldest (and resyncs
    /// its streams from a snapshot: pub/sub is at most once anyway). The
    /// buffer is allocated whole when a node subscribes, so it is sized by
    /// kind: an agent's topic — one per connected agent, carrying only that
    /// agent's events — is small; a portal's or a session's is shared by
    /// many streams and takes bursts.
    pub fn capacity(&self) -> usize {
        match self {
            Topic::Agent(..) => 16,
            Topic::Session(..) => 64,
            Topic::Portal(..) => 256,
        }
    }
}

/// For whom a delivered session event is meant; the receiving node applies
/// the visibility gate with the matching viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Route {
    /// The session's agents.
    Participant,
    /// Recipients of an invitation.
    Recipient,
    /// The session's customer.
    Customer,
}

/// One committed event on its way to one kind of viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// The event's position in its commit: with the session and the
    /// version, it names the event, so a node that receives it on several
    /// topics views and serializes it once.
    pub index: u32,
    /// Meant for whom.
    pub route: Route,
    /// What happened.
    pub event: Arc<Event>,
}

/// What travels on a topic.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// What one commit of a session has for this topic, in order: one
    /// message per topic per commit, so a burst (a session ending with its
    /// invitations open) is one message, not one per event.
    Session {
        /// Which session.
        session: SessionId,
        /// The version the commit stored.
        version: u64,
        /// The events for this topic.
        events: Vec<Routed>,
    },
    /// An agent logged into a portal (`Some`) or out (`None`).
    Presence {
        /// Who.
        agent: AgentId,
        /// Where it is logged in now.
        portal: Option<PortalId>,
    },
    /// Someone else logged the agent out (its streams get `logged_out`).
    LoggedOut {
        /// Who.
        agent: AgentId,
        /// Why.
        reason: LogoutReason,
    },
}

/// A session's hot state with its version (1 for a new session).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// Bumped by every commit.
    pub version: u64,
    /// The state.
    pub session: Session,
}

/// A condition a commit checks atomically before it writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The agent who joins (or creates) the session.
    pub agent: AgentId,
    /// It must be active in fewer sessions than this.
    pub below: u32,
}

/// One atomic change of a session: its new hot state, what leaves it for
/// the history and the transcript, the indexes, the timers, the fan-out.
/// Borrowed: the backplane encodes it, nothing is cloned.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The version the change was computed from; 0 creates the session.
    pub expected_version: u64,
    /// The new hot state.
    pub session: &'a Session,
    /// What the command produced (closed invitations, the message, the
    /// index delta, timers to arm and disarm, whether it ended).
    pub outcome: &'a Outcome,
    /// What to publish once the change is stored.
    pub publish: &'a [(Topic, BusMessage)],
    /// Checked before anything is written.
    pub guard: Option<&'a Guard>,
    /// How long an ended session and everything of it is kept
    /// (`retention_secs`). The account's trail keeps this commit's entries that long
    /// too, but at least a day ([`crate::domain::policy::trail_kept`]).
    pub retention: Duration,
}

/// How a commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored, at this version.
    Stored(u64),
    /// Someone else committed first: reload and retry.
    Conflict,
    /// The guard did not hold: nothing was written.
    Refused,
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

/// A timer that fell due: handle it, then [`Timers::complete`] it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// When it was due.
    pub at: DateTime<Utc>,
    /// The account.
    pub account: AccountId,
    /// The session.
    pub session: SessionId,
    /// Which timer of the session.
    pub timer: Timer,
    /// Names this delivery: completing removes the timer only if it was not
    /// armed again meanwhile (a re-armed timer is a new one).
    pub lease: i64,
}

/// What a cached session state is worth.
#[derive(Debug, Clone, PartialEq)]
pub enum Fresh {
    /// Still the stored version.
    Current,
    /// Another node changed it: here is the stored one.
    Changed(Box<Versioned>),
    /// The session no longer exists (its retention ended).
    Gone,
}

/// Everything an accept needs to know, read in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptContext {
    /// The portal the accepting agent is logged into now.
    pub portal: Option<PortalId>,
    /// Sessions the accepting agent is active in.
    pub active_sessions: u32,
    /// The stored version of the session (`None`: no such session).
    pub version: Option<u64>,
    /// The session's state, when the caller's known version is not the
    /// stored one.
    pub current: Option<Versioned>,
    /// The invitation as its history holds it, if it is closed.
    pub closed: Option<Invitation>,
}

/// The collaboration window's raw material, read in one round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Every agent of the account online now.
    pub agents: Vec<WindowAgent>,
    /// The account's portals.
    pub portals: Vec<Portal>,
}

/// One online agent in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowAgent {
    /// Its profile.
    pub agent: Agent,
    /// The portal it is logged into.
    pub portal: PortalId,
    /// Sessions it is active in.
    pub active_sessions: u32,
}

/// Which of a session's two transcripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transcript {
    /// Every message, numbered by `seq` (what agents read).
    Agents,
    /// The messages the customer may read, numbered by `customer_seq`.
    Customer,
}

/// Why a backplane call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    /// The shared store cannot be reached now.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// A change was made but not confirmed on as many replicas as
    /// `backplane.wait_replicas` asks in time: it may or may not persist
    /// through a failover.
    #[error("change not confirmed by replicas: {0}")]
    Unconfirmed(String),
    /// An audited `put` found the record changed since it was read:
    /// nothing was written (read again and retry).
    #[error("the record changed since it was read")]
    Changed,
    /// Stored data could not be read (a bug, or a writer of another
    /// version): retrying does not help, so it is answered 500 and logged,
    /// not 503 "retry shortly".
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// Shorthand for backplane results.
pub type Result<T> = std::result::Result<T, BackplaneError>;

/// Audit entries of an administrative change, stored in the same atomic
/// step as the change, and how long the account keeps its trail.
#[derive(Debug, Clone, Copy)]
pub struct Audited<'a> {
    /// The entries, in order.
    pub entries: &'a [AuditEntry],
    /// How long the account's trail keeps them (`Policy::trail_retention`).
    pub retention: Duration,
    /// What the record must still be for a `put` to apply: the entries
    /// were made from it (a `put` that finds another answers
    /// [`BackplaneError::Changed`] and changes nothing).
    pub replaces: Replaces<'a>,
}

/// What a record must be for an audited `put` to replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaces<'a> {
    /// Whatever is there (nothing is recorded from it).
    Anything,
    /// Nothing: the record must be new.
    Nothing,
    /// The record as it was read ([`Stored::bytes`]).
    Bytes(&'a [u8]),
}

impl Audited<'static> {
    /// No entries: a change nobody asked to record (a test's set-up).
    pub const NONE: Self = Self {
        entries: &[],
        retention: Duration::ZERO,
        replaces: Replaces::Anything,
    };
}

/// A record as stored: its value and the bytes it was read from, which a
/// `put` can name as what it replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    /// The value.
    pub value: T,
    /// Its stored bytes.
    pub bytes: Vec<u8>,
}

/// A place in an account's audit trail: the entry's id, `ms-seq` (a Redis
/// stream id: milliseconds, then a sequence within the millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditCursor {
    /// Milliseconds since the epoch when the entry was stored.
    pub ms: u64,
    /// Its sequence within that millisecond.
    pub seq: u64,
}

impl AuditCursor {
    /// Just before the first entry stored at or after `ms`.
    pub fn before_ms(ms: u64) -> Option<Self> {
        Some(Self {
            ms: ms.checked_sub(1)?,
            seq: u64::MAX,
        })
    }
}

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for AuditCursor {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(Self {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// The audit trail, read back (entries are written by the changes
/// themselves: [`Sessions::commit`] and the [`Directory`] and [`Presence`]
/// changes that take [`Audited`]).
#[async_trait]
pub trait Audit: Send + Sync {
    /// A session's trail, oldest first: at most `limit` entries from
    /// position `from` (0 is the first); empty once the session is gone.
    async fn session_audit(
        &self,
        account: &AccountId,
        session: &SessionId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;
    /// The account's trail, oldest first: at most `limit` entries stored
    /// after `after` (from the oldest kept when `None`).
    async fn account_audit(
        &self,
        account: &AccountId,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<Vec<(AuditCursor, AuditEntry)>>;
}

/// Provisioning data: accounts, portals, agents.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Stores an account, and `audit`; `true` if it is new.
    async fn put_account(&self, account: &Account, audit: Audited<'_>) -> Result<bool>;
    /// An account by id.
    async fn account(&self, id: &AccountId) -> Result<Option<Account>>;
    /// An account with its stored bytes (what an audited `put` replaces).
    async fn account_record(&self, id: &AccountId) -> Result<Option<Stored<Account>>>;
    /// Stores a portal; `true` if it is new.
    async fn put_portal(&self, account: &AccountId, portal: &Portal) -> Result<bool>;
    /// A portal by id.
    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>>;
    /// Every portal of an account, sorted by id.
    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>>;
    /// Stores an agent, and `audit`; `true` if it is new.
    async fn put_agent(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<bool>;
    /// An agent by id.
    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>>;
    /// An agent with its stored bytes (what an audited `put` replaces).
    async fn agent_record(
        &self,
        account: &AccountId,
        id: &AgentId,
    ) -> Result<Option<Stored<Agent>>>;
    /// An account, one of its agents and when its tokens were last
    /// revoked, and a request taken from the calling token's bucket — in
    /// one round trip (every agent request starts with it).
    async fn account_and_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        token: &str,
        rate: Rate,
    ) -> Result<TokenHolder>;
    /// The same as [`Directory::account_and_agent`] without taking from a
    /// bucket (reads only): what an agent's open streams are checked against.
    async fn token_holder(&self, account: &AccountId, agent: &AgentId) -> Result<TokenHolder>;
    /// An account, whether the token's session is still open, and (if it
    /// is) a request taken from the customer token's bucket, in one round
    /// trip (every customer request starts with it). The token of an ended
    /// (or expired) session takes nothing: it no longer gets buckets. A
    /// request the token's bucket allows is then taken from the account's
    /// bucket of customer requests, which every customer of the account
    /// shares (a request the token's bucket refuses takes nothing from it).
    async fn account_for_token(
        &self,
        account: &AccountId,
        session: &SessionId,
        token: &str,
        rates: CustomerRates,
    ) -> Result<CustomerHolder>;
    /// Accounts in id order, after `after`, at most `limit`.
    async fn accounts(&self, after: Option<&AccountId>, limit: usize) -> Result<Vec<Account>>;
    /// Agents of an account in id order, after `after`, at most `limit`.
    async fn agents(
        &self,
        account: &AccountId,
        after: Option<&AgentId>,
        limit: usize,
    ) -> Result<Vec<Agent>>;
    /// Deletes an agent's record, with `audit`; `true` if it existed.
    async fn delete_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        audit: Audited<'_>,
    ) -> Result<bool>;
    /// Deletes a portal's record, with `audit`; `true` if it existed.
    async fn delete_portal(
        &self,
        account: &AccountId,
        portal: &PortalId,
        audit: Audited<'_>,
    ) -> Result<bool>;
    /// Deletes everything stored of an account except its revocation
    /// marks (they lapse on their own) and its audit trail (which gets
    /// `audit`, and expires with the account's retention); `true` if it
    /// existed.
    async fn delete_account(&self, account: &AccountId, audit: Audited<'_>) -> Result<bool>;
    /// Refuses the tokens of `agent` (of every agent of the account with
    /// `None`) minted before `at`; the mark is kept for `keep_for` (the
    /// longest a token lives) and never moves back in time. `audit` is
    /// stored with it.
    async fn revoke_tokens(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        at: DateTime<Utc>,
        keep_for: Duration,
        audit: Audited<'_>,
    ) -> Result<()>;
}

/// A token bucket's refill: `per_sec` requests a second, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests a second, sustained (at least 1).
    pub per_sec: u32,
    /// Requests at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// The two buckets of a customer's request: its token's, and its
/// account's (every customer of the account together), so that an account's
/// agents creating sessions cannot mint customer traffic without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerRates {
    /// The token's bucket.
    pub token: Rate,
    /// The account's bucket of customer requests.
    pub account: Rate,
}

/// Whether a request could be taken from its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateVerdict {
    /// Taken.
    #[default]
    Allowed,
    /// The bucket is empty: the next request fits after this long.
    Limited(Duration),
}

/// Token buckets shared by every node (one per token, one for the admin):
/// a request is refused (429) when its bucket is empty, whichever node it
/// reaches.
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Takes one request from the admin token's bucket.
    async fn take_admin(&self, rate: Rate) -> Result<RateVerdict>;
}

/// What checking an agent token reads: its account and agent as stored
/// now, and the moment before which its tokens are refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenHolder {
    /// The account, unless deleted.
    pub account: Option<Account>,
    /// The agent, unless deleted.
    pub agent: Option<Agent>,
    /// Tokens minted before this are refused (the later of the agent's
    /// and the account's revocation).
    pub not_before: Option<DateTime<Utc>>,
    /// Whether the calling token had a request left.
    pub rate: RateVerdict,
}

/// What checking a customer token reads.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerHolder {
    /// The account, unless deleted.
    pub account: Option<Account>,
    /// Whether the token's session exists and has not ended.
    pub session_open: bool,
    /// Whether the calling token had a request left (`Allowed`, untaken,
    /// when the session is not open).
    pub rate: RateVerdict,
}

/// Who is logged in where.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Logs `agent` into `portal`; returns the portal it was in before.
    async fn login(
        &self,
        account: &AccountId,
        agent: &Agent,
        portal: &PortalId,
    ) -> Result<Option<PortalId>>;
    /// Logs `agent` out, with `audit` (an administrator's logout: stored
    /// only if the agent was logged in); returns the portal it was in.
    async fn logout(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<Option<PortalId>>;
    /// The portal an agent is logged into.
    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>>;
    /// The agents logged into one portal now, sorted (one read, whatever
    /// the size of the account); `None` when there is no such portal.
    async fn online_in(
        &self,
        account: &AccountId,
        portal: &PortalId,
    ) -> Result<Option<Vec<AgentId>>>;
    /// The collaboration window's data (one round trip).
    async fn window(&self, account: &AccountId) -> Result<Window>;
    /// How many sessions each of `agents` is active in, in order (one
    /// round trip).
    async fn active_counts(&self, account: &AccountId, agents: &[AgentId]) -> Result<Vec<u32>>;
    /// This node serves a stream of `agent` (`held`) or stopped serving
    /// one: where presence expires, the node keeps such agents online.
    fn hold_presence(&self, account: &AccountId, agent: &AgentId, held: bool);
    /// Says at once, where other nodes can see it, that this node streams
    /// to `agent` (after [`Presence::hold_presence`]): if the node its
    /// streams were on died and it faded, it is online again.
    async fn hold(&self, _account: &AccountId, _agent: &AgentId) -> Result<()> {
        Ok(())
    }
    /// The stream of agents that faded because the node serving them died
    /// (taken once, by the node's fade worker, which withdraws their
    /// alerts). Only a backplane shared by several nodes has one.
    fn take_faded(&self) -> Option<mpsc::Receiver<Faded>> {
        None
    }
}

/// Agents of one account that faded: the node their streams were on died,
/// and no other streams to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faded {
    /// Whose.
    pub account: AccountId,
    /// Who (bounded by the account's agents on one node).
    pub agents: Vec<AgentId>,
}

/// Session state, history, transcripts and the indexes beside them.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// A session's hot state (`None` if it never existed or its retention ended).
    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>>;
    /// The state of a session whose version `known` the caller holds,
    /// sent only when it changed (one small read when it did not).
    async fn refresh(&self, account: &AccountId, session: &SessionId, known: u64) -> Result<Fresh>;
    /// Stores a change if the session is still at `expected_version` and
    /// the guard holds: state, history, transcript, indexes, timers and
    /// fan-out in one atomic step.
    async fn commit(&self, account: &AccountId, commit: Commit<'_>) -> Result<Committed>;
    /// What an accept of `invitation` by `agent` needs, in one round trip;
    /// the state is sent only when `known_version` is not the stored one.
    async fn accept_context(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
        agent: &AgentId,
        known_version: Option<u64>,
    ) -> Result<AcceptContext>;
    /// A closed invitation from the session's history.
    async fn closed_invitation(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
    ) -> Result<Option<Invitation>>;
    /// A page of a transcript, newest first: at most `limit` messages
    /// numbered below `before` (from the newest when `None`).
    async fn messages(
        &self,
        account: &AccountId,
        session: &SessionId,
        transcript: Transcript,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>>;
    /// Active sessions an agent is in, sorted.
    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>>;
    /// Open invitations sent to a target (one agent, or a portal).
    async fn open_invitations(
        &self,
        account: &AccountId,
        target: &Target,
    ) -> Result<Vec<(InvitationId, SessionId)>>;
    /// A page of an account's sessions with `status`, in the order they
    /// were created (active) or ended (ended), after `after`, at most
    /// `limit`; ended sessions past their retention are not listed.
    async fn sessions_page(
        &self,
        account: &AccountId,
        status: SessionStatus,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<(SessionCursor, Versioned)>>;
}

/// A place in an account's list of sessions: when the session was created
/// (active) or ended (ended), in milliseconds, and its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionCursor {
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// The session.
    pub session: SessionId,
}

impl SessionCursor {
    /// Where `session` is listed now.
    pub fn of(session: &Session) -> Self {
        let at = match &session.ended {
            Some(ending) => ending.at,
            None => session.created_at,
        };
        Self {
            at_ms: at.timestamp_millis(),
            session: session.id.clone(),
        }
    }
}

impl std::fmt::Display for SessionCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at_ms, self.session)
    }
}

impl std::str::FromStr for SessionCursor {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let (at, id) = s.split_once('.').ok_or(())?;
        Ok(Self {
            at_ms: at.parse().map_err(|_| ())?,
            session: SessionId::parse(id).map_err(|_| ())?,
        })
    }
}

/// First accept wins, across nodes.
#[async_trait]
pub trait Claims: Send + Sync {
    /// Claims `invitation` for `agent` unless someone else holds it.
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
}

/// Fan-out between nodes: at most once, a hint, never the truth.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes to a topic.
    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()>;
    /// Subscribes this node to a topic; returns once messages published from
    /// now on will arrive.
    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>>;
    /// Bumped each time fan-out was interrupted and restored (messages may
    /// have been lost meanwhile): local streams must re-read the truth.
    fn resyncs(&self) -> watch::Receiver<u64>;
}

/// How many due timers wait for a node's timer worker at most.
pub const DUE_BACKLOG: usize = 1024;

/// Durable timers: armed and disarmed by commits, fired once on one node.
#[async_trait]
pub trait Timers: Send + Sync {
    /// Arms (or moves) a timer outside a commit (a retry of a failed one).
    async fn schedule(
        &self,
        account: &AccountId,
        session: &SessionId,
        timer: &Timer,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// The stream of timers that fell due (taken once, by the node's timer
    /// worker). A timer is delivered at least once: until it is completed
    /// it may be delivered again (to this or another node). The stream is
    /// bounded ([`DUE_BACKLOG`]): a backplane takes no more due timers than
    /// the worker has room for, the rest wait where they are stored.
    fn take_due(&self) -> Option<mpsc::Receiver<Deadline>>;
    /// A delivered timer was handled: do not deliver it again (unless it was
    /// armed again since it was delivered).
    async fn complete(&self, deadline: &Deadline) -> Result<()>;
}

/// Whether the shared store answers.
#[async_trait]
pub trait Health: Send + Sync {
    /// `Ok` when the store and the fan-out are reachable.
    async fn ping(&self) -> Result<()>;
}

/// How long a change must survive: `backplane.wait_replicas`.
#[async_trait]
pub trait Durability: Send + Sync {
    /// Returns once every change this node made to `account` so far is on
    /// as many replicas as `backplane.wait_replicas` asks (at once when it
    /// asks none); `Unconfirmed` when they do not confirm within
    /// `backplane.wait_timeout_ms`.
    async fn confirm(&self, account: &AccountId) -> Result<()>;
}

/// Records that make a creating request safe to retry (`Idempotency-Key`).
/// The values are opaque to the backplane; each lives only as long as
/// asked, and a record belongs to its account (deleted with it).
#[async_trait]
pub trait Idempotency: Send + Sync {
    /// Stores `running` under `key` for `running_for` unless a record is
    /// there; returns that record if so (`None`: the caller now holds the
    /// key and must `record` or `forget` it).
    async fn reserve(
        &self,
        account: &AccountId,
        key: &str,
        running: &str,
        running_for: Duration,
    ) -> Result<Option<String>>;
    /// Replaces what is stored under `key`, kept for `keep_for`.
    async fn record(
        &self,
        account: &AccountId,
        key: &str,
        value: &str,
        keep_for: Duration,
    ) -> Result<()>;
    /// Deletes the record under `key`.
    async fn forget(&self, account: &AccountId, key: &str) -> Result<()>;
}

/// Everything a node shares with every other node.
pub trait Backplane:
    Directory
    + Presence
    + Sessions
    + Claims
    + Bus
    + Timers
    + Health
    + RateLimits
    + Durability
    + Idempotency
    + Audit
    + 'static
{
}

impl<T> Backplane for T where
    T: Directory
        + Presence
        + Sessions
        + Claims
        + Bus
        + Timers
        + Health
        + RateLimits
        + Durability
        + Idempotency
        + Audit
        + 'static
{
}
