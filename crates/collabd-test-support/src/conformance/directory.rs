//! The directory: accounts, portals and agents (stored, scoped by account,
//! listed in pages, deleted), the reads behind a token with their
//! revocation marks, and the rate buckets those reads take from.

use std::time::Duration;

use tokio::time::Instant;

use collabd::backplane::{Audited, Backplane, CustomerRates, Rate, RateVerdict};
use collabd::domain::id::random_id;
use collabd::domain::session::SessionStatus;
use collabd::domain::{AccountId, AgentId, PortalId};

use super::fixtures::{
    Live, account, account_id, agent, agent_id, in_ms, pair, portal, portal_id, profile, sorted,
};
use super::{LONG_TTL, LOOSE, RETENTION_TIMEOUT};

/// `put_account` returns `true` for a new account, `false` for a replacement,
/// and `account` returns the latest value; an unknown account is `None`.
pub async fn directory_accounts_put_reports_creation_and_keeps_latest(bp: &dyn Backplane) {
    let id = account_id();
    assert_eq!(bp.account(&id).await.unwrap(), None, "unknown account");
    assert!(
        bp.put_account(&account(&id, "First"), Audited::NONE)
            .await
            .unwrap(),
        "first put creates"
    );
    assert_eq!(bp.account(&id).await.unwrap(), Some(account(&id, "First")));

    let mut second = account(&id, "Second");
    second.policy.masking = false;
    assert!(
        !bp.put_account(&second, Audited::NONE).await.unwrap(),
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
        bp.put_portal(&acc1, &portal(&p, "one")).await.unwrap(),
        "first put creates"
    );
    assert!(
        !bp.put_portal(&acc1, &portal(&p, "two")).await.unwrap(),
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
        bp.put_portal(&acc2, &portal(&p, "other")).await.unwrap(),
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
        assert!(bp.put_portal(&acc1, &portal(&id, name)).await.unwrap());
        ids.push(id);
    }
    let extra = portal_id();
    assert!(
        bp.put_portal(&acc2, &portal(&extra, "acc2 only"))
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
    let mut expected = vec![portal(&p, "other"), portal(&extra, "acc2 only")];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        bp.portals(&acc2).await.unwrap(),
        expected,
        "only acc2's portals, sorted by id"
    );
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
        bp.put_agent(&acc1, &agent(&a, "Ann", &[]), Audited::NONE)
            .await
            .unwrap(),
        "first put creates"
    );
    let updated = agent(&a, "Ann B.", std::slice::from_ref(&p));
    assert!(
        !bp.put_agent(&acc1, &updated, Audited::NONE).await.unwrap(),
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
    let other = agent(&a, "Other Ann", &[]);
    assert!(
        bp.put_agent(&acc2, &other, Audited::NONE).await.unwrap(),
        "new in the other account"
    );
    assert_eq!(bp.agent(&acc2, &a).await.unwrap(), Some(other));
    assert_eq!(
        bp.agent(&acc1, &a).await.unwrap(),
        Some(updated),
        "acc1 untouched"
    );
}

