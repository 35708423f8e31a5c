//! One actix actor per live entity on this node — [`SessionActor`],
//! [`AgentActor`], [`PortalActor`] — and the [`Node`] that finds or starts
//! them. Actors talk to other nodes only through the backplane.

pub mod agent;
pub mod outbox;
pub mod portal;
pub mod reads;
pub mod session;

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr, ArbiterHandle};

pub use agent::AgentActor;
pub use portal::PortalActor;
pub use session::SessionActor;

use crate::backplane::{Backplane, BackplaneError, Route};
use crate::domain::{AccountId, AgentId, DomainError, PortalId, SessionId};
use crate::settings::Settings;
use outbox::Prepared;

/// Why a request could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A domain rule refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Something named does not exist (in the caller's account).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The backplane cannot be reached.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    /// Too many concurrent changes to one session; the client may retry.
    #[error("the session is changing too fast; retry")]
    Contended,
    /// This node is shutting down or an actor is gone.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// This node is handling as many requests as it may at once.
    #[error("this node is at capacity; retry shortly")]
    Overloaded,
    /// A token already has as many event streams open as it may.
    #[error("this token already has {0} event streams open")]
    TooManyStreams(usize),
    /// The caller's token made more requests than its rate allows; the
    /// next one fits after this long.
    #[error("too many requests with this token; retry after the time given")]
    RateLimited(std::time::Duration),
}

impl From<actix::MailboxError> for Failure {
    fn from(e: actix::MailboxError) -> Self {
        Failure::Unavailable(e.to_string())
    }
}

pub use crate::metrics::Metrics;

type Key<T> = (AccountId, T);

/// This node: its backplane, settings, counters, and its live actors.
pub struct Node {
    /// Shared state between nodes.
    pub backplane: Arc<dyn Backplane>,
    /// Configuration.
    pub settings: Settings,
    /// Counters.
    pub metrics: Metrics,
    /// Participant events already viewed on this node.
    pub views: ViewCache,
    /// Open event streams per token.
    pub permits: StreamPermits,
    /// Requests being handled now.
    pub admission: Admission,
    arbiter: ArbiterHandle,
    sessions: Mutex<HashMap<Key<SessionId>, Addr<SessionActor>>>,
    agents: Mutex<HashMap<Key<AgentId>, Addr<AgentActor>>>,
    portals: Mutex<HashMap<Key<PortalId>, Addr<PortalActor>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold plain addresses; a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Finds a live actor or starts one, under the map's lock so two callers
/// never start two actors for one entity.
fn find_or_start<K: Eq + Hash, A: Actor<Context = actix::Context<A>>>(
    map: &Mutex<HashMap<K, Addr<A>>>,
    key: K,
    start: impl FnOnce() -> Addr<A>,
) -> Addr<A> {
    let mut map = lock(map);
    if let Some(addr) = map.get(&key)
        && addr.connected()
    {
        return addr.clone();
    }
    let addr = start();
    map.insert(key, addr.clone());
    addr
}

/// Removes a stopping actor from its map — only if the entry is still this
/// actor (a successor may already have been started under the same key).
fn forget<K: Eq + Hash, A: Actor>(map: &Mutex<HashMap<K, Addr<A>>>, key: &K, addr: &Addr<A>) {
    let mut map = lock(map);
    if map.get(key) == Some(addr) {
        map.remove(key);
    }
}

impl Node {
    /// A node whose actors run on `arbiter`.
    pub fn new(
        backplane: Arc<dyn Backplane>,
        settings: Settings,
        arbiter: ArbiterHandle,
    ) -> Arc<Self> {
        let permits = StreamPermits::new(settings.limits.streams_per_token);
        let admission = Admission::new(settings.limits.max_in_flight);
        Arc::new(Self {
            backplane,
            settings,
            metrics: Metrics::default(),
            views: ViewCache::default(),
            permits,
            admission,
            arbiter,
            sessions: Mutex::default(),
            agents: Mutex::default(),
            portals: Mutex::default(),
        })
    }

    /// The actor serializing commands for a session on this node.
    pub fn session(self: &Arc<Self>, account: &AccountId, id: &SessionId) -> Addr<SessionActor> {
        let key = (account.clone(), id.clone());
        find_or_start(&self.sessions, key, || {
            let actor = SessionActor::new(self.clone(), account.clone(), id.clone());
            SessionActor::start_in_arbiter(&self.arbiter, move |_| actor)
        })
    }

    /// Sends `msg` to the session's actor. An actor started for an id that
    /// does not exist stops at once; a request queued behind the one that
    /// found out would get a closed mailbox, so it is sent once more, to a
    /// fresh actor (which answers it properly: not found, or the session
    /// created meanwhile).
    pub async fn ask_session<M>(
        self: &Arc<Self>,
        account: &AccountId,
        id: &SessionId,
        msg: M,
    ) -> Result<M::Result, Failure>
    where
        M: actix::Message + Clone + Send + 'static,
        M::Result: Send,
        SessionActor: actix::Handler<M>,
    {
        match self.session(account, id).send(msg.clone()).await {
            Err(actix::MailboxError::Closed) => Ok(self.session(account, id).send(msg).await?),
            other => Ok(other?),
        }
    }

    /// The actor owning an agent's streams on this node.
    pub fn agent(self: &Arc<Self>, account: &AccountId, id: &AgentId) -> Addr<AgentActor> {
        let key = (account.clone(), id.clone());
        find_or_start(&self.agents, key, || {
            let actor = AgentActor::new(self.clone(), account.clone(), id.clone());
            AgentActor::start_in_arbiter(&self.arbiter, move |_| actor)
        })
    }

