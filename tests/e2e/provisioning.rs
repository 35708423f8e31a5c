//! Provisioning by the admin, and who may call what: tokens and roles.

use std::time::Duration;

use awc::http::Method;
use serde_json::json;

use crate::common::{ACME, ADMIN, TestApp, assert_problem};

#[actix_rt::test]
async fn provisioning_answers_201_on_create_then_200_on_update_and_echoes_the_object() {
    let app = TestApp::spawn().await;

    let account = app
        .put_account(ACME, json!({"masking": false}))
        .await
        .expect_status(201);
    assert_eq!(account["id"], ACME);
    assert_eq!(account["name"], "Account acme");
    let policy = &account["policy"];
    assert_eq!(policy["masking"], false);
    // Every field left out gets the documented default.
    assert_eq!(policy["collaboration"], true);
    assert_eq!(policy["portal_invitations"], true);
    assert_eq!(policy["comments"], true);
    assert_eq!(policy["session_modes"], json!(["web", "queue"]));
    assert_eq!(policy["invitation_ttl_secs"], 120);
    assert_eq!(policy["max_agents_per_session"], 8);
    assert_eq!(policy["max_active_sessions_per_agent"], 10);
    let again = app.put_account(ACME, json!({})).await.expect_status(200);
    assert_eq!(again["policy"]["masking"], true);

    let portal = app
        .put_portal(ACME, "support", "Support")
        .await
        .expect_status(201);
    assert_eq!(portal, json!({"id": "support", "name": "Support"}));
    let renamed = app
        .put_portal(ACME, "support", "Support Desk")
        .await
        .expect_status(200);
    assert_eq!(renamed, json!({"id": "support", "name": "Support Desk"}));
    app.put_portal(ACME, "billing", "Billing")
        .await
        .expect_status(201);

    let agent = app
        .put_agent(ACME, "ann", "Ann", &["support"])
        .await
        .expect_status(201);
    assert_eq!(
        agent,
        json!({"id": "ann", "name": "Ann", "portals": ["support"]})
    );
    let updated = app
        .put_agent(ACME, "ann", "Ann Lee", &["support", "billing"])
        .await
        .expect_status(200);
    assert_eq!(updated["name"], "Ann Lee");
    let mut portals: Vec<String> = serde_json::from_value(updated["portals"].clone())
        .unwrap_or_else(|e| panic!("portals is not a list of ids: {e}"));
    portals.sort();
    assert_eq!(portals, ["billing", "support"]);

    let minted = app
        .mint_token(ACME, "ann", json!({}))
        .await
        .expect_status(201);
    assert!(minted["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(minted["expires_at"].is_string());
    assert_eq!(minted["account"], ACME);
    assert_eq!(minted["agent"], "ann");

    let token = minted["token"].as_str().unwrap_or_default();
    let me = app.me(token).await.expect_status(200);
    assert_eq!(me["id"], "ann");
    assert_eq!(me["name"], "Ann Lee");
    assert_eq!(me["portal"], json!(null));
    assert_eq!(me["active_sessions"], 0);
}

#[actix_rt::test]
async fn a_call_without_a_valid_bearer_token_is_401() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;

    for path in ["/v1/me", "/v1/collaborators", "/v1/customer/session"] {
        let missing = app.call(Method::GET, path, None, None).await;
        assert_problem(&missing, 401, "unauthorized");
        for header in [
            "Bearer garbage",
            "Bearer ",
            "Basic YWRtaW46YWRtaW4=",
            "v1.x.y",
        ] {
            let reply = app.call_with_authorization(Method::GET, path, header).await;
            assert_problem(&reply, 401, "unauthorized");
        }
    }
    let forged = app
        .call(
            Method::PUT,
            "/v1/accounts/other",
            Some("not-the-admin-token"),
            Some(&json!({"name": "Other"})),
        )
        .await;
    assert_problem(&forged, 401, "unauthorized");
    // Nothing was created by the refused call.
    assert_problem(&app.put_portal("other", "p", "P").await, 404, "not_found");
}

#[actix_rt::test]
async fn the_bearer_scheme_is_case_insensitive() {
    // RFC 9110, 11.1: an authentication scheme is a case-insensitive token.
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    app.put_agent(ACME, "ann", "Ann", &["support"])
        .await
        .expect_status(201);
    let token = app.token(ACME, "ann").await;
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let reply = app
            .call_with_authorization(Method::GET, "/v1/me", &format!("{scheme} {token}"))
            .await;
        assert_eq!(reply.expect_status(200)["id"], "ann", "{scheme}");
    }
    let glued = app
        .call_with_authorization(Method::GET, "/v1/me", &format!("Bearer{token}"))
        .await;
    assert_problem(&glued, 401, "unauthorized");
}

