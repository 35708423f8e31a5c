//! What the hot paths cost in Redis, counted — never timed: top-level
//! commands a request sends (from `MONITOR`; commands run inside a script
//! count as part of their script) and bytes in and out of Redis (from
//! `INFO stats`, fan-out to the subscribing nodes included).
//!
//! Three nodes on one Redis; 200 agents online, 100 of them in the portal
//! invited, each of those holding an event stream (so every node subscribes
//! to the portal). Each figure is printed so the README can quote it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use super::support::{RedisServer, cluster};
use crate::common::{ACME, AgentLogin, EVENT_WAIT, EventStream, TestApp, id_of};

/// The budgets of issue #7.
const INVITE_COMMANDS: usize = 4;
const INVITE_BYTES: u64 = 16 * 1024;
const ACCEPT_COMMANDS: usize = 4;
const WINDOW_COMMANDS: usize = 4;
/// Invitations sent into the session before the second measurement.
const EARLIER_INVITATIONS: usize = 50;
/// Agents in the invited portal, and in another one.
const PORTAL_AGENTS: usize = 100;

/// `redis-cli MONITOR` into a file, read back between two `ECHO` marks.
struct Monitor {
    child: Child,
    path: PathBuf,
}

impl Monitor {
    fn start(redis: &RedisServer) -> Self {
        let path = std::env::temp_dir().join(format!(
            "collabd-monitor-{}-{}.log",
            std::process::id(),
            redis.port
        ));
        let file = std::fs::File::create(&path).expect("a monitor log file");
        let child = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "MONITOR"])
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli is installed");
        let monitor = Self { child, path };
        // MONITOR only shows what it was attached for: wait until it is.
        let mark = format!("monitor-ready-{}", redis.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            redis.cli(&["ECHO", &mark]);
            if monitor.lines().iter().any(|l| l.contains(&mark)) {
                return monitor;
            }
            assert!(Instant::now() < deadline, "MONITOR did not attach");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn lines(&self) -> Vec<String> {
        let Ok(file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        BufReader::new(file).lines().map_while(Result::ok).collect()
    }

    /// The commands a request sent between the marks `start` and `end`,
    /// without the nodes' background loops (timer polls, presence
    /// heartbeats, pings) and without what scripts ran inside themselves.
    fn commands_between(&self, redis: &RedisServer, start: &str, end: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.lines();
            let from = lines.iter().position(|l| l.contains(&quoted(start)));
            let to = lines.iter().position(|l| l.contains(&quoted(end)));
            if let (Some(from), Some(to)) = (from, to) {
                return lines[from + 1..to]
                    .iter()
                    .filter(|l| !is_background(l))
                    .cloned()
                    .collect();
            }
            assert!(Instant::now() < deadline, "the marks never reached MONITOR");
            redis.cli(&["ECHO", end]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn quoted(mark: &str) -> String {
    format!("\"{mark}\"")
}

fn is_background(line: &str) -> bool {
    line.contains("[0 lua]")
        || line.contains("\"ECHO\"")
        || line.contains("timer-index")
        || line.contains("\"PING\"")
        || line.contains("\"INFO\"")
        || line.contains("\"ZREMRANGEBYSCORE\"")
        || (line.contains("\"ZADD\"") && line.contains("\"XX\""))
        // The node lease (twice a second) and the presence heartbeat script
        // (keys `online`, `held`; a login's script has `presence` first).
        || line.contains("}:nodes\"")
        || (line.contains("\"EVALSHA\"")
            && line.contains(":held:")
            && !line.contains(":presence\""))
}

/// Bytes in and out of Redis so far.
fn net_bytes(redis: &RedisServer) -> u64 {
    let info = redis.cli(&["INFO", "stats"]);
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0)
    };
    field("total_net_input_bytes") + field("total_net_output_bytes")
}

/// Redis traffic of `op`, without the INFO calls that measure it (what two
/// back-to-back measurements cost is subtracted).
async fn traffic<F: std::future::Future<Output = ()>>(redis: &RedisServer, op: F) -> u64 {
    let a = net_bytes(redis);
    let b = net_bytes(redis);
    let probe = b - a;
    let before = net_bytes(redis);
    op.await;
    // Let the fan-out reach the subscribers before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    net_bytes(redis) - before - probe
}

/// The least Redis traffic of two portal invitations in `session` (each
/// answered, then cancelled): the nodes' background (the lease twice a
/// second, the 5 s heartbeat with every agent) may land in one window.
async fn least_invitation_bytes(redis: &RedisServer, scene: &mut Scene, session: &str) -> u64 {
    let mut least = u64::MAX;
    for _ in 0..2 {
        let mut sent = String::new();
        let bytes = traffic(redis, async {
            sent = scene.invite(session).await;
        })
        .await;
        least = least.min(bytes);
        scene.alerts(&sent).await;
        scene.apps[0]
            .cancel(&scene.lead.token, session, &sent)
            .await
            .expect_status(200);
    }
    least
}

struct Scene {
    apps: Vec<TestApp>,
    lead: AgentLogin,
    recipients: Vec<AgentLogin>,
    streams: Vec<EventStream>,
}

async fn scene(redis: &RedisServer) -> (Scene, Vec<super::support::Node>) {
    let (_, nodes) = cluster(redis, 3);
    let apps: Vec<TestApp> = nodes.iter().map(|n| TestApp::remote(n.port)).collect();
    apps[0]
        .acme(json!({"max_pending_invitations_per_session": 256}))
        .await;
    apps[0].portal(ACME, "big", "Big Portal").await;
    apps[0].portal(ACME, "other", "Other Portal").await;
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let logins = (0..2 * PORTAL_AGENTS).map(|i| {
        let app = &apps[i % 3];
        let portal = if i < PORTAL_AGENTS { "big" } else { "other" };
        async move {
            app.online(
                ACME,
                &format!("agent-{i:03}"),
                &format!("Agent {i}"),
                portal,
            )
            .await
        }
    });
    let mut everyone = join_all(logins).await;
    let recipients: Vec<AgentLogin> = everyone.drain(..PORTAL_AGENTS).collect();
    let mut streams = Vec::new();
    for (i, agent) in recipients.iter().enumerate() {
        streams.push(apps[(i + 1) % 3].agent_events(&agent.token).await.0);
    }
    (
        Scene {
            apps,
            lead,
            recipients,
            streams,
        },
        nodes,
    )
}

impl Scene {
    async fn invite(&self, session: &str) -> String {
        let invitation = self.apps[0]
            .invite(
                &self.lead.token,
                session,
                json!({"target": {"portal": "big"}, "comment": "printer driver fails on Windows 11"}),
            )
            .await
            .expect_status(201);
        assert_eq!(invitation["recipient_count"], PORTAL_AGENTS, "{invitation}");
        id_of(&invitation)
    }

    async fn alerts(&mut self, invitation: &str) {
        for stream in &mut self.streams {
            let offer = stream.wait_for("invitation_offered", EVENT_WAIT).await;
            assert_eq!(offer["id"], invitation);
        }
    }
}

#[actix_rt::test]
async fn the_hot_paths_cost_what_they_change_in_redis_commands_and_bytes() {
    let redis = RedisServer::start();
    let (mut scene, _nodes) = scene(&redis).await;
    let (session, _) = scene.apps[0]
        .create_session(&scene.lead.token, "web", "Carl")
        .await;
    let session = id_of(&session);

    // Warm-up: every script this test uses is loaded once (EVALSHA's first
    // call per script falls back to SCRIPT LOAD).
    let warm = scene.invite(&session).await;
    scene.alerts(&warm).await;
    scene.apps[0]
        .cancel(&scene.lead.token, &session, &warm)
        .await
        .expect_status(200);
    scene.apps[1]
        .collaborators(&scene.lead.token, None)
        .await
        .expect_status(200);

    // Bytes of one portal invitation to 100 agents, on a fresh session…
    // The least of two: the nodes' background (the lease twice a second,
    // the 5 s heartbeat with every agent) may land in one window.
    let first_bytes = least_invitation_bytes(&redis, &mut scene, &session).await;
    // … and after 50 more invitations in the same session, each answered:
    // the history grows, the cost of the next one does not.
    for i in 0..EARLIER_INVITATIONS {
        let earlier = scene.invite(&session).await;
        scene.alerts(&earlier).await;
        if i % 2 == 0 {
            scene.apps[0]
                .cancel(&scene.lead.token, &session, &earlier)
                .await
                .expect_status(200);
        } else {
            let winner = &scene.recipients[i];
            scene.apps[0]
                .accept(&winner.token, &earlier)
                .await
                .expect_status(200);
            scene.apps[0]
                .leave(&winner.token, &session)
                .await
                .expect_status(200);
        }
    }
    // The least of two here too (the second after one more invitation).
    let later_bytes = least_invitation_bytes(&redis, &mut scene, &session).await;
    eprintln!(
        "redis traffic of a portal invitation to {PORTAL_AGENTS} agents: \
         {first_bytes} B fresh, {later_bytes} B after {EARLIER_INVITATIONS} earlier invitations"
    );
    assert!(
        first_bytes <= INVITE_BYTES,
        "a portal invitation to {PORTAL_AGENTS} agents moved {first_bytes} B through Redis"
    );
    assert!(
        later_bytes * 2 <= first_bytes * 3,
        "after {EARLIER_INVITATIONS} invitations: {later_bytes} B, fresh {first_bytes} B"
    );

    // Commands, with MONITOR attached (it inflates the byte counts, so it
    // comes after them).
    let monitor = Monitor::start(&redis);
    redis.cli(&["ECHO", "invite-start"]);
    let measured = scene.invite(&session).await;
    redis.cli(&["ECHO", "invite-end"]);
    let invite = monitor.commands_between(&redis, "invite-start", "invite-end");
    scene.alerts(&measured).await;

    // The accept goes through another node than the lead's.
    let winner = &scene.recipients[7];
    redis.cli(&["ECHO", "accept-start"]);
    scene.apps[2]
        .accept(&winner.token, &measured)
        .await
        .expect_status(200);
    redis.cli(&["ECHO", "accept-end"]);
    let accept = monitor.commands_between(&redis, "accept-start", "accept-end");

    redis.cli(&["ECHO", "window-start"]);
    let window = scene.apps[1]
        .collaborators(&scene.lead.token, None)
        .await
        .expect_status(200);
    redis.cli(&["ECHO", "window-end"]);
    let window_commands = monitor.commands_between(&redis, "window-start", "window-end");
    assert_eq!(
        window["agents"].as_array().map(Vec::len),
        Some(2 * PORTAL_AGENTS),
        "the window shows the 200 agents online besides the caller"
    );

    eprintln!(
        "redis commands: portal invitation {} {invite:#?}\naccept {} {accept:#?}\nwindow {} {window_commands:#?}",
        invite.len(),
        accept.len(),
        window_commands.len()
    );
    assert!(invite.len() <= INVITE_COMMANDS, "invite: {invite:#?}");
    assert!(accept.len() <= ACCEPT_COMMANDS, "accept: {accept:#?}");
    assert!(
        window_commands.len() <= WINDOW_COMMANDS,
        "window with 200 online: {window_commands:#?}"
    );
}

#[actix_rt::test]
async fn a_portal_invitation_is_one_subscription_per_node_however_many_agents() {
    let redis = RedisServer::start();
    let (namespace, nodes) = cluster(&redis, 3);
    let apps: Vec<TestApp> = nodes.iter().map(|n| TestApp::remote(n.port)).collect();
    apps[0].acme(json!({})).await;
    apps[0].portal(ACME, "crowd", "Crowd").await;
    let mut streams = Vec::new();
    for i in 0..30 {
        let agent = apps[i % 3]
            .online(ACME, &format!("a{i}"), &format!("A {i}"), "crowd")
            .await;
        streams.push(apps[(i + 1) % 3].agent_events(&agent.token).await.0);
    }
    let channel = format!("collabd:{{{namespace}:{ACME}}}:chan:portal:crowd");
    let numsub = redis.cli(&["PUBSUB", "NUMSUB", &channel]);
    assert_eq!(
        numsub.lines().nth(1).map(str::trim),
        Some("3"),
        "NUMSUB {channel}: {numsub}"
    );
}

/// The Redis keys of account `acme` matching `pattern` (after the hash tag).
fn keys(redis: &RedisServer, namespace: &str, pattern: &str) -> Vec<String> {
    let mut found: Vec<String> = redis
        .cli(&[
            "--scan",
            "--pattern",
            &format!("collabd:{{{namespace}:{ACME}}}:{pattern}"),
        ])
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect();
    found.sort();
    found
}

#[actix_rt::test]
async fn a_decided_invitation_leaves_no_claim_timer_or_index_behind_and_an_ended_session_expires() {
    let redis = RedisServer::start();
    let (namespace, nodes) = cluster(&redis, 2);
    let apps: Vec<TestApp> = nodes.iter().map(|n| TestApp::remote(n.port)).collect();
    apps[0]
        .acme(json!({"invitation_ttl_secs": 2, "retention_secs": 600}))
        .await;
    let ann = apps[0].online(ACME, "ann", "Ann", "billing").await;
    let bob = apps[1].online(ACME, "bob", "Bob", "support").await;
    apps[0].online(ACME, "cid", "Cid", "support").await;
    let (session, _) = apps[0].create_session(&ann.token, "web", "Carl").await;
    let session = id_of(&session);
    let timers = format!("collabd:{{{namespace}:{ACME}}}:timers");
    let open = format!("collabd:{{{namespace}:{ACME}}}:open:portal:support");

    // Accepted (a claim was taken), cancelled, and expired.
    let accepted = apps[0]
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    apps[1]
        .accept(&bob.token, &id_of(&accepted))
        .await
        .expect_status(200);
    let cancelled = apps[0]
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    apps[0]
        .cancel(&ann.token, &session, &id_of(&cancelled))
        .await
        .expect_status(200);
    let expiring = apps[0]
        .invite(
            &ann.token,
            &session,
            json!({"target": {"portal": "support"}}),
        )
        .await
        .expect_status(201);
    let path = format!("/v1/sessions/{session}/invitations/{}", id_of(&expiring));
    let deadline = Instant::now() + Duration::from_secs(15);
    while apps[1].get(&path, &ann.token).await.expect_status(200)["status"] != "expired" {
        assert!(Instant::now() < deadline, "the invitation did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(keys(&redis, &namespace, "claim:*"), Vec::<String>::new());
    assert_eq!(
        redis.cli(&["EXISTS", &open]).trim(),
        "0",
        "no open invitation is indexed"
    );
    let armed = redis.cli(&["ZRANGE", &timers, "0", "-1"]);
    assert_eq!(
        armed.lines().collect::<Vec<_>>(),
        [format!("{session}|idle")],
        "only the session's idle timer is left"
    );
    let history = format!("collabd:{{{namespace}:{ACME}}}:session:{session}:history");
    assert_eq!(redis.cli(&["HLEN", &history]).trim(), "3");

    // Ending it: its agents are no longer in it, and everything of it has a lifetime.
    apps[0].end(&ann.token, &session).await.expect_status(200);
    assert_eq!(redis.cli(&["ZCARD", &timers]).trim(), "0");
    for key in keys(&redis, &namespace, &format!("session:{session}*")) {
        let ttl: i64 = redis.cli(&["TTL", &key]).trim().parse().unwrap_or(-1);
        assert!((1..=600).contains(&ttl), "{key} has TTL {ttl}");
    }
    assert_eq!(
        keys(&redis, &namespace, "agent:*:sessions"),
        Vec::<String>::new()
    );
}
