//! `Idempotency-Key` records on the account's hash tag.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisBackplane, unavailable};
use crate::backplane::{Idempotency, Result};
use crate::domain::AccountId;

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
