//! Node leases: a dead node's agents fade within seconds, not
//! [`PRESENCE_TTL`](super::PRESENCE_TTL).
//!
//! Every node renews a lease twice a second (one script on the `{ns}` tag,
//! whatever the number of agents) and keeps, per account, a `held` hash of
//! the agents it serves: `s` for those it streams to, `l` for those only
//! logged in through it. The hash changes when an agent's first stream
//! opens here (at once, [`Presence::hold`]) or when who it serves changes
//! (written by the next tick), not per agent per second. When a lease runs
//! out, the first node to see it takes it (atomically: once in the
//! cluster) and, per account of the dead node, fades every agent of its
//! `held` hash that no live node streams to: its presence expires now, so
//! no invitation is offered to it any more, and this node's fade worker
//! withdraws its open alerts (escalating direct invitations). A node that
//! streams to a faded agent later (its client reconnected through another
//! node) brings it back.
//!
//! A lease is only taken by a node that renewed without a break while it
//! ran out: when Redis is away for everyone (a failover), nobody's agents
//! fade for it. A node taken for dead by mistake (stalled longer than
//! lease + grace) writes all it holds again at its next renewal.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use super::{PRESENCE_TTL, RedisBackplane, lock, now_ms};
use crate::backplane::Faded;
use crate::domain::{AccountId, AgentId};

/// How many fades may wait for the fade worker (each one account's agents).
pub const FADED_BACKLOG: usize = 256;
/// How often a node renews its lease and writes what changed.
const TICK: Duration = Duration::from_millis(500);
/// How long a lease lasts without renewal.
const LEASE: Duration = Duration::from_millis(1_500);
/// How long past its end a lease is taken (a late renewal's margin).
const GRACE: Duration = Duration::from_millis(500);
/// From a node's death to its agents' fade, at the latest: its lease runs
/// out, the grace passes, and another node's tick sees it (two ticks: the
/// renewal that saw the lapse unbroken, and the one that takes it).
pub const FADE_BOUND: Duration = Duration::from_millis(1_500 + 500 + 2 * 500);
/// How long a node's `held` hashes and accounts set outlive it when nobody
/// reaps them (a reaper that died too).
pub(super) const HELD_LIFETIME: Duration = Duration::from_secs(60);
/// How long a node has to reap a dead one before another node takes over
/// (the answer that said "reap it" was lost, or the reaper died too).
const REAPER_TIME: Duration = Duration::from_secs(5);

/// One renewal's answer.
struct Renewal {
    /// This node had no lease (new, or taken for dead): write all again.
    rejoined: bool,
    /// Nodes whose leases this node took.
    dead: Vec<String>,
    /// Nodes still leased (this one too).
    live: Vec<String>,
}

/// The lease loop of one node.
pub(super) async fn run(backplane: Weak<RedisBackplane>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u32 = 0;
    loop {
        tick.tick().await;
        let Some(bp) = backplane.upgrade() else {
            return;
        };
        let renewal = match bp.renew().await {
            Ok(renewal) => {
                failures = 0;
                renewal
            }
            Err(e) => {
                // Twice a second during an outage: say it once, then rarely.
                if failures.is_multiple_of(60) {
                    tracing::warn!(error = %e, "node lease not renewed");
                }
                failures = failures.wrapping_add(1);
                continue;
            }
        };
        if renewal.rejoined {
            bp.rejoin();
        }
        bp.flush().await;
        for node in &renewal.dead {
            // Not done: the lease stays taken, and after REAPER_TIME a node
            // (this one or another) takes it again.
            if let Err(e) = bp.reap(node, &renewal.live).await {
                tracing::warn!(error = %e, %node, "could not reap a dead node's agents; retrying");
            }
        }
    }
}

impl RedisBackplane {
    async fn renew(&self) -> redis::RedisResult<Renewal> {
        let (rejoined, dead, live): (i64, Vec<String>, Vec<String>) = self
            .scripts
            .lease
            .key(self.keys.nodes())
            .key(self.keys.nodes_since())
            .key(self.keys.node_accounts(&self.node_id))
            .key(self.keys.nodes_reaping())
            .arg(&self.node_id)
            .arg(LEASE.as_millis() as u64)
            .arg(GRACE.as_millis() as u64)
            .arg(PRESENCE_TTL.as_millis() as u64)
            .arg(HELD_LIFETIME.as_secs())
            .arg(REAPER_TIME.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Renewal {
            rejoined: rejoined == 1,
            dead,
            live,
        })
    }

    /// This node's lease was gone (it starts, or it was taken for dead and
    /// its `held` hashes deleted): everything it serves is written again.
    fn rejoin(&self) {
        lock(&self.indexed).clear();
        let served: Vec<_> = lock(&self.served).keys().cloned().collect();
        if !served.is_empty() {
            tracing::warn!(
                agents = served.len(),
                "this node's lease was taken for dead; writing what it serves again"
            );
        }
        lock(&self.dirty).extend(served);
    }

