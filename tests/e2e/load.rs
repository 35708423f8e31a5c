//! `collabd load` against a node of this process: the real binary, as CI
//! runs it, must finish with every invariant intact, every outcome answered
//! (none learned, none unknown) and say so in its report.

use std::process::Command;

use serde_json::Value;

use crate::common::{ADMIN, TestApp};

/// Runs `collabd load` against a fresh node of this process with these
/// extra arguments (one node, 40 agents, 4 portals, 8 sessions, 20 inv/s)
/// and returns its JSON report; the run must exit 0.
async fn load_report(extra: &[&str]) -> Value {
    load_report_on(&TestApp::spawn().await, extra).await
}

/// [`load_report`] against `app`, so the test can look at the node after.
async fn load_report_on(app: &TestApp, extra: &[&str]) -> Value {
    let report = std::env::temp_dir().join(format!(
        "collabd-load-{}-{}.json",
        std::process::id(),
        app.port
    ));
    let node = format!("http://127.0.0.1:{}", app.port);
    let report_arg = report.clone();
    let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
    // The node runs on this thread's actix system: the child is waited for
    // on a blocking thread so the node keeps serving it.
    let output = actix_rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_collabd"))
            .args(["load", "--nodes", &node, "--admin-token", ADMIN])
            .args(["--agents", "40", "--portals", "4", "--sessions", "8"])
            .args(["--rate", "20", "--report"])
            .arg(&report_arg)
            .args(&extra)
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("the waiting thread failed: {e}"))
    .unwrap_or_else(|e| panic!("collabd load does not run: {e}"));
    let text = std::fs::read_to_string(&report);
    let _ = std::fs::remove_file(&report);
    assert!(
        output.status.success(),
        "collabd load exited with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = text.unwrap_or_else(|e| panic!("no report written: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the report is not JSON: {e}\n{text}"))
}

/// A count of the report, which must be there.
fn count(report: &Value, key: &str) -> u64 {
    key.split('.')
        .fold(report, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

/// No invariant broke, every outcome was answered, customers saw nothing
/// they must not.
fn assert_intact(report: &Value) {
    assert!(count(report, "invitations") > 0, "{report}");
    assert!(count(report, "alerts") > 0, "{report}");
    for key in [
        "double_winners",
        "no_winners",
        "missing_alerts",
        "missing_withdrawals",
        "customer_leaks",
        "lead_breaks",
    ] {
        assert_eq!(count(report, key), 0, "{key} in {report}");
    }
    // Every accept was answered: no outcome had to be learned, none is unknown.
    assert_eq!(count(report, "learned"), 0, "{report}");
    assert_eq!(count(report, "unknown"), 0, "{report}");
    assert!(count(report, "winners") > 0, "{report}");
    // The customer streams were read and checked (at least their snapshots).
    assert!(count(report, "customer_events") >= 8, "{report}");
    let kinds = &report["customer_leaks_by_kind"];
    for kind in ["agent_id", "comment", "invitation_id", "masked_agent"] {
        assert_eq!(kinds[kind].as_u64(), Some(0), "{kind} in {report}");
    }
}

#[actix_rt::test]
async fn the_load_generator_keeps_every_invariant_on_one_node() {
    let report = load_report(&["--duration", "3s"]).await;
    assert_intact(&report);
    for latency in ["invite_to_alert", "accept", "withdraw"] {
        assert!(
            report["latency_ms"][latency]["p99"].is_number(),
            "latency_ms.{latency}.p99 in {report}"
        );
    }
    // Nothing of the mix asked for transfers or escalations.
    assert_eq!(count(&report, "transfers.sent"), 0, "{report}");
    assert_eq!(count(&report, "escalations.sent"), 0, "{report}");
    // No --node-pids: no node CPU; the generator's own CPU is always there.
    assert!(report.get("node_cpu").is_none(), "{report}");
    if std::path::Path::new("/proc/self/stat").exists() {
        let generator = &report["generator_cpu"];
        assert!(generator["seconds"].as_f64().is_some(), "{report}");
        assert!(generator["delivered_events"].as_u64() > Some(0), "{report}");
    }
    assert!(report["generator_lagged"].is_boolean(), "{report}");
}

/// Transfers and escalations in the mix: each transferred session ends with
/// the lead the generator tracked, each escalated invitation has one winner
/// among the portal's agents, and the customer sees only the new lead come
/// and the old one go.
#[actix_rt::test]
async fn transfers_and_escalations_keep_every_invariant_on_one_node() {
    let report = load_report(&[
        "--duration",
        "4s",
        "--mix",
        "portal=0.5,transfer=0.2,escalate=0.2",
    ])
    .await;
    assert_intact(&report);
    assert!(count(&report, "transfers.sent") > 0, "{report}");
    assert!(count(&report, "transfers.completed") > 0, "{report}");
    assert!(count(&report, "lead_checks") > 0, "{report}");
    assert!(count(&report, "escalations.escalated") > 0, "{report}");
    assert!(count(&report, "escalations.won") > 0, "{report}");
    assert!(
        report["latency_ms"]["decline_to_offer"]["p99"].is_number(),
        "{report}"
    );
    // Refusals to a lead that handed over are right outcomes, not errors.
    assert_eq!(count(&report, "errors"), 0, "{report}");
}

/// `--accounts 3`: portals, agents and sessions spread over three accounts
/// (portal p in account p mod 3), and every invitation stays inside its
/// session's account: one to another account's portal or agent would be
/// refused, and the run would count it as an error.
#[actix_rt::test]
async fn a_run_spread_over_accounts_keeps_every_invitation_inside_its_account() {
    let app = TestApp::spawn().await;
    let report = load_report_on(
        &app,
        &[
            "--duration",
            "3s",
            "--accounts",
            "3",
            "--account",
            "ldspread",
            "--mix",
            "portal=0.5",
        ],
    )
    .await;
    assert_intact(&report);
    assert_eq!(count(&report, "accounts"), 3, "{report}");
    assert_eq!(count(&report, "errors"), 0, "{report}");
    // 40 agents in 4 portals: account 0 holds portals 0 and 3, accounts 1
    // and 2 one portal each; the run's own id is no account.
    for (account, agents) in [("ldspreada0", 20), ("ldspreada1", 10), ("ldspreada2", 10)] {
        let listed = app
            .get(&format!("/v1/accounts/{account}/agents"), ADMIN)
            .await
            .expect_status(200);
        assert_eq!(
            listed["agents"].as_array().map(Vec::len),
            Some(agents),
            "{account}: {listed}"
        );
    }
    assert_eq!(
        app.get("/v1/accounts/ldspread/agents", ADMIN).await.status,
        404
    );
}
