//! Always ready, and as durable as this process.

use async_trait::async_trait;

use super::MemoryBackplane;
use crate::backplane::{Durability, Health, Result};
use crate::domain::AccountId;

#[async_trait]
impl Health for MemoryBackplane {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// Nothing to wait for: the memory backplane has no replicas, a change is
/// as durable as this process.
#[async_trait]
impl Durability for MemoryBackplane {
    async fn confirm(&self, _account: &AccountId) -> Result<()> {
        Ok(())
    }
}
