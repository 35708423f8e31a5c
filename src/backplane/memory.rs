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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::plan::{self, Effect};
use super::{
    AcceptContext, Audit, AuditCursor, Audited, BackplaneError, Bus, BusMessage, Claim, Claims,
    Commit, Committed, Deadline, Directory, Durability, Fresh, Health, Idempotency, Presence, Rate,
    RateLimits, RateVerdict, Replaces, Result, SessionCursor, Sessions, Stored, Timers,
    TokenHolder, Topic, Transcript, Versioned, Window, WindowAgent, codec,
};
use crate::domain::audit::MAX_ACCOUNT_ENTRIES;
use crate::domain::session::{SessionStatus, Target, Timer};
use crate::domain::{
    Account, AccountId, Agent, AgentId, AuditEntry, Invitation, InvitationId, Message, Portal,
    PortalId, SessionId,
};

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
    /// Idempotency records by key: until when, and the value.
    idempotency: HashMap<String, (Instant, String)>,
}

impl AccountData {
    fn session(&self, id: &SessionId, now: Instant) -> Option<&StoredSession> {
        self.sessions.get(id).filter(|s| s.live(now))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TimerKey {
    account: AccountId,
    session: SessionId,
    timer: TimerName,
}

/// `Timer` with an order, for the timer wheel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerName {
    Expiry(InvitationId),
    Idle,
    Escalate(InvitationId),
}

impl From<&Timer> for TimerName {
    fn from(t: &Timer) -> Self {
        match t {
            Timer::Expiry(i) => TimerName::Expiry(i.clone()),
            Timer::Idle => TimerName::Idle,
            Timer::Escalate(i) => TimerName::Escalate(i.clone()),
        }
    }
}

impl From<&TimerName> for Timer {
    fn from(t: &TimerName) -> Self {
        match t {
            TimerName::Expiry(i) => Timer::Expiry(i.clone()),
            TimerName::Idle => Timer::Idle,
            TimerName::Escalate(i) => Timer::Escalate(i.clone()),
        }
    }
}

/// Timers by due time; each entry carries a sequence number that names
/// its arming (so completing a delivery does not remove a re-armed timer).
#[derive(Default)]
struct TimerWheel {
    due: BTreeMap<(i64, u64), TimerKey>,
    by_key: HashMap<TimerKey, (i64, u64)>,
    seq: u64,
}

impl TimerWheel {
    fn arm(&mut self, key: TimerKey, at_ms: i64) -> bool {
        self.disarm(&key);
        self.seq += 1;
        let slot = (at_ms, self.seq);
        let earliest = self.due.keys().next().is_none_or(|first| slot < *first);
        self.due.insert(slot, key.clone());
        self.by_key.insert(key, slot);
        earliest
    }

    fn disarm(&mut self, key: &TimerKey) {
        if let Some(slot) = self.by_key.remove(key) {
            self.due.remove(&slot);
        }
    }

