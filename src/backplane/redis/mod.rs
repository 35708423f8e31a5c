//! The cluster backplane: many nodes sharing one Redis or one Redis Cluster.
//!
//! - Fan-out: `PUBLISH`/`SUBSCRIBE`, one subscription per node per topic
//!   (`pubsub.rs`), reconnecting with backoff; on a Redis Cluster
//!   `SPUBLISH`/`SSUBSCRIBE`, one connection per master following the slot
//!   map (`shards.rs`). After a gap local streams re-read the truth (pub/sub
//!   is a hint, never the truth).
//! - Session state: the bounded hot state in a hash, written with its
//!   version by one script that also appends to the history and the
//!   transcripts, updates the indexes, arms and disarms timers, and
//!   publishes — atomically (`scripts.rs`, COMMIT).
//! - First accept wins: a claim key set if absent plus a fencing counter.
//! - Presence: the portal each agent logged into, a per-portal set, and an
//!   expiry score refreshed by this node's heartbeat for the agents it
//!   serves, so a dead node's agents fade out within [`PRESENCE_TTL`].
//! - Timers: a set per account and a small index of accounts with timers
//!   (`timers.rs`, bucketed on a cluster); every node polls the index, and
//!   leases what it takes.
//! - Durability: with `wait_replicas`, `WAIT` on connections of its own
//!   (`durable.rs`); `Idempotency-Key` records on the account's tag.
//!
//! Every key is built by `keys.rs`; every script touches one hash tag.

mod commit;
mod durable;
mod pubsub;
mod scripts;
mod shards;
mod timers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Client, Script, TlsCertificates};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::keys::{AccountKeys, Keyspace, timer_member};
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
    PortalId, Session, SessionId,
};
use crate::settings::{BackplaneKind, BackplaneSettings};
use pubsub::{Senders, SubCommand};

/// How long an agent stays online without a heartbeat from a node serving it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// Connect and response timeouts: a request fails fast when Redis is gone.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a subscribe waits for Redis to confirm it.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a cluster command is retried (MOVED, ASK, a node that went
/// away) before it fails.
const CLUSTER_RETRIES: u32 = 3;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(e: redis::RedisError) -> BackplaneError {
    BackplaneError::Unavailable(e.to_string())
}

/// The certificates to trust for `rediss://`: `tls_ca_file` when set, else
/// none (the platform's roots).
fn tls_certificates(settings: &BackplaneSettings) -> Result<Option<TlsCertificates>> {
    // rustls needs a process-wide crypto provider; the redis crate picks
    // none. Installing ours (ring) is a no-op when one already is, and
    // keeps working if another crate ever enables a second provider
    // (rustls would then refuse to guess).
    let _ = rustls::crypto::ring::default_provider().install_default();
    if settings.tls_ca_file.is_empty() {
        return Ok(None);
    }
    let root_cert = crate::settings::read_ca_file(&settings.tls_ca_file)
        .map_err(BackplaneError::Unavailable)?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    }))
}

/// A client for one Redis server (`url` or `info`). A `rediss://` URL is
/// TLS (rustls): the server's certificate is checked against
/// `tls_ca_file` when set, else against the platform's roots.
fn client_for(
    info: impl redis::IntoConnectionInfo,
    certs: Option<&TlsCertificates>,
) -> Result<Client> {
    match certs {
        None => Client::open(info).map_err(unavailable),
        Some(certs) => Client::build_with_tls(info, certs.clone()).map_err(unavailable),
    }
}

/// The client of a single Redis (`backplane.redis_url`).
fn client(settings: &BackplaneSettings) -> Result<Client> {
    let certs = tls_certificates(settings)?;
    client_for(settings.redis_url.as_str(), certs.as_ref())
}

/// The command connection to a Redis Cluster: one multiplexed connection
/// per node, routed by each command's first key, following `MOVED`/`ASK`
/// and refreshing the slot map after failovers. It carries commands only,
/// never subscriptions (docs/redis-cluster-notes.md §2: the crate's own
/// sharded subscriptions can mix up replies when a slot moves), and
/// connects in the background so that a node starts, not ready, while the
/// cluster is down.
fn cluster_connection(
    settings: &BackplaneSettings,
    response_timeout: Duration,
) -> Result<ClusterConnection> {
    let certs = tls_certificates(settings)?;
    let mut builder = ClusterClientBuilder::new(settings.redis_urls.iter().map(String::as_str))
        .connection_timeout(REDIS_TIMEOUT)
        .response_timeout(response_timeout)
        // A failover takes a few seconds (cluster-node-timeout plus an
        // election); a request retries through it only briefly and then
        // answers 503, which a client retries (with its Idempotency-Key).
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(50)
        .max_retry_wait(500);
    if let Some(certs) = certs {
        builder = builder.certs(certs);
    }
    let client = builder.build().map_err(unavailable)?;
    Ok(client.get_pending_async_connection_with_config(
        redis::cluster::ClusterConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(response_timeout),
    ))
}

/// A connection to either kind of Redis, so every command below is written
/// once. On a cluster each command goes to the shard of its first key;
/// pipelines and scripts therefore name keys of one hash tag only.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

fn corrupt(e: codec::CodecError) -> BackplaneError {
    BackplaneError::Unavailable(format!("undecodable data in Redis: {e}"))
}

/// Stored bytes, decoded (absent stays absent).
/// Decoded, with the bytes it was read from.
fn stored<T: codec::Wire>(bytes: Option<Vec<u8>>) -> Result<Option<Stored<T>>> {
    bytes
        .map(|bytes| {
            let value = codec::decode(&bytes).map_err(corrupt)?;
            Ok(Stored { value, bytes })
        })
        .transpose()
}

