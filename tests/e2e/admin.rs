//! Administration and revocation (API.md v2, "Administration"): membership
//! and policy checked when an invitation is accepted, forced logout, token
//! revocation, the deleting cascades, and the admin's reads.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    ACME, ADMIN, EVENT_WAIT, QUIET, Scene, TestApp, assert_problem, id_of, participant_ids, pluck,
};

// ---- finding 1: removed but still invited -------------------------------

#[actix_rt::test]
async fn an_agent_removed_from_its_portal_is_logged_out_and_no_longer_invited() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    let ex = app.online(ACME, "ex", "Ex", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (mut exs, _) = app.agent_events(&ex.token).await;
    // An offer ex holds when it is removed.
    let before = app
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}, "masked": true, "comment": "secret"}),
        )
        .await
        .expect_status(201);
    exs.expect("invitation_offered", EVENT_WAIT).await;

    app.put_agent(ACME, "ex", "Ex", &[])
        .await
        .expect_status(200);

    let got = exs
        .gather(&["invitation_withdrawn", "logged_out"], EVENT_WAIT)
        .await;
    assert_eq!(got["invitation_withdrawn"]["invitation"], before["id"]);
    assert_eq!(got["logged_out"]["reason"], "membership_changed");
    assert_eq!(
        app.me(&ex.token).await.expect_status(200)["portal"],
        json!(null)
    );
    // It cannot take the offer it held...
    let refused = app.accept(&ex.token, &id_of(&before)).await;
    assert!(
        matches!(refused.status, 403 | 409),
        "accept after removal: {} {}",
        refused.status,
        refused.text
    );
    // ...and the next masked portal invitation, comment and all, never reaches it.
    let next = app
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}, "masked": true, "comment": "secret 2"}),
        )
        .await
        .expect_status(201);
    assert_eq!(next["recipients"], json!(["bob"]));
    exs.assert_silent(QUIET).await;
    assert!(app.my_invitations(&ex.token).await.is_empty());
    app.accept(&bob.token, &id_of(&next))
        .await
        .expect_status(200);
}

#[actix_rt::test]
async fn losing_another_portal_leaves_an_agent_logged_in_and_able_to_accept() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    // Bob is a member of both portals and logged into support.
    let bob = app.agent(ACME, "bob", "Bob", &["support", "billing"]).await;
    app.login(&bob.token, "support").await.expect_status(200);
    let inv = app
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    // Removed from billing only: still logged into support, still a recipient.
    app.put_agent(ACME, "bob", "Bob", &["support"])
        .await
        .expect_status(200);
    assert_eq!(
        app.me(&bob.token).await.expect_status(200)["portal"]["id"],
        "support"
    );
    app.accept(&bob.token, &id_of(&inv))
        .await
        .expect_status(200);
}

// ---- finding 5: pending invitations survive policy changes ---------------

#[actix_rt::test]
async fn a_policy_switched_off_stops_the_invitations_sent_before_it() {
    for (invitation, policy, feature) in [
        (
            json!({"target": {"agent": "bob"}, "masked": true}),
            json!({"masking": false}),
            "masked agents",
        ),
        (
            json!({"target": {"agent": "bob"}}),
            json!({"collaboration": false}),
            "collaboration",
        ),
        (
            json!({"target": {"portal": "support"}}),
            json!({"portal_invitations": false}),
            "portal invitations",
        ),
    ] {
        let app = TestApp::spawn().await;
        let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
        let session = session.id;
        let bob = app.online(ACME, "bob", "Bob", "support").await;
        let sent = app
            .invite(&ann.token, &session, invitation)
            .await
            .expect_status(201);
        app.call(
            awc::http::Method::PATCH,
            "/v1/accounts/acme",
            Some(ADMIN),
            Some(&json!({"policy": policy})),
        )
        .await
        .expect_status(200);
        let refused = app.accept(&bob.token, &id_of(&sent)).await;
        assert_problem(&refused, 403, "feature_disabled");
        assert!(refused.text.contains(feature), "{}", refused.text);
        let view = app.session(&ann.token, &session).await.expect_status(200);
        assert_eq!(participant_ids(&view), ["ann"], "nobody joined");
    }
}

