//! One actix actor per live entity on this node — [`SessionActor`],
//! [`AgentActor`], [`PortalActor`] — and the [`Node`] that finds or starts
//! them. Actors talk to other nodes only through the backplane.
//!
//! Beside them: what they fail with (`failure`), the places a node gives
//! out to requests and streams (`admission`), and the participant views
//! its agent actors share (`views`).

pub mod admission;
pub mod agent;
mod failure;
pub mod outbox;
pub mod portal;
pub mod reads;
pub mod session;
mod views;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr, ArbiterHandle};

pub use admission::{Admission, Admitted, StreamPermit, StreamPermits, StreamsFull};
pub use agent::AgentActor;
pub use failure::Failure;
pub use portal::PortalActor;
pub use session::SessionActor;
pub use views::ViewCache;

use crate::backplane::Backplane;
use crate::domain::{AccountId, AgentId, PortalId, SessionId};
use crate::settings::Settings;

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
