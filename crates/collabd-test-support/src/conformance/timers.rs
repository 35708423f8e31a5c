//! Timers: the due stream, and timers (scheduled or armed by a commit)
//! delivered once when due, moved, disarmed, and removed when their
//! delivery is completed.

use chrono::Utc;

use collabd::backplane::Backplane;
use collabd::domain::session::{Cancel, Target, Timer};
use collabd::domain::{InvitationId, Outcome, Policy, SessionId};

use super::fixtures::{
    Live, account_id, agent_id, delivers, due_stream, due_until, find_due, in_ms, next_due,
    next_dues,
};
use super::{ARRIVAL_TIMEOUT, EARLY_TOLERANCE_MS, REDELIVERY_TIMEOUT};

/// `take_due` hands the due stream out once: `Some` for the first caller,
/// `None` after.
pub async fn timers_the_due_stream_is_handed_out_once(bp: &dyn Backplane) {
    assert!(bp.take_due().is_some(), "the first caller gets the stream");
    assert!(bp.take_due().is_none(), "the second gets nothing");
    assert!(bp.take_due().is_none(), "nor the third");
}

/// A timer armed with `schedule` arrives on the due stream once it is due,
/// not before, naming its account, session, timer and due time — once (it
/// does not come again before a later sentinel).
pub async fn timers_schedule_delivers_a_timer_once_when_due(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let sid = SessionId::random();
    let timer = Timer::Expiry(InvitationId::within(&sid));
    let at = in_ms(150);
    bp.schedule(&acc, &sid, &timer, at).await.unwrap();

    let d = next_due(&mut due, &acc, ARRIVAL_TIMEOUT, "the scheduled timer").await;
    let arrived = Utc::now();
    assert_eq!((&d.account, &d.session, &d.timer), (&acc, &sid, &timer));
    assert_eq!(d.at, at, "its due time");
    assert!(
        arrived.timestamp_millis() + EARLY_TOLERANCE_MS >= at.timestamp_millis(),
        "arrived at {arrived}, before its time {at}"
    );

    let sentinel = SessionId::random();
    bp.schedule(&acc, &sentinel, &Timer::Idle, in_ms(400))
        .await
        .unwrap();
    let before = due_until(
        &mut due,
        &acc,
        (&sentinel, &Timer::Idle),
        ARRIVAL_TIMEOUT,
        "the sentinel",
    )
    .await;
    assert!(before.is_empty(), "delivered once: {before:?}");
    bp.complete(&d).await.unwrap();
}

/// Scheduling a timer again moves it, earlier or later: it arrives once, at
/// its new time.
pub async fn timers_scheduling_again_moves_the_timer(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let sid = SessionId::random();

    // Earlier.
    bp.schedule(&acc, &sid, &Timer::Idle, in_ms(60_000))
        .await
        .unwrap();
    let sooner = in_ms(200);
    bp.schedule(&acc, &sid, &Timer::Idle, sooner).await.unwrap();
    let d = next_due(&mut due, &acc, ARRIVAL_TIMEOUT, "the moved-up timer").await;
    assert!(delivers(&d, &sid, &Timer::Idle), "{d:?}");
    assert_eq!(d.at, sooner, "at its new time");
    bp.complete(&d).await.unwrap();

    // Later.
    let timer = Timer::Expiry(InvitationId::within(&sid));
    bp.schedule(&acc, &sid, &timer, in_ms(200)).await.unwrap();
    let later = in_ms(1200);
    bp.schedule(&acc, &sid, &timer, later).await.unwrap();
    let sentinel = SessionId::random();
    bp.schedule(&acc, &sentinel, &Timer::Idle, in_ms(600))
        .await
        .unwrap();
    let before = due_until(
        &mut due,
        &acc,
        (&sentinel, &Timer::Idle),
        ARRIVAL_TIMEOUT,
        "the sentinel",
    )
    .await;
    assert!(before.is_empty(), "not at its old time: {before:?}");
    let d = next_due(&mut due, &acc, ARRIVAL_TIMEOUT, "the moved-back timer").await;
    assert!(delivers(&d, &sid, &timer), "{d:?}");
    assert_eq!(d.at, later, "at its new time");
    bp.complete(&d).await.unwrap();
}

