//! collabd nodes on a real Redis Cluster (3 masters, 3 replicas, started by
//! the test): the load spreads over every master, every script stays in one
//! slot, first accept wins across nodes, and a master's failover heals by
//! itself without losing anything acknowledged with `wait_replicas = 1`,
//! and a slot moved by resharding takes its keys and subscriptions along.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use super::redis_cluster::RedisCluster;
use super::scenarios::{apps, racing_accepts, wait_ready};
use super::support::Node;
use crate::common::{ACME, EVENT_WAIT, id_of, pluck};

/// How long nodes may take to heal after a master's failover (the cluster
/// takes a few seconds to promote a replica with cluster-node-timeout 1000).
const HEAL: Duration = Duration::from_secs(30);

/// Starts `n` collabd nodes on `redis` in a fresh namespace.
fn nodes_on(redis: &RedisCluster, n: usize, env: &[(&str, &str)]) -> (String, Vec<Node>) {
    let namespace = format!("rc{:x}", rand_u32());
    let seeds = redis.urls().join(",");
    let mut all = vec![
        ("COLLABD__BACKPLANE__KIND", "redis-cluster"),
        ("COLLABD__BACKPLANE__REDIS_URLS", seeds.as_str()),
    ];
    all.extend_from_slice(env);
    let nodes = (0..n)
        .map(|i| Node::start_with("redis://unused", &namespace, &format!("node-{i}"), &all))
        .collect();
    (namespace, nodes)
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u32
}

/// Clients of `nodes`, once each is ready.
async fn ready_apps(nodes: &[Node]) -> Vec<crate::common::TestApp> {
    let apps = apps(nodes);
    for app in &apps {
        wait_ready(app, true, HEAL).await;
    }
    apps
}

/// Asserts no Redis node answered a `CROSSSLOT` error and no collabd node
/// logged one.
fn assert_no_crossslot(redis: &RedisCluster, nodes: &[Node]) {
    for port in redis.ports() {
        let errors = redis.info(port, "errorstats");
        assert!(
            !errors.contains("CROSSSLOT"),
            "redis {port} answered CROSSSLOT: {errors}"
        );
    }
    for node in nodes {
        let logs = node.logs().join("\n");
        assert!(
            !logs.contains("CROSSSLOT"),
            "a node logged CROSSSLOT:\n{logs}"
        );
    }
}

