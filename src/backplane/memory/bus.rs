//! Fan-out: one broadcast channel per topic.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use super::MemoryBackplane;
use crate::backplane::{Bus, BusMessage, Result, Topic};

#[async_trait]
impl Bus for MemoryBackplane {
    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()> {
        self.store().publish(&topic, message);
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>> {
        let mut s = self.store();
        if let Some(tx) = s.topics.get(topic) {
            return Ok(tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(topic.capacity());
        s.topics.insert(topic.clone(), tx);
        Ok(rx)
    }

    fn resyncs(&self) -> watch::Receiver<u64> {
        // In one process nothing is ever lost between publisher and subscriber.
        self.resync.subscribe()
    }
}
