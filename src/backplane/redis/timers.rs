//! The node's background work against Redis: polling the timer index and
//! refreshing the presence of the agents this node serves.
//!
//! Timers live in a set per account; the index `timer-index` says when each
//! account with timers must be looked at next. One Redis has one index; a
//! Redis Cluster has `keys::CLUSTER_BUCKETS` of them, each in a hash tag of
//! its own (`{namespace/b}`), an account always in the same one, so that no
//! key is global and the polling spreads over the masters (a poll looks at
//! every bucket). A commit that makes a timer its account's earliest lowers
//! the index (`ZADD LT`) and bumps the account's generation. A poller leases
//! the due accounts, leases their due timers, and then raises the account's
//! place in the index to its new earliest timer — only if the generation
//! did not change meanwhile, so a timer added during the poll is never
//! skipped.

use std::sync::Weak;
use std::time::Duration;

use chrono::DateTime;
use tokio::sync::mpsc;

use super::{RedisBackplane, lock, now_ms, unavailable};
use crate::backplane::Deadline;
use crate::backplane::keys::{parse_timer_member, timer_member};
use crate::backplane::{Result, Timers};
use crate::domain::SessionId;
use crate::domain::session::Timer;
use crate::domain::{AccountId, AgentId};
use async_trait::async_trait;
use chrono::Utc;
use redis::AsyncCommands;

/// How often a node looks for timers that fell due.
const TIMER_POLL: Duration = Duration::from_millis(200);
/// How long a taken account or timer is leased to the node that took it
/// before another node may take it (the node died, or its handling failed).
const TIMER_LEASE: Duration = Duration::from_secs(15);
/// Accounts looked at per poll.
const ACCOUNTS_PER_POLL: usize = 50;
/// Due timers taken per account per poll.
const TIMERS_PER_ACCOUNT: usize = 200;
/// How often a node refreshes the presence of the agents it serves.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Presence entries expired this long are removed from the online set.
const PRESENCE_PRUNE_AFTER: Duration = Duration::from_secs(300);
/// Heartbeats between two re-indexings of the served accounts' timers.
const REINDEX_EVERY: u32 = 12;

/// Takes due timers and hands them to the node's timer worker.
pub(super) async fn poll(backplane: Weak<RedisBackplane>, due: mpsc::Sender<Deadline>) {
    let mut tick = tokio::time::interval(TIMER_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(bp) = backplane.upgrade() else {
            return;
        };
        retry_index_touches(&bp).await;
        if let Err(e) = poll_once(&bp, &due).await {
            tracing::debug!(error = %e, "timer poll failed");
        }
        if due.is_closed() {
            return;
        }
    }
}

async fn retry_index_touches(bp: &RedisBackplane) {
    let pending = std::mem::take(&mut *lock(&bp.index_retries));
    for (account, at) in pending {
        bp.touch_index(&account, at).await;
    }
}

/// Puts each account this node serves back into the timer index at its
/// earliest timer. A commit touches the index after it stored its timers;
/// a node that died in between left a timer the index does not know of:
/// this finds it within [`REINDEX_EVERY`] heartbeats.
async fn reindex(bp: &RedisBackplane, accounts: impl Iterator<Item = &AccountId>) {
    for account in accounts {
        let earliest: redis::RedisResult<Option<f64>> = bp
            .scripts
            .timers_earliest
            .key(bp.account_keys(account).timers())
            .invoke_async(&mut bp.conn())
            .await;
        if let Ok(Some(at)) = earliest {
            bp.touch_index(account, at as i64).await;
        }
    }
}

