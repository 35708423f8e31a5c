//! `Idempotency-Key` on creating requests: a retry with the same key
//! answers the first result and changes nothing; the key is the caller's
//! own and bound to its first request; a failed request gives it back.

use serde_json::{Value, json};

use crate::common::{ACME, TestApp, assert_problem, id_of};

#[actix_rt::test]
async fn a_creating_request_retried_with_its_idempotency_key_answers_the_first_result_and_changes_nothing()
 {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    app.online(ACME, "bob", "Bob", "support").await;

    let create = json!({"mode": "web", "customer": {"name": "Carol"}});
    let first = app
        .post_once("/v1/sessions", &ann.token, "session-1", create.clone())
        .await;
    let created = first.expect_status(201);
    assert_eq!(first.replayed, "");
    // Same JSON, formatted by another client: the same request.
    let again = app
        .post_once("/v1/sessions", &ann.token, "session-1", create)
        .await;
    assert_eq!(again.expect_status(201), created);
    assert_eq!(again.replayed, "true");
    assert_eq!(app.session_count(ACME).await, 1);
    let session = id_of(&created["session"]);
    let customer = created["customer_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let path = format!("/v1/sessions/{session}/invitations");
    let invite = json!({"target": {"agent": "bob"}, "comment": "billing question"});
    let invited = app
        .post_once(&path, &ann.token, "invite-1", invite.clone())
        .await
        .expect_status(201);
    let retried = app.post_once(&path, &ann.token, "invite-1", invite).await;
    assert_eq!(retried.expect_status(201)["id"], invited["id"]);
    let view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(
        view["invitations"].as_array().map(Vec::len),
        Some(1),
        "{view}"
    );

    let path = format!("/v1/sessions/{session}/messages");
    let say = json!({"text": "one moment", "audience": "everyone"});
    let said = app
        .post_once(&path, &ann.token, "message-1", say.clone())
        .await
        .expect_status(201);
    let resaid = app.post_once(&path, &ann.token, "message-1", say).await;
    assert_eq!(resaid.expect_status(201), said);
    let customer_says = json!({"text": "thanks"});
    let reply = app
        .post_once(
            "/v1/customer/messages",
            &customer,
            "c-1",
            customer_says.clone(),
        )
        .await
        .expect_status(201);
    let again = app
        .post_once("/v1/customer/messages", &customer, "c-1", customer_says)
        .await;
    assert_eq!(again.expect_status(201), reply);
    let page = app.messages(&ann.token, &session).await.expect_status(200);
    let texts: Vec<&Value> = page["messages"]
        .as_array()
        .map(|m| m.iter().map(|m| &m["text"]).collect())
        .unwrap_or_default();
    assert_eq!(texts, [&json!("thanks"), &json!("one moment")], "{page}");
}

#[actix_rt::test]
async fn an_idempotency_key_is_the_callers_own_bound_to_its_first_request_and_checked() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let carol = json!({"mode": "web", "customer": {"name": "Carol"}});
    let dora = json!({"mode": "web", "customer": {"name": "Dora"}});

    app.post_once("/v1/sessions", &ann.token, "k", carol)
        .await
        .expect_status(201);
    let reused = app
        .post_once("/v1/sessions", &ann.token, "k", dora.clone())
        .await;
    assert_problem(&reused, 422, "idempotency_key_reused");
    for bad in ["has space", &"k".repeat(256), "tab\there"] {
        let refused = app
            .post_once("/v1/sessions", &ann.token, bad, dora.clone())
            .await;
        assert_problem(&refused, 400, "invalid_request");
    }
    assert_eq!(
        app.session_count(ACME).await,
        1,
        "refused requests change nothing"
    );
    // Bob's "k" is not Ann's.
    app.post_once("/v1/sessions", &bob.token, "k", dora)
        .await
        .expect_status(201);
    assert_eq!(app.session_count(ACME).await, 2);
}

#[actix_rt::test]
async fn a_request_that_fails_gives_its_idempotency_key_back() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    app.online(ACME, "bob", "Bob", "support").await;
    let (session, _) = app.create_session(&ann.token, "web", "Carol").await;
    let path = format!("/v1/sessions/{}/invitations", id_of(&session));

    let nobody = app
        .post_once(
            &path,
            &ann.token,
            "retry",
            json!({"target": {"agent": "nobody"}}),
        )
        .await;
    assert!((400..500).contains(&nobody.status), "{}", nobody.text);
    app.post_once(
        &path,
        &ann.token,
        "retry",
        json!({"target": {"agent": "bob"}}),
    )
    .await
    .expect_status(201);
}

#[actix_rt::test]
async fn an_agent_deleted_and_created_again_never_gets_its_predecessors_answers() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let create = json!({"mode": "web", "customer": {"name": "Carol"}});
    let first = app
        .post_once("/v1/sessions", &ann.token, "k", create.clone())
        .await
        .expect_status(201);

    app.delete("/v1/accounts/acme/agents/ann", crate::common::ADMIN)
        .await
        .expect_status(204);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = app.online(ACME, "ann", "Ann", "support").await;
    // The same key and request from the new Ann is a new request: a new
    // session and a new customer token, not the old answer replayed.
    let second = app
        .post_once("/v1/sessions", &again.token, "k", create)
        .await;
    assert_eq!(second.replayed, "");
    let second = second.expect_status(201);
    assert_ne!(id_of(&second["session"]), id_of(&first["session"]));
    assert_ne!(second["customer_token"], first["customer_token"]);
}
