//! The embedded backplane: in-process maps and broadcast channels. One node,
//! no Redis; the same semantics as the cluster backplane, checked by the same
//! conformance suite.
//!
//! Why a std `Mutex` around one `Store`: every operation is a few map
//! lookups with no `.await` inside, so holding a plain lock is shorter than
//! any async lock's bookkeeping, and one lock makes each commit atomic the
//! way the Redis commit script is. Session state is kept encoded (the same
//! codec as on Redis): the session actor keeps the live copy and changes it
//! in place, so storing it costs an encoding, never a clone of the session.
//!
//! The rooms are the Redis backplane's: `commit.rs` (a commit's effects on
//! the maps), one file per role trait (`directory`, `presence`,
//! `sessions`, `claims`, `bus`, `timers`, `audit`, `limits`, `health`,
//! `idempotency`), and here the store they all share.

mod audit;
mod bus;
mod claims;
mod commit;
mod directory;
mod health;
mod idempotency;
mod limits;
mod presence;
mod sessions;
mod timers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::{
    Audited, BackplaneError, BusMessage, Deadline, Replaces, Result, SessionCursor, Stored, Topic,
    codec,
};
use crate::domain::session::Target;
use crate::domain::{
    Account, AccountId, Agent, AgentId, AuditEntry, Invitation, InvitationId, Message, Portal,
    PortalId, SessionId,
};
use audit::AuditLog;
use limits::Bucket;
use timers::TimerWheel;

/// How long a delivered timer is leased before it is delivered again (the
/// timer worker failed to complete it).
const TIMER_LEASE: Duration = Duration::from_secs(15);
/// How often expired claims and sessions past their retention are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A session as stored: encoded hot state, transcripts, history.
#[derive(Default)]
struct StoredSession {
    version: u64,
    state: Vec<u8>,
    chat: Vec<Message>,
    /// Positions in `chat` of the messages the customer may read.
    customer_chat: Vec<u32>,
    history: HashMap<InvitationId, Invitation>,
    /// The session's audit trail.
    audit: Vec<AuditEntry>,
    /// Set when the session ended: it is deleted then.
    delete_at: Option<Instant>,
}

impl StoredSession {
    fn live(&self, now: Instant) -> bool {
        self.delete_at.is_none_or(|at| at > now)
    }
}

/// Everything of one account.
#[derive(Default)]
struct AccountData {
    account: Option<Account>,
    portals: BTreeMap<PortalId, Portal>,
    agents: HashMap<AgentId, Agent>,
    presence: HashMap<AgentId, PortalId>,
    portal_online: HashMap<PortalId, BTreeSet<AgentId>>,
    agent_sessions: HashMap<AgentId, BTreeSet<SessionId>>,
    open: HashMap<Target, BTreeMap<InvitationId, SessionId>>,
    sessions: HashMap<SessionId, StoredSession>,
    claims: HashMap<InvitationId, (AgentId, u64, Instant)>,
    fence: u64,
    /// Active sessions in the order they were created.
    active_index: BTreeSet<SessionCursor>,
    /// Ended sessions (until their retention ends) in the order they ended.
    ended_index: BTreeSet<SessionCursor>,
    /// Idempotency records, agents' and customers' apart.
    idempotency: idempotency::Records,
}

impl AccountData {
    fn session(&self, id: &SessionId, now: Instant) -> Option<&StoredSession> {
        self.sessions.get(id).filter(|s| s.live(now))
    }
}

#[derive(Default)]
struct Store {
    accounts: HashMap<AccountId, AccountData>,
    topics: HashMap<Topic, broadcast::Sender<Arc<BusMessage>>>,
    timers: TimerWheel,
    /// Revocation marks: tokens of the agent (of every agent of the
    /// account with `None`) minted before the time (ms) are refused; each
    /// mark lapses with the longest-lived token it could refuse. Outside
    /// `accounts`: a deleted account's marks outlive it.
    revoked: HashMap<(AccountId, Option<AgentId>), (i64, Instant)>,
    /// Token buckets by token (`None`: the admin's).
    buckets: HashMap<Option<(AccountId, String)>, Bucket>,
    /// Audit trails by account. Outside `accounts`: a deleted account's
    /// trail (which records its deletion) outlives it, until it expires.
    audit: HashMap<AccountId, AuditLog>,
}

