//! `backplane.wait_replicas` on one Redis with a replica: a change is
//! answered only once `WAIT` says the replica has it; when the replica
//! cannot confirm in time the answer is 503 saying the change may or may
//! not persist, and a retry with the same `Idempotency-Key` answers the
//! first result without making it twice.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::scenarios::wait_ready;
use super::support::{Node, RedisServer, free_port, scratch_dir};
use crate::common::{ACME, TestApp, assert_problem, id_of};

/// A replica of `master` (no persistence of its own); killed on drop.
struct Replica {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Replica {
    fn of(master: &RedisServer) -> Self {
        let port = free_port();
        let dir = scratch_dir("replica");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--replicaof", "127.0.0.1", &master.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let replica = Self { child, port, dir };
        for _ in 0..500 {
            if replica
                .info("replication")
                .contains("master_link_status:up")
            {
                return replica;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the replica did not sync with its master");
    }

    fn info(&self, section: &str) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "INFO", section])
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGSTOP (`pause`) or SIGCONT: a replica that stops acknowledging.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_rt::test]
async fn with_wait_replicas_a_change_is_acknowledged_only_once_its_replica_has_it() {
    let master = RedisServer::start();
    let replica = Replica::of(&master);
    // Long enough for a replica on a machine busy with every other test to
    // confirm each set-up change (300 ms was not, once in CI); a stopped
    // replica never confirms, however long the wait.
    let node = Node::start_with(
        &master.url(),
        "durable",
        "node-0",
        &[
            ("COLLABD__BACKPLANE__WAIT_REPLICAS", "1"),
            ("COLLABD__BACKPLANE__WAIT_TIMEOUT_MS", "2000"),
        ],
    );
    let app = TestApp::remote(node.port);
    wait_ready(&app, true, Duration::from_secs(10)).await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let create = json!({"mode": "web", "customer": {"name": "Carol"}});
    app.post_once("/v1/sessions", &ann.token, "first", create.clone())
        .await
        .expect_status(201);
    let waits = master.cli(&["INFO", "commandstats"]);
    assert!(
        waits.contains("cmdstat_wait:calls="),
        "no WAIT was sent: {waits}"
    );

    // The replica stops acknowledging: the change is made, but not
    // acknowledged.
    replica.signal("-STOP");
    let unconfirmed = app
        .post_once("/v1/sessions", &ann.token, "second", create.clone())
        .await;
    assert_problem(&unconfirmed, 503, "unavailable");
    assert!(
        unconfirmed.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("may or may not persist")),
        "{}",
        unconfirmed.text
    );
    assert_eq!(unconfirmed.retry_after, "1");

    // Back again: the retry answers the first result; nothing is made twice.
    replica.signal("-CONT");
    let mut retried = app
        .post_once("/v1/sessions", &ann.token, "second", create.clone())
        .await;
    for _ in 0..50 {
        if retried.status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        retried = app
            .post_once("/v1/sessions", &ann.token, "second", create.clone())
            .await;
    }
    let session = retried.expect_status(201);
    assert_eq!(retried.replayed, "true");
    assert_eq!(app.session_count(ACME).await, 2);
    let view = app
        .session(&ann.token, &id_of(&session["session"]))
        .await
        .expect_status(200);
    assert_eq!(view["customer"]["name"], "Carol");
}