    fn next_due(&self) -> Option<i64> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Delivers what fell due, at most `room` of it, leasing each (it comes
    /// back unless completed).
    fn take_due(&mut self, now_ms: i64, room: usize) -> Vec<Deadline> {
        let due: Vec<((i64, u64), TimerKey)> = self
            .due
            .range(..(now_ms + 1, 0))
            .take(room)
            .map(|(slot, key)| (*slot, key.clone()))
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for ((at, _), key) in due {
            self.arm(key.clone(), now_ms + TIMER_LEASE.as_millis() as i64);
            let lease = self.by_key.get(&key).map_or(0, |(_, seq)| *seq as i64);
            out.push(Deadline {
                at: DateTime::from_timestamp_millis(at).unwrap_or_else(Utc::now),
                account: key.account.clone(),
                session: key.session.clone(),
                timer: Timer::from(&key.timer),
                lease,
            });
        }
        out
    }

    fn complete(&mut self, key: &TimerKey, lease: i64) {
        if self
            .by_key
            .get(key)
            .is_some_and(|(_, seq)| *seq as i64 == lease)
        {
            self.disarm(key);
        }
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

/// An account's audit trail: entries by id, oldest first, each stored
/// until its account's retention after it was written.
#[derive(Default)]
struct AuditLog {
    entries: std::collections::VecDeque<(AuditCursor, Instant, AuditEntry)>,
    last: Option<AuditCursor>,
}

impl AuditLog {
    /// Appends `audit`'s entries and drops what is past retention or bound.
    fn append(&mut self, audit: Audited<'_>, now: Instant) {
        for entry in audit.entries {
            self.push(entry, now + audit.retention);
        }
        self.prune(now);
    }

    /// Appends one entry, kept until `until`, with an id after the last one
    /// (as a Redis stream numbers them); the oldest go past the bound.
    fn push(&mut self, entry: &AuditEntry, until: Instant) {
        let ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let id = match self.last {
            Some(last) if last.ms >= ms => AuditCursor {
                ms: last.ms,
                seq: last.seq + 1,
            },
            _ => AuditCursor { ms, seq: 0 },
        };
        self.last = Some(id);
        self.entries.push_back((id, until, entry.clone()));
        while self.entries.len() > MAX_ACCOUNT_ENTRIES {
            self.entries.pop_front();
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|(_, until, _)| *until <= now)
        {
            self.entries.pop_front();
        }
    }
}

/// A token bucket: what is left, when that was, and when it will be full
/// again (then it can be forgotten: a new bucket starts full).
struct Bucket {
    tokens: f64,
    at: Instant,
    full_at: Instant,
}

impl Store {
    /// Takes one request from a bucket.
    fn take(&mut self, key: Option<(AccountId, String)>, rate: Rate, now: Instant) -> RateVerdict {
        let per_sec = f64::from(rate.per_sec.max(1));
        let burst = f64::from(rate.burst.max(1));
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            full_at: now,
        });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * per_sec;
        let tokens = (bucket.tokens + refilled).min(burst);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            bucket.at = now;
            bucket.full_at = now + Duration::from_secs_f64((burst - bucket.tokens) / per_sec);
            RateVerdict::Allowed
        } else {
            RateVerdict::Limited(Duration::from_secs_f64((1.0 - tokens) / per_sec))
        }
    }
}

impl Store {
    /// Carries out one effect of `commit` (its hot state is stored
    /// already); `true` if it armed a timer earlier than any before.
    fn apply(
        &mut self,
        account: &AccountId,
        commit: &Commit<'_>,
        effect: Effect<'_>,
        now: Instant,
    ) -> bool {
        let session = commit.session;
        let id = &session.id;
        let Store {
            accounts,
            timers,
            audit,
            ..
        } = self;
        let data = accounts.entry(account.clone()).or_default();
        let Some(stored) = data.sessions.get_mut(id) else {
            return false;
        };
        let timer_key = |timer: &Timer| TimerKey {
            account: account.clone(),
            session: id.clone(),
            timer: TimerName::from(timer),
        };
        match effect {
            Effect::Listed => {
                // A session deleted after its retention may not come back
                // with its old transcript.
                *stored = StoredSession {
                    version: stored.version,
                    state: std::mem::take(&mut stored.state),
                    ..StoredSession::default()
                };
                data.active_index.insert(SessionCursor::of(session));
            }
            Effect::Posted {
                message,
                to_customer,
            } => {
                if to_customer {
                    stored.customer_chat.push(stored.chat.len() as u32);
                }
                stored.chat.push(message.clone());
            }
            Effect::Audited(entry) => {
                stored.audit.push(entry.clone());
                audit
                    .entry(account.clone())
                    .or_default()
                    .push(entry, now + commit.retention);
            }
            Effect::AuditTrimmed => {
                if let Some(log) = audit.get_mut(account) {
                    log.prune(now);
                }
            }
            Effect::Archived(invitation) => {
                stored
                    .history
                    .insert(invitation.id.clone(), invitation.clone());
            }
            Effect::ClaimDropped(invitation) => {
                data.claims.remove(invitation);
            }
            Effect::Opened { invitation, target } => {
                data.open
                    .entry(target.clone())
                    .or_default()
                    .insert(invitation.clone(), id.clone());
            }
            Effect::Unlisted { invitation, target } => {
                if let Some(open) = data.open.get_mut(target) {
                    open.remove(invitation);
                    if open.is_empty() {
                        data.open.remove(target);
                    }
                }
            }
            Effect::Joined(agent) => {
                data.agent_sessions
                    .entry(agent.clone())
                    .or_default()
                    .insert(id.clone());
            }
            Effect::Left(agent) => {
                if let Some(set) = data.agent_sessions.get_mut(agent) {
                    set.remove(id);
                    if set.is_empty() {
                        data.agent_sessions.remove(agent);
                    }
                }
            }
            Effect::Disarmed(timer) => timers.disarm(&timer_key(timer)),
            Effect::Armed(timer, at) => return timers.arm(timer_key(timer), at.timestamp_millis()),
            Effect::Ended { retention } => {
                stored.delete_at = Some(now + retention);
                data.active_index.remove(&SessionCursor {
                    at_ms: session.created_at.timestamp_millis(),
                    session: id.clone(),
                });
                data.ended_index.insert(SessionCursor::of(session));
            }
        }
        false
    }

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
fn stored<T: serde::Serialize>(value: T) -> Stored<T> {
    let bytes = codec::encode(&value);
    Stored { value, bytes }
}

/// Whether `current` is what an audited `put` expects to replace.
fn replaces<T: serde::Serialize>(current: Option<&T>, expected: Replaces<'_>) -> Result<()> {
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

#[async_trait]
impl Directory for MemoryBackplane {
    async fn put_account(&self, account: &Account, audit: Audited<'_>) -> Result<bool> {
        let mut s = self.store();
        let data = s.data_mut(&account.id);
        replaces(data.account.as_ref(), audit.replaces)?;
        let new = data.account.replace(account.clone()).is_none();
        s.record(&account.id, audit, Instant::now());
        Ok(new)
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        Ok(self.store().data(id).and_then(|d| d.account.clone()))
    }

    async fn account_record(&self, id: &AccountId) -> Result<Option<Stored<Account>>> {
        Ok(self.account(id).await?.map(stored))
    }

    async fn put_portal(&self, account: &AccountId, portal: &Portal) -> Result<bool> {
        let mut s = self.store();
        let data = s.data_mut(account);
        Ok(data
            .portals
            .insert(portal.id.clone(), portal.clone())
            .is_none())
    }

    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.portals.get(id).cloned()))
    }

    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>> {
        Ok(self
            .store()
            .data(account)
            .map(|d| d.portals.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn put_agent(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let mut s = self.store();
        let data = s.data_mut(account);
        replaces(data.agents.get(&agent.id), audit.replaces)?;
        let new = data
            .agents
            .insert(agent.id.clone(), agent.clone())
            .is_none();
        s.record(account, audit, Instant::now());
        Ok(new)
    }

    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.agents.get(id).cloned()))
    }

