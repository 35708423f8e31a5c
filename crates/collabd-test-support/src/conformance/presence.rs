//! Presence: logging in and out, who is online in a portal, and the
//! account's window of online agents with their active sessions.

use collabd::backplane::{Audited, Backplane, Window, WindowAgent};
use collabd::domain::session::Leave;
use collabd::domain::{Agent, PortalId};

use super::fixtures::{Live, account_id, agent, agent_id, portal, portal_id, profile, sorted};

/// `login` returns the portal the agent was in before; `logout` returns the
/// portal it was in and clears it; `presence` follows both.
pub async fn presence_login_returns_previous_and_logout_clears(bp: &dyn Backplane) {
    let acc = account_id();
    let p1 = portal_id();
    let p2 = portal_id();
    let a = profile(&agent_id(), &[p1.clone(), p2.clone()]);

    assert_eq!(
        bp.presence(&acc, &a.id).await.unwrap(),
        None,
        "nobody logged in yet"
    );
    assert_eq!(
        bp.logout(&acc, &a, Audited::NONE).await.unwrap(),
        None,
        "logout when logged out"
    );
    assert_eq!(
        bp.login(&acc, &a, &p1).await.unwrap(),
        None,
        "first login: no previous"
    );
    assert_eq!(bp.presence(&acc, &a.id).await.unwrap(), Some(p1.clone()));
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
    assert_eq!(bp.presence(&acc, &a.id).await.unwrap(), Some(p2.clone()));
    assert_eq!(
        bp.logout(&acc, &a, Audited::NONE).await.unwrap(),
        Some(p2),
        "logout returns the portal"
    );
    assert_eq!(
        bp.presence(&acc, &a.id).await.unwrap(),
        None,
        "logout clears"
    );
    assert_eq!(
        bp.logout(&acc, &a, Audited::NONE).await.unwrap(),
        None,
        "second logout: nothing"
    );
}

/// Presence is per account: the same agent id logged in in two accounts is
/// two independent agents, in `presence`, `online_in` and `window` alike.
pub async fn presence_is_scoped_by_account(bp: &dyn Backplane) {
    let acc1 = account_id();
    let acc2 = account_id();
    let p1 = portal_id();
    let p2 = portal_id();
    let both = [p1.clone(), p2.clone()];
    for acc in [&acc1, &acc2] {
        bp.put_portal(acc, &portal(&p1, "one")).await.unwrap();
        bp.put_portal(acc, &portal(&p2, "two")).await.unwrap();
    }
    let a = profile(&agent_id(), &both);
    let b = profile(&agent_id(), &both);
    let c = profile(&agent_id(), &both);
    for (acc, who) in [(&acc1, &a), (&acc1, &b), (&acc2, &a), (&acc2, &c)] {
        bp.put_agent(acc, who, Audited::NONE).await.unwrap();
    }

    assert_eq!(bp.login(&acc1, &a, &p1).await.unwrap(), None);
    assert_eq!(bp.login(&acc1, &b, &p2).await.unwrap(), None);
    assert_eq!(
        bp.login(&acc2, &a, &p2).await.unwrap(),
        None,
        "acc2's `a` is independent of acc1's"
    );
    assert_eq!(bp.login(&acc2, &c, &p1).await.unwrap(), None);

    assert_eq!(bp.presence(&acc1, &a.id).await.unwrap(), Some(p1.clone()));
    assert_eq!(bp.presence(&acc2, &a.id).await.unwrap(), Some(p2.clone()));
    assert_eq!(bp.presence(&acc2, &b.id).await.unwrap(), None);
    let online = |v: &[&Agent]| Some(sorted(v.iter().map(|a| a.id.clone()).collect()));
    assert_eq!(bp.online_in(&acc1, &p1).await.unwrap(), online(&[&a]));
    assert_eq!(bp.online_in(&acc1, &p2).await.unwrap(), online(&[&b]));
    assert_eq!(bp.online_in(&acc2, &p1).await.unwrap(), online(&[&c]));
    assert_eq!(bp.online_in(&acc2, &p2).await.unwrap(), online(&[&a]));
    let window_ids = |w: Window| sorted(w.agents.into_iter().map(|w| w.agent.id).collect());
    assert_eq!(
        window_ids(bp.window(&acc1).await.unwrap()),
        sorted(vec![a.id.clone(), b.id.clone()]),
        "acc1's window"
    );
    assert_eq!(
        window_ids(bp.window(&acc2).await.unwrap()),
        sorted(vec![a.id.clone(), c.id.clone()]),
        "acc2's window"
    );

    assert_eq!(
        bp.logout(&acc2, &a, Audited::NONE).await.unwrap(),
        Some(p2.clone())
    );
    assert_eq!(
        bp.presence(&acc1, &a.id).await.unwrap(),
        Some(p1.clone()),
        "another account's logout leaves acc1's `a` logged in"
    );
    assert_eq!(bp.online_in(&acc1, &p1).await.unwrap(), online(&[&a]));
    assert_eq!(bp.online_in(&acc2, &p2).await.unwrap(), Some(vec![]));
    assert_eq!(
        window_ids(bp.window(&acc2).await.unwrap()),
        vec![c.id.clone()]
    );
}

