//! Token buckets by token, and the admin's.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{MemoryBackplane, Store};
use crate::backplane::{Rate, RateLimits, RateVerdict, Result};
use crate::domain::AccountId;

/// A token bucket: what is left, when that was, and when it will be full
/// again (then it can be forgotten: a new bucket starts full).
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) at: Instant,
    pub(super) full_at: Instant,
}

impl Store {
    /// Takes one request from a bucket.
    pub(super) fn take(
        &mut self,
        key: Option<(AccountId, String)>,
        rate: Rate,
        now: Instant,
    ) -> RateVerdict {
        let per_sec = f64::from(rate.per_sec.max(1));
        let burst = f64::from(rate.burst.max(1));
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            full_at: now,
        });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * per_sec;
        let tokens = (bucket.tokens + refilled).min(burst);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            bucket.at = now;
            bucket.full_at = now + Duration::from_secs_f64((burst - bucket.tokens) / per_sec);
            RateVerdict::Allowed
        } else {
            RateVerdict::Limited(Duration::from_secs_f64((1.0 - tokens) / per_sec))
        }
    }
}

#[async_trait]
impl RateLimits for MemoryBackplane {
    async fn take_admin(&self, rate: Rate) -> Result<RateVerdict> {
        Ok(self.store().take(None, rate, Instant::now()))
    }
}
