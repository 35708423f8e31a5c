//! Bad input gets a clear problem+json error and changes nothing: every
//! refusal here is followed by reading the state back.

use awc::http::Method;
use serde_json::{Value, json};

use crate::common::{
    ACME, ADMIN, Reply, Scene, TestApp, assert_problem, id_of, participant_ids, pluck, strings,
};

/// Largest body the test settings accept (`http.max_body_bytes`).
const MAX_BODY: usize = 64 * 1024;

/// A raw JSON body, sent as `application/json`.
async fn raw_json(app: &TestApp, method: Method, path: &str, token: &str, body: &str) -> Reply {
    app.call_raw(
        method,
        path,
        Some(token),
        "application/json",
        body.as_bytes().to_vec(),
    )
    .await
}

async fn message_texts(app: &TestApp, token: &str, session: &str) -> Vec<String> {
    let all = app.messages(token, session).await.expect_status(200);
    pluck(&all["messages"], "text")
}

async fn pending_invitations(app: &TestApp, token: &str, session: &str) -> Value {
    app.session(token, session).await.expect_status(200)["invitations"].clone()
}

#[actix_rt::test]
async fn malformed_json_is_400_invalid_request_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    app.online(ACME, "bob", "Bob", "support").await;

    let (a, c) = (ann.token.as_str(), customer.as_str());
    let cases = [
        (
            Method::POST,
            "/v1/sessions".to_owned(),
            a,
            r#"{"mode": "web", "customer": "#,
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/messages"),
            a,
            r#"{"text": "hi""#,
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/invitations"),
            a,
            "[]",
        ),
        (Method::POST, "/v1/me/login".to_owned(), a, "support"),
        (
            Method::POST,
            "/v1/customer/messages".to_owned(),
            c,
            "{text: 'hi'}",
        ),
        (
            Method::PUT,
            "/v1/accounts/newco".to_owned(),
            ADMIN,
            r#"{"name": "New"#,
        ),
        (
            Method::PUT,
            "/v1/accounts/acme".to_owned(),
            ADMIN,
            r#"{"name": "Acme", "policy": {"masking": "no"}}"#,
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/agents/eve".to_owned(),
            ADMIN,
            r#"{"name": "Eve", "portals": "support"}"#,
        ),
        (
            Method::POST,
            "/v1/accounts/acme/agents/ann/tokens".to_owned(),
            ADMIN,
            r#"{"ttl_secs": "#,
        ),
    ];
    for (method, path, token, body) in cases {
        let reply = raw_json(&app, method.clone(), &path, token, body).await;
        assert_problem(&reply, 400, "invalid_request");
    }

    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        1
    );
    assert!(message_texts(&app, &ann.token, &session).await.is_empty());
    assert_eq!(
        pending_invitations(&app, &ann.token, &session).await,
        json!([])
    );
    let me = app.me(&ann.token).await.expect_status(200);
    assert_eq!(me["portal"]["id"], "support");
    assert_problem(&app.put_portal("newco", "p", "P").await, 404, "not_found");
    assert_problem(
        &app.mint_token(ACME, "eve", json!({})).await,
        404,
        "not_found",
    );
    // Acme's policy still allows masking: the refused update did not apply.
    app.invite(
        &ann.token,
        &session,
        json!({"target": {"agent": "bob"}, "masked": true}),
    )
    .await
    .expect_status(201);
}

