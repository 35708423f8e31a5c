//! Fan-out: publishing, and subscribing through this node's one
//! subscription per topic (`pubsub.rs`, `shards.rs` on a cluster).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot, watch};

use super::pubsub::SubCommand;
use super::{Conn, RedisBackplane, SUBSCRIBE_TIMEOUT, lock, pubsub, unavailable};
use crate::backplane::{BackplaneError, Bus, BusMessage, Result, Topic};

#[async_trait]
impl Bus for RedisBackplane {
    async fn publish(&self, topic: Topic, message: BusMessage) -> Result<()> {
        let command = match self.conn {
            Conn::Single(_) => "PUBLISH",
            Conn::Cluster(_) => "SPUBLISH",
        };
        let _: i64 = redis::cmd(command)
            .arg(self.keys.channel(&topic))
            .arg(pubsub::encode(&message))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<broadcast::Receiver<Arc<BusMessage>>> {
        let channel = self.keys.channel(topic);
        let rx = {
            let mut senders = lock(&self.senders);
            if let Some(tx) = senders.get(&channel) {
                return Ok(tx.subscribe());
            }
            let (tx, rx) = broadcast::channel(topic.capacity());
            senders.insert(channel.clone(), tx);
            rx
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        let _ = self
            .subscribe_tx
            .send(SubCommand::Subscribe(channel, ack_tx));
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, ack_rx).await {
            Ok(Ok(())) => Ok(rx),
            _ => Err(BackplaneError::Unavailable(
                "pub/sub subscription not confirmed".into(),
            )),
        }
    }

    fn resyncs(&self) -> watch::Receiver<u64> {
        self.resync_rx.clone()
    }
}
