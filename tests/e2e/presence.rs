//! Presence (login, logout, `GET /v1/me`) and the collaboration window.

use serde_json::{Value, json};

use crate::common::{ACME, TestApp, assert_problem, id_of, pluck, strings};

fn agent_row<'a>(window: &'a Value, id: &str) -> &'a Value {
    window["agents"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not in the window {window}"))
}

fn portal_row<'a>(window: &'a Value, id: &str) -> &'a Value {
    window["portals"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["id"] == id))
        .unwrap_or_else(|| panic!("portal {id} is not in the window {window}"))
}

#[actix_rt::test]
async fn the_collaboration_window_lists_everyone_logged_in_now_except_the_caller() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    app.portal(ACME, "nights", "Night Shift").await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob Stone", "support").await;
    app.online(ACME, "cid", "Cid Moreau", "billing").await;
    app.agent(ACME, "dan", "Dan", &["support"]).await; // never logs in
    app.create_session(&bob.token, "web", "Carol").await;

    let window = app.collaborators(&ann.token, None).await.expect_status(200);
    let mut ids = pluck(&window["agents"], "id");
    ids.sort();
    assert_eq!(ids, ["bob", "cid"], "only others who are logged in now");
    assert_eq!(
        *agent_row(&window, "bob"),
        json!({"id": "bob", "name": "Bob Stone",
               "portal": {"id": "support", "name": "Support Desk"}, "active_sessions": 1})
    );
    assert_eq!(
        *agent_row(&window, "cid"),
        json!({"id": "cid", "name": "Cid Moreau",
               "portal": {"id": "billing", "name": "Billing"}, "active_sessions": 0})
    );
    assert_eq!(
        *portal_row(&window, "support"),
        json!({"id": "support", "name": "Support Desk", "agents_online": 2})
    );
    assert_eq!(portal_row(&window, "billing")["agents_online"], 1);
    assert_eq!(
        *portal_row(&window, "nights"),
        json!({"id": "nights", "name": "Night Shift", "agents_online": 0})
    );
}

#[actix_rt::test]
async fn q_filters_the_window_case_insensitively_on_agent_name_agent_id_and_portal_name() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    app.online(ACME, "bob-7", "Roberta Stone", "support").await;
    app.online(ACME, "cid", "Cid Moreau", "billing").await;

    let agents = |window: Value| pluck(&window["agents"], "id");
    let query = |q: &'static str| {
        let app = &app;
        let token = ann.token.clone();
        async move { app.collaborators(&token, Some(q)).await.expect_status(200) }
    };

    assert_eq!(agents(query("STONE").await), ["bob-7"], "by agent name");
    assert_eq!(agents(query("BoB-7").await), ["bob-7"], "by agent id");
    let by_portal = query("bILLing").await;
    assert_eq!(agents(by_portal.clone()), ["cid"], "by portal name");
    assert!(pluck(&by_portal["portals"], "id").contains(&"billing".to_owned()));
    assert_eq!(agents(query("desk").await), ["bob-7"], "by portal name");
    assert!(agents(query("nobody-matches").await).is_empty());
    assert!(
        agents(query("ann").await).is_empty(),
        "the caller never lists itself"
    );
}

#[actix_rt::test]
async fn logging_out_removes_an_agent_from_the_window() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;

    let before = app.collaborators(&ann.token, None).await.expect_status(200);
    assert_eq!(pluck(&before["agents"], "id"), ["bob"]);
    assert_eq!(portal_row(&before, "support")["agents_online"], 2);

    let logout = app.logout(&bob.token).await;
    assert_eq!(logout.status, 204, "{}", logout.text);
    let after = app.collaborators(&ann.token, None).await.expect_status(200);
    assert_eq!(after["agents"], json!([]));
    assert_eq!(portal_row(&after, "support")["agents_online"], 1);
    assert_eq!(
        app.me(&bob.token).await.expect_status(200)["portal"],
        json!(null)
    );

    app.login(&bob.token, "support").await.expect_status(200);
    let back = app.collaborators(&ann.token, None).await.expect_status(200);
    assert_eq!(pluck(&back["agents"], "id"), ["bob"]);
}

