//! The backplane conformance suite, run against the Redis backplane, each
//! test on a redis-server of its own, and against the Redis Cluster
//! backplane, every rule in turn on one real 3-master, 3-replica cluster.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use collabd::backplane::Backplane;
use collabd::backplane::redis::RedisBackplane;
use collabd::settings::{BackplaneKind, BackplaneSettings};

use super::redis_cluster::RedisCluster;
use super::support::RedisServer;

/// A Redis backplane and the server it talks to, dropped together.
struct Fixture {
    backplane: Arc<dyn Backplane>,
    _server: RedisServer,
}

impl Deref for Fixture {
    type Target = dyn Backplane;

    fn deref(&self) -> &Self::Target {
        self.backplane.as_ref()
    }
}

async fn redis_backplane() -> Fixture {
    let server = RedisServer::start();
    let backplane = started(BackplaneSettings {
        kind: BackplaneKind::Redis,
        redis_url: server.url(),
        redis_urls: Vec::new(),
        wait_replicas: 0,
        wait_timeout_ms: 100,
        tls_ca_file: String::new(),
        namespace: collabd::domain::id::random_id("conf"),
    })
    .await;
    Fixture {
        backplane,
        _server: server,
    }
}

/// A backplane on `cluster`, in a namespace of its own.
async fn cluster_backplane(cluster: &RedisCluster) -> Arc<dyn Backplane> {
    started(BackplaneSettings {
        kind: BackplaneKind::RedisCluster,
        redis_url: String::new(),
        redis_urls: cluster.urls(),
        wait_replicas: 0,
        wait_timeout_ms: 100,
        tls_ca_file: String::new(),
        namespace: collabd::domain::id::random_id("conf"),
    })
    .await
}

async fn started(settings: BackplaneSettings) -> Arc<dyn Backplane> {
    let backplane: Arc<dyn Backplane> =
        RedisBackplane::start(&settings).expect("the Redis backplane starts");
    // Ready means connected, pub/sub included.
    for _ in 0..200 {
        if backplane.ping().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    backplane
}

collabd_test_support::backplane_conformance_suite!(redis_backplane().await);

collabd_test_support::backplane_conformance_suite!(sequential every_rule);

#[tokio::test(flavor = "current_thread")]
async fn the_whole_suite_passes_on_a_three_master_three_replica_redis_cluster() {
    let cluster = RedisCluster::start();
    every_rule(|| cluster_backplane(&cluster)).await;
}
