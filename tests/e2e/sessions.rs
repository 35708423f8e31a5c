//! Sessions: creating them, the agent view, chat, leaving and ending.

use serde_json::{Value, json};

use crate::common::{
    ACME, EVENT_WAIT, QUIET, TestApp, assert_problem, id_of, participant_ids, pluck, strings,
};

#[actix_rt::test]
async fn creating_a_session_makes_the_caller_lead_and_returns_the_agent_view_and_a_customer_token()
{
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann Lee", "support").await;

    for mode in ["web", "queue"] {
        let (session, customer) = app.create_session(&ann.token, mode, "Carol").await;
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
        let read = app
            .session(&ann.token, &id_of(&session))
            .await
            .expect_status(200);
        assert_eq!(read, session);
        let seen = app.customer_session(&customer).await.expect_status(200);
        assert_eq!(seen["id"], session["id"]);
        assert_eq!(seen["status"], "active");
        assert_eq!(seen["agents"], json!([{"name": "Ann Lee"}]));
    }
    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        2
    );
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
    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        0
    );

    app.create_session(&ann.token, "web", "Carol").await;
    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        1
    );
}

#[actix_rt::test]
async fn the_agent_view_shows_participants_in_join_order_and_the_pending_invitations() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let zoe = app.online(ACME, "zoe", "Zoe", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let cid = app.online(ACME, "cid", "Cid", "billing").await;
    let (session, _) = app.create_session(&ann.token, "web", "Carol").await;
    let generation = session["customer"]["generation"]
        .as_u64()
        .unwrap_or_default();
    let session = id_of(&session);

    app.bring_in(&ann, &session, &zoe, true).await;
    app.bring_in(&ann, &session, &bob, false).await;
    let pending = app
        .invite(&ann.token, &session, json!({"target": {"agent": "cid"}}))
        .await
        .expect_status(201);

    let view = app.session(&bob.token, &session).await.expect_status(200);
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
    assert_problem(&app.session(&cid.token, &session).await, 403, "forbidden");
}

#[actix_rt::test]
async fn chat_reaches_every_agent_and_only_everyone_messages_reach_the_customer() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    app.bring_in(&ann, &session, &bob, false).await;

    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;

    let hello = app
        .say(&ann.token, &session, "hello everyone", "everyone")
        .await
        .expect_status(201);
    assert_eq!(hello["text"], "hello everyone");
    assert_eq!(hello["audience"], "everyone");
    assert_eq!(
        hello["author"],
        json!({"kind": "agent", "id": "ann", "name": "Ann", "masked": false})
    );
    assert!(hello["id"].is_string() && hello["sent_at"].is_string());
    let note = app
        .say(&bob.token, &session, "agents only note", "agents")
        .await
        .expect_status(201);
    assert_eq!(note["audience"], "agents");
    app.customer_say(&customer, "customer here")
        .await
        .expect_status(201);

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
    let all = app.messages(&bob.token, &session).await.expect_status(200);
    assert_eq!(
        pluck(&all["messages"], "text"),
        ["customer here", "agents only note", "hello everyone"]
    );
    assert_eq!(
        pluck(&all["messages"], "audience"),
        ["everyone", "agents", "everyone"]
    );
    let visible = app.customer_messages(&customer).await.expect_status(200);
    assert_eq!(
        pluck(&visible["messages"], "text"),
        ["customer here", "hello everyone"]
    );
}

#[actix_rt::test]
async fn a_leaving_lead_hands_lead_to_the_longest_joined_agent() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    // Joined first, though last by id and by name.
    let zoe = app.online(ACME, "zoe", "Zoe", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    app.bring_in(&ann, &session, &zoe, false).await;
    app.bring_in(&ann, &session, &bob, false).await;

    let (mut zoes, _) = app.agent_events(&zoe.token).await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;

    let view = app.leave(&ann.token, &session).await.expect_status(200);
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

    assert_problem(&app.session(&ann.token, &session).await, 403, "forbidden");
    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        0
    );
    // The new lead may end the session.
    let ended = app.end(&zoe.token, &session).await.expect_status(200);
    assert_eq!(ended["status"], "ended");
}

