//! Escalation over HTTP and SSE: a direct invitation that is not taken in
//! time, is declined, or goes to an agent who cannot take it, goes to a
//! portal — the same invitation — and the first of the portal's agents to
//! accept joins.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::common::{
    ACME, AgentHandle, EVENT_WAIT, QUIET, Reply, Scene, TestApp, assert_problem, id_of,
};

/// How long an escalation of `after_secs` 5 may take to reach a stream.
const ESCALATION_WAIT: Duration = Duration::from_secs(15);

/// `lead` invites `agent` directly, escalating to `support` after `secs`.
async fn invite_escalating(lead: &AgentHandle, session: &str, agent: &str, secs: u32) -> Reply {
    lead.invite(
        session,
        json!({"target": {"agent": agent}, "comment": "printer driver",
               "escalate": {"after_secs": secs, "portal": "support"}}),
    )
    .await
}

/// Ann (billing) is invited with an escalation to support, where Bob and
/// Cid are; Hal is in the session with the lead.
async fn scene(app: &TestApp, policy: Value) -> ([AgentHandle; 5], String) {
    let scene = Scene::builder(app)
        .policy(policy)
        .online("lead", "Lead", "billing")
        .online("ann", "Ann", "billing")
        .online("bob", "Bob", "support")
        .online("cid", "Cid", "support")
        .online("hal", "Hal", "billing")
        .session("lead")
        .build()
        .await;
    let agents: [AgentHandle; 5] = scene.agents();
    let session = scene.session().id;
    agents[0].bring_in(&session, &agents[4], false).await;
    (agents, session)
}

#[actix_rt::test]
async fn an_invitation_not_taken_in_time_goes_to_the_portal_and_two_racing_agents_have_one_winner()
{
    let app = TestApp::spawn().await;
    let ([lead, ann, bob, cid, hal], session) = scene(&app, json!({})).await;
    let (mut anns, _) = ann.events().await;
    let (mut bobs, _) = bob.events().await;
    let (mut cids, _) = cid.events().await;
    let (mut hals, _) = hal.events().await;

    let sent = invite_escalating(&lead, &session, "ann", 5)
        .await
        .expect_status(201);
    let inv = id_of(&sent);
    assert_eq!(sent["target"], json!({"agent": "ann"}));
    assert_eq!(sent["escalation"]["portal"], "support");
    assert_eq!(sent["escalation"]["from"], Value::Null);
    let offer = anns.expect("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], inv.as_str());
    // Nobody in support hears of it before its time.
    bobs.assert_silent(QUIET).await;

    // Five seconds later: Ann's alert goes, support's agents get it.
    let withdrawn = anns.wait_for("invitation_withdrawn", ESCALATION_WAIT).await;
    assert_eq!(withdrawn["invitation"], inv.as_str());
    assert_eq!(withdrawn["reason"], "escalated");
    for stream in [&mut bobs, &mut cids] {
        let offer = stream.wait_for("invitation_offered", ESCALATION_WAIT).await;
        assert_eq!(offer["id"], inv.as_str(), "the same invitation");
        assert_eq!(offer["target"], json!({"portal": "support"}));
        assert_eq!(offer["comment"], "printer driver");
        assert_eq!(offer["recipient_count"], 2);
    }
    // The alert lists agree: Bob holds it now, Ann no longer does.
    let ids = |offers: Vec<Value>| -> Vec<String> { offers.iter().map(|o| id_of(o)).collect() };
    assert_eq!(ids(bob.my_invitations().await), std::slice::from_ref(&inv));
    assert!(ids(ann.my_invitations().await).is_empty());
    let escalated = hals.wait_for("invitation_escalated", ESCALATION_WAIT).await;
    assert_eq!(escalated["portal"], "support");
    assert_eq!(escalated["invitation"]["id"], inv.as_str());
    assert_eq!(escalated["invitation"]["escalation"]["from"], "ann");

    // Ann can no longer take it; Bob and Cid race: one wins.
    assert_problem(&ann.accept(&inv).await, 409, "invitation_closed");
    let replies = join_all([bob.accept(&inv), cid.accept(&inv)]).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "one winner: {statuses:?}"
    );
    let loser = replies.iter().find(|r| r.status != 200).expect("a loser");
    assert_problem(loser, 409, "invitation_taken");
    let winner = if replies[0].status == 200 {
        "bob"
    } else {
        "cid"
    };
    let joined = hals.wait_for("participant_joined", EVENT_WAIT).await;
    assert_eq!(joined["participant"]["agent"]["id"], winner);
    hals.assert_silent(QUIET).await;

    // The audit trail has it once, by collabd itself.
    let trail = lead.audit(&session).await.expect_status(200);
    let escalations: Vec<&Value> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "invitation_escalated")
        .collect();
    assert_eq!(escalations.len(), 1, "{trail}");
    assert_eq!(escalations[0]["actor"]["kind"], "system");
    assert_eq!(escalations[0]["details"]["from"], "ann");
}