    async fn agent_record(
        &self,
        account: &AccountId,
        id: &AgentId,
    ) -> Result<Option<Stored<Agent>>> {
        Ok(self.agent(account, id).await?.map(stored))
    }

    async fn account_and_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        token: &str,
        rate: Rate,
    ) -> Result<TokenHolder> {
        let mut s = self.store();
        let now = Instant::now();
        let verdict = s.take(Some((account.clone(), token.to_owned())), rate, now);
        let not_before = s
            .revocation(account, Some(agent), now)
            .max(s.revocation(account, None, now))
            .and_then(DateTime::from_timestamp_millis);
        Ok(match s.data(account) {
            Some(d) => TokenHolder {
                account: d.account.clone(),
                agent: d.agents.get(agent).cloned(),
                not_before,
                rate: verdict,
            },
            None => TokenHolder {
                not_before,
                rate: verdict,
                ..TokenHolder::default()
            },
        })
    }

    async fn token_holder(&self, account: &AccountId, agent: &AgentId) -> Result<TokenHolder> {
        let s = self.store();
        let now = Instant::now();
        let not_before = s
            .revocation(account, Some(agent), now)
            .max(s.revocation(account, None, now))
            .and_then(DateTime::from_timestamp_millis);
        let data = s.data(account);
        Ok(TokenHolder {
            account: data.and_then(|d| d.account.clone()),
            agent: data.and_then(|d| d.agents.get(agent).cloned()),
            not_before,
            rate: RateVerdict::Allowed,
        })
    }

    async fn account_for_token(
        &self,
        account: &AccountId,
        token: &str,
        rate: Rate,
    ) -> Result<(Option<Account>, RateVerdict)> {
        let mut s = self.store();
        let verdict = s.take(
            Some((account.clone(), token.to_owned())),
            rate,
            Instant::now(),
        );
        Ok((s.data(account).and_then(|d| d.account.clone()), verdict))
    }

    async fn accounts(&self, after: Option<&AccountId>, limit: usize) -> Result<Vec<Account>> {
        let s = self.store();
        let mut all: Vec<&Account> = s
            .accounts
            .values()
            .filter_map(|d| d.account.as_ref())
            .filter(|a| after.is_none_or(|after| &a.id > after))
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all.into_iter().take(limit).cloned().collect())
    }

    async fn agents(
        &self,
        account: &AccountId,
        after: Option<&AgentId>,
        limit: usize,
    ) -> Result<Vec<Agent>> {
        let s = self.store();
        let Some(d) = s.data(account) else {
            return Ok(Vec::new());
        };
        let mut all: Vec<&Agent> = d
            .agents
            .values()
            .filter(|a| after.is_none_or(|after| &a.id > after))
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all.into_iter().take(limit).cloned().collect())
    }

    async fn delete_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let mut s = self.store();
        let Some(d) = s.accounts.get_mut(account) else {
            return Ok(false);
        };
        let existed = d.agents.remove(agent).is_some();
        if existed {
            s.record(account, audit, Instant::now());
        }
        Ok(existed)
    }

    async fn delete_portal(
        &self,
        account: &AccountId,
        portal: &PortalId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let mut s = self.store();
        let Some(d) = s.accounts.get_mut(account) else {
            return Ok(false);
        };
        d.portal_online.remove(portal);
        let existed = d.portals.remove(portal).is_some();
        if existed {
            s.record(account, audit, Instant::now());
        }
        Ok(existed)
    }

    async fn delete_account(&self, account: &AccountId, audit: Audited<'_>) -> Result<bool> {
        let mut s = self.store();
        let existed = s
            .accounts
            .remove(account)
            .is_some_and(|d| d.account.is_some());
        if existed {
            s.record(account, audit, Instant::now());
        }
        Ok(existed)
    }

    async fn revoke_tokens(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        at: DateTime<Utc>,
        keep_for: Duration,
        audit: Audited<'_>,
    ) -> Result<()> {
        let mut s = self.store();
        s.record(account, audit, Instant::now());
        let until = Instant::now() + keep_for;
        let mark = s
            .revoked
            .entry((account.clone(), agent.cloned()))
            .or_insert((i64::MIN, until));
        mark.0 = mark.0.max(at.timestamp_millis());
        mark.1 = mark.1.max(until);
        Ok(())
    }
}