/// Revocation marks: the latest moment wins, an agent's mark and its
/// account's both count (the later of the two), they are scoped by account,
/// outlive the account's deletion, and lapse after `keep_for`.
pub async fn directory_revocation_marks_refuse_older_tokens(bp: &dyn Backplane) {
    let acc = account_id();
    let other = account_id();
    let (a, b) = (agent_id(), agent_id());
    bp.put_account(&account(&acc, "Acme"), Audited::NONE)
        .await
        .unwrap();
    bp.put_agent(&acc, &profile(&a, &[]), Audited::NONE)
        .await
        .unwrap();
    assert_eq!(
        bp.account_and_agent(&acc, &a, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        None
    );

    let (t1, t2, t3) = (in_ms(-3000), in_ms(-2000), in_ms(-1000));
    bp.revoke_tokens(&acc, Some(&a), t2, LONG_TTL, Audited::NONE)
        .await
        .unwrap();
    assert_eq!(
        bp.account_and_agent(&acc, &a, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        Some(t2)
    );
    // An earlier moment does not move it back.
    bp.revoke_tokens(&acc, Some(&a), t1, LONG_TTL, Audited::NONE)
        .await
        .unwrap();
    assert_eq!(
        bp.account_and_agent(&acc, &a, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        Some(t2)
    );
    assert_eq!(
        bp.account_and_agent(&acc, &b, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        None,
        "another agent is untouched"
    );
    assert_eq!(
        bp.account_and_agent(&other, &a, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        None,
        "the same agent id in another account is untouched"
    );
    // The account's mark counts for every agent; the later one wins.
    bp.revoke_tokens(&acc, None, t3, LONG_TTL, Audited::NONE)
        .await
        .unwrap();
    assert_eq!(
        bp.account_and_agent(&acc, &a, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        Some(t3)
    );
    assert_eq!(
        bp.account_and_agent(&acc, &b, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        Some(t3)
    );
    // A deleted account's marks stay.
    assert!(bp.delete_account(&acc, Audited::NONE).await.unwrap());
    let after = bp.account_and_agent(&acc, &a, "tok", LOOSE).await.unwrap();
    assert_eq!(
        (after.account, after.agent, after.not_before),
        (None, None, Some(t3))
    );
    // A mark kept briefly lapses.
    let lapsing = account_id();
    bp.revoke_tokens(
        &lapsing,
        Some(&a),
        t3,
        Duration::from_millis(300),
        Audited::NONE,
    )
    .await
    .unwrap();
    assert_eq!(
        bp.account_and_agent(&lapsing, &a, "tok", LOOSE)
            .await
            .unwrap()
            .not_before,
        Some(t3)
    );
    let start = Instant::now();
    while bp
        .account_and_agent(&lapsing, &a, "tok", LOOSE)
        .await
        .unwrap()
        .not_before
        .is_some()
    {
        assert!(start.elapsed() < RETENTION_TIMEOUT, "the mark never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Token buckets: `burst` requests at once, then refused with the time
/// until the next fits; refilled at `per_sec`; one bucket per token (agent
/// and customer reads share the token's bucket), the admin's apart.
pub async fn rate_buckets_allow_a_burst_then_refill(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    bp.put_account(&account(&acc, "Acme"), Audited::NONE)
        .await
        .unwrap();
    let rate = Rate {
        per_sec: 10,
        burst: 3,
    };
    let token = random_id("tok");
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        verdicts.push(
            bp.account_and_agent(&acc, &a, &token, rate)
                .await
                .unwrap()
                .rate,
        );
    }
    assert_eq!(verdicts, [RateVerdict::Allowed; 3], "the burst");
    // The same token's customer-style read takes from the same bucket.
    let live = Live::started(bp, &acc, &a).await;
    let holder = bp
        .account_for_token(&acc, live.id(), &token, token_only(rate))
        .await
        .unwrap();
    assert_eq!(
        holder.account.map(|a| a.id),
        Some(acc.clone()),
        "the account is read anyway"
    );
    assert!(holder.session_open);
    match holder.rate {
        RateVerdict::Limited(wait) => assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "one request fits again within 1/10 s: {wait:?}"
        ),
        RateVerdict::Allowed => panic!("a fourth request in a burst of 3 was allowed"),
    }
    // Another token has its own bucket.
    let other = random_id("tok");
    assert_eq!(
        bp.account_for_token(&acc, live.id(), &other, token_only(rate))
            .await
            .unwrap()
            .rate,
        RateVerdict::Allowed
    );
    // Refilled after a while.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        bp.account_and_agent(&acc, &a, &token, rate)
            .await
            .unwrap()
            .rate,
        RateVerdict::Allowed,
        "refilled at 10 a second"
    );
    // The admin's bucket: a burst, then limited.
    let admin = Rate {
        per_sec: 1,
        burst: 2,
    };
    let mut limited = false;
    for _ in 0..4 {
        limited |= matches!(bp.take_admin(admin).await.unwrap(), RateVerdict::Limited(_));
    }
    assert!(limited, "the admin's bucket empties too");
}

/// A customer token's bucket, with the account's bucket of customer
/// requests out of the way.
pub(super) fn token_only(token: Rate) -> CustomerRates {
    CustomerRates {
        token,
        account: Rate {
            per_sec: 1_000_000,
            burst: 1_000_000,
        },
    }
}

/// Every customer token of an account takes from the account's bucket of
/// customer requests too, once its own bucket allowed the request (a
/// request its own bucket refuses takes nothing from the account's); the
/// customers of another account have their own.
pub async fn rate_customers_of_an_account_share_its_bucket(bp: &dyn Backplane) {
    let (acc, other_acc) = (account_id(), account_id());
    let a = agent_id();
    for id in [&acc, &other_acc] {
        bp.put_account(&account(id, "Acme"), Audited::NONE)
            .await
            .unwrap();
    }
    let live = Live::started(bp, &acc, &a).await;
    let elsewhere = Live::started(bp, &other_acc, &a).await;
    let rates = CustomerRates {
        token: Rate {
            per_sec: 1,
            burst: 1,
        },
        account: Rate {
            per_sec: 1,
            burst: 3,
        },
    };
    let take = |account: AccountId, session: collabd::domain::SessionId, token: String| async move {
        bp.account_for_token(&account, &session, &token, rates)
            .await
            .unwrap()
            .rate
    };
    let first = random_id("tok");
    let id = live.id().clone();
    // One token, over its own rate: one request, then refused by its own
    // bucket, which spends nothing of the account's.
    assert_eq!(
        take(acc.clone(), id.clone(), first.clone()).await,
        RateVerdict::Allowed
    );
    for _ in 0..3 {
        assert!(matches!(
            take(acc.clone(), id.clone(), first.clone()).await,
            RateVerdict::Limited(_)
        ));
    }
    // Two more tokens of the account get the account's two left ...
    for _ in 0..2 {
        assert_eq!(
            take(acc.clone(), id.clone(), random_id("tok")).await,
            RateVerdict::Allowed
        );
    }
    // ... and then a fresh token is refused: the account's bucket is empty.
    match take(acc.clone(), id.clone(), random_id("tok")).await {
        RateVerdict::Limited(wait) => assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "one request fits again within a second: {wait:?}"
        ),
        RateVerdict::Allowed => panic!("a fresh token went past the account's bucket"),
    }
    // Another account's customers are not touched.
    assert_eq!(
        take(other_acc.clone(), elsewhere.id().clone(), random_id("tok")).await,
        RateVerdict::Allowed
    );
}

/// Accounts and agents are listed in id order, in pages after a cursor;
/// deleting an agent, a portal or an account removes them from every read.
pub async fn directory_lists_in_pages_and_deletes(bp: &dyn Backplane) {
    let mut mine: Vec<AccountId> = (0..5).map(|_| account_id()).collect();
    mine.sort();
    for id in &mine {
        bp.put_account(&account(id, "A"), Audited::NONE)
            .await
            .unwrap();
    }
    // Other tests add accounts too: page through everything, keep ours.
    let mut seen = Vec::new();
    let mut after: Option<AccountId> = None;
    loop {
        let page = bp.accounts(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        assert!(
            after.as_ref().is_none_or(|a| &page[0].id > a),
            "pages move forward"
        );
        after = Some(last.id.clone());
        seen.extend(
            page.into_iter()
                .map(|a| a.id)
                .filter(|id| mine.contains(id)),
        );
    }
    assert_eq!(seen, mine, "every account, once, in id order");

    let acc = mine[0].clone();
    let p = portal_id();
    bp.put_portal(&acc, &portal(&p, "Support")).await.unwrap();
    let mut agents: Vec<AgentId> = (0..5).map(|_| agent_id()).collect();
    agents.sort();
    for g in &agents {
        bp.put_agent(&acc, &profile(g, std::slice::from_ref(&p)), Audited::NONE)
            .await
            .unwrap();
    }
    let first = bp.agents(&acc, None, 3).await.unwrap();
    let rest = bp.agents(&acc, Some(&first[2].id), 3).await.unwrap();
    let listed: Vec<AgentId> = first.iter().chain(&rest).map(|g| g.id.clone()).collect();
    assert_eq!(listed, agents);

    bp.login(&acc, &profile(&agents[0], std::slice::from_ref(&p)), &p)
        .await
        .unwrap();
    assert!(
        bp.delete_agent(&acc, &agents[1], Audited::NONE)
            .await
            .unwrap()
    );
    assert!(
        !bp.delete_agent(&acc, &agents[1], Audited::NONE)
            .await
            .unwrap(),
        "gone already"
    );
    assert_eq!(bp.agent(&acc, &agents[1]).await.unwrap(), None);
    assert_eq!(bp.agents(&acc, None, 10).await.unwrap().len(), 4);

    assert!(bp.delete_portal(&acc, &p, Audited::NONE).await.unwrap());
    assert!(!bp.delete_portal(&acc, &p, Audited::NONE).await.unwrap());
    assert_eq!(bp.portal(&acc, &p).await.unwrap(), None);
    assert_eq!(
        bp.online_in(&acc, &p).await.unwrap(),
        None,
        "no such portal any more"
    );

    let lead = agent_id();
    Live::started(bp, &acc, &lead).await;
    assert!(bp.delete_account(&acc, Audited::NONE).await.unwrap());
    assert!(!bp.delete_account(&acc, Audited::NONE).await.unwrap());
    assert_eq!(bp.account(&acc).await.unwrap(), None);
    assert!(bp.agents(&acc, None, 10).await.unwrap().is_empty());
    assert!(bp.portals(&acc).await.unwrap().is_empty());
    assert!(
        bp.sessions_page(&acc, SessionStatus::Active, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "its sessions are gone"
    );
    let listed = bp.accounts(None, 10_000).await.unwrap();
    assert!(!listed.iter().any(|a| a.id == acc), "not listed any more");
}

/// `account_and_agent` reads the account and one of its agents together:
/// each is `None` when absent, both follow later puts, and an agent of the
/// same id in another account is not visible.
pub async fn directory_account_and_agent_reads_both(bp: &dyn Backplane) {
    let acc = account_id();
    let other = account_id();
    let a = agent_id();

    assert_eq!(
        pair(bp.account_and_agent(&acc, &a, "tok", LOOSE).await.unwrap()),
        (None, None),
        "nothing stored yet"
    );
    let first = account(&acc, "Acme");
    bp.put_account(&first, Audited::NONE).await.unwrap();
    assert_eq!(
        pair(bp.account_and_agent(&acc, &a, "tok", LOOSE).await.unwrap()),
        (Some(first.clone()), None),
        "the account without such an agent"
    );
    let ann = agent(&a, "Ann", &[]);
    bp.put_agent(&acc, &ann, Audited::NONE).await.unwrap();
    assert_eq!(
        pair(bp.account_and_agent(&acc, &a, "tok", LOOSE).await.unwrap()),
        (Some(first.clone()), Some(ann.clone())),
        "both"
    );

    // The same agent id elsewhere.
    assert_eq!(
        pair(
            bp.account_and_agent(&other, &a, "tok", LOOSE)
                .await
                .unwrap()
        ),
        (None, None),
        "another account sees neither"
    );
    let foreign = agent(&a, "Foreign Ann", &[]);
    bp.put_agent(&other, &foreign, Audited::NONE).await.unwrap();
    assert_eq!(
        pair(
            bp.account_and_agent(&other, &a, "tok", LOOSE)
                .await
                .unwrap()
        ),
        (None, Some(foreign)),
        "an agent of an account that has no record"
    );
    assert_eq!(
        pair(bp.account_and_agent(&acc, &a, "tok", LOOSE).await.unwrap()),
        (Some(first), Some(ann)),
        "acc untouched"
    );

    // Later puts are what it reads.
    let renamed = account(&acc, "Acme 2");
    let moved = agent(&a, "Ann B.", &[portal_id()]);
    bp.put_account(&renamed, Audited::NONE).await.unwrap();
    bp.put_agent(&acc, &moved, Audited::NONE).await.unwrap();
    assert_eq!(
        pair(bp.account_and_agent(&acc, &a, "tok", LOOSE).await.unwrap()),
        (Some(renamed), Some(moved)),
        "the latest of both"
    );
}
