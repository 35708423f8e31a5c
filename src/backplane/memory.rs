//! The embedded backplane: in-process maps and broadcast channels. One node,
//! no Redis; the same semantics as the cluster backplane, checked by the same
//! conformance suite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, watch};

use super::{
    Backplane, BusMessage, Claim, Commit, Committed, Deadline, Online, Result, Topic, Versioned,
};
use crate::domain::session::Target;
use crate::domain::{
    Account, AccountId, Agent, AgentId, InvitationId, Message, Portal, PortalId, SessionId,
};

/// How many messages a topic buffers for a subscriber that falls behind
/// before it loses the oldest (pub/sub is at-most-once; snapshots repair).
pub const TOPIC_CAPACITY: usize = 1024;

type Key<T> = (AccountId, T);

#[derive(Default)]
struct Store {
    accounts: HashMap<AccountId, Account>,
    portals: HashMap<AccountId, BTreeMap<PortalId, Portal>>,
    agents: HashMap<Key<AgentId>, Agent>,
    presence: HashMap<Key<AgentId>, PortalId>,
    sessions: HashMap<Key<SessionId>, Versioned>,
    messages: HashMap<Key<SessionId>, Vec<Message>>,
    agent_sessions: HashMap<Key<AgentId>, HashSet<SessionId>>,
    open: HashMap<Key<Target>, HashMap<InvitationId, SessionId>>,
    invitations: HashMap<Key<InvitationId>, SessionId>,
    claims: HashMap<Key<InvitationId>, (AgentId, u64, Instant)>,
    fence: u64,
    topics: HashMap<Topic, broadcast::Sender<Arc<BusMessage>>>,
}

/// The in-memory backplane.
pub struct MemoryBackplane {
    store: Mutex<Store>,
    due_tx: mpsc::UnboundedSender<Deadline>,
    due_rx: Mutex<Option<mpsc::UnboundedReceiver<Deadline>>>,
    resync: watch::Sender<u64>,
}

impl Default for MemoryBackplane {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackplane {
    /// An empty backplane.
    pub fn new() -> Self {
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        Self {
            store: Mutex::new(Store::default()),
            due_tx,
            due_rx: Mutex::new(Some(due_rx)),
            resync: watch::Sender::new(0),
        }
    }

    /// A timer task that hands `deadline` to the timer worker when it is due.
    fn arm(&self, deadline: Deadline) {
        let due = self.due_tx.clone();
        let wait = (deadline.at - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = due.send(deadline);
        });
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves plain maps behind; they stay usable.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store {
    fn publish(&mut self, topic: Topic, message: BusMessage) {
        if let Some(tx) = self.topics.get(&topic)
            && tx.send(Arc::new(message)).is_err()
        {
            // Nobody listens any more: forget the topic.
            self.topics.remove(&topic);
        }
    }
}

fn key<T: Clone>(account: &AccountId, id: &T) -> Key<T> {
    (account.clone(), id.clone())
}

#[async_trait]
impl Backplane for MemoryBackplane {
    async fn put_account(&self, account: Account) -> Result<bool> {
        Ok(self
            .store()
            .accounts
            .insert(account.id.clone(), account)
            .is_none())
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        Ok(self.store().accounts.get(id).cloned())
    }

