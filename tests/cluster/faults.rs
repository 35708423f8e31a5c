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
//! CI runs 30 s at 40 invitations/s with a fault every 10 s (master, then
//! node 1). The environment makes it the README's runs:
//! `COLLABD_FAULT_RUN_SECS`, `…_RATE`, `…_EVERY` (seconds between faults;
//! they alternate: the account's current master, then node 1, node 2, …
//! never node 0, whose memory is sampled every 2 s and printed by minute),
//! `…_AGENTS` and `…_SESSIONS` (60 and 15), `…_BIN` (the collabd binary for the nodes and the load, e.g. a release
//! build) and `…_OUT` (a directory to keep the JSON and HTML reports in).

use std::path::Path;
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

fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `RssFile:`, …).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Node 0's memory at one instant: resident in all, the part of it that
/// is the binary's own pages (`RssFile`: code, touched once and kept), the
/// bytes its live allocations hold (jemalloc's, from `/metrics`), and its
/// open file descriptors (mostly connections: streams and requests).
#[derive(Debug, Clone, Copy)]
struct MemorySample {
    at_s: u64,
    rss_kib: u64,
    file_kib: u64,
    allocated_kib: u64,
    fds: u64,
}

/// Samples node 0 every 2 s until `stop` turns true.
async fn sample_memory(
    pid: u32,
    url: String,
    stop: std::rc::Rc<std::cell::Cell<bool>>,
) -> Vec<MemorySample> {
    let client = awc::Client::default();
    let began = std::time::Instant::now();
    let mut samples = Vec::new();
    while !stop.get() {
        let metrics = match client.get(format!("{url}/metrics")).send().await {
            Ok(mut r) => r.body().limit(4 << 20).await.unwrap_or_default(),
            Err(_) => Default::default(),
        };
        let allocated = String::from_utf8_lossy(&metrics)
            .lines()
            .find_map(|l| l.strip_prefix("collabd_heap_bytes{kind=\"allocated\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64);
        if let (Some(rss), Some(file), Some(allocated), Ok(fds)) =
            (rss_kib(pid), status_kib(pid, "RssFile:"), allocated, fds)
        {
            samples.push(MemorySample {
                at_s: began.elapsed().as_secs(),
                rss_kib: rss,
                file_kib: file,
                allocated_kib: allocated / 1024,
                fds,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    samples
}

/// Per minute of the run: the medians of node 0's samples, as a table.
fn memory_by_minute(samples: &[MemorySample]) -> String {
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let mut out = String::from(
        "minute | RSS KiB | of it the binary's pages | heap allocated KiB | fds | allocated per fd KiB\n",
    );
    let last = samples.last().map_or(0, |s| s.at_s / 60);
    for minute in 0..=last {
        let within: Vec<&MemorySample> = samples.iter().filter(|s| s.at_s / 60 == minute).collect();
        if within.is_empty() {
            continue;
        }
        let (alloc, fds) = (
            median(within.iter().map(|s| s.allocated_kib).collect()),
            median(within.iter().map(|s| s.fds).collect()),
        );
        out.push_str(&format!(
            "{minute} | {} | {} | {alloc} | {fds} | {:.1}\n",
            median(within.iter().map(|s| s.rss_kib).collect()),
            median(within.iter().map(|s| s.file_kib).collect()),
            alloc as f64 / fds.max(1) as f64,
        ));
    }
    out
}

/// What fault `k` (from 0) kills: the account's master on even `k`, a
/// collabd node (1, 2, 1, …) on odd `k`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Master,
    Node(usize),
}

fn target(k: u64) -> Target {
    if k.is_multiple_of(2) {
        Target::Master
    } else {
        Target::Node(1 + ((k / 2) % 2) as usize)
    }
}

fn write_pid(path: &Path, pid: u32) {
    std::fs::write(path, pid.to_string()).expect("a pid file");
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
    let every = env_number("COLLABD_FAULT_RUN_EVERY", 10);
    let agents = env_number("COLLABD_FAULT_RUN_AGENTS", 60);
    let sessions = env_number("COLLABD_FAULT_RUN_SESSIONS", 15);
    let bin = std::env::var("COLLABD_FAULT_RUN_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_collabd").to_owned());
    // Faults at every, 2·every, … while invitations are sent, each early
    // enough that its recovery is seen (a master's takes longer).
    let faults: Vec<u64> = (1..)
        .map(|k| k * every)
        .enumerate()
        .take_while(|(k, at)| {
            let recovery = if target(*k as u64) == Target::Master {
                15
            } else {
                5
            };
            at + recovery <= secs
        })
        .map(|(_, at)| at)
        .collect();

    let mut redis = RedisCluster::start();
    let namespace = format!("lf{:x}", rand::random::<u32>());
    let seeds = redis.urls().join(",");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let start_node = |i: usize| {
        let listen = format!("127.0.0.1:{}", ports[i]);
        Node::start_bin(
            &bin,
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

    let dir = scratch_dir("fault-run");
    let (report_path, html_path) = (dir.join("report.json"), dir.join("report.html"));
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut load = Command::new(&bin);
    load.args([
        "load",
        "--nodes",
        &urls.join(","),
        "--admin-token",
        CLUSTER_ADMIN,
    ])
    .args(["--agents", &agents.to_string(), "--portals", "4"])
    .args(["--sessions", &sessions.to_string()])
    .args([
        "--rate",
        &rate.to_string(),
        "--duration",
        &format!("{secs}s"),
    ])
    .args(["--account", &account, "--read-back"])
    .args(["--reconnect-pause", RECONNECT_PAUSE])
    .arg("--report")
    .arg(&report_path)
    .arg("--html")
    .arg(&html_path);
    // Each fault kills whatever pid its file names when it fires: the
    // supervisor below writes it (the account's master moves with every
    // failover).
    for (k, at) in faults.iter().enumerate() {
        let pid_file = dir.join(format!("fault-{k}.pid"));
        let what = match target(k as u64) {
            Target::Master => "the account's Redis master".to_owned(),
            Target::Node(i) => format!("collabd node {i}"),
        };
        load.arg("--fault").arg(format!(
            "{at}s=kill -9 \"$(cat {})\" # {what}",
            pid_file.display()
        ));
    }
    let run = actix_rt::task::spawn_blocking(move || load.output());

    // The supervisor: names each fault's target, and starts each killed
    // process again a moment later; meanwhile node 0's memory is sampled.
    let run_limit = Duration::from_secs(secs + 120);
    let node0 = nodes[0].pid().expect("node 0 runs");
    let mut rss = vec![rss_kib(node0)];
    let stop_sampling = std::rc::Rc::new(std::cell::Cell::new(false));
    let sampler = actix_rt::spawn(sample_memory(
        node0,
        urls[0].clone(),
        std::rc::Rc::clone(&stop_sampling),
    ));
    for k in 0..faults.len() as u64 {
        let pid_file = dir.join(format!("fault-{k}.pid"));
        match target(k) {
            Target::Master => {
                let master = redis.master_for_key(&key);
                let pid = redis.pid(master).expect("the master runs");
                write_pid(&pid_file, pid);
                wait_exit(pid, run_limit).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                redis.restart(master);
                let deadline = std::time::Instant::now() + run_limit;
                while !redis.whole() {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the old master did not rejoin"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Target::Node(i) => {
                let pid = nodes[i].pid().expect("the node runs");
                write_pid(&pid_file, pid);
                wait_exit(pid, run_limit).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                nodes[i].kill9();
                nodes[i] = start_node(i);
            }
        }
        rss.push(rss_kib(node0));
    }
    rss.push(rss_kib(node0));

    let output = run
        .await
        .expect("the waiting thread")
        .expect("collabd load runs");
    rss.push(rss_kib(node0));
    stop_sampling.set(true);
    let memory = sampler.await.expect("the memory sampler");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    println!("node 0 resident memory (KiB) at the start, after each fault and at the end: {rss:?}");
    println!(
        "node 0's memory, sampled every 2 s:\n{}",
        memory_by_minute(&memory)
    );
    assert!(!memory.is_empty(), "node 0's memory was never sampled");
    if let Ok(out) = std::env::var("COLLABD_FAULT_RUN_OUT") {
        let out = Path::new(&out);
        let _ = std::fs::create_dir_all(out);
        let _ = std::fs::copy(&report_path, out.join("fault-run.json"));
        let _ = std::fs::copy(&html_path, out.join("fault-run.html"));
    }
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
    // Every fault ran, at its time.
    let marks = report["faults"].as_array().expect("faults");
    assert_eq!(marks.len(), faults.len(), "{stdout}");
    for (fault, at) in marks.iter().zip(&faults) {
        assert_eq!(fault["exit"], 0, "{fault}");
        let t = fault["at_s"].as_f64().unwrap_or(-1.0);
        assert!((t - *at as f64).abs() < 1.0, "{fault}");
    }
    // The write outage: it starts with the master kill, lasts seconds, and
    // invitations are created again in the run's last seconds.
    let outages = report["outages"].as_array().expect("outages");
    for master_at in faults.iter().step_by(2) {
        let outage = outages
            .iter()
            .find(|o| count(o, "from_s") + 1 >= *master_at && count(o, "from_s") <= master_at + 5)
            .unwrap_or_else(|| {
                panic!("no write outage after the master kill at {master_at} s:\n{stdout}")
            });
        let lasted = count(outage, "to_s") - count(outage, "from_s");
        assert!(lasted <= 20, "{outage}\n{stdout}");
    }
    let timeline = report["timeline"].as_array().expect("timeline");
    let tail = &timeline[(secs as usize - 3)..secs as usize];
    assert!(
        tail.iter().all(|s| count(s, "created") > 0),
        "invitations are created again: {tail:?}"
    );
    // The killed node's streams (a third of the agents and customers) broke
    // and were held again through the other nodes.
    assert!(count(&report, "stream_drops") >= agents / 3, "{stdout}");
    assert!(
        count(&report, "failovers") > 0,
        "calls to the dead node went to another:\n{stdout}"
    );
    let held = count(&timeline[timeline.len() - 1], "open_streams");
    assert_eq!(
        held,
        agents + sessions,
        "every stream open again at the end"
    );
    // Offers to them while they were away, but none past the fade bound.
    assert!(count(&report, "offers_while_down") > 0, "{stdout}");
    assert_eq!(count(&report, "ghost_offers"), 0, "{stdout}");
    assert!(
        count(&report, "missing_alerts_while_down") > 0,
        "the killed node's agents missed alerts while away:\n{stdout}"
    );
    // The page shows the plots and both faults.
    assert!(html.contains("<svg"));
    assert_eq!(html.matches("class=\"fault\"").count(), 4 * faults.len());
    let _ = std::fs::remove_dir_all(&dir);
}
