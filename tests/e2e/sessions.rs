//! Sessions: creating them, the agent view, chat, leaving and ending.

use serde_json::{Value, json};

use crate::common::{
    ACME, EVENT_WAIT, QUIET, Scene, TestApp, assert_problem, id_of, participant_ids, pluck, strings,
};

#[actix_rt::test]
async fn creating_a_session_makes_the_caller_lead_and_returns_the_agent_view_and_a_customer_token()
{
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann Lee", "support").await;

    for mode in ["web", "queue"] {
        let created = ann.create_session(mode, "Carol").await;
        let session = &created.view;
        assert!(session["id"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(session["mode"], mode);
        assert_eq!(session["status"], "active");
        assert_eq!(session["lead"], "ann");
        let participants = session["participants"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(participants.len(), 1);
        assert_eq!(
            participants[0]["agent"],
            json!({"id": ann.id, "name": ann.name})
        );
        assert_eq!(participants[0]["role"], "lead");
        assert_eq!(participants[0]["masked"], false);
        assert!(participants[0]["joined_at"].is_string());
        assert_eq!(session["customer"]["name"], "Carol");
        assert_eq!(session["customer"]["reconnect_required"], false);
        assert_eq!(session["customer"]["screen_shared"], false);
        assert!(session["customer"]["generation"].is_u64());
        assert_eq!(session["invitations"], json!([]));
        assert!(session["created_at"].is_string());

        // The agent view reads back the same, and the customer token works.
        let read = ann.view(&created.id).await.expect_status(200);
        assert_eq!(&read, session);
        let seen = created.customer_session().await.expect_status(200);
        assert_eq!(seen["id"], session["id"]);
        assert_eq!(seen["status"], "active");
        assert_eq!(seen["agents"], json!([{"name": "Ann Lee"}]));
    }
    assert_eq!(ann.active_sessions().await, 2);
}

#[actix_rt::test]
async fn a_session_mode_the_policy_does_not_allow_is_403_feature_disabled_and_creates_nothing() {
    let app = TestApp::spawn().await;
    app.acme(json!({"session_modes": ["web"]})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;

    let refused = app
        .post(
            "/v1/sessions",
            &ann.token,
            json!({"mode": "queue", "customer": {"name": "Carol"}}),
        )
        .await;
    assert_problem(&refused, 403, "feature_disabled");
    assert_eq!(ann.active_sessions().await, 0);

    ann.create_session("web", "Carol").await;
    assert_eq!(ann.active_sessions().await, 1);
}

#[actix_rt::test]
async fn the_agent_view_shows_participants_in_join_order_and_the_pending_invitations() {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .online("ann", "Ann", "support")
        .online("zoe", "Zoe", "support")
        .online("bob", "Bob", "support")
        .online("cid", "Cid", "billing")
        .session("ann")
        .build()
        .await;
    let [ann, zoe, bob, cid] = scene.agents();
    let generation = scene.session().generation();
    let session = scene.session().id;

    ann.bring_in(&session, &zoe, true).await;
    ann.bring_in(&session, &bob, false).await;
    let pending = ann
        .invite(&session, json!({"target": {"agent": "cid"}}))
        .await
        .expect_status(201);

    let view = bob.view(&session).await.expect_status(200);
    assert_eq!(participant_ids(&view), ["ann", "zoe", "bob"]);
    let roles: Vec<&Value> = view["participants"]
        .as_array()
        .map(|ps| ps.iter().map(|p| &p["role"]).collect())
        .unwrap_or_default();
    assert_eq!(
        roles,
        [
            &json!("lead"),
            &json!("collaborator"),
            &json!("collaborator")
        ]
    );
    assert_eq!(view["participants"][1]["masked"], true);
    assert_eq!(view["participants"][2]["masked"], false);
    assert_eq!(view["lead"], "ann");
    assert_eq!(pluck(&view["invitations"], "id"), [id_of(&pending)]);
    assert_eq!(view["invitations"][0]["status"], "pending");
    assert_eq!(view["customer"]["reconnect_required"], true);
    assert_eq!(view["customer"]["generation"], generation + 1);

    // An agent of the account who is not in the session may not look.
    assert_problem(&cid.view(&session).await, 403, "forbidden");
}

#[actix_rt::test]
async fn chat_reaches_every_agent_and_only_everyone_messages_reach_the_customer() {
    let app = TestApp::spawn().await;
    let ([ann, bob], carol) = Scene::support_session(&app, json!({}), ["ann", "bob"]).await;
    let session = carol.id.clone();
    ann.bring_in(&session, &bob, false).await;

    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;
    let (mut carols, _) = carol.customer_events().await;

    let hello = ann
        .say(&session, "hello everyone", "everyone")
        .await
        .expect_status(201);
    assert_eq!(hello["text"], "hello everyone");
    assert_eq!(hello["audience"], "everyone");
    assert_eq!(
        hello["author"],
        json!({"kind": "agent", "id": "ann", "name": "Ann", "masked": false})
    );
    assert!(hello["id"].is_string() && hello["sent_at"].is_string());
    let note = bob
        .say(&session, "agents only note", "agents")
        .await
        .expect_status(201);
    assert_eq!(note["audience"], "agents");
    carol.customer_say("customer here").await.expect_status(201);

    for stream in [&mut anns, &mut bobs] {
        let mut texts = Vec::new();
        for _ in 0..3 {
            let event = stream.expect("message", EVENT_WAIT).await;
            assert_eq!(event["session"], session.as_str());
            texts.push(
                event["message"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert_eq!(
            texts,
            ["hello everyone", "agents only note", "customer here"]
        );
    }
    let first = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(first["message"]["text"], "hello everyone");
    assert_eq!(
        first["message"]["author"],
        json!({"kind": "agent", "name": "Ann"})
    );
    let second = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(second["message"]["text"], "customer here");
    assert_eq!(second["message"]["author"]["kind"], "customer");
    carols.assert_silent(QUIET).await;

    // Pages are newest first.
    let all = bob.messages(&session).await.expect_status(200);
    assert_eq!(
        pluck(&all["messages"], "text"),
        ["customer here", "agents only note", "hello everyone"]
    );
    assert_eq!(
        pluck(&all["messages"], "audience"),
        ["everyone", "agents", "everyone"]
    );
    let visible = carol.customer_messages().await.expect_status(200);
    assert_eq!(
        pluck(&visible["messages"], "text"),
        ["customer here", "hello everyone"]
    );
}

#[actix_rt::test]
async fn a_leaving_lead_hands_lead_to_the_longest_joined_agent() {
    let app = TestApp::spawn().await;
    let ([ann, zoe, bob], carol) =
        Scene::support_session(&app, json!({}), ["ann", "zoe", "bob"]).await;
    let session = carol.id.clone();
    // Joined first, though last by id and by name.
    ann.bring_in(&session, &zoe, false).await;
    ann.bring_in(&session, &bob, false).await;

    let (mut zoes, _) = zoe.events().await;
    let (mut bobs, _) = bob.events().await;
    let (mut carols, _) = carol.customer_events().await;

    let view = ann.leave(&session).await.expect_status(200);
    assert_eq!(view["lead"], "zoe");
    assert_eq!(participant_ids(&view), ["zoe", "bob"]);
    assert_eq!(view["participants"][0]["role"], "lead");
    assert_eq!(view["participants"][1]["role"], "collaborator");
    assert_eq!(view["status"], "active");

    for stream in [&mut zoes, &mut bobs] {
        let left = stream.expect("participant_left", EVENT_WAIT).await;
        assert_eq!(left["session"], session.as_str());
        assert_eq!(left["participant"]["agent"]["id"], "ann");
        let lead = stream.expect("lead_changed", EVENT_WAIT).await;
        assert_eq!(lead["session"], session.as_str());
        assert_eq!(lead["lead"]["id"], "zoe");
    }
    let left = carols.expect("agent_left", EVENT_WAIT).await;
    assert_eq!(left, json!({"agent": {"name": "Ann"}}));

    assert_problem(&ann.view(&session).await, 403, "forbidden");
    assert_eq!(ann.active_sessions().await, 0);
    // The new lead may end the session.
    let ended = zoe.end(&session).await.expect_status(200);
    assert_eq!(ended["status"], "ended");
}

#[actix_rt::test]
async fn the_last_agent_leaving_ends_the_session() {
    let app = TestApp::spawn().await;
    let ([ann], carol) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = carol.id.clone();
    let (mut anns, _) = ann.events().await;
    let (mut carols, _) = carol.customer_events().await;

    let view = ann.leave(&session).await.expect_status(200);
    assert_eq!(view["status"], "ended");
    assert_eq!(view["participants"], json!([]));
    // Ann was the lead at the end: she still reads the session's trail.
    assert_eq!(view["lead"], "ann");
    let trail = ann.audit(&session).await.expect_status(200);
    let actions = pluck(&trail["entries"], "action");
    assert_eq!(
        actions.last().map(String::as_str),
        Some("session_ended"),
        "{trail}"
    );

    let left = anns.expect("participant_left", EVENT_WAIT).await;
    assert_eq!(left["participant"]["agent"]["id"], "ann");
    let ended = anns.expect("session_ended", EVENT_WAIT).await;
    assert_eq!(ended["session"], session.as_str());
    carols.expect("agent_left", EVENT_WAIT).await;
    carols.expect("session_ended", EVENT_WAIT).await;

    // The ended session's customer token is no longer good.
    assert_problem(&carol.customer_session().await, 401, "unauthorized");
    assert_problem(
        &carol.customer_say("anyone there?").await,
        401,
        "unauthorized",
    );
    assert_eq!(ann.active_sessions().await, 0);
}

#[actix_rt::test]
async fn only_the_lead_may_end_a_session() {
    let app = TestApp::spawn().await;
    let ([ann, bob], carol) = Scene::support_session(&app, json!({}), ["ann", "bob"]).await;
    let session = carol.id.clone();
    ann.bring_in(&session, &bob, false).await;
    let (mut bobs, _) = bob.events().await;
    let (mut carols, _) = carol.customer_events().await;

    assert_problem(&bob.end(&session).await, 403, "forbidden");
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["status"], "active");
    assert_eq!(participant_ids(&view), ["ann", "bob"]);

    let ended = ann.end(&session).await.expect_status(200);
    assert_eq!(ended["status"], "ended");
    let event = bobs.expect("session_ended", EVENT_WAIT).await;
    assert_eq!(event["session"], session.as_str());
    carols.expect("session_ended", EVENT_WAIT).await;
    assert_problem(&ann.end(&session).await, 409, "session_ended");
    assert_problem(
        &ann.say(&session, "after the end", "everyone").await,
        409,
        "session_ended",
    );
}

#[actix_rt::test]
async fn ending_a_session_cancels_its_pending_invitations_and_withdraws_them_with_reason_session_ended()
 {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .online("ann", "Ann", "support")
        .online("bob", "Bob", "billing")
        .online("cid", "Cid", "support")
        .online("dan", "Dan", "support")
        .session("ann")
        .build()
        .await;
    let [ann, bob, cid, dan] = scene.agents();
    let session = scene.session().id;
    let direct = ann
        .invite(&session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    let portal = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let mut recipients = strings(&portal["recipients"]);
    recipients.sort();
    assert_eq!(recipients, ["cid", "dan"]);

    let (mut anns, _) = ann.events().await;
    let (mut bobs, bob_snapshot) = bob.events().await;
    let (mut cids, _) = cid.events().await;
    let (mut dans, _) = dan.events().await;
    assert_eq!(pluck(&bob_snapshot["invitations"], "id"), [id_of(&direct)]);

    let ended = ann.end(&session).await.expect_status(200);
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["invitations"], json!([]));

    for (stream, invitation) in [
        (&mut bobs, &direct),
        (&mut cids, &portal),
        (&mut dans, &portal),
    ] {
        let withdrawn = stream.expect("invitation_withdrawn", EVENT_WAIT).await;
        assert_eq!(
            withdrawn,
            json!({"invitation": invitation["id"], "session": session, "reason": "session_ended"})
        );
    }
    let mut cancelled = Vec::new();
    for _ in 0..2 {
        let event = anns.expect("invitation_cancelled", EVENT_WAIT).await;
        assert_eq!(event["reason"], "session_ended");
        assert_eq!(event["invitation"]["status"], "cancelled");
        cancelled.push(id_of(&event["invitation"]));
    }
    cancelled.sort();
    let mut expected = vec![id_of(&direct), id_of(&portal)];
    expected.sort();
    assert_eq!(cancelled, expected);
    anns.expect("session_ended", EVENT_WAIT).await;

    for agent in [&bob, &cid, &dan] {
        assert_eq!(agent.my_invitations().await, Vec::<Value>::new());
    }
    let late = bob.accept(&id_of(&direct)).await;
    assert_eq!(late.status, 409, "{}", late.text);
    assert!(
        ["invitation_closed", "session_ended"].contains(&late.json["code"].as_str().unwrap_or("")),
        "a cancelled invitation cannot be accepted: {}",
        late.text
    );
    assert_eq!(bob.active_sessions().await, 0);
}

#[actix_rt::test]
async fn ending_a_session_with_every_invitation_slot_taken_reaches_its_agents_without_dropping_a_stream()
 {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(
        &app,
        json!({"max_pending_invitations_per_session": 20}),
        ["ann"],
    )
    .await;
    let session = session.id;
    for i in 0..20 {
        let name = format!("helper{i}");
        app.online(ACME, &name, &name, "billing").await;
        ann.invite(&session, json!({"target": {"agent": name}}))
            .await
            .expect_status(201);
    }
    let (mut anns, _) = ann.events().await;
    // One commit: 20 cancellations and the end, all to Ann at once.
    ann.end(&session).await.expect_status(200);
    let mut cancelled = 0;
    loop {
        let event = anns.next_event(EVENT_WAIT).await.unwrap_or_else(|| {
            panic!("the stream ended or went silent after {cancelled} cancellations")
        });
        match event.name.as_str() {
            "invitation_cancelled" => cancelled += 1,
            "session_ended" => break,
            other => panic!("unexpected `{other}`"),
        }
    }
    assert_eq!(cancelled, 20);
    // Still open: a later event arrives on it.
    let later = ann.create_session("web", "Cyd").await;
    ann.say(&later.id, "still here", "agents")
        .await
        .expect_status(201);
    anns.wait_for("message", EVENT_WAIT).await;
}
