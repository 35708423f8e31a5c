//! What the customer sees: only unmasked agents by name, only `everyone`
//! messages of unmasked authors, and one reconnect request.

use serde_json::json;

use crate::common::{EVENT_WAIT, QUIET, Scene, TestApp, assert_problem, id_of, pluck};

#[actix_rt::test]
async fn a_masked_agent_and_everything_internal_stay_out_of_every_customer_payload() {
    let app = TestApp::spawn().await;
    // Ids that appear nowhere in names, so a leaked id is unmistakable.
    let scene = Scene::builder(&app)
        .online("lead-7f3", "Annie Front", "support")
        .online("mask-9q2", "Mister Hidden", "support")
        .session("lead-7f3")
        .build()
        .await;
    let [lead, hidden] = scene.agents();
    let carol = scene.session();
    let session = carol.id.clone();
    // The raw text of everything the customer was sent.
    let mut seen = Vec::new();

    let (mut carols, snapshot) = carol.customer_events().await;
    assert_eq!(
        snapshot["session"]["agents"],
        json!([{"name": "Annie Front"}])
    );
    let generation = snapshot["session"]["generation"]
        .as_u64()
        .unwrap_or_default();

    let invitation = lead
        .invite(
            &session,
            json!({"target": {"agent": "mask-9q2"}, "masked": true,
                   "comment": "TOP-SECRET-COMMENT"}),
        )
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    hidden.accept(&inv).await.expect_status(200);

    // A masked join still needs the reconnect, naming nobody; no agent_joined.
    let reconnect = carols.expect("reconnect_required", EVENT_WAIT).await;
    assert_eq!(
        reconnect,
        json!({"generation": generation + 1, "reshare_screen": true})
    );

    let masked_words = hidden
        .say(&session, "masked words", "everyone")
        .await
        .expect_status(201);
    assert_eq!(
        masked_words["audience"], "agents",
        "a masked agent's message is always for agents"
    );
    lead.say(&session, "internal note", "agents")
        .await
        .expect_status(201);
    lead.say(&session, "hello from Annie", "everyone")
        .await
        .expect_status(201);
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "hello from Annie");
    let thanks = carol.customer_say("thanks").await;
    assert_eq!(thanks.expect_status(201)["text"], "thanks");
    seen.push(thanks.text);
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "thanks");

    let view = carol.customer_session().await;
    assert_eq!(
        view.expect_status(200)["agents"],
        json!([{"name": "Annie Front"}])
    );
    seen.push(view.text);
    let messages = carol.customer_messages().await;
    assert_eq!(
        pluck(&messages.expect_status(200)["messages"], "text"),
        ["thanks", "hello from Annie"],
        "newest first"
    );
    seen.push(messages.text);
    let cleared = carol.reconnected(generation + 1, true).await;
    assert_eq!(cleared.expect_status(200)["reconnect_required"], false);
    seen.push(cleared.text);

    // The masked agent leaves unseen: the customer's next event is a later message.
    hidden.leave(&session).await.expect_status(200);
    lead.say(&session, "still here", "everyone")
        .await
        .expect_status(201);
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "still here");
    carols.assert_silent(QUIET).await;
    seen.push(carols.raw_text());

    // A stream opened now replays the history through the same gate.
    let (later, snapshot) = carol.customer_events().await;
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
    let ([ann], carol) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = carol.id.clone();
    ann.say(&session, "hi Carol", "everyone")
        .await
        .expect_status(201);
    ann.say(&session, "note to self", "agents")
        .await
        .expect_status(201);

    let (_stream, snapshot) = carol.customer_events().await;
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
async fn a_customer_stream_ends_after_session_ended_and_the_token_is_no_longer_good() {
    let app = TestApp::spawn().await;
    let ([ann], carol) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = carol.id.clone();
    let (mut carols, _) = carol.customer_events().await;
    ann.end(&session).await.expect_status(200);
    let rest = carols.expect_end(EVENT_WAIT).await;
    assert_eq!(
        rest.last().map(|e| e.name.as_str()),
        Some("session_ended"),
        "the stream ends with session_ended"
    );
    // The customer token of the ended session is refused everywhere, so
    // creating and ending sessions cannot mint fresh request buckets (a
    // stream's, a message's, a read's), and a link found later shows nothing.
    let token = carol.customer.clone();
    for reply in [
        app.get("/v1/customer/events", &token).await,
        carol.customer_session().await,
        carol.customer_messages().await,
        carol.customer_say("still there?").await,
    ] {
        assert_problem(&reply, 401, "unauthorized");
        assert!(
            reply.text.contains("the session has ended"),
            "{}",
            reply.text
        );
    }
    // Nothing was written.
    let messages = ann.messages(&session).await.expect_status(200);
    assert_eq!(messages["messages"].as_array().map(Vec::len), Some(0));
}