    /// The actor fanning a portal's invitations out to this node's agents.
    pub fn portal(self: &Arc<Self>, account: &AccountId, id: &PortalId) -> Addr<PortalActor> {
        let key = (account.clone(), id.clone());
        find_or_start(&self.portals, key, || {
            let actor = PortalActor::new(self.clone(), account.clone(), id.clone());
            PortalActor::start_in_arbiter(&self.arbiter, move |_| actor)
        })
    }

    /// The agent actor, only if one is running.
    pub fn agent_if_live(&self, account: &AccountId, id: &AgentId) -> Option<Addr<AgentActor>> {
        let map = lock(&self.agents);
        map.get(&(account.clone(), id.clone()))
            .filter(|a| a.connected())
            .cloned()
    }

    pub(crate) fn forget_session(
        &self,
        account: &AccountId,
        id: &SessionId,
        addr: &Addr<SessionActor>,
    ) {
        forget(&self.sessions, &(account.clone(), id.clone()), addr);
    }

    pub(crate) fn forget_agent(&self, account: &AccountId, id: &AgentId, addr: &Addr<AgentActor>) {
        forget(&self.agents, &(account.clone(), id.clone()), addr);
    }

    pub(crate) fn forget_portal(
        &self,
        account: &AccountId,
        id: &PortalId,
        addr: &Addr<PortalActor>,
    ) {
        forget(&self.portals, &(account.clone(), id.clone()), addr);
    }

    /// Closes every event stream on this node (on shutdown): clients see the
    /// stream end cleanly and reconnect elsewhere, starting from a snapshot.
    pub fn close_streams(&self) {
        let agents: Vec<_> = lock(&self.agents).values().cloned().collect();
        for a in agents {
            a.do_send(outbox::CloseStreams);
        }
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        for s in sessions {
            s.do_send(outbox::CloseStreams);
        }
    }

    /// Makes every stream on this node re-read the shared state (after the
    /// backplane's fan-out was interrupted and messages may have been lost).
    pub fn resync_streams(&self) {
        let agents: Vec<_> = lock(&self.agents).values().cloned().collect();
        for a in agents {
            a.do_send(outbox::Resync);
        }
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        for s in sessions {
            s.do_send(outbox::Resync);
        }
    }

    /// Live actors on this node: (sessions, agents, portals).
    pub fn actor_counts(&self) -> (usize, usize, usize) {
        (
            lock(&self.sessions).len(),
            lock(&self.agents).len(),
            lock(&self.portals).len(),
        )
    }
}

/// How many recently viewed participant events a node remembers.
const VIEW_CACHE: usize = 256;

/// The participant view of recent events, by (session, version, index): a
/// session event reaches a node once per participant topic (each agent has
/// its own), and the first agent actor to see it views and serializes it
/// for all the others — what a participant sees does not depend on which
/// participant looks (`visibility.rs` checks this).
#[derive(Default)]
pub struct ViewCache {
    recent: Mutex<VecDeque<(ViewKey, Option<Arc<Prepared>>)>>,
}

type ViewKey = (AccountId, SessionId, u64, u32, Route);

impl ViewCache {
    /// The prepared view of an event, made by `make` the first time.
    pub fn get_or_make(
        &self,
        key: (&AccountId, &SessionId, u64, u32, Route),
        make: impl FnOnce() -> Option<Prepared>,
    ) -> Option<Arc<Prepared>> {
        let (account, session, version, index, route) = key;
        let mut recent = lock(&self.recent);
        if let Some((_, prepared)) = recent.iter().rev().find(|((a, s, v, i, r), _)| {
            *v == version && *i == index && *r == route && s == session && a == account
        }) {
            return prepared.clone();
        }
        let prepared = make().map(Arc::new);
        if recent.len() >= VIEW_CACHE {
            recent.pop_front();
        }
        let key = (account.clone(), session.clone(), version, index, route);
        recent.push_back((key, prepared.clone()));
        prepared
    }
}

/// Counts open event streams per token, so one token cannot hold more than
/// `limits.streams_per_token` on this node.
pub struct StreamPermits {
    limit: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream's place; gives it back when dropped (the stream ended).
pub struct StreamPermit {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
    /// The open streams of its role, on `/metrics`.
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl StreamPermits {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of the token `key`, if it has one left;
    /// `gauge` counts it while it is open.
    pub fn acquire(
        &self,
        key: &str,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<StreamPermit, Failure> {
        let mut open = lock(&self.open);
        let count = open.entry(key.to_owned()).or_default();
        if *count >= self.limit {
            return Err(Failure::TooManyStreams(self.limit));
        }
        *count += 1;
        gauge.inc();
        Ok(StreamPermit {
            key: key.to_owned(),
            open: self.open.clone(),
            gauge,
        })
    }

    /// Streams open on this node, all tokens together.
    pub fn open_streams(&self) -> usize {
        lock(&self.open).values().sum()
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.gauge.dec();
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Bounds the requests a node handles at once. Under overload a node sheds
/// what it cannot take (503 with `Retry-After`) instead of queueing it:
/// queued requests hold memory and come back too late to be of use.
pub struct Admission {
    limit: usize,
    in_flight: Arc<AtomicUsize>,
}

/// One admitted request's place; given back when the request is done.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicUsize>);

impl Admission {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: Arc::default(),
        }
    }

    /// A place for one more request, if the node has one.
    pub fn try_admit(&self) -> Option<Admitted> {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Admitted(self.in_flight.clone()))
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_gives_at_most_its_limit_of_places_and_takes_them_back() {
        let admission = Admission::new(2);
        let a = admission.try_admit();
        let b = admission.try_admit();
        assert!(a.is_some() && b.is_some());
        assert!(admission.try_admit().is_none());
        drop(a);
        assert_eq!(admission.in_flight(), 1);
        assert!(admission.try_admit().is_some());
    }
}
