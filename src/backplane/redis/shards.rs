//! Fan-out over a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`), one
//! subscriber connection per primary, following the slot map.
//!
//! A channel lives on the shard that owns its slot (channels carry their
//! account's hash tag, so a channel lives with its account's keys and the
//! commit script's `SPUBLISH` reaches it there). This task keeps, per
//! primary, one RESP3 connection used for nothing but `SSUBSCRIBE`,
//! `SUNSUBSCRIBE` and `PING`, and per wanted channel the primary it is
//! subscribed on. The `redis` crate's own cluster subscriptions are not
//! used: when a slot moves, Redis sends an unsolicited `sunsubscribe` that
//! the crate takes for the reply of the oldest command in flight, mixing up
//! replies on a connection that also carries commands, and forgets the
//! subscription for good (docs/redis-cluster-notes.md §2).
//!
//! Subscription state therefore comes from the pushes, not from command
//! replies, and one loop reconciles what is wanted with what is:
//!
//! - a `sunsubscribe` push for a channel still wanted (its slot moved), a
//!   connection that closed (its primary died), a `MOVED` reply, or a
//!   subscribe that failed marks the channel as a gap;
//! - the loop then reads the slot map (`CLUSTER SLOTS`), connects to every
//!   primary, subscribes each gap on its owner, and — once all are
//!   subscribed again — bumps `resync`, so every local stream re-reads the
//!   truth from Redis (pub/sub is a hint: what was published during the gap
//!   is in the keys);
//! - every few ticks it re-reads the slot map anyway and moves channels
//!   whose owner changed without telling us (a replica promoted while we
//!   were connected to the old primary sends no `sunsubscribe`,
//!   redis/redis#12558), and pings every connection.
//!
//! Readiness (`up`) holds while the slot map is known, every primary is
//! connected and no wanted channel is in a gap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::connect::Cluster;
use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    ProtocolVersion, PushInfo, PushKind, TlsCertificates, Value,
};
use tokio::sync::{mpsc, watch};

use super::connect::client_for;
use super::pubsub::{Senders, SubCommand, dispatch};
use super::{REDIS_TIMEOUT, lock, unavailable};
use crate::backplane::Result;
use crate::backplane::keys::slot;
use crate::settings::BackplaneSettings;

/// How often the loop looks at its connections and gaps.
const TICK: Duration = Duration::from_millis(250);
/// Ticks between two readings of the slot map when nothing is wrong.
const TOPOLOGY_EVERY: u32 = 8;
/// Ticks between two pings of every connection (and drops of unused
/// channels).
const PING_EVERY: u32 = 8;

/// `host:port` of a primary.
type Addr = Arc<str>;

/// Builds a RESP3 client for one node from the first seed URL's settings
/// (password, TLS and its trusted CA).
pub(super) struct ShardClients {
    base: ConnectionInfo,
    tls: bool,
    certs: Option<TlsCertificates>,
}

impl ShardClients {
    pub(super) fn new(
        settings: &BackplaneSettings,
        certs: Option<TlsCertificates>,
    ) -> Result<Self> {
        let first = settings.redis_urls.first().ok_or_else(|| {
            crate::backplane::BackplaneError::Unavailable("backplane.redis_urls is empty".into())
        })?;
        Ok(Self {
            base: first.as_str().into_connection_info().map_err(unavailable)?,
            tls: first.starts_with("rediss://"),
            certs,
        })
    }

    fn client(&self, host: &str, port: u16) -> Result<Client> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let redis = self
            .base
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = self.base.clone().set_addr(addr).set_redis_settings(redis);
        client_for(info, self.certs.as_ref())
    }

    /// The seed's host, for slot map entries that leave the host empty
    /// ("the node you asked").
    fn seed_host(&self) -> String {
        match self.base.addr() {
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
            _ => "127.0.0.1".to_owned(),
        }
    }
}

/// Hands a connection's pushes to the loop, tagged with the connection.
struct Tagged {
    addr: Addr,
    generation: u64,
    tx: mpsc::UnboundedSender<(Addr, u64, PushInfo)>,
}

impl AsyncPushSender for Tagged {
    fn send(&self, info: PushInfo) -> std::result::Result<(), SendError> {
        self.tx
            .send((self.addr.clone(), self.generation, info))
            .map_err(|_| SendError)
    }
}

/// One primary's subscriber connection.
struct Shard {
    conn: MultiplexedConnection,
    generation: u64,
}

/// The slot map: the first slot of each range → (last slot, primary).
type Slots = BTreeMap<u16, (u16, Addr)>;

