//! What the customer sees: only unmasked agents by name, only `everyone`
//! messages of unmasked authors, and one reconnect request.

use serde_json::json;

use crate::common::{ACME, EVENT_WAIT, QUIET, TestApp, assert_problem, id_of, pluck};

#[actix_rt::test]
async fn a_masked_agent_and_everything_internal_stay_out_of_every_customer_payload() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    // Ids that appear nowhere in names, so a leaked id is unmistakable.
    let lead = app.online(ACME, "lead-7f3", "Annie Front", "support").await;
    let hidden = app
        .online(ACME, "mask-9q2", "Mister Hidden", "support")
        .await;
    let (session, customer) = app.create_session(&lead.token, "web", "Carol").await;
    let session = id_of(&session);
    // The raw text of everything the customer was sent.
    let mut seen = Vec::new();

    let (mut carols, snapshot) = app.customer_events(&customer).await;
    assert_eq!(
        snapshot["session"]["agents"],
        json!([{"name": "Annie Front"}])
    );
    let generation = snapshot["session"]["generation"]
        .as_u64()
        .unwrap_or_default();

    let invitation = app
        .invite(
            &lead.token,
            &session,
            json!({"target": {"agent": "mask-9q2"}, "masked": true,
                   "comment": "TOP-SECRET-COMMENT"}),
        )
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    app.accept(&hidden.token, &inv).await.expect_status(200);

    // A masked join still needs the reconnect, naming nobody; no agent_joined.
    let reconnect = carols.expect("reconnect_required", EVENT_WAIT).await;
    assert_eq!(
        reconnect,
        json!({"generation": generation + 1, "reshare_screen": true})
    );

    let masked_words = app
        .say(&hidden.token, &session, "masked words", "everyone")
        .await
        .expect_status(201);
    assert_eq!(
        masked_words["audience"], "agents",
        "a masked agent's message is always for agents"
    );
    app.say(&lead.token, &session, "internal note", "agents")
        .await
        .expect_status(201);
    app.say(&lead.token, &session, "hello from Annie", "everyone")
        .await
        .expect_status(201);
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "hello from Annie");
    let thanks = app.customer_say(&customer, "thanks").await;
    assert_eq!(thanks.expect_status(201)["text"], "thanks");
    seen.push(thanks.text);
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "thanks");

    let view = app.customer_session(&customer).await;
    assert_eq!(
        view.expect_status(200)["agents"],
        json!([{"name": "Annie Front"}])
    );
    seen.push(view.text);
    let messages = app.customer_messages(&customer).await;
    assert_eq!(
        pluck(&messages.expect_status(200)["messages"], "text"),
        ["thanks", "hello from Annie"],
        "newest first"
    );
    seen.push(messages.text);
    let cleared = app.reconnected(&customer, generation + 1, true).await;
    assert_eq!(cleared.expect_status(200)["reconnect_required"], false);
    seen.push(cleared.text);

    // The masked agent leaves unseen: the customer's next event is a later message.
    app.leave(&hidden.token, &session).await.expect_status(200);
    app.say(&lead.token, &session, "still here", "everyone")
        .await
        .expect_status(201);
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "still here");
    carols.assert_silent(QUIET).await;
    seen.push(carols.raw_text());

    // A stream opened now replays the history through the same gate.
    let (later, snapshot) = app.customer_events(&customer).await;
    assert_eq!(
        pluck(&snapshot["messages"], "text"),
        ["hello from Annie", "thanks", "still here"]
    );
    seen.push(later.raw_text());

    let everything = seen.join("\n");
    for secret in [
        "lead-7f3",
        "mask-9q2",
        "Mister Hidden",
        "TOP-SECRET-COMMENT",
        inv.as_str(),
        "masked words",
        "internal note",
        "invitation",
        "comment",
    ] {
        assert!(
            !everything.contains(secret),
            "the customer was sent {secret:?}:\n{everything}"
        );
    }
}

#[actix_rt::test]
async fn a_customer_stream_begins_with_a_snapshot_of_its_session_and_visible_chat() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let session = id_of(&session);
    app.say(&ann.token, &session, "hi Carol", "everyone")
        .await
        .expect_status(201);
    app.say(&ann.token, &session, "note to self", "agents")
        .await
        .expect_status(201);

    let (_stream, snapshot) = app.customer_events(&customer).await;
    assert_eq!(snapshot["session"]["id"], session.as_str());
    assert_eq!(snapshot["session"]["status"], "active");
    assert_eq!(snapshot["session"]["agents"], json!([{"name": "Ann"}]));
    assert_eq!(snapshot["session"]["reconnect_required"], false);
    let messages = snapshot["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 1, "{snapshot}");
    assert_eq!(messages[0]["text"], "hi Carol");
    assert_eq!(
        messages[0]["author"],
        json!({"kind": "agent", "name": "Ann"})
    );
}