#[actix_rt::test]
async fn an_expired_token_or_one_signed_by_another_node_is_401() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    app.put_agent(ACME, "ann", "Ann", &["support"])
        .await
        .expect_status(201);

    let short = app
        .mint_token(ACME, "ann", json!({"ttl_secs": 1}))
        .await
        .expect_status(201);
    let short = short["token"].as_str().unwrap_or_default().to_owned();
    app.me(&short).await.expect_status(200);
    actix_rt::time::sleep(Duration::from_millis(2100)).await;
    assert_problem(&app.me(&short).await, 401, "unauthorized");

    // Another node with the same ids but its own signing key.
    let other = TestApp::spawn().await;
    other.acme(json!({})).await;
    let ann_elsewhere = other.agent(ACME, "ann", "Ann", &["support"]).await;
    assert_problem(&app.me(&ann_elsewhere.token).await, 401, "unauthorized");
    let (_, foreign_customer) = other
        .create_session(&ann_elsewhere.token, "web", "Carol")
        .await;
    assert_problem(
        &app.customer_session(&foreign_customer).await,
        401,
        "unauthorized",
    );
}

#[actix_rt::test]
async fn each_role_is_refused_on_the_others_routes_with_403() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let session = session["id"].as_str().unwrap_or_default().to_owned();

    // The admin token is not an agent or a customer.
    for path in ["/v1/me", "/v1/collaborators", "/v1/customer/session"] {
        assert_problem(&app.get(path, ADMIN).await, 403, "forbidden");
    }
    assert_problem(&app.session(ADMIN, &session).await, 403, "forbidden");

    // Agent and customer tokens are not the admin.
    for token in [&ann.token, &customer] {
        let account = app
            .put(
                "/v1/accounts/evil",
                token,
                json!({"name": "Evil", "policy": {}}),
            )
            .await;
        assert_problem(&account, 403, "forbidden");
        let portal = app
            .put(
                "/v1/accounts/acme/portals/evil",
                token,
                json!({"name": "Evil"}),
            )
            .await;
        assert_problem(&portal, 403, "forbidden");
        let agent = app
            .put(
                "/v1/accounts/acme/agents/evil",
                token,
                json!({"name": "Evil", "portals": ["support"]}),
            )
            .await;
        assert_problem(&agent, 403, "forbidden");
        let minted = app
            .post("/v1/accounts/acme/agents/ann/tokens", token, json!({}))
            .await;
        assert_problem(&minted, 403, "forbidden");
    }
    // None of the refused writes happened.
    assert_problem(&app.put_portal("evil", "p", "P").await, 404, "not_found");
    assert_problem(
        &app.mint_token(ACME, "evil", json!({})).await,
        404,
        "not_found",
    );
    let portals = app.collaborators(&ann.token, Some("evil")).await;
    assert_eq!(portals.expect_status(200)["portals"], json!([]));

    // A customer token is not an agent token.
    for path in [
        "/v1/me".to_owned(),
        "/v1/me/invitations".to_owned(),
        "/v1/collaborators".to_owned(),
        format!("/v1/sessions/{session}"),
        format!("/v1/sessions/{session}/messages"),
    ] {
        assert_problem(&app.get(&path, &customer).await, 403, "forbidden");
    }
    let create = app
        .post(
            "/v1/sessions",
            &customer,
            json!({"mode": "web", "customer": {"name": "Mallory"}}),
        )
        .await;
    assert_problem(&create, 403, "forbidden");
    let say = app.say(&customer, &session, "as an agent", "agents").await;
    assert_problem(&say, 403, "forbidden");
    assert_problem(&app.end(&customer, &session).await, 403, "forbidden");

    // An agent token is not a customer token.
    assert_problem(&app.customer_session(&ann.token).await, 403, "forbidden");
    assert_problem(
        &app.customer_say(&ann.token, "pretending").await,
        403,
        "forbidden",
    );

    // Nothing changed: one session, still active, with no messages.
    let view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(view["status"], "active");
    let messages = app.messages(&ann.token, &session).await.expect_status(200);
    assert_eq!(messages["messages"], json!([]));
    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        1
    );
}

#[actix_rt::test]
async fn a_customer_token_reaches_only_its_own_session() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let (first, carol) = app.create_session(&ann.token, "web", "Carol").await;
    let (second, dave) = app.create_session(&ann.token, "queue", "Dave").await;
    let second_id = second["id"].as_str().unwrap_or_default();

    app.say(&ann.token, second_id, "only for Dave", "everyone")
        .await
        .expect_status(201);
    app.customer_say(&dave, "Dave here")
        .await
        .expect_status(201);

    let carols = app.customer_session(&carol).await.expect_status(200);
    assert_eq!(carols["id"], first["id"]);
    let daves = app.customer_session(&dave).await.expect_status(200);
    assert_eq!(daves["id"], second["id"]);

    let carol_messages = app.customer_messages(&carol).await.expect_status(200);
    assert_eq!(carol_messages["messages"], json!([]));
    let dave_messages = app.customer_messages(&dave).await.expect_status(200);
    assert_eq!(dave_messages["messages"].as_array().map(Vec::len), Some(2));

    let (mut stream, snapshot) = app.customer_events(&carol).await;
    assert_eq!(snapshot["session"]["id"], first["id"]);
    assert_eq!(snapshot["messages"], json!([]));
    // Dave's chat goes on; Carol's stream hears nothing of it.
    app.say(&ann.token, second_id, "still only for Dave", "everyone")
        .await
        .expect_status(201);
    let first_id = first["id"].as_str().unwrap_or_default();
    app.say(&ann.token, first_id, "hello Carol", "everyone")
        .await
        .expect_status(201);
    let message = stream.expect("message", crate::common::EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "hello Carol");
    assert!(!stream.raw_text().contains("Dave"));
}
