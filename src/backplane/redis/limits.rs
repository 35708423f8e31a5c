//! The admin's token bucket (the agents' and customers' are taken with
//! their token's read, in `directory.rs`).

use std::time::Duration;

use async_trait::async_trait;

use super::{RedisBackplane, unavailable};
use crate::backplane::{Rate, RateLimits, RateVerdict, Result};

/// A bucket script's answer: 0 when taken, else the ms until one fits.
pub(super) fn verdict(wait_ms: u64) -> RateVerdict {
    if wait_ms == 0 {
        RateVerdict::Allowed
    } else {
        RateVerdict::Limited(Duration::from_millis(wait_ms))
    }
}

#[async_trait]
impl RateLimits for RedisBackplane {
    async fn take_admin(&self, rate: Rate) -> Result<RateVerdict> {
        let wait: u64 = self
            .scripts
            .rate
            .key(self.keys.admin_bucket())
            .arg(rate.per_sec)
            .arg(rate.burst)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(verdict(wait))
    }
}