#[async_trait]
impl Audit for MemoryBackplane {
    async fn session_audit(
        &self,
        account: &AccountId,
        session: &SessionId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let s = self.store();
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(s.data(account)
            .and_then(|d| d.session(session, Instant::now()))
            .map(|stored| {
                stored
                    .audit
                    .iter()
                    .skip(from)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn account_audit(
        &self,
        account: &AccountId,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        let now = Instant::now();
        let s = self.store();
        let Some(log) = s.audit.get(account) else {
            return Ok(Vec::new());
        };
        let start = after.map_or(0, |a| log.entries.partition_point(|(id, _, _)| *id <= a));
        Ok(log
            .entries
            .iter()
            .skip(start)
            .filter(|(_, until, _)| *until > now)
            .take(limit)
            .map(|(id, _, e)| (*id, e.clone()))
            .collect())
    }
}

#[async_trait]
impl Presence for MemoryBackplane {
    async fn login(
        &self,
        account: &AccountId,
        agent: &Agent,
        portal: &PortalId,
    ) -> Result<Option<PortalId>> {
        let mut s = self.store();
        let data = s.data_mut(account);
        let previous = data.presence.insert(agent.id.clone(), portal.clone());
        if let Some(old) = &previous
            && let Some(set) = data.portal_online.get_mut(old)
        {
            set.remove(&agent.id);
        }
        data.portal_online
            .entry(portal.clone())
            .or_default()
            .insert(agent.id.clone());
        Ok(previous)
    }

    async fn logout(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<Option<PortalId>> {
        let mut s = self.store();
        let data = s.data_mut(account);
        let previous = data.presence.remove(&agent.id);
        if let Some(old) = &previous
            && let Some(set) = data.portal_online.get_mut(old)
        {
            set.remove(&agent.id);
        }
        if previous.is_some() {
            s.record(account, audit, Instant::now());
        }
        Ok(previous)
    }

    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.presence.get(agent).cloned()))
    }

    async fn online_in(
        &self,
        account: &AccountId,
        portal: &PortalId,
    ) -> Result<Option<Vec<AgentId>>> {
        let s = self.store();
        let Some(d) = s.data(account).filter(|d| d.portals.contains_key(portal)) else {
            return Ok(None);
        };
        Ok(Some(
            d.portal_online
                .get(portal)
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default(),
        ))
    }

    async fn window(&self, account: &AccountId) -> Result<Window> {
        let s = self.store();
        let Some(d) = s.data(account) else {
            return Ok(Window::default());
        };
        let mut agents: Vec<WindowAgent> = d
            .presence
            .iter()
            .filter_map(|(id, portal)| {
                Some(WindowAgent {
                    agent: d.agents.get(id)?.clone(),
                    portal: portal.clone(),
                    active_sessions: d.agent_sessions.get(id).map_or(0, |s| s.len() as u32),
                })
            })
            .collect();
        agents.sort_by(|a, b| a.agent.id.cmp(&b.agent.id));
        Ok(Window {
            agents,
            portals: d.portals.values().cloned().collect(),
        })
    }

    async fn active_counts(&self, account: &AccountId, agents: &[AgentId]) -> Result<Vec<u32>> {
        let s = self.store();
        Ok(agents
            .iter()
            .map(|a| {
                s.data(account)
                    .and_then(|d| d.agent_sessions.get(a))
                    .map_or(0, |set| set.len() as u32)
            })
            .collect())
    }

    /// In one process presence never expires: there is nothing to hold.
    fn hold_presence(&self, _: &AccountId, _: &AgentId, _: bool) {}
}

#[async_trait]
impl Sessions for MemoryBackplane {
    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>> {
        let encoded = {
            let s = self.store();
            s.data(account)
                .and_then(|d| d.session(session, Instant::now()))
                .map(|stored| (stored.version, stored.state.clone()))
        };
        let Some((version, bytes)) = encoded else {
            return Ok(None);
        };
        let session = codec::decode(&bytes).map_err(|e| {
            super::BackplaneError::Unavailable(format!("undecodable session state: {e}"))
        })?;
        Ok(Some(Versioned { version, session }))
    }

    async fn refresh(&self, account: &AccountId, session: &SessionId, known: u64) -> Result<Fresh> {
        let version = self
            .store()
            .data(account)
            .and_then(|d| d.session(session, Instant::now()))
            .map(|s| s.version);
        match version {
            None => Ok(Fresh::Gone),
            Some(v) if v == known => Ok(Fresh::Current),
            Some(_) => Ok(self
                .load(account, session)
                .await?
                .map_or(Fresh::Gone, |v| Fresh::Changed(Box::new(v)))),
        }
    }

    async fn commit(&self, account: &AccountId, commit: Commit<'_>) -> Result<Committed> {
        let state = codec::encode(commit.session);
        let now = Instant::now();
        let session_id = &commit.session.id;
        let mut s = self.store();
        let data = s.data_mut(account);
        let current = data.session(session_id, now).map_or(0, |v| v.version);
        if current != commit.expected_version {
            return Ok(Committed::Conflict);
        }
        if let Some(guard) = commit.guard {
            let active = data
                .agent_sessions
                .get(&guard.agent)
                .map_or(0, BTreeSet::len);
            if active as u32 >= guard.below {
                return Ok(Committed::Refused);
            }
        }
        let version = current + 1;
        let stored = data.sessions.entry(session_id.clone()).or_default();
        stored.version = version;
        stored.state = state;
        let mut woke = false;
        for effect in plan::effects(&commit) {
            woke |= s.apply(account, &commit, effect, now);
        }
        for (topic, message) in commit.publish {
            s.publish(topic, message.clone());
        }
        drop(s);
        if woke {
            self.wake.notify_one();
        }
        Ok(Committed::Stored(version))
    }

    async fn accept_context(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
        agent: &AgentId,
        known_version: Option<u64>,
    ) -> Result<AcceptContext> {
        let (context, state) = {
            let s = self.store();
            let Some(d) = s.data(account) else {
                return Ok(AcceptContext {
                    portal: None,
                    active_sessions: 0,
                    version: None,
                    current: None,
                    closed: None,
                });
            };
            let stored = d.session(session, Instant::now());
            let version = stored.map(|s| s.version);
            let state = stored
                .filter(|s| Some(s.version) != known_version)
                .map(|s| (s.version, s.state.clone()));
            (
                AcceptContext {
                    portal: d.presence.get(agent).cloned(),
                    active_sessions: d.agent_sessions.get(agent).map_or(0, |s| s.len() as u32),
                    version,
                    current: None,
                    closed: stored.and_then(|s| s.history.get(invitation).cloned()),
                },
                state,
            )
        };
        let mut context = context;
        if let Some((version, bytes)) = state {
            let session = codec::decode(&bytes).map_err(|e| {
                super::BackplaneError::Unavailable(format!("undecodable session state: {e}"))
            })?;
            context.current = Some(Versioned { version, session });
        }
        Ok(context)
    }

    async fn closed_invitation(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
    ) -> Result<Option<Invitation>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.session(session, Instant::now()))
            .and_then(|s| s.history.get(invitation).cloned()))
    }

    async fn messages(
        &self,
        account: &AccountId,
        session: &SessionId,
        transcript: Transcript,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let s = self.store();
        let Some(stored) = s
            .data(account)
            .and_then(|d| d.session(session, Instant::now()))
        else {
            return Ok(Vec::new());
        };
        // Position i holds number i + 1 in either transcript.
        let len = match transcript {
            Transcript::Agents => stored.chat.len(),
            Transcript::Customer => stored.customer_chat.len(),
        };
        let end = before
            .map(|b| (b.saturating_sub(1) as usize).min(len))
            .unwrap_or(len);
        let start = end.saturating_sub(limit);
        let page = (start..end).rev().filter_map(|i| match transcript {
            Transcript::Agents => stored.chat.get(i).cloned(),
            Transcript::Customer => stored
                .customer_chat
                .get(i)
                .and_then(|at| stored.chat.get(*at as usize).cloned()),
        });
        Ok(page.collect())
    }

    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.agent_sessions.get(agent))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn open_invitations(
        &self,
        account: &AccountId,
        target: &Target,
    ) -> Result<Vec<(InvitationId, SessionId)>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.open.get(target))
            .map(|m| m.iter().map(|(i, s)| (i.clone(), s.clone())).collect())
            .unwrap_or_default())
    }

    async fn sessions_page(
        &self,
        account: &AccountId,
        status: SessionStatus,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<(SessionCursor, Versioned)>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let encoded: Vec<(SessionCursor, u64, Vec<u8>)> = {
            let s = self.store();
            let now = Instant::now();
            let Some(d) = s.data(account) else {
                return Ok(Vec::new());
            };
            let index = match status {
                SessionStatus::Active => &d.active_index,
                SessionStatus::Ended => &d.ended_index,
            };
            let from = after.map_or(Unbounded, |c| Excluded(c.clone()));
            index
                .range((from, Unbounded))
                .filter_map(|c| {
                    d.session(&c.session, now)
                        .map(|st| (c.clone(), st.version, st.state.clone()))
                })
                .take(limit)
                .collect()
        };
        encoded
            .into_iter()
            .map(|(cursor, version, bytes)| {
                let session = codec::decode(&bytes).map_err(|e| {
                    super::BackplaneError::Unavailable(format!("undecodable session state: {e}"))
                })?;
                Ok((cursor, Versioned { version, session }))
            })
            .collect()
    }
}

