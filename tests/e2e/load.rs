//! `collabd load` against a node of this process: the real binary, as CI
//! runs it, must finish with every invariant intact and say so in its report.

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
}
