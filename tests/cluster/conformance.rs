//! The backplane conformance suite, run against the Redis backplane, each
//! test on a redis-server of its own.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use collabd::backplane::Backplane;
use collabd::backplane::redis::RedisBackplane;
use collabd::settings::{BackplaneKind, BackplaneSettings};

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
    let settings = BackplaneSettings {
        kind: BackplaneKind::Redis,
        redis_url: server.url(),
        redis_urls: Vec::new(),
        wait_replicas: 0,
        wait_timeout_ms: 100,
        tls_ca_file: String::new(),
        namespace: collabd::domain::id::random_id("conf"),
    };
    let backplane: Arc<dyn Backplane> =
        RedisBackplane::start(&settings).expect("the Redis backplane starts");
    // Ready means connected, pub/sub included.
    for _ in 0..200 {
        if backplane.ping().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Fixture {
        backplane,
        _server: server,
    }
}

collabd::backplane_conformance_suite!(redis_backplane().await);
