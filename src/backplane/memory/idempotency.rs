//! `Idempotency-Key` records per account, bounded.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryBackplane;
use crate::backplane::{Idempotency, Result};
use crate::domain::AccountId;

/// Idempotency records one account may hold at once; at the bound the
/// expired ones go, then those closest to expiry.
pub(super) const IDEMPOTENCY_RECORDS: usize = 10_000;

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
        let records = &mut s.accounts.entry(account.clone()).or_default().idempotency;
        if let Some((until, value)) = records.get(key)
            && *until > now
        {
            return Ok(Some(value.clone()));
        }
        if records.len() >= IDEMPOTENCY_RECORDS {
            records.retain(|_, (until, _)| *until > now);
        }
        while records.len() >= IDEMPOTENCY_RECORDS {
            let Some(soonest) = records
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            records.remove(&soonest);
        }
        records.insert(key.to_owned(), (now + running_for, running.to_owned()));
        Ok(None)
    }

    async fn record(
        &self,
        account: &AccountId,
        key: &str,
        value: &str,
        keep_for: Duration,
    ) -> Result<()> {
        let mut s = self.store();
        let records = &mut s.accounts.entry(account.clone()).or_default().idempotency;
        records.insert(
            key.to_owned(),
            (Instant::now() + keep_for, value.to_owned()),
        );
        Ok(())
    }

    async fn forget(&self, account: &AccountId, key: &str) -> Result<()> {
        let mut s = self.store();
        if let Some(data) = s.accounts.get_mut(account) {
            data.idempotency.remove(key);
        }
        Ok(())
    }
}
