//! Starting safely (API.md v2, "Operations"): the real binary refuses
//! unknown configuration keys and secrets anyone could know (outside
//! loopback + memory), says what it runs on, has `--version`, and writes
//! no colour codes into a log that is not a terminal. Then the guards every
//! request passes: 405 with `Allow`, a body that never arrives (408), and
//! `/metrics` behind its token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::json;

use crate::common::{ACME, ADMIN, TestApp, assert_problem};

const STRONG: &str = "0123456789abcdef0123456789abcdef-e2e";

/// The binary with a clean `COLLABD__*` environment plus `env`.
fn collabd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_collabd"));
    for (key, _) in std::env::vars() {
        if key.starts_with("COLLABD") {
            command.env_remove(key);
        }
    }
    command.args(args).envs(env.iter().copied());
    command
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    collabd(args, env)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("the binary does not run: {e}"))
}

/// Starts the binary (serve) with `env`; its standard output, line by line.
fn start_logging(env: &[(&str, &str)]) -> (Child, Receiver<String>) {
    let mut child = collabd(&[], env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("the binary does not start: {e}"));
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    (child, rx)
}

fn refused(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "expected a refusal to start; stderr:\n{stderr}\nstdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

#[test]
fn a_misspelt_key_refuses_start_up_naming_it() {
    let dir = std::env::temp_dir().join(format!("collabd-typo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.toml");
    std::fs::write(&file, "[backplan]\nkind = \"redis\"\n").unwrap();
    let stderr = refused(&run(&["--config", file.to_str().unwrap()], &[]));
    assert!(stderr.contains("backplan.kind"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);

    let stderr = refused(&run(&["serve"], &[("COLLABD__HTTP__LISTN", "0.0.0.0:1")]));
    assert!(stderr.contains("http.listn"), "{stderr}");
    assert!(stderr.contains("COLLABD__HTTP__LISTN"), "{stderr}");
}

#[test]
fn default_or_weak_secrets_refuse_start_up_when_the_node_is_reachable_or_shared() {
    // The README's defaults, reachable from other machines.
    let stderr = refused(&run(&[], &[("COLLABD__HTTP__LISTEN", "0.0.0.0:0")]));
    assert!(
        stderr.contains("auth.secret is a built-in default"),
        "{stderr}"
    );
    assert!(
        stderr.contains("auth.admin_token is a built-in default"),
        "{stderr}"
    );
    // On loopback but sharing state through Redis.
    let stderr = refused(&run(
        &[],
        &[
            ("COLLABD__BACKPLANE__KIND", "redis"),
            ("COLLABD__AUTH__ADMIN_TOKEN", STRONG),
        ],
    ));
    assert!(stderr.contains("auth.secret"), "{stderr}");
    assert!(!stderr.contains("auth.admin_token"), "{stderr}");
    // Empty and short secrets.
    let stderr = refused(&run(
        &[],
        &[
            ("COLLABD__HTTP__LISTEN", "0.0.0.0:0"),
            ("COLLABD__AUTH__ADMIN_TOKEN", STRONG),
            ("COLLABD__AUTH__SECRET", "tiny"),
        ],
    ));
    assert!(stderr.contains("shorter than 32 bytes"), "{stderr}");
    let stderr = refused(&run(&[], &[("COLLABD__AUTH__SECRET", "")]));
    assert!(stderr.contains("auth.secret must not be empty"), "{stderr}");
}

#[test]
fn on_loopback_with_memory_development_secrets_start_with_a_loud_warning_and_no_colour() {
    let (mut child, rx) = start_logging(&[("COLLABD__HTTP__LISTEN", "127.0.0.1:0")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while Instant::now() < deadline && !lines.iter().any(|l: &String| l.contains("listening on")) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(log.contains("listening on"), "{log}");
    assert!(log.contains("UNSAFE SECRET"), "{log}");
    assert!(log.contains("starting collabd"), "{log}");
    assert!(
        log.contains("config/default.toml"),
        "names the files read: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

#[test]
fn every_request_is_one_json_line_with_its_request_id_and_the_node() {
    let (mut child, rx) = start_logging(&[
        ("COLLABD__HTTP__LISTEN", "127.0.0.1:0"),
        ("COLLABD__LOG__FORMAT", "json"),
        ("COLLABD__NODE__ID", "node-under-test"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut port = None;
    let mut seen = Vec::new();
    let mut access: Option<serde_json::Value> = None;
    while Instant::now() < deadline && access.is_none() {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        seen.push(line.clone());
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let message = entry["fields"]["message"].as_str().unwrap_or_default();
        if port.is_none()
            && let Some(addr) = message.strip_prefix("listening on ")
        {
            let p: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
            port = Some(p);
            let mut socket = TcpStream::connect(("127.0.0.1", p)).unwrap();
            socket
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: probe-7\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            let _ = socket.read_to_string(&mut answer);
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("x-request-id: probe-7"),
                "{answer}"
            );
        }
        if entry["target"] == "collabd::http" {
            access = Some(entry);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let access = access.unwrap_or_else(|| panic!("no access line in:\n{}", seen.join("\n")));
    assert_eq!(access["fields"]["route"], "/healthz", "{access}");
    assert_eq!(access["fields"]["status"], 200, "{access}");
    assert_eq!(access["span"]["request_id"], "probe-7", "{access}");
    assert_eq!(access["span"]["node"], "node-under-test", "{access}");
}

#[test]
fn version_and_subcommands() {
    let version = run(&["--version"], &[]);
    assert!(version.status.success());
    let text = String::from_utf8_lossy(&version.stdout);
    assert_eq!(
        text.trim(),
        format!("collabd {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run(&["serve", "--help"], &[]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
    let load_help = run(&["load", "--help"], &[]);
    assert!(load_help.status.success());
    assert!(String::from_utf8_lossy(&load_help.stdout).contains("--nodes"));
    assert_eq!(run(&["bogus"], &[]).status.code(), Some(2));
}

#[actix_rt::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let reply = app
        .call(Method::PUT, "/v1/sessions", Some(ADMIN), None)
        .await;
    assert_problem(&reply, 405, "method_not_allowed");
    assert_eq!(reply.allow, "POST");
    let reply = app
        .call(Method::PATCH, "/v1/sessions/ses-x/messages", None, None)
        .await;
    assert_problem(&reply, 405, "method_not_allowed");
    assert_eq!(reply.allow, "GET, POST");
    assert_problem(
        &app.call(Method::GET, "/v1/no-such-thing", None, None).await,
        404,
        "not_found",
    );
}

#[actix_rt::test]
async fn a_body_that_never_arrives_is_refused_in_time_and_others_are_served_meanwhile() {
    let app = TestApp::spawn_with(|s| s.http.request_timeout_secs = 1).await;
    app.acme(json!({})).await;
    let port = app.port;
    let started = Instant::now();
    let answer = actix_rt::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "PUT /v1/accounts/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
        );
        socket.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    // Meanwhile the node answers others.
    app.get("/v1/accounts/acme", ADMIN).await.expect_status(200);
    let answer = answer.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(9));
    assert_problem(&app.get("/v1/accounts/slow", ADMIN).await, 404, "not_found");
}

#[actix_rt::test]
async fn metrics_need_the_metrics_token_when_one_is_set() {
    let app = TestApp::spawn_with(|s| s.auth.metrics_token = STRONG.into()).await;
    assert_problem(
        &app.call(Method::GET, "/metrics", None, None).await,
        401,
        "unauthorized",
    );
    assert_problem(
        &app.call(Method::GET, "/metrics", Some(ADMIN), None).await,
        401,
        "unauthorized",
    );
    let ok = app.call(Method::GET, "/metrics", Some(STRONG), None).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.text.contains("collabd_"));
    // Unset (the test default): open.
    let open = TestApp::spawn().await;
    assert_eq!(
        open.call(Method::GET, "/metrics", None, None).await.status,
        200
    );
}

#[actix_rt::test]
async fn display_names_refuse_invisible_and_bidi_characters() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    for name in [
        "\u{202e}\u{200b}",
        "Ann\u{202e}nimda",
        "A\u{200d}nn",
        "Ann\u{2028}Admin",
        // Letters that render as nothing: a name of them looks blank.
        "\u{3164}",
        "\u{115F}\u{1160}",
        "\u{FFA0}",
        "\u{2800}\u{2800}",
        "Ann\u{3164}",
    ] {
        let reply = app.put_agent(ACME, "spoof", name, &["support"]).await;
        assert_problem(&reply, 400, "invalid_request");
        assert!(reply.text.contains("formatting"), "{}", reply.text);
    }
    assert_problem(
        &app.get("/v1/accounts/acme/agents/spoof", ADMIN).await,
        404,
        "not_found",
    );
    let reply = app.put_portal(ACME, "p2", "\u{2066}Desk").await;
    assert_problem(&reply, 400, "invalid_request");
    app.put_agent(ACME, "zoe", "Zoë 山田", &["support"])
        .await
        .expect_status(201);
}
