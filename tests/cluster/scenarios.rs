//! Several real collabd processes on one real Redis behave as one service.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::support::{RedisServer, cluster};
use crate::common::{ACME, EVENT_WAIT, EventStream, TestApp, id_of, pluck};

/// How long a node may take to notice Redis is back and become ready.
const RECOVERY: Duration = Duration::from_secs(20);

pub(super) fn apps(nodes: &[super::support::Node]) -> Vec<TestApp> {
    nodes.iter().map(|n| TestApp::remote(n.port)).collect()
}

/// Waits until `/readyz` answers 200 (`ready`) or not, failing after `within`.
pub(super) async fn wait_ready(app: &TestApp, ready: bool, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = app
            .call(awc::http::Method::GET, "/readyz", None, None)
            .await
            .status;
        if (status == 200) == ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {} not ready={ready} within {within:?} (status {status})",
            app.port
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn agents_logged_in_through_different_nodes_are_seen_everywhere_and_portal_alerts_reach_every_stream()
 {
    let redis = RedisServer::start();
    let (_, nodes) = cluster(&redis, 3);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    let mut agents = Vec::new();
    for i in 0..6 {
        // Logged in through node i % 3 …
        agents.push(
            apps[i % 3]
                .online(ACME, &format!("agent{i}"), &format!("Agent {i}"), "support")
                .await,
        );
    }
    // … and every node's collaboration window shows every other agent.
    for app in &apps {
        let window = app
            .collaborators(&agents[0].token, None)
            .await
            .expect_status(200);
        assert_eq!(
            pluck(&window["agents"], "id").len(),
            5,
            "window on node {}: {window}",
            app.port
        );
    }
    // Streams held on another node than the login's.
    let mut streams: Vec<EventStream> = Vec::new();
    for (i, agent) in agents.iter().enumerate().skip(1) {
        streams.push(apps[(i + 1) % 3].agent_events(&agent.token).await.0);
    }
    let (session, _) = apps[0]
        .create_session(&agents[0].token, "web", "Carl")
        .await;
    let invitation = apps[1]
        .invite(
            &agents[0].token,
            &id_of(&session),
            json!({"target": {"portal": "support"}, "comment": "help"}),
        )
        .await
        .expect_status(201);
    for stream in &mut streams {
        let offer = stream.wait_for("invitation_offered", EVENT_WAIT).await;
        assert_eq!(offer["id"], invitation["id"]);
        assert_eq!(offer["comment"], "help");
    }
}

#[actix_rt::test]
async fn racing_accepts_spread_over_three_nodes_have_exactly_one_winner_every_time() {
    let redis = RedisServer::start();
    let (_, nodes) = cluster(&redis, 3);
    racing_accepts(&apps(&nodes), 8).await;
}

/// 24 agents logged in through three nodes race to accept each of
/// `rounds` portal invitations: one wins, every other is told 409
/// `invitation_taken`, every stream sees its outcome.
pub(super) async fn racing_accepts(apps: &[TestApp], rounds: usize) {
    apps[0]
        .acme(json!({"max_active_sessions_per_agent": 100}))
        .await;
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let mut recipients = Vec::new();
    for i in 0..24 {
        recipients.push(
            apps[i % 3]
                .online(ACME, &format!("r{i:02}"), &format!("R {i}"), "support")
                .await,
        );
    }
    let mut streams = Vec::new();
    for (i, r) in recipients.iter().enumerate() {
        streams.push(apps[(i + 2) % 3].agent_events(&r.token).await.0);
    }
    for round in 0..rounds {
        let (session, _) = apps[round % 3]
            .create_session(&lead.token, "queue", &format!("Customer {round}"))
            .await;
        let invitation = apps[(round + 1) % 3]
            .invite(
                &lead.token,
                &id_of(&session),
                json!({"target": {"portal": "support"}}),
            )
            .await
            .expect_status(201);
        let inv = id_of(&invitation);
        for stream in &mut streams {
            let offer = stream.wait_for("invitation_offered", EVENT_WAIT).await;
            assert_eq!(offer["id"], inv.as_str());
        }
        let accepts = recipients
            .iter()
            .enumerate()
            .map(|(i, r)| apps[i % 3].accept(&r.token, &inv));
        let replies = join_all(accepts).await;
        let winners: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == 200)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: statuses {:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        for (i, reply) in replies.iter().enumerate().filter(|(i, _)| *i != winners[0]) {
            assert_eq!(
                reply.status, 409,
                "round {round}, recipient {i}: {}",
                reply.text
            );
            assert_eq!(reply.json["code"], "invitation_taken");
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            if i == winners[0] {
                stream.wait_for("invitation_accepted", EVENT_WAIT).await;
            } else {
                let withdrawn = stream.wait_for("invitation_withdrawn", EVENT_WAIT).await;
                assert_eq!(withdrawn["invitation"], inv.as_str());
                assert_eq!(withdrawn["reason"], "accepted_by_other");
            }
        }
        let view = apps[2]
            .session(&lead.token, &id_of(&session))
            .await
            .expect_status(200);
        assert_eq!(
            view["participants"].as_array().map(Vec::len),
            Some(2),
            "round {round}: {view}"
        );
    }
}

#[actix_rt::test]
async fn killing_the_node_a_session_was_created_on_loses_nothing_acknowledged() {
    let redis = RedisServer::start();
    let (_, mut nodes) = cluster(&redis, 3);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    let ann = apps[0].online(ACME, "ann", "Ann", "support").await;
    let bob = apps[0].online(ACME, "bob", "Bob", "support").await;
    let (session, customer) = apps[0].create_session(&ann.token, "web", "Carl").await;
    let sid = id_of(&session);
    let invitation = apps[0]
        .invite(&ann.token, &sid, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    apps[0]
        .accept(&bob.token, &id_of(&invitation))
        .await
        .expect_status(200);
    for i in 0..5 {
        apps[0]
            .say(&ann.token, &sid, &format!("message {i}"), "everyone")
            .await
            .expect_status(201);
    }
    apps[0]
        .customer_say(&customer, "customer words")
        .await
        .expect_status(201);

    nodes[0].kill9();

    let view = apps[1].session(&ann.token, &sid).await.expect_status(200);
    let mut ids = pluck(
        &view["participants"]
            .as_array()
            .cloned()
            .map(|p| Value::Array(p.iter().map(|p| p["agent"].clone()).collect()))
            .unwrap_or_default(),
        "id",
    );
    ids.sort();
    assert_eq!(ids, ["ann", "bob"]);
    let texts: Vec<String> =
        apps[2].messages(&bob.token, &sid).await.expect_status(200)["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["text"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
    // Newest first.
    assert_eq!(
        texts,
        [
            "customer words",
            "message 4",
            "message 3",
            "message 2",
            "message 1",
            "message 0",
        ]
    );
    // Work goes on through the survivors.
    apps[1]
        .say(&bob.token, &sid, "still here", "everyone")
        .await
        .expect_status(201);
    let customer_view = apps[2]
        .customer_messages(&customer)
        .await
        .expect_status(200);
    assert_eq!(customer_view["messages"].as_array().map(Vec::len), Some(7));
}

#[actix_rt::test]
async fn after_a_redis_restart_nodes_become_ready_by_themselves_and_alerts_flow_again() {
    let mut redis = RedisServer::start();
    let (_, nodes) = cluster(&redis, 2);
    let apps = apps(&nodes);
    for app in &apps {
        wait_ready(app, true, RECOVERY).await;
    }
    apps[0].acme(json!({})).await;
    let ann = apps[0].online(ACME, "ann", "Ann", "support").await;
    let bob = apps[1].online(ACME, "bob", "Bob", "support").await;
    let (mut bob_stream, _) = apps[1].agent_events(&bob.token).await;

    redis.kill();
    for app in &apps {
        wait_ready(app, false, RECOVERY).await;
    }
    let refused = apps[0]
        .call(awc::http::Method::GET, "/v1/me", Some(&ann.token), None)
        .await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(refused.content_type.starts_with("application/problem+json"));

    redis.restart();
    for app in &apps {
        wait_ready(app, true, RECOVERY).await;
    }
    // Acknowledged provisioning survived (AOF); the stream resynced.
    bob_stream.wait_for("snapshot", RECOVERY).await;
    apps[0]
        .login(&ann.token, "support")
        .await
        .expect_status(200);
    apps[1]
        .login(&bob.token, "support")
        .await
        .expect_status(200);
    let (session, _) = apps[0].create_session(&ann.token, "web", "Carl").await;
    let invitation = apps[0]
        .invite(
            &ann.token,
            &id_of(&session),
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    let offer = bob_stream.wait_for("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], invitation["id"]);
}

#[actix_rt::test]
async fn a_stalled_client_does_not_delay_the_others() {
    let redis = RedisServer::start();
    let (_, nodes) = cluster(&redis, 2);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    let ann = apps[0].online(ACME, "ann", "Ann", "support").await;
    let bob = apps[0].online(ACME, "bob", "Bob", "support").await;
    let (session, _) = apps[0].create_session(&ann.token, "web", "Carl").await;
    let sid = id_of(&session);
    let inv = apps[0]
        .invite(&ann.token, &sid, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    apps[0]
        .accept(&bob.token, &id_of(&inv))
        .await
        .expect_status(200);
    // Ann's stream on node 1 is opened and never read again; Bob's is read.
    let _stalled = apps[1].connect_stream("/v1/me/events", &ann.token).await;
    let (mut bob_stream, _) = apps[1].agent_events(&bob.token).await;
    let padding = "x".repeat(3900);
    for i in 0..400 {
        apps[0]
            .say(&bob.token, &sid, &format!("{i} {padding}"), "agents")
            .await
            .expect_status(201);
    }
    for i in 0..400 {
        let message = bob_stream.wait_for("message", EVENT_WAIT).await;
        assert!(
            message["message"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{i} ")))
        );
    }
}

#[actix_rt::test]
async fn a_node_whose_copy_of_a_session_is_old_still_withdraws_an_invitation_it_never_saw() {
    let redis = RedisServer::start();
    let (_, nodes) = cluster(&redis, 2);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    let ann = apps[0].online(ACME, "ann", "Ann", "billing").await;
    let bob = apps[1].online(ACME, "bob", "Bob", "support").await;
    let session = ann.create_session("web", "Carl").await;
    let sid = session.id.clone();
    // Node 1 keeps a copy of the session from before the invitation …
    let _carl = session.on(&apps[1]).customer_events().await;
    // … which node 0 then sends.
    let invitation = ann
        .invite(&sid, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    // Bob logs out through node 1: its withdrawal must reach the session.
    bob.logout().await.expect_status(204);
    let closed = apps[0]
        .get(
            &format!("/v1/sessions/{sid}/invitations/{}", id_of(&invitation)),
            &ann.token,
        )
        .await
        .expect_status(200);
    assert_eq!(closed["status"], "cancelled", "{closed}");
    assert_eq!(closed["closed_reason"], "recipient_unavailable");
    let view = ann.on(&apps[1]).view(&sid).await.expect_status(200);
    assert_eq!(view["invitations"], json!([]));
}

/// Stored data no node can read (a bug, or a writer of another version) is
/// a 500 `internal` that is logged, not a 503 "retry shortly" a client
/// would retry for ever; the rest of the account keeps working.
#[actix_rt::test]
async fn an_unreadable_stored_session_is_a_logged_500_not_a_retry() {
    let redis = RedisServer::start();
    let (namespace, nodes) = cluster(&redis, 2);
    let apps = apps(&nodes);
    apps[0].acme(json!({})).await;
    let ann = apps[0].online(ACME, "ann", "Ann", "support").await;
    let (session, _) = apps[0].create_session(&ann.token, "web", "Carl").await;
    let sid = id_of(&session);
    let key = format!("collabd:{{{namespace}:{ACME}}}:session:{sid}");
    assert_eq!(redis.cli(&["HSET", &key, "s", "not a session"]).trim(), "0");

    // The other node has never loaded the session: it reads the bytes.
    let reply = apps[1].session(&ann.token, &sid).await;
    let problem = reply.expect_status(500);
    assert_eq!(problem["code"], "internal");
    assert_eq!(reply.header("retry-after"), "");
    assert!(
        nodes[1]
            .logged(
                "stored data is unreadable",
                std::time::Duration::from_secs(5)
            )
            .await,
        "the node logs it"
    );
    let (other, _) = apps[1].create_session(&ann.token, "web", "Dora").await;
    apps[1]
        .session(&ann.token, &id_of(&other))
        .await
        .expect_status(200);
}