/// A portal with thousands of agents online is read whole, and so is the
/// window of an account with as many (Redis scripts read them in slices:
/// Lua cannot unpack more than a few thousand values at once).
pub async fn presence_a_portal_with_thousands_online_is_read_whole(bp: &dyn Backplane) {
    const CROWD: usize = 9_000;
    let acc = account_id();
    let crowd = portal_id();
    bp.put_portal(&acc, &portal(&crowd, "crowd")).await.unwrap();
    let mut ids = Vec::with_capacity(CROWD);
    for _ in 0..CROWD {
        let who = profile(&agent_id(), std::slice::from_ref(&crowd));
        bp.put_agent(&acc, &who, Audited::NONE).await.unwrap();
        bp.login(&acc, &who, &crowd).await.unwrap();
        ids.push(who.id);
    }
    let online = bp.online_in(&acc, &crowd).await.unwrap();
    assert_eq!(online.map(|o| o.len()), Some(CROWD));
    let window = bp.window(&acc).await.unwrap();
    assert_eq!(window.agents.len(), CROWD);
    assert!(window.agents.iter().all(|a| a.portal == crowd));
}

/// `online_in` lists, sorted, exactly the agents logged into that portal
/// now; `Some(empty)` for a portal of the account nobody is in, `None` for
/// a portal the account does not have. A login into another portal moves
/// the agent; a logout removes it.
pub async fn presence_online_in_lists_only_that_portals_logged_in_agents(bp: &dyn Backplane) {
    let acc = account_id();
    let other = account_id();
    let p1 = portal_id();
    let p2 = portal_id();
    let empty = portal_id();
    let unknown = portal_id();
    for p in [&p1, &p2, &empty] {
        bp.put_portal(&acc, &portal(p, "portal")).await.unwrap();
    }
    let portals = [p1.clone(), p2.clone(), empty.clone()];
    let a = profile(&agent_id(), &portals);
    let b = profile(&agent_id(), &portals);
    let c = profile(&agent_id(), &portals);
    let d = profile(&agent_id(), &portals);
    for who in [&a, &b, &c, &d] {
        bp.put_agent(&acc, who, Audited::NONE).await.unwrap();
    }
    let ids = |v: &[&Agent]| Some(sorted(v.iter().map(|a| a.id.clone()).collect::<Vec<_>>()));

    assert_eq!(
        bp.online_in(&acc, &p1).await.unwrap(),
        Some(vec![]),
        "nobody logged in yet"
    );
    bp.login(&acc, &a, &p1).await.unwrap();
    bp.login(&acc, &b, &p1).await.unwrap();
    bp.login(&acc, &c, &p2).await.unwrap();
    // `d` stays logged out.

    assert_eq!(bp.online_in(&acc, &p1).await.unwrap(), ids(&[&a, &b]));
    assert_eq!(bp.online_in(&acc, &p2).await.unwrap(), ids(&[&c]));
    assert_eq!(
        bp.online_in(&acc, &empty).await.unwrap(),
        Some(vec![]),
        "a portal nobody is in"
    );
    assert_eq!(
        bp.online_in(&acc, &unknown).await.unwrap(),
        None,
        "a portal the account does not have"
    );
    assert_eq!(
        bp.online_in(&other, &p1).await.unwrap(),
        None,
        "the portal id in an account that does not have it"
    );
    bp.put_portal(&other, &portal(&p1, "elsewhere"))
        .await
        .unwrap();
    assert_eq!(
        bp.online_in(&other, &p1).await.unwrap(),
        Some(vec![]),
        "the same portal id in another account: nobody in it"
    );

    // A login into another portal moves the agent.
    assert_eq!(bp.login(&acc, &b, &p2).await.unwrap(), Some(p1.clone()));
    assert_eq!(bp.online_in(&acc, &p1).await.unwrap(), ids(&[&a]));
    assert_eq!(bp.online_in(&acc, &p2).await.unwrap(), ids(&[&b, &c]));
    // Logging into the same portal again changes nothing.
    assert_eq!(bp.login(&acc, &b, &p2).await.unwrap(), Some(p2.clone()));
    assert_eq!(bp.online_in(&acc, &p2).await.unwrap(), ids(&[&b, &c]));

    // A logout removes it.
    assert_eq!(
        bp.logout(&acc, &a, Audited::NONE).await.unwrap(),
        Some(p1.clone())
    );
    assert_eq!(bp.online_in(&acc, &p1).await.unwrap(), Some(vec![]));
    assert_eq!(
        bp.logout(&acc, &c, Audited::NONE).await.unwrap(),
        Some(p2.clone())
    );
    assert_eq!(bp.online_in(&acc, &p2).await.unwrap(), ids(&[&b]));
}

