//! The node's background work against Redis: polling the timer index and
//! refreshing the presence of the agents this node serves.
//!
//! Timers live in a set per account; the index `timer-index` says when each
//! account with timers must be looked at next. A commit that makes a timer
//! its account's earliest lowers the index (`ZADD LT`) and bumps the
//! account's generation. A poller leases the due accounts, leases their due
//! timers, and then raises the account's place in the index to its new
//! earliest timer — only if the generation did not change meanwhile, so a
//! timer added during the poll is never skipped.

use std::sync::Weak;
use std::time::Duration;

use chrono::DateTime;
use tokio::sync::mpsc;

use super::{RedisBackplane, lock, now_ms};
use crate::backplane::Deadline;
use crate::backplane::keys::parse_timer_member;
use crate::domain::{AccountId, AgentId};

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

/// Takes due timers and hands them to the node's timer worker.
pub(super) async fn poll(backplane: Weak<RedisBackplane>, due: mpsc::UnboundedSender<Deadline>) {
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

async fn poll_once(
    bp: &RedisBackplane,
    due: &mpsc::UnboundedSender<Deadline>,
) -> redis::RedisResult<()> {
    let now = now_ms();
    let lease_until = now + TIMER_LEASE.as_millis() as i64;
    let taken: Vec<String> = bp
        .scripts
        .index_take
        .key(bp.keys.timer_index())
        .key(bp.keys.timer_gen())
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
            .arg(TIMERS_PER_ACCOUNT)
            .arg(lease_until)
            .invoke_async(&mut bp.conn())
            .await?;
        for (member, at) in members.iter().zip(times) {
            let Some((session, timer)) = parse_timer_member(member) else {
                tracing::warn!(member, "dropping an unreadable timer");
                continue;
            };
            let deadline = Deadline {
                at: DateTime::from_timestamp_millis(at as i64).unwrap_or_default(),
                account: id.clone(),
                session,
                timer,
                lease: lease_until,
            };
            if due.send(deadline).is_err() {
                return Ok(());
            }
        }
        let _: i64 = bp
            .scripts
            .index_settle
            .key(bp.keys.timer_index())
            .key(bp.keys.timer_gen())
            .arg(account)
            .arg(generation)
            .arg(earliest)
            .invoke_async(&mut bp.conn())
            .await?;
    }
    Ok(())
}

/// Refreshes the presence of the agents this node serves (`XX`: never
/// brings back an agent that logged out through another node), and prunes
/// presence that expired long ago.
pub(super) async fn heartbeat(backplane: Weak<RedisBackplane>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tick.tick().await;
        let Some(bp) = backplane.upgrade() else {
            return;
        };
        let mut by_account: std::collections::HashMap<AccountId, Vec<AgentId>> =
            std::collections::HashMap::new();
        for (account, agent) in lock(&bp.served).keys() {
            by_account
                .entry(account.clone())
                .or_default()
                .push(agent.clone());
        }
        if by_account.is_empty() {
            continue;
        }
        let now = now_ms();
        let expires = now + super::PRESENCE_TTL.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (account, agents) in &by_account {
            let online = bp.account_keys(account).online();
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&online).arg("XX");
            for agent in agents {
                zadd.arg(expires).arg(agent.as_str());
            }
            pipe.add_command(zadd).ignore();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&online)
                .arg("-inf")
                .arg(now - PRESENCE_PRUNE_AFTER.as_millis() as i64)
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut bp.conn()).await {
            tracing::warn!(error = %e, "presence heartbeat failed");
        }
    }
}