#[actix_rt::test]
async fn logging_into_a_portal_the_agent_is_not_a_member_of_is_403_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;

    assert_problem(&app.login(&bob.token, "billing").await, 403, "forbidden");
    assert_problem(&app.login(&bob.token, "nowhere").await, 404, "not_found");

    let me = app.me(&bob.token).await.expect_status(200);
    assert_eq!(
        me["portal"],
        json!({"id": "support", "name": "Support Desk"})
    );
    let window = app.collaborators(&ann.token, None).await.expect_status(200);
    assert_eq!(agent_row(&window, "bob")["portal"]["id"], "support");
    assert_eq!(portal_row(&window, "billing")["agents_online"], 0);
}

#[actix_rt::test]
async fn get_me_shows_the_agent_its_portal_and_its_active_sessions() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app
        .agent(ACME, "ann", "Ann Lee", &["support", "billing"])
        .await;

    let me = app.me(&ann.token).await.expect_status(200);
    assert_eq!(me["id"], "ann");
    assert_eq!(me["name"], "Ann Lee");
    assert_eq!(me["portal"], json!(null));
    assert_eq!(me["active_sessions"], 0);

    let login = app.login(&ann.token, "billing").await.expect_status(200);
    assert_eq!(
        login,
        json!({"agent": "ann", "portal": {"id": "billing", "name": "Billing"}})
    );
    app.create_session(&ann.token, "web", "Carol").await;
    app.create_session(&ann.token, "queue", "Dave").await;

    let me = app.me(&ann.token).await.expect_status(200);
    assert_eq!(me["portal"], json!({"id": "billing", "name": "Billing"}));
    let mut portals = strings(&me["portals"]);
    portals.sort();
    assert_eq!(portals, ["billing", "support"]);
    assert_eq!(me["active_sessions"], 2);
}

#[actix_rt::test]
async fn get_me_names_the_portals_the_agent_may_log_into_for_a_login_picker() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app
        .agent(ACME, "ann", "Ann Lee", &["support", "billing"])
        .await;
    let me = app.me(&ann.token).await.expect_status(200);
    let memberships: Vec<(String, String)> = me["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().into(),
                p["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    // In the order of `portals`, each with its name.
    let order = strings(&me["portals"]);
    assert_eq!(
        memberships
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>(),
        order
    );
    assert!(memberships.contains(&("billing".into(), "Billing".into())));
    assert!(memberships.contains(&("support".into(), "Support Desk".into())));
    // The stream's snapshot carries the same agent view.
    let (_, snapshot) = ann.events().await;
    assert_eq!(snapshot["agent"]["memberships"], me["memberships"]);
}

#[actix_rt::test]
async fn an_agent_stream_begins_with_a_snapshot_of_the_agent_its_offers_and_its_sessions() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (session, _) = app.create_session(&ann.token, "queue", "Carol").await;
    let session = id_of(&session);
    let invitation = app
        .invite(
            &ann.token,
            &session,
            json!({"target": {"agent": "bob"}, "comment": "printer trouble"}),
        )
        .await
        .expect_status(201);

    let (_bobs, snapshot) = app.agent_events(&bob.token).await;
    assert_eq!(snapshot["agent"]["id"], "bob");
    assert_eq!(snapshot["agent"]["portal"]["id"], "support");
    assert_eq!(snapshot["sessions"], json!([]));
    let offers = snapshot["invitations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(offers.len(), 1, "{snapshot}");
    assert_eq!(offers[0]["id"], invitation["id"]);
    assert_eq!(offers[0]["comment"], "printer trouble");
    assert_eq!(offers[0]["customer"], json!({"name": "Carol"}));
    assert_eq!(offers[0]["mode"], "queue");

    let (_anns, snapshot) = app.agent_events(&ann.token).await;
    assert_eq!(snapshot["agent"]["active_sessions"], 1);
    assert_eq!(snapshot["invitations"], json!([]));
    let sessions = snapshot["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], session.as_str());
    assert_eq!(
        pluck(&sessions[0]["invitations"], "id"),
        [id_of(&invitation)]
    );
}