#[actix_rt::test]
async fn patch_changes_only_the_named_fields_and_null_restores_a_default() {
    let app = TestApp::spawn().await;
    app.acme(json!({"masking": false, "invitation_ttl_secs": 60}))
        .await;
    let patch = |body: Value| {
        let app = &app;
        async move {
            app.call(
                awc::http::Method::PATCH,
                "/v1/accounts/acme",
                Some(ADMIN),
                Some(&body),
            )
            .await
        }
    };
    let patched = patch(json!({"name": "Acme Corp", "policy": {"comments": false}}))
        .await
        .expect_status(200);
    assert_eq!(patched["name"], "Acme Corp");
    assert_eq!(patched["policy"]["comments"], false);
    assert_eq!(patched["policy"]["masking"], false, "untouched");
    assert_eq!(patched["policy"]["invitation_ttl_secs"], 60, "untouched");
    let restored = patch(json!({"policy": {"masking": null}}))
        .await
        .expect_status(200);
    assert_eq!(restored["policy"]["masking"], true, "back to the default");
    // Bad values change nothing.
    assert_problem(
        &patch(json!({"policy": {"invitation_ttl_secs": 0}})).await,
        400,
        "invalid_request",
    );
    assert_problem(
        &patch(json!({"policy": {"nonsense": 1}})).await,
        400,
        "invalid_request",
    );
    assert_problem(
        &patch(json!({"name": "\u{202e}"})).await,
        400,
        "invalid_request",
    );
    let now = app.get("/v1/accounts/acme", ADMIN).await.expect_status(200);
    assert_eq!(now, restored);
    assert_problem(
        &app.call(
            awc::http::Method::PATCH,
            "/v1/accounts/nope",
            Some(ADMIN),
            Some(&json!({})),
        )
        .await,
        404,
        "not_found",
    );
}

// ---- finding 2: no way to remove anyone ------------------------------------

#[actix_rt::test]
async fn a_forced_logout_reaches_the_agents_stream_and_withdraws_its_offers() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;
    let inv = app
        .invite(&ann.token, &session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    bobs.expect("invitation_offered", EVENT_WAIT).await;

    app.post_empty("/v1/accounts/acme/agents/bob/logout", ADMIN)
        .await
        .expect_status(204);
    let got = bobs
        .gather(&["invitation_withdrawn", "logged_out"], EVENT_WAIT)
        .await;
    assert_eq!(got["invitation_withdrawn"]["invitation"], inv["id"]);
    assert_eq!(got["logged_out"]["reason"], "admin");
    // Its token still works: it may log in again.
    assert_eq!(
        app.me(&bob.token).await.expect_status(200)["portal"],
        json!(null)
    );
    app.login(&bob.token, "support").await.expect_status(200);
    // Not the agent's to call.
    assert_problem(
        &app.post_empty("/v1/accounts/acme/agents/bob/logout", &bob.token)
            .await,
        403,
        "forbidden",
    );
}

#[actix_rt::test]
async fn revoked_tokens_are_refused_and_their_streams_end_while_new_ones_work() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let second = app.token(ACME, "bob").await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;

    app.post_empty("/v1/accounts/acme/agents/bob/tokens/revoke", ADMIN)
        .await
        .expect_status(204);
    assert_eq!(
        bobs.wait_for("logged_out", EVENT_WAIT).await["reason"],
        "tokens_revoked"
    );
    bobs.expect_end(EVENT_WAIT).await;
    for token in [&bob.token, &second] {
        let refused = app.me(token).await;
        assert_problem(&refused, 401, "unauthorized");
        assert!(refused.text.contains("revoked"), "{}", refused.text);
        assert_eq!(app.stream_status("/v1/me/events", token).await, 401);
    }
    // A token minted after the revocation works, and so does its stream,
    // at once (not only once the revocation is some seconds old).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fresh = app.token(ACME, "bob").await;
    app.me(&fresh).await.expect_status(200);
    let (mut fresh_stream, _) = app.agent_events(&fresh).await;
    fresh_stream.assert_silent(QUIET).await;
}

