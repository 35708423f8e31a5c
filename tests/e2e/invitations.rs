//! Invitations: direct and portal offers, policy switches, first accept
//! wins, decline, cancel, expiry, logout, and the session limits.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::common::{
    ACME, EVENT_WAIT, QUIET, Scene, TestApp, assert_problem, id_of, participant_ids, pluck, strings,
};

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[actix_rt::test]
async fn a_direct_invitation_is_offered_only_to_that_agent_with_the_comment() {
    let app = TestApp::spawn().await;
    let ([ann, bob, cid], session) =
        Scene::support_session(&app, json!({}), ["ann", "bob", "cid"]).await;
    let session = session.id;
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;
    let (mut cids, _) = cid.events().await;

    let invitation = ann
        .invite(
            &session,
            json!({"target": {"agent": "bob"}, "masked": false,
                   "comment": "needs a database expert"}),
        )
        .await
        .expect_status(201);
    assert_eq!(invitation["session"], session.as_str());
    assert_eq!(invitation["inviter"], json!({"id": "ann", "name": "Ann"}));
    assert_eq!(invitation["target"], json!({"agent": "bob"}));
    assert_eq!(invitation["masked"], false);
    assert_eq!(invitation["comment"], "needs a database expert");
    assert_eq!(invitation["recipients"], json!(["bob"]));
    assert_eq!(invitation["declined_by"], json!([]));
    assert_eq!(invitation["status"], "pending");
    assert_eq!(invitation["accepted_by"], json!(null));
    assert!(invitation["created_at"].is_string() && invitation["expires_at"].is_string());

    let offer = bobs.expect("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], invitation["id"]);
    assert_eq!(offer["session"], session.as_str());
    assert_eq!(offer["comment"], "needs a database expert");
    assert_eq!(offer["inviter"], json!({"id": "ann", "name": "Ann"}));
    assert_eq!(offer["customer"], json!({"name": "Carol"}));
    assert_eq!(offer["mode"], "web");
    assert_eq!(offer["masked"], false);
    assert_eq!(offer["expires_at"], invitation["expires_at"]);

    let sent = anns.expect("invitation_sent", EVENT_WAIT).await;
    assert_eq!(sent["session"], session.as_str());
    assert_eq!(sent["invitation"]["id"], invitation["id"]);

    // Cid's next event is a later portal invitation: the direct one never reached it.
    let later = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let offer = cids.expect("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], later["id"]);
    cids.assert_silent(QUIET).await;

    assert_eq!(
        pluck(&Value::from(bob.my_invitations().await), "id"),
        [id_of(&invitation), id_of(&later)]
    );
    assert_eq!(
        pluck(&Value::from(cid.my_invitations().await), "id"),
        [id_of(&later)]
    );
}

#[actix_rt::test]
async fn a_portal_invitation_is_offered_to_every_logged_in_member_except_the_inviter_and_participants()
 {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .online("ann", "Ann", "support")
        .online("bob", "Bob", "support")
        .online("cid", "Cid", "support")
        .online("dan", "Dan", "support")
        // A member of the portal, but logged into another one.
        .member("eve", "Eve", &["support", "billing"])
        // A member who is not logged in at all.
        .member("fred", "Fred", &["support"])
        .session("ann")
        .build()
        .await;
    let [ann, bob, cid, dan, eve, fred] = scene.agents();
    let session = scene.session().id;
    eve.login("billing").await.expect_status(200);
    ann.bring_in(&session, &bob, false).await;

    let (mut bobs, _) = bob.events().await;
    let (mut cids, _) = cid.events().await;
    let (mut dans, _) = dan.events().await;
    let (mut eves, _) = eve.events().await;

    let invitation = ann
        .invite(
            &session,
            json!({"target": {"portal": "support"}, "comment": "anyone free?"}),
        )
        .await
        .expect_status(201);
    assert_eq!(invitation["target"], json!({"portal": "support"}));
    assert_eq!(sorted(strings(&invitation["recipients"])), ["cid", "dan"]);

    for stream in [&mut cids, &mut dans] {
        let offer = stream.expect("invitation_offered", EVENT_WAIT).await;
        assert_eq!(offer["id"], invitation["id"]);
        assert_eq!(offer["comment"], "anyone free?");
        assert_eq!(offer["target"], json!({"portal": "support"}));
        assert_eq!(offer["customer"]["name"], "Carol");
    }
    // Bob is in the session already: he hears of it as a session agent.
    let sent = bobs.expect("invitation_sent", EVENT_WAIT).await;
    assert_eq!(sent["invitation"]["id"], invitation["id"]);

    // Eve's next event is a later direct invitation: the portal one never reached her.
    let direct = ann
        .invite(&session, json!({"target": {"agent": "eve"}}))
        .await
        .expect_status(201);
    let offer = eves.expect("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], direct["id"]);

    assert!(fred.my_invitations().await.is_empty());
    // Logging in later does not make Fred a recipient.
    fred.login("support").await.expect_status(200);
    assert!(fred.my_invitations().await.is_empty());
    assert_problem(
        &fred.accept(&id_of(&invitation)).await,
        403,
        "not_a_recipient",
    );
}

#[actix_rt::test]
async fn each_collaboration_feature_the_policy_disables_is_403_feature_disabled_and_offers_nothing()
{
    let app = TestApp::spawn().await;
    let cases = [
        (
            "masking",
            json!({"target": {"agent": "bob"}, "masked": true}),
            Some(json!({"target": {"agent": "bob"}, "masked": false})),
        ),
        (
            "comments",
            json!({"target": {"agent": "bob"}, "comment": "psst"}),
            Some(json!({"target": {"agent": "bob"}})),
        ),
        (
            "portal_invitations",
            json!({"target": {"portal": "support"}}),
            Some(json!({"target": {"agent": "bob"}})),
        ),
        ("collaboration", json!({"target": {"agent": "bob"}}), None),
    ];
    for (feature, refused, allowed) in cases {
        let account = format!("no-{}", feature.replace('_', "-"));
        app.account(&account, json!({ feature: false })).await;
        app.portal(&account, "support", "Support").await;
        let ann = app.online(&account, "ann", "Ann", "support").await;
        let bob = app.online(&account, "bob", "Bob", "support").await;
        let session = ann.create_session("web", "Carol").await.id;
        let (mut bobs, _) = bob.events().await;

        let reply = ann.invite(&session, refused).await;
        assert_problem(&reply, 403, "feature_disabled");
        let view = ann.view(&session).await.expect_status(200);
        assert_eq!(view["invitations"], json!([]), "{feature}");
        assert!(bob.my_invitations().await.is_empty(), "{feature}");

        match allowed {
            Some(allowed) => {
                // What the policy still allows works, and is the first thing Bob hears.
                let invitation = ann.invite(&session, allowed).await.expect_status(201);
                let offer = bobs.expect("invitation_offered", EVENT_WAIT).await;
                assert_eq!(offer["id"], invitation["id"], "{feature}");
            }
            None => bobs.assert_silent(QUIET).await,
        }
    }
}

#[actix_rt::test]
async fn a_comment_longer_than_500_characters_is_400_and_one_of_500_is_accepted() {
    let app = TestApp::spawn().await;
    let ([ann, _bob], session) = Scene::support_session(&app, json!({}), ["ann", "bob"]).await;
    let session = session.id;

    let too_long = ann
        .invite(
            &session,
            json!({"target": {"agent": "bob"}, "comment": "x".repeat(501)}),
        )
        .await;
    assert_problem(&too_long, 400, "invalid_request");
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["invitations"], json!([]));

    // Characters, not bytes: 500 two-byte characters fit.
    let longest = "é".repeat(500);
    let invitation = ann
        .invite(
            &session,
            json!({"target": {"agent": "bob"}, "comment": longest}),
        )
        .await
        .expect_status(201);
    assert_eq!(invitation["comment"], longest.as_str());
}

#[actix_rt::test]
async fn the_first_accept_wins_and_a_repeat_by_the_winner_is_200_again() {
    let app = TestApp::spawn().await;
    let ([ann, bob, cid], session) =
        Scene::support_session(&app, json!({}), ["ann", "bob", "cid"]).await;
    let session = session.id;
    let invitation = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    let (mut anns, _) = ann.events().await;
    let (mut cids, _) = cid.events().await;

    let won = bob.accept(&inv).await.expect_status(200);
    assert_eq!(won["invitation"]["id"], inv.as_str());
    assert_eq!(won["invitation"]["status"], "accepted");
    assert_eq!(won["invitation"]["accepted_by"], "bob");
    assert_eq!(won["session"]["id"], session.as_str());
    assert_eq!(participant_ids(&won["session"]), ["ann", "bob"]);
    assert_eq!(won["session"]["participants"][1]["role"], "collaborator");

    assert_problem(&cid.accept(&inv).await, 409, "invitation_taken");
    let again = bob.accept(&inv).await.expect_status(200);
    assert_eq!(again["invitation"]["accepted_by"], "bob");
    assert_eq!(participant_ids(&again["session"]), ["ann", "bob"]);

    let withdrawn = cids.expect("invitation_withdrawn", EVENT_WAIT).await;
    assert_eq!(
        withdrawn,
        json!({"invitation": inv, "session": session, "reason": "accepted_by_other",
               "accepted_by": {"id": "bob", "name": "Bob"}})
    );
    assert!(cid.my_invitations().await.is_empty());

    let accepted = anns.expect("invitation_accepted", EVENT_WAIT).await;
    assert_eq!(accepted["invitation"]["accepted_by"], "bob");
    let joined = anns.expect("participant_joined", EVENT_WAIT).await;
    assert_eq!(joined["participant"]["agent"]["id"], "bob");
    anns.expect("customer_reconnect_required", EVENT_WAIT).await;
    // The repeat changed nothing: no second join.
    anns.assert_silent(QUIET).await;
    assert_eq!(bob.active_sessions().await, 1);
}

#[actix_rt::test]
async fn twenty_concurrent_accepts_of_one_portal_invitation_give_one_200_and_nineteen_409_invitation_taken()
 {
    let app = TestApp::spawn().await;
    let ([ann], session) = Scene::support_session(&app, json!({}), ["ann"]).await;
    let session = session.id;
    let mut agents = Vec::new();
    for n in 1..=20 {
        let id = format!("agent-{n:02}");
        agents.push(
            app.online(ACME, &id, &format!("Agent {n}"), "support")
                .await,
        );
    }
    let mut streams = Vec::new();
    for agent in &agents {
        streams.push(agent.events().await.0);
    }
    let invitation = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    assert_eq!(strings(&invitation["recipients"]).len(), 20);
    for stream in &mut streams {
        let offer = stream.expect("invitation_offered", EVENT_WAIT).await;
        assert_eq!(offer["id"], inv.as_str());
    }

    let replies = join_all(agents.iter().map(|a| a.accept(&inv))).await;

    let winners: Vec<usize> = (0..replies.len())
        .filter(|&i| replies[i].status == 200)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one accept wins; statuses {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let winner = winners[0];
    assert_eq!(
        replies[winner].json["invitation"]["accepted_by"],
        agents[winner].id.as_str()
    );
    for (i, reply) in replies.iter().enumerate() {
        if i != winner {
            assert_problem(reply, 409, "invitation_taken");
        }
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        if i == winner {
            continue;
        }
        let withdrawn = stream.expect("invitation_withdrawn", EVENT_WAIT).await;
        assert_eq!(withdrawn["invitation"], inv.as_str());
        assert_eq!(withdrawn["reason"], "accepted_by_other");
    }
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(participant_ids(&view), ["ann", agents[winner].id.as_str()]);
}

#[actix_rt::test]
async fn a_portal_invitation_is_declined_once_every_recipient_declined() {
    let app = TestApp::spawn().await;
    let ([ann, bob, cid], session) =
        Scene::support_session(&app, json!({}), ["ann", "bob", "cid"]).await;
    let session = session.id;
    let invitation = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    let dan = app.online(ACME, "dan", "Dan", "support").await; // logged in too late
    let (mut anns, _) = ann.events().await;

    assert_problem(&dan.decline(&inv).await, 403, "not_a_recipient");

    let first = bob.decline(&inv).await.expect_status(200);
    assert_eq!(first["invitation"]["status"], "pending");
    // A recipient learns how many it was offered to, not to whom.
    assert_eq!(first["invitation"]["recipient_count"], 2);
    assert_eq!(first["invitation"]["recipients"], Value::Null);
    assert_eq!(first["invitation"]["declined_by"], Value::Null);
    let pending = ann.view(&session).await.expect_status(200);
    assert_eq!(pending["invitations"][0]["declined_by"], json!(["bob"]));
    let event = anns.expect("invitation_declined", EVENT_WAIT).await;
    assert_eq!(event["by"], "bob");
    assert_eq!(event["agent"], json!({"id": "bob", "name": "Bob"}));
    assert_eq!(event["invitation"]["status"], "pending");
    assert!(bob.my_invitations().await.is_empty());
    assert_eq!(
        pluck(&Value::from(cid.my_invitations().await), "id"),
        [inv.as_str()]
    );

    let last = cid.decline(&inv).await.expect_status(200);
    assert_eq!(last["invitation"]["status"], "declined");
    let closed = app
        .get(
            &format!("/v1/sessions/{session}/invitations/{inv}"),
            &ann.token,
        )
        .await
        .expect_status(200);
    assert_eq!(sorted(strings(&closed["declined_by"])), ["bob", "cid"]);
    let event = anns.expect("invitation_declined", EVENT_WAIT).await;
    assert_eq!(event["by"], "cid");
    assert_eq!(event["invitation"]["status"], "declined");

    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["invitations"], json!([]));
    assert_problem(&bob.accept(&inv).await, 409, "invitation_closed");
}

#[actix_rt::test]
async fn cancelling_an_invitation_withdraws_it_from_its_recipients() {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .online("ann", "Ann", "support")
        .online("zoe", "Zoe", "billing")
        .online("bob", "Bob", "support")
        .online("cid", "Cid", "support")
        .session("ann")
        .build()
        .await;
    let [ann, zoe, bob, cid] = scene.agents();
    let session = scene.session().id;
    ann.bring_in(&session, &zoe, false).await;
    let invitation = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;
    let (mut cids, _) = cid.events().await;

    // Someone outside the session may not cancel it.
    assert_problem(&cid.cancel(&session, &inv).await, 403, "forbidden");

    // Any agent of the session may, not only the inviter.
    let cancelled = zoe.cancel(&session, &inv).await.expect_status(200);
    assert_eq!(cancelled["id"], inv.as_str());
    assert_eq!(cancelled["status"], "cancelled");

    for stream in [&mut bobs, &mut cids] {
        let withdrawn = stream.expect("invitation_withdrawn", EVENT_WAIT).await;
        assert_eq!(
            withdrawn,
            json!({"invitation": inv, "session": session, "reason": "cancelled"})
        );
    }
    let event = anns.expect("invitation_cancelled", EVENT_WAIT).await;
    assert_eq!(event["reason"], "cancelled");
    assert_eq!(event["invitation"]["status"], "cancelled");

    assert!(bob.my_invitations().await.is_empty());
    assert_problem(&bob.accept(&inv).await, 409, "invitation_closed");
    assert_problem(&ann.cancel(&session, &inv).await, 409, "invitation_closed");
}

#[actix_rt::test]
async fn an_invitation_nobody_answers_expires_on_its_own_after_the_policy_ttl() {
    let app = TestApp::spawn().await;
    let ([ann, bob, cid], session) = Scene::support_session(
        &app,
        json!({"invitation_ttl_secs": 1}),
        ["ann", "bob", "cid"],
    )
    .await;
    let session = session.id;
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;
    let (mut cids, _) = cid.events().await;

    let invitation = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);

    // Nobody reads or touches the invitation: only a timer can close it.
    for stream in [&mut bobs, &mut cids] {
        stream.expect("invitation_offered", EVENT_WAIT).await;
        let withdrawn = stream.expect("invitation_withdrawn", EVENT_WAIT).await;
        assert_eq!(
            withdrawn,
            json!({"invitation": inv, "session": session, "reason": "expired"})
        );
    }
    anns.expect("invitation_sent", EVENT_WAIT).await;
    let expired = anns.expect("invitation_expired", EVENT_WAIT).await;
    assert_eq!(expired["session"], session.as_str());
    assert_eq!(expired["invitation"]["id"], inv.as_str());
    assert_eq!(expired["invitation"]["status"], "expired");

    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["invitations"], json!([]));
    assert!(bob.my_invitations().await.is_empty());
    assert_problem(&bob.accept(&inv).await, 409, "invitation_closed");
}