#[actix_rt::test]
async fn unknown_fields_are_400_invalid_request_and_change_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    app.online(ACME, "bob", "Bob", "support").await;
    let generation = app.customer_session(&customer).await.expect_status(200)["generation"].clone();

    let cases = [
        (
            Method::POST,
            "/v1/sessions".to_owned(),
            ann.token.clone(),
            json!({"mode": "web", "customer": {"name": "Dave"}, "priority": "high"}),
        ),
        (
            Method::POST,
            "/v1/sessions".to_owned(),
            ann.token.clone(),
            json!({"mode": "web", "customer": {"name": "Dave", "email": "d@example.com"}}),
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/invitations"),
            ann.token.clone(),
            json!({"target": {"agent": "bob"}, "urgent": true}),
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/messages"),
            ann.token.clone(),
            json!({"text": "hi", "format": "markdown"}),
        ),
        (
            Method::POST,
            "/v1/me/login".to_owned(),
            ann.token.clone(),
            json!({"portal": "billing", "status": "away"}),
        ),
        (
            Method::POST,
            "/v1/customer/messages".to_owned(),
            customer.clone(),
            json!({"text": "hi", "author": "Ann"}),
        ),
        (
            Method::POST,
            "/v1/customer/reconnected".to_owned(),
            customer.clone(),
            json!({"generation": generation, "screen_shared": true, "force": true}),
        ),
        (
            Method::PUT,
            "/v1/accounts/acme".to_owned(),
            ADMIN.to_owned(),
            json!({"name": "Acme", "policy": {"colaboration": false}}),
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/portals/vip".to_owned(),
            ADMIN.to_owned(),
            json!({"name": "VIP", "hidden": true}),
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/agents/eve".to_owned(),
            ADMIN.to_owned(),
            json!({"name": "Eve", "portals": ["support"], "role": "admin"}),
        ),
        (
            Method::POST,
            "/v1/accounts/acme/agents/ann/tokens".to_owned(),
            ADMIN.to_owned(),
            json!({"scope": "admin"}),
        ),
    ];
    for (method, path, token, body) in cases {
        let reply = app.call(method, &path, Some(&token), Some(&body)).await;
        assert_problem(&reply, 400, "invalid_request");
    }

    let me = app.me(&ann.token).await.expect_status(200);
    assert_eq!(me["active_sessions"], 1);
    assert_eq!(me["portal"]["id"], "support");
    assert!(message_texts(&app, &ann.token, &session).await.is_empty());
    assert_eq!(
        pending_invitations(&app, &ann.token, &session).await,
        json!([])
    );
    let seen = app.customer_session(&customer).await.expect_status(200);
    assert_eq!(seen["generation"], generation);
    assert_problem(
        &app.mint_token(ACME, "eve", json!({})).await,
        404,
        "not_found",
    );
    let window = app.collaborators(&ann.token, None).await.expect_status(200);
    assert!(!pluck(&window["portals"], "id").contains(&"vip".to_owned()));
}

#[actix_rt::test]
async fn values_outside_the_contract_are_400_invalid_request_and_change_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    app.online(ACME, "bob", "Bob", "support").await;

    let invites = [
        json!({"target": {"team": "bob"}}),
        json!({"target": {"agent": "bob"}, "masked": "yes"}),
        json!({"target": {"agent": "Not An Id"}}),
        json!({"masked": true}),
    ];
    for body in invites {
        assert_problem(
            &app.invite(&ann.token, &session, body).await,
            400,
            "invalid_request",
        );
    }
    let sessions = [
        json!({"mode": "phone", "customer": {"name": "Dave"}}),
        json!({"mode": "web", "customer": {"name": ""}}),
        json!({"mode": "web"}),
    ];
    for body in sessions {
        assert_problem(
            &app.post("/v1/sessions", &ann.token, body).await,
            400,
            "invalid_request",
        );
    }
    assert_problem(
        &app.say(&ann.token, &session, "hi", "managers").await,
        400,
        "invalid_request",
    );
    assert_problem(
        &app.say(&ann.token, &session, "   ", "everyone").await,
        400,
        "invalid_request",
    );
    let long_query = "q".repeat(201);
    assert_problem(
        &app.collaborators(&ann.token, Some(&long_query)).await,
        400,
        "invalid_request",
    );
    for policy in [
        json!({"invitation_ttl_secs": 0}),
        json!({"max_agents_per_session": 0}),
        json!({"max_agents_per_session": 65}),
        json!({"max_active_sessions_per_agent": 0}),
        json!({"session_modes": []}),
        json!({"session_modes": ["phone"]}),
    ] {
        assert_problem(
            &app.put_account("newco", policy).await,
            400,
            "invalid_request",
        );
    }
    assert_problem(
        &app.mint_token(ACME, "ann", json!({"ttl_secs": 0})).await,
        400,
        "invalid_request",
    );

    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        1
    );
    assert!(message_texts(&app, &ann.token, &session).await.is_empty());
    assert_eq!(
        pending_invitations(&app, &ann.token, &session).await,
        json!([])
    );
    assert_problem(&app.put_portal("newco", "p", "P").await, 404, "not_found");
}

#[actix_rt::test]
async fn unknown_ids_are_404_not_found_and_change_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    app.online(ACME, "bob", "Bob", "support").await;
    let t = &ann.token;

    for reply in [
        app.session(t, "ses-does-not-exist").await,
        app.session(t, "NOT%20AN%20ID").await,
        app.messages(t, "ses-does-not-exist").await,
        app.invite(t, "ses-does-not-exist", json!({"target": {"agent": "bob"}}))
            .await,
        app.invite(t, &session, json!({"target": {"agent": "nobody"}}))
            .await,
        app.invite(t, &session, json!({"target": {"portal": "nowhere"}}))
            .await,
        app.cancel(t, &session, "inv-does-not-exist").await,
        app.accept(t, "inv-does-not-exist").await,
        app.decline(t, "inv-does-not-exist").await,
        app.accept(t, "Not%20An%20Id").await,
        app.leave(t, "ses-does-not-exist").await,
        app.end(t, "ses-does-not-exist").await,
        app.login(t, "nowhere").await,
        app.put_portal("nobody-inc", "support", "Support").await,
        app.put_agent("nobody-inc", "ann", "Ann", &[]).await,
        app.mint_token(ACME, "nobody", json!({})).await,
        app.mint_token("nobody-inc", "ann", json!({})).await,
    ] {
        assert_problem(&reply, 404, "not_found");
    }
    // A portal the agent would belong to must exist: a bad reference in a body is 400.
    assert_problem(
        &app.put_agent(ACME, "eve", "Eve", &["nowhere"]).await,
        400,
        "invalid_request",
    );

    assert_problem(
        &app.mint_token(ACME, "eve", json!({})).await,
        404,
        "not_found",
    );
    assert_eq!(pending_invitations(&app, t, &session).await, json!([]));
    let me = app.me(t).await.expect_status(200);
    assert_eq!(me["portal"]["id"], "support");
    assert_eq!(me["active_sessions"], 1);
}