#[actix_rt::test]
async fn reconnect_required_arrives_once_when_the_second_agent_joins_and_not_again_for_a_third() {
    let app = TestApp::spawn().await;
    let ([ann, bob, cid], carol) =
        Scene::support_session(&app, json!({}), ["ann", "bob", "cid"]).await;
    let generation = carol.generation();
    let session = carol.id.clone();
    let (mut anns, _) = ann.events().await;
    let (mut carols, _) = carol.customer_events().await;

    ann.bring_in(&session, &bob, false).await;
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
    let view = carol.customer_session().await.expect_status(200);
    assert_eq!(view["reconnect_required"], true);
    assert_eq!(view["generation"], generation + 1);

    ann.bring_in(&session, &cid, false).await;
    let joined = carols.expect("agent_joined", EVENT_WAIT).await;
    assert_eq!(joined, json!({"agent": {"name": "Cid"}}));
    ann.say(&session, "welcome Cid", "everyone")
        .await
        .expect_status(201);
    // The next event is the later message: no second reconnect_required.
    let message = carols.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "welcome Cid");
    let view = carol.customer_session().await.expect_status(200);
    assert_eq!(view["generation"], generation + 1);
    assert_eq!(pluck(&view["agents"], "name"), ["Ann", "Bob", "Cid"]);
}

#[actix_rt::test]
async fn reconnecting_with_the_current_generation_clears_reconnect_required_and_tells_the_agents() {
    let app = TestApp::spawn().await;
    let ([ann, bob], carol) = Scene::support_session(&app, json!({}), ["ann", "bob"]).await;
    let generation = carol.generation() + 1;
    let session = carol.id.clone();
    ann.bring_in(&session, &bob, true).await;
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;

    let view = carol.reconnected(generation, true).await.expect_status(200);
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
    let agents_view = ann.view(&session).await.expect_status(200);
    assert_eq!(agents_view["customer"]["reconnect_required"], false);
    assert_eq!(agents_view["customer"]["screen_shared"], true);
    let customers_view = carol.customer_session().await.expect_status(200);
    assert_eq!(customers_view["reconnect_required"], false);
}

#[actix_rt::test]
async fn reconnecting_with_a_wrong_generation_is_409_conflict_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ([ann, bob], carol) = Scene::support_session(&app, json!({}), ["ann", "bob"]).await;
    let generation = carol.generation() + 1;
    let session = carol.id.clone();
    ann.bring_in(&session, &bob, false).await;
    let (mut anns, _) = ann.events().await;

    for wrong in [generation - 1, generation + 5] {
        assert_problem(&carol.reconnected(wrong, true).await, 409, "conflict");
    }
    let view = carol.customer_session().await.expect_status(200);
    assert_eq!(view["reconnect_required"], true);
    assert_eq!(view["generation"], generation);
    let agents_view = ann.view(&session).await.expect_status(200);
    assert_eq!(agents_view["customer"]["screen_shared"], false);
    // Ann's next event is a later message: no customer_reconnected went out.
    bob.say(&session, "sync", "agents").await.expect_status(201);
    let message = anns.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "sync");
}