#[actix_rt::test]
async fn logging_out_withdraws_a_direct_invitation_from_its_invitee() {
    let app = TestApp::spawn().await;
    let ([ann, bob], session) = Scene::support_session(&app, json!({}), ["ann", "bob"]).await;
    let session = session.id;
    let invitation = ann
        .invite(&session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;

    assert_eq!(bob.logout().await.status, 204);

    let withdrawn = bobs.expect("invitation_withdrawn", EVENT_WAIT).await;
    assert_eq!(
        withdrawn,
        json!({"invitation": inv, "session": session, "reason": "recipient_unavailable"})
    );
    let cancelled = anns.expect("invitation_cancelled", EVENT_WAIT).await;
    assert_eq!(cancelled["reason"], "recipient_unavailable");
    assert_eq!(cancelled["invitation"]["status"], "cancelled");

    // Coming back does not bring the alert back.
    bob.login("support").await.expect_status(200);
    assert!(bob.my_invitations().await.is_empty());
    assert_problem(&bob.accept(&inv).await, 409, "invitation_closed");
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["invitations"], json!([]));
}

#[actix_rt::test]
async fn logging_out_withdraws_a_portal_invitation_only_from_the_agent_who_left() {
    let app = TestApp::spawn().await;
    let ([ann, bob, cid], session) =
        Scene::support_session(&app, json!({}), ["ann", "bob", "cid"]).await;
    let session = session.id;
    let (mut bob_live, _) = bob.events().await;
    let (mut cid_live, _) = cid.events().await;
    let invitation = ann
        .invite(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);
    bob_live.expect("invitation_offered", EVENT_WAIT).await;
    cid_live.expect("invitation_offered", EVENT_WAIT).await;

    assert_eq!(bob.logout().await.status, 204);

    // Bob's open stream is told at once; Cid's alert stays.
    let withdrawn = bob_live.expect("invitation_withdrawn", EVENT_WAIT).await;
    assert_eq!(withdrawn["invitation"], inv.as_str());
    assert_eq!(withdrawn["reason"], "recipient_unavailable");
    cid_live.assert_silent(QUIET).await;

    // Bob's alert is gone (DESIGN invariant 2: absent from his next
    // snapshot), even once he is back; Cid still holds it and can take it.
    bob.login("support").await.expect_status(200);
    let (_bobs, snapshot) = bob.events().await;
    assert_eq!(snapshot["invitations"], json!([]));
    assert!(bob.my_invitations().await.is_empty());
    assert_problem(&bob.accept(&inv).await, 409, "invitation_closed");
    assert_eq!(
        pluck(&Value::from(cid.my_invitations().await), "id"),
        [inv.as_str()]
    );
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(pluck(&view["invitations"], "id"), [inv.as_str()]);
    cid.accept(&inv).await.expect_status(200);
}