#[actix_rt::test]
async fn a_decline_escalates_at_once_and_a_busy_or_offline_agent_when_it_is_sent() {
    let app = TestApp::spawn().await;
    let ([lead, ann, bob, cid, hal], session) =
        scene(&app, json!({"max_active_sessions_per_agent": 1})).await;
    let (mut bobs, _) = bob.events().await;
    let (mut hals, _) = hal.events().await;

    // Declined: at once, well before its 60 s.
    let inv = id_of(
        &invite_escalating(&lead, &session, "ann", 60)
            .await
            .expect_status(201),
    );
    let declined = ann.decline(&inv).await.expect_status(200);
    assert_eq!(declined["invitation"]["status"], "pending");
    let offer = bobs.wait_for("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], inv.as_str());
    hals.wait_for("invitation_escalated", EVENT_WAIT).await;
    lead.cancel(&session, &inv).await.expect_status(200);

    // Hal is in this session already: at its limit of one, so an
    // escalating invitation to Hal from another session goes straight on.
    let other = ann.create_session("web", "Dora").await;
    let sent = invite_escalating(&ann, &other.id, "hal", 60)
        .await
        .expect_status(201);
    assert_eq!(sent["target"], json!({"portal": "support"}));
    assert_eq!(sent["escalation"]["from"], "hal");
    let offer = bobs.wait_for("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], sent["id"]);

    // Logged out: the same. And nobody in the portal to go to is refused.
    lead.logout().await.expect_status(204);
    let dan = app.online(ACME, "dan", "Dan", "billing").await;
    let third = dan.create_session("web", "Eve").await;
    let sent = invite_escalating(&dan, &third.id, "lead", 60)
        .await
        .expect_status(201);
    assert_eq!(sent["escalation"]["from"], "lead");
    bob.logout().await.expect_status(204);
    cid.logout().await.expect_status(204);
    let refused = invite_escalating(&dan, &third.id, "lead", 60).await;
    assert_problem(&refused, 409, "no_agents_online");
}

#[actix_rt::test]
async fn an_escalation_is_asked_for_a_direct_invitation_within_the_ttl_to_a_known_portal() {
    let app = TestApp::spawn().await;
    let ([lead, ..], session) = scene(&app, json!({"invitation_ttl_secs": 60})).await;
    for (body, status, code) in [
        (
            json!({"target": {"portal": "support"}, "escalate": {"after_secs": 10, "portal": "support"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"target": {"agent": "ann"}, "escalate": {"after_secs": 4, "portal": "support"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"target": {"agent": "ann"}, "escalate": {"after_secs": 61, "portal": "support"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"target": {"agent": "ann"}, "escalate": {"after_secs": 10, "portal": "nowhere"}}),
            404,
            "not_found",
        ),
        (
            json!({"target": {"agent": "ann"}, "escalate": {"after_secs": 10}}),
            400,
            "invalid_request",
        ),
    ] {
        let refused = lead.invite(&session, body.clone()).await;
        assert_problem(&refused, status, code);
    }
    let view = lead.view(&session).await.expect_status(200);
    assert_eq!(view["invitations"], json!([]), "nothing was sent");
}
