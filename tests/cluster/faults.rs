//! `collabd load` through crashes in the middle of the load, as an operator
//! would run it: three nodes on a 3+3 Redis Cluster with `wait_replicas =
//! 1`, the account's master killed -9 a third of the way in (and started
//! again 2 s later, as a supervisor would), a collabd node killed -9 two
//! thirds in (and started again 3 s later on its port). The run's own
//! `--fault` commands do the kills, so its timeline marks them; the test
//! plays the supervisor. Judged from the run's JSON report:
//! - no double winner, no claim gone nowhere, no customer leak;
//! - every accept answered 2xx read back after the drain (`--read-back`);
//! - the write outage after the master kill is a number of seconds, and
//!   invitations are created again after it;
//! - the killed node's agents come back through the other nodes (their
//!   streams held again), and nobody is offered an invitation sent more
//!   than the fade bound after its stream went down.
//!
//! CI runs 30 s at 40 invitations/s; `COLLABD_FAULT_RUN_SECS` and
//! `COLLABD_FAULT_RUN_RATE` make it the README's run (120 s at 100/s).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::redis_cluster::RedisCluster;
use super::support::{CLUSTER_ADMIN, Node, free_port, scratch_dir};

/// The killed node's agents stay away this long before their consoles
/// reconnect through another node: longer than the fade bound, so offers
/// to them after the bound would be seen.
const RECONNECT_PAUSE: &str = "6s";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A process that exited (gone, or a zombie nobody reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn wait_exit(pid: u32, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while !exited(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} was not killed in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(report: &Value, key: &str) -> u64 {
    key.split('.')
        .fold(report, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in the report"))
}

#[actix_rt::test]
async fn a_load_run_through_a_master_kill_and_a_node_kill_keeps_every_acknowledged_write() {
    let secs = env_number("COLLABD_FAULT_RUN_SECS", 30);
    let rate = env_number("COLLABD_FAULT_RUN_RATE", 40);
    let (master_at, node_at) = (secs / 3, 2 * secs / 3);

    let mut redis = RedisCluster::start();
    let namespace = format!("lf{:x}", rand::random::<u32>());
    let seeds = redis.urls().join(",");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let start_node = |i: usize| {
        let listen = format!("127.0.0.1:{}", ports[i]);
        Node::start_with(
            "redis://unused",
            &namespace,
            &format!("node-{i}"),
            &[
                ("COLLABD__BACKPLANE__KIND", "redis-cluster"),
                ("COLLABD__BACKPLANE__REDIS_URLS", seeds.as_str()),
                ("COLLABD__BACKPLANE__WAIT_REPLICAS", "1"),
                ("COLLABD__HTTP__LISTEN", listen.as_str()),
            ],
        )
    };
    let mut nodes: Vec<Node> = (0..3).map(start_node).collect();
    let account = format!("lf{:08x}", rand::random::<u32>());
    let key = format!("collabd:{{{namespace}:{account}}}:account");
    let master = redis.master_for_key(&key);
    let master_pid = redis.pid(master).expect("the master runs");
    let node_pid = nodes[1].pid().expect("node 1 runs");

    let dir = scratch_dir("fault-run");
    let (report_path, html_path) = (dir.join("report.json"), dir.join("report.html"));
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut load = Command::new(env!("CARGO_BIN_EXE_collabd"));
    load.args([
        "load",
        "--nodes",
        &urls.join(","),
        "--admin-token",
        CLUSTER_ADMIN,
    ])
    .args(["--agents", "60", "--portals", "4", "--sessions", "15"])
    .args([
        "--rate",
        &rate.to_string(),
        "--duration",
        &format!("{secs}s"),
    ])
    .args(["--account", &account, "--read-back"])
    .args(["--reconnect-pause", RECONNECT_PAUSE])
    .arg("--fault")
    .arg(format!("{master_at}s=kill -9 {master_pid}"))
    .arg("--fault")
    .arg(format!("{node_at}s=kill -9 {node_pid}"))
    .arg("--report")
    .arg(&report_path)
    .arg("--html")
    .arg(&html_path);
    let run = actix_rt::task::spawn_blocking(move || load.output());

    // The supervisor: each killed process is started again a moment later.
    let run_limit = Duration::from_secs(secs + 120);
    wait_exit(master_pid, run_limit).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart(master);
    wait_exit(node_pid, run_limit).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[1].kill9();
    nodes[1] = start_node(1);

    let output = run
        .await
        .expect("the waiting thread")
        .expect("collabd load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    let text = std::fs::read_to_string(&report_path).expect("a report");
    let report: Value = serde_json::from_str(&text).expect("a JSON report");
    let html = std::fs::read_to_string(&html_path).expect("an HTML report");
    assert!(
        output.status.success(),
        "collabd load exited with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // First accept wins, and nothing acknowledged is lost.
    for key in [
        "double_winners",
        "no_winners",
        "customer_leaks",
        "lead_breaks",
        "acknowledged_lost",
    ] {
        assert_eq!(count(&report, key), 0, "{key}:\n{stdout}");
    }
    assert!(count(&report, "read_back") > 0, "{stdout}");
    assert!(
        count(&report, "read_back") >= count(&report, "winners") / 2,
        "{stdout}"
    );
    // Both faults ran, at their times.
    let faults = report["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 2, "{stdout}");
    for (fault, at) in faults.iter().zip([master_at, node_at]) {
        assert_eq!(fault["exit"], 0, "{fault}");
        let t = fault["at_s"].as_f64().unwrap_or(-1.0);
        assert!((t - at as f64).abs() < 1.0, "{fault}");
    }
    // The write outage: it starts with the master kill, lasts seconds, and
    // invitations are created again in the run's last seconds.
    let outages = report["outages"].as_array().expect("outages");
    let outage = outages
        .iter()
        .find(|o| count(o, "from_s") + 1 >= master_at && count(o, "from_s") <= master_at + 5)
        .unwrap_or_else(|| panic!("no write outage after the master kill:\n{stdout}"));
    let lasted = count(outage, "to_s") - count(outage, "from_s");
    assert!(lasted <= 20, "{outage}\n{stdout}");
    let timeline = report["timeline"].as_array().expect("timeline");
    let tail = &timeline[(secs as usize - 3)..secs as usize];
    assert!(
        tail.iter().all(|s| count(s, "created") > 0),
        "invitations are created again: {tail:?}"
    );
    // The killed node's streams (a third of the agents and customers) broke
    // and were held again through the other nodes.
    assert!(count(&report, "stream_drops") >= 20, "{stdout}");
    let held = count(&timeline[timeline.len() - 1], "open_streams");
    assert_eq!(held, 60 + 15, "every stream open again at the end");
    // Offers to them while they were away, but none past the fade bound.
    assert!(count(&report, "offers_while_down") > 0, "{stdout}");
    assert_eq!(count(&report, "ghost_offers"), 0, "{stdout}");
    assert!(
        count(&report, "missing_alerts_while_down") > 0,
        "the killed node's agents missed alerts while away:\n{stdout}"
    );
    // The page shows the plots and both faults.
    assert!(html.contains("<svg") && html.matches("class=\"fault\"").count() >= 8);
    let _ = std::fs::remove_dir_all(&dir);
}
