//! The backplane contract, written against the trait alone so that every
//! implementation runs the same suite.
//!
//! Each rule is a `pub async fn` taking `&dyn Backplane`. Every rule makes its
//! own random account, agent, portal, session and invitation ids, so the rules
//! may run concurrently against one shared store (e.g. one Redis). Run them all
//! against an implementation with [`backplane_conformance_suite!`]:
//!
//! ```ignore
//! collabd::backplane_conformance_suite!(
//!     std::sync::Arc::new(MyBackplane::connect()) as std::sync::Arc<dyn collabd::backplane::Backplane>
//! );
//! ```
//!
//! The rules wait for pub/sub deliveries and timers with generous timeouts and
//! never rely on a message *not* arriving within a fixed delay: absence is
//! shown by a later sentinel arriving first on the same topic.

// This module is test support (it panics on purpose when the contract is broken).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![doc(hidden)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

use super::{
    Backplane, BusMessage, Claim, Commit, Committed, Deadline, Online, Route, Topic, Versioned,
};
use crate::domain::id::random_id;
use crate::domain::session::{Audience, Author, IndexDelta, Target};
use crate::domain::{
    Account, AccountId, Agent, AgentId, AgentRef, Event, InvitationId, Message, MessageId, Policy,
    Portal, PortalId, Session, SessionId, SessionMode,
};

/// How long a rule waits for something that must arrive (pub/sub, timers).
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A claim ttl long enough never to run out during a rule.
const LONG_TTL: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn account_id() -> AccountId {
    AccountId::parse(&random_id("acc")).expect("random account id is valid")
}

fn agent_id() -> AgentId {
    AgentId::parse(&random_id("agt")).expect("random agent id is valid")
}

fn portal_id() -> PortalId {
    PortalId::parse(&random_id("ptl")).expect("random portal id is valid")
}

fn account(id: &AccountId, name: &str) -> Account {
    Account {
        id: id.clone(),
        name: name.to_owned(),
        policy: Policy::default(),
    }
}

fn portal(id: &PortalId, name: &str) -> Portal {
    Portal {
        id: id.clone(),
        name: name.to_owned(),
    }
}

fn agent(id: &AgentId, name: &str, portals: Vec<PortalId>) -> Agent {
    Agent {
        id: id.clone(),
        name: name.to_owned(),
        portals,
    }
}

fn new_session(account: &AccountId, lead: &AgentId) -> Session {
    Session::create(
        SessionId::random(),
        account.clone(),
        SessionMode::Web,
        AgentRef {
            id: lead.clone(),
            name: "Lead".to_owned(),
        },
        "Customer".to_owned(),
        &Policy::default(),
        Utc::now(),
    )
    .expect("the default policy allows web sessions")
}

fn message(seq: u64, text: &str) -> Message {
    Message {
        id: MessageId::random(),
        seq,
        author: Author::Customer {
            name: "Customer".to_owned(),
        },
        text: text.to_owned(),
        audience: Audience::Everyone,
        sent_at: Utc::now(),
    }
}

fn commit(expected_version: u64, session: &Session) -> Commit {
    Commit {
        expected_version,
        session: session.clone(),
        delta: IndexDelta::default(),
        message: None,
        publish: Vec::new(),
        deadlines: Vec::new(),
    }
}

fn presence_msg(agent: &AgentId, portal: Option<&PortalId>) -> BusMessage {
    BusMessage::Presence {
        agent: agent.clone(),
        portal: portal.cloned(),
    }
}

fn ended_msg(session: &SessionId) -> BusMessage {
    BusMessage::Session {
        session: session.clone(),
        route: Route::Participant,
        event: Arc::new(Event::SessionEnded { at: Utc::now() }),
    }
}

