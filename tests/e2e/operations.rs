//! Operations: health, readiness, metrics, the OpenAPI document, slow
//! clients, and graceful shutdown.

use std::time::Duration;

use awc::http::Method;
use serde_json::{Value, json};

use crate::common::{ACME, EVENT_WAIT, TestApp, id_of};

/// Messages a test posts at most while waiting for a stream nobody reads
/// to fill up (about 4 KB each, far more than any socket buffers).
const MAX_FILLER_MESSAGES: usize = 3000;

/// The value of a counter on `/metrics`.
async fn counter(app: &TestApp, name: &str) -> u64 {
    let reply = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, 200);
    reply
        .text
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no counter {name} in:\n{}", reply.text))
}

#[actix_rt::test]
async fn health_and_readiness_answer_200() {
    let app = TestApp::spawn().await;
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
}

#[actix_rt::test]
async fn metrics_are_prometheus_text_with_collabd_counters() {
    let app = TestApp::spawn().await;
    // A request before the scrape, so the request families have a sample.
    app.call(Method::GET, "/healthz", None, None).await;
    let reply = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        reply.content_type
    );
    // OpenMetrics names a counter family without `_total`; its samples have it.
    for name in [
        "collabd_sessions_created",
        "collabd_invitations_sent",
        "collabd_accepts",
        "collabd_streams_opened",
        "collabd_slow_clients_dropped",
        "collabd_http_requests",
        "collabd_pubsub_reconnects",
        "collabd_redis_clients_replaced",
    ] {
        assert!(
            reply.text.contains(&format!("# TYPE {name} counter")),
            "{name} missing from:\n{}",
            reply.text
        );
    }
    for (name, kind) in [
        ("collabd_http_request_duration_seconds", "histogram"),
        ("collabd_invitation_delivery_seconds", "histogram"),
        ("collabd_timer_lag_seconds", "histogram"),
        ("collabd_redis_command_duration_seconds", "histogram"),
        ("collabd_open_streams", "gauge"),
        ("collabd_live_actors", "gauge"),
        ("collabd_heap_bytes", "gauge"),
        ("collabd_build_info", "gauge"),
    ] {
        assert!(
            reply.text.contains(&format!("# TYPE {name} {kind}"))
                && reply.text.contains(&format!("# HELP {name} ")),
            "{name} ({kind}) missing from:\n{}",
            reply.text
        );
    }
    // The allocator's four figures are there on every scrape (near 0 where the
    // binary's allocator is not jemalloc, as in this harness).
    for kind in ["allocated", "active", "resident", "retained"] {
        assert!(
            reply
                .text
                .contains(&format!("collabd_heap_bytes{{kind=\"{kind}\"}} ")),
            "heap {kind} missing from:\n{}",
            reply.text
        );
    }
    assert_eq!(counter(&app, "collabd_sessions_created_total").await, 0);

    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    app.create_session(&ann.token, "web", "Carol").await;
    assert_eq!(counter(&app, "collabd_sessions_created_total").await, 1);
}

