//! Collaboration beyond the seed, over HTTP and SSE: masking and unmasking
//! an agent mid-session, handing the session over (`kind: transfer`), and
//! the audit trail.

use serde_json::{Value, json};

use crate::common::{
    ACME, ADMIN, AgentHandle, EVENT_WAIT, QUIET, Scene, TestApp, assert_problem, id_of,
    participant_ids, pluck,
};

/// The masked flag of `agent` in an agents' view of a session.
fn masked_in(session: &Value, agent: &str) -> bool {
    session["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["agent"]["id"] == agent))
        .and_then(|p| p["masked"].as_bool())
        .unwrap_or_else(|| panic!("{agent} is not in {session}"))
}

#[actix_rt::test]
async fn unmask_mask_unmask_shows_the_customer_only_what_was_said_while_visible() {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .online("lead-a1", "Annie Lead", "support")
        .online("help-b2", "Hugo Helper", "support")
        .online("other-c3", "Olga Other", "support")
        .session("lead-a1")
        .build()
        .await;
    let [lead, helper, other] = scene.agents();
    let s = scene.session();
    let session = s.id.clone();
    lead.bring_in(&session, &helper, true).await;
    lead.bring_in(&session, &other, false).await;
    let (mut carol, _) = s.customer_events().await;
    let (mut leads, _) = lead.events().await;

    let said = helper
        .say(&session, "HIDDEN-ONE", "everyone")
        .await
        .expect_status(201);
    assert_eq!(said["audience"], "agents", "masked: forced to agents");

    // Unmasked by the lead: the customer meets Hugo, by name only.
    let view = lead.unmask(&session, &helper.id).await.expect_status(200);
    assert!(!masked_in(&view, &helper.id));
    let joined = carol.expect("agent_joined", EVENT_WAIT).await;
    assert_eq!(joined, json!({"agent": {"name": "Hugo Helper"}}));
    let updated = leads.wait_for("participant_updated", EVENT_WAIT).await;
    assert_eq!(updated["session"], session.as_str());
    assert_eq!(updated["participant"]["agent"]["id"], helper.id.as_str());
    assert_eq!(updated["participant"]["masked"], false);
    helper
        .say(&session, "VISIBLE-ONE", "everyone")
        .await
        .expect_status(201);
    let message = carol.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "VISIBLE-ONE");
    assert_eq!(message["message"]["seq"], 1);
    assert_eq!(message["message"]["author"]["name"], "Hugo Helper");

    // The agent masks itself: the customer sees it leave, and nothing it says.
    let view = helper.mask(&session, &helper.id).await.expect_status(200);
    assert!(masked_in(&view, &helper.id));
    let left = carol.expect("agent_left", EVENT_WAIT).await;
    assert_eq!(left, json!({"agent": {"name": "Hugo Helper"}}));
    let said = helper
        .say(&session, "HIDDEN-TWO", "everyone")
        .await
        .expect_status(201);
    assert_eq!(said["audience"], "agents");

    // And unmasked again: only later words reach the customer.
    lead.unmask(&session, &helper.id).await.expect_status(200);
    carol.expect("agent_joined", EVENT_WAIT).await;
    helper
        .say(&session, "VISIBLE-TWO", "everyone")
        .await
        .expect_status(201);
    let message = carol.expect("message", EVENT_WAIT).await;
    assert_eq!(message["message"]["text"], "VISIBLE-TWO");
    assert_eq!(message["message"]["seq"], 2, "numbered over what it saw");
    carol.assert_silent(QUIET).await;

    // Asking for the state it is in already changes nothing and tells nobody.
    lead.unmask(&session, &helper.id).await.expect_status(200);
    carol.assert_silent(QUIET).await;

    // The customer's pages: the visible words only, in its own numbering.
    let page = app
        .get("/v1/customer/messages?limit=1", &s.customer)
        .await
        .expect_status(200);
    assert_eq!(pluck(&page["messages"], "text"), ["VISIBLE-TWO"]);
    let before = page["next_before"].as_u64().expect("an older page");
    let older = app
        .get(
            &format!("/v1/customer/messages?limit=1&before={before}"),
            &s.customer,
        )
        .await
        .expect_status(200);
    assert_eq!(pluck(&older["messages"], "text"), ["VISIBLE-ONE"]);
    assert_eq!(older["next_before"], Value::Null);
    let all = s.customer_messages().await.expect_status(200);
    assert_eq!(
        pluck(&all["messages"], "text"),
        ["VISIBLE-TWO", "VISIBLE-ONE"]
    );
    // A fresh customer stream's snapshot agrees.
    let (_, snapshot) = s.customer_events().await;
    let names: Vec<String> = pluck(&snapshot["session"]["agents"], "name");
    assert_eq!(names, ["Annie Lead", "Hugo Helper", "Olga Other"]);
    // The agents read everything, with the mask each message was written under.
    let agents = lead.messages(&session).await.expect_status(200);
    assert_eq!(
        pluck(&agents["messages"], "text"),
        ["VISIBLE-TWO", "HIDDEN-TWO", "VISIBLE-ONE", "HIDDEN-ONE"]
    );
    let masks: Vec<bool> = agents["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["author"]["masked"].as_bool().unwrap())
        .collect();
    assert_eq!(masks, [false, true, false, true]);
    // Nothing hidden ever reached the customer's stream.
    let raw = carol.raw_text();
    for secret in ["HIDDEN-ONE", "HIDDEN-TWO", "help-b2", "other-c3", "lead-a1"] {
        assert!(!raw.contains(secret), "{secret} leaked: {raw}");
    }
}

#[actix_rt::test]
async fn only_the_lead_or_the_agent_itself_masks_never_the_lead_and_only_if_the_policy_allows() {
    let app = TestApp::spawn().await;
    let ([lead, ann, bob], s) =
        Scene::support_session(&app, json!({}), ["lead", "ann", "bob"]).await;
    let session = s.id.clone();
    lead.bring_in(&session, &ann, false).await;
    lead.bring_in(&session, &bob, false).await;
    let (mut carl, _) = s.customer_events().await;

    let refused = bob.mask(&session, &ann.id).await;
    assert_problem(&refused, 403, "forbidden");
    let refused = lead.mask(&session, &lead.id).await;
    assert_problem(&refused, 409, "conflict");
    let refused = lead.mask(&session, "nobody").await;
    assert_problem(&refused, 404, "not_found");
    let refused = lead.mask(&session, "not%20an%20id").await;
    assert_problem(&refused, 404, "not_found");
    let outsider = app.online(ACME, "zed", "Zed", "support").await;
    let refused = outsider.mask(&session, &ann.id).await;
    assert_problem(&refused, 403, "forbidden");

    // Masking switched off for the account: refused, nothing changes.
    app.call(
        awc::http::Method::PATCH,
        &format!("/v1/accounts/{ACME}"),
        Some(ADMIN),
        Some(&json!({"policy": {"masking": false}})),
    )
    .await
    .expect_status(200);
    let refused = ann.mask(&session, &ann.id).await;
    assert_problem(&refused, 403, "feature_disabled");
    carl.assert_silent(QUIET).await;
    let view = lead.view(&session).await.expect_status(200);
    assert!(!masked_in(&view, &ann.id));

    // The agent may mask itself when the policy allows it.
    app.call(
        awc::http::Method::PATCH,
        &format!("/v1/accounts/{ACME}"),
        Some(ADMIN),
        Some(&json!({"policy": {"masking": true}})),
    )
    .await
    .expect_status(200);
    ann.mask(&session, &ann.id).await.expect_status(200);
    assert_eq!(
        carl.expect("agent_left", EVENT_WAIT).await["agent"]["name"],
        "Ann"
    );
}

/// `lead` hands `session` over to `target` (`{"agent": …}` or `{"portal":
/// …}`), with a comment: the invitation's id.
async fn transfer(lead: &AgentHandle, session: &str, target: Value) -> String {
    let sent = lead
        .transfer(session, json!({"target": target, "comment": "over to you"}))
        .await
        .expect_status(201);
    assert_eq!(sent["kind"], "transfer");
    assert_eq!(sent["masked"], false);
    id_of(&sent)
}

#[actix_rt::test]
async fn a_transfer_to_a_portal_makes_the_first_acceptor_lead_and_the_old_lead_leaves() {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .online("lead", "Lead Lou", "billing")
        .online("ann", "Ann", "support")
        .online("bob", "Bob", "support")
        .online("hal", "Hal", "billing")
        .session("lead")
        .build()
        .await;
    let [lead, ann, bob, helper] = scene.agents();
    let s = scene.session();
    let session = s.id.clone();
    lead.bring_in(&session, &helper, false).await;
    let (mut carl, _) = s.customer_events().await;
    let (mut lous, _) = lead.events().await;
    let (mut hals, _) = helper.events().await;
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;

    let inv = transfer(&lead, &session, json!({"portal": "support"})).await;
    for stream in [&mut anns, &mut bobs] {
        let offer = stream.wait_for("invitation_offered", EVENT_WAIT).await;
        assert_eq!(offer["id"], inv.as_str());
        assert_eq!(offer["kind"], "transfer");
    }
    let accepted = bob.accept(&inv).await.expect_status(200);
    assert_eq!(accepted["session"]["lead"], "bob");
    assert_eq!(participant_ids(&accepted["session"]), ["hal", "bob"]);
    let lost = ann.accept(&inv).await;
    assert_problem(&lost, 409, "invitation_taken");
    let withdrawn = anns.wait_for("invitation_withdrawn", EVENT_WAIT).await;
    assert_eq!(withdrawn["reason"], "accepted_by_other");

    // The session's agents: the new lead, then the old one leaving.
    for stream in [&mut lous, &mut hals] {
        let changed = stream.wait_for("lead_changed", EVENT_WAIT).await;
        assert_eq!(changed["lead"]["id"], "bob");
        let left = stream.wait_for("participant_left", EVENT_WAIT).await;
        assert_eq!(left["participant"]["agent"]["id"], "lead");
    }
    // The customer: Bob came, Lou went; nothing about a transfer.
    let joined = carl.expect("agent_joined", EVENT_WAIT).await;
    assert_eq!(joined["agent"]["name"], "Bob");
    let left = carl.expect("agent_left", EVENT_WAIT).await;
    assert_eq!(left["agent"]["name"], "Lead Lou");
    carl.assert_silent(QUIET).await;
    assert!(!carl.raw_text().contains("over to you"));

    // The old lead is out; the new one leads (it may end the session).
    assert_problem(&lead.view(&session).await, 403, "forbidden");
    let view = bob.view(&session).await.expect_status(200);
    assert_eq!(view["lead"], "bob");
    let roles = pluck(&view["participants"], "role");
    assert_eq!(roles, ["collaborator", "lead"]);
    bob.end(&session).await.expect_status(200);
}

#[actix_rt::test]
async fn only_the_lead_transfers_never_masked_and_its_open_transfers_go_when_it_leaves() {
    let app = TestApp::spawn().await;
    let ([lead, ann, bob], s) =
        Scene::support_session(&app, json!({}), ["lead", "ann", "bob"]).await;
    let session = s.id.clone();
    lead.bring_in(&session, &ann, false).await;

    let refused = ann
        .invite(
            &session,
            json!({"target": {"agent": "bob"}, "kind": "transfer"}),
        )
        .await;
    assert_problem(&refused, 403, "forbidden");
    let refused = lead
        .invite(
            &session,
            json!({"target": {"agent": "bob"}, "kind": "transfer", "masked": true}),
        )
        .await;
    assert_problem(&refused, 400, "invalid_request");
    let refused = lead
        .invite(
            &session,
            json!({"target": {"agent": "bob"}, "kind": "takeover"}),
        )
        .await;
    assert_problem(&refused, 400, "invalid_request");

    let (mut bobs, _) = bob.events().await;
    let inv = transfer(&lead, &session, json!({"agent": "bob"})).await;
    bobs.wait_for("invitation_offered", EVENT_WAIT).await;
    // The lead leaves before Bob answers: Ann leads, the transfer is void.
    lead.leave(&session).await.expect_status(200);
    let withdrawn = bobs.wait_for("invitation_withdrawn", EVENT_WAIT).await;
    assert_eq!(withdrawn["invitation"], inv.as_str());
    assert_eq!(withdrawn["reason"], "cancelled");
    assert_problem(&bob.accept(&inv).await, 409, "invitation_closed");
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["lead"], "ann");
    assert_eq!(participant_ids(&view), ["ann"]);
}