fn owner(slots: &Slots, of: u16) -> Option<Addr> {
    slots
        .range(..=of)
        .next_back()
        .filter(|(_, (last, _))| of <= *last)
        .map(|(_, (_, addr))| addr.clone())
}

struct Subscriber {
    cluster: Cluster,
    clients: ShardClients,
    senders: Senders,
    pushes: mpsc::UnboundedSender<(Addr, u64, PushInfo)>,
    slots: Slots,
    shards: HashMap<Addr, Shard>,
    /// Wanted channels and the primary each is subscribed on.
    homes: HashMap<String, Addr>,
    /// Wanted channels not subscribed anywhere now.
    gaps: HashSet<String>,
    /// Something was lost since the last resync (a gap, a connection).
    lost: bool,
    /// The slot map must be read again before anything else.
    stale: bool,
    generation: u64,
}

/// Keeps this node's sharded subscriptions (see the module documentation)
/// and bumps `resync` after each gap closed.
pub(super) async fn run(
    cluster: Cluster,
    clients: ShardClients,
    senders: Senders,
    mut commands: mpsc::UnboundedReceiver<SubCommand>,
    up: Arc<AtomicBool>,
    resync: watch::Sender<u64>,
) {
    let (push_tx, mut push_rx) = mpsc::unbounded_channel();
    let mut sub = Subscriber {
        cluster,
        clients,
        senders,
        pushes: push_tx,
        slots: Slots::new(),
        shards: HashMap::new(),
        homes: HashMap::new(),
        gaps: HashSet::new(),
        lost: true,
        stale: true,
        generation: 0,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    let mut failure_logged = false;
    loop {
        tokio::select! {
            push = push_rx.recv() => {
                let Some((addr, generation, push)) = push else { return };
                sub.on_push(&addr, generation, push);
            }
            command = commands.recv() => {
                let Some(SubCommand::Subscribe(channel, ack)) = command else { return };
                // Confirmed only when subscribed on the channel's owner; a
                // caller told nothing fails fast and retries.
                if sub.subscribe(&channel).await {
                    let _ = ack.send(());
                }
            }
            _ = tick.tick() => {
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(PING_EVERY) {
                    sub.drop_unused().await;
                    sub.ping_all().await;
                }
                if sub.stale || !sub.gaps.is_empty() || ticks.is_multiple_of(TOPOLOGY_EVERY) {
                    match sub.reconcile().await {
                        Ok(()) => failure_logged = false,
                        Err(e) => {
                            if !std::mem::replace(&mut failure_logged, true) {
                                tracing::warn!(error = %e, "cluster pub/sub cannot follow the slot map; retrying");
                            }
                        }
                    }
                }
                let healthy = !sub.stale && sub.gaps.is_empty() && !sub.slots.is_empty()
                    && sub.slots.values().all(|(_, addr)| sub.shards.contains_key(addr));
                if healthy && sub.lost {
                    sub.lost = false;
                    resync.send_modify(|n| *n += 1);
                    tracing::info!(
                        shards = sub.shards.len(),
                        channels = sub.homes.len(),
                        "cluster pub/sub connected"
                    );
                }
                up.store(healthy, Ordering::Relaxed);
            }
        }
    }
}

impl Subscriber {
    fn on_push(&mut self, addr: &Addr, generation: u64, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => {
                if let [Value::BulkString(channel), Value::BulkString(payload), ..] =
                    push.data.as_slice()
                {
                    dispatch(&self.senders, &String::from_utf8_lossy(channel), payload);
                }
            }
            PushKind::SUnsubscribe => {
                // Unsolicited when the channel's slot moved away from this
                // primary; ours (a channel no longer wanted) are already
                // forgotten.
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    return;
                };
                let channel = String::from_utf8_lossy(channel).into_owned();
                if self.homes.get(&channel) == Some(addr) {
                    tracing::info!(%channel, %addr, "shard channel moved; resubscribing");
                    self.homes.remove(&channel);
                    self.gaps.insert(channel);
                    self.lost = true;
                    self.stale = true;
                }
            }
            PushKind::Disconnection
                if self
                    .shards
                    .get(addr)
                    .is_some_and(|s| s.generation == generation) =>
            {
                tracing::warn!(%addr, "cluster pub/sub connection lost");
                self.forget_shard(addr);
                self.stale = true;
            }
            _ => {}
        }
    }

    /// Drops a primary's connection; its channels become gaps.
    fn forget_shard(&mut self, addr: &Addr) {
        self.shards.remove(addr);
        let moved: Vec<String> = self
            .homes
            .iter()
            .filter(|(_, home)| *home == addr)
            .map(|(c, _)| c.clone())
            .collect();
        for channel in moved {
            self.homes.remove(&channel);
            self.gaps.insert(channel);
        }
        self.lost = true;
    }

    /// Subscribes a new channel on its owner; `false` (and a gap the
    /// loop closes) if that fails.
    async fn subscribe(&mut self, channel: &str) -> bool {
        if self.homes.contains_key(channel) {
            return true;
        }
        if self.slots.is_empty() {
            // The first subscription of all: the reconcile subscribes it
            // with every other wanted channel.
            let read = self.reconcile().await;
            if self.homes.contains_key(channel) {
                return true;
            }
            if read.is_err() {
                return false;
            }
        }
        let Some(addr) = owner(&self.slots, slot(channel.as_bytes())) else {
            return false;
        };
        if self.ssubscribe(&addr, channel).await {
            true
        } else {
            // Wanted (the caller retries, or another stream waits on it):
            // the loop subscribes it once the slot map is right again.
            if lock(&self.senders).contains_key(channel) {
                self.gaps.insert(channel.to_owned());
            }
            self.stale = true;
            false
        }
    }

    /// `SSUBSCRIBE channel` on `addr`, connecting first if need be.
    async fn ssubscribe(&mut self, addr: &Addr, channel: &str) -> bool {
        if !self.shards.contains_key(addr) && !self.connect(addr).await {
            return false;
        }
        let Some(shard) = self.shards.get_mut(addr) else {
            return false;
        };
        let answer = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("SSUBSCRIBE")
                .arg(channel)
                .query_async::<Value>(&mut shard.conn),
        )
        .await;
        match answer {
            Ok(Ok(_)) => {
                self.homes.insert(channel.to_owned(), addr.clone());
                self.gaps.remove(channel);
                true
            }
            Ok(Err(e)) => {
                // MOVED (the slot map changed) or the connection failed.
                tracing::debug!(error = %e, %addr, channel, "SSUBSCRIBE refused");
                if e.is_io_error() || e.is_unrecoverable_error() {
                    self.forget_shard(addr);
                }
                false
            }
            Err(_) => {
                self.forget_shard(addr);
                false
            }
        }
    }

    async fn connect(&mut self, addr: &Addr) -> bool {
        let Some((host, port)) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        else {
            return false;
        };
        let Ok(client) = self.clients.client(&host, port) else {
            return false;
        };
        self.generation += 1;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_push_sender(Tagged {
                addr: addr.clone(),
                generation: self.generation,
                tx: self.pushes.clone(),
            });
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => {
                self.shards.insert(
                    addr.clone(),
                    Shard {
                        conn,
                        generation: self.generation,
                    },
                );
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, %addr, "cannot connect to a cluster primary");
                false
            }
        }
    }

    /// Reads the slot map, connects to every primary, moves channels whose
    /// owner changed and subscribes every gap.
    async fn reconcile(&mut self) -> std::result::Result<(), String> {
        let slots = self.read_slots().await?;
        let primaries: HashSet<Addr> = slots.values().map(|(_, a)| a.clone()).collect();
        self.slots = slots;
        // Connections to nodes that are no longer primaries: their
        // channels move (a demoted primary sends nothing).
        let gone: Vec<Addr> = self
            .shards
            .keys()
            .filter(|a| !primaries.contains(*a))
            .cloned()
            .collect();
        for addr in gone {
            self.forget_shard(&addr);
        }
        let mut unreachable = 0;
        for addr in &primaries {
            if !self.shards.contains_key(addr) && !self.connect(addr).await {
                unreachable += 1;
            }
        }
        // Channels subscribed on a primary that no longer owns their slot.
        let misplaced: Vec<(String, Addr)> = self
            .homes
            .iter()
            .filter(|(c, home)| owner(&self.slots, slot(c.as_bytes())).as_ref() != Some(*home))
            .map(|(c, h)| (c.clone(), h.clone()))
            .collect();
        for (channel, home) in misplaced {
            self.homes.remove(&channel);
            self.gaps.insert(channel.clone());
            self.lost = true;
            if let Some(shard) = self.shards.get_mut(&home) {
                let _ = tokio::time::timeout(
                    REDIS_TIMEOUT,
                    redis::cmd("SUNSUBSCRIBE")
                        .arg(&channel)
                        .query_async::<Value>(&mut shard.conn),
                )
                .await;
            }
        }
        // Gaps of channels nobody listens to any more are simply dropped.
        let wanted: HashSet<String> = lock(&self.senders).keys().cloned().collect();
        self.gaps.retain(|c| wanted.contains(c));
        for channel in wanted {
            if !self.homes.contains_key(&channel) {
                self.gaps.insert(channel);
            }
        }
        let gaps: Vec<String> = self.gaps.iter().cloned().collect();
        for channel in gaps {
            if let Some(addr) = owner(&self.slots, slot(channel.as_bytes())) {
                self.ssubscribe(&addr, &channel).await;
            }
        }
        self.stale = unreachable > 0;
        if unreachable > 0 {
            return Err(format!("{unreachable} primaries unreachable"));
        }
        Ok(())
    }

    /// `CLUSTER SLOTS`, asked of any node through the command connection.
    async fn read_slots(&mut self) -> std::result::Result<Slots, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let answer = tokio::time::timeout(
                REDIS_TIMEOUT,
                self.cluster.route_command(
                    redis::cmd("CLUSTER").arg("SLOTS").clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                ),
            )
            .await;
            match answer {
                Ok(Ok(value)) => {
                    let slots = parse_slots(&value, &self.clients.seed_host());
                    if slots.is_empty() {
                        last = "the cluster serves no slots".into();
                        continue;
                    }
                    return Ok(slots);
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "CLUSTER SLOTS timed out".into(),
            }
        }
        Err(last)
    }

    /// Drops channels no local stream listens to any more.
    async fn drop_unused(&mut self) {
        let unused: Vec<String> = {
            let mut senders = lock(&self.senders);
            let unused: Vec<String> = senders
                .iter()
                .filter(|(_, tx)| tx.receiver_count() == 0)
                .map(|(c, _)| c.clone())
                .collect();
            for c in &unused {
                senders.remove(c);
            }
            unused
        };
        for channel in unused {
            self.gaps.remove(&channel);
            let Some(home) = self.homes.remove(&channel) else {
                continue;
            };
            if let Some(shard) = self.shards.get_mut(&home) {
                let _ = tokio::time::timeout(
                    REDIS_TIMEOUT,
                    redis::cmd("SUNSUBSCRIBE")
                        .arg(&channel)
                        .query_async::<Value>(&mut shard.conn),
                )
                .await;
            }
        }
    }

    /// Pings every connection; one that does not answer is dropped (a
    /// primary that hangs without closing the socket).
    async fn ping_all(&mut self) {
        let addrs: Vec<Addr> = self.shards.keys().cloned().collect();
        for addr in addrs {
            let Some(shard) = self.shards.get_mut(&addr) else {
                continue;
            };
            let pong = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("PING").query_async::<Value>(&mut shard.conn),
            )
            .await;
            if !matches!(pong, Ok(Ok(_))) {
                tracing::warn!(%addr, "cluster pub/sub connection does not answer");
                self.forget_shard(&addr);
                self.stale = true;
            }
        }
    }
}

