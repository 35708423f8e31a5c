//! `Idempotency-Key` records per account, bounded on each side: agents'
//! and customers' records are two pools (a customer slot starts with
//! [`CUSTOMER_SLOT`]), each holding at most [`IDEMPOTENCY_RECORDS`]
//! records and [`IDEMPOTENCY_BYTES`] of them. At a bound the expired
//! records go first, then those closest to expiry — of that side only, so
//! however much a customer creates it never pushes an agent's record out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryBackplane;
use crate::app::idempotency::CUSTOMER_SLOT;
use crate::backplane::{Idempotency, Result};
use crate::domain::AccountId;

/// Records one side of an account may hold at once.
pub(super) const IDEMPOTENCY_RECORDS: usize = 10_000;
/// Bytes (keys and values) one side of an account may hold at once: a
/// record keeps its whole answer, up to tens of KiB for a long message.
pub(super) const IDEMPOTENCY_BYTES: usize = 16 * 1024 * 1024;

/// One side's records: until when, and the value; and their size.
#[derive(Debug, Default)]
pub(super) struct Pool {
    records: HashMap<String, (Instant, String)>,
    bytes: usize,
}

fn size(key: &str, value: &str) -> usize {
    key.len() + value.len()
}

impl Pool {
    fn get(&self, key: &str, now: Instant) -> Option<&String> {
        self.records
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, v)| v)
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, v)) = self.records.remove(key) {
            self.bytes -= size(key, &v);
        }
    }

    /// Stores `value` under `key`, making room first.
    fn put(&mut self, key: &str, value: &str, until: Instant, now: Instant) {
        self.remove(key);
        let needed = size(key, value);
        let full = |p: &Self| {
            p.records.len() >= IDEMPOTENCY_RECORDS || p.bytes + needed > IDEMPOTENCY_BYTES
        };
        if full(self) {
            let bytes = &mut self.bytes;
            self.records.retain(|k, (t, v)| {
                let keep = *t > now;
                if !keep {
                    *bytes -= size(k, v);
                }
                keep
            });
        }
        while full(self) {
            let Some(soonest) = self
                .records
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&soonest);
        }
        self.bytes += needed;
        self.records
            .insert(key.to_owned(), (until, value.to_owned()));
    }
}

/// An account's records: agents' and customers'.
#[derive(Debug, Default)]
pub(super) struct Records {
    agents: Pool,
    customers: Pool,
}

impl Records {
    fn pool(&mut self, key: &str) -> &mut Pool {
        if key.starts_with(CUSTOMER_SLOT) {
            &mut self.customers
        } else {
            &mut self.agents
        }
    }
}

#[async_trait]
impl Idempotency for MemoryBackplane {
    async fn reserve(
        &self,
        account: &AccountId,
        key: &str,
        running: &str,
        running_for: Duration,
    ) -> Result<Option<String>> {
        let now = Instant::now();
        let mut s = self.store();
        let pool = s
            .accounts
            .entry(account.clone())
            .or_default()
            .idempotency
            .pool(key);
        if let Some(value) = pool.get(key, now) {
            return Ok(Some(value.clone()));
        }
        pool.put(key, running, now + running_for, now);
        Ok(None)
    }

    async fn record(
        &self,
        account: &AccountId,
        key: &str,
        value: &str,
        keep_for: Duration,
    ) -> Result<()> {
        let now = Instant::now();
        let mut s = self.store();
        s.accounts
            .entry(account.clone())
            .or_default()
            .idempotency
            .pool(key)
            .put(key, value, now + keep_for, now);
        Ok(())
    }

    async fn forget(&self, account: &AccountId, key: &str) -> Result<()> {
        let mut s = self.store();
        if let Some(data) = s.accounts.get_mut(account) {
            data.idempotency.pool(key).remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_customer_filling_its_side_never_pushes_an_agents_record_out() {
        let now = Instant::now();
        let mut records = Records::default();
        // The agent's record is the closest to expiry of all…
        let soon = now + Duration::from_secs(60);
        records.pool("agent-key").put("agent-key", "{}", soon, now);
        // …and a customer creates far more than its side holds.
        for i in 0..IDEMPOTENCY_RECORDS + 50 {
            let key = format!("{CUSTOMER_SLOT}{i}");
            let until = now + DAY + Duration::from_secs(i as u64);
            records.pool(&key).put(&key, "{}", until, now);
        }
        assert_eq!(records.customers.records.len(), IDEMPOTENCY_RECORDS);
        // The customer's own oldest went instead.
        let oldest = format!("{CUSTOMER_SLOT}0");
        assert!(records.customers.get(&oldest, now).is_none());
        assert_eq!(
            records
                .pool("agent-key")
                .get("agent-key", now)
                .map(String::as_str),
            Some("{}")
        );
    }

    #[test]
    fn a_side_is_bounded_in_bytes_too_and_counts_them_exactly() {
        let now = Instant::now();
        let mut pool = Pool::default();
        let big = "x".repeat(26 * 1024);
        let fit = IDEMPOTENCY_BYTES / (big.len() + 8);
        for i in 0..fit + 100 {
            pool.put(
                &format!("k{i:07}"),
                &big,
                now + Duration::from_secs(i as u64 + 1),
                now,
            );
            assert!(pool.bytes <= IDEMPOTENCY_BYTES);
        }
        assert!(pool.records.len() <= fit + 1, "{}", pool.records.len());
        // The ones closest to expiry went; the newest stay.
        assert!(pool.get("k0000000", now).is_none());
        assert!(pool.get(&format!("k{:07}", fit + 99), now).is_some());
        let counted: usize = pool.records.iter().map(|(k, (_, v))| size(k, v)).sum();
        assert_eq!(counted, pool.bytes);
        // Replacing and removing keep the count right.
        pool.put("k0000050", "short", now + DAY, now);
        pool.remove(&format!("k{:07}", fit + 99));
        let counted: usize = pool.records.iter().map(|(k, (_, v))| size(k, v)).sum();
        assert_eq!(counted, pool.bytes);
    }
}