#[actix_rt::test]
async fn openapi_json_is_a_json_document_with_an_openapi_version() {
    let app = TestApp::spawn().await;
    let reply = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    let version = reply.json["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with('3'), "openapi version {version:?}");
    let paths = reply.json["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/v1/sessions",
        "/v1/invitations/{invitation}/accept",
        "/v1/me/events",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
}

#[actix_rt::test]
async fn a_slow_client_is_dropped_without_delaying_another_agents_stream() {
    let app = TestApp::spawn_with(|s| s.sse.outbox = 4).await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let cid = app.online(ACME, "cid", "Cid", "support").await;
    let (session, _) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    app.bring_in(&ann, &session, &bob, false).await;
    app.bring_in(&ann, &session, &cid, false).await;

    // Bob's stream is opened and never read; Cid's is read all along.
    let mut slow = app.connect_stream("/v1/me/events", &bob.token).await;
    let (mut cids, _) = app.agent_events(&cid.token).await;
    let reader = actix_rt::spawn(async move {
        let mut numbers = Vec::new();
        let mut previous: Option<u64> = None;
        while let Some(event) = cids.next_event(EVENT_WAIT).await {
            assert_eq!(event.name, "message");
            // Consecutive ids: nothing was skipped for Cid.
            if let Some(previous) = previous {
                assert_eq!(event.id, previous + 1, "a gap in Cid's stream");
            }
            previous = Some(event.id);
            let text = event.data["message"]["text"].as_str().unwrap_or_default();
            if text == "last" {
                break;
            }
            numbers.push(text.split(' ').next().unwrap_or_default().to_owned());
        }
        numbers
    });

    let filler = "x".repeat(3990);
    let mut sent = 0;
    while counter(&app, "collabd_slow_clients_dropped_total").await == 0 {
        assert!(
            sent < MAX_FILLER_MESSAGES,
            "no stream was dropped after {sent} messages to a stream nobody reads"
        );
        for _ in 0..20 {
            app.say(
                &ann.token,
                &session,
                &format!("{sent:05} {filler}"),
                "agents",
            )
            .await
            .expect_status(201);
            sent += 1;
        }
    }
    app.say(&ann.token, &session, "last", "agents")
        .await
        .expect_status(201);

    let numbers = reader
        .await
        .unwrap_or_else(|e| panic!("Cid's stream reader failed: {e}"));
    let expected: Vec<String> = (0..sent).map(|n| format!("{n:05}")).collect();
    assert_eq!(numbers, expected, "Cid missed or reordered messages");

    // What was buffered for Bob drains, then his stream ends: he was dropped.
    let buffered = slow.expect_end(Duration::from_secs(30)).await;
    assert_eq!(buffered.first().map(|e| e.name.as_str()), Some("snapshot"));
    assert!(
        buffered.len() < sent + 2,
        "the slow stream got every event ({}), it was not dropped",
        buffered.len()
    );
    assert!(!buffered.iter().any(|e| e.data["message"]["text"] == "last"));
}

#[actix_rt::test]
async fn a_graceful_shutdown_ends_every_open_event_stream() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let (_, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;

    app.handle().stop().await;

    let after: Vec<Value> = anns
        .expect_end(EVENT_WAIT)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert!(after.is_empty(), "events after shutdown: {after:?}");
    carols.expect_end(EVENT_WAIT).await;
}

/// The value of one labelled sample on `/metrics` (`name{labels}`), 0 if absent.
async fn sample(app: &TestApp, name_and_labels: &str) -> f64 {
    let text = app.call(Method::GET, "/metrics", None, None).await.text;
    let prefix = format!("{name_and_labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn every_accept_outcome_requests_streams_and_deliveries_are_measured() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let cid = app.online(ACME, "cid", "Cid", "support").await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let (_carols, _) = app.customer_events(&customer).await;
    let session = id_of(&session);
    let inv = app
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    bobs.expect("invitation_offered", EVENT_WAIT).await;
    app.accept(&bob.token, &id_of(&inv))
        .await
        .expect_status(200);
    // A lost race answered from the history, and a refusal.
    app.accept(&cid.token, &id_of(&inv))
        .await
        .expect_status(409);
    let direct = app
        .invite(&ann.token, &session, json!({"target": {"agent": "cid"}}))
        .await
        .expect_status(201);
    app.accept(&bob.token, &id_of(&direct))
        .await
        .expect_status(403);
    assert_eq!(
        sample(&app, "collabd_accepts_total{outcome=\"won\"}").await,
        1.0
    );
    assert_eq!(
        sample(&app, "collabd_accepts_total{outcome=\"taken\"}").await,
        1.0
    );
    assert_eq!(
        sample(&app, "collabd_accepts_total{outcome=\"refused\"}").await,
        1.0
    );
    assert_eq!(
        sample(&app, "collabd_open_streams{role=\"agent\"}").await,
        1.0
    );
    assert_eq!(
        sample(&app, "collabd_open_streams{role=\"customer\"}").await,
        1.0
    );
    assert!(
        sample(&app, "collabd_invitation_delivery_seconds_count").await >= 1.0,
        "the offer's delivery was timed"
    );
    assert_eq!(
        sample(
            &app,
            "collabd_http_requests_total{route=\"/v1/invitations/{invitation}/accept\",method=\"POST\",status=\"409\"}"
        )
        .await,
        1.0
    );
    // Made-up methods do not grow the label sets.
    for made_up in ["FOO", "BAR", "BAZ"] {
        let method = Method::from_bytes(made_up.as_bytes()).unwrap();
        app.call(method, "/v1/sessions", None, None).await;
    }
    let text = app.call(Method::GET, "/metrics", None, None).await.text;
    assert!(!text.contains("method=\"FOO\""), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    // Every answer names its request; a client's own id is kept.
    let reply = app
        .call_with_headers(Method::GET, "/healthz", &[("x-request-id", "trace-42")])
        .await;
    assert_eq!(reply.request_id, "trace-42");
    let fresh = app.call(Method::GET, "/healthz", None, None).await;
    assert!(
        fresh.request_id.starts_with("req-"),
        "{:?}",
        fresh.request_id
    );
}

/// `collabd_live_actors{kind="…"}` from `/metrics`.
async fn live_actors(app: &TestApp, kind: &str) -> u64 {
    let text = app.call(Method::GET, "/metrics", None, None).await.text;
    let prefix = format!("collabd_live_actors{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

#[actix_rt::test]
async fn a_node_forgets_the_actors_of_streams_that_closed() {
    // A closed client is noticed when the next write (at the latest a
    // keep-alive) fails: keep-alives every second keep this test short.
    let app = TestApp::spawn_with(|s| s.sse.keep_alive_secs = 1).await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let streams = [
        app.agent_events(&ann.token).await.0,
        app.agent_events(&bob.token).await.0,
    ];
    assert_eq!(live_actors(&app, "agent").await, 2);
    assert_eq!(live_actors(&app, "portal").await, 1);
    drop(streams);
    // Agent actors forget closed clients on their periodic check (5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while live_actors(&app, "agent").await + live_actors(&app, "portal").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "actors of closed streams are still registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
