//! The floor: what Redis itself costs from this process, measured in the
//! same run before the load starts, so our latencies can be read as
//! multiples of it. A portal alert is at best one PUBLISH → subscriber hop;
//! an accept is at best one SET NX.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::LoadError;
use super::report::Latency;

/// Round trips measured per kind, after [`WARM_UP`] unmeasured ones.
const SAMPLES: usize = 2000;
/// Round trips sent first to open connections and warm caches.
const WARM_UP: usize = 100;
/// How long one round trip may take before the floor is given up.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(2);
/// How long the floor's claim keys live, so nothing is left behind.
const KEY_TTL_MS: u64 = 10_000;

/// The raw Redis round trips.
#[derive(Debug, Clone)]
pub struct Floor {
    /// `PUBLISH` on one connection → the message on a subscribed one.
    pub publish: Latency,
    /// `SET key value NX PX ttl` on a multiplexed connection.
    pub set_nx: Latency,
}

/// Measures the floor against the Redis at `url`, one round trip at a time.
pub async fn measure(url: &str) -> Result<Floor, LoadError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut pubsub = client.get_async_pubsub().await?;
    let tag: u64 = rand::random();
    let channel = format!("collabd-load:floor:{tag:x}");
    pubsub.subscribe(&channel).await?;
    let mut messages = pubsub.into_on_message();

    let mut publish = Latency::new()?;
    for i in 0..WARM_UP + SAMPLES {
        let sent = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(i)
            .query_async(&mut conn)
            .await?;
        match tokio::time::timeout(ROUND_TRIP_LIMIT, messages.next()).await {
            Ok(Some(_)) => {}
            _ => return Err(lost("no PUBLISH came back on the subscription")),
        }
        if i >= WARM_UP {
            publish.record(sent.elapsed());
        }
    }

    let mut set_nx = Latency::new()?;
    for i in 0..WARM_UP + SAMPLES {
        let key = format!("collabd-load:floor:{tag:x}:{i}");
        let sent = Instant::now();
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg("agent")
            .arg("NX")
            .arg("PX")
            .arg(KEY_TTL_MS);
        let call = set.query_async::<Option<String>>(&mut conn);
        match tokio::time::timeout(ROUND_TRIP_LIMIT, call).await {
            Ok(result) => {
                result?;
            }
            Err(_) => return Err(lost("SET NX did not answer")),
        }
        if i >= WARM_UP {
            set_nx.record(sent.elapsed());
        }
    }
    Ok(Floor { publish, set_nx })
}

fn lost(what: &str) -> LoadError {
    LoadError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "floor measurement",
        what.to_owned(),
    )))
}
