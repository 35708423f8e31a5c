//! Readiness and durability: ping, and `WAIT` for replicas (`durable.rs`).

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::{RedisBackplane, unavailable};
use crate::backplane::{BackplaneError, Durability, Health, Result};
use crate::domain::AccountId;

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
