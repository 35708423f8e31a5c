//! `collabd load` against a node of this process: the real binary, as CI
//! runs it, must finish with every invariant intact, every outcome answered
//! (none learned, none unknown) and say so in its report.

use std::process::Command;

use serde_json::Value;

use crate::common::{ADMIN, TestApp};

#[actix_rt::test]
async fn the_load_generator_keeps_every_invariant_on_one_node() {
    let app = TestApp::spawn().await;
    let report = std::env::temp_dir().join(format!(
        "collabd-load-{}-{}.json",
        std::process::id(),
        app.port
    ));
    let node = format!("http://127.0.0.1:{}", app.port);
    let report_arg = report.clone();
    // The node runs on this thread's actix system: the child is waited for
    // on a blocking thread so the node keeps serving it.
    let output = actix_rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_collabd"))
            .args(["load", "--nodes", &node, "--admin-token", ADMIN])
            .args(["--agents", "40", "--portals", "4", "--sessions", "8"])
            .args(["--rate", "20", "--duration", "3s", "--report"])
            .arg(&report_arg)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = std::fs::read_to_string(&report);
    let _ = std::fs::remove_file(&report);
    assert!(
        output.status.success(),
        "collabd load exited with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&text.unwrap()).unwrap();
    let count = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {report}"))
    };
    assert!(count("invitations") > 0, "{report}");
    assert!(count("alerts") > 0, "{report}");
    for key in [
        "double_winners",
        "missing_alerts",
        "missing_withdrawals",
        "customer_leaks",
    ] {
        assert_eq!(count(key), 0, "{key} in {report}");
    }
    for latency in ["invite_to_alert", "accept", "withdraw"] {
        assert!(
            report["latency_ms"][latency]["p99"].is_number(),
            "latency_ms.{latency}.p99 in {report}"
        );
    }
    // Every accept was answered: no outcome had to be learned, none is unknown.
    assert_eq!(count("learned"), 0, "{report}");
    assert_eq!(count("unknown"), 0, "{report}");
    assert!(count("winners") > 0, "{report}");
    // The customer streams were read and checked (at least their snapshots).
    assert!(count("customer_events") >= 8, "{report}");
    let kinds = &report["customer_leaks_by_kind"];
    for kind in ["agent_id", "comment", "invitation_id", "masked_agent"] {
        assert_eq!(kinds[kind].as_u64(), Some(0), "{kind} in {report}");
    }
    // No --node-pids: no node CPU; the generator's own CPU is always there.
    assert!(report.get("node_cpu").is_none(), "{report}");
    if std::path::Path::new("/proc/self/stat").exists() {
        let generator = &report["generator_cpu"];
        assert!(generator["seconds"].as_f64().is_some(), "{report}");
        assert!(generator["delivered_events"].as_u64() > Some(0), "{report}");
    }
    assert!(report["generator_lagged"].is_boolean(), "{report}");
}