/// The timers a commit arms (here an idle timer moved to 200 ms from now,
/// and an invitation's expiry under a 1 s ttl) arrive when due, not before,
/// at their due time, and once.
pub async fn timers_a_committed_arm_is_delivered_once_when_due(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let (a, b) = (agent_id(), agent_id());
    let policy = Policy {
        invitation_ttl_secs: 1,
        ..Policy::default()
    };
    let (mut live, mut created) = Live::create_with(&acc, &a, policy);
    let idle_at = in_ms(200);
    assert!(created.arm.iter().any(|(t, _)| t == &Timer::Idle));
    created.arm = vec![(Timer::Idle, idle_at)];
    live.store(bp, &created).await;
    let invite = live.invitation(&a, Target::Agent(b.clone()), std::slice::from_ref(&b));
    let expiry = Timer::Expiry(invite.id.clone());
    let invited = live.run(bp, invite).await;
    let expires_at = invited
        .arm
        .iter()
        .find(|(t, _)| t == &expiry)
        .map(|(_, at)| *at)
        .expect("an invitation arms its expiry");

    let mut delivered = Vec::new();
    for _ in 0..2 {
        let d = next_due(&mut due, &acc, ARRIVAL_TIMEOUT, "the armed timers").await;
        let arrived = Utc::now().timestamp_millis();
        assert!(
            arrived + EARLY_TOLERANCE_MS >= d.at.timestamp_millis(),
            "{d:?} arrived early, at {arrived}"
        );
        delivered.push(d);
    }
    let idle = find_due(&delivered, live.id(), &Timer::Idle);
    assert_eq!(idle.at, idle_at);
    let expired = find_due(&delivered, live.id(), &expiry);
    assert_eq!(expired.at.timestamp_millis(), expires_at.timestamp_millis());

    let sentinel = SessionId::random();
    bp.schedule(&acc, &sentinel, &Timer::Idle, in_ms(400))
        .await
        .unwrap();
    let before = due_until(
        &mut due,
        &acc,
        (&sentinel, &Timer::Idle),
        ARRIVAL_TIMEOUT,
        "the sentinel",
    )
    .await;
    assert!(before.is_empty(), "each delivered once: {before:?}");
    for d in &delivered {
        bp.complete(d).await.unwrap();
    }
}

/// A timer a commit disarms is never delivered: an invitation's expiry
/// disarmed by its cancellation, and a timer armed by one commit and
/// disarmed by the next. A sentinel due after both arrives first.
pub async fn timers_a_disarmed_timer_is_never_delivered(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let (a, b) = (agent_id(), agent_id());
    let policy = Policy {
        invitation_ttl_secs: 1,
        ..Policy::default()
    };
    let (mut live, created) = Live::create_with(&acc, &a, policy);
    live.store(bp, &created).await;
    let inv = live
        .invite(bp, &a, Target::Agent(b.clone()), std::slice::from_ref(&b))
        .await;
    let expiry = Timer::Expiry(inv.clone());
    let cancelled = live
        .run(
            bp,
            Cancel {
                invitation: inv,
                by: a.clone(),
            },
        )
        .await;
    assert!(
        cancelled.disarm.contains(&expiry),
        "a cancel disarms the expiry"
    );

    let soon = Timer::Expiry(InvitationId::within(live.id()));
    let armed = Outcome {
        arm: vec![(soon.clone(), in_ms(300))],
        ..Outcome::default()
    };
    live.store(bp, &armed).await;
    let disarmed = Outcome {
        disarm: vec![soon.clone()],
        ..Outcome::default()
    };
    live.store(bp, &disarmed).await;

    // The expiry was due within 1 s of the invitation.
    let sentinel = SessionId::random();
    bp.schedule(&acc, &sentinel, &Timer::Idle, in_ms(1500))
        .await
        .unwrap();
    let fired = due_until(
        &mut due,
        &acc,
        (&sentinel, &Timer::Idle),
        ARRIVAL_TIMEOUT,
        "the sentinel",
    )
    .await;
    assert!(fired.is_empty(), "disarmed timers fired: {fired:?}");
}

