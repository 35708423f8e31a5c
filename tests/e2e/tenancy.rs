//! Accounts are sealed from each other: the same ids in two accounts are
//! two different things, and one account's ids are unknown in the other.

use serde_json::json;

use crate::common::{
    ACME, AgentLogin, EVENT_WAIT, QUIET, TestApp, assert_problem, id_of, participant_ids, pluck,
};

const GLOBEX: &str = "globex";

/// `ann`, `bob` and `cid` logged into `support` of `account`, named after it.
async fn staff(app: &TestApp, account: &str) -> [AgentLogin; 3] {
    app.account(account, json!({})).await;
    app.portal(account, "support", "Support").await;
    let mut out = Vec::new();
    for (id, name) in [("ann", "Ann"), ("bob", "Bob"), ("cid", "Cid")] {
        out.push(
            app.online(account, id, &format!("{name} of {account}"), "support")
                .await,
        );
    }
    match <[AgentLogin; 3]>::try_from(out) {
        Ok(staff) => staff,
        Err(_) => unreachable!("three agents were made"),
    }
}

#[actix_rt::test]
async fn a_second_account_with_the_same_portal_and_agent_ids_sees_nothing_of_the_first() {
    let app = TestApp::spawn().await;
    let [acme_ann, acme_bob, _] = staff(&app, ACME).await;
    let [globex_ann, globex_bob, _] = staff(&app, GLOBEX).await;
    let (mut acme_bobs, _) = app.agent_events(&acme_bob.token).await;
    let (mut globex_bobs, _) = app.agent_events(&globex_bob.token).await;

    let (session, _) = app.create_session(&acme_ann.token, "web", "Carol").await;
    let session = id_of(&session);
    let invitation = app
        .invite(
            &acme_ann.token,
            &session,
            json!({"target": {"portal": "support"}, "comment": "acme only"}),
        )
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    let offer = acme_bobs.expect("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], inv.as_str());

    // Globex's window holds only Globex's agents and counts.
    let window = app
        .collaborators(&globex_ann.token, None)
        .await
        .expect_status(200);
    assert_eq!(
        pluck(&window["agents"], "name"),
        ["Bob of globex", "Cid of globex"]
    );
    assert_eq!(
        window["portals"],
        json!([{"id": "support", "name": "Support", "agents_online": 3}])
    );
    for agent in window["agents"].as_array().cloned().unwrap_or_default() {
        assert_eq!(agent["active_sessions"], 0);
    }

    // Globex's bob has no alert, and his stream's next event is Globex's own.
    assert!(app.my_invitations(&globex_bob.token).await.is_empty());
    let (own, _) = app.create_session(&globex_ann.token, "web", "Gina").await;
    let own_invitation = app
        .invite(
            &globex_ann.token,
            &id_of(&own),
            json!({"target": {"agent": "bob"}}),
        )
        .await
        .expect_status(201);
    let offer = globex_bobs.expect("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], own_invitation["id"]);
    globex_bobs.assert_silent(QUIET).await;
    assert!(!globex_bobs.raw_text().contains("acme only"));

    // Acme's ids mean nothing from Globex.
    assert_problem(&app.accept(&globex_bob.token, &inv).await, 404, "not_found");
    assert_problem(
        &app.session(&globex_bob.token, &session).await,
        404,
        "not_found",
    );
    let view = app
        .session(&acme_ann.token, &session)
        .await
        .expect_status(200);
    assert_eq!(pluck(&view["invitations"], "id"), [inv.as_str()]);
    assert_eq!(participant_ids(&view), ["ann"]);
}

#[actix_rt::test]
async fn an_id_that_exists_only_in_another_account_is_404_never_403() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    app.portal(ACME, "acme-only-portal", "Acme Only").await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    app.online(ACME, "bob", "Bob", "support").await;
    let outsider = app.online(ACME, "dan", "Dan", "billing").await;
    app.online(ACME, "only-acme", "Only Acme", "support").await;
    let (session, _) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    let invitation = app
        .invite(&ann.token, &session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);

    app.account(GLOBEX, json!({})).await;
    app.portal(GLOBEX, "support", "Support").await;
    let stranger = app.online(GLOBEX, "ann", "Ann of Globex", "support").await;
    let (own, _) = app.create_session(&stranger.token, "web", "Gina").await;
    let own = id_of(&own);

    // In the same account, a session one is not in is 403 ...
    assert_problem(
        &app.session(&outsider.token, &session).await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.accept(&outsider.token, &inv).await,
        403,
        "not_a_recipient",
    );
    // ... from another account, the same ids are 404.
    let t = &stranger.token;
    assert_problem(&app.session(t, &session).await, 404, "not_found");
    assert_problem(&app.messages(t, &session).await, 404, "not_found");
    assert_problem(
        &app.say(t, &session, "hi", "everyone").await,
        404,
        "not_found",
    );
    assert_problem(
        &app.invite(t, &session, json!({"target": {"agent": "ann"}}))
            .await,
        404,
        "not_found",
    );
    assert_problem(&app.cancel(t, &session, &inv).await, 404, "not_found");
    assert_problem(&app.leave(t, &session).await, 404, "not_found");
    assert_problem(&app.end(t, &session).await, 404, "not_found");
    assert_problem(&app.accept(t, &inv).await, 404, "not_found");
    assert_problem(&app.decline(t, &inv).await, 404, "not_found");
    assert_problem(&app.cancel(t, &own, &inv).await, 404, "not_found");
    assert_problem(
        &app.invite(t, &own, json!({"target": {"agent": "only-acme"}}))
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &app.invite(t, &own, json!({"target": {"portal": "acme-only-portal"}}))
            .await,
        404,
        "not_found",
    );
    assert_problem(&app.login(t, "acme-only-portal").await, 404, "not_found");
    assert_problem(
        &app.mint_token(GLOBEX, "only-acme", json!({})).await,
        404,
        "not_found",
    );

    // Acme's session is untouched.
    let view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(view["status"], "active");
    assert_eq!(participant_ids(&view), ["ann"]);
    assert_eq!(pluck(&view["invitations"], "id"), [inv.as_str()]);
    let messages = app.messages(&ann.token, &session).await.expect_status(200);
    assert_eq!(messages["messages"], json!([]));
}