/// `(actor id, action, details.agent)` of each entry: what a scenario must
/// match entry for entry.
fn trail(entries: &Value) -> Vec<(String, String, String)> {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {entries}"))
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            (
                text(&e["actor"]["id"]),
                text(&e["action"]),
                text(&e["details"]["agent"]),
            )
        })
        .collect()
}

fn row(actor: &str, action: &str, agent: &str) -> (String, String, String) {
    (actor.to_owned(), action.to_owned(), agent.to_owned())
}

#[actix_rt::test]
async fn the_audit_trail_matches_a_scenario_entry_for_entry_and_has_nothing_for_refused_requests() {
    let app = TestApp::spawn().await;
    let ([lead, ann, bob], s) =
        Scene::support_session(&app, json!({}), ["lead", "ann", "bob"]).await;
    let session = s.id.clone();

    // Refused: a transfer that would be masked; an outsider inviting.
    let refused = lead
        .invite(
            &session,
            json!({"target": {"agent": "ann"}, "kind": "transfer", "masked": true}),
        )
        .await;
    assert_problem(&refused, 400, "invalid_request");
    let refused = ann
        .invite(&session, json!({"target": {"agent": "bob"}}))
        .await;
    assert_problem(&refused, 403, "forbidden");
    let sent = lead
        .invite(
            &session,
            json!({"target": {"agent": "ann"}, "masked": true, "comment": "SECRET-NOTE"}),
        )
        .await
        .expect_status(201);
    let first = id_of(&sent);
    assert_problem(&bob.accept(&first).await, 403, "not_a_recipient");
    ann.accept(&first).await.expect_status(200);
    lead.say(&session, "SECRET-TEXT", "everyone")
        .await
        .expect_status(201);
    lead.unmask(&session, &ann.id).await.expect_status(200);
    assert_problem(&bob.mask(&session, &ann.id).await, 403, "forbidden");
    let second = transfer(&lead, &session, json!({"portal": "support"})).await;
    bob.accept(&second).await.expect_status(200);
    assert_problem(&lead.end(&session).await, 403, "forbidden");
    bob.end(&session).await.expect_status(200);

    let expected = vec![
        row("lead", "session_created", "-"),
        row("lead", "invitation_sent", "-"),
        row("ann", "invitation_accepted", "-"),
        row("ann", "participant_joined", "ann"),
        row("lead", "participant_unmasked", "ann"),
        row("lead", "invitation_sent", "-"),
        row("bob", "invitation_accepted", "-"),
        row("bob", "participant_joined", "bob"),
        row("bob", "lead_changed", "-"),
        row("bob", "participant_left", "lead"),
        row("bob", "session_transferred", "-"),
        row("bob", "session_ended", "-"),
    ];
    // The session's lead (the new one) reads it; nobody else does.
    let own = bob.audit(&session).await.expect_status(200);
    assert_eq!(trail(&own["entries"]), expected);
    assert_eq!(own["next_cursor"], Value::Null);
    let entries = own["entries"].as_array().unwrap();
    assert_eq!(entries[1]["invitation"], first.as_str());
    assert_eq!(entries[1]["details"]["masked"], true);
    assert_eq!(entries[1]["details"]["comment"], true);
    assert_eq!(entries[3]["details"]["masked"], true);
    assert_eq!(entries[5]["details"]["kind"], "transfer");
    assert_eq!(entries[10]["details"], json!({"from": "lead", "to": "bob"}));
    assert_eq!(entries[11]["details"]["reason"], "ended_by_lead");
    assert!(entries.iter().all(|e| e["session"] == session.as_str()));
    let text = own.to_string();
    assert!(!text.contains("SECRET"), "texts are not audited: {text}");
    for outsider in [&lead, &ann] {
        assert_problem(&outsider.audit(&session).await, 403, "forbidden");
    }
    // Paged: two at a time, the same entries.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get(
                &format!("/v1/sessions/{session}/audit?limit=5{cursor}"),
                &bob.token,
            )
            .await
            .expect_status(200);
        paged.extend(trail(&page["entries"]));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, expected);

    // The admin reads the same through the account's trail.
    let admin = ADMIN;
    let by_session = app
        .get(
            &format!("/v1/accounts/{ACME}/audit?session={session}"),
            admin,
        )
        .await
        .expect_status(200);
    assert_eq!(trail(&by_session["entries"]), expected);

    // Administrative changes, after `since`; refused ones leave nothing.
    let since = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    app.agent(ACME, "cid", "Cid", &["support", "billing"]).await;
    let delete = |path: String| {
        let app = &app;
        async move { app.delete(&path, admin).await }
    };
    assert_problem(
        &delete(format!("/v1/accounts/{ACME}/portals/nowhere")).await,
        404,
        "not_found",
    );
    let bad_policy = app
        .call(
            awc::http::Method::PATCH,
            &format!("/v1/accounts/{ACME}"),
            Some(admin),
            Some(&json!({"policy": {"max_agents_per_session": -1}})),
        )
        .await;
    assert_problem(&bad_policy, 400, "invalid_request");
    app.call(
        awc::http::Method::PATCH,
        &format!("/v1/accounts/{ACME}"),
        Some(admin),
        Some(&json!({"policy": {"masking": false}})),
    )
    .await
    .expect_status(200);
    app.post_empty(&format!("/v1/accounts/{ACME}/agents/bob/logout"), admin)
        .await
        .expect_status(204);
    delete(format!("/v1/accounts/{ACME}/portals/billing"))
        .await
        .expect_status(204);
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let recent = app
        .get(&format!("/v1/accounts/{ACME}/audit?since={since}"), admin)
        .await
        .expect_status(200);
    assert_eq!(
        trail(&recent["entries"]),
        [
            row("-", "agent_created", "cid"),
            row("-", "policy_changed", "-"),
            row("-", "agent_logged_out", "bob"),
            row("-", "agent_updated", "cid"),
            row("-", "portal_deleted", "-"),
        ]
    );
    let entries = recent["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["actor"]["kind"] == "admin"));
    assert_eq!(entries[1]["details"]["fields"], json!(["masking"]));
    assert_eq!(entries[2]["details"]["reason"], "admin");
    assert_eq!(entries[3]["details"]["portals"], json!(["support"]));
    assert_eq!(entries[4]["details"]["portal"], "billing");

    // By agent: what Ann did and what named her (an invitation to her
    // too), provisioning included.
    let anns = app
        .get(&format!("/v1/accounts/{ACME}/audit?agent=ann"), admin)
        .await
        .expect_status(200);
    assert_eq!(
        trail(&anns["entries"]),
        [
            row("-", "agent_created", "ann"),
            row("lead", "invitation_sent", "-"),
            row("ann", "invitation_accepted", "-"),
            row("ann", "participant_joined", "ann"),
            row("lead", "participant_unmasked", "ann"),
        ]
    );
    // Bad filters are refused.
    for query in [
        "agent=NOT%20AN%20ID",
        "since=yesterday",
        "limit=0",
        "cursor=x",
    ] {
        let refused = app
            .get(&format!("/v1/accounts/{ACME}/audit?{query}"), admin)
            .await;
        assert_problem(&refused, 400, "invalid_request");
    }
}
