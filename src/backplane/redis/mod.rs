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
//!   serves. Each node holds a lease it renews twice a second and a `held`
//!   hash per account of the agents it serves (`lease.rs`); when a lease
//!   runs out, one surviving node fades that node's agents at once (no live
//!   node streams to them) and the node withdraws their alerts, within
//!   [`lease::FADE_BOUND`] of the crash rather than [`PRESENCE_TTL`]. The
//!   cost is per node and per change of who streams where, not per agent.
//! - Timers: a set per account and a small index of accounts with timers
//!   (`timers.rs`, bucketed on a cluster); every node polls the index, and
//!   leases what it takes.
//! - Durability: with `wait_replicas`, `WAIT` on connections of its own
//!   (`durable.rs`); `Idempotency-Key` records on the account's tag.
//!
//! Every key is built by `keys.rs`; every script touches one hash tag.
//!
//! The rooms: `connect.rs` (clients, the timed connection, start-up),
//! `commit.rs` (a commit as one call of the COMMIT script), one file per
//! role trait (`directory`, `presence`, `sessions`, `claims`, `bus`,
//! `timers`, `audit`, `limits`, `health`, `idempotency`), and the shared
//! helpers below. The memory backplane has the same rooms, so the two
//! `claims.rs` can be read side by side.

mod audit;
mod bus;
mod claims;
mod commit;
mod connect;
mod directory;
mod durable;
mod health;
mod idempotency;
mod lease;
mod limits;
mod presence;
mod pubsub;
mod scripts;
mod sessions;
mod shards;
mod timers;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use redis::{AsyncCommands, Client};
use tokio::sync::{mpsc, watch};

use super::keys::{AccountKeys, Keyspace};
use super::{Audited, BackplaneError, Deadline, Replaces, Result, Stored, Versioned, codec};
use crate::domain::audit::MAX_ACCOUNT_ENTRIES;
use crate::domain::{AccountId, AgentId, AuditEntry, Session};
use connect::{COMMAND_DEADLINE, Conn, Timed};
pub use lease::FADE_BOUND;
use pubsub::{Senders, SubCommand};
use scripts::Scripts;

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

fn corrupt(e: codec::CodecError) -> BackplaneError {
    BackplaneError::Corrupt(format!("undecodable data in Redis: {e}"))
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

/// What carries this node's subscriptions.
enum Subscriber {
    /// One pub/sub connection to the one Redis (`pubsub.rs`).
    Single(Client),
    /// One connection per shard of the cluster (`shards.rs`); the command
    /// connection reads the slot map.
    Shards(connect::Cluster, shards::ShardClients),
}

/// Why this node keeps an agent's presence fresh.
#[derive(Debug, Default)]
struct Served {
    /// It logged in through this node.
    logged_in: bool,
    /// Its event streams held by this node.
    streams: usize,
}

impl Served {
    /// What the node's `held` hash says of it: `s` it streams from here
    /// (it stays online when another node dies), `l` it only logged in here.
    fn held(&self) -> Option<&'static str> {
        match (self.streams, self.logged_in) {
            (0, false) => None,
            (0, true) => Some("l"),
            _ => Some("s"),
        }
    }
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
    /// This node's id in the leases (random per process: a restarted node
    /// is a new one, and the old one's agents are reaped).
    node_id: String,
    /// Agents whose `held` entry changed since it was written (the lease
    /// loop writes them; bounded by the agents served).
    dirty: Mutex<std::collections::HashSet<(AccountId, AgentId)>>,
    /// Accounts listed in this node's `node:{n}:accounts` set.
    indexed: Mutex<std::collections::HashSet<AccountId>>,
    faded_rx: Mutex<Option<mpsc::Receiver<crate::backplane::Faded>>>,
    faded_tx: mpsc::Sender<crate::backplane::Faded>,
    /// Timer index updates that failed, retried by the timer loop (the
    /// earliest per account): until one lands, that account's new earliest
    /// timer might be looked at late.
    index_retries: Mutex<HashMap<AccountId, i64>>,
}

impl RedisBackplane {
    /// The keyspace this backplane uses (tests count and inspect its keys).
    pub fn keyspace(&self) -> &Keyspace {
        &self.keys
    }

    fn conn(&self) -> Timed {
        Timed::new(self.conn.clone())
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
        let before = entry.held();
        change(entry);
        let after = entry.held();
        if after.is_none() {
            served.remove(&key);
        }
        if before != after {
            lock(&self.dirty).insert(key);
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
                let value =
                    connect::round_trip(COMMAND_DEADLINE, cluster.route_command(cmd, route))
                        .await?;
                Ok(redis::from_redis_value(value)?)
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
