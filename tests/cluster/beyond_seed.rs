//! Collaboration beyond the seed across nodes: a transfer sent through one
//! node and accepted through another.

use serde_json::json;

use super::scenarios::apps;
use super::support::{RedisServer, cluster};
use crate::common::{ACME, EVENT_WAIT, QUIET, assert_problem, id_of, participant_ids};

#[actix_rt::test]
async fn a_transfer_accepted_on_another_node_than_the_leads_hands_the_session_over() {
    let redis = RedisServer::start();
    let (_, nodes) = cluster(&redis, 2);
    let apps = apps(&nodes);
    // One session at a time each: the hand-over must move the counts too.
    apps[0]
        .acme(json!({"max_active_sessions_per_agent": 1}))
        .await;
    let lead = apps[0].online(ACME, "lead", "Lead Lou", "billing").await;
    let ann = apps[1].online(ACME, "ann", "Ann", "support").await;
    let (session, customer) = apps[0].create_session(&lead.token, "web", "Carl").await;
    let session = id_of(&session);
    let (mut carl, _) = apps[0].customer_events(&customer).await;
    let (mut lous, _) = lead.events().await;
    let (mut anns, _) = ann.events().await;

    // The lead and its customer use node 0, the recipient node 1.
    let sent = lead
        .transfer(&session, json!({"target": {"portal": "support"}}))
        .await
        .expect_status(201);
    let inv = id_of(&sent);
    let offer = anns.wait_for("invitation_offered", EVENT_WAIT).await;
    assert_eq!(
        (offer["id"].as_str(), offer["kind"].as_str()),
        (Some(inv.as_str()), Some("transfer"))
    );

    let accepted = ann.accept(&inv).await.expect_status(200);
    assert_eq!(accepted["session"]["lead"], "ann");
    assert_eq!(participant_ids(&accepted["session"]), ["ann"]);

    let changed = lous.wait_for("lead_changed", EVENT_WAIT).await;
    assert_eq!(changed["lead"]["id"], "ann");
    let left = lous.wait_for("participant_left", EVENT_WAIT).await;
    assert_eq!(left["participant"]["agent"]["id"], "lead");
    let joined = carl.expect("agent_joined", EVENT_WAIT).await;
    assert_eq!(joined["agent"]["name"], "Ann");
    // For a moment the session had two agents: the customer reconnects.
    let reconnect = carl.expect("reconnect_required", EVENT_WAIT).await;
    assert_eq!(reconnect["generation"], 2);
    let left = carl.expect("agent_left", EVENT_WAIT).await;
    assert_eq!(left["agent"]["name"], "Lead Lou");
    carl.assert_silent(QUIET).await;

    // Both nodes agree; the old lead is out and free for a new session,
    // the new one is at its limit.
    for app in &apps {
        let view = ann.on(app).view(&session).await.expect_status(200);
        assert_eq!(view["lead"], "ann");
        assert_problem(&lead.on(app).view(&session).await, 403, "forbidden");
    }
    lead.on(&apps[1]).create_session("web", "Dora").await;
    let busy = apps[0]
        .post(
            "/v1/sessions",
            &ann.token,
            json!({"mode": "web", "customer": {"name": "Eve"}}),
        )
        .await;
    assert_problem(&busy, 409, "agent_busy");
}

#[actix_rt::test]
async fn an_escalation_fires_once_after_the_node_that_sent_the_invitation_was_killed() {
    let redis = RedisServer::start();
    let (_, mut nodes) = cluster(&redis, 3);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    // The lead works through node 0; everyone else through nodes 1 and 2.
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let ann = apps[1].online(ACME, "ann", "Ann", "billing").await;
    let bob = apps[1].online(ACME, "bob", "Bob", "support").await;
    let cid = apps[2].online(ACME, "cid", "Cid", "support").await;
    let hal = apps[2].online(ACME, "hal", "Hal", "billing").await;
    let session = lead.create_session("web", "Carl").await.id;
    lead.bring_in(&session, &hal, false).await;
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;
    let (mut cids, _) = cid.events().await;
    let (mut hals, _) = hal.events().await;

    let sent = lead
        .invite(
            &session,
            json!({"target": {"agent": "ann"},
                   "escalate": {"after_secs": 5, "portal": "support"}}),
        )
        .await
        .expect_status(201);
    let inv = id_of(&sent);
    anns.wait_for("invitation_offered", EVENT_WAIT).await;
    // The node that armed the escalation dies before it is due.
    nodes[0].kill9();

    let due = std::time::Duration::from_secs(20);
    let withdrawn = anns.wait_for("invitation_withdrawn", due).await;
    assert_eq!(withdrawn["reason"], "escalated");
    for stream in [&mut bobs, &mut cids] {
        let offer = stream.wait_for("invitation_offered", due).await;
        assert_eq!(offer["id"], inv.as_str());
    }
    let escalated = hals.wait_for("invitation_escalated", due).await;
    assert_eq!(escalated["invitation"]["escalation"]["from"], "ann");
    // Once across the cluster: no second escalation, no second offer.
    hals.assert_silent(QUIET).await;
    bobs.assert_silent(QUIET).await;
    let accepted = cid.accept(&inv).await.expect_status(200);
    assert_eq!(accepted["invitation"]["accepted_by"], "cid");
    assert_problem(&bob.accept(&inv).await, 409, "invitation_taken");
    let trail = hal.on(&apps[1]).view(&session).await.expect_status(200);
    assert_eq!(participant_ids(&trail), ["lead", "hal", "cid"]);
    let audit = apps[1]
        .get(
            &format!("/v1/accounts/{ACME}/audit?session={session}"),
            crate::common::ADMIN,
        )
        .await
        .expect_status(200);
    let escalations = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "invitation_escalated")
        .count();
    assert_eq!(escalations, 1, "{audit}");
}
