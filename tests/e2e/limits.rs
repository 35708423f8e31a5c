//! Every collection has a bound and every stored thing a lifetime (API.md,
//! v2 "Limits" and "Bounded reads"): a limit reached is a problem+json
//! answer that changes nothing; an idle session ends; an ended session is
//! gone after its retention; long lists come in pages.

use std::time::Duration;

use awc::http::Method;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::common::{ACME, EVENT_WAIT, QUIET, Scene, TestApp, assert_problem, id_of, pluck};

/// Polls `probe` until it returns true, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_session_holds_at_most_the_policys_pending_invitations_and_the_next_changes_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(
        &app,
        json!({"max_pending_invitations_per_session": 2}),
        ["ann"],
    )
    .await;
    let session = session.id;
    let mut streams = Vec::new();
    for name in ["bob", "cid", "dan"] {
        let agent = app.online(ACME, name, name, "support").await;
        streams.push(agent.events().await.0);
    }
    for name in ["bob", "cid"] {
        ann.invite(&session, json!({"target": {"agent": name}}))
            .await
            .expect_status(201);
    }
    let refused = ann
        .invite(&session, json!({"target": {"agent": "dan"}}))
        .await;
    assert_problem(&refused, 409, "limit_reached");
    assert!(
        refused.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max_pending_invitations_per_session")),
        "the detail names the limit: {}",
        refused.text
    );
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["invitations"].as_array().map(Vec::len), Some(2));
    // Dan was never offered anything; closing one makes room again.
    streams[2].assert_silent(QUIET).await;
    let bobs = pluck(&view["invitations"], "id");
    ann.cancel(&session, &bobs[0]).await.expect_status(200);
    ann.invite(&session, json!({"target": {"agent": "dan"}}))
        .await
        .expect_status(201);
    streams[2].expect("invitation_offered", EVENT_WAIT).await;
}

#[actix_rt::test]
async fn a_session_sends_at_most_the_policys_invitations_in_its_life() {
    let app = TestApp::spawn().await;
    let ([ann], session) =
        Scene::support_session(&app, json!({"max_invitations_per_session": 2}), ["ann"]).await;
    let session = session.id;
    app.online(ACME, "bob", "Bob", "support").await;
    for _ in 0..2 {
        let sent = ann
            .invite(&session, json!({"target": {"agent": "bob"}}))
            .await
            .expect_status(201);
        ann.cancel(&session, &id_of(&sent)).await.expect_status(200);
    }
    let refused = ann
        .invite(&session, json!({"target": {"agent": "bob"}}))
        .await;
    assert_problem(&refused, 409, "limit_reached");
    assert!(refused.text.contains("max_invitations_per_session"));
}