#[actix_rt::test]
async fn an_id_outside_the_id_grammar_on_put_is_400_and_creates_nothing() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let too_long = "a".repeat(65);

    for bad in [
        "Acme",
        "-acme",
        "_acme",
        "ac%20me",
        "acme.corp",
        too_long.as_str(),
    ] {
        assert_problem(
            &app.put_account(bad, json!({})).await,
            400,
            "invalid_request",
        );
        assert_problem(
            &app.put_portal(ACME, bad, "Bad").await,
            400,
            "invalid_request",
        );
        assert_problem(
            &app.put_agent(ACME, bad, "Bad", &["support"]).await,
            400,
            "invalid_request",
        );
    }
    // The longest valid id is fine.
    let longest = "a".repeat(64);
    app.portal(ACME, &longest, "Long").await;

    let window = app.collaborators(&ann.token, None).await.expect_status(200);
    let mut portals = pluck(&window["portals"], "id");
    portals.sort();
    assert_eq!(portals, [longest.as_str(), "billing", "support"]);
    assert_problem(&app.put_portal("Acme", "p", "P").await, 404, "not_found");
    assert_problem(
        &app.mint_token(ACME, "_acme", json!({})).await,
        404,
        "not_found",
    );
}

#[actix_rt::test]
async fn a_message_over_4000_characters_is_400_and_one_of_4000_is_accepted() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);

    let too_long = "x".repeat(4001);
    assert_problem(
        &app.say(&ann.token, &session, &too_long, "everyone").await,
        400,
        "invalid_request",
    );
    assert_problem(
        &app.customer_say(&customer, &too_long).await,
        400,
        "invalid_request",
    );
    assert!(message_texts(&app, &ann.token, &session).await.is_empty());

    // Characters, not bytes.
    let longest = "ü".repeat(4000);
    let message = app
        .say(&ann.token, &session, &longest, "everyone")
        .await
        .expect_status(201);
    assert_eq!(message["text"], longest.as_str());
    assert_eq!(message_texts(&app, &ann.token, &session).await, [longest]);
}

#[actix_rt::test]
async fn a_body_over_64_kib_is_413_payload_too_large_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    let huge = "x".repeat(MAX_BODY + 1024);

    let replies = [
        app.say(&ann.token, &session, &huge, "everyone").await,
        app.customer_say(&customer, &huge).await,
        app.invite(
            &ann.token,
            &session,
            json!({"target": {"agent": "bob"}, "comment": huge}),
        )
        .await,
        app.put_account("newco", json!({"padding": huge})).await,
    ];
    for reply in &replies {
        assert_problem(reply, 413, "payload_too_large");
    }
    // The token endpoint reads its (optional) body itself: same limit, same answer.
    let minted = app.mint_token(ACME, "ann", json!({"padding": huge})).await;
    assert_problem(&minted, 413, "payload_too_large");

    assert!(message_texts(&app, &ann.token, &session).await.is_empty());
    assert_eq!(
        pending_invitations(&app, &ann.token, &session).await,
        json!([])
    );
    assert_problem(&app.put_portal("newco", "p", "P").await, 404, "not_found");
}

#[actix_rt::test]
async fn a_body_that_is_not_json_is_415_invalid_request_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;

    let body = br#"{"mode": "web", "customer": {"name": "Dave"}}"#.to_vec();
    let reply = app
        .call_raw(
            Method::POST,
            "/v1/sessions",
            Some(&ann.token),
            "text/plain",
            body,
        )
        .await;
    assert_problem(&reply, 415, "invalid_request");
    let body = br#"{"text": "hi"}"#.to_vec();
    let path = format!("/v1/sessions/{session}/messages");
    let reply = app
        .call_raw(
            Method::POST,
            &path,
            Some(&ann.token),
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    assert_problem(&reply, 415, "invalid_request");

    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        1
    );
    assert!(message_texts(&app, &ann.token, &session).await.is_empty());
}

