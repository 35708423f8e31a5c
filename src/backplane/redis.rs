//! The cluster backplane: many nodes sharing one Redis.
//!
//! - Fan-out: `PUBLISH`/`SUBSCRIBE`, one subscription per node per topic,
//!   through one pub/sub connection that reconnects with backoff,
//!   resubscribes, and then bumps the resync counter so local streams
//!   re-read the truth (pub/sub is at-most-once: a hint, never the truth).
//! - First accept wins: one Lua script does `SET claim NX PX` plus a
//!   fencing counter.
//! - Session state: one Lua script checks the expected version, writes the
//!   codec-encoded state, applies the index delta, appends the message and
//!   publishes the events — atomically.
//! - Presence: a hash of agent → portal plus a sorted set scored by expiry,
//!   refreshed by this node's heartbeat for the agents it serves, so a dead
//!   node's agents fade out within [`PRESENCE_TTL`].
//! - Timers: a sorted set of deadlines; every node polls it with a script
//!   that takes due entries atomically, so exactly one node fires each.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::codec;
use super::memory::TOPIC_CAPACITY;
use super::{
    Backplane, BackplaneError, BusMessage, Claim, Commit, Committed, Deadline, Online, Result,
    Route, Topic, Versioned,
};
use crate::domain::session::Target;
use crate::domain::{
    Account, AccountId, Agent, AgentId, Event, InvitationId, Message, Portal, PortalId, Session,
    SessionId,
};
use crate::settings::BackplaneSettings;

/// How long an agent stays online without a heartbeat from a node serving it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// How often a node refreshes the presence of the agents it serves.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often a node looks for timers that fell due.
const TIMER_POLL: Duration = Duration::from_millis(200);
/// How long a taken timer is leased to the node that took it before another
/// node may take it (the node died, or its handling failed).
const TIMER_LEASE: Duration = Duration::from_secs(15);
/// Due timers taken per poll.
const TIMER_BATCH: usize = 100;
/// Connect and response timeouts: a request fails fast when Redis is gone.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Pub/sub reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// How often the pub/sub connection is pinged and unused topics dropped.
const PUBSUB_HOUSEKEEPING: Duration = Duration::from_secs(2);
/// How long a subscribe waits for Redis to confirm it.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

const COMMIT: &str = r#"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
v = v + 1
redis.call('HSET', KEYS[1], 'v', v, 's', ARGV[2])
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[3]) end
local i = 5
for k = 1, tonumber(ARGV[4]) do
  local kind, a, b, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], KEYS[2 + k]
  i = i + 3
  if kind == 'sadd' then redis.call('SADD', key, a)
  elseif kind == 'srem' then redis.call('SREM', key, a)
  elseif kind == 'hset' then redis.call('HSET', key, a, b)
  elseif kind == 'hdel' then redis.call('HDEL', key, a)
  elseif kind == 'set' then redis.call('SET', key, a)
  elseif kind == 'zadd' then redis.call('ZADD', key, a, b) end
end
local n = tonumber(ARGV[i])
i = i + 1
for k = 1, n do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
  i = i + 2
end
return v
"#;

const CLAIM: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local holder = string.sub(cur, 1, sep - 1)
  if holder == ARGV[1] then return {1, string.sub(cur, sep + 1)} end
  return {0, holder}
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'NX', 'PX', ARGV[2])
return {1, tostring(fence)}
"#;

const RELEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|' then
  redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Takes due timers by leasing them (their score moves TIMER_LEASE ahead):
/// one node at a time holds each, and one whose node died comes back.
const TAKE_DUE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], m) end
return due
"#;

/// A bus message as it crosses between nodes.
#[derive(Serialize, Deserialize)]
enum WireMessage {
    Session {
        session: SessionId,
        route: Route,
        event: Box<Event>,
    },
    Presence {
        agent: AgentId,
        portal: Option<PortalId>,
    },
}

impl From<&BusMessage> for WireMessage {
    fn from(m: &BusMessage) -> Self {
        match m {
            BusMessage::Session {
                session,
                route,
                event,
            } => WireMessage::Session {
                session: session.clone(),
                route: *route,
                event: Box::new(event.as_ref().clone()),
            },
            BusMessage::Presence { agent, portal } => WireMessage::Presence {
                agent: agent.clone(),
                portal: portal.clone(),
            },
        }
    }
}