/// The agent ids of a session's participants, in order.
fn participants(view: &serde_json::Value) -> Vec<String> {
    view["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["agent"]["id"].as_str().map(str::to_owned))
        .collect()
}

#[actix_rt::test]
async fn thirty_accounts_spread_over_every_master_and_every_script_stays_in_one_slot() {
    let redis = RedisCluster::start();
    let (_, nodes) = nodes_on(&redis, 3, &[]);
    let apps = ready_apps(&nodes).await;
    let work = (0..30).map(|i| {
        let app = &apps[i % 3];
        let other = &apps[(i + 1) % 3];
        async move {
            let account = format!("tenant-{i:02}");
            app.account(&account, json!({})).await;
            app.portal(&account, "support", "Support").await;
            let lead = app.online(&account, "lead", "Lead", "support").await;
            let helper = other.online(&account, "helper", "Helper", "support").await;
            let (session, _) = app.create_session(&lead.token, "web", "Carl").await;
            let session = id_of(&session);
            let invitation = other
                .invite(
                    &lead.token,
                    &session,
                    json!({"target": {"portal": "support"}}),
                )
                .await
                .expect_status(201);
            app.accept(&helper.token, &id_of(&invitation))
                .await
                .expect_status(200);
            other
                .say(&helper.token, &session, "hello", "everyone")
                .await
                .expect_status(201);
            let view = app.session(&lead.token, &session).await.expect_status(200);
            assert_eq!(participants(&view), ["lead", "helper"], "{view}");
        }
    });
    join_all(work).await;
    // Every master holds keys and ran scripts: the tenants are spread.
    let masters = redis.keys_per_master();
    assert_eq!(masters.len(), 3, "{masters:?}");
    for (port, keys) in &masters {
        assert!(*keys > 0, "master {port} holds no keys: {masters:?}");
        let stats = redis.info(*port, "commandstats");
        assert!(
            stats.contains("cmdstat_evalsha") || stats.contains("cmdstat_eval:"),
            "master {port} ran no script: {stats}"
        );
        assert!(
            stats.contains("cmdstat_spublish"),
            "master {port} published nothing (sharded pub/sub): {stats}"
        );
    }
    // The admin's account list merges every bucket.
    let listed = apps[2]
        .get("/v1/accounts?limit=100", crate::common::ADMIN)
        .await
        .expect_status(200);
    let ids: Vec<String> = pluck(&listed["accounts"], "id");
    assert_eq!(ids.len(), 30, "{listed}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "listed by id");
    assert_no_crossslot(&redis, &nodes);
}

#[actix_rt::test]
async fn racing_accepts_across_three_nodes_on_a_redis_cluster_have_one_winner() {
    let redis = RedisCluster::start();
    let (_, nodes) = nodes_on(&redis, 3, &[]);
    let apps = ready_apps(&nodes).await;
    racing_accepts(&apps, 6).await;
    assert_no_crossslot(&redis, &nodes);
}

#[actix_rt::test]
async fn killing_the_accounts_master_heals_by_itself_and_loses_nothing_acknowledged_with_wait_replicas()
 {
    let mut redis = RedisCluster::start();
    let (namespace, nodes) = nodes_on(
        &redis,
        3,
        &[
            ("COLLABD__BACKPLANE__WAIT_REPLICAS", "1"),
            ("COLLABD__BACKPLANE__WAIT_TIMEOUT_MS", "2000"),
        ],
    );
    let apps = ready_apps(&nodes).await;
    apps[0].acme(json!({})).await;
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let bob = apps[1].online(ACME, "bob", "Bob", "support").await;
    let (mut bob_stream, _) = apps[2].agent_events(&bob.token).await;

    // Acknowledged before the kill: a session, an accept, messages.
    let (session, _) = apps[0].create_session(&lead.token, "web", "Carl").await;
    let session = id_of(&session);
    let invitation = apps[1]
        .invite(&lead.token, &session, json!({"target": {"agent": "bob"}}))
        .await
        .expect_status(201);
    apps[2]
        .accept(&bob.token, &id_of(&invitation))
        .await
        .expect_status(200);
    let mut said = Vec::new();
    for i in 0..10 {
        let text = format!("message {i}");
        apps[i % 3]
            .say(&lead.token, &session, &text, "everyone")
            .await
            .expect_status(201);
        said.push(text);
    }

    // Every change above waited for the account's replica (WAIT 1).
    assert!(
        redis
            .ports()
            .iter()
            .any(|&p| redis.info(p, "commandstats").contains("cmdstat_wait:")),
        "no master saw a WAIT"
    );

    // kill -9 the master that owns the account's slot, right away.
    let key = format!("collabd:{{{namespace}:{ACME}}}:account");
    let killed = redis.kill_master_for_key(&key);
    redis.wait_failover(killed, redis.keyslot(&key));

    // The nodes heal by themselves…
    for app in &apps {
        wait_ready(app, true, HEAL).await;
    }
    // The stream held through the failover was resynced from the state
    // (its node lost the subscription on the killed master).
    bob_stream.wait_for("snapshot", HEAL).await;
    // … but while the account's new master has no replica, no change can
    // be confirmed on one: it is refused as unconfirmed, never acknowledged.
    let unconfirmed = apps[0]
        .post(
            "/v1/sessions",
            &lead.token,
            json!({"mode": "web", "customer": {"name": "Zed"}}),
        )
        .await;
    crate::common::assert_problem(&unconfirmed, 503, "unavailable");
    // The old master comes back as the new master's replica.
    redis.restart(killed);
    let deadline = std::time::Instant::now() + HEAL;
    while !redis.whole() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old master did not rejoin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // … everything acknowledged is still there …
    let view = apps[1]
        .session(&lead.token, &session)
        .await
        .expect_status(200);
    assert_eq!(participants(&view), ["lead", "bob"], "{view}");
    let page = apps[2]
        .messages(&lead.token, &session)
        .await
        .expect_status(200);
    let texts = pluck(&page["messages"], "text");
    for text in &said {
        assert!(texts.contains(text), "{text} lost in the failover: {page}");
    }
    // … and alerts flow again to the stream held through the failover.
    let (second, _) = apps[0].create_session(&lead.token, "web", "Dora").await;
    let offered = apps[0]
        .invite(
            &lead.token,
            &id_of(&second),
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    loop {
        let event = bob_stream.wait_for("invitation_offered", HEAL).await;
        if event["id"] == offered["id"] {
            break;
        }
    }
    // A stream opened after the failover works as well.
    let (mut fresh, _) = apps[1].agent_events(&bob.token).await;
    let (third, _) = apps[2].create_session(&lead.token, "web", "Eve").await;
    let again = apps[2]
        .invite(
            &lead.token,
            &id_of(&third),
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    let event = fresh.wait_for("invitation_offered", EVENT_WAIT).await;
    assert_eq!(event["id"], again["id"]);
    assert_no_crossslot(&redis, &nodes);
}

#[actix_rt::test]
async fn resharding_the_accounts_slot_moves_its_keys_and_the_streams_follow() {
    let redis = RedisCluster::start();
    let (namespace, nodes) = nodes_on(&redis, 2, &[]);
    let apps = ready_apps(&nodes).await;
    apps[0].acme(json!({})).await;
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let bob = apps[1].online(ACME, "bob", "Bob", "support").await;
    let (mut bob_stream, _) = apps[1].agent_events(&bob.token).await;
    let (session, _) = apps[0].create_session(&lead.token, "web", "Carl").await;
    let session = id_of(&session);
    apps[0]
        .say(&lead.token, &session, "before the move", "everyone")
        .await
        .expect_status(201);

    // The account's slot moves to another master, keys and all.
    let key = format!("collabd:{{{namespace}:{ACME}}}:account");
    let from = redis.master_for_key(&key);
    assert!(redis.keys_in_slot_of(from, &key) > 0);
    let to = redis.other_master(from);
    redis.move_slot_of(&key, to);
    assert_eq!(redis.master_for_key(&key), to);

    // The old owner dropped the node's subscriptions (`sunsubscribe`): the
    // node resubscribes on the new owner and resyncs the stream from the
    // state, since whatever was published in between is lost to it.
    bob_stream.wait_for("snapshot", HEAL).await;
    // Commands follow MOVED; the subscriptions followed the slot map.
    let invitation = apps[0]
        .invite(
            &lead.token,
            &session,
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    loop {
        let event = bob_stream.wait_for("invitation_offered", HEAL).await;
        if event["id"] == invitation["id"] {
            break;
        }
    }
    apps[1]
        .accept(&bob.token, &id_of(&invitation))
        .await
        .expect_status(200);
    let page = apps[1]
        .messages(&lead.token, &session)
        .await
        .expect_status(200);
    assert!(
        pluck(&page["messages"], "text").contains(&"before the move".to_owned()),
        "{page}"
    );
    let view = apps[0]
        .session(&lead.token, &session)
        .await
        .expect_status(200);
    assert_eq!(participants(&view), ["lead", "bob"], "{view}");
    assert!(
        redis.keys_in_slot_of(to, &key) > 0,
        "the new owner has no keys"
    );
    assert_eq!(redis.keys_in_slot_of(from, &key), 0, "keys left behind");
    assert_no_crossslot(&redis, &nodes);
}