async fn poll_once(bp: &RedisBackplane, due: &mpsc::Sender<Deadline>) -> redis::RedisResult<()> {
    // Take no more than the timer worker has room for: what stays behind
    // waits in Redis, unleased, for the next poll (of any node).
    let room = due.capacity();
    if room == 0 {
        return Ok(());
    }
    // Each bucket of the index on its own (on a cluster each lives on its
    // own shard): a shard that is down delays only its bucket's timers.
    let mut failed = None;
    for bucket in bp.keys.buckets() {
        if let Err(e) = poll_bucket(bp, due, bucket).await {
            failed = Some(e);
        }
        if due.is_closed() {
            break;
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn poll_bucket(
    bp: &RedisBackplane,
    due: &mpsc::Sender<Deadline>,
    bucket: u16,
) -> redis::RedisResult<()> {
    if due.capacity() == 0 {
        return Ok(());
    }
    let now = now_ms();
    let lease_until = now + TIMER_LEASE.as_millis() as i64;
    let taken: Vec<String> = bp
        .scripts
        .index_take
        .key(bp.keys.timer_index(bucket))
        .key(bp.keys.timer_gen(bucket))
        .arg(now)
        .arg(ACCOUNTS_PER_POLL)
        .arg(lease_until)
        .invoke_async(&mut bp.conn())
        .await?;
    for pair in taken.chunks(2) {
        let [account, generation] = pair else {
            continue;
        };
        let Ok(id) = AccountId::parse(account) else {
            continue;
        };
        let timers = bp.account_keys(&id).timers();
        let (members, times, earliest): (Vec<String>, Vec<f64>, String) = bp
            .scripts
            .timers_take
            .key(&timers)
            .arg(now)
            .arg(TIMERS_PER_ACCOUNT.min(due.capacity()).max(1))
            .arg(lease_until)
            .invoke_async(&mut bp.conn())
            .await?;
        for (member, at) in members.iter().zip(times) {
            let Some((session, timer)) = parse_timer_member(member) else {
                tracing::warn!(member, "dropping an unreadable timer");
                let _: i64 = bp
                    .scripts
                    .timer_complete
                    .key(&timers)
                    .arg(member)
                    .arg(lease_until)
                    .invoke_async(&mut bp.conn())
                    .await?;
                continue;
            };
            let deadline = Deadline {
                at: DateTime::from_timestamp_millis(at as i64).unwrap_or_default(),
                account: id.clone(),
                session,
                timer,
                lease: lease_until,
            };
            // Room was counted before taking; a timer that does not fit
            // comes back when its lease ends.
            if due.try_send(deadline).is_err() && due.is_closed() {
                return Ok(());
            }
        }
        let _: i64 = bp
            .scripts
            .index_settle
            .key(bp.keys.timer_index(bucket))
            .key(bp.keys.timer_gen(bucket))
            .arg(account)
            .arg(generation)
            .arg(earliest)
            .invoke_async(&mut bp.conn())
            .await?;
    }
    Ok(())
}

/// Refreshes the presence of the agents this node serves (`XX`: never
/// brings back an agent that logged out through another node; one only
/// logged in here is not brought back after it faded, `HEARTBEAT`), keeps
/// its `held` hashes alive, and prunes presence that expired long ago.
pub(super) async fn heartbeat(backplane: Weak<RedisBackplane>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    let mut beats: u32 = 0;
    loop {
        tick.tick().await;
        beats = beats.wrapping_add(1);
        let Some(bp) = backplane.upgrade() else {
            return;
        };
        // Per account: the agents streaming from here, then those only
        // logged in through here.
        type Split = (Vec<AgentId>, Vec<AgentId>);
        let mut by_account: std::collections::HashMap<AccountId, Split> =
            std::collections::HashMap::new();
        for ((account, agent), served) in lock(&bp.served).iter() {
            let (streamed, logged_in) = by_account.entry(account.clone()).or_default();
            match served.streams {
                0 => logged_in.push(agent.clone()),
                _ => streamed.push(agent.clone()),
            }
        }
        if by_account.is_empty() {
            continue;
        }
        let now = now_ms();
        let expires = now + super::PRESENCE_TTL.as_millis() as i64;
        let prune_below = now - PRESENCE_PRUNE_AFTER.as_millis() as i64;
        // One call per account (one hash tag each, so a cluster can route
        // it), all sent together.
        let pipes = by_account.iter().map(|(account, (streamed, logged_in))| {
            let k = bp.account_keys(account);
            let mut call = bp.scripts.heartbeat.prepare_invoke();
            call.key(k.online())
                .key(k.held(&bp.node_id))
                .arg(now)
                .arg(expires)
                .arg(prune_below)
                .arg(super::lease::HELD_LIFETIME.as_secs())
                .arg(streamed.len());
            for agent in streamed.iter().chain(logged_in) {
                call.arg(agent.as_str());
            }
            let mut conn = bp.conn();
            async move { call.invoke_async::<()>(&mut conn).await }
        });
        for failed in futures_util::future::join_all(pipes)
            .await
            .into_iter()
            .filter_map(std::result::Result::err)
            .take(1)
        {
            tracing::warn!(error = %failed, "presence heartbeat failed");
        }
        if beats.is_multiple_of(REINDEX_EVERY) {
            reindex(&bp, by_account.keys()).await;
        }
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