fn decoded<T: codec::Wire>(bytes: Option<Vec<u8>>) -> Result<Option<T>> {
    bytes
        .map(|b| codec::decode(&b))
        .transpose()
        .map_err(corrupt)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// An audit entry as the trail stores it.
fn audit_json(entry: &AuditEntry) -> String {
    serde_json::to_string(entry).unwrap_or_default()
}

/// The oldest trail id an account keeps: `retention` ago.
fn audit_floor(retention: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}

/// Appends what an audited `put` replaces, as `scripts::AUDITED_SET`
/// reads it.
fn replaces_args(call: &mut redis::ScriptInvocation<'_>, replaces: Replaces<'_>) {
    match replaces {
        Replaces::Anything => call.arg("any").arg(""),
        Replaces::Nothing => call.arg("absent").arg(""),
        Replaces::Bytes(bytes) => call.arg("bytes").arg(bytes),
    };
}

/// What `scripts::AUDITED_SET` answered: new, replaced, or changed meanwhile.
fn set_outcome(answer: i64) -> Result<bool> {
    match answer {
        -1 => Err(BackplaneError::Changed),
        n => Ok(n == 1),
    }
}

/// Appends `audit` as the arguments `scripts::AUDIT_FN` reads.
fn audit_args(call: &mut redis::ScriptInvocation<'_>, audit: Audited<'_>) {
    call.arg(audit.entries.len())
        .arg(audit_floor(audit.retention))
        .arg(audit.retention.as_secs().max(1))
        .arg(MAX_ACCOUNT_ENTRIES);
    for entry in audit.entries {
        call.arg(audit_json(entry));
    }
}

/// The shared connection, each round trip timed for `/metrics`
/// (`collabd_redis_command_duration_seconds`).
#[derive(Clone)]
struct Timed(Conn);

impl redis::aio::ConnectionLike for Timed {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let answer = self.0.req_packed_command(cmd).await;
            crate::metrics::redis_round_trip(started.elapsed());
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let answer = self.0.req_packed_commands(pipeline, offset, count).await;
            crate::metrics::redis_round_trip(started.elapsed());
            answer
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// The scripts, each loaded once per Redis (EVALSHA after the first call).
struct Scripts {
    commit: Script,
    refresh: Script,
    account_and_agent: Script,
    account_for_token: Script,
    token_holder: Script,
    rate: Script,
    revoke: Script,
    audited_set: Script,
    audited_hdel: Script,
    audited_unlink: Script,
    audit_page: Script,
    sessions_page: Script,
    claim: Script,
    release: Script,
    accept_context: Script,
    login: Script,
    logout: Script,
    online_in: Script,
    window: Script,
    transcript_page: Script,
    index_touch: Script,
    index_take: Script,
    timers_take: Script,
    index_settle: Script,
    timer_complete: Script,
    timers_earliest: Script,
    idempotency_reserve: Script,
}

impl Scripts {
    /// The scripts; on a cluster the commit publishes with `SPUBLISH`, to
    /// the shard that owns the channel (which is the account's: channels
    /// carry its hash tag), instead of `PUBLISH`, which a cluster copies
    /// to every node.
    fn new(cluster: bool) -> Self {
        let commit = if cluster {
            scripts::COMMIT.replace("'PUBLISH'", "'SPUBLISH'")
        } else {
            scripts::COMMIT.to_owned()
        };
        Self {
            commit: Script::new(&commit),
            refresh: Script::new(scripts::REFRESH),
            account_and_agent: Script::new(&scripts::with_bucket(scripts::ACCOUNT_AND_AGENT)),
            account_for_token: Script::new(&scripts::with_bucket(scripts::ACCOUNT_FOR_TOKEN)),
            rate: Script::new(&scripts::with_bucket(scripts::RATE)),
            token_holder: Script::new(scripts::TOKEN_HOLDER),
            revoke: Script::new(&scripts::with_audit(scripts::REVOKE)),
            audited_set: Script::new(&scripts::with_audit(scripts::AUDITED_SET)),
            audited_hdel: Script::new(&scripts::with_audit(scripts::AUDITED_HDEL)),
            audited_unlink: Script::new(&scripts::with_audit(scripts::AUDITED_UNLINK)),
            audit_page: Script::new(scripts::AUDIT_PAGE),
            sessions_page: Script::new(scripts::SESSIONS_PAGE),
            claim: Script::new(scripts::CLAIM),
            release: Script::new(scripts::RELEASE),
            accept_context: Script::new(scripts::ACCEPT_CONTEXT),
            login: Script::new(scripts::LOGIN),
            logout: Script::new(&scripts::with_audit(scripts::LOGOUT)),
            online_in: Script::new(scripts::ONLINE_IN),
            window: Script::new(scripts::WINDOW),
            transcript_page: Script::new(scripts::TRANSCRIPT_PAGE),
            index_touch: Script::new(scripts::TIMER_INDEX_TOUCH),
            index_take: Script::new(scripts::TIMER_INDEX_TAKE),
            timers_take: Script::new(scripts::TIMERS_TAKE),
            index_settle: Script::new(scripts::TIMER_INDEX_SETTLE),
            timer_complete: Script::new(scripts::TIMER_COMPLETE),
            timers_earliest: Script::new(scripts::TIMERS_EARLIEST),
            idempotency_reserve: Script::new(scripts::IDEMPOTENCY_RESERVE),
        }
    }
}

/// What carries this node's subscriptions.
enum Subscriber {
    /// One pub/sub connection to the one Redis (`pubsub.rs`).
    Single(Client),
    /// One connection per shard of the cluster (`shards.rs`); the command
    /// connection reads the slot map.
    Shards(ClusterConnection, shards::ShardClients),
}

/// Why this node keeps an agent's presence fresh.
#[derive(Debug, Default)]
struct Served {
    /// It logged in through this node.
    logged_in: bool,
    /// Its event streams held by this node.
    streams: usize,
}

/// The Redis backplane.
pub struct RedisBackplane {
    keys: Keyspace,
    conn: Conn,
    scripts: Scripts,
    /// Connections of their own for `WAIT` (`backplane.wait_replicas`).
    durable: durable::Durable,
    senders: Senders,
    subscribe_tx: mpsc::UnboundedSender<SubCommand>,
    pubsub_up: Arc<AtomicBool>,
    resync_rx: watch::Receiver<u64>,
    due_rx: Mutex<Option<mpsc::Receiver<Deadline>>>,
    /// Agents this node keeps online: logged in through it, or streaming from it.
    served: Mutex<HashMap<(AccountId, AgentId), Served>>,
    /// Timer index updates that failed, retried by the timer loop (the
    /// earliest per account): until one lands, that account's new earliest
    /// timer might be looked at late.
    index_retries: Mutex<HashMap<AccountId, i64>>,
}

impl RedisBackplane {
    /// Connects lazily (a node starts, not ready, while Redis is down) and
    /// starts the pub/sub, timer and heartbeat tasks on the current runtime.
    /// `settings.kind` says which Redis: one (`redis_url`) or a cluster
    /// (`redis_urls`, the seed nodes).
    pub fn start(settings: &BackplaneSettings) -> Result<Arc<Self>> {
        let cluster = settings.kind == BackplaneKind::RedisCluster;
        let (subscribe_tx, subscribe_rx) = mpsc::unbounded_channel();
        let (resync_tx, resync_rx) = watch::channel(0);
        let (due_tx, due_rx) = mpsc::channel(super::DUE_BACKLOG);
        // A `WAIT` may block its connection for the whole wait.
        let wait_timeout = settings.wait_timeout() + REDIS_TIMEOUT;
        let (conn, subscriber, durable) = if cluster {
            let durable =
                durable::Durable::new(settings.wait_replicas, settings.wait_timeout(), || {
                    cluster_connection(settings, wait_timeout).map(Conn::Cluster)
                })?;
            let conn = cluster_connection(settings, REDIS_TIMEOUT)?;
            let shards = shards::ShardClients::new(settings, tls_certificates(settings)?)?;
            (
                Conn::Cluster(conn.clone()),
                Subscriber::Shards(conn, shards),
                durable,
            )
        } else {
            let client = client(settings)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(REDIS_TIMEOUT);
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map_err(unavailable)?;
            let durable =
                durable::Durable::new(settings.wait_replicas, settings.wait_timeout(), || {
                    ConnectionManager::new_lazy_with_config(
                        client.clone(),
                        config.clone().set_response_timeout(Some(wait_timeout)),
                    )
                    .map(Conn::Single)
                    .map_err(unavailable)
                })?;
            (Conn::Single(conn), Subscriber::Single(client), durable)
        };
        let backplane = Arc::new(Self {
            keys: if cluster {
                Keyspace::clustered(&settings.namespace)
            } else {
                Keyspace::new(&settings.namespace)
            },
            conn,
            scripts: Scripts::new(cluster),
            durable,
            senders: Arc::default(),
            subscribe_tx,
            pubsub_up: Arc::new(AtomicBool::new(false)),
            resync_rx,
            due_rx: Mutex::new(Some(due_rx)),
            served: Mutex::default(),
            index_retries: Mutex::default(),
        });
        let senders = backplane.senders.clone();
        let up = backplane.pubsub_up.clone();
        match subscriber {
            Subscriber::Single(client) => {
                tokio::spawn(pubsub::run(client, senders, subscribe_rx, up, resync_tx));
            }
            Subscriber::Shards(conn, clients) => {
                tokio::spawn(shards::run(
                    conn,
                    clients,
                    senders,
                    subscribe_rx,
                    up,
                    resync_tx,
                ));
            }
        }
        tokio::spawn(timers::poll(Arc::downgrade(&backplane), due_tx));
        tokio::spawn(timers::heartbeat(Arc::downgrade(&backplane)));
        Ok(backplane)
    }

    /// The keyspace this backplane uses (tests count and inspect its keys).
    pub fn keyspace(&self) -> &Keyspace {
        &self.keys
    }

    fn conn(&self) -> Timed {
        Timed(self.conn.clone())
    }

    fn account_keys(&self, account: &AccountId) -> AccountKeys {
        self.keys.account(account)
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

    /// Makes sure the timer index looks at `account` by `at_ms`.
    async fn touch_index(&self, account: &AccountId, at_ms: i64) {
        let bucket = self.keys.bucket_of(account);
        let touched: redis::RedisResult<i64> = self
            .scripts
            .index_touch
            .key(self.keys.timer_index(bucket))
            .key(self.keys.timer_gen(bucket))
            .arg(account.as_str())
            .arg(at_ms)
            .invoke_async(&mut self.conn())
            .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, %account, "timer index not updated; retrying");
            lock(&self.index_retries)
                .entry(account.clone())
                .and_modify(|at| *at = (*at).min(at_ms))
                .or_insert(at_ms);
        }
    }

    /// A command without a key (SCAN), run where `slot` lives: on the one
    /// Redis, or on the primary that owns `slot` in a cluster.
    async fn query_slot<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
        slot: u16,
    ) -> redis::RedisResult<T> {
        match &self.conn {
            Conn::Single(_) => cmd.query_async(&mut self.conn()).await,
            Conn::Cluster(cluster) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(slot, SlotAddr::Master),
                ));
                let started = std::time::Instant::now();
                let value = cluster.clone().route_command(cmd, route).await;
                crate::metrics::redis_round_trip(started.elapsed());
                Ok(redis::from_redis_value(value?)?)
            }
        }
    }

    /// Sets a hash field; `true` if it is new.
    async fn hset_new(&self, key: String, field: &str, value: Vec<u8>) -> Result<bool> {
        let added: i64 = self
            .conn()
            .hset(key, field, value)
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    /// A hash field, decoded.
    async fn hget_decoded<T: codec::Wire>(&self, key: String, field: &str) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> = self.conn().hget(key, field).await.map_err(unavailable)?;
        decoded(bytes)
    }

    fn decode_session(version: u64, bytes: &[u8]) -> Result<Versioned> {
        let session: Session = codec::decode(bytes).map_err(corrupt)?;
        Ok(Versioned { version, session })
    }
}

