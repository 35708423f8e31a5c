//! Fan-out: what is published on a topic reaches that topic's subscribers,
//! of that account, from the moment they subscribe.

use tokio::sync::broadcast::error::TryRecvError;

use collabd::backplane::{Backplane, Commit, Committed, Topic};
use collabd::domain::SessionId;

use super::fixtures::{
    Live, account_id, agent_id, assert_quiet, ended_msg, next, portal_id, presence_msg,
};

/// What a commit publishes (and what `publish` sends) reaches every subscriber
/// of the topic that subscribed before, in order; a subscriber of a different
/// topic, or of the same-named topic of another account, receives nothing.
///
/// Absence is shown without sleeping: after the real messages, a sentinel is
/// published on each other topic, and it must be the first thing each of
/// those subscribers receives.
pub async fn bus_published_messages_reach_only_the_topics_subscribers(bp: &dyn Backplane) {
    let acc = account_id();
    let other_acc = account_id();
    let lead = agent_id();
    let (live, created) = Live::create(&acc, &lead);
    let sid = live.id().clone();
    let p = portal_id();

    let topic = live.topic();
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

    let first = ended_msg(&sid, 1);
    let publish = [(topic.clone(), first.clone())];
    let commit = Commit {
        publish: &publish,
        ..live.commit(0, &created)
    };
    assert_eq!(bp.commit(&acc, commit).await.unwrap(), Committed::Stored(1));
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
        assert_quiet(bp, t, rx, &format!("{t:?}")).await;
    }
    // And the session topic got nothing more.
    assert_quiet(bp, &topic, &mut rx1, "the session topic").await;

    // Publishing to a topic nobody listens to is fine.
    bp.publish(Topic::Session(acc.clone(), SessionId::random()), first)
        .await
        .unwrap();
}

/// A subscriber that subscribes late does not see what was published before
/// (no replay), but sees what comes after.
pub async fn bus_a_late_subscriber_sees_only_later_messages(bp: &dyn Backplane) {
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