    /// Writes the `held` entries that changed since the last tick.
    async fn flush(&self) {
        let dirty: Vec<_> = lock(&self.dirty).drain().collect();
        if dirty.is_empty() {
            return;
        }
        let mut by_account: HashMap<AccountId, Vec<(AgentId, Option<&'static str>)>> =
            HashMap::new();
        {
            let served = lock(&self.served);
            for (account, agent) in dirty {
                let held = served
                    .get(&(account.clone(), agent.clone()))
                    .and_then(super::Served::held);
                by_account.entry(account).or_default().push((agent, held));
            }
        }
        let writes = by_account.into_iter().map(|(account, entries)| async move {
            match self.write_held(&account, &entries).await {
                Ok(()) => None,
                Err(e) => Some((account, entries, e)),
            }
        });
        for (account, entries, e) in futures_util::future::join_all(writes)
            .await
            .into_iter()
            .flatten()
        {
            tracing::warn!(error = %e, %account, "held agents not written; retrying");
            lock(&self.dirty).extend(entries.into_iter().map(|(a, _)| (account.clone(), a)));
        }
    }

    /// Lists `account` in this node's accounts set, once per process (and
    /// again after a rejoin): a reaper finds the node's `held` hashes there.
    pub(super) async fn index_account(&self, account: &AccountId) -> redis::RedisResult<()> {
        if lock(&self.indexed).contains(account) {
            return Ok(());
        }
        let key = self.keys.node_accounts(&self.node_id);
        redis::pipe()
            .sadd(&key, account.as_str())
            .ignore()
            .expire(&key, HELD_LIFETIME.as_secs() as i64)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        lock(&self.indexed).insert(account.clone());
        Ok(())
    }

    /// Writes what this node holds of some agents of `account`; an agent it
    /// streams to is brought back online if it faded (`XX`: not after a
    /// logout).
    pub(super) async fn write_held(
        &self,
        account: &AccountId,
        entries: &[(AgentId, Option<&'static str>)],
    ) -> redis::RedisResult<()> {
        // Listed first: a node that dies between the two is still reaped.
        self.index_account(account).await?;
        let k = self.account_keys(account);
        let held = k.held(&self.node_id);
        let expires = now_ms() + PRESENCE_TTL.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (agent, kind) in entries {
            match kind {
                Some(kind) => {
                    pipe.hset(&held, agent.as_str(), *kind).ignore();
                    if *kind == "s" {
                        pipe.cmd("ZADD")
                            .arg(k.online())
                            .arg("XX")
                            .arg(expires)
                            .arg(agent.as_str())
                            .ignore();
                    }
                }
                None => {
                    pipe.hdel(&held, agent.as_str()).ignore();
                }
            }
        }
        pipe.expire(&held, HELD_LIFETIME.as_secs() as i64).ignore();
        pipe.query_async::<()>(&mut self.conn()).await
    }

    /// Fades the agents of dead `node` in every account it held agents of,
    /// and hands them to the fade worker.
    async fn reap(&self, node: &str, live: &[String]) -> redis::RedisResult<()> {
        let accounts_key = self.keys.node_accounts(node);
        let accounts: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&accounts_key)
            .query_async(&mut self.conn())
            .await?;
        let mut total = 0;
        for account in accounts.iter().filter_map(|a| AccountId::parse(a).ok()) {
            let k = self.account_keys(&account);
            let mut call = self.scripts.reap.prepare_invoke();
            call.key(k.held(node)).key(k.online());
            for other in live {
                call.key(k.held(other));
            }
            let faded: Vec<String> = call.arg(now_ms()).invoke_async(&mut self.conn()).await?;
            let agents: Vec<AgentId> = faded
                .iter()
                .filter_map(|a| AgentId::parse(a).ok())
                .collect();
            if agents.is_empty() {
                continue;
            }
            total += agents.len();
            let faded = Faded { account, agents };
            if let Err(e) = self.faded_tx.try_send(faded) {
                // Their presence has faded all the same; their alerts
                // expire by their own timers.
                tracing::warn!(error = %e, "fade worker behind; alerts left to expire");
            }
        }
        let _: i64 = self
            .scripts
            .lease_done
            .key(self.keys.nodes())
            .key(self.keys.nodes_since())
            .key(self.keys.nodes_reaping())
            .key(&accounts_key)
            .arg(node)
            .invoke_async(&mut self.conn())
            .await?;
        tracing::info!(%node, agents = total, "a node's lease ran out; its agents faded");
        Ok(())
    }
}