#[actix_rt::test]
async fn reconnect_required_arrives_once_when_the_second_agent_joins_and_not_again_for_a_third() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let cid = app.online(ACME, "cid", "Cid", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let generation = session["customer"]["generation"]
        .as_u64()
        .unwrap_or_default();
    let session = id_of(&session);
    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut carols, _) = app.customer_events(&customer).await;

    app.bring_in(&ann, &session, &bob, false).await;
    let joined = carols.expect("agent_joined", EVENT_WAIT).await;
    assert_eq!(joined, json!({"agent": {"name": "Bob"}}));
    let reconnect = carols.expect("reconnect_required", EVENT_WAIT).await;
    assert_eq!(
        reconnect,
        json!({"generation": generation + 1, "reshare_screen": true})
    );
    let told = anns
        .wait_for("customer_reconnect_required", EVENT_WAIT)
        .await;
    assert_eq!(told["session"], session.as_str());
    assert_eq!(told["generation"], generation + 1);
    let view = app.customer_session(&customer).await.expect_status(200);
    assert_eq!(view["reconnect_required"], true);
    assert_eq!(view["generation"], generation + 1);

    app.bring_in(&ann, &session, &cid, false).await;
    let joined = carols.expect("agent_joined", EVENT_WAIT).await;
    assert_eq!(joined, json!({"agent": {"name": "Cid"}}));
    app.say(&ann.token, &session, "welcome Cid", "everyone")
        .await
        .expect_status(201);
    // The next event is the later message: no second reconnect_required.
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "welcome Cid");
    let view = app.customer_session(&customer).await.expect_status(200);
    assert_eq!(view["generation"], generation + 1);
    assert_eq!(pluck(&view["agents"], "name"), ["Ann", "Bob", "Cid"]);
}

#[actix_rt::test]
async fn reconnecting_with_the_current_generation_clears_reconnect_required_and_tells_the_agents() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let generation = session["customer"]["generation"]
        .as_u64()
        .unwrap_or_default()
        + 1;
    let session = id_of(&session);
    app.bring_in(&ann, &session, &bob, true).await;
    let (mut anns, _) = app.agent_events(&ann.token).await;
    let (mut bobs, _) = app.agent_events(&bob.token).await;

    let view = app
        .reconnected(&customer, generation, true)
        .await
        .expect_status(200);
    assert_eq!(view["reconnect_required"], false);
    assert_eq!(view["generation"], generation);
    assert_eq!(view["agents"], json!([{"name": "Ann"}]));

    for stream in [&mut anns, &mut bobs] {
        let event = stream.expect("customer_reconnected", EVENT_WAIT).await;
        assert_eq!(
            event,
            json!({"session": session, "generation": generation, "screen_shared": true})
        );
    }
    let agents_view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(agents_view["customer"]["reconnect_required"], false);
    assert_eq!(agents_view["customer"]["screen_shared"], true);
    let customers_view = app.customer_session(&customer).await.expect_status(200);
    assert_eq!(customers_view["reconnect_required"], false);
}

#[actix_rt::test]
async fn reconnecting_with_a_wrong_generation_is_409_conflict_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.acme(json!({})).await;
    let ann = app.online(ACME, "ann", "Ann", "support").await;
    let bob = app.online(ACME, "bob", "Bob", "support").await;
    let (session, customer) = app.create_session(&ann.token, "web", "Carol").await;
    let generation = session["customer"]["generation"]
        .as_u64()
        .unwrap_or_default()
        + 1;
    let session = id_of(&session);
    app.bring_in(&ann, &session, &bob, false).await;
    let (mut anns, _) = app.agent_events(&ann.token).await;

    for wrong in [generation - 1, generation + 5] {
        assert_problem(
            &app.reconnected(&customer, wrong, true).await,
            409,
            "conflict",
        );
    }
    let view = app.customer_session(&customer).await.expect_status(200);
    assert_eq!(view["reconnect_required"], true);
    assert_eq!(view["generation"], generation);
    let agents_view = app.session(&ann.token, &session).await.expect_status(200);
    assert_eq!(agents_view["customer"]["screen_shared"], false);
    // Ann's next event is a later message: no customer_reconnected went out.
    app.say(&bob.token, &session, "sync", "agents")
        .await
        .expect_status(201);
    let message = anns.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "sync");
}