impl Store {
    fn data(&self, account: &AccountId) -> Option<&AccountData> {
        self.accounts.get(account)
    }

    fn data_mut(&mut self, account: &AccountId) -> &mut AccountData {
        self.accounts.entry(account.clone()).or_default()
    }

    fn publish(&mut self, topic: &Topic, message: BusMessage) {
        if let Some(tx) = self.topics.get(topic)
            && tx.send(Arc::new(message)).is_err()
        {
            // Nobody listens any more: forget the topic.
            self.topics.remove(topic);
        }
    }

    /// Drops expired claims, sessions whose retention ended and lapsed
    /// revocation marks.
    fn sweep(&mut self, now: Instant) {
        for data in self.accounts.values_mut() {
            data.claims.retain(|_, (_, _, until)| *until > now);
            data.sessions.retain(|_, s| s.live(now));
            let sessions = &data.sessions;
            data.ended_index
                .retain(|c| sessions.contains_key(&c.session));
        }
        self.revoked.retain(|_, (_, until)| *until > now);
        self.buckets.retain(|_, b| b.full_at > now);
        for log in self.audit.values_mut() {
            log.prune(now);
        }
        self.audit.retain(|_, log| !log.entries.is_empty());
    }

    /// Stores `audit` in its account's trail.
    fn record(&mut self, account: &AccountId, audit: Audited<'_>, now: Instant) {
        if !audit.entries.is_empty() {
            self.audit
                .entry(account.clone())
                .or_default()
                .append(audit, now);
        }
    }

    /// A live revocation mark.
    fn revocation(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        now: Instant,
    ) -> Option<i64> {
        self.revoked
            .get(&(account.clone(), agent.cloned()))
            .filter(|(_, until)| *until > now)
            .map(|(at, _)| *at)
    }
}

/// The in-memory backplane.
pub struct MemoryBackplane {
    store: Arc<Mutex<Store>>,
    wake: Arc<Notify>,
    due: Mutex<Option<mpsc::Receiver<Deadline>>>,
    due_tx: mpsc::Sender<Deadline>,
    resync: watch::Sender<u64>,
}

impl Default for MemoryBackplane {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain maps behind; they stay usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl MemoryBackplane {
    /// An empty backplane.
    pub fn new() -> Self {
        let (due_tx, due_rx) = mpsc::channel(super::DUE_BACKLOG);
        Self {
            store: Arc::default(),
            wake: Arc::default(),
            due: Mutex::new(Some(due_rx)),
            due_tx,
            resync: watch::Sender::new(0),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }
}

/// Hands timers to the node as they fall due and sweeps what expired.
async fn drive_timers(
    store: std::sync::Weak<Mutex<Store>>,
    wake: Arc<Notify>,
    due: mpsc::Sender<Deadline>,
) {
    loop {
        let Some(store) = store.upgrade() else {
            return;
        };
        let (fired, next) = {
            let mut s = lock(&store);
            s.sweep(Instant::now());
            let fired = s.timers.take_due(now_ms(), due.capacity());
            (fired, s.timers.next_due())
        };
        drop(store);
        for deadline in fired {
            // Room was counted before taking: only this task sends.
            if due.try_send(deadline).is_err() && due.is_closed() {
                return;
            }
        }
        let wait = next
            .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64))
            .unwrap_or(SWEEP_INTERVAL)
            .min(SWEEP_INTERVAL);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}

/// A record with the bytes it is stored as (here: its encoding).
fn stored<T: codec::Wire>(value: T) -> Stored<T> {
    let bytes = codec::encode(&value);
    Stored { value, bytes }
}

/// Whether `current` is what an audited `put` expects to replace.
fn replaces<T: codec::Wire>(current: Option<&T>, expected: Replaces<'_>) -> Result<()> {
    let holds = match expected {
        Replaces::Anything => true,
        Replaces::Nothing => current.is_none(),
        Replaces::Bytes(bytes) => current.is_some_and(|c| codec::encode(c) == bytes),
    };
    if holds {
        Ok(())
    } else {
        Err(BackplaneError::Changed)
    }
}