/// Waits for the next message on `rx`, failing the rule after [`ARRIVAL_TIMEOUT`].
async fn next(rx: &mut broadcast::Receiver<Arc<BusMessage>>, what: &str) -> BusMessage {
    match tokio::time::timeout(ARRIVAL_TIMEOUT, rx.recv()).await {
        Ok(Ok(m)) => (*m).clone(),
        Ok(Err(e)) => panic!("{what}: receive failed: {e}"),
        Err(_) => panic!("{what}: nothing arrived within {ARRIVAL_TIMEOUT:?}"),
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn won(claim: Claim, what: &str) -> u64 {
    match claim {
        Claim::Won { fence } => fence,
        Claim::Lost { by } => panic!("{what}: expected Won, got Lost {{ by: {by} }}"),
    }
}

// ---------------------------------------------------------------------------
// Directory
// ---------------------------------------------------------------------------

/// `put_account` returns `true` for a new account, `false` for a replacement,
/// and `account` returns the latest value; an unknown account is `None`.
pub async fn directory_accounts_put_reports_creation_and_keeps_latest(bp: &dyn Backplane) {
    let id = account_id();
    assert_eq!(bp.account(&id).await.unwrap(), None, "unknown account");
    assert!(
        bp.put_account(account(&id, "First")).await.unwrap(),
        "first put creates"
    );
    assert_eq!(bp.account(&id).await.unwrap(), Some(account(&id, "First")));

    let mut second = account(&id, "Second");
    second.policy.masking = false;
    assert!(
        !bp.put_account(second.clone()).await.unwrap(),
        "second put replaces"
    );
    assert_eq!(
        bp.account(&id).await.unwrap(),
        Some(second),
        "latest value stored"
    );
}

/// `put_portal` returns `true` then `false` and keeps the latest value; the
/// same portal id in two accounts names two independent portals; `portals`
/// lists only that account's portals, sorted by id.
pub async fn directory_portals_are_scoped_by_account_and_listed_sorted(bp: &dyn Backplane) {
    let acc1 = account_id();
    let acc2 = account_id();
    let p = portal_id();

    assert_eq!(bp.portal(&acc1, &p).await.unwrap(), None, "unknown portal");
    assert!(
        bp.portals(&acc1).await.unwrap().is_empty(),
        "fresh account has no portals"
    );

    assert!(
        bp.put_portal(&acc1, portal(&p, "one")).await.unwrap(),
        "first put creates"
    );
    assert!(
        !bp.put_portal(&acc1, portal(&p, "two")).await.unwrap(),
        "second put replaces"
    );
    assert_eq!(
        bp.portal(&acc1, &p).await.unwrap(),
        Some(portal(&p, "two")),
        "latest value"
    );

    // Same id, other account: independent.
    assert_eq!(
        bp.portal(&acc2, &p).await.unwrap(),
        None,
        "not visible from another account"
    );
    assert!(
        bp.put_portal(&acc2, portal(&p, "other")).await.unwrap(),
        "new in the other account"
    );
    assert_eq!(
        bp.portal(&acc2, &p).await.unwrap(),
        Some(portal(&p, "other"))
    );
    assert_eq!(
        bp.portal(&acc1, &p).await.unwrap(),
        Some(portal(&p, "two")),
        "acc1 untouched"
    );

    // More portals in acc1, inserted out of order.
    let mut ids = vec![p.clone()];
    for name in ["c", "a", "b"] {
        let id = portal_id();
        assert!(bp.put_portal(&acc1, portal(&id, name)).await.unwrap());
        ids.push(id);
    }
    let extra = portal_id();
    assert!(
        bp.put_portal(&acc2, portal(&extra, "acc2 only"))
            .await
            .unwrap()
    );

    let listed: Vec<PortalId> = bp
        .portals(&acc1)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, sorted(ids), "only acc1's portals, sorted by id");
    let listed2: Vec<Portal> = bp.portals(&acc2).await.unwrap();
    assert_eq!(
        listed2,
        sorted_portals(vec![portal(&p, "other"), portal(&extra, "acc2 only")]),
        "only acc2's portals, sorted by id"
    );
}

fn sorted_portals(mut v: Vec<Portal>) -> Vec<Portal> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// `put_agent` returns `true` then `false` and keeps the latest value; the same
/// agent id in two accounts names two independent agents.
pub async fn directory_agents_are_scoped_by_account(bp: &dyn Backplane) {
    let acc1 = account_id();
    let acc2 = account_id();
    let a = agent_id();
    let p = portal_id();

    assert_eq!(bp.agent(&acc1, &a).await.unwrap(), None, "unknown agent");
    assert!(
        bp.put_agent(&acc1, agent(&a, "Ann", vec![])).await.unwrap(),
        "first put creates"
    );
    let updated = agent(&a, "Ann B.", vec![p.clone()]);
    assert!(
        !bp.put_agent(&acc1, updated.clone()).await.unwrap(),
        "second put replaces"
    );
    assert_eq!(
        bp.agent(&acc1, &a).await.unwrap(),
        Some(updated.clone()),
        "latest value"
    );

    assert_eq!(
        bp.agent(&acc2, &a).await.unwrap(),
        None,
        "not visible from another account"
    );
    let other = agent(&a, "Other Ann", vec![]);
    assert!(
        bp.put_agent(&acc2, other.clone()).await.unwrap(),
        "new in the other account"
    );
    assert_eq!(bp.agent(&acc2, &a).await.unwrap(), Some(other));
    assert_eq!(
        bp.agent(&acc1, &a).await.unwrap(),
        Some(updated),
        "acc1 untouched"
    );
}

// ---------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------

/// `login` returns the portal the agent was in before; `logout` returns the
/// portal it was in and clears it; `presence` follows both.
pub async fn presence_login_returns_previous_and_logout_clears(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let p1 = portal_id();
    let p2 = portal_id();

    assert_eq!(
        bp.presence(&acc, &a).await.unwrap(),
        None,
        "nobody logged in yet"
    );
    assert_eq!(
        bp.logout(&acc, &a).await.unwrap(),
        None,
        "logout when logged out"
    );
    assert_eq!(
        bp.login(&acc, &a, &p1).await.unwrap(),
        None,
        "first login: no previous"
    );
    assert_eq!(bp.presence(&acc, &a).await.unwrap(), Some(p1.clone()));
    assert_eq!(
        bp.login(&acc, &a, &p1).await.unwrap(),
        Some(p1.clone()),
        "same portal again"
    );
    assert_eq!(
        bp.login(&acc, &a, &p2).await.unwrap(),
        Some(p1.clone()),
        "switch portal"
    );
    assert_eq!(bp.presence(&acc, &a).await.unwrap(), Some(p2.clone()));
    assert_eq!(
        bp.logout(&acc, &a).await.unwrap(),
        Some(p2),
        "logout returns the portal"
    );
    assert_eq!(bp.presence(&acc, &a).await.unwrap(), None, "logout clears");
    assert_eq!(
        bp.logout(&acc, &a).await.unwrap(),
        None,
        "second logout: nothing"
    );
}

/// `online` lists only that account's logged-in agents (with their portals);
/// the same agent id in another account is independent.
pub async fn presence_online_lists_only_the_accounts_logged_in_agents(bp: &dyn Backplane) {
    let acc1 = account_id();
    let acc2 = account_id();
    let a = agent_id();
    let b = agent_id();
    let c = agent_id();
    let p1 = portal_id();
    let p2 = portal_id();

    let by_agent = |mut v: Vec<Online>| {
        v.sort_by(|x, y| x.agent.cmp(&y.agent));
        v
    };
    let on = |agent: &AgentId, portal: &PortalId| Online {
        agent: agent.clone(),
        portal: portal.clone(),
    };

    assert!(
        bp.online(&acc1).await.unwrap().is_empty(),
        "fresh account: nobody online"
    );
    bp.login(&acc1, &a, &p1).await.unwrap();
    bp.login(&acc1, &b, &p2).await.unwrap();
    // Same agent id `a` in the other account, in another portal; plus `c`.
    assert_eq!(
        bp.login(&acc2, &a, &p2).await.unwrap(),
        None,
        "acc2's `a` is independent"
    );
    bp.login(&acc2, &c, &p1).await.unwrap();

    assert_eq!(
        by_agent(bp.online(&acc1).await.unwrap()),
        by_agent(vec![on(&a, &p1), on(&b, &p2)]),
        "acc1's agents only"
    );
    assert_eq!(
        by_agent(bp.online(&acc2).await.unwrap()),
        by_agent(vec![on(&a, &p2), on(&c, &p1)]),
        "acc2's agents only"
    );
    assert_eq!(
        bp.presence(&acc1, &a).await.unwrap(),
        Some(p1.clone()),
        "acc1's `a` untouched"
    );

    assert_eq!(bp.logout(&acc1, &b).await.unwrap(), Some(p2.clone()));
    assert_eq!(
        bp.online(&acc1).await.unwrap(),
        vec![on(&a, &p1)],
        "logged-out agent gone"
    );
    assert_eq!(bp.logout(&acc2, &a).await.unwrap(), Some(p2));
    assert_eq!(
        bp.online(&acc1).await.unwrap(),
        vec![on(&a, &p1)],
        "other account's logout"
    );
    assert_eq!(bp.online(&acc2).await.unwrap(), vec![on(&c, &p1)]);
}

// ---------------------------------------------------------------------------
// Sessions: versioned commit
// ---------------------------------------------------------------------------

/// Expected version 0 creates the session at version 1, expected 1 gives 2;
/// a stale (or future) expected version is a `Conflict` that changes nothing:
/// `load` returns the old state, the message is not appended, nothing is
/// published. Sessions are scoped by account.
pub async fn commit_is_versioned_and_a_conflict_changes_nothing(bp: &dyn Backplane) {
    let acc = account_id();
    let lead = agent_id();
    let s1 = new_session(&acc, &lead);
    let sid = s1.id.clone();
    let topic = Topic::Session(acc.clone(), sid.clone());
    let mut rx = bp.subscribe(&topic).await.unwrap();

    assert_eq!(bp.load(&acc, &sid).await.unwrap(), None, "no session yet");
    assert_eq!(
        bp.commit(&acc, commit(1, &s1)).await.unwrap(),
        Committed::Conflict,
        "expected 1 for a missing session"
    );
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        None,
        "conflict created nothing"
    );

    let m1 = message(1, "first");
    let mut c = commit(0, &s1);
    c.message = Some(m1.clone());
    assert_eq!(
        bp.commit(&acc, c).await.unwrap(),
        Committed::Stored(1),
        "create at 1"
    );
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        Some(Versioned {
            version: 1,
            session: s1.clone()
        })
    );

    let mut s2 = s1.clone();
    s2.message_count = 1;
    s2.customer.screen_shared = true;
    assert_eq!(
        bp.commit(&acc, commit(1, &s2)).await.unwrap(),
        Committed::Stored(2)
    );
    let stored = Some(Versioned {
        version: 2,
        session: s2.clone(),
    });
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        stored,
        "second commit at 2"
    );

    // Stale and future versions: Conflict, and nothing changes.
    let mut s3 = s2.clone();
    s3.customer.generation = 99;
    for expected in [0, 1, 3, 42] {
        let mut c = commit(expected, &s3);
        c.message = Some(message(2, "must not be stored"));
        c.delta.joined = vec![lead.clone()];
        c.publish = vec![(topic.clone(), presence_msg(&lead, None))];
        assert_eq!(
            bp.commit(&acc, c).await.unwrap(),
            Committed::Conflict,
            "expected version {expected} while at 2"
        );
    }
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        stored,
        "state unchanged by conflicts"
    );
    assert_eq!(
        bp.messages(&acc, &sid).await.unwrap(),
        vec![m1],
        "no message appended"
    );
    assert!(
        bp.agent_sessions(&acc, &lead).await.unwrap().is_empty(),
        "no delta applied"
    );

    // Nothing was published: the next thing on the topic is a sentinel.
    let sentinel = ended_msg(&sid);
    bp.publish(topic.clone(), sentinel.clone()).await.unwrap();
    assert_eq!(
        next(&mut rx, "session topic").await,
        sentinel,
        "conflicts published nothing"
    );

    // Scoped by account.
    let other = account_id();
    assert_eq!(
        bp.load(&other, &sid).await.unwrap(),
        None,
        "not visible from another account"
    );
    assert!(bp.messages(&other, &sid).await.unwrap().is_empty());
    let mut foreign = s1.clone();
    foreign.account = other.clone();
    assert_eq!(
        bp.commit(&other, commit(0, &foreign)).await.unwrap(),
        Committed::Stored(1),
        "same session id in another account is a new session"
    );
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        stored,
        "acc's session untouched"
    );
}