/// An audit entry read back from the trail.
fn parse_audit(json: &str) -> Result<AuditEntry> {
    serde_json::from_str(json)
        .map_err(|e| BackplaneError::Unavailable(format!("unreadable audit entry: {e}")))
}

#[async_trait]
impl Audit for RedisBackplane {
    async fn session_audit(
        &self,
        account: &AccountId,
        session: &SessionId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.account_keys(account).session_audit(session);
        let start = isize::try_from(from).unwrap_or(isize::MAX);
        let stop = start.saturating_add(isize::try_from(limit).unwrap_or(isize::MAX) - 1);
        let raw: Vec<String> = self
            .conn()
            .lrange(key, start, stop)
            .await
            .map_err(unavailable)?;
        raw.iter().map(|j| parse_audit(j)).collect()
    }

    async fn account_audit(
        &self,
        account: &AccountId,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let raw: Vec<String> = self
            .scripts
            .audit_page
            .key(self.account_keys(account).audit())
            .arg(start)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        raw.chunks_exact(2)
            .map(|pair| {
                let id = pair[0]
                    .parse::<AuditCursor>()
                    .map_err(|()| BackplaneError::Unavailable("bad audit id".into()))?;
                Ok((id, parse_audit(&pair[1])?))
            })
            .collect()
    }
}