#[actix_rt::test]
async fn each_side_of_a_session_holds_at_most_the_policys_messages() {
    let app = TestApp::spawn().await;
    let ([ann], session) =
        Scene::support_session(&app, json!({"max_messages_per_session": 2}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    for text in ["one", "two"] {
        app.customer_say(&customer, text).await.expect_status(201);
    }
    // The customer used up its side, and only its side.
    let refused = app.customer_say(&customer, "three").await;
    assert_problem(&refused, 409, "limit_reached");
    assert!(refused.text.contains("max_messages_per_session"));
    ann.say(&session, "a note", "agents")
        .await
        .expect_status(201);
    ann.say(&session, "four", "everyone")
        .await
        .expect_status(201);
    let refused = ann.say(&session, "five", "agents").await;
    assert_problem(&refused, 409, "limit_reached");
    assert!(refused.text.contains("max_messages_per_session"));
    assert_problem(
        &app.customer_say(&customer, "six").await,
        409,
        "limit_reached",
    );
    let all = ann.messages(&session).await.expect_status(200);
    assert_eq!(
        pluck(&all["messages"], "text"),
        ["four", "a note", "two", "one"]
    );
}

#[actix_rt::test]
async fn creating_a_session_counts_toward_the_agents_session_limit() {
    let app = TestApp::spawn().await;
    app.acme(json!({"max_active_sessions_per_agent": 2})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    for customer in ["Carl", "Cora"] {
        app.create_session(&ann.token, "web", customer).await;
    }
    let refused = app
        .post(
            "/v1/sessions",
            &ann.token,
            json!({"mode": "web", "customer": {"name": "Cyd"}}),
        )
        .await;
    assert_problem(&refused, 409, "agent_busy");
    assert_eq!(ann.active_sessions().await, 2);
}

#[actix_rt::test]
async fn a_token_holds_at_most_its_streams_and_the_next_is_429_without_dropping_any() {
    let app = TestApp::spawn_with(|s| s.limits.streams_per_token = 2).await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    let (mut first, _) = ann.events().await;
    let (mut second, _) = ann.events().await;
    let refused = app
        .call(Method::GET, "/v1/me/events", Some(&ann.token), None)
        .await;
    assert_problem(&refused, 429, "too_many_streams");
    // Both open streams still get events.
    ann.say(&session, "still heard", "agents")
        .await
        .expect_status(201);
    for stream in [&mut first, &mut second] {
        let message = stream.wait_for("message", EVENT_WAIT).await;
        assert_eq!(message["message"]["text"], "still heard");
    }
    // A stream that ends gives its place back.
    drop(first);
    eventually(
        EVENT_WAIT,
        "a closed stream gives its place back",
        || async { app.stream_status("/v1/me/events", &ann.token).await == 200 },
    )
    .await;
}

/// The most messages the byte-bound test sends before it gives up.
const MAX_FILLER_MESSAGES: usize = 5000;

async fn slow_clients_dropped(app: &TestApp) -> u64 {
    app.call(Method::GET, "/metrics", None, None)
        .await
        .text
        .lines()
        .find_map(|l| l.strip_prefix("collabd_slow_clients_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn a_stream_too_far_behind_in_bytes_is_dropped_and_the_others_go_on() {
    // So many events fit that only the byte bound can drop a client.
    let app = TestApp::spawn_with(|s| {
        s.sse.outbox = 1_000_000;
        s.sse.outbox_bytes = 64 * 1024;
    })
    .await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    ann.bring_in(&session, &bob, false).await;
    let mut stalled = app.connect_stream("/v1/me/events", &ann.token).await;
    let (mut reader, _) = bob.events().await;
    let text = "x".repeat(3900);
    let mut sent = 0;
    // Until the socket buffers are full and 64 KiB more wait in the outbox.
    while slow_clients_dropped(&app).await == 0 {
        assert!(
            sent < MAX_FILLER_MESSAGES,
            "no stream was dropped after {sent} messages to a stream nobody reads"
        );
        for _ in 0..20 {
            bob.say(&session, &format!("{sent} {text}"), "agents")
                .await
                .expect_status(201);
            let message = reader.wait_for("message", EVENT_WAIT).await;
            assert!(
                message["message"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{sent} "))),
                "the reader missed nothing"
            );
            sent += 1;
        }
    }
    // The stalled client, once it reads, finds its stream ended.
    stalled.expect_end(Duration::from_secs(30)).await;
}

#[actix_rt::test]
async fn a_session_without_agent_activity_for_the_idle_time_ends_for_everyone() {
    let app = TestApp::spawn().await;
    let ([ann], session) =
        Scene::support_session(&app, json!({"session_idle_timeout_secs": 1}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    let (mut anns, _) = ann.events().await;
    let (mut carols, _) = app.customer_events(&customer).await;
    // A customer message is not agent activity.
    app.customer_say(&customer, "anyone there?")
        .await
        .expect_status(201);
    let ended = anns.wait_for("session_ended", EVENT_WAIT).await;
    assert_eq!(ended["session"], session.as_str());
    assert_eq!(ended["reason"], "idle");
    let seen = carols.wait_for("session_ended", EVENT_WAIT).await;
    assert_eq!(seen["reason"], "idle");
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["status"], "ended");
    assert_eq!(view["ended_reason"], "idle");
    assert_eq!(ann.active_sessions().await, 0);
}

#[actix_rt::test]
async fn agent_activity_keeps_a_session_alive_past_its_idle_time() {
    let app = TestApp::spawn().await;
    let ([ann], session) =
        Scene::support_session(&app, json!({"session_idle_timeout_secs": 2}), ["ann"]).await;
    let session = session.id;
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ann.say(&session, &format!("still working {i}"), "agents")
            .await
            .expect_status(201);
    }
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(
        view["status"], "active",
        "3 s of activity outlived a 2 s idle time"
    );
}

#[actix_rt::test]
async fn an_ended_session_is_gone_after_its_retention() {
    let app = TestApp::spawn().await;
    let ([ann], session) =
        Scene::support_session(&app, json!({"retention_secs": 1}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    ann.say(&session, "goodbye", "everyone")
        .await
        .expect_status(201);
    ann.end(&session).await.expect_status(200);
    // Still readable by its agents while retained (its customer token is
    // no longer good once the session ended) …
    ann.view(&session).await.expect_status(200);
    assert_problem(&app.customer_messages(&customer).await, 401, "unauthorized");
    // … then gone, for everyone and every read.
    eventually(EVENT_WAIT, "the ended session is deleted", || async {
        ann.view(&session).await.status == 404
    })
    .await;
    assert_problem(&ann.view(&session).await, 404, "not_found");
    assert_problem(&ann.messages(&session).await, 404, "not_found");
    assert_problem(&app.customer_session(&customer).await, 401, "unauthorized");
    assert_problem(&app.customer_messages(&customer).await, 401, "unauthorized");
}

#[actix_rt::test]
async fn messages_come_in_pages_newest_first_and_the_customer_counts_only_what_it_sees() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    // 120 messages; every third is agents-only.
    for i in 1..=120 {
        let audience = if i % 3 == 0 { "agents" } else { "everyone" };
        ann.say(&session, &format!("m{i}"), audience)
            .await
            .expect_status(201);
    }
    let mut seqs = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/v1/sessions/{session}/messages?before={b}"),
            None => format!("/v1/sessions/{session}/messages"),
        };
        let page = app.get(&path, &ann.token).await.expect_status(200);
        let page_seqs: Vec<u64> = page["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["seq"].as_u64()).collect())
            .unwrap_or_default();
        assert!(page_seqs.len() <= 50, "a default page is at most 50");
        seqs.extend(page_seqs);
        match page["next_before"].as_u64() {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=120).rev().collect::<Vec<u64>>());

    // The customer's pages number its 80 messages 80..1, without gaps.
    let page = app
        .get("/v1/customer/messages?limit=200", &customer)
        .await
        .expect_status(200);
    let customer_seqs: Vec<u64> = page["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(customer_seqs, (1..=80).rev().collect::<Vec<u64>>());
    assert_eq!(page["next_before"], Value::Null);
    let small = app
        .get("/v1/customer/messages?limit=5&before=10", &customer)
        .await
        .expect_status(200);
    assert_eq!(
        pluck(&small["messages"], "text"),
        ["m13", "m11", "m10", "m8", "m7"]
    );
    assert_eq!(small["next_before"], 5);

    // A snapshot carries the last 50 it may read, oldest first, and says there is more.
    let (_, snapshot) = app.customer_events(&customer).await;
    let texts = pluck(&snapshot["messages"], "text");
    assert_eq!(texts.len(), 50);
    assert_eq!(texts.last().map(String::as_str), Some("m119"));
    assert_eq!(snapshot["has_more"], true);

    for bad in ["limit=0", "limit=201", "limit=x", "before=-1", "colour=red"] {
        let reply = app
            .get(
                &format!("/v1/sessions/{session}/messages?{bad}"),
                &ann.token,
            )
            .await;
        assert_problem(&reply, 400, "invalid_request");
    }
}

#[actix_rt::test]
async fn the_collaboration_window_comes_in_pages_that_keep_the_search() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    for i in 0..7 {
        app.online(
            ACME,
            &format!("helper{i}"),
            &format!("Helper {i}"),
            "billing",
        )
        .await;
    }
    app.online(ACME, "zed", "Zed", "support").await;
    let mut names = Vec::new();
    let mut path = "/v1/collaborators?q=helper&limit=3".to_owned();
    loop {
        let page = app.get(&path, &ann.token).await.expect_status(200);
        let page_names = pluck(&page["agents"], "name");
        assert!(page_names.len() <= 3);
        names.extend(page_names);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/collaborators?q=helper&limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        names,
        (0..7).map(|i| format!("Helper {i}")).collect::<Vec<_>>()
    );
    let all = app
        .get("/v1/collaborators", &ann.token)
        .await
        .expect_status(200);
    assert_eq!(all["agents"].as_array().map(Vec::len), Some(8));
    assert_eq!(all["next_cursor"], Value::Null);
    for bad in ["limit=0", "limit=1001", "cursor=not-a-cursor"] {
        let reply = app
            .get(&format!("/v1/collaborators?{bad}"), &ann.token)
            .await;
        assert_problem(&reply, 400, "invalid_request");
    }
}

#[actix_rt::test]
async fn a_node_at_capacity_sheds_requests_with_503_and_retry_after_and_loses_none_it_took() {
    let app = TestApp::spawn_with(|s| s.limits.max_in_flight = 1).await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    // One place: of many requests at once, most are refused at once
    // rather than queued behind the one being handled.
    let mut shed = Vec::new();
    let mut stored = 0;
    for round in 0..20 {
        let replies = join_all((0..40).map(|i| {
            let text = format!("r{round} m{i}");
            let (ann, session) = (&ann, &session);
            async move { ann.say(session, &text, "agents").await }
        }))
        .await;
        for reply in replies {
            match reply.status {
                201 => stored += 1,
                _ => shed.push(reply),
            }
        }
        if !shed.is_empty() {
            break;
        }
    }
    assert!(!shed.is_empty(), "no request was shed with one place");
    for reply in &shed {
        assert_problem(reply, 503, "unavailable");
        assert_eq!(reply.retry_after, "1", "{}", reply.text);
    }
    // What was taken was stored once; nothing shed was.
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["message_count"], stored);
}

#[actix_rt::test]
async fn a_token_past_its_rate_is_429_with_retry_after_and_other_tokens_go_on() {
    let app = TestApp::spawn_with(|s| {
        s.limits.rate_per_token = 2;
        s.limits.rate_burst = 5;
    })
    .await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    // Ann spent 2 requests (login, create); 3 more fit in her burst.
    let mut refused = None;
    for _ in 0..10 {
        let reply = app.me(&ann.token).await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
        reply.expect_status(200);
    }
    let refused = refused.expect("ann's burst ran out");
    assert_problem(&refused, 429, "rate_limited");
    let wait: u64 = refused.retry_after.parse().expect("Retry-After in seconds");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // A refused request changes nothing and costs nothing to others.
    let said = ann.say(&session, "hello", "everyone").await;
    assert_problem(&said, 429, "rate_limited");
    let page = app.customer_messages(&customer).await.expect_status(200);
    assert_eq!(
        page["messages"],
        json!([]),
        "the refused message was not written"
    );
    app.me(&bob.token).await.expect_status(200);
    app.customer_session(&customer).await.expect_status(200);
    // Refilled at 2 a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.me(&ann.token).await.expect_status(200);
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("collabd_requests_rate_limited_total ") && !l.ends_with(" 0")),
        "{}",
        metrics.text
    );
}

#[actix_rt::test]
async fn an_accounts_customers_share_one_bucket_that_agents_cannot_raise() {
    let app = TestApp::spawn_with(|s| {
        s.limits.customer_rate_per_account = 1;
        s.limits.customer_burst_per_account = 4;
    })
    .await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    // Every new session is a new customer token with a full bucket of its
    // own, but they all draw on the account's.
    let mut customers = Vec::new();
    for name in ["Carl", "Cora", "Cyd", "Cleo", "Cy"] {
        customers.push(ann.create_session("web", name).await.customer);
    }
    let mut statuses = Vec::new();
    for customer in &customers {
        statuses.push(app.customer_session(customer).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429], "{statuses:?}");
    let refused = app.customer_say(&customers[0], "hello").await;
    assert_problem(&refused, 429, "rate_limited");
    assert!(!refused.retry_after.is_empty(), "{}", refused.text);
    // The agents and another account's customers are not touched.
    ann.me().await.expect_status(200);
    app.account("other", json!({})).await;
    app.portal("other", "desk", "Desk").await;
    let olga = app.online("other", "olga", "Olga", "desk").await;
    let theirs = olga.create_session("web", "Ola").await.customer;
    app.customer_session(&theirs).await.expect_status(200);
    // Refilled at 1 a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.customer_session(&customers[4]).await.expect_status(200);
}

#[actix_rt::test]
async fn the_admin_token_has_its_own_rate() {
    let app = TestApp::spawn_with(|s| {
        s.limits.admin_rate = 1;
        s.limits.admin_burst = 3;
    })
    .await;
    let ids: Vec<String> = (0..6).map(|i| format!("acc{i}")).collect();
    let statuses: Vec<u16> = join_all(ids.iter().map(|id| app.put_account(id, json!({}))))
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
}

/// Sends a request's head (`Expect: 100-continue`) and none of its body,
/// and waits for the node's `100 Continue`: by then the node handles the
/// request, waiting for its body.
fn trickle(port: u16, path: &str, token: &str, body: &str) -> std::io::Result<std::net::TcpStream> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes())?;
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        assert_eq!(socket.read(&mut byte)?, 1, "closed before 100 Continue");
        seen.push(byte[0]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 100"), "{seen}");
    Ok(socket)
}

#[actix_rt::test]
async fn slow_bodies_hold_no_place_among_the_nodes_requests_and_are_served_once_they_arrive() {
    let app = TestApp::spawn_with(|s| {
        s.limits.max_in_flight = 2;
        s.http.request_timeout_secs = 30;
    })
    .await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (port, path) = (app.port, "/v1/customer/messages");
    let body = r#"{"text":"at last"}"#;
    // A customer trickles three bodies in, more than the node's places.
    let customer = session.customer.clone();
    let slow = actix_rt::task::spawn_blocking(move || {
        (0..3)
            .map(|_| trickle(port, path, &customer, body).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // Meanwhile other callers are served, not shed with 503.
    app.get(&format!("/v1/accounts/{ACME}"), crate::common::ADMIN)
        .await
        .expect_status(200);
    ann.view(&session.id).await.expect_status(200);
    // A slow body that arrives after all is handled like any other.
    let answers = actix_rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        slow.into_iter()
            .map(|mut socket| {
                socket.write_all(body.as_bytes()).unwrap();
                let mut answer = [0u8; 12];
                socket.read_exact(&mut answer).unwrap();
                String::from_utf8_lossy(&answer).into_owned()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers, vec!["HTTP/1.1 201"; 3]);
    let view = ann.view(&session.id).await.expect_status(200);
    assert_eq!(view["message_count"], 3);
}

#[actix_rt::test]
async fn a_one_second_retention_hides_neither_its_own_policy_change_nor_the_trail_before_it() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let patch = |policy: serde_json::Value| {
        let app = &app;
        async move {
            app.call(
                awc::http::Method::PATCH,
                &format!("/v1/accounts/{ACME}"),
                Some(crate::common::ADMIN),
                Some(&json!({ "policy": policy })),
            )
            .await
            .expect_status(200)
        }
    };
    patch(json!({"retention_secs": 1})).await;
    ann.end(&session.id).await.expect_status(200);
    // Past that retention, one more change (each trims the trail) …
    actix_rt::time::sleep(Duration::from_millis(2_100)).await;
    patch(json!({"masking": false})).await;
    // … and the trail still has what came before, the shortening included.
    let trail = app
        .get(&format!("/v1/accounts/{ACME}/audit"), crate::common::ADMIN)
        .await
        .expect_status(200);
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .map(|es| es.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(actions.contains(&"agent_created"), "{actions:?}");
    assert!(actions.contains(&"session_ended"), "{actions:?}");
    let changes: Vec<_> = trail["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "policy_changed")
        .map(|e| e["details"]["fields"].clone())
        .collect();
    assert_eq!(changes, [json!(["retention_secs"]), json!(["masking"])]);
}