#[actix_rt::test]
async fn an_agent_may_log_out_and_revoke_its_own_tokens() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    app.post("/v1/me/logout", &bob.token, json!({"revoke": true}))
        .await
        .expect_status(204);
    assert_problem(&app.me(&bob.token).await, 401, "unauthorized");
    // A plain logout leaves the token good.
    let cid = app.online(ACME, "cid", "Cid", "support").await;
    app.post("/v1/me/logout", &cid.token, json!({}))
        .await
        .expect_status(204);
    app.me(&cid.token).await.expect_status(200);
    assert_problem(
        &app.post("/v1/me/logout", &cid.token, json!({"revoke": "yes"}))
            .await,
        400,
        "invalid_request",
    );
}

#[actix_rt::test]
async fn deleting_an_agent_revokes_it_logs_it_out_and_it_leaves_its_sessions() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    app.bring_in(&ann, &session, &bob, false).await;
    // Bob leads a session of his own, where he is alone.
    let (own, _) = app.create_session(&bob.token, "web", "Dora").await;
    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;

    app.delete("/v1/accounts/acme/agents/bob", ADMIN)
        .await
        .expect_status(204);

    assert_eq!(
        bobs.wait_for("logged_out", EVENT_WAIT).await["reason"],
        "agent_deleted"
    );
    bobs.expect_end(EVENT_WAIT).await;
    let left = anns.wait_for("participant_left", EVENT_WAIT).await;
    assert_eq!(left["participant"]["agent"]["id"], "bob");
    assert_eq!(
        carols.wait_for("agent_left", EVENT_WAIT).await["agent"]["name"],
        "Bob"
    );
    let view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(participant_ids(&view), ["ann"]);
    // His own session ended: he was its last agent.
    let ended = app
        .get(
            &format!("/v1/accounts/acme/sessions/{}", id_of(&own)),
            ADMIN,
        )
        .await
        .expect_status(200);
    assert_eq!(ended["status"], "ended");
    assert_problem(&app.me(&bob.token).await, 401, "unauthorized");
    assert_problem(
        &app.get("/v1/accounts/acme/agents/bob", ADMIN).await,
        404,
        "not_found",
    );
    // Re-created with the same id, the old token stays refused.
    app.put_agent(ACME, "bob", "Bob", &["support"])
        .await
        .expect_status(201);
    assert_problem(&app.me(&bob.token).await, 401, "unauthorized");
    assert_problem(
        &app.delete("/v1/accounts/acme/agents/zed", ADMIN).await,
        404,
        "not_found",
    );
}

