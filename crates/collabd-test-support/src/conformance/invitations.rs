//! Sessions: the indexes a commit's delta keeps (the agents' sessions, the
//! open invitations by target, the active counts), closed or moved
//! invitations and the claims they drop, and the accept context that reads
//! them.

use collabd::backplane::{Audited, Backplane, Claim};
use collabd::domain::session::{
    Cancel, Decline, Escalate, EscalateAfter, IndexDelta, InvitationStatus, Leave, Target,
};
use collabd::domain::{AgentId, Outcome, SessionId};

use super::LONG_TTL;
use super::fixtures::{
    Live, accept, account_id, agent_id, agent_ref, assert_active, invitation_id, portal, portal_id,
    profile, sorted, won,
};

/// A commit applies its index delta: `agent_sessions` (joined / left), the
/// open invitations by target (opened / closed; a portal invitation is
/// indexed by its portal, not by its recipients), and the active counts —
/// which always equal the number of sessions in `agent_sessions` (joining
/// a session twice counts it once; leaving one the agent is not in changes
/// nothing), as the guard, the window and the accept context read them.
/// Nothing of it is visible from another account.
pub async fn sessions_the_delta_updates_agent_sessions_open_invitations_and_active_counts(
    bp: &dyn Backplane,
) {
    let acc = account_id();
    let p = portal_id();
    bp.put_portal(&acc, &portal(&p, "Support")).await.unwrap();
    let (a, b, c, d) = (agent_id(), agent_id(), agent_id(), agent_id());
    for id in [&a, &b, &c, &d] {
        let who = profile(id, std::slice::from_ref(&p));
        bp.put_agent(&acc, &who, Audited::NONE).await.unwrap();
        bp.login(&acc, &who, &p).await.unwrap();
    }
    let to = |x: &AgentId| Target::Agent(x.clone());
    let to_portal = Target::Portal(p.clone());
    let open = |target: Target| {
        let acc = &acc;
        async move { bp.open_invitations(acc, &target).await.unwrap() }
    };

    assert_active(bp, &acc, &a, 0, "a before anything").await;
    let mut s1 = Live::started(bp, &acc, &a).await;
    let sid1 = s1.id().clone();
    assert_eq!(
        bp.agent_sessions(&acc, &a).await.unwrap(),
        vec![sid1.clone()]
    );
    assert_active(bp, &acc, &a, 1, "a created s1").await;
    assert_active(bp, &acc, &b, 0, "b in nothing yet").await;

    let inv_b = s1.invite(bp, &a, to(&b), std::slice::from_ref(&b)).await;
    let inv_p = s1
        .invite(bp, &a, to_portal.clone(), &[b.clone(), c.clone()])
        .await;
    assert_eq!(open(to(&b)).await, vec![(inv_b.clone(), sid1.clone())]);
    assert_eq!(
        open(to_portal.clone()).await,
        vec![(inv_p.clone(), sid1.clone())]
    );
    assert!(
        open(to(&c)).await.is_empty(),
        "a portal invitation is indexed by its portal, not its recipients"
    );
    assert!(open(to(&d)).await.is_empty());

    s1.accept_by(bp, &inv_b, &b).await;
    assert_eq!(
        bp.agent_sessions(&acc, &b).await.unwrap(),
        vec![sid1.clone()]
    );
    assert!(open(to(&b)).await.is_empty(), "b's invitation closed");
    assert_eq!(
        open(to_portal.clone()).await,
        vec![(inv_p.clone(), sid1.clone())],
        "the portal's stays open"
    );
    assert_active(bp, &acc, &b, 1, "b joined s1").await;

    s1.accept_by(bp, &inv_p, &c).await;
    assert!(
        open(to_portal.clone()).await.is_empty(),
        "the portal's closed"
    );
    assert_active(bp, &acc, &c, 1, "c joined s1").await;

    let mut s2 = Live::started(bp, &acc, &b).await;
    let inv_p2 = s2
        .invite(bp, &b, to_portal.clone(), &[c.clone(), d.clone()])
        .await;
    assert_eq!(
        bp.agent_sessions(&acc, &b).await.unwrap(),
        sorted(vec![sid1.clone(), s2.id().clone()])
    );
    assert_active(bp, &acc, &b, 2, "b in s1 and s2").await;
    assert_eq!(
        open(to_portal.clone()).await,
        vec![(inv_p2.clone(), s2.id().clone())]
    );

    s1.run(
        bp,
        Leave {
            agent: b.clone(),
            by_admin: false,
        },
    )
    .await;
    assert_eq!(
        bp.agent_sessions(&acc, &b).await.unwrap(),
        vec![s2.id().clone()]
    );
    assert_active(bp, &acc, &b, 1, "b left s1").await;
    assert_active(bp, &acc, &a, 1, "a still in s1").await;

    // Counts follow the sets.
    let again = Outcome {
        delta: IndexDelta {
            joined: vec![b.clone()],
            left: vec![d.clone()],
            ..IndexDelta::default()
        },
        ..Outcome::default()
    };
    s2.store(bp, &again).await;
    assert_active(bp, &acc, &b, 1, "b joined s2 twice").await;
    assert_active(bp, &acc, &d, 0, "d left a session it was not in").await;

    // Nothing of it is visible from another account.
    let other = account_id();
    for x in [&a, &b, &c, &d] {
        assert!(bp.agent_sessions(&other, x).await.unwrap().is_empty());
        assert!(
            bp.open_invitations(&other, &to(x))
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert!(
        bp.open_invitations(&other, &to_portal)
            .await
            .unwrap()
            .is_empty()
    );
    assert_active(bp, &other, &b, 0, "b in another account").await;
}

/// A commit moves the invitations its command closed into the session's
/// history (`closed_invitation` reads them back as they closed) and out of
/// the hot state, and deletes their claims: a later claim by another agent
/// wins, with a larger fence. An open invitation is not in the history.
pub async fn sessions_closed_invitations_go_to_history_and_their_claims_go(bp: &dyn Backplane) {
    let acc = account_id();
    let p = portal_id();
    let (a, b, c, d, e) = (agent_id(), agent_id(), agent_id(), agent_id(), agent_id());
    let mut live = Live::started(bp, &acc, &a).await;
    let sid = live.id().clone();

    // Accepted.
    let inv1 = live
        .invite(bp, &a, Target::Portal(p.clone()), &[b.clone(), c.clone()])
        .await;
    let f1 = won(
        bp.claim(&acc, &inv1, &b, LONG_TTL).await.unwrap(),
        "b claims",
    );
    assert_eq!(
        bp.claim(&acc, &inv1, &c, LONG_TTL).await.unwrap(),
        Claim::Lost { by: b.clone() }
    );
    let accepted = live.run(bp, accept(&inv1, &b, 0, f1)).await;
    let [closed] = accepted.closed.as_slice() else {
        panic!("an accept closes one invitation: {:?}", accepted.closed)
    };
    assert_eq!(closed.status, InvitationStatus::Accepted);
    assert_eq!(
        bp.closed_invitation(&acc, &sid, &inv1).await.unwrap(),
        Some(closed.clone()),
        "the accepted invitation, as it closed"
    );
    let loaded = bp.load(&acc, &sid).await.unwrap().expect("stored");
    assert!(
        loaded.session.invitation(&inv1).is_none(),
        "out of the hot state"
    );
    let f2 = won(
        bp.claim(&acc, &inv1, &c, LONG_TTL).await.unwrap(),
        "the decided claim is gone",
    );
    assert!(f2 > f1, "fence {f2} after the decision must exceed {f1}");

    // Cancelled.
    let inv2 = live
        .invite(bp, &a, Target::Agent(d.clone()), std::slice::from_ref(&d))
        .await;
    let f3 = won(
        bp.claim(&acc, &inv2, &d, LONG_TTL).await.unwrap(),
        "d claims",
    );
    let cancelled = live
        .run(
            bp,
            Cancel {
                invitation: inv2.clone(),
                by: a.clone(),
            },
        )
        .await;
    let history = bp
        .closed_invitation(&acc, &sid, &inv2)
        .await
        .unwrap()
        .expect("the cancelled invitation is in the history");
    assert_eq!(history.status, InvitationStatus::Cancelled);
    assert_eq!(cancelled.closed, vec![history]);
    let f4 = won(
        bp.claim(&acc, &inv2, &e, LONG_TTL).await.unwrap(),
        "the cancelled invitation's claim is gone",
    );
    assert!(f4 > f3, "fence {f4} after the decision must exceed {f3}");

    // Not in the history: open, unknown, or another account's.
    let inv3 = live
        .invite(bp, &a, Target::Agent(e.clone()), std::slice::from_ref(&e))
        .await;
    assert_eq!(
        bp.closed_invitation(&acc, &sid, &inv3).await.unwrap(),
        None,
        "open"
    );
    assert_eq!(
        bp.closed_invitation(&acc, &sid, &invitation_id())
            .await
            .unwrap(),
        None,
        "unknown"
    );
    assert_eq!(
        bp.closed_invitation(&account_id(), &sid, &inv1)
            .await
            .unwrap(),
        None,
        "another account"
    );
}

/// An invitation that moves to another target (an escalation) stays open
/// in the new target's index, and a claim taken for its old target is
/// dropped with the move: the new recipients can win it.
pub async fn sessions_a_moved_invitation_drops_its_claim_and_changes_index(bp: &dyn Backplane) {
    let acc = account_id();
    let (a, b, c) = (agent_id(), agent_id(), agent_id());
    let portal = portal_id();
    let mut live = Live::started(bp, &acc, &a).await;
    let mut invite = live.invitation(&a, Target::Agent(b.clone()), std::slice::from_ref(&b));
    invite.escalate = Some(EscalateAfter {
        after_secs: 60,
        portal: portal.clone(),
    });
    let inv = invite.id.clone();
    live.run(bp, invite).await;
    won(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        "b claims",
    );
    live.run(
        bp,
        Decline {
            invitation: inv.clone(),
            agent: agent_ref(&b),
        },
    )
    .await;
    let moved = live
        .run(
            bp,
            Escalate {
                invitation: inv.clone(),
                online: vec![c.clone()],
            },
        )
        .await;
    assert_eq!(
        moved.delta.opened,
        vec![(inv.clone(), Target::Portal(portal.clone()))]
    );
    assert!(
        bp.open_invitations(&acc, &Target::Agent(b.clone()))
            .await
            .unwrap()
            .is_empty(),
        "out of the agent's index"
    );
    assert_eq!(
        bp.open_invitations(&acc, &Target::Portal(portal))
            .await
            .unwrap(),
        vec![(inv.clone(), live.id().clone())],
        "in the portal's"
    );
    won(
        bp.claim(&acc, &inv, &c, LONG_TTL).await.unwrap(),
        "the portal's agent claims it",
    );
}

/// `accept_context` reads in one call the accepting agent's portal and
/// active-session count, the session's stored version, its state only when
/// the caller's known version is not the stored one, and the invitation
/// from the history once it is closed.
pub async fn sessions_accept_context_reads_what_an_accept_needs(bp: &dyn Backplane) {
    let acc = account_id();
    let p = portal_id();
    bp.put_portal(&acc, &portal(&p, "Support")).await.unwrap();
    let a = agent_id();
    let b = profile(&agent_id(), std::slice::from_ref(&p));
    bp.put_agent(&acc, &b, Audited::NONE).await.unwrap();
    bp.login(&acc, &b, &p).await.unwrap();
    Live::started(bp, &acc, &b.id).await; // `b` is busy in one session
    let mut live = Live::started(bp, &acc, &a).await;
    let sid = live.id().clone();
    let inv = live
        .invite(
            bp,
            &a,
            Target::Agent(b.id.clone()),
            std::slice::from_ref(&b.id),
        )
        .await;
    let context = |known: Option<u64>| {
        let (sid, inv, b) = (sid.clone(), inv.clone(), b.id.clone());
        let acc = acc.clone();
        async move {
            bp.accept_context(&acc, &sid, &inv, &b, known)
                .await
                .unwrap()
        }
    };

    let c = context(Some(2)).await;
    assert_eq!(c.portal, Some(p.clone()), "the agent's portal");
    assert_eq!(c.active_sessions, 1, "its activity");
    assert_eq!(c.version, Some(2), "the stored version");
    assert_eq!(c.current, None, "the caller's state is current");
    assert_eq!(c.closed, None, "the invitation is open");
    assert_eq!(
        context(Some(1)).await.current,
        Some(live.versioned()),
        "a stale caller gets the state"
    );
    assert_eq!(
        context(None).await.current,
        Some(live.versioned()),
        "a caller with nothing gets the state"
    );

    let accepted = live.accept_by(bp, &inv, &b.id).await;
    let c = context(Some(3)).await;
    assert_eq!(c.version, Some(3));
    assert_eq!(c.current, None);
    assert_eq!(c.active_sessions, 2, "it joined");
    assert_eq!(
        c.closed,
        accepted.closed.first().cloned(),
        "the closed invitation"
    );

    // An unknown session: presence and activity still read.
    let c = bp
        .accept_context(&acc, &SessionId::random(), &inv, &b.id, None)
        .await
        .unwrap();
    assert_eq!(
        (c.portal, c.active_sessions, c.version, c.current, c.closed),
        (Some(p.clone()), 2, None, None, None),
        "an unknown session"
    );
    bp.logout(&acc, &b, Audited::NONE).await.unwrap();
    assert_eq!(context(Some(3)).await.portal, None, "logged out");

    // Another account knows nothing of it.
    let c = bp
        .accept_context(&account_id(), &sid, &inv, &b.id, None)
        .await
        .unwrap();
    assert_eq!(
        (c.portal, c.active_sessions, c.version, c.current, c.closed),
        (None, 0, None, None, None),
        "another account"
    );
}
