//! Collaboration beyond the seed across nodes: a transfer sent through one
//! node and accepted through another, escalations after a node's death,
//! and a dead node's agents fading (node leases).

use serde_json::{Value, json};

use super::scenarios::apps;
use super::support::{RedisServer, cluster};
use crate::common::{
    ACME, EVENT_WAIT, QUIET, assert_problem, id_of, participant_ids, pluck, strings,
};

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

/// `collabd_agents_faded_total` of one node.
async fn faded_on(app: &crate::common::TestApp) -> u64 {
    let reply = app
        .call(awc::http::Method::GET, "/metrics", None, None)
        .await;
    assert_eq!(reply.status, 200);
    let metrics = reply.text;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("collabd_agents_faded_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no collabd_agents_faded_total in {metrics}"))
}

#[actix_rt::test]
async fn a_killed_nodes_agents_fade_in_seconds_and_come_back_through_another_node() {
    let redis = RedisServer::start();
    let (_, mut nodes) = cluster(&redis, 3);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    // Ann works through node 1 only; the lead, Bob and Cid through the others.
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let ann = apps[1].online(ACME, "ann", "Ann", "billing").await;
    let bob = apps[2].online(ACME, "bob", "Bob", "support").await;
    let _cid = apps[0].online(ACME, "cid", "Cid", "billing").await;
    // Dora logged in through node 1 but streams from node 2: she stays.
    let dora = apps[1].online(ACME, "dora", "Dora", "billing").await;
    let (_anns, _) = ann.events().await;
    let (_doras, _) = dora.on(&apps[2]).events().await;
    let (mut bobs, _) = bob.events().await;
    let session = lead.create_session("web", "Carl").await.id;
    // Escalation in a minute: only the fade makes it happen sooner.
    let sent = lead
        .invite(
            &session,
            json!({"target": {"agent": "ann"},
                   "escalate": {"after_secs": 60, "portal": "support"}}),
        )
        .await
        .expect_status(201);
    let inv = id_of(&sent);
    let online = |app: &crate::common::TestApp| {
        let (app, token) = (app.clone(), lead.token.clone());
        async move {
            let window = app.collaborators(&token, None).await.expect_status(200);
            let mut ids = pluck(&window["agents"], "id");
            ids.sort();
            ids
        }
    };
    assert_eq!(online(&apps[0]).await, ["ann", "bob", "cid", "dora"]);

    let killed = std::time::Instant::now();
    nodes[1].kill9();
    // Well within the presence TTL (15 s) and the escalation (60 s).
    let offer = bobs
        .wait_for("invitation_offered", std::time::Duration::from_secs(10))
        .await;
    let escalated_after = killed.elapsed();
    assert_eq!(offer["id"], inv.as_str());
    eprintln!(
        "kill -9 to the escalation's offer: {escalated_after:?} (bound {:?})",
        collabd::backplane::redis::FADE_BOUND
    );
    assert_eq!(online(&apps[2]).await, ["bob", "cid", "dora"]);
    // A portal invitation now goes to Cid (and Dora), not to Ann.
    let portal = lead
        .invite(&session, json!({"target": {"portal": "billing"}}))
        .await
        .expect_status(201);
    let mut offered = strings(&portal["recipients"]);
    offered.sort();
    assert_eq!(offered, ["cid", "dora"], "{portal}");
    // Reaped once, by one of the two survivors.
    assert_eq!(faded_on(&apps[0]).await + faded_on(&apps[2]).await, 1);

    // Ann's console reconnects through node 2: she is back.
    let (_anns, snapshot) = ann.on(&apps[2]).events().await;
    assert_eq!(snapshot["agent"]["portal"]["id"], "billing", "{snapshot}");
    assert_eq!(online(&apps[0]).await, ["ann", "bob", "cid", "dora"]);
}

#[actix_rt::test]
async fn a_redis_outage_that_stops_every_nodes_lease_renewal_fades_nobody() {
    let mut redis = RedisServer::start();
    let (_, nodes) = cluster(&redis, 2);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let ann = apps[1].online(ACME, "ann", "Ann", "billing").await;
    let (mut anns, _) = ann.events().await;
    let session = lead.create_session("web", "Carl").await.id;
    let sent = lead
        .invite(
            &session,
            json!({"target": {"agent": "ann"},
                   "escalate": {"after_secs": 60, "portal": "billing"}}),
        )
        .await
        .expect_status(201);
    anns.wait_for("invitation_offered", EVENT_WAIT).await;

    // Redis is away for 3 s (longer than lease + grace): every node's lease
    // runs out, which is Redis's doing, not a node's death.
    redis.kill();
    actix_rt::time::sleep(std::time::Duration::from_secs(3)).await;
    redis.restart();
    // Time for each node to renew again, and for a wrong reap to show.
    actix_rt::time::sleep(std::time::Duration::from_secs(4)).await;

    assert_eq!(faded_on(&apps[0]).await + faded_on(&apps[1]).await, 0);
    let offers = ann.my_invitations().await;
    assert_eq!(pluck(&Value::from(offers), "id"), [id_of(&sent)]);
    let window = apps[0]
        .collaborators(&lead.token, None)
        .await
        .expect_status(200);
    assert_eq!(pluck(&window["agents"], "id"), ["ann"]);
}