impl From<WireMessage> for BusMessage {
    fn from(m: WireMessage) -> Self {
        match m {
            WireMessage::Session {
                session,
                route,
                event,
            } => BusMessage::Session {
                session,
                route,
                event: Arc::new(*event),
            },
            WireMessage::Presence { agent, portal } => BusMessage::Presence { agent, portal },
        }
    }
}

enum SubCommand {
    Subscribe(String, oneshot::Sender<()>),
}

/// Why a node keeps an agent's presence fresh.
#[derive(Debug, Default)]
struct Served {
    /// It logged in through this node.
    logged_in: bool,
    /// Its event streams held by this node.
    streams: usize,
}

type Senders = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<BusMessage>>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(e: redis::RedisError) -> BackplaneError {
    BackplaneError::Unavailable(e.to_string())
}

fn corrupt(e: codec::CodecError) -> BackplaneError {
    BackplaneError::Unavailable(format!("undecodable data in Redis: {e}"))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The Redis backplane.
pub struct RedisBackplane {
    prefix: String,
    conn: ConnectionManager,
    commit_script: Script,
    claim_script: Script,
    release_script: Script,
    take_due_script: Script,
    senders: Senders,
    subscribe_tx: mpsc::UnboundedSender<SubCommand>,
    pubsub_up: Arc<AtomicBool>,
    resync_rx: watch::Receiver<u64>,
    due_rx: Mutex<Option<mpsc::UnboundedReceiver<Deadline>>>,
    /// Agents this node keeps online: logged in through it, or streaming from it.
    served: Mutex<HashMap<(AccountId, AgentId), Served>>,
}

impl RedisBackplane {
    /// Connects lazily (a node starts, not ready, while Redis is down) and
    /// starts the pub/sub, timer and heartbeat tasks on the current runtime.
    pub fn start(settings: &BackplaneSettings) -> Result<Arc<Self>> {
        let client = Client::open(settings.redis_url.as_str()).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_TIMEOUT);
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        let (subscribe_tx, subscribe_rx) = mpsc::unbounded_channel();
        let (resync_tx, resync_rx) = watch::channel(0);
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        let backplane = Arc::new(Self {
            prefix: format!("collabd:{}", settings.namespace),
            conn,
            commit_script: Script::new(COMMIT),
            claim_script: Script::new(CLAIM),
            release_script: Script::new(RELEASE),
            take_due_script: Script::new(TAKE_DUE),
            senders: Arc::default(),
            subscribe_tx,
            pubsub_up: Arc::new(AtomicBool::new(false)),
            resync_rx,
            due_rx: Mutex::new(Some(due_rx)),
            served: Mutex::default(),
        });
        tokio::spawn(pubsub_loop(
            client,
            backplane.senders.clone(),
            subscribe_rx,
            backplane.pubsub_up.clone(),
            resync_tx,
        ));
        tokio::spawn(timer_loop(Arc::downgrade(&backplane), due_tx));
        tokio::spawn(heartbeat_loop(Arc::downgrade(&backplane)));
        Ok(backplane)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// The pub/sub channel of a topic.
    pub fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::Session(a, s) => self.key(&["chan", a.as_str(), "session", s.as_str()]),
            Topic::Agent(a, g) => self.key(&["chan", a.as_str(), "agent", g.as_str()]),
            Topic::Portal(a, p) => self.key(&["chan", a.as_str(), "portal", p.as_str()]),
        }
    }

    /// The hash of open invitations sent to `target`.
    fn open_key(&self, account: &AccountId, target: &Target) -> String {
        match target {
            Target::Agent(agent) => self.key(&["open", account.as_str(), "agent", agent.as_str()]),
            Target::Portal(portal) => {
                self.key(&["open", account.as_str(), "portal", portal.as_str()])
            }
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Updates why this node keeps `agent` online; forgets it when neither
    /// a login through this node nor a stream on it remains.
    fn serve(&self, account: &AccountId, agent: &AgentId, change: impl FnOnce(&mut Served)) {
        let mut served = lock(&self.served);
        let key = (account.clone(), agent.clone());
        let entry = served.entry(key.clone()).or_default();
        change(entry);
        if !entry.logged_in && entry.streams == 0 {
            served.remove(&key);
        }
    }

    async fn get_decoded<T: serde::de::DeserializeOwned>(&self, key: String) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> = self.conn().get(key).await.map_err(unavailable)?;
        bytes
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(corrupt)
    }

    async fn hget_decoded<T: serde::de::DeserializeOwned>(
        &self,
        key: String,
        field: &str,
    ) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> = self.conn().hget(key, field).await.map_err(unavailable)?;
        bytes
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(corrupt)
    }

    async fn hset_new(&self, key: String, field: &str, value: Vec<u8>) -> Result<bool> {
        let added: i64 = self
            .conn()
            .hset(key, field, value)
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    fn live(score: Option<f64>) -> bool {
        score.is_some_and(|expires| expires > now_ms() as f64)
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    async fn put_account(&self, account: Account) -> Result<bool> {
        let key = self.key(&["account", account.id.as_str()]);
        let old: Option<Vec<u8>> = redis::cmd("SET")
            .arg(key)
            .arg(codec::encode(&account))
            .arg("GET")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(old.is_none())
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        self.get_decoded(self.key(&["account", id.as_str()])).await
    }

    async fn put_portal(&self, account: &AccountId, portal: Portal) -> Result<bool> {
        let key = self.key(&["portals", account.as_str()]);
        self.hset_new(key, portal.id.as_str(), codec::encode(&portal))
            .await
    }

    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>> {
        self.hget_decoded(self.key(&["portals", account.as_str()]), id.as_str())
            .await
    }

    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>> {
        let all: HashMap<String, Vec<u8>> = self
            .conn()
            .hgetall(self.key(&["portals", account.as_str()]))
            .await
            .map_err(unavailable)?;
        let mut portals = all
            .values()
            .map(|b| codec::decode::<Portal>(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        portals.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(portals)
    }

    async fn put_agent(&self, account: &AccountId, agent: Agent) -> Result<bool> {
        let key = self.key(&["agents", account.as_str()]);
        self.hset_new(key, agent.id.as_str(), codec::encode(&agent))
            .await
    }

    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>> {
        self.hget_decoded(self.key(&["agents", account.as_str()]), id.as_str())
            .await
    }

    async fn login(
        &self,
        account: &AccountId,
        agent: &AgentId,
        portal: &PortalId,
    ) -> Result<Option<PortalId>> {
        let (hash, exp) = (
            self.key(&["presence", account.as_str()]),
            self.key(&["presence_exp", account.as_str()]),
        );
        let expires = now_ms() + PRESENCE_TTL.as_millis() as i64;
        let (previous, score): (Option<String>, Option<f64>) = redis::pipe()
            .atomic()
            .hget(&hash, agent.as_str())
            .zscore(&exp, agent.as_str())
            .hset(&hash, agent.as_str(), portal.as_str())
            .ignore()
            .zadd(&exp, agent.as_str(), expires)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.serve(account, agent, |s| s.logged_in = true);
        Ok(previous
            .filter(|_| Self::live(score))
            .and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn logout(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        let (hash, exp) = (
            self.key(&["presence", account.as_str()]),
            self.key(&["presence_exp", account.as_str()]),
        );
        let (previous, score): (Option<String>, Option<f64>) = redis::pipe()
            .atomic()
            .hget(&hash, agent.as_str())
            .zscore(&exp, agent.as_str())
            .hdel(&hash, agent.as_str())
            .ignore()
            .zrem(&exp, agent.as_str())
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.serve(account, agent, |s| s.logged_in = false);
        Ok(previous
            .filter(|_| Self::live(score))
            .and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        let (portal, score): (Option<String>, Option<f64>) = redis::pipe()
            .hget(self.key(&["presence", account.as_str()]), agent.as_str())
            .zscore(
                self.key(&["presence_exp", account.as_str()]),
                agent.as_str(),
            )
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(portal
            .filter(|_| Self::live(score))
            .and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn online(&self, account: &AccountId) -> Result<Vec<Online>> {
        let (all, live): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.key(&["presence", account.as_str()]))
            .zrangebyscore(
                self.key(&["presence_exp", account.as_str()]),
                now_ms(),
                "+inf",
            )
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let live: HashSet<String> = live.into_iter().collect();
        let mut online: Vec<Online> = all
            .into_iter()
            .filter(|(agent, _)| live.contains(agent))
            .filter_map(|(agent, portal)| {
                Some(Online {
                    agent: AgentId::parse(&agent).ok()?,
                    portal: PortalId::parse(&portal).ok()?,
                })
            })
            .collect();
        online.sort_by(|a, b| a.agent.cmp(&b.agent));
        Ok(online)
    }

    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>> {
        let (version, state): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.key(&["session", account.as_str(), session.as_str()]))
            .arg("v")
            .arg("s")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match (version, state) {
            (Some(version), Some(bytes)) => {
                let session: Session = codec::decode(&bytes).map_err(corrupt)?;
                Ok(Some(Versioned { version, session }))
            }
            _ => Ok(None),
        }
    }

    async fn commit(&self, account: &AccountId, commit: Commit) -> Result<Committed> {
        let a = account.as_str();
        let sid = commit.session.id.as_str().to_owned();
        let mut invocation = self.commit_script.prepare_invoke();
        invocation
            .key(self.key(&["session", a, &sid]))
            .key(self.key(&["messages", a, &sid]))
            .arg(commit.expected_version)
            .arg(codec::encode(&commit.session))
            .arg(
                commit
                    .message
                    .as_ref()
                    .map(codec::encode)
                    .unwrap_or_default(),
            );
        let mut ops: Vec<(&str, String, String, Vec<u8>)> = Vec::new();
        let delta = &commit.delta;
        for agent in &delta.joined {
            ops.push((
                "sadd",
                self.key(&["agent_sessions", a, agent.as_str()]),
                sid.clone(),
                Vec::new(),
            ));
        }
        for agent in &delta.left {
            ops.push((
                "srem",
                self.key(&["agent_sessions", a, agent.as_str()]),
                sid.clone(),
                Vec::new(),
            ));
        }
        for (inv, target) in &delta.opened {
            ops.push((
                "set",
                self.key(&["invitation", a, inv.as_str()]),
                sid.clone(),
                Vec::new(),
            ));
            ops.push((
                "hset",
                self.open_key(account, target),
                inv.to_string(),
                sid.clone().into_bytes(),
            ));
        }
        for (inv, target) in &delta.closed {
            ops.push((
                "hdel",
                self.open_key(account, target),
                inv.to_string(),
                Vec::new(),
            ));
        }
        for deadline in &commit.deadlines {
            let score = deadline.at.timestamp_millis().to_string();
            ops.push((
                "zadd",
                self.key(&["deadlines"]),
                score,
                codec::encode(deadline),
            ));
        }
        invocation.arg(ops.len());
        for (kind, key, x, y) in ops {
            invocation.key(key).arg(kind).arg(x).arg(y);
        }
        invocation.arg(commit.publish.len());
        for (topic, message) in &commit.publish {
            invocation
                .arg(self.channel(topic))
                .arg(codec::encode(&WireMessage::from(message)));
        }
        let version: i64 = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(if version < 0 {
            Committed::Conflict
        } else {
            Committed::Stored(version as u64)
        })
    }

    async fn messages(&self, account: &AccountId, session: &SessionId) -> Result<Vec<Message>> {
        let all: Vec<Vec<u8>> = self
            .conn()
            .lrange(
                self.key(&["messages", account.as_str(), session.as_str()]),
                0,
                -1,
            )
            .await
            .map_err(unavailable)?;
        all.iter()
            .map(|b| codec::decode(b))
            .collect::<std::result::Result<_, _>>()
            .map_err(corrupt)
    }

    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>> {
        let ids: Vec<String> = self
            .conn()
            .smembers(self.key(&["agent_sessions", account.as_str(), agent.as_str()]))
            .await
            .map_err(unavailable)?;
        let mut ids: Vec<SessionId> = ids
            .iter()
            .filter_map(|s| SessionId::parse(s).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn open_invitations(
        &self,
        account: &AccountId,
        target: &Target,
    ) -> Result<Vec<(InvitationId, SessionId)>> {
        let all: HashMap<String, String> = self
            .conn()
            .hgetall(self.open_key(account, target))
            .await
            .map_err(unavailable)?;
        let mut offers: Vec<_> = all
            .iter()
            .filter_map(|(i, s)| Some((InvitationId::parse(i).ok()?, SessionId::parse(s).ok()?)))
            .collect();
        offers.sort();
        Ok(offers)
    }

    async fn invitation_session(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
    ) -> Result<Option<SessionId>> {
        let id: Option<String> = self
            .conn()
            .get(self.key(&["invitation", account.as_str(), invitation.as_str()]))
            .await
            .map_err(unavailable)?;
        Ok(id.and_then(|s| SessionId::parse(&s).ok()))
    }

    async fn claim(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
        ttl: Duration,
    ) -> Result<Claim> {
        let (won, value): (i64, String) = self
            .claim_script
            .key(self.key(&["claim", account.as_str(), invitation.as_str()]))
            .key(self.key(&["fence"]))
            .arg(agent.as_str())
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if won == 1 {
            let fence = value
                .parse()
                .map_err(|_| BackplaneError::Unavailable(format!("bad fence {value:?}")))?;
            Ok(Claim::Won { fence })
        } else {
            let by = AgentId::parse(&value)
                .map_err(|_| BackplaneError::Unavailable(format!("bad claim holder {value:?}")))?;
            Ok(Claim::Lost { by })
        }
    }

    async fn release(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
    ) -> Result<()> {
        let _: i64 = self
            .release_script
            .key(self.key(&["claim", account.as_str(), invitation.as_str()]))
            .arg(agent.as_str())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()> {
        let _: i64 = self
            .conn()
            .publish(
                self.channel(&topic),
                codec::encode(&WireMessage::from(&message)),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>> {
        let channel = self.channel(topic);
        let rx = {
            let mut senders = lock(&self.senders);
            if let Some(tx) = senders.get(&channel) {
                return Ok(tx.subscribe());
            }
            let (tx, rx) = broadcast::channel(TOPIC_CAPACITY);
            senders.insert(channel.clone(), tx);
            rx
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        let _ = self
            .subscribe_tx
            .send(SubCommand::Subscribe(channel, ack_tx));
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, ack_rx).await {
            Ok(Ok(())) => Ok(rx),
            _ => Err(BackplaneError::Unavailable(
                "pub/sub subscription not confirmed".into(),
            )),
        }
    }

    fn hold_presence(&self, account: &AccountId, agent: &AgentId, held: bool) {
        self.serve(account, agent, |s| match held {
            true => s.streams += 1,
            false => s.streams = s.streams.saturating_sub(1),
        });
    }

    fn resyncs(&self) -> watch::Receiver<u64> {
        self.resync_rx.clone()
    }

    async fn schedule(&self, deadline: Deadline) -> Result<()> {
        let _: i64 = self
            .conn()
            .zadd(
                self.key(&["deadlines"]),
                codec::encode(&deadline),
                deadline.at.timestamp_millis(),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn take_due(&self) -> Option<mpsc::UnboundedReceiver<Deadline>> {
        lock(&self.due_rx).take()
    }

    async fn complete(&self, deadline: &Deadline) -> Result<()> {
        let _: i64 = self
            .conn()
            .zrem(self.key(&["deadlines"]), codec::encode(deadline))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        if !self.pubsub_up.load(Ordering::Relaxed) {
            return Err(BackplaneError::Unavailable(
                "pub/sub connection is down".into(),
            ));
        }
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Keeps one pub/sub connection: connects with backoff, resubscribes every
/// topic this node listens to, dispatches messages to local receivers, and
/// bumps `resync` after each (re)connection so streams re-read the truth.
async fn pubsub_loop(
    client: Client,
    senders: Senders,
    mut commands: mpsc::UnboundedReceiver<SubCommand>,
    up: Arc<AtomicBool>,
    resync: watch::Sender<u64>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub()).await;
        let Ok(Ok(pubsub)) = connected else {
            up.store(false, Ordering::Relaxed);
            // Confirm nothing while down: subscribers fail fast and retry.
            while let Ok(SubCommand::Subscribe(..)) = commands.try_recv() {}
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        let channels: Vec<String> = lock(&senders).keys().cloned().collect();
        if !channels.is_empty() && !answered(sink.subscribe(&channels)).await {
            continue;
        }
        backoff = BACKOFF_MIN;
        up.store(true, Ordering::Relaxed);
        resync.send_modify(|n| *n += 1);
        tracing::info!(topics = channels.len(), "pub/sub connected");
        let mut housekeeping = tokio::time::interval(PUBSUB_HOUSEKEEPING);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    dispatch(&senders, msg.get_channel_name(), msg.get_payload_bytes());
                }
                cmd = commands.recv() => {
                    let Some(SubCommand::Subscribe(channel, ack)) = cmd else { return };
                    if !answered(sink.subscribe(&channel)).await { break }
                    let _ = ack.send(());
                }
                _ = housekeeping.tick() => {
                    let unused: Vec<String> = {
                        let mut senders = lock(&senders);
                        let unused: Vec<String> = senders.iter().filter(|(_, tx)| tx.receiver_count() == 0).map(|(c, _)| c.clone()).collect();
                        for c in &unused { senders.remove(c); }
                        unused
                    };
                    if !unused.is_empty() && !answered(sink.unsubscribe(&unused)).await { break }
                    let pong = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) { break }
                }
            }
        }
        up.store(false, Ordering::Relaxed);
        tracing::warn!("pub/sub connection lost; reconnecting");
    }
}

/// Whether a pub/sub command was answered in time: a Redis that stops
/// answering without closing the socket must not hang the loop.
async fn answered<T>(call: impl std::future::Future<Output = redis::RedisResult<T>>) -> bool {
    matches!(tokio::time::timeout(REDIS_TIMEOUT, call).await, Ok(Ok(_)))
}

fn dispatch(senders: &Senders, channel: &str, payload: &[u8]) {
    let message: BusMessage = match codec::decode::<WireMessage>(payload) {
        Ok(m) => m.into(),
        Err(e) => {
            tracing::warn!(error = %e, channel, "dropping undecodable bus message");
            return;
        }
    };
    if let Some(tx) = lock(senders).get(channel) {
        let _ = tx.send(Arc::new(message));
    }
}

/// Takes timers that fell due; the script hands each to exactly one node.
async fn timer_loop(
    backplane: std::sync::Weak<RedisBackplane>,
    due: mpsc::UnboundedSender<Deadline>,
) {
    let mut tick = tokio::time::interval(TIMER_POLL);
    loop {
        tick.tick().await;
        let Some(bp) = backplane.upgrade() else {
            return;
        };
        let taken: redis::RedisResult<Vec<Vec<u8>>> = bp
            .take_due_script
            .key(bp.key(&["deadlines"]))
            .arg(now_ms())
            .arg(TIMER_BATCH)
            .arg(now_ms() + TIMER_LEASE.as_millis() as i64)
            .invoke_async(&mut bp.conn())
            .await;
        for bytes in taken.unwrap_or_default() {
            match codec::decode::<Deadline>(&bytes) {
                Ok(deadline) => {
                    if due.send(deadline).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dropping undecodable deadline"),
            }
        }
    }
}

/// Refreshes the presence of the agents this node serves (`XX`: never
/// brings back an agent that logged out through another node).
async fn heartbeat_loop(backplane: std::sync::Weak<RedisBackplane>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tick.tick().await;
        let Some(bp) = backplane.upgrade() else {
            return;
        };
        let served: Vec<(AccountId, AgentId)> = lock(&bp.served).keys().cloned().collect();
        if served.is_empty() {
            continue;
        }
        let expires = now_ms() + PRESENCE_TTL.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (account, agent) in &served {
            pipe.cmd("ZADD")
                .arg(bp.key(&["presence_exp", account.as_str()]))
                .arg("XX")
                .arg(expires)
                .arg(agent.as_str())
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut bp.conn()).await {
            tracing::warn!(error = %e, "presence heartbeat failed");
        }
    }
}