#[actix_rt::test]
async fn the_last_agent_leaving_ends_the_session() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;

    let view = app.leave(&ann.token, &session).await.expect_status(200);
    assert_eq!(view["status"], "ended");
    assert_eq!(view["participants"], json!([]));

    let left = anns.expect("participant_left", EVENT_WAIT).await;
    assert_eq!(left["participant"]["agent"]["id"], "ann");
    let ended = anns.expect("session_ended", EVENT_WAIT).await;
    assert_eq!(ended["session"], session.as_str());
    carols.expect("agent_left", EVENT_WAIT).await;
    carols.expect("session_ended", EVENT_WAIT).await;

    let seen = app.customer_session(&customer).await.expect_status(200);
    assert_eq!(seen["status"], "ended");
    assert_eq!(seen["agents"], json!([]));
    assert_problem(
        &app.customer_say(&customer, "anyone there?").await,
        409,
        "session_ended",
    );
    assert_eq!(
        app.me(&ann.token).await.expect_status(200)["active_sessions"],
        0
    );
}

#[actix_rt::test]
async fn only_the_lead_may_end_a_session() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    app.bring_in(&ann, &session, &bob, false).await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;

    assert_problem(&app.end(&bob.token, &session).await, 403, "forbidden");
    let view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(view["status"], "active");
    assert_eq!(participant_ids(&view), ["ann", "bob"]);

    let ended = app.end(&ann.token, &session).await.expect_status(200);
    assert_eq!(ended["status"], "ended");
    let event = bobs.expect("session_ended", EVENT_WAIT).await;
    assert_eq!(event["session"], session.as_str());
    carols.expect("session_ended", EVENT_WAIT).await;
    assert_problem(&app.end(&ann.token, &session).await, 409, "session_ended");
    assert_problem(
        &app.say(&ann.token, &session, "after the end", "everyone")
            .await,
        409,
        "session_ended",
    );
}

#[actix_rt::test]
async fn ending_a_session_cancels_its_pending_invitations_and_withdraws_them_with_reason_session_ended()
 {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "billing").await;
    let cid = app.online(ACME, "cid", "Cid", "support").await;
    let dan = app.online(ACME, "dan", "Dan", "support").await;
    let (session, _) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    let direct = app
        .invite(&ann.token, &session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    let portal = app
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    let mut recipients = strings(&portal["recipients"]);
    recipients.sort();
    assert_eq!(recipients, ["cid", "dan"]);

    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut bobs, bob_snapshot) = app.agent_events(&bob.token).await;
    let (mut cids, _) = app.agent_events(&cid.token).await;
    let (mut dans, _) = app.agent_events(&dan.token).await;
    assert_eq!(pluck(&bob_snapshot["invitations"], "id"), [id_of(&direct)]);

    let ended = app.end(&ann.token, &session).await.expect_status(200);
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
        assert_eq!(app.my_invitations(&agent.token).await, Vec::<Value>::new());
    }
    let late = app.accept(&bob.token, &id_of(&direct)).await;
    assert_eq!(late.status, 409, "{}", late.text);
    assert!(
        ["invitation_closed", "session_ended"].contains(&late.json["code"].as_str().unwrap_or("")),
        "a cancelled invitation cannot be accepted: {}",
        late.text
    );
    assert_eq!(
        app.me(&bob.token).await.expect_status(200)["active_sessions"],
        0
    );
}

#[actix_rt::test]
async fn ending_a_session_with_every_invitation_slot_taken_reaches_its_agents_without_dropping_a_stream()
 {
    let app = TestApp::spawn().await;
    app.acme(json!({"max_pending_invitations_per_session": 20}))
        .await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let (session, _) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    for i in 0..20 {
        let name = format!("helper{i}");
        app.online(ACME, &name, &name, "billing").await;
        app.invite(&ann.token, &session, json!({"target": {"agent": name}}))
            .await
            .expect_status(201);
    }
    let (mut anns, _) = app.agent_events(&ann.token).await;
    // One commit: 20 cancellations and the end, all to Ann at once.
    app.end(&ann.token, &session).await.expect_status(200);
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
    let (later, _) = app.create_session(&ann.token, "web", "Cyd").await;
    app.say(&ann.token, &id_of(&later), "still here", "agents")
        .await
        .expect_status(201);
    anns.wait_for("message", EVENT_WAIT).await;
}
