//! Claims: the first claim of an invitation wins with a fence, fences
//! strictly increase, and a claim goes when its holder releases it or its
//! ttl passes.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use collabd::backplane::{Backplane, Claim};
use collabd::domain::AgentId;

use super::fixtures::{account_id, agent_id, invitation_id, won};
use super::{ARRIVAL_TIMEOUT, LONG_TTL};

/// The first agent to claim wins with a fence; a different agent loses to it;
/// the winner claiming again wins with the same fence.
pub async fn claim_first_wins_and_is_idempotent_for_the_winner(bp: &dyn Backplane) {
    let acc = account_id();
    let inv = invitation_id();
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
    let inv = invitation_id();
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
        let inv = invitation_id();
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
    let inv = invitation_id();
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
    let inv = invitation_id();
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
    let inv = invitation_id();
    let a = agent_id();
    let b = agent_id();

    let f1 = won(
        bp.claim(&acc, &inv, &a, Duration::from_millis(50))
            .await
            .unwrap(),
        "short",
    );
    // Wait (with a generous bound) until the short claim is gone.
    let start = Instant::now();
    let f2 = loop {
        tokio::time::sleep(Duration::from_millis(60)).await;
        match bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap() {
            Claim::Won { fence } => break fence,
            Claim::Lost { by } => {
                assert_eq!(by, a, "only `a` ever held it");
                assert!(
                    start.elapsed() < ARRIVAL_TIMEOUT,
                    "a 50 ms claim still held after {ARRIVAL_TIMEOUT:?}"
                );
            }
        }
    };
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
    let inv = invitation_id();
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