#[actix_rt::test]
async fn a_third_accept_into_a_session_limited_to_two_agents_is_409_session_full() {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .policy(json!({"max_agents_per_session": 2}))
        .online("ann", "Ann", "support")
        .online("bob", "Bob", "support")
        .online("cid", "Cid", "billing")
        .session("ann")
        .build()
        .await;
    let [ann, bob, cid] = scene.agents();
    let session = scene.session().id;
    let to_bob = ann
        .invite(&session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    let to_cid = ann
        .invite(&session, json!({"target": {"agent": "cid"}}))
        .await
        .expect_status(201);

    bob.accept(&id_of(&to_bob)).await.expect_status(200);
    assert_problem(&cid.accept(&id_of(&to_cid)).await, 409, "session_full");

    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(participant_ids(&view), ["ann", "bob"]);
    assert_eq!(cid.active_sessions().await, 0);
    app.online(ACME, "dan", "Dan", "support").await;
    assert_problem(
        &ann.invite(&session, json!({"target": {"agent": "dan"}}))
            .await,
        409,
        "session_full",
    );
}

#[actix_rt::test]
async fn an_agent_already_in_the_policy_maximum_of_sessions_cannot_accept_409_agent_busy() {
    let app = TestApp::spawn().await;
    let ([ann, bob], session) = Scene::support_session(
        &app,
        json!({"max_active_sessions_per_agent": 1}),
        ["ann", "bob"],
    )
    .await;
    let session = session.id;
    let own = bob.create_session("queue", "Dave").await;
    let invitation = ann
        .invite(&session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    let inv = id_of(&invitation);

    assert_problem(&bob.accept(&inv).await, 409, "agent_busy");
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(participant_ids(&view), ["ann"]);
    assert_eq!(bob.active_sessions().await, 1);

    // Once free again, the same invitation can be taken.
    bob.end(&own.id).await.expect_status(200);
    bob.accept(&inv).await.expect_status(200);
}

#[actix_rt::test]
async fn an_invitation_nobody_could_take_is_refused_with_a_specific_409() {
    let app = TestApp::spawn().await;
    let scene = Scene::builder(&app)
        .online("ann", "Ann", "support")
        .member("bob", "Bob", &["support"]) // never logs in
        .online("cid", "Cid", "billing")
        .session("ann")
        .build()
        .await;
    let [ann, _bob, cid] = scene.agents();
    let session = scene.session().id;
    app.portal(ACME, "nights", "Night Shift").await;

    let cases = [
        (json!({"target": {"agent": "bob"}}), "agent_unavailable"),
        (json!({"target": {"portal": "nights"}}), "no_agents_online"),
        // Only the inviter is logged into support.
        (json!({"target": {"portal": "support"}}), "no_agents_online"),
        (json!({"target": {"agent": "ann"}}), "already_participant"),
    ];
    for (body, code) in cases {
        assert_problem(&ann.invite(&session, body).await, 409, code);
    }
    ann.bring_in(&session, &cid, false).await;
    assert_problem(
        &ann.invite(&session, json!({"target": {"agent": "cid"}}))
            .await,
        409,
        "already_participant",
    );
    let view = ann.view(&session).await.expect_status(200);
    assert_eq!(view["invitations"], json!([]));
}