    async fn put_portal(&self, account: &AccountId, portal: Portal) -> Result<bool> {
        let mut s = self.store();
        let portals = s.portals.entry(account.clone()).or_default();
        Ok(portals.insert(portal.id.clone(), portal).is_none())
    }

    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>> {
        Ok(self
            .store()
            .portals
            .get(account)
            .and_then(|p| p.get(id))
            .cloned())
    }

    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>> {
        Ok(self
            .store()
            .portals
            .get(account)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn put_agent(&self, account: &AccountId, agent: Agent) -> Result<bool> {
        Ok(self
            .store()
            .agents
            .insert(key(account, &agent.id), agent)
            .is_none())
    }

    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>> {
        Ok(self.store().agents.get(&key(account, id)).cloned())
    }

    async fn login(
        &self,
        account: &AccountId,
        agent: &AgentId,
        portal: &PortalId,
    ) -> Result<Option<PortalId>> {
        Ok(self
            .store()
            .presence
            .insert(key(account, agent), portal.clone()))
    }

    async fn logout(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        Ok(self.store().presence.remove(&key(account, agent)))
    }

    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        Ok(self.store().presence.get(&key(account, agent)).cloned())
    }

    async fn online(&self, account: &AccountId) -> Result<Vec<Online>> {
        let s = self.store();
        let mut online: Vec<Online> = s
            .presence
            .iter()
            .filter(|((acc, _), _)| acc == account)
            .map(|((_, agent), portal)| Online {
                agent: agent.clone(),
                portal: portal.clone(),
            })
            .collect();
        online.sort_by(|a, b| a.agent.cmp(&b.agent));
        Ok(online)
    }

    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>> {
        Ok(self.store().sessions.get(&key(account, session)).cloned())
    }

    async fn commit(&self, account: &AccountId, commit: Commit) -> Result<Committed> {
        let mut s = self.store();
        let k = key(account, &commit.session.id);
        let current = s.sessions.get(&k).map_or(0, |v| v.version);
        if current != commit.expected_version {
            return Ok(Committed::Conflict);
        }
        let version = current + 1;
        let session_id = commit.session.id.clone();
        s.sessions.insert(
            k.clone(),
            Versioned {
                version,
                session: commit.session,
            },
        );
        if let Some(m) = commit.message {
            s.messages.entry(k).or_default().push(m);
        }
        for agent in commit.delta.joined {
            s.agent_sessions
                .entry(key(account, &agent))
                .or_default()
                .insert(session_id.clone());
        }
        for agent in commit.delta.left {
            if let Some(set) = s.agent_sessions.get_mut(&key(account, &agent)) {
                set.remove(&session_id);
            }
        }
        for (inv, target) in commit.delta.opened {
            s.invitations.insert(key(account, &inv), session_id.clone());
            s.open
                .entry(key(account, &target))
                .or_default()
                .insert(inv, session_id.clone());
        }
        for (inv, target) in commit.delta.closed {
            if let Some(open) = s.open.get_mut(&key(account, &target)) {
                open.remove(&inv);
            }
        }
        for (topic, message) in commit.publish {
            s.publish(topic, message);
        }
        drop(s);
        for deadline in commit.deadlines {
            self.arm(deadline);
        }
        Ok(Committed::Stored(version))
    }

    async fn messages(&self, account: &AccountId, session: &SessionId) -> Result<Vec<Message>> {
        Ok(self
            .store()
            .messages
            .get(&key(account, session))
            .cloned()
            .unwrap_or_default())
    }

    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>> {
        let s = self.store();
        let mut ids: Vec<SessionId> = s
            .agent_sessions
            .get(&key(account, agent))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        Ok(ids)
    }

    async fn open_invitations(
        &self,
        account: &AccountId,
        target: &Target,
    ) -> Result<Vec<(InvitationId, SessionId)>> {
        let s = self.store();
        let mut offers: Vec<(InvitationId, SessionId)> = s
            .open
            .get(&key(account, target))
            .map(|m| m.iter().map(|(i, s)| (i.clone(), s.clone())).collect())
            .unwrap_or_default();
        offers.sort();
        Ok(offers)
    }

    async fn invitation_session(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
    ) -> Result<Option<SessionId>> {
        Ok(self
            .store()
            .invitations
            .get(&key(account, invitation))
            .cloned())
    }

    async fn claim(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
        ttl: Duration,
    ) -> Result<Claim> {
        let mut s = self.store();
        let now = Instant::now();
        let k = key(account, invitation);
        if let Some((holder, fence, until)) = s.claims.get(&k)
            && *until > now
        {
            return Ok(if holder == agent {
                Claim::Won { fence: *fence }
            } else {
                Claim::Lost { by: holder.clone() }
            });
        }
        s.fence += 1;
        let fence = s.fence;
        s.claims.insert(k, (agent.clone(), fence, now + ttl));
        Ok(Claim::Won { fence })
    }

    async fn release(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
    ) -> Result<()> {
        let mut s = self.store();
        let k = key(account, invitation);
        if s.claims
            .get(&k)
            .is_some_and(|(holder, _, _)| holder == agent)
        {
            s.claims.remove(&k);
        }
        Ok(())
    }

    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()> {
        self.store().publish(topic, message);
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>> {
        let mut s = self.store();
        if let Some(tx) = s.topics.get(topic) {
            return Ok(tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(TOPIC_CAPACITY);
        s.topics.insert(topic.clone(), tx);
        Ok(rx)
    }

    fn resyncs(&self) -> watch::Receiver<u64> {
        // In one process nothing is ever lost between publisher and subscriber.
        self.resync.subscribe()
    }

    async fn schedule(&self, deadline: Deadline) -> Result<()> {
        self.arm(deadline);
        Ok(())
    }

    fn take_due(&self) -> Option<mpsc::UnboundedReceiver<Deadline>> {
        self.due_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