#[async_trait]
impl Claims for MemoryBackplane {
    async fn claim(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
        ttl: Duration,
    ) -> Result<Claim> {
        let mut s = self.store();
        let data = s.data_mut(account);
        let now = Instant::now();
        if let Some((holder, fence, until)) = data.claims.get(invitation)
            && *until > now
        {
            return Ok(if holder == agent {
                Claim::Won { fence: *fence }
            } else {
                Claim::Lost { by: holder.clone() }
            });
        }
        data.fence += 1;
        let fence = data.fence;
        data.claims
            .insert(invitation.clone(), (agent.clone(), fence, now + ttl));
        Ok(Claim::Won { fence })
    }

    async fn release(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
    ) -> Result<()> {
        let mut s = self.store();
        let data = s.data_mut(account);
        if data
            .claims
            .get(invitation)
            .is_some_and(|(holder, _, _)| holder == agent)
        {
            data.claims.remove(invitation);
        }
        Ok(())
    }
}

#[async_trait]
impl Bus for MemoryBackplane {
    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()> {
        self.store().publish(&topic, message);
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>> {
        let mut s = self.store();
        if let Some(tx) = s.topics.get(topic) {
            return Ok(tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(topic.capacity());
        s.topics.insert(topic.clone(), tx);
        Ok(rx)
    }

    fn resyncs(&self) -> watch::Receiver<u64> {
        // In one process nothing is ever lost between publisher and subscriber.
        self.resync.subscribe()
    }
}

#[async_trait]
impl Timers for MemoryBackplane {
    async fn schedule(
        &self,
        account: &AccountId,
        session: &SessionId,
        timer: &Timer,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let key = TimerKey {
            account: account.clone(),
            session: session.clone(),
            timer: TimerName::from(timer),
        };
        if self.store().timers.arm(key, at.timestamp_millis()) {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn take_due(&self) -> Option<mpsc::Receiver<Deadline>> {
        let rx = lock(&self.due).take()?;
        tokio::spawn(drive_timers(
            Arc::downgrade(&self.store),
            self.wake.clone(),
            self.due_tx.clone(),
        ));
        Some(rx)
    }

    async fn complete(&self, deadline: &Deadline) -> Result<()> {
        let key = TimerKey {
            account: deadline.account.clone(),
            session: deadline.session.clone(),
            timer: TimerName::from(&deadline.timer),
        };
        self.store().timers.complete(&key, deadline.lease);
        Ok(())
    }
}

#[async_trait]
impl RateLimits for MemoryBackplane {
    async fn take_admin(&self, rate: Rate) -> Result<RateVerdict> {
        Ok(self.store().take(None, rate, Instant::now()))
    }
}

#[async_trait]
impl Health for MemoryBackplane {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// Idempotency records one account may hold at once; at the bound the
/// expired ones go, then those closest to expiry.
const IDEMPOTENCY_RECORDS: usize = 10_000;

/// Nothing to wait for: the memory backplane has no replicas, a change is
/// as durable as this process.
#[async_trait]
impl Durability for MemoryBackplane {
    async fn confirm(&self, _account: &AccountId) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Idempotency for MemoryBackplane {
    async fn reserve(
        &self,
        account: &AccountId,
        key: &str,
        running: &str,
        running_for: Duration,
    ) -> Result<Option<String>> {
        let now = Instant::now();
        let mut s = self.store();
        let records = &mut s.accounts.entry(account.clone()).or_default().idempotency;
        if let Some((until, value)) = records.get(key)
            && *until > now
        {
            return Ok(Some(value.clone()));
        }
        if records.len() >= IDEMPOTENCY_RECORDS {
            records.retain(|_, (until, _)| *until > now);
        }
        while records.len() >= IDEMPOTENCY_RECORDS {
            let Some(soonest) = records
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            records.remove(&soonest);
        }
        records.insert(key.to_owned(), (now + running_for, running.to_owned()));
        Ok(None)
    }

    async fn record(
        &self,
        account: &AccountId,
        key: &str,
        value: &str,
        keep_for: Duration,
    ) -> Result<()> {
        let mut s = self.store();
        let records = &mut s.accounts.entry(account.clone()).or_default().idempotency;
        records.insert(
            key.to_owned(),
            (Instant::now() + keep_for, value.to_owned()),
        );
        Ok(())
    }

    async fn forget(&self, account: &AccountId, key: &str) -> Result<()> {
        let mut s = self.store();
        if let Some(data) = s.accounts.get_mut(account) {
            data.idempotency.remove(key);
        }
        Ok(())
    }
}
