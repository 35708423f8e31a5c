//! Sessions: the versioned commit (a stale or refused commit changes
//! nothing), `refresh`, the listing of an account's sessions by status, and
//! the retention of an ended session. The indexes a commit keeps are in
//! `invitations`, the transcripts in `transcript`.

use std::time::Duration;

use tokio::time::Instant;

use collabd::backplane::{
    Backplane, Claim, Commit, Committed, Fresh, Guard, Rate, RateVerdict, SessionCursor, Versioned,
};
use collabd::domain::session::{Audience, Cancel, End, Poster, SessionStatus, Target, Timer};
use collabd::domain::{InvitationId, Policy, SessionId};

use super::fixtures::{
    Live, accept, account_id, agent_id, assert_quiet, delivers, due_stream, due_until, ended_msg,
    in_ms, next, post, sorted, transcripts, won,
};
use super::{ARRIVAL_TIMEOUT, KEEP, LONG_TTL, RETENTION_TIMEOUT, SHORT_RETENTION};

/// Expected version 0 creates the session at version 1, the stored version
/// gives the next one; a stale (or future) expected version is a
/// `Conflict`. Sessions are scoped by account.
pub async fn sessions_commit_is_versioned_and_scoped_by_account(bp: &dyn Backplane) {
    let acc = account_id();
    let lead = agent_id();
    let (mut live, created) = Live::create(&acc, &lead);
    let sid = live.id().clone();

    assert_eq!(bp.load(&acc, &sid).await.unwrap(), None, "no session yet");
    assert_eq!(
        bp.commit(&acc, live.commit(1, &created)).await.unwrap(),
        Committed::Conflict,
        "expected 1 for a missing session"
    );
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        None,
        "the conflict created nothing"
    );

    assert_eq!(
        bp.commit(&acc, live.commit(0, &created)).await.unwrap(),
        Committed::Stored(1),
        "create at 1"
    );
    live.version = 1;
    assert_eq!(bp.load(&acc, &sid).await.unwrap(), Some(live.versioned()));

    live.run(bp, post(Poster::Customer, "hello", Audience::Everyone))
        .await;
    assert_eq!(live.version, 2);
    let stored = Some(live.versioned());
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        stored,
        "second commit at 2"
    );

    let mut next = live.clone();
    let outcome = next.apply(post(Poster::Customer, "again", Audience::Everyone));
    for expected in [0, 1, 3, 42] {
        assert_eq!(
            bp.commit(&acc, next.commit(expected, &outcome))
                .await
                .unwrap(),
            Committed::Conflict,
            "expected version {expected} while at 2"
        );
    }
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        stored,
        "state unchanged by conflicts"
    );

    // Scoped by account.
    let other = account_id();
    assert_eq!(
        bp.load(&other, &sid).await.unwrap(),
        None,
        "not visible from another account"
    );
    assert_eq!(
        bp.refresh(&other, &sid, 2).await.unwrap(),
        Fresh::Gone,
        "not visible from another account"
    );
    let (foreign, foreign_created) = Live::create_as(&other, &lead, sid.clone(), Policy::default());
    assert_eq!(
        bp.commit(&other, foreign.commit(0, &foreign_created))
            .await
            .unwrap(),
        Committed::Stored(1),
        "the same session id in another account is a new session"
    );
    assert_eq!(
        bp.load(&acc, &sid).await.unwrap(),
        stored,
        "acc's session untouched"
    );
}