#[actix_rt::test]
async fn an_unknown_route_is_404_not_found() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/nothing-here",
        "/nothing-here",
        "/v2/me",
        "/v1/sessions/a/b/c",
    ] {
        let reply = app.call(Method::GET, path, Some(ADMIN), None).await;
        assert_problem(&reply, 404, "not_found");
    }
}

#[actix_rt::test]
async fn an_agent_without_a_part_in_a_session_or_an_invitation_is_403_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let dan = app.online(ACME, "dan", "Dan", "billing").await;
    let invitation = app
        .invite(&ann.token, &session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    let t = &dan.token;

    for reply in [
        app.session(t, &session).await,
        app.messages(t, &session).await,
        app.say(t, &session, "let me in", "everyone").await,
        app.invite(t, &session, json!({"target": {"agent": "bob"}}))
            .await,
        app.cancel(t, &session, &inv).await,
        app.leave(t, &session).await,
        app.end(t, &session).await,
    ] {
        assert_problem(&reply, 403, "forbidden");
    }
    assert_problem(&app.accept(t, &inv).await, 403, "not_a_recipient");
    assert_problem(&app.decline(t, &inv).await, 403, "not_a_recipient");

    let view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(view["status"], "active");
    assert_eq!(participant_ids(&view), ["ann"]);
    assert_eq!(pluck(&view["invitations"], "id"), [inv.as_str()]);
    assert_eq!(
        strings(&view["invitations"][0]["declined_by"]),
        Vec::<String>::new()
    );
    assert!(message_texts(&app, &ann.token, &session).await.is_empty());
    assert_eq!(
        pluck(&Value::from(app.my_invitations(&bob.token).await), "id"),
        [inv]
    );
    assert_eq!(app.me(t).await.expect_status(200)["active_sessions"], 0);
}

#[actix_rt::test]
async fn a_json_array_is_no_body_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    for (method, path, token, body) in [
        (
            Method::PATCH,
            "/v1/accounts/acme",
            ADMIN,
            json!(["Renamed", {"masking": false}]),
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/portals/p2",
            ADMIN,
            json!(["Desk"]),
        ),
        (
            Method::POST,
            "/v1/sessions",
            ann.token.as_str(),
            json!(["web", ["Carl"]]),
        ),
        (
            Method::POST,
            "/v1/me/logout",
            ann.token.as_str(),
            json!([true]),
        ),
    ] {
        let reply = app.call(method, path, Some(token), Some(&body)).await;
        assert_problem(&reply, 400, "invalid_request");
    }
    let account = app.get("/v1/accounts/acme", ADMIN).await.expect_status(200);
    assert_eq!(account["name"], "Account acme");
    assert_eq!(account["policy"]["masking"], true);
    assert_problem(
        &app.get("/v1/accounts/acme/portals/p2", ADMIN).await,
        404,
        "not_found",
    );
    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        0
    );
}

#[actix_rt::test]
async fn requests_racing_for_a_session_that_does_not_exist_are_all_404() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    for round in 0..20 {
        let path = format!("/v1/sessions/ses-race{round}");
        let replies =
            futures_util::future::join_all((0..4).map(|_| app.get(&path, &ann.token))).await;
        for reply in replies {
            assert_problem(&reply, 404, "not_found");
        }
    }
}

/// Sends `head` (and nothing else) on a fresh connection: what came back
/// until it was closed. Blocking: run it off the test's runtime, which
/// serves the node.
fn raw_exchange(port: u16, head: &[u8]) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    socket.write_all(head)?;
    let mut seen = Vec::new();
    // A read error (a reset after the answer) ends it as a close does.
    let _ = socket.read_to_end(&mut seen);
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

/// A request head HTTP/1.1's grammar refuses (a DEL in a header value) is
/// answered by actix-http's parser before any of collabd's code runs: a 400
/// without a body (so without problem+json: no hook of actix-web 4 reaches
/// it), and the connection is closed. It changes nothing, and the node goes
/// on serving.
#[actix_rt::test]
async fn a_request_head_http_refuses_is_a_bare_400_that_changes_nothing() {
    let app = TestApp::spawn().await;
    let body = r#"{"name": "Acme", "policy": {}}"#;
    let head = format!(
        "PUT /v1/accounts/delme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {ADMIN}\r\n\
         X-Note: a\x7fb\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let port = app.port;
    let exchange = |head: String| {
        actix_rt::task::spawn_blocking(move || raw_exchange(port, head.as_bytes()).unwrap())
    };
    let answer = exchange(head.clone()).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    let (_, rest) = answer.split_once("\r\n\r\n").unwrap();
    assert_eq!(rest, "", "no body: {answer:?}");
    // Nothing was created, and the node still answers.
    let read = app.get("/v1/accounts/delme", ADMIN).await;
    assert_problem(&read, 404, "not_found");
    let answer = exchange(head.replace("a\x7fb", "ab")).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201 "), "{answer:?}");
}
