//! Connecting: the client of one Redis or a Redis Cluster (TLS when the
//! URL says `rediss://`), the connection every command goes through, timed
//! for `/metrics`, and the start of the backplane with its tasks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, TlsCertificates};
use tokio::sync::{mpsc, watch};

use super::{
    CLUSTER_RETRIES, REDIS_TIMEOUT, RedisBackplane, Scripts, Subscriber, durable, lease, pubsub,
    shards, timers, unavailable,
};
use crate::backplane::keys::Keyspace;
use crate::backplane::{BackplaneError, Result};
use crate::settings::{BackplaneKind, BackplaneSettings};

/// The certificates to trust for `rediss://`: `tls_ca_file` when set, else
/// none (the platform's roots).
pub(super) fn tls_certificates(settings: &BackplaneSettings) -> Result<Option<TlsCertificates>> {
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
pub(super) fn client_for(
    info: impl redis::IntoConnectionInfo,
    certs: Option<&TlsCertificates>,
) -> Result<Client> {
    match certs {
        None => Client::open(info).map_err(unavailable),
        Some(certs) => Client::build_with_tls(info, certs.clone()).map_err(unavailable),
    }
}

/// The client of a single Redis (`backplane.redis_url`).
pub(super) fn client(settings: &BackplaneSettings) -> Result<Client> {
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
pub(super) fn cluster_connection(
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
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(Cluster),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => Box::pin(async move {
                let answer = c.current().req_packed_command(cmd).await;
                c.observe(&answer);
                answer
            }),
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
            Conn::Cluster(c) => Box::pin(async move {
                let answer = c
                    .current()
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                c.observe(&answer);
                answer
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

/// A Redis Cluster command connection that replaces itself when it wedges.
///
/// Seen under load (redis 1.8.1): after a master's failover, one node's
/// client began a slot refresh that never ended; from then on every command
/// waited out its response timeout, for minutes, while the other nodes and
/// the cluster itself were fine. So: when commands time out and none has
/// succeeded for [`WEDGED_AFTER`], a new client is connected in its place
/// (at most once per [`REPLACE_EVERY`]); commands running on the old one
/// finish or time out on it.
#[derive(Clone)]
pub(super) struct Cluster {
    inner: Arc<ClusterInner>,
}

struct ClusterInner {
    current: std::sync::RwLock<ClusterConnection>,
    connect: Box<dyn Fn() -> Result<ClusterConnection> + Send + Sync>,
    epoch: std::time::Instant,
    /// When a command last succeeded, in ms since `epoch`.
    last_ok: AtomicU64,
    /// When the client was last connected, in ms since `epoch`.
    connected: AtomicU64,
}

/// Commands timing out with none succeeding for this long: the client is
/// wedged (longer than a failover's retries, which end in errors anyway).
pub(super) const WEDGED_AFTER: Duration = Duration::from_secs(5);
/// The least time between two replacements of a cluster client.
pub(super) const REPLACE_EVERY: Duration = Duration::from_secs(10);

/// Whether a client whose last success was at `last_ok` and which was
/// connected at `connected` (ms) should be replaced at `now` after a
/// timeout.
fn wedged(now: u64, last_ok: u64, connected: u64) -> bool {
    now.saturating_sub(last_ok) >= WEDGED_AFTER.as_millis() as u64
        && now.saturating_sub(connected) >= REPLACE_EVERY.as_millis() as u64
}

impl Cluster {
    /// A client from `connect`, which is called again to replace it.
    pub(super) fn new(
        connect: impl Fn() -> Result<ClusterConnection> + Send + Sync + 'static,
    ) -> Result<Self> {
        let first = connect()?;
        Ok(Self {
            inner: Arc::new(ClusterInner {
                current: std::sync::RwLock::new(first),
                connect: Box::new(connect),
                epoch: std::time::Instant::now(),
                last_ok: AtomicU64::new(0),
                connected: AtomicU64::new(0),
            }),
        })
    }

    fn current(&self) -> ClusterConnection {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn now(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    /// Notes how a command went; a timeout of a wedged client replaces it.
    fn observe<T>(&self, answer: &redis::RedisResult<T>) {
        let inner = &self.inner;
        match answer {
            Ok(_) => inner.last_ok.store(self.now(), Ordering::Relaxed),
            Err(e) if e.is_timeout() => {
                let now = self.now();
                let connected = inner.connected.load(Ordering::Relaxed);
                if wedged(now, inner.last_ok.load(Ordering::Relaxed), connected)
                    && inner
                        .connected
                        .compare_exchange(connected, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    match (inner.connect)() {
                        Ok(fresh) => {
                            *inner.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                            crate::metrics::redis_client_replaced();
                            tracing::warn!(
                                "Redis Cluster client wedged (commands timing out, none answered for {} s): replaced",
                                WEDGED_AFTER.as_secs()
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot replace a wedged Redis Cluster client")
                        }
                    }
                }
            }
            Err(_) => {}
        }
    }

    /// [`ClusterConnection::route_command`] on the current client.
    pub(super) async fn route_command(
        &self,
        cmd: redis::Cmd,
        routing: redis::cluster_routing::RoutingInfo,
    ) -> redis::RedisResult<redis::Value> {
        let answer = self.current().route_command(cmd, routing).await;
        self.observe(&answer);
        answer
    }
}

/// The shared connection, each round trip timed for `/metrics`
/// (`collabd_redis_command_duration_seconds`) and bounded by a deadline of
/// its own. The client's response timeout covers an answer that does not
/// come on a live connection; the deadline covers everything else a
/// command may wait on inside the client (a slot refresh, a reconnect, a
/// redirect, its retries): after a master's failover under load one node
/// held ~150 requests for minutes while the others answered 503 at once,
/// each holding a place among the node's requests and its session actor.
#[derive(Clone)]
pub(super) struct Timed<C = Conn> {
    conn: C,
    deadline: Duration,
}

/// How long any one command may take, whatever the client does inside:
/// its retries (`CLUSTER_RETRIES`, each up to `REDIS_TIMEOUT` plus a wait
/// of at most 500 ms) fit, with room.
pub(super) const COMMAND_DEADLINE: Duration = Duration::from_secs(6);

impl<C> Timed<C> {
    /// Commands on `conn`, each within [`COMMAND_DEADLINE`].
    pub(super) fn new(conn: C) -> Self {
        Self::within(conn, COMMAND_DEADLINE)
    }

    /// Commands on `conn`, each within `deadline`.
    pub(super) fn within(conn: C, deadline: Duration) -> Self {
        Self { conn, deadline }
    }
}

/// One round trip, timed for `/metrics` and cut at `deadline` (then a
/// timeout error: the backplane is unavailable).
pub(super) async fn round_trip<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} ms", deadline.as_millis()),
            )))
        });
    crate::metrics::redis_round_trip(started.elapsed());
    answer
}

impl<C: redis::aio::ConnectionLike + Send> redis::aio::ConnectionLike for Timed<C> {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(round_trip(self.deadline, self.conn.req_packed_command(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(round_trip(
            self.deadline,
            self.conn.req_packed_commands(pipeline, offset, count),
        ))
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
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
        let (due_tx, due_rx) = mpsc::channel(crate::backplane::DUE_BACKLOG);
        let (faded_tx, faded_rx) = mpsc::channel(lease::FADED_BACKLOG);
        // A `WAIT` may block its connection for the whole wait.
        let wait_timeout = settings.wait_timeout() + REDIS_TIMEOUT;
        let (conn, subscriber, durable) = if cluster {
            let durable =
                durable::Durable::new(settings.wait_replicas, settings.wait_timeout(), || {
                    let settings = settings.clone();
                    Cluster::new(move || cluster_connection(&settings, wait_timeout))
                        .map(Conn::Cluster)
                })?;
            let conn = {
                let settings = settings.clone();
                Cluster::new(move || cluster_connection(&settings, REDIS_TIMEOUT))?
            };
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
            node_id: format!("{:016x}", rand::random::<u64>()),
            dirty: Mutex::default(),
            indexed: Mutex::default(),
            faded_rx: Mutex::new(Some(faded_rx)),
            faded_tx,
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
        tokio::spawn(lease::run(Arc::downgrade(&backplane)));
        Ok(backplane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that takes every command and never answers.
    struct Silent;

    impl redis::aio::ConnectionLike for Silent {
        fn req_packed_command<'a>(
            &'a mut self,
            _: &'a redis::Cmd,
        ) -> redis::RedisFuture<'a, redis::Value> {
            Box::pin(std::future::pending())
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            _: &'a redis::Pipeline,
            _: usize,
            _: usize,
        ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
            Box::pin(std::future::pending())
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    /// A command the client never answers fails at its deadline, as a
    /// timeout (so the request is a 503), commands and pipelines alike.
    #[tokio::test]
    async fn a_command_never_answered_fails_at_its_deadline() {
        let mut conn = Timed::within(Silent, Duration::from_millis(20));
        let got: redis::RedisResult<String> =
            redis::cmd("GET").arg("k").query_async(&mut conn).await;
        let e = got.expect_err("no answer is an error");
        assert!(e.is_timeout(), "{e}");
        assert!(e.to_string().contains("no answer within 20 ms"), "{e}");
        let got: redis::RedisResult<(String,)> = redis::pipe()
            .cmd("GET")
            .arg("k")
            .query_async(&mut conn)
            .await;
        assert!(got.expect_err("no answer").is_timeout());
    }
}

#[cfg(test)]
mod wedge_tests {
    use super::*;

    #[test]
    fn a_client_is_replaced_only_when_nothing_succeeded_for_a_while_and_not_too_often() {
        let (wedged_ms, every_ms) = (
            WEDGED_AFTER.as_millis() as u64,
            REPLACE_EVERY.as_millis() as u64,
        );
        let start = every_ms;
        // A success a moment ago: a timeout is a failover's, not a wedge.
        assert!(!wedged(start + 1_000, start, 0));
        // Nothing answered for WEDGED_AFTER: replace.
        assert!(wedged(start + wedged_ms, start, 0));
        // Replaced a moment ago: not again yet, however long it fails.
        assert!(!wedged(start + wedged_ms, start, start + wedged_ms - 1));
        assert!(wedged(
            start + wedged_ms + every_ms,
            start,
            start + wedged_ms
        ));
    }
}