/// A commit whose expected version is not the stored one changes nothing:
/// not the state, the transcripts, the history, the indexes, the claims,
/// the timers (neither its arms nor its disarms), the retention, and it
/// publishes nothing.
pub async fn sessions_a_conflict_changes_nothing(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let (a, b, c) = (agent_id(), agent_id(), agent_id());
    let policy = Policy {
        invitation_ttl_secs: 2,
        ..Policy::default()
    };
    let (mut live, created) = Live::create_with(&acc, &a, policy);
    live.store(bp, &created).await;
    let inv = live
        .invite(bp, &a, Target::Agent(b.clone()), std::slice::from_ref(&b))
        .await;
    live.run(bp, post(Poster::Customer, "hello", Audience::Everyone))
        .await;
    let fence = won(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        "b claims",
    );

    // A change computed elsewhere from an older or newer state: `b` joins
    // (its invitation closes, the claim is decided, the expiry disarmed),
    // a message, a new invitation whose timer would fire soon, `a` leaves,
    // the session ends with a short retention, and something is published.
    let mut other = live.clone();
    let mut change = other.apply(accept(&inv, &b, 0, fence));
    change.message = other
        .apply(post(
            Poster::Agent(a.clone()),
            "not stored",
            Audience::Everyone,
        ))
        .message;
    let invite_c = other.invitation(&a, Target::Agent(c.clone()), std::slice::from_ref(&c));
    let inv_c = invite_c.id.clone();
    let invited = other.apply(invite_c);
    change.delta.opened.extend(invited.delta.opened);
    let soon = Timer::Expiry(inv_c.clone());
    change.arm.push((soon.clone(), in_ms(300)));
    change.delta.left.push(a.clone());
    change.ended = true;
    assert!(change.message.is_some() && !change.closed.is_empty());
    assert!(change.disarm.contains(&Timer::Expiry(inv.clone())));

    let before = live.versioned();
    assert_eq!(
        bp.load(&acc, live.id()).await.unwrap(),
        Some(before.clone())
    );
    let transcripts_before = transcripts(bp, &acc, live.id()).await;
    assert_eq!(transcripts_before.0.len(), 1);
    let topic = live.topic();
    let mut rx = bp.subscribe(&topic).await.unwrap();
    let publish = [(topic.clone(), ended_msg(live.id(), live.version + 1))];

    for expected in [live.version - 1, live.version + 1] {
        let commit = Commit {
            expected_version: expected,
            session: &other.session,
            outcome: &change,
            publish: &publish,
            guard: None,
            retention: SHORT_RETENTION,
        };
        assert_eq!(
            bp.commit(&acc, commit).await.unwrap(),
            Committed::Conflict,
            "expected version {expected} while at {}",
            live.version
        );
    }
    let sentinel = SessionId::random();
    bp.schedule(&acc, &sentinel, &Timer::Idle, in_ms(2500))
        .await
        .unwrap();

    assert_eq!(
        bp.load(&acc, live.id()).await.unwrap(),
        Some(before.clone()),
        "state"
    );
    assert_eq!(
        transcripts(bp, &acc, live.id()).await,
        transcripts_before,
        "transcripts"
    );
    assert_eq!(
        bp.closed_invitation(&acc, live.id(), &inv).await.unwrap(),
        None,
        "history"
    );
    assert_eq!(
        bp.open_invitations(&acc, &Target::Agent(b.clone()))
            .await
            .unwrap(),
        vec![(inv.clone(), live.id().clone())],
        "open invitations: still open"
    );
    assert!(
        bp.open_invitations(&acc, &Target::Agent(c.clone()))
            .await
            .unwrap()
            .is_empty(),
        "open invitations: none opened"
    );
    assert_eq!(
        bp.agent_sessions(&acc, &a).await.unwrap(),
        vec![live.id().clone()],
        "agent sessions: `a` did not leave"
    );
    assert!(
        bp.agent_sessions(&acc, &b).await.unwrap().is_empty(),
        "agent sessions: `b` did not join"
    );
    assert_eq!(
        bp.claim(&acc, &inv, &c, LONG_TTL).await.unwrap(),
        Claim::Lost { by: b.clone() },
        "the claim was not decided"
    );
    assert_quiet(bp, &topic, &mut rx, "publishes").await;

    let fired = due_until(
        &mut due,
        &acc,
        (&sentinel, &Timer::Idle),
        ARRIVAL_TIMEOUT,
        "the sentinel timer",
    )
    .await;
    assert!(
        fired
            .iter()
            .any(|d| delivers(d, live.id(), &Timer::Expiry(inv.clone()))),
        "timers: the stored expiry was not disarmed, it fired: {fired:?}"
    );
    assert!(
        !fired.iter().any(|d| delivers(d, live.id(), &soon)),
        "timers: the conflict armed nothing: {fired:?}"
    );
    assert_eq!(
        bp.load(&acc, live.id()).await.unwrap(),
        Some(before),
        "the conflict's 1 s retention did not apply"
    );
}