#[async_trait]
impl Directory for RedisBackplane {
    async fn put_account(&self, account: &Account, audit: Audited<'_>) -> Result<bool> {
        // Two hash tags (the account's, its bucket of the list): two
        // calls, sent together (a cluster routes each to its shard); the
        // record and its audit entries are one script on the account's.
        let k = self.account_keys(&account.id);
        let mut record = self.scripts.audited_set.prepare_invoke();
        record
            .key(k.account())
            .key(k.audit())
            .arg("set")
            .arg("")
            .arg(codec::encode(account));
        replaces_args(&mut record, audit.replaces);
        audit_args(&mut record, audit);
        let mut listed = redis::cmd("ZADD");
        listed
            .arg(self.keys.accounts(self.keys.bucket_of(&account.id)))
            .arg(0)
            .arg(account.id.as_str());
        let (mut a, mut b) = (self.conn(), self.conn());
        let (new, _): (i64, i64) =
            tokio::try_join!(record.invoke_async(&mut a), listed.query_async(&mut b))
                .map_err(unavailable)?;
        set_outcome(new)
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        Ok(self.account_record(id).await?.map(|s| s.value))
    }

    async fn account_record(&self, id: &AccountId) -> Result<Option<Stored<Account>>> {
        let bytes: Option<Vec<u8>> = self
            .conn()
            .get(self.account_keys(id).account())
            .await
            .map_err(unavailable)?;
        stored(bytes)
    }

    async fn put_portal(&self, account: &AccountId, portal: &Portal) -> Result<bool> {
        let key = self.account_keys(account).portals();
        self.hset_new(key, portal.id.as_str(), codec::encode(portal))
            .await
    }

    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>> {
        let key = self.account_keys(account).portals();
        self.hget_decoded(key, id.as_str()).await
    }

    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>> {
        let all: HashMap<String, Vec<u8>> = self
            .conn()
            .hgetall(self.account_keys(account).portals())
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

    async fn put_agent(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let k = self.account_keys(account);
        let mut call = self.scripts.audited_set.prepare_invoke();
        call.key(k.agents())
            .key(k.audit())
            .arg("hset")
            .arg(agent.id.as_str())
            .arg(codec::encode(agent));
        replaces_args(&mut call, audit.replaces);
        audit_args(&mut call, audit);
        let new: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        set_outcome(new)
    }

    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>> {
        let key = self.account_keys(account).agents();
        self.hget_decoded(key, id.as_str()).await
    }

    async fn agent_record(
        &self,
        account: &AccountId,
        id: &AgentId,
    ) -> Result<Option<Stored<Agent>>> {
        let key = self.account_keys(account).agents();
        let bytes: Option<Vec<u8>> = self
            .conn()
            .hget(key, id.as_str())
            .await
            .map_err(unavailable)?;
        stored(bytes)
    }

    async fn account_and_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        token: &str,
        rate: Rate,
    ) -> Result<TokenHolder> {
        let k = self.account_keys(account);
        type Read = (
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<i64>,
            Option<i64>,
            u64,
        );
        let (a, g, agent_mark, account_mark, wait): Read = self
            .scripts
            .account_and_agent
            .key(k.account())
            .key(k.agents())
            .key(k.revoked(Some(agent)))
            .key(k.revoked(None))
            .key(k.bucket(token))
            .arg(agent.as_str())
            .arg(rate.per_sec)
            .arg(rate.burst)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        holder(a, g, agent_mark.max(account_mark), verdict(wait))
    }