/// The primaries of a `CLUSTER SLOTS` answer: `[[first, last, [host,
/// port, id, …], replicas…], …]`. An empty host means the node asked.
fn parse_slots(value: &Value, seed_host: &str) -> Slots {
    let mut slots = Slots::new();
    let Value::Array(ranges) = value else {
        return slots;
    };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(primary))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(h)) if !h.is_empty() && h.as_slice() != b"?" => {
                String::from_utf8_lossy(h).into_owned()
            }
            Some(Value::SimpleString(h)) if !h.is_empty() && h != "?" => h.clone(),
            _ => seed_host.to_owned(),
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let (Ok(first), Ok(last), Ok(port)) = (
            u16::try_from(*first),
            u16::try_from(*last),
            u16::try_from(*port),
        ) else {
            continue;
        };
        slots.insert(first, (last, Arc::from(format!("{host}:{port}"))));
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_slot_map_names_each_ranges_primary() {
        let answer = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7001), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7004), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk(""), Value::Int(7002), bulk("id2")]),
            ]),
        ]);
        let slots = parse_slots(&answer, "10.0.0.9");
        assert_eq!(owner(&slots, 0).as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(owner(&slots, 5460).as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(owner(&slots, 5461).as_deref(), Some("10.0.0.9:7002"));
        assert_eq!(owner(&slots, 16383).as_deref(), Some("10.0.0.9:7002"));
        let partial = parse_slots(
            &Value::Array(vec![Value::Array(vec![
                Value::Int(100),
                Value::Int(200),
                Value::Array(vec![bulk("h"), Value::Int(1)]),
            ])]),
            "s",
        );
        assert_eq!(owner(&partial, 99), None);
        assert_eq!(owner(&partial, 201), None);
        assert_eq!(owner(&partial, 150).as_deref(), Some("h:1"));
    }
}