/// A commit whose guard does not hold is `Refused` and changes nothing:
/// neither a creation nor a change of a stored session (state, transcripts,
/// history, indexes, claims, timers, publishes). With a bound one higher
/// the same commit is stored.
pub async fn sessions_a_refused_guard_changes_nothing(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let (a, x, y) = (agent_id(), agent_id(), agent_id());
    let busy = Live::started(bp, &acc, &x).await;
    let guard = Guard {
        agent: x.clone(),
        below: 1,
    };

    // A creation by an agent already in as many sessions as allowed.
    let (fresh, created) = Live::create(&acc, &x);
    let commit = Commit {
        guard: Some(&guard),
        ..fresh.commit(0, &created)
    };
    assert_eq!(
        bp.commit(&acc, commit).await.unwrap(),
        Committed::Refused,
        "a creation beyond the bound"
    );
    assert_eq!(
        bp.load(&acc, fresh.id()).await.unwrap(),
        None,
        "nothing created"
    );
    assert_eq!(
        bp.agent_sessions(&acc, &x).await.unwrap(),
        vec![busy.id().clone()]
    );

    // A join beyond the bound.
    let mut live = Live::started(bp, &acc, &a).await;
    let inv = live
        .invite(bp, &a, Target::Agent(x.clone()), std::slice::from_ref(&x))
        .await;
    live.run(bp, post(Poster::Customer, "hello", Audience::Everyone))
        .await;
    let fence = won(
        bp.claim(&acc, &inv, &x, LONG_TTL).await.unwrap(),
        "x claims",
    );
    let mut other = live.clone();
    let mut change = other.apply(accept(&inv, &x, 1, fence));
    change.message = other
        .apply(post(Poster::Agent(a.clone()), "joined", Audience::Everyone))
        .message;
    let soon = Timer::Expiry(InvitationId::within(live.id()));
    change.arm.push((soon.clone(), in_ms(300)));

    let before = live.versioned();
    let transcripts_before = transcripts(bp, &acc, live.id()).await;
    let topic = live.topic();
    let mut rx = bp.subscribe(&topic).await.unwrap();
    let publish = [(topic.clone(), ended_msg(live.id(), live.version + 1))];
    let commit = Commit {
        expected_version: live.version,
        session: &other.session,
        outcome: &change,
        publish: &publish,
        guard: Some(&guard),
        retention: KEEP,
    };
    assert_eq!(
        bp.commit(&acc, commit).await.unwrap(),
        Committed::Refused,
        "a join beyond the bound"
    );
    let sentinel = SessionId::random();
    bp.schedule(&acc, &sentinel, &Timer::Idle, in_ms(800))
        .await
        .unwrap();

    assert_eq!(
        bp.load(&acc, live.id()).await.unwrap(),
        Some(before),
        "state"
    );
    assert_eq!(
        transcripts(bp, &acc, live.id()).await,
        transcripts_before,
        "transcripts"
    );
    assert_eq!(
        bp.closed_invitation(&acc, live.id(), &inv).await.unwrap(),
        None,
        "history"
    );
    assert_eq!(
        bp.open_invitations(&acc, &Target::Agent(x.clone()))
            .await
            .unwrap(),
        vec![(inv.clone(), live.id().clone())],
        "open invitations"
    );
    assert_eq!(
        bp.agent_sessions(&acc, &x).await.unwrap(),
        vec![busy.id().clone()],
        "agent sessions"
    );
    assert_eq!(
        bp.claim(&acc, &inv, &y, LONG_TTL).await.unwrap(),
        Claim::Lost { by: x.clone() },
        "the claim was not decided"
    );
    assert_quiet(bp, &topic, &mut rx, "publishes").await;
    let fired = due_until(
        &mut due,
        &acc,
        (&sentinel, &Timer::Idle),
        ARRIVAL_TIMEOUT,
        "the sentinel timer",
    )
    .await;
    assert!(
        !fired.iter().any(|d| delivers(d, live.id(), &soon)),
        "timers: the refused commit armed nothing: {fired:?}"
    );

    // One more session allowed: the same commit is stored.
    let roomier = Guard {
        agent: x.clone(),
        below: 2,
    };
    let commit = Commit {
        expected_version: live.version,
        session: &other.session,
        outcome: &change,
        publish: &publish,
        guard: Some(&roomier),
        retention: KEEP,
    };
    assert_eq!(
        bp.commit(&acc, commit).await.unwrap(),
        Committed::Stored(live.version + 1),
        "within the bound"
    );
    assert_eq!(
        bp.agent_sessions(&acc, &x).await.unwrap(),
        sorted(vec![busy.id().clone(), live.id().clone()])
    );
    assert_eq!(
        next(&mut rx, "the stored commit's publish").await,
        publish[0].1
    );
}