/// A timer armed again after it was delivered (by a commit, or by
/// `schedule`) is a new timer: completing the old delivery does not remove
/// it, and it is delivered again at its new time.
pub async fn timers_a_timer_armed_again_after_its_delivery_survives_completing_it(
    bp: &dyn Backplane,
) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let (mut live, mut created) = Live::create(&acc, &agent_id());
    let idle = Timer::Idle;
    let expiry = Timer::Expiry(InvitationId::within(live.id()));
    created.arm = vec![(idle.clone(), in_ms(150)), (expiry.clone(), in_ms(150))];
    live.store(bp, &created).await;
    let first = next_dues(&mut due, &acc, 2, "the armed timers").await;
    find_due(&first, live.id(), &idle);
    find_due(&first, live.id(), &expiry);

    // Armed again while their deliveries are handled.
    let idle_at = in_ms(500);
    let rearm = Outcome {
        arm: vec![(idle.clone(), idle_at)],
        ..Outcome::default()
    };
    live.store(bp, &rearm).await;
    let expiry_at = in_ms(600);
    bp.schedule(&acc, live.id(), &expiry, expiry_at)
        .await
        .unwrap();
    for d in &first {
        bp.complete(d).await.unwrap();
    }

    let second = next_dues(&mut due, &acc, 2, "the timers armed again").await;
    assert_eq!(
        find_due(&second, live.id(), &idle).at,
        idle_at,
        "re-armed by a commit: delivered at its new time"
    );
    assert_eq!(
        find_due(&second, live.id(), &expiry).at,
        expiry_at,
        "re-armed by schedule: delivered at its new time"
    );
    for d in &second {
        bp.complete(d).await.unwrap();
    }
}

/// Completing a delivery removes the timer. Timers are delivered at least
/// once, so absence needs a control: two timers are delivered together,
/// one is completed, the other not. The uncompleted one comes back when
/// its delivery's lease ends; the completed one never does (a sentinel due
/// a second after that return arrives first).
pub async fn timers_completing_a_delivery_removes_the_timer(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let (mut live, mut created) = Live::create(&acc, &agent_id());
    let done = Timer::Idle;
    let kept = Timer::Expiry(InvitationId::within(live.id()));
    let at = in_ms(200);
    created.arm = vec![(done.clone(), at), (kept.clone(), at)];
    live.store(bp, &created).await;
    let first = next_dues(&mut due, &acc, 2, "the armed timers").await;
    bp.complete(find_due(&first, live.id(), &done))
        .await
        .unwrap();
    find_due(&first, live.id(), &kept);

    let mut seen = Vec::new();
    let again = loop {
        let d = next_due(
            &mut due,
            &acc,
            REDELIVERY_TIMEOUT,
            "an uncompleted delivery comes back",
        )
        .await;
        if delivers(&d, live.id(), &kept) {
            break d;
        }
        seen.push(d);
    };
    let sentinel = SessionId::random();
    bp.schedule(&acc, &sentinel, &Timer::Idle, in_ms(1000))
        .await
        .unwrap();
    seen.extend(
        due_until(
            &mut due,
            &acc,
            (&sentinel, &Timer::Idle),
            ARRIVAL_TIMEOUT,
            "the sentinel",
        )
        .await,
    );
    assert!(
        !seen.iter().any(|d| delivers(d, live.id(), &done)),
        "a completed timer came back: {seen:?}"
    );
    bp.complete(&again).await.unwrap();
}
