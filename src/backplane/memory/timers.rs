//! Timers: a wheel by due time, each arming numbered so that completing
//! a delivery never removes a timer armed again; leased deliveries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::{MemoryBackplane, TIMER_LEASE, drive_timers, lock};
use crate::backplane::{Deadline, Result, Timers};
use crate::domain::session::Timer;
use crate::domain::{AccountId, InvitationId, SessionId};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct TimerKey {
    pub(super) account: AccountId,
    pub(super) session: SessionId,
    pub(super) timer: TimerName,
}

/// `Timer` with an order, for the timer wheel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum TimerName {
    Expiry(InvitationId),
    Idle,
    Escalate(InvitationId),
}

impl From<&Timer> for TimerName {
    fn from(t: &Timer) -> Self {
        match t {
            Timer::Expiry(i) => TimerName::Expiry(i.clone()),
            Timer::Idle => TimerName::Idle,
            Timer::Escalate(i) => TimerName::Escalate(i.clone()),
        }
    }
}

impl From<&TimerName> for Timer {
    fn from(t: &TimerName) -> Self {
        match t {
            TimerName::Expiry(i) => Timer::Expiry(i.clone()),
            TimerName::Idle => Timer::Idle,
            TimerName::Escalate(i) => Timer::Escalate(i.clone()),
        }
    }
}

/// Timers by due time; each entry carries a sequence number that names
/// its arming (so completing a delivery does not remove a re-armed timer).
#[derive(Default)]
pub(super) struct TimerWheel {
    pub(super) due: BTreeMap<(i64, u64), TimerKey>,
    pub(super) by_key: HashMap<TimerKey, (i64, u64)>,
    pub(super) seq: u64,
}

impl TimerWheel {
    pub(super) fn arm(&mut self, key: TimerKey, at_ms: i64) -> bool {
        self.disarm(&key);
        self.seq += 1;
        let slot = (at_ms, self.seq);
        let earliest = self.due.keys().next().is_none_or(|first| slot < *first);
        self.due.insert(slot, key.clone());
        self.by_key.insert(key, slot);
        earliest
    }

    pub(super) fn disarm(&mut self, key: &TimerKey) {
        if let Some(slot) = self.by_key.remove(key) {
            self.due.remove(&slot);
        }
    }

    pub(super) fn next_due(&self) -> Option<i64> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Delivers what fell due, at most `room` of it, leasing each (it comes
    /// back unless completed).
    pub(super) fn take_due(&mut self, now_ms: i64, room: usize) -> Vec<Deadline> {
        let due: Vec<((i64, u64), TimerKey)> = self
            .due
            .range(..(now_ms + 1, 0))
            .take(room)
            .map(|(slot, key)| (*slot, key.clone()))
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for ((at, _), key) in due {
            self.arm(key.clone(), now_ms + TIMER_LEASE.as_millis() as i64);
            let lease = self.by_key.get(&key).map_or(0, |(_, seq)| *seq as i64);
            out.push(Deadline {
                at: DateTime::from_timestamp_millis(at).unwrap_or_else(Utc::now),
                account: key.account.clone(),
                session: key.session.clone(),
                timer: Timer::from(&key.timer),
                lease,
            });
        }
        out
    }

    pub(super) fn complete(&mut self, key: &TimerKey, lease: i64) {
        if self
            .by_key
            .get(key)
            .is_some_and(|(_, seq)| *seq as i64 == lease)
        {
            self.disarm(key);
        }
    }
}

#[async_trait]
impl Timers for MemoryBackplane {
    async fn schedule(
        &self,
        account: &AccountId,
        session: &SessionId,
        timer: &Timer,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let key = TimerKey {
            account: account.clone(),
            session: session.clone(),
            timer: TimerName::from(timer),
        };
        if self.store().timers.arm(key, at.timestamp_millis()) {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn take_due(&self) -> Option<mpsc::Receiver<Deadline>> {
        let rx = lock(&self.due).take()?;
        tokio::spawn(drive_timers(
            Arc::downgrade(&self.store),
            self.wake.clone(),
            self.due_tx.clone(),
        ));
        Some(rx)
    }

    async fn complete(&self, deadline: &Deadline) -> Result<()> {
        let key = TimerKey {
            account: deadline.account.clone(),
            session: deadline.session.clone(),
            timer: TimerName::from(&deadline.timer),
        };
        self.store().timers.complete(&key, deadline.lease);
        Ok(())
    }
}