    async fn token_holder(&self, account: &AccountId, agent: &AgentId) -> Result<TokenHolder> {
        let k = self.account_keys(account);
        type Read = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, Option<i64>);
        let (a, g, agent_mark, account_mark): Read = self
            .scripts
            .token_holder
            .key(k.account())
            .key(k.agents())
            .key(k.revoked(Some(agent)))
            .key(k.revoked(None))
            .arg(agent.as_str())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        holder(a, g, agent_mark.max(account_mark), RateVerdict::Allowed)
    }

    async fn account_for_token(
        &self,
        account: &AccountId,
        token: &str,
        rate: Rate,
    ) -> Result<(Option<Account>, RateVerdict)> {
        let k = self.account_keys(account);
        let (a, wait): (Option<Vec<u8>>, u64) = self
            .scripts
            .account_for_token
            .key(k.account())
            .key(k.bucket(token))
            .arg(rate.per_sec)
            .arg(rate.burst)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok((decoded(a)?, verdict(wait)))
    }

    async fn accounts(&self, after: Option<&AccountId>, limit: usize) -> Result<Vec<Account>> {
        let mut out = Vec::with_capacity(limit);
        let mut from = match after {
            Some(a) => format!("({}", a.as_str()),
            None => "-".to_owned(),
        };
        // Each bucket is sorted by id; a page is the first `want` ids of
        // their merge. An id whose account is gone (a deletion cut short)
        // is dropped from its bucket as it is met, and the page filled
        // from further on.
        while out.len() < limit {
            let want = limit - out.len();
            let mut ids: Vec<String> = Vec::new();
            let reads = self.keys.buckets().map(|bucket| {
                let mut conn = self.conn();
                let key = self.keys.accounts(bucket);
                let from = from.clone();
                async move {
                    redis::cmd("ZRANGE")
                        .arg(key)
                        .arg(from)
                        .arg("+")
                        .arg("BYLEX")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(want)
                        .query_async::<Vec<String>>(&mut conn)
                        .await
                }
            });
            for bucket in futures_util::future::try_join_all(reads)
                .await
                .map_err(unavailable)?
            {
                ids.extend(bucket);
            }
            ids.sort();
            ids.truncate(want);
            let Some(last) = ids.last() else { break };
            from = format!("({last}");
            let mut accounts = Vec::with_capacity(ids.len());
            for id in &ids {
                let id = AccountId::parse(id)
                    .map_err(|_| BackplaneError::Unavailable(format!("bad account id {id:?}")))?;
                accounts.push(id);
            }
            // One GET per account (each in its own slot), sent together.
            let found = futures_util::future::try_join_all(accounts.iter().map(|id| {
                let mut conn = self.conn();
                let key = self.account_keys(id).account();
                async move { conn.get::<_, Option<Vec<u8>>>(key).await }
            }))
            .await
            .map_err(unavailable)?;
            for (id, bytes) in accounts.iter().zip(found) {
                match decoded::<Account>(bytes)? {
                    Some(account) => out.push(account),
                    None => {
                        let _: i64 = self
                            .conn()
                            .zrem(self.keys.accounts(self.keys.bucket_of(id)), id.as_str())
                            .await
                            .map_err(unavailable)?;
                    }
                }
            }
            if ids.len() < want {
                break;
            }
        }
        Ok(out)
    }

    async fn agents(
        &self,
        account: &AccountId,
        after: Option<&AgentId>,
        limit: usize,
    ) -> Result<Vec<Agent>> {
        // The admin's list: the agents hash is read whole and paged here.
        let all: HashMap<String, Vec<u8>> = self
            .conn()
            .hgetall(self.account_keys(account).agents())
            .await
            .map_err(unavailable)?;
        let mut ids: Vec<&String> = all
            .keys()
            .filter(|id| after.is_none_or(|a| id.as_str() > a.as_str()))
            .collect();
        ids.sort();
        ids.into_iter()
            .take(limit)
            .map(|id| codec::decode::<Agent>(&all[id]).map_err(corrupt))
            .collect()
    }

    async fn delete_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let k = self.account_keys(account);
        let mut call = self.scripts.audited_hdel.prepare_invoke();
        call.key(k.agents()).key(k.audit()).arg(agent.as_str());
        audit_args(&mut call, audit);
        let removed: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn delete_portal(
        &self,
        account: &AccountId,
        portal: &PortalId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let k = self.account_keys(account);
        let mut call = self.scripts.audited_hdel.prepare_invoke();
        call.key(k.portals())
            .key(k.audit())
            .key(k.portal_online(portal))
            .arg(portal.as_str());
        audit_args(&mut call, audit);
        let removed: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn delete_account(&self, account: &AccountId, audit: Audited<'_>) -> Result<bool> {
        let k = self.account_keys(account);
        let mut conn = self.conn();
        let existed: i64 = conn.exists(k.account()).await.map_err(unavailable)?;
        // Every key of the account shares its prefix. SCAN walks the whole
        // keyspace (in pages), which is fine for a rare admin action.
        // On a cluster the scan runs on the primary of the account's slot
        // (SCAN has no key to route by), which holds every key it has.
        let slot = super::keys::slot(k.account().as_bytes());
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(k.pattern())
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) =
                self.query_slot(scan, slot).await.map_err(unavailable)?;
            // The account's own record goes last: a deletion cut short is
            // found and finished by the next call.
            let record = k.account();
            let doomed: Vec<&String> = keys
                .iter()
                .filter(|key| !k.outlives_account(key) && **key != record)
                .collect();
            if !doomed.is_empty() {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(&doomed)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut last = self.scripts.audited_unlink.prepare_invoke();
        last.key(k.account()).key(k.audit());
        audit_args(&mut last, audit);
        let _: i64 = last.invoke_async(&mut conn).await.map_err(unavailable)?;
        let _: i64 = conn
            .zrem(
                self.keys.accounts(self.keys.bucket_of(account)),
                account.as_str(),
            )
            .await
            .map_err(unavailable)?;
        Ok(existed == 1)
    }

    async fn revoke_tokens(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        at: DateTime<Utc>,
        keep_for: Duration,
        audit: Audited<'_>,
    ) -> Result<()> {
        let k = self.account_keys(account);
        let mut call = self.scripts.revoke.prepare_invoke();
        call.key(k.revoked(agent))
            .key(k.audit())
            .arg(at.timestamp_millis())
            .arg(keep_for.as_millis().max(1) as u64);
        audit_args(&mut call, audit);
        let _: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Presence for RedisBackplane {
    async fn login(
        &self,
        account: &AccountId,
        agent: &Agent,
        portal: &PortalId,
    ) -> Result<Option<PortalId>> {
        let k = self.account_keys(account);
        let mut call = self.scripts.login.prepare_invoke();
        call.key(k.presence())
            .key(k.online())
            .key(k.portal_online(portal));
        for other in agent.portals.iter().filter(|p| *p != portal) {
            call.key(k.portal_online(other));
        }
        let now = now_ms();
        let previous: Option<String> = call
            .arg(agent.id.as_str())
            .arg(portal.as_str())
            .arg(now + PRESENCE_TTL.as_millis() as i64)
            .arg(now)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.serve(account, &agent.id, |s| s.logged_in = true);
        Ok(previous.and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn logout(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<Option<PortalId>> {
        let k = self.account_keys(account);
        let mut call = self.scripts.logout.prepare_invoke();
        call.key(k.presence()).key(k.online()).key(k.audit());
        for portal in &agent.portals {
            call.key(k.portal_online(portal));
        }
        call.arg(agent.id.as_str()).arg(now_ms());
        audit_args(&mut call, audit);
        let previous: Option<String> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.serve(account, &agent.id, |s| s.logged_in = false);
        Ok(previous.and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        let k = self.account_keys(account);
        let (portal, expires): (Option<String>, Option<f64>) = redis::pipe()
            .hget(k.presence(), agent.as_str())
            .zscore(k.online(), agent.as_str())
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let live = expires.is_some_and(|e| e > now_ms() as f64);
        Ok(portal
            .filter(|_| live)
            .and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn online_in(
        &self,
        account: &AccountId,
        portal: &PortalId,
    ) -> Result<Option<Vec<AgentId>>> {
        let k = self.account_keys(account);
        let ids: Option<Vec<String>> = self
            .scripts
            .online_in
            .key(k.portal_online(portal))
            .key(k.online())
            .key(k.presence())
            .key(k.portals())
            .arg(portal.as_str())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(ids.map(|ids| {
            let mut ids: Vec<AgentId> = ids.iter().filter_map(|a| AgentId::parse(a).ok()).collect();
            ids.sort();
            ids
        }))
    }

    async fn window(&self, account: &AccountId) -> Result<Window> {
        let k = self.account_keys(account);
        type Rows = (
            Vec<String>,
            Vec<Option<String>>,
            Vec<Option<Vec<u8>>>,
            Vec<Option<i64>>,
            Vec<Vec<u8>>,
        );
        let (ids, portals_of, profiles, actives, portal_hash): Rows = self
            .scripts
            .window
            .key(k.online())
            .key(k.presence())
            .key(k.agents())
            .key(k.active())
            .key(k.portals())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut agents = Vec::with_capacity(ids.len());
        for (i, _) in ids.iter().enumerate() {
            let (Some(Some(portal)), Some(Some(profile))) = (portals_of.get(i), profiles.get(i))
            else {
                continue;
            };
            let Ok(portal) = PortalId::parse(portal) else {
                continue;
            };
            let agent: Agent = codec::decode(profile).map_err(corrupt)?;
            let active = actives.get(i).copied().flatten().unwrap_or(0).max(0);
            agents.push(WindowAgent {
                agent,
                portal,
                active_sessions: u32::try_from(active).unwrap_or(u32::MAX),
            });
        }
        let mut portals = portal_hash
            .chunks(2)
            .filter_map(|pair| pair.get(1))
            .map(|b| codec::decode::<Portal>(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        portals.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Window { agents, portals })
    }

    async fn active_counts(&self, account: &AccountId, agents: &[AgentId]) -> Result<Vec<u32>> {
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.account_keys(account).active());
        for agent in agents {
            hmget.arg(agent.as_str());
        }
        let counts: Vec<Option<u32>> = hmget
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn hold_presence(&self, account: &AccountId, agent: &AgentId, held: bool) {
        self.serve(account, agent, |s| match held {
            true => s.streams += 1,
            false => s.streams = s.streams.saturating_sub(1),
        });
    }
}

#[async_trait]
impl Sessions for RedisBackplane {
    async fn load(&self, account: &AccountId, session: &SessionId) -> Result<Option<Versioned>> {
        let (version, state): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.account_keys(account).session(session))
            .arg("v")
            .arg("s")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match (version, state) {
            (Some(version), Some(bytes)) => Self::decode_session(version, &bytes).map(Some),
            _ => Ok(None),
        }
    }

    async fn refresh(&self, account: &AccountId, session: &SessionId, known: u64) -> Result<Fresh> {
        let reply: Vec<Vec<u8>> = self
            .scripts
            .refresh
            .key(self.account_keys(account).session(session))
            .arg(known)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(match reply.as_slice() {
            [] => Fresh::Gone,
            [_] => Fresh::Current,
            [version, state, ..] => {
                let version = std::str::from_utf8(version)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| BackplaneError::Unavailable("bad session version".into()))?;
                Fresh::Changed(Box::new(Self::decode_session(version, state)?))
            }
        })
    }

    async fn commit(&self, account: &AccountId, commit: Commit<'_>) -> Result<Committed> {
        let (version, earliest): (i64, String) = self
            .commit_call(account, &commit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match version {
            -1 => return Ok(Committed::Conflict),
            -2 => return Ok(Committed::Refused),
            _ => {}
        }
        if let Ok(at) = earliest.parse::<f64>() {
            self.touch_index(account, at as i64).await;
        }
        Ok(Committed::Stored(version as u64))
    }

    async fn accept_context(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
        agent: &AgentId,
        known_version: Option<u64>,
    ) -> Result<AcceptContext> {
        let k = self.account_keys(account);
        type Reply = (
            Option<String>,
            i64,
            Option<u64>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let (portal, active, version, state, closed): Reply = self
            .scripts
            .accept_context
            .key(k.presence())
            .key(k.online())
            .key(k.active())
            .key(k.session(session))
            .key(k.history(session))
            .arg(agent.as_str())
            .arg(invitation.as_str())
            .arg(known_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let current = match (version, state) {
            (Some(v), Some(bytes)) => Some(Self::decode_session(v, &bytes)?),
            _ => None,
        };
        Ok(AcceptContext {
            portal: portal.and_then(|p| PortalId::parse(&p).ok()),
            active_sessions: u32::try_from(active.max(0)).unwrap_or(u32::MAX),
            version,
            current,
            closed: decoded(closed)?,
        })
    }

    async fn closed_invitation(
        &self,
        account: &AccountId,
        session: &SessionId,
        invitation: &InvitationId,
    ) -> Result<Option<Invitation>> {
        let key = self.account_keys(account).history(session);
        self.hget_decoded(key, invitation.as_str()).await
    }

    async fn messages(
        &self,
        account: &AccountId,
        session: &SessionId,
        transcript: Transcript,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        if limit == 0 || before.is_some_and(|b| b <= 1) {
            return Ok(Vec::new());
        }
        let k = self.account_keys(account);
        let chat = k.chat(session);
        let paged = match transcript {
            Transcript::Agents => chat.clone(),
            Transcript::Customer => k.customer_chat(session),
        };
        // One script clamps the page to the transcript's length.
        let raw: Vec<Vec<u8>> = self
            .scripts
            .transcript_page
            .key(paged)
            .key(chat)
            .arg(before.map(|b| b.to_string()).unwrap_or_default())
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut page = raw
            .iter()
            .map(|b| codec::decode::<Message>(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        page.reverse();
        Ok(page)
    }

    async fn agent_sessions(&self, account: &AccountId, agent: &AgentId) -> Result<Vec<SessionId>> {
        let ids: Vec<String> = self
            .conn()
            .smembers(self.account_keys(account).agent_sessions(agent))
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
            .hgetall(self.account_keys(account).open(target))
            .await
            .map_err(unavailable)?;
        let mut offers: Vec<_> = all
            .iter()
            .filter_map(|(i, s)| Some((InvitationId::parse(i).ok()?, SessionId::parse(s).ok()?)))
            .collect();
        offers.sort();
        Ok(offers)
    }

    async fn sessions_page(
        &self,
        account: &AccountId,
        status: SessionStatus,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<(SessionCursor, Versioned)>> {
        let k = self.account_keys(account);
        let index = k.sessions_index(status);
        let mut out = Vec::with_capacity(limit);
        let mut cursor = after.cloned();
        // A session past its retention may still be listed (the index is
        // pruned as sessions end): it is dropped from the index as it is
        // met, and the page filled from further on.
        while out.len() < limit {
            let want = limit - out.len();
            let (score, member) = match &cursor {
                Some(c) => (c.at_ms.to_string(), c.session.as_str().to_owned()),
                None => ("-inf".to_owned(), String::new()),
            };
            let page: Vec<String> = self
                .scripts
                .sessions_page
                .key(&index)
                .arg(score)
                .arg(member)
                .arg(want)
                .invoke_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            let listed: Vec<SessionCursor> = page
                .chunks(2)
                .filter_map(|pair| match pair {
                    [id, at] => Some(SessionCursor {
                        at_ms: at.parse::<f64>().ok()? as i64,
                        session: SessionId::parse(id).ok()?,
                    }),
                    _ => None,
                })
                .collect();
            let Some(last) = listed.last() else { break };
            cursor = Some(last.clone());
            let mut pipe = redis::pipe();
            for c in &listed {
                pipe.cmd("HMGET")
                    .arg(k.session(&c.session))
                    .arg("v")
                    .arg("s");
            }
            let states: Vec<(Option<u64>, Option<Vec<u8>>)> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            let fetched = listed.len();
            for (listed, state) in listed.into_iter().zip(states) {
                match state {
                    (Some(version), Some(bytes)) => {
                        out.push((listed, Self::decode_session(version, &bytes)?));
                    }
                    _ => {
                        let _: i64 = self
                            .conn()
                            .zrem(&index, listed.session.as_str())
                            .await
                            .map_err(unavailable)?;
                    }
                }
            }
            if fetched < want {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Claims for RedisBackplane {
    async fn claim(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
        ttl: Duration,
    ) -> Result<Claim> {
        let k = self.account_keys(account);
        let (won, value): (i64, String) = self
            .scripts
            .claim
            .key(k.claim(invitation))
            .key(k.fence())
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
            .scripts
            .release
            .key(self.account_keys(account).claim(invitation))
            .arg(agent.as_str())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Bus for RedisBackplane {
    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()> {
        let command = match self.conn {
            Conn::Single(_) => "PUBLISH",
            Conn::Cluster(_) => "SPUBLISH",
        };
        let _: i64 = redis::cmd(command)
            .arg(self.keys.channel(&topic))
            .arg(pubsub::encode(&message))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>> {
        let channel = self.keys.channel(topic);
        let rx = {
            let mut senders = lock(&self.senders);
            if let Some(tx) = senders.get(&channel) {
                return Ok(tx.subscribe());
            }
            let (tx, rx) = broadcast::channel(topic.capacity());
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

    fn resyncs(&self) -> watch::Receiver<u64> {
        self.resync_rx.clone()
    }
}

#[async_trait]
impl Timers for RedisBackplane {
    async fn schedule(
        &self,
        account: &AccountId,
        session: &SessionId,
        timer: &Timer,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let at_ms = at.timestamp_millis();
        let _: i64 = self
            .conn()
            .zadd(
                self.account_keys(account).timers(),
                timer_member(session, timer),
                at_ms,
            )
            .await
            .map_err(unavailable)?;
        self.touch_index(account, at_ms).await;
        Ok(())
    }

    fn take_due(&self) -> Option<mpsc::Receiver<Deadline>> {
        lock(&self.due_rx).take()
    }

    async fn complete(&self, deadline: &Deadline) -> Result<()> {
        let _: i64 = self
            .scripts
            .timer_complete
            .key(self.account_keys(&deadline.account).timers())
            .arg(timer_member(&deadline.session, &deadline.timer))
            .arg(deadline.lease)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// What the token scripts read, decoded: the later revocation mark counts.
fn holder(
    account: Option<Vec<u8>>,
    agent: Option<Vec<u8>>,
    mark_ms: Option<i64>,
    rate: RateVerdict,
) -> Result<TokenHolder> {
    Ok(TokenHolder {
        account: decoded(account)?,
        agent: decoded(agent)?,
        not_before: mark_ms.and_then(DateTime::from_timestamp_millis),
        rate,
    })
}

/// A bucket script's answer: 0 when taken, else the ms until one fits.
fn verdict(wait_ms: u64) -> RateVerdict {
    if wait_ms == 0 {
        RateVerdict::Allowed
    } else {
        RateVerdict::Limited(Duration::from_millis(wait_ms))
    }
}

#[async_trait]
impl RateLimits for RedisBackplane {
    async fn take_admin(&self, rate: Rate) -> Result<RateVerdict> {
        let wait: u64 = self
            .scripts
            .rate
            .key(self.keys.admin_bucket())
            .arg(rate.per_sec)
            .arg(rate.burst)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(verdict(wait))
    }
}

#[async_trait]
impl Health for RedisBackplane {
    async fn ping(&self) -> Result<()> {
        if !self.pubsub_up.load(Ordering::Relaxed) {
            return Err(BackplaneError::Unavailable(
                "pub/sub connection is down".into(),
            ));
        }
        // On a cluster: a primary at random (the subscriber being up
        // already says every primary is reachable).
        let _: String = self
            .query_slot(redis::cmd("PING"), 0)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Durability for RedisBackplane {
    async fn confirm(&self, account: &AccountId) -> Result<()> {
        self.durable
            .confirm(&self.account_keys(account).durable_marker())
            .await
    }
}

#[async_trait]
impl Idempotency for RedisBackplane {
    async fn reserve(
        &self,
        account: &AccountId,
        key: &str,
        running: &str,
        running_for: Duration,
    ) -> Result<Option<String>> {
        self.scripts
            .idempotency_reserve
            .key(self.account_keys(account).idempotency(key))
            .arg(running)
            .arg(millis(running_for))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn record(
        &self,
        account: &AccountId,
        key: &str,
        value: &str,
        keep_for: Duration,
    ) -> Result<()> {
        let _: () = redis::cmd("SET")
            .arg(self.account_keys(account).idempotency(key))
            .arg(value)
            .arg("PX")
            .arg(millis(keep_for))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forget(&self, account: &AccountId, key: &str) -> Result<()> {
        let _: () = self
            .conn()
            .del(self.account_keys(account).idempotency(key))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// A duration in whole milliseconds, at least one (`PX 0` is an error).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