/// `window` lists every online agent of the account with its profile, the
/// portal it is in and the number of sessions it is active in, and every
/// portal of the account; agents logged out are not in it.
pub async fn presence_window_lists_online_agents_with_portal_and_active_sessions(
    bp: &dyn Backplane,
) {
    let acc = account_id();
    assert_eq!(
        bp.window(&acc).await.unwrap(),
        Window::default(),
        "an empty account"
    );
    let p1 = portal_id();
    let p2 = portal_id();
    let portals = [p1.clone(), p2.clone()];
    bp.put_portal(&acc, &portal(&p2, "Two")).await.unwrap();
    bp.put_portal(&acc, &portal(&p1, "One")).await.unwrap();
    let a = profile(&agent_id(), &portals);
    let b = profile(&agent_id(), &portals);
    let c = profile(&agent_id(), &portals);
    for who in [&a, &b, &c] {
        bp.put_agent(&acc, who, Audited::NONE).await.unwrap();
    }
    bp.login(&acc, &a, &p1).await.unwrap();
    bp.login(&acc, &b, &p2).await.unwrap();
    // `a` leads two sessions, `c` one but is not logged in, `b` none.
    let mut first = Live::started(bp, &acc, &a.id).await;
    Live::started(bp, &acc, &a.id).await;
    Live::started(bp, &acc, &c.id).await;

    let entry = |agent: &Agent, portal: &PortalId, active_sessions: u32| WindowAgent {
        agent: agent.clone(),
        portal: portal.clone(),
        active_sessions,
    };
    let by_agent = |mut w: Window| {
        w.agents.sort_by(|x, y| x.agent.id.cmp(&y.agent.id));
        w
    };
    let mut expected_portals = vec![portal(&p1, "One"), portal(&p2, "Two")];
    expected_portals.sort_by(|x, y| x.id.cmp(&y.id));
    let window = |agents: Vec<WindowAgent>| {
        by_agent(Window {
            agents,
            portals: expected_portals.clone(),
        })
    };

    let mut w = by_agent(bp.window(&acc).await.unwrap());
    w.portals.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        w,
        window(vec![entry(&a, &p1, 2), entry(&b, &p2, 0)]),
        "online agents with profile, portal and activity; every portal"
    );

    // Leaving a session, a profile change and a move show at once.
    first
        .run(
            bp,
            Leave {
                agent: a.id.clone(),
                by_admin: false,
            },
        )
        .await;
    let renamed = agent(&b.id, "Bea", &portals);
    bp.put_agent(&acc, &renamed, Audited::NONE).await.unwrap();
    bp.login(&acc, &renamed, &p1).await.unwrap();
    let mut w = by_agent(bp.window(&acc).await.unwrap());
    w.portals.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        w,
        window(vec![entry(&a, &p1, 1), entry(&renamed, &p1, 0)]),
        "after a leave, a rename and a move"
    );

    // A logged-out agent is not in it; a newly logged-in one is.
    bp.logout(&acc, &a, Audited::NONE).await.unwrap();
    bp.login(&acc, &c, &p2).await.unwrap();
    let mut w = by_agent(bp.window(&acc).await.unwrap());
    w.portals.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        w,
        window(vec![entry(&renamed, &p1, 0), entry(&c, &p2, 1)]),
        "after a logout and a login"
    );
}
