//! The commit plan: every [`Effect`] that `collabd::backplane::plan` makes
//! of a commit reads back through the role traits, the same on every
//! backplane. The memory backplane applies the effects to its maps, the
//! Redis one encodes them as ops of its commit script; this rule is where
//! the two must agree, effect by effect, and it fails to compile when the
//! plan grows an effect nobody checks here.

use std::collections::BTreeSet;

use collabd::backplane::plan::{self, Effect};
use collabd::backplane::{Audited, Backplane, Claim, Commit, Transcript};
use collabd::domain::session::{Audience, End, Poster, SessionStatus, Target, Timer};
use collabd::domain::{AgentId, Outcome};

use super::fixtures::{
    Live, accept, account_id, agent_id, due_stream, due_until, in_ms, portal, portal_id, post,
    profile, won,
};
use super::{ARRIVAL_TIMEOUT, LONG_TTL};

/// The name of an effect's kind; a match without a wildcard, so a new
/// effect does not compile until this rule checks it.
fn kind(effect: &Effect<'_>) -> &'static str {
    match effect {
        Effect::Listed => "listed",
        Effect::Posted { .. } => "posted",
        Effect::Audited(_) => "audited",
        Effect::AuditTrimmed => "audit_trimmed",
        Effect::Archived(_) => "archived",
        Effect::ClaimDropped(_) => "claim_dropped",
        Effect::Opened { .. } => "opened",
        Effect::Unlisted { .. } => "unlisted",
        Effect::Joined(_) => "joined",
        Effect::Left(_) => "left",
        Effect::Disarmed(_) => "disarmed",
        Effect::Armed(..) => "armed",
        Effect::Ended { .. } => "ended",
    }
}

const KINDS: [&str; 13] = [
    "listed",
    "posted",
    "audited",
    "audit_trimmed",
    "archived",
    "claim_dropped",
    "opened",
    "unlisted",
    "joined",
    "left",
    "disarmed",
    "armed",
    "ended",
];

/// Commits `outcome` at the live version and notes its effects' kinds.
async fn store(
    bp: &dyn Backplane,
    live: &mut Live,
    outcome: &Outcome,
    seen: &mut BTreeSet<&'static str>,
) {
    let commit: Commit<'_> = live.commit(live.version, outcome);
    seen.extend(plan::effects(&commit).iter().map(kind));
    let committed = bp.commit(&live.account, commit).await.unwrap();
    live.stored(committed);
}

/// Three commits (a session's creation, one carrying a message, an
/// accept, an invitation moved to a portal, audit entries, a timer armed
/// and one disarmed, then its end) make every effect of the plan, and
/// each is read back: the session listed as active then as ended; the
/// message in both transcripts; the entries in the session's and the
/// account's trail; the accepted invitation in the history and both
/// claims gone (another agent wins them); the open-invitation index moved
/// from the agents to the portal, and emptied at the end; the joiner's
/// session index filled, then emptied by its leaving at the end; the armed
/// timer delivered and the disarmed one not, before a later sentinel.
/// (`AuditTrimmed` drops what is past retention, which every trail read
/// leaves out by itself: it has no reading of its own here.)
pub async fn plan_every_effect_of_a_commit_reads_back(bp: &dyn Backplane) {
    let mut due = due_stream(bp);
    let acc = account_id();
    let p = portal_id();
    bp.put_portal(&acc, &portal(&p, "Support")).await.unwrap();
    let (lead, x, y, z) = (agent_id(), agent_id(), agent_id(), agent_id());
    for id in [&lead, &x, &y, &z] {
        let who = profile(id, std::slice::from_ref(&p));
        bp.put_agent(&acc, &who, Audited::NONE).await.unwrap();
        bp.login(&acc, &who, &p).await.unwrap();
    }
    let mut seen = BTreeSet::new();

    // 1. The creation: listed.
    let (mut live, created) = Live::create(&acc, &lead);
    store(bp, &mut live, &created, &mut seen).await;
    let sid = live.id().clone();
    let listed = |status| {
        let acc = &acc;
        async move {
            bp.sessions_page(acc, status, None, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, v)| v.session.id)
                .collect::<Vec<_>>()
        }
    };
    assert!(listed(SessionStatus::Active).await.contains(&sid));

    // Two invitations, each claimed; the second arms a timer to disarm.
    let to = |a: &AgentId| Target::Agent(a.clone());
    let for_x = live.invitation(&lead, to(&x), std::slice::from_ref(&x));
    let inv_x = for_x.id.clone();
    let sent = live.apply(for_x);
    store(bp, &mut live, &sent, &mut seen).await;
    let for_y = live.invitation(&lead, to(&y), std::slice::from_ref(&y));
    let inv_y = for_y.id.clone();
    let mut sent = live.apply(for_y);
    let disarmed = Timer::Escalate(inv_y.clone());
    sent.arm.push((disarmed.clone(), in_ms(300)));
    store(bp, &mut live, &sent, &mut seen).await;
    let fence = won(
        bp.claim(&acc, &inv_x, &x, LONG_TTL).await.unwrap(),
        "x claims its invitation",
    );
    won(
        bp.claim(&acc, &inv_y, &y, LONG_TTL).await.unwrap(),
        "y claims its invitation",
    );
    let trail_before = bp.session_audit(&acc, &sid, 0, 1000).await.unwrap().len();

    // 2. x accepts; in the same commit a customer message, y's invitation
    // moves to the portal (as an escalation moves it), a timer is armed,
    // another disarmed, and a sentinel armed after them.
    let mut change = live.apply(accept(&inv_x, &x, 0, fence));
    let posted = live.apply(post(Poster::Customer, "hello", Audience::Everyone));
    change.message = posted.message.clone();
    change.delta.closed.push((inv_y.clone(), to(&y)));
    change
        .delta
        .opened
        .push((inv_y.clone(), Target::Portal(p.clone())));
    for open in &mut live.session.invitations {
        if open.id == inv_y {
            open.target = Target::Portal(p.clone());
        }
    }
    let armed = Timer::Idle;
    let sentinel = Timer::Escalate(inv_x.clone());
    change.arm.push((armed.clone(), in_ms(200)));
    change.arm.push((sentinel.clone(), in_ms(700)));
    change.disarm.push(disarmed.clone());
    assert!(!change.audit.is_empty(), "an accept is audited");
    store(bp, &mut live, &change, &mut seen).await;

    let message = change.message.as_ref().unwrap();
    for transcript in [Transcript::Agents, Transcript::Customer] {
        let page = bp
            .messages(&acc, &sid, transcript, None, 100)
            .await
            .unwrap();
        assert!(
            page.iter().any(|m| m.id == message.id),
            "{transcript:?}: {page:?}"
        );
    }
    let trail = bp.session_audit(&acc, &sid, 0, 1000).await.unwrap();
    assert_eq!(trail.len(), trail_before + change.audit.len());
    assert_eq!(&trail[trail_before..], change.audit.as_slice());
    let account_trail = bp.account_audit(&acc, None, 1000).await.unwrap();
    for entry in &change.audit {
        assert!(account_trail.iter().any(|(_, e)| e == entry), "{entry:?}");
    }
    let archived = bp.closed_invitation(&acc, &sid, &inv_x).await.unwrap();
    assert_eq!(archived.map(|i| i.id), Some(inv_x.clone()));
    for inv in [&inv_x, &inv_y] {
        assert!(
            matches!(
                bp.claim(&acc, inv, &z, LONG_TTL).await.unwrap(),
                Claim::Won { .. }
            ),
            "the claim on {inv} was dropped"
        );
    }
    assert!(bp.open_invitations(&acc, &to(&x)).await.unwrap().is_empty());
    assert!(bp.open_invitations(&acc, &to(&y)).await.unwrap().is_empty());
    assert_eq!(
        bp.open_invitations(&acc, &Target::Portal(p.clone()))
            .await
            .unwrap(),
        vec![(inv_y.clone(), sid.clone())]
    );
    assert_eq!(
        bp.agent_sessions(&acc, &x).await.unwrap(),
        vec![sid.clone()]
    );
    let before = due_until(
        &mut due,
        &acc,
        (&sid, &sentinel),
        ARRIVAL_TIMEOUT,
        "the sentinel",
    )
    .await;
    assert!(
        before.iter().any(|d| d.session == sid && d.timer == armed),
        "the armed timer fell due: {before:?}"
    );
    assert!(
        !before.iter().any(|d| d.timer == disarmed),
        "the disarmed timer stayed quiet: {before:?}"
    );

    // 3. The end: everyone leaves, the open invitation is archived.
    let ended = live.apply(End { by: lead.clone() });
    assert!(ended.ended);
    store(bp, &mut live, &ended, &mut seen).await;
    assert!(!listed(SessionStatus::Active).await.contains(&sid));
    assert!(listed(SessionStatus::Ended).await.contains(&sid));
    assert!(bp.agent_sessions(&acc, &x).await.unwrap().is_empty());
    assert!(bp.agent_sessions(&acc, &lead).await.unwrap().is_empty());
    assert!(
        bp.open_invitations(&acc, &Target::Portal(p.clone()))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        bp.closed_invitation(&acc, &sid, &inv_y)
            .await
            .unwrap()
            .is_some()
    );

    let all: BTreeSet<&'static str> = KINDS.into_iter().collect();
    assert_eq!(seen, all, "the commits made every effect of the plan");
}