/// `refresh` answers `Current` when the caller's version is the stored one,
/// `Changed` with the stored state and version otherwise, and `Gone` when
/// there is no such session (in that account).
pub async fn sessions_refresh_says_current_changed_or_gone(bp: &dyn Backplane) {
    let acc = account_id();
    let (mut live, created) = Live::create(&acc, &agent_id());
    let sid = live.id().clone();
    assert_eq!(
        bp.refresh(&acc, &sid, 0).await.unwrap(),
        Fresh::Gone,
        "never stored"
    );
    live.store(bp, &created).await;
    assert_eq!(bp.refresh(&acc, &sid, 1).await.unwrap(), Fresh::Current);
    assert_eq!(
        bp.refresh(&acc, &sid, 0).await.unwrap(),
        Fresh::Changed(Box::new(live.versioned())),
        "a caller that has nothing"
    );
    assert_eq!(
        bp.refresh(&acc, &sid, 7).await.unwrap(),
        Fresh::Changed(Box::new(live.versioned())),
        "a caller ahead of the store"
    );
    live.run(bp, post(Poster::Customer, "hi", Audience::Everyone))
        .await;
    assert_eq!(
        bp.refresh(&acc, &sid, 1).await.unwrap(),
        Fresh::Changed(Box::new(live.versioned())),
        "another node committed"
    );
    assert_eq!(bp.refresh(&acc, &sid, 2).await.unwrap(), Fresh::Current);
    assert_eq!(
        bp.refresh(&account_id(), &sid, 2).await.unwrap(),
        Fresh::Gone,
        "another account"
    );
}