#[actix_rt::test]
async fn deleting_a_portal_logs_its_agents_out_cancels_its_invitations_and_keeps_their_other_portals()
 {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    let bob = app.agent(ACME, "bob", "Bob", &["support", "billing"]).await;
    app.login(&bob.token, "billing").await.expect_status(200);
    let cid = app.online(ACME, "cid", "Cid", "billing").await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;
    let (mut anns, _) = app.agent_events(&ann.token).await;
    let inv = app
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "billing"}}),
        )
        .await
        .expect_status(201);
    bobs.expect("invitation_offered", EVENT_WAIT).await;

    app.delete("/v1/accounts/acme/portals/billing", ADMIN)
        .await
        .expect_status(204);

    // The withdrawal (through the portal) and the logout (through the
    // agent's topic) travel apart: both arrive, in either order.
    let got = bobs
        .gather(&["invitation_withdrawn", "logged_out"], EVENT_WAIT)
        .await;
    assert_eq!(got["invitation_withdrawn"]["invitation"], inv["id"]);
    assert_eq!(got["logged_out"]["reason"], "portal_deleted");
    anns.wait_for("invitation_cancelled", EVENT_WAIT).await;
    let closed = app
        .get(
            &format!("/v1/sessions/{session}/invitations/{}", id_of(&inv)),
            &ann.token,
        )
        .await
        .expect_status(200);
    assert_eq!(closed["status"], "cancelled");
    let bob_now = app
        .get("/v1/accounts/acme/agents/bob", ADMIN)
        .await
        .expect_status(200);
    assert_eq!(bob_now["portals"], json!(["support"]));
    assert_eq!(bob_now["presence"], json!(null));
    assert_problem(&app.login(&cid.token, "billing").await, 404, "not_found");
    assert_problem(
        &app.get("/v1/accounts/acme/portals/billing", ADMIN).await,
        404,
        "not_found",
    );
    let portals = app
        .get("/v1/accounts/acme/portals", ADMIN)
        .await
        .expect_status(200);
    assert_eq!(pluck(&portals["portals"], "id"), ["support"]);
}

#[actix_rt::test]
async fn deleting_an_account_ends_its_sessions_logs_everyone_out_and_forgets_it() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;
    app.account("other", json!({})).await;

    app.delete("/v1/accounts/acme", ADMIN)
        .await
        .expect_status(204);

    let ended = anns.wait_for("session_ended", EVENT_WAIT).await;
    assert_eq!(ended["reason"], "admin");
    assert_eq!(
        carols.wait_for("session_ended", EVENT_WAIT).await["reason"],
        "admin"
    );
    assert_eq!(
        anns.wait_for("logged_out", EVENT_WAIT).await["reason"],
        "account_deleted"
    );
    anns.expect_end(EVENT_WAIT).await;
    assert_problem(&app.me(&ann.token).await, 401, "unauthorized");
    assert_problem(&app.get("/v1/accounts/acme", ADMIN).await, 404, "not_found");
    let listed = app.get("/v1/accounts", ADMIN).await.expect_status(200);
    assert_eq!(pluck(&listed["accounts"], "id"), ["other"]);
    // Re-created with the same id: nothing of the old one, old tokens refused.
    app.acme(json!({})).await;
    app.put_agent(ACME, "ann", "Ann", &["support"])
        .await
        .expect_status(201);
    assert_problem(&app.me(&ann.token).await, 401, "unauthorized");
    assert_problem(
        &app.get(&format!("/v1/accounts/acme/sessions/{session}"), ADMIN)
            .await,
        404,
        "not_found",
    );
}