/// A commit applies its `IndexDelta` (agent_sessions joined/left, open
/// invitations by target opened/closed, `invitation_session` set for opened
/// invitations) and
/// appends its message, oldest first. All of it is scoped by account.
pub async fn commit_applies_the_index_delta_and_appends_the_message(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let b = agent_id();
    let c = agent_id();
    let d = agent_id();
    let inv = InvitationId::random();
    let s = new_session(&acc, &a);
    let sid = s.id.clone();

    assert_eq!(
        bp.invitation_session(&acc, &inv).await.unwrap(),
        None,
        "unknown invitation"
    );

    // v1: `a` joins, first message.
    let m1 = message(1, "hello");
    let mut c1 = commit(0, &s);
    c1.delta.joined = vec![a.clone()];
    c1.message = Some(m1.clone());
    assert_eq!(bp.commit(&acc, c1).await.unwrap(), Committed::Stored(1));
    assert_eq!(
        bp.agent_sessions(&acc, &a).await.unwrap(),
        vec![sid.clone()]
    );
    assert_eq!(bp.messages(&acc, &sid).await.unwrap(), vec![m1.clone()]);

    // v2: `b` joins, `inv` opens for agent `c` and `inv_p` for a portal; no message.
    let portal = Target::Portal(PortalId::parse("support").unwrap());
    let to_c = Target::Agent(c.clone());
    let to_d = Target::Agent(d.clone());
    let inv_p = InvitationId::random();
    let mut c2 = commit(1, &s);
    c2.delta.joined = vec![b.clone()];
    c2.delta.opened = vec![(inv.clone(), to_c.clone()), (inv_p.clone(), portal.clone())];
    assert_eq!(bp.commit(&acc, c2).await.unwrap(), Committed::Stored(2));
    assert_eq!(
        bp.agent_sessions(&acc, &a).await.unwrap(),
        vec![sid.clone()]
    );
    assert_eq!(
        bp.agent_sessions(&acc, &b).await.unwrap(),
        vec![sid.clone()]
    );
    assert_eq!(
        bp.open_invitations(&acc, &to_c).await.unwrap(),
        vec![(inv.clone(), sid.clone())]
    );
    assert_eq!(
        bp.open_invitations(&acc, &portal).await.unwrap(),
        vec![(inv_p.clone(), sid.clone())]
    );
    assert!(bp.open_invitations(&acc, &to_d).await.unwrap().is_empty());
    assert_eq!(
        bp.invitation_session(&acc, &inv).await.unwrap(),
        Some(sid.clone())
    );
    assert_eq!(
        bp.messages(&acc, &sid).await.unwrap(),
        vec![m1.clone()],
        "no message: none added"
    );

    // v3: `a` leaves, `inv` closes, second message.
    let m2 = message(2, "bye");
    let mut c3 = commit(2, &s);
    c3.delta.left = vec![a.clone()];
    c3.delta.closed = vec![(inv.clone(), to_c.clone())];
    c3.message = Some(m2.clone());
    assert_eq!(bp.commit(&acc, c3).await.unwrap(), Committed::Stored(3));
    assert!(
        bp.agent_sessions(&acc, &a).await.unwrap().is_empty(),
        "`a` left"
    );
    assert_eq!(
        bp.agent_sessions(&acc, &b).await.unwrap(),
        vec![sid.clone()],
        "`b` stays"
    );
    assert!(
        bp.open_invitations(&acc, &to_c).await.unwrap().is_empty(),
        "`inv` closed"
    );
    assert_eq!(
        bp.open_invitations(&acc, &portal).await.unwrap(),
        vec![(inv_p.clone(), sid.clone())],
        "the portal's stays open"
    );
    assert_eq!(
        bp.messages(&acc, &sid).await.unwrap(),
        vec![m1, m2],
        "appended, oldest first"
    );

    // A second session for `b` and `d`: indexes hold several sessions.
    let s2 = new_session(&acc, &b);
    let inv2 = InvitationId::random();
    let mut c4 = commit(0, &s2);
    c4.delta.joined = vec![b.clone()];
    c4.delta.opened = vec![(inv2.clone(), portal.clone())];
    assert_eq!(bp.commit(&acc, c4).await.unwrap(), Committed::Stored(1));
    assert_eq!(
        sorted(bp.agent_sessions(&acc, &b).await.unwrap()),
        sorted(vec![sid.clone(), s2.id.clone()])
    );
    assert_eq!(
        sorted(bp.open_invitations(&acc, &portal).await.unwrap()),
        sorted(vec![
            (inv_p.clone(), sid.clone()),
            (inv2.clone(), s2.id.clone())
        ])
    );
    assert_eq!(
        bp.invitation_session(&acc, &inv2).await.unwrap(),
        Some(s2.id.clone())
    );

    // Nothing of it is visible from another account.
    let other = account_id();
    for agent in [&a, &b, &c, &d] {
        assert!(bp.agent_sessions(&other, agent).await.unwrap().is_empty());
        assert!(
            bp.open_invitations(&other, &Target::Agent(agent.clone()))
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert!(
        bp.open_invitations(&other, &portal)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(bp.invitation_session(&other, &inv).await.unwrap(), None);
    assert!(bp.messages(&other, &sid).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------

/// What a commit publishes (and what `publish` sends) reaches every subscriber
/// of the topic that subscribed before, in order; a subscriber of a different
/// topic, or of the same-named topic of another account, receives nothing.
///
/// Absence is shown without sleeping: after the real messages, a sentinel is
/// published on each other topic, and it must be the first thing each of
/// those subscribers receives.
pub async fn published_messages_reach_only_the_topics_subscribers(bp: &dyn Backplane) {
    let acc = account_id();
    let other_acc = account_id();
    let lead = agent_id();
    let s = new_session(&acc, &lead);
    let sid = s.id.clone();
    let p = portal_id();

    let topic = Topic::Session(acc.clone(), sid.clone());
    let others = [
        Topic::Session(acc.clone(), SessionId::random()),
        Topic::Session(other_acc.clone(), sid.clone()),
        Topic::Agent(acc.clone(), lead.clone()),
        Topic::Portal(acc.clone(), p.clone()),
        Topic::Agent(other_acc.clone(), lead.clone()),
        Topic::Portal(other_acc.clone(), p.clone()),
    ];
    let mut rx1 = bp.subscribe(&topic).await.unwrap();
    let mut rx2 = bp.subscribe(&topic).await.unwrap();
    let mut other_rx = Vec::new();
    for t in &others {
        other_rx.push(bp.subscribe(t).await.unwrap());
    }

    let first = ended_msg(&sid);
    let mut c = commit(0, &s);
    c.publish = vec![(topic.clone(), first.clone())];
    assert_eq!(bp.commit(&acc, c).await.unwrap(), Committed::Stored(1));
    let second = presence_msg(&lead, Some(&p));
    bp.publish(topic.clone(), second.clone()).await.unwrap();

    for (i, rx) in [&mut rx1, &mut rx2].into_iter().enumerate() {
        assert_eq!(
            next(rx, "subscriber").await,
            first,
            "subscriber {i}: the commit's message"
        );
        assert_eq!(
            next(rx, "subscriber").await,
            second,
            "subscriber {i}: then the published one"
        );
    }

    for (t, rx) in others.iter().zip(other_rx.iter_mut()) {
        let sentinel = presence_msg(&agent_id(), None);
        bp.publish(t.clone(), sentinel.clone()).await.unwrap();
        assert_eq!(
            next(rx, "other topic").await,
            sentinel,
            "{t:?} received nothing before"
        );
    }
    // And the session topic got nothing more.
    let sentinel = presence_msg(&agent_id(), None);
    bp.publish(topic.clone(), sentinel.clone()).await.unwrap();
    assert_eq!(
        next(&mut rx1, "subscriber").await,
        sentinel,
        "nothing extra on the topic"
    );

    // Publishing to a topic nobody listens to is fine.
    bp.publish(Topic::Session(acc.clone(), SessionId::random()), first)
        .await
        .unwrap();
}

/// A subscriber that subscribes late does not see what was published before
/// (no replay), but sees what comes after.
pub async fn a_late_subscriber_sees_only_later_messages(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let topic = Topic::Agent(acc.clone(), a.clone());
    let mut early = bp.subscribe(&topic).await.unwrap();
    let before = presence_msg(&a, None);
    bp.publish(topic.clone(), before.clone()).await.unwrap();
    assert_eq!(next(&mut early, "early subscriber").await, before);

    let mut late = bp.subscribe(&topic).await.unwrap();
    let after = presence_msg(&a, Some(&portal_id()));
    bp.publish(topic.clone(), after.clone()).await.unwrap();
    assert_eq!(
        next(&mut late, "late subscriber").await,
        after,
        "no replay of older messages"
    );
    assert_eq!(next(&mut early, "early subscriber").await, after);
    assert!(
        matches!(late.try_recv(), Err(TryRecvError::Empty)),
        "exactly one message"
    );
}

// ---------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------

/// The first agent to claim wins with a fence; a different agent loses to it;
/// the winner claiming again wins with the same fence.
pub async fn claim_first_wins_and_is_idempotent_for_the_winner(bp: &dyn Backplane) {
    let acc = account_id();
    let inv = InvitationId::random();
    let a = agent_id();
    let b = agent_id();

    let fence = won(
        bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
        "first claim",
    );
    assert_eq!(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        Claim::Lost { by: a.clone() },
        "second agent loses to the first"
    );
    assert_eq!(
        bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
        Claim::Won { fence },
        "the winner asking again keeps its fence"
    );
    assert_eq!(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        Claim::Lost { by: a },
        "still lost"
    );
}

/// The same invitation id in another account is a different claim.
pub async fn claims_are_scoped_by_account(bp: &dyn Backplane) {
    let acc1 = account_id();
    let acc2 = account_id();
    let inv = InvitationId::random();
    let a = agent_id();
    let b = agent_id();

    won(
        bp.claim(&acc1, &inv, &a, LONG_TTL).await.unwrap(),
        "acc1 claim",
    );
    won(
        bp.claim(&acc2, &inv, &b, LONG_TTL).await.unwrap(),
        "acc2 claim of the same id",
    );
    assert_eq!(
        bp.claim(&acc1, &inv, &b, LONG_TTL).await.unwrap(),
        Claim::Lost { by: a.clone() }
    );
    assert_eq!(
        bp.claim(&acc2, &inv, &a, LONG_TTL).await.unwrap(),
        Claim::Lost { by: b.clone() }
    );
    bp.release(&acc2, &inv, &b).await.unwrap();
    assert_eq!(
        bp.claim(&acc1, &inv, &b, LONG_TTL).await.unwrap(),
        Claim::Lost { by: a },
        "a release in acc2 does not free acc1's claim"
    );
}

/// Fences strictly increase across invitations (and across re-claims).
pub async fn claim_fences_strictly_increase(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let mut last = 0;
    for i in 0..5 {
        let inv = InvitationId::random();
        let fence = won(
            bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
            "fresh invitation",
        );
        assert!(fence > last, "claim {i}: fence {fence} must exceed {last}");
        last = fence;
    }
}

/// A release by the holder lets another agent win, with a larger fence; the
/// former holder then loses to it.
pub async fn claim_release_by_holder_lets_another_win_with_larger_fence(bp: &dyn Backplane) {
    let acc = account_id();
    let inv = InvitationId::random();
    let a = agent_id();
    let b = agent_id();

    let f1 = won(
        bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
        "first claim",
    );
    bp.release(&acc, &inv, &a).await.unwrap();
    let f2 = won(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        "claim after release",
    );
    assert!(f2 > f1, "fence after release {f2} must exceed {f1}");
    assert_eq!(
        bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
        Claim::Lost { by: b }
    );
}

/// A release by an agent that does not hold the claim does nothing (and
/// releasing an unclaimed invitation is not an error).
pub async fn claim_release_by_non_holder_does_nothing(bp: &dyn Backplane) {
    let acc = account_id();
    let inv = InvitationId::random();
    let a = agent_id();
    let b = agent_id();

    bp.release(&acc, &inv, &b).await.unwrap();
    let fence = won(
        bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
        "first claim",
    );
    bp.release(&acc, &inv, &b).await.unwrap();
    assert_eq!(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        Claim::Lost { by: a.clone() },
        "claim still held after a non-holder's release"
    );
    assert_eq!(
        bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
        Claim::Won { fence }
    );
}

/// A claim whose ttl has passed can be won by another agent, with a larger fence.
pub async fn claim_expires_after_its_ttl(bp: &dyn Backplane) {
    let acc = account_id();
    let inv = InvitationId::random();
    let a = agent_id();
    let b = agent_id();

    let f1 = won(
        bp.claim(&acc, &inv, &a, Duration::from_millis(50))
            .await
            .unwrap(),
        "short",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let f2 = won(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        "claim after the ttl",
    );
    assert!(f2 > f1, "fence after expiry {f2} must exceed {f1}");
    assert_eq!(
        bp.claim(&acc, &inv, &a, LONG_TTL).await.unwrap(),
        Claim::Lost { by: b }
    );
}

/// 20 agents claiming one invitation at once: exactly one wins, the other 19
/// lose to that one.
pub async fn claim_concurrent_claims_have_exactly_one_winner(bp: &dyn Backplane) {
    let acc = account_id();
    let inv = InvitationId::random();
    let agents: Vec<AgentId> = (0..20).map(|_| agent_id()).collect();

    let results =
        futures_util::future::join_all(agents.iter().map(|a| bp.claim(&acc, &inv, a, LONG_TTL)))
            .await;
    let results: Vec<Claim> = results.into_iter().map(|r| r.unwrap()).collect();

    let winners: Vec<&AgentId> = agents
        .iter()
        .zip(&results)
        .filter(|(_, r)| matches!(r, Claim::Won { .. }))
        .map(|(a, _)| a)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner, got {results:?}");
    let winner = winners[0].clone();
    let losers: BTreeSet<&AgentId> = results
        .iter()
        .filter_map(|r| match r {
            Claim::Lost { by } => Some(by),
            Claim::Won { .. } => None,
        })
        .collect();
    assert_eq!(
        losers,
        BTreeSet::from([&winner]),
        "every loser lost to the winner"
    );
}

// ---------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------

/// `take_due` hands the due stream out once: `Some` for the first caller,
/// `None` after. A deadline 50 ms ahead arrives on it, not before its time,
/// and once.
///
/// Against a shared store several suites (or nodes) may compete for the due
/// stream, so this rule can only check delivery when it obtains the receiver
/// itself: if `take_due` already returns `None` (someone else took it), the
/// rule checks that a second call is `None` too and stops. Deadlines of other
/// rules or nodes may arrive on the same receiver; they are skipped.
pub async fn schedule_delivers_a_due_deadline_once_through_take_due(bp: &dyn Backplane) {
    let Some(mut due) = bp.take_due() else {
        assert!(bp.take_due().is_none(), "the due stream is taken once");
        return;
    };
    assert!(
        bp.take_due().is_none(),
        "take_due returns None the second time"
    );

    let deadline = Deadline {
        at: Utc::now() + chrono::Duration::milliseconds(50),
        account: account_id(),
        session: SessionId::random(),
        invitation: InvitationId::random(),
    };
    bp.schedule(deadline.clone()).await.unwrap();

    let arrived = tokio::time::timeout(ARRIVAL_TIMEOUT, async {
        loop {
            match due.recv().await {
                Some(d) if d == deadline => return Some(Utc::now()),
                Some(_) => {} // someone else's deadline
                None => return None,
            }
        }
    })
    .await;
    let at = match arrived {
        Ok(Some(at)) => at,
        Ok(None) => panic!("the due stream closed"),
        Err(_) => panic!("the deadline did not arrive within {ARRIVAL_TIMEOUT:?}"),
    };
    // Small tolerance for clock granularity.
    assert!(
        at + chrono::Duration::milliseconds(5) >= deadline.at,
        "arrived at {at}, before its time {}",
        deadline.at
    );

    // Once: it does not come again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(d) = due.try_recv() {
        assert_ne!(d, deadline, "the deadline fired twice");
    }
}

/// A deadline committed with a session change is armed with it (no open
/// invitation without its timer), and arrives on the due stream; once it is
/// completed it does not come again. Like the rule above, it checks delivery
/// only when it obtains the due stream itself.
pub async fn commit_arms_its_deadlines(bp: &dyn Backplane) {
    let acc = account_id();
    let s = new_session(&acc, &agent_id());
    let deadline = Deadline {
        at: Utc::now() + chrono::Duration::milliseconds(50),
        account: acc.clone(),
        session: s.id.clone(),
        invitation: InvitationId::random(),
    };
    let mut c = commit(0, &s);
    c.deadlines = vec![deadline.clone()];
    let Some(mut due) = bp.take_due() else {
        assert_eq!(bp.commit(&acc, c).await.unwrap(), Committed::Stored(1));
        return;
    };
    assert_eq!(bp.commit(&acc, c).await.unwrap(), Committed::Stored(1));
    let arrived = tokio::time::timeout(ARRIVAL_TIMEOUT, async {
        loop {
            match due.recv().await {
                Some(d) if d == deadline => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(arrived, Ok(true), "the committed deadline arrives");
    bp.complete(&deadline).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(d) = due.try_recv() {
        assert_ne!(d, deadline, "a completed deadline came again");
    }
}

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

/// `ping` answers `Ok` when the store is reachable.
pub async fn ping_is_ok(bp: &dyn Backplane) {
    bp.ping().await.unwrap();
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

/// Expands to one `#[tokio::test]` per backplane rule. `$make` is evaluated
/// once per test and must produce something that derefs to a [`Backplane`]
/// (`Arc<dyn Backplane>`, `Arc<MyBackplane>`, `Box<…>`). Every rule uses fresh
/// random ids, so `$make` may hand out the same shared store each time.
#[doc(hidden)]
#[macro_export]
macro_rules! backplane_conformance_suite {
    ($make:expr) => {
        $crate::backplane_conformance_suite!(@rules $make;
            directory_accounts_put_reports_creation_and_keeps_latest,
            directory_portals_are_scoped_by_account_and_listed_sorted,
            directory_agents_are_scoped_by_account,
            presence_login_returns_previous_and_logout_clears,
            presence_online_lists_only_the_accounts_logged_in_agents,
            commit_is_versioned_and_a_conflict_changes_nothing,
            commit_applies_the_index_delta_and_appends_the_message,
            published_messages_reach_only_the_topics_subscribers,
            a_late_subscriber_sees_only_later_messages,
            claim_first_wins_and_is_idempotent_for_the_winner,
            claims_are_scoped_by_account,
            claim_fences_strictly_increase,
            claim_release_by_holder_lets_another_win_with_larger_fence,
            claim_release_by_non_holder_does_nothing,
            claim_expires_after_its_ttl,
            claim_concurrent_claims_have_exactly_one_winner,
            schedule_delivers_a_due_deadline_once_through_take_due,
            commit_arms_its_deadlines,
            ping_is_ok,
        );
    };
    (@rules $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "current_thread")]
            async fn $rule() {
                let bp = $make;
                let bp: &dyn $crate::backplane::Backplane = &*bp;
                $crate::backplane::conformance::$rule(bp).await;
            }
        )*
    };
}

#[cfg(test)]
mod memory {
    crate::backplane_conformance_suite!(std::sync::Arc::new(
        crate::backplane::memory::MemoryBackplane::new()
    ) as std::sync::Arc<dyn crate::backplane::Backplane>);
}