/// An account's sessions are listed by status: active ones in the order
/// they were created, ended ones in the order they ended, in pages; an
/// ended session leaves the list with its retention.
pub async fn sessions_are_listed_by_status_in_pages(bp: &dyn Backplane) {
    let acc = account_id();
    let lead = agent_id();
    let mut lives = Vec::new();
    for _ in 0..5 {
        lives.push(Live::started(bp, &acc, &lead).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let ids = |page: &[(SessionCursor, Versioned)]| -> Vec<SessionId> {
        page.iter().map(|(_, v)| v.session.id.clone()).collect()
    };
    let first = bp
        .sessions_page(&acc, SessionStatus::Active, None, 2)
        .await
        .unwrap();
    let second = bp
        .sessions_page(&acc, SessionStatus::Active, Some(&first[1].0), 10)
        .await
        .unwrap();
    let mut all = ids(&first);
    all.extend(ids(&second));
    let created: Vec<SessionId> = lives.iter().map(|l| l.id().clone()).collect();
    assert_eq!(all, created, "active: in the order they were created");
    assert_eq!(first[0].1, lives[0].versioned(), "with their state");
    assert!(
        bp.sessions_page(&acc, SessionStatus::Ended, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // End the fourth (kept), then the second (short retention).
    let mut fourth = lives[3].clone();
    let ended = fourth.apply(End { by: lead.clone() });
    let committed = bp
        .commit(&acc, fourth.commit(fourth.version, &ended))
        .await
        .unwrap();
    fourth.stored(committed);
    tokio::time::sleep(Duration::from_millis(3)).await;
    let mut second_live = lives[1].clone();
    let ended = second_live.apply(End { by: lead.clone() });
    let commit = Commit {
        retention: SHORT_RETENTION,
        ..second_live.commit(second_live.version, &ended)
    };
    let committed = bp.commit(&acc, commit).await.unwrap();
    second_live.stored(committed);
    let active = bp
        .sessions_page(&acc, SessionStatus::Active, None, 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&active),
        vec![created[0].clone(), created[2].clone(), created[4].clone()]
    );
    let ended_list = bp
        .sessions_page(&acc, SessionStatus::Ended, None, 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&ended_list),
        vec![created[3].clone(), created[1].clone()],
        "in the order they ended"
    );
    assert_eq!(ended_list[0].1, fourth.versioned());

    let start = Instant::now();
    loop {
        let ended_list = bp
            .sessions_page(&acc, SessionStatus::Ended, None, 10)
            .await
            .unwrap();
        if ids(&ended_list) == vec![created[3].clone()] {
            break;
        }
        assert!(
            start.elapsed() < RETENTION_TIMEOUT,
            "still listed: {:?}",
            ids(&ended_list)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        bp.sessions_page(&account_id(), SessionStatus::Active, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "another account lists nothing"
    );
}

/// A commit that ends a session keeps it — state, transcripts, history —
/// for its retention, and then it is gone: `load` is `None`, `refresh` is
/// `Gone`, both transcripts are empty, the history and the accept context
/// know nothing. The same session id may then be created afresh, with
/// nothing of the old one.
pub async fn sessions_an_ended_session_is_gone_after_its_retention(bp: &dyn Backplane) {
    let acc = account_id();
    let (a, b) = (agent_id(), agent_id());
    let mut live = Live::started(bp, &acc, &a).await;
    let sid = live.id().clone();
    // Its customer token takes from its bucket while the session is open…
    let once = Rate {
        per_sec: 1,
        burst: 1,
    };
    let customer = bp
        .account_for_token(&acc, &sid, "cust", super::directory::token_only(once))
        .await
        .unwrap();
    assert!(customer.session_open);
    assert_eq!(customer.rate, RateVerdict::Allowed);
    live.run(bp, post(Poster::Customer, "hello", Audience::Everyone))
        .await;
    live.run(
        bp,
        post(Poster::Agent(a.clone()), "internal", Audience::Agents),
    )
    .await;
    let inv = live
        .invite(bp, &a, Target::Agent(b.clone()), std::slice::from_ref(&b))
        .await;
    live.run(
        bp,
        Cancel {
            invitation: inv.clone(),
            by: a.clone(),
        },
    )
    .await;

    let ended = live.apply(End { by: a.clone() });
    assert!(ended.ended);
    let commit = Commit {
        retention: SHORT_RETENTION,
        ..live.commit(live.version, &ended)
    };
    let committed = bp.commit(&acc, commit).await.unwrap();
    live.stored(committed);
    let kept = bp.load(&acc, &sid).await.unwrap();
    assert_eq!(kept, Some(live.versioned()), "kept, ended, for a while");
    // …and once it ended the token is no longer good: it takes nothing
    // (its burst of 1 was spent: a take would be refused).
    let customer = bp
        .account_for_token(&acc, &sid, "cust", super::directory::token_only(once))
        .await
        .unwrap();
    assert_eq!(
        (customer.session_open, customer.rate),
        (false, RateVerdict::Allowed)
    );
    assert!(
        bp.agent_sessions(&acc, &a).await.unwrap().is_empty(),
        "nobody is active in it"
    );

    let start = Instant::now();
    while bp.load(&acc, &sid).await.unwrap().is_some() {
        assert!(
            start.elapsed() < RETENTION_TIMEOUT,
            "the session outlived its 1 s retention by {RETENTION_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        bp.refresh(&acc, &sid, live.version).await.unwrap(),
        Fresh::Gone
    );
    assert!(
        !bp.account_for_token(&acc, &sid, "cust", super::directory::token_only(once))
            .await
            .unwrap()
            .session_open,
        "past its retention"
    );
    assert_eq!(
        transcripts(bp, &acc, &sid).await,
        (vec![], vec![]),
        "transcripts gone"
    );
    assert_eq!(
        bp.closed_invitation(&acc, &sid, &inv).await.unwrap(),
        None,
        "history gone"
    );
    let c = bp
        .accept_context(&acc, &sid, &inv, &b, Some(live.version))
        .await
        .unwrap();
    assert_eq!((c.version, c.current, c.closed), (None, None, None));

    // The id may be used again, from scratch.
    let (mut again, created) = Live::create_as(&acc, &a, sid.clone(), Policy::default());
    again.store(bp, &created).await;
    assert_eq!(
        transcripts(bp, &acc, &sid).await,
        (vec![], vec![]),
        "no old transcript"
    );
    assert_eq!(
        bp.closed_invitation(&acc, &sid, &inv).await.unwrap(),
        None,
        "no old history"
    );
    assert_eq!(bp.refresh(&acc, &sid, 1).await.unwrap(), Fresh::Current);
}