#[actix_rt::test]
async fn the_admin_lists_accounts_agents_and_sessions_in_pages_and_ends_a_session() {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let (session, customer) = (session.id, session.customer);
    for id in ["zeta", "beta"] {
        app.account(id, json!({})).await;
    }
    let first = app
        .get("/v1/accounts?limit=2", ADMIN)
        .await
        .expect_status(200);
    assert_eq!(pluck(&first["accounts"], "id"), ["acme", "beta"]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let rest = app
        .get(&format!("/v1/accounts?limit=2&cursor={cursor}"), ADMIN)
        .await
        .expect_status(200);
    assert_eq!(pluck(&rest["accounts"], "id"), ["zeta"]);
    assert_eq!(rest["next_cursor"], json!(null));
    assert_problem(
        &app.get("/v1/accounts?limit=0", ADMIN).await,
        400,
        "invalid_request",
    );
    assert_problem(
        &app.get("/v1/accounts?cursor=%21", ADMIN).await,
        400,
        "invalid_request",
    );

    app.agent(ACME, "bob", "Bob", &["billing"]).await;
    let agents = app
        .get("/v1/accounts/acme/agents", ADMIN)
        .await
        .expect_status(200);
    assert_eq!(pluck(&agents["agents"], "id"), ["ann", "bob"]);
    assert_eq!(
        agents["agents"][0]["presence"],
        json!({"portal": "support"})
    );
    assert_eq!(agents["agents"][0]["active_sessions"], 1);
    assert_eq!(agents["agents"][1]["presence"], json!(null));

    let (second, _) = app.create_session(&ann.token, "queue", "Dora").await;
    let active = app
        .get("/v1/accounts/acme/sessions?limit=1", ADMIN)
        .await
        .expect_status(200);
    assert_eq!(
        pluck(&active["sessions"], "id"),
        std::slice::from_ref(&session)
    );
    let cursor = active["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let next = app
        .get(
            &format!("/v1/accounts/acme/sessions?limit=1&cursor={cursor}"),
            ADMIN,
        )
        .await
        .expect_status(200);
    assert_eq!(pluck(&next["sessions"], "id"), [id_of(&second)]);

    let (mut carols, _) = app.customer_events(&customer).await;
    let ended = app
        .post_empty(&format!("/v1/accounts/acme/sessions/{session}/end"), ADMIN)
        .await
        .expect_status(200);
    assert_eq!(ended["status"], "ended");
    assert_eq!(
        carols.wait_for("session_ended", EVENT_WAIT).await["reason"],
        "admin"
    );
    let ended_list = app
        .get("/v1/accounts/acme/sessions?status=ended", ADMIN)
        .await
        .expect_status(200);
    assert_eq!(
        pluck(&ended_list["sessions"], "id"),
        std::slice::from_ref(&session)
    );
    assert_problem(
        &app.post_empty(&format!("/v1/accounts/acme/sessions/{session}/end"), ADMIN)
            .await,
        409,
        "session_ended",
    );
    assert_problem(
        &app.get("/v1/accounts/acme/sessions?status=paused", ADMIN)
            .await,
        400,
        "invalid_request",
    );
    // Another account's session is not found through this one.
    assert_problem(
        &app.get(&format!("/v1/accounts/beta/sessions/{session}"), ADMIN)
            .await,
        404,
        "not_found",
    );
    assert_problem(&app.get("/v1/accounts", &ann.token).await, 403, "forbidden");
}

#[actix_rt::test]
async fn deleting_an_account_ends_the_streams_of_agents_who_were_not_logged_in() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let (mut anns, _) = app.agent_events(&ann.token).await;
    app.logout(&ann.token).await.expect_status(204);

    app.delete("/v1/accounts/acme", ADMIN)
        .await
        .expect_status(204);

    assert_eq!(
        anns.wait_for("logged_out", EVENT_WAIT).await["reason"],
        "account_deleted"
    );
    anns.expect_end(EVENT_WAIT).await;
}

#[actix_rt::test]
async fn a_token_that_lives_longer_than_tokens_are_minted_for_now_is_refused() {
    const SECRET: &str = "a-known-secret-for-this-test-0123456789abcdef";
    let app = TestApp::spawn_with(|s| {
        s.auth.secret = SECRET.into();
        s.auth.agent_token_ttl_secs = 3600;
    })
    .await;
    app.acme(json!({})).await;
    app.agent(ACME, "ann", "Ann", &["support"]).await;
    let tokens = collabd::app::tokens::Tokens::new(SECRET);
    let subject = collabd::app::tokens::Subject::Agent {
        account: collabd::domain::AccountId::parse(ACME).unwrap(),
        agent: collabd::domain::AgentId::parse("ann").unwrap(),
    };
    let now = chrono::Utc::now();
    // Minted when tokens lived 30 days (say), before the lifetime was lowered.
    let long = tokens.mint_at(subject.clone(), now, now + chrono::Duration::days(30));
    let refused = app.me(&long).await;
    assert_problem(&refused, 401, "unauthorized");
    assert!(refused.text.contains("lives longer"), "{}", refused.text);
    let fitting = tokens.mint_at(subject, now, now + chrono::Duration::seconds(3600));
    app.me(&fitting).await.expect_status(200);
}
