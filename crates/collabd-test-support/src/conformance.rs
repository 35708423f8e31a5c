//! The backplane contract, written against the role traits alone so that
//! every implementation runs the same suite.
//!
//! Each rule is a `pub async fn` taking `&dyn Backplane`. Every rule makes its
//! own random account, agent, portal, session and invitation ids, so the rules
//! may run concurrently against one shared store (e.g. one Redis). Run them all
//! against an implementation with [`backplane_conformance_suite!`]:
//!
//! ```ignore
//! collabd_test_support::backplane_conformance_suite!(
//!     std::sync::Arc::new(MyBackplane::connect()) as std::sync::Arc<dyn collabd::backplane::Backplane>
//! );
//! ```
//!
//! Session changes are built the way a session actor builds them: a session
//! is created with `Session::create`, commands are applied with
//! `Session::apply`, and the resulting `Outcome` is committed. Where a rule
//! needs a change no single command makes (a conflicting commit carrying
//! everything at once, a timer due in 200 ms), it edits the outcome by hand.
//!
//! The rules wait for pub/sub deliveries, timers and retention with generous
//! timeouts and never rely on something *not* arriving within a fixed delay:
//! absence is shown by a later sentinel (a message on the same topic, a timer
//! due later) arriving first.
//!
//! The timer rules (and the two "changes nothing" rules, which also check
//! timers) take the backplane's due stream with `take_due`: they need a
//! backplane of their own, whose due timers no other instance takes — the
//! suite's `$make` must build a fresh backplane per test (the fixtures in
//! `tests/` do). A rule that cannot take the due stream fails loudly.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;

use collabd::backplane::{
    AuditCursor, Audited, Backplane, BackplaneError, BusMessage, Claim, Commit, Committed,
    Deadline, Fresh, Guard, Rate, RateVerdict, Replaces, Route, Routed, SessionCursor, TokenHolder,
    Topic, Transcript, Versioned, Window, WindowAgent,
};
use collabd::domain::id::random_id;
use collabd::domain::session::{
    Accept, Audience, Cancel, Command, Decline, End, EndReason, Escalate, EscalateAfter,
    IndexDelta, InvitationKind, InvitationStatus, Invite, Leave, Post, Poster, SessionStatus,
    Target, Timer,
};
use collabd::domain::{
    Account, AccountId, Agent, AgentId, AgentRef, AuditAction, AuditEntry, Event, InvitationId,
    Message, MessageId, Outcome, Policy, Portal, PortalId, Rules, Session, SessionId, SessionMode,
};

/// A rate no rule reaches.
const LOOSE: Rate = Rate {
    per_sec: 1_000_000,
    burst: 1_000_000,
};

/// How long a rule waits for something that must arrive (pub/sub, timers).
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A claim ttl long enough never to run out during a rule.
const LONG_TTL: Duration = Duration::from_secs(60);
/// The retention of sessions whose end a rule does not watch.
const KEEP: Duration = Duration::from_secs(3600);
/// The retention of the session a rule watches disappear.
const SHORT_RETENTION: Duration = Duration::from_secs(1);
/// How long a rule waits for a 1 s retention to end.
const RETENTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a rule waits for a delivered but uncompleted timer to be
/// delivered again (both backplanes lease a delivery for 15 s).
const REDELIVERY_TIMEOUT: Duration = Duration::from_secs(45);
/// Clock granularity allowed when checking that a timer did not fire early.
const EARLY_TOLERANCE_MS: i64 = 5;

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

fn invitation_id() -> InvitationId {
    InvitationId::within(&SessionId::random())
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

fn agent(id: &AgentId, name: &str, portals: &[PortalId]) -> Agent {
    Agent {
        id: id.clone(),
        name: name.to_owned(),
        portals: portals.to_vec(),
    }
}

/// An agent's profile with a name made from its id.
fn profile(id: &AgentId, portals: &[PortalId]) -> Agent {
    agent(id, &format!("Agent {id}"), portals)
}

fn agent_ref(id: &AgentId) -> AgentRef {
    AgentRef {
        id: id.clone(),
        name: format!("Agent {id}"),
    }
}

/// What `account_and_agent` read, without the revocation mark.
fn pair(holder: TokenHolder) -> (Option<Account>, Option<Agent>) {
    (holder.account, holder.agent)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `offset_ms` from now, to the millisecond (what timers keep).
fn in_ms(offset_ms: i64) -> DateTime<Utc> {
    let at = Utc::now() + chrono::Duration::milliseconds(offset_ms);
    DateTime::from_timestamp_millis(at.timestamp_millis()).expect("a time in range")
}

fn won(claim: Claim, what: &str) -> u64 {
    match claim {
        Claim::Won { fence } => fence,
        Claim::Lost { by } => panic!("{what}: expected Won, got Lost {{ by: {by} }}"),
    }
}

/// A session as a session actor holds it: the hot state, the version it
/// was stored at (0: not stored yet), and the policy it is run under.
#[derive(Clone)]
struct Live {
    account: AccountId,
    policy: Policy,
    session: Session,
    version: u64,
}

impl Live {
    /// A new session led by `lead` under the default policy, not stored
    /// yet, and what creating it changes.
    fn create(account: &AccountId, lead: &AgentId) -> (Self, Outcome) {
        Self::create_as(account, lead, SessionId::random(), Policy::default())
    }

    /// The same under `policy`.
    fn create_with(account: &AccountId, lead: &AgentId, policy: Policy) -> (Self, Outcome) {
        Self::create_as(account, lead, SessionId::random(), policy)
    }

    fn create_as(
        account: &AccountId,
        lead: &AgentId,
        id: SessionId,
        policy: Policy,
    ) -> (Self, Outcome) {
        let (session, outcome) = Session::create(
            id,
            account.clone(),
            SessionMode::Web,
            agent_ref(lead),
            "Customer".to_owned(),
            Rules {
                policy: &policy,
                now: Utc::now(),
            },
        )
        .expect("the policy allows web sessions");
        let live = Self {
            account: account.clone(),
            policy,
            session,
            version: 0,
        };
        (live, outcome)
    }

    /// A new session led by `lead`, stored at version 1.
    async fn started(bp: &dyn Backplane, account: &AccountId, lead: &AgentId) -> Self {
        let (mut live, created) = Self::create(account, lead);
        live.store(bp, &created).await;
        live
    }

    fn id(&self) -> &SessionId {
        &self.session.id
    }

    fn topic(&self) -> Topic {
        Topic::Session(self.account.clone(), self.session.id.clone())
    }

    fn versioned(&self) -> Versioned {
        Versioned {
            version: self.version,
            session: self.session.clone(),
        }
    }

    /// Applies a command to the local state (it must be valid).
    fn apply(&mut self, command: impl Into<Command>) -> Outcome {
        let rules = Rules {
            policy: &self.policy,
            now: Utc::now(),
        };
        self.session
            .apply(&command.into(), rules)
            .unwrap_or_else(|e| panic!("the command must be valid: {e}"))
    }

    /// A plain commit of the local state: no fan-out, no guard, kept long.
    fn commit<'a>(&'a self, expected_version: u64, outcome: &'a Outcome) -> Commit<'a> {
        Commit {
            expected_version,
            session: &self.session,
            outcome,
            publish: &[],
            guard: None,
            retention: KEEP,
        }
    }

    /// Records that a commit at the current version was stored.
    fn stored(&mut self, committed: Committed) {
        assert_eq!(
            committed,
            Committed::Stored(self.version + 1),
            "session {} committed at version {}",
            self.session.id,
            self.version
        );
        self.version += 1;
    }

    /// Commits `outcome` with the local state; it must be stored.
    async fn store(&mut self, bp: &dyn Backplane, outcome: &Outcome) {
        let committed = bp
            .commit(&self.account, self.commit(self.version, outcome))
            .await
            .unwrap();
        self.stored(committed);
    }

    /// Applies a command and stores its outcome.
    async fn run(&mut self, bp: &dyn Backplane, command: impl Into<Command>) -> Outcome {
        let outcome = self.apply(command);
        self.store(bp, &outcome).await;
        outcome
    }

    /// An invitation command from `inviter` to `target`, `online` being the
    /// agents logged in for it.
    fn invitation(&self, inviter: &AgentId, target: Target, online: &[AgentId]) -> Invite {
        Invite {
            id: InvitationId::within(&self.session.id),
            inviter: inviter.clone(),
            target,
            kind: InvitationKind::Collaborate,
            masked: false,
            comment: None,
            online: online.to_vec(),
            escalate: None,
            target_busy: false,
            escalation_online: Vec::new(),
        }
    }

    /// Sends and stores an invitation; returns its id.
    async fn invite(
        &mut self,
        bp: &dyn Backplane,
        inviter: &AgentId,
        target: Target,
        online: &[AgentId],
    ) -> InvitationId {
        let invite = self.invitation(inviter, target, online);
        let id = invite.id.clone();
        self.run(bp, invite).await;
        id
    }

    /// Claims `invitation` for `agent` and stores its accept.
    async fn accept_by(
        &mut self,
        bp: &dyn Backplane,
        invitation: &InvitationId,
        agent: &AgentId,
    ) -> Outcome {
        let fence = won(
            bp.claim(&self.account, invitation, agent, LONG_TTL)
                .await
                .unwrap(),
            "the accepting agent claims",
        );
        let active = bp.agent_sessions(&self.account, agent).await.unwrap().len();
        self.run(bp, accept(invitation, agent, active as u32, fence))
            .await
    }
}

fn accept(invitation: &InvitationId, agent: &AgentId, active_sessions: u32, fence: u64) -> Accept {
    Accept {
        invitation: invitation.clone(),
        agent: agent_ref(agent),
        active_sessions,
        fence,
    }
}

fn post(author: Poster, text: &str, audience: Audience) -> Post {
    Post {
        id: MessageId::random(),
        author,
        text: text.to_owned(),
        audience,
    }
}

fn presence_msg(agent: &AgentId, portal: Option<&PortalId>) -> BusMessage {
    BusMessage::Presence {
        agent: agent.clone(),
        portal: portal.cloned(),
    }
}

fn ended_msg(session: &SessionId, version: u64) -> BusMessage {
    BusMessage::Session {
        session: session.clone(),
        version,
        events: vec![Routed {
            index: 0,
            route: Route::Participant,
            event: Arc::new(Event::SessionEnded {
                at: Utc::now(),
                reason: EndReason::EndedByLead,
            }),
        }],
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

/// Shows that nothing arrived on `topic` (for `rx`) so far: a sentinel
/// published now must be the next thing `rx` receives.
async fn assert_quiet(
    bp: &dyn Backplane,
    topic: &Topic,
    rx: &mut broadcast::Receiver<Arc<BusMessage>>,
    what: &str,
) {
    let sentinel = presence_msg(&agent_id(), None);
    bp.publish(topic.clone(), sentinel.clone()).await.unwrap();
    assert_eq!(
        next(rx, what).await,
        sentinel,
        "{what}: nothing before the sentinel"
    );
}

/// Both transcripts of a session, whole, newest first.
async fn transcripts(
    bp: &dyn Backplane,
    account: &AccountId,
    session: &SessionId,
) -> (Vec<Message>, Vec<Message>) {
    let agents = bp
        .messages(account, session, Transcript::Agents, None, 1000)
        .await
        .unwrap();
    let customer = bp
        .messages(account, session, Transcript::Customer, None, 1000)
        .await
        .unwrap();
    (agents, customer)
}

/// Checks an agent's active-session count `n` every way it can be read:
/// its session index, the accept context, the window (when it is online),
/// and the commit guard (below `n` refuses, below `n + 1` holds).
async fn assert_active(
    bp: &dyn Backplane,
    account: &AccountId,
    agent: &AgentId,
    n: u32,
    what: &str,
) {
    let sessions = bp.agent_sessions(account, agent).await.unwrap();
    assert_eq!(
        sessions.len(),
        n as usize,
        "{what}: agent_sessions {sessions:?}"
    );
    let context = bp
        .accept_context(account, &SessionId::random(), &invitation_id(), agent, None)
        .await
        .unwrap();
    assert_eq!(
        context.active_sessions, n,
        "{what}: the accept context's count"
    );
    if bp.presence(account, agent).await.unwrap().is_some() {
        let window = bp.window(account).await.unwrap();
        let entry = window
            .agents
            .iter()
            .find(|w| &w.agent.id == agent)
            .unwrap_or_else(|| panic!("{what}: an online agent is in the window"));
        assert_eq!(entry.active_sessions, n, "{what}: the window's count");
    }
    if n > 0 {
        assert_eq!(
            guarded_probe(bp, account, agent, n).await,
            Committed::Refused,
            "{what}: a guard `below {n}` refuses"
        );
    }
    assert_eq!(
        guarded_probe(bp, account, agent, n + 1).await,
        Committed::Stored(1),
        "{what}: a guard `below {}` holds",
        n + 1
    );
}

/// Creates a throwaway session (changing no index, arming no timer) under
/// a guard on `agent`.
async fn guarded_probe(
    bp: &dyn Backplane,
    account: &AccountId,
    agent: &AgentId,
    below: u32,
) -> Committed {
    let (probe, _) = Live::create(account, &agent_id());
    let nothing = Outcome::default();
    let guard = Guard {
        agent: agent.clone(),
        below,
    };
    let commit = Commit {
        guard: Some(&guard),
        ..probe.commit(0, &nothing)
    };
    bp.commit(account, commit).await.unwrap()
}

fn due_stream(bp: &dyn Backplane) -> Receiver<Deadline> {
    bp.take_due().expect(
        "this rule needs the backplane's due stream: give it a backplane of its own \
         (take_due already handed the stream out)",
    )
}

/// The next deadline of `account` (other accounts' are skipped).
async fn next_due(
    due: &mut Receiver<Deadline>,
    account: &AccountId,
    timeout: Duration,
    what: &str,
) -> Deadline {
    let wait = async {
        loop {
            match due.recv().await {
                Some(d) if &d.account == account => return d,
                Some(_) => {} // another rule's
                None => panic!("{what}: the due stream closed"),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing fell due within {timeout:?}"))
}

/// The deadlines of `account` delivered before the sentinel timer
/// `(session, timer)`, which must arrive within `timeout`.
async fn due_until(
    due: &mut Receiver<Deadline>,
    account: &AccountId,
    sentinel: (&SessionId, &Timer),
    timeout: Duration,
    what: &str,
) -> Vec<Deadline> {
    let end = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let d = next_due(due, account, left, what).await;
        if &d.session == sentinel.0 && &d.timer == sentinel.1 {
            return before;
        }
        before.push(d);
    }
}

/// Whether `d` delivers `timer` of `session`.
fn delivers(d: &Deadline, session: &SessionId, timer: &Timer) -> bool {
    &d.session == session && &d.timer == timer
}

/// Receives `n` deadlines of `account`.
async fn next_dues(
    due: &mut Receiver<Deadline>,
    account: &AccountId,
    n: usize,
    what: &str,
) -> Vec<Deadline> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_due(due, account, ARRIVAL_TIMEOUT, what).await);
    }
    out
}

fn find_due<'a>(dues: &'a [Deadline], session: &SessionId, timer: &Timer) -> &'a Deadline {
    dues.iter()
        .find(|d| delivers(d, session, timer))
        .unwrap_or_else(|| panic!("{timer:?} of {session} was delivered: {dues:?}"))
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
    let (found, verdict) = bp.account_for_token(&acc, &token, rate).await.unwrap();
    assert_eq!(
        found.map(|a| a.id),
        Some(acc.clone()),
        "the account is read anyway"
    );
    match verdict {
        RateVerdict::Limited(wait) => assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "one request fits again within 1/10 s: {wait:?}"
        ),
        RateVerdict::Allowed => panic!("a fourth request in a burst of 3 was allowed"),
    }
    // Another token has its own bucket.
    let other = random_id("tok");
    assert_eq!(
        bp.account_for_token(&acc, &other, rate).await.unwrap().1,
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

// ---------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Sessions: versioned commit
// ---------------------------------------------------------------------------

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

fn number(m: &Message, transcript: Transcript) -> u64 {
    match transcript {
        Transcript::Agents => m.seq,
        Transcript::Customer => m
            .customer_seq
            .unwrap_or_else(|| panic!("message {} in the customer transcript", m.seq)),
    }
}

async fn page(
    bp: &dyn Backplane,
    live: &Live,
    transcript: Transcript,
    before: Option<u64>,
    limit: usize,
) -> Vec<u64> {
    bp.messages(&live.account, live.id(), transcript, before, limit)
        .await
        .unwrap()
        .iter()
        .map(|m| number(m, transcript))
        .collect()
}

/// A commit appends its message to the agents' transcript, and to the
/// customer's when it has a customer number. `messages` returns a page,
/// newest first, of at most `limit` messages numbered below `before` (by
/// `seq` for the agents' transcript, by `customer_seq` for the customer's);
/// walking the pages gives the whole transcript. The customer transcript
/// holds exactly the customer-numbered messages. Another account or an
/// unknown session has no messages.
pub async fn sessions_messages_page_newest_first(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let mut live = Live::started(bp, &acc, &a).await;
    let agent = || Poster::Agent(a.clone());
    let script = [
        (Poster::Customer, Audience::Everyone),
        (agent(), Audience::Everyone),
        (agent(), Audience::Agents),
        (Poster::Customer, Audience::Everyone),
        (agent(), Audience::Agents),
        (agent(), Audience::Agents),
        (Poster::Customer, Audience::Everyone),
        (agent(), Audience::Everyone),
        (agent(), Audience::Agents),
        (Poster::Customer, Audience::Everyone),
    ];
    let mut all = Vec::new();
    for (i, (author, audience)) in script.into_iter().enumerate() {
        let text = format!("message {}", i + 1);
        let outcome = live.run(bp, post(author, &text, audience)).await;
        all.push(outcome.message.expect("a post writes a message"));
    }
    let customer: Vec<Message> = all
        .iter()
        .filter(|m| m.customer_seq.is_some())
        .cloned()
        .collect();
    assert_eq!(customer.len(), 6, "the script's customer messages");
    let newest_first = |v: &[Message]| v.iter().rev().cloned().collect::<Vec<_>>();

    // The agents' transcript.
    let t = Transcript::Agents;
    assert_eq!(
        bp.messages(&acc, live.id(), t, None, 100).await.unwrap(),
        newest_first(&all),
        "every message, newest first"
    );
    assert_eq!(page(bp, &live, t, None, 3).await, [10, 9, 8], "newest page");
    assert_eq!(page(bp, &live, t, Some(8), 3).await, [7, 6, 5], "below 8");
    assert_eq!(page(bp, &live, t, Some(3), 5).await, [2, 1], "the oldest");
    assert!(page(bp, &live, t, Some(1), 5).await.is_empty(), "below 1");
    assert_eq!(
        page(bp, &live, t, Some(1000), 2).await,
        [10, 9],
        "before beyond the end"
    );
    assert_eq!(
        page(bp, &live, t, Some(u64::MAX), 2).await,
        [10, 9],
        "before at the end of the range"
    );
    assert!(page(bp, &live, t, None, 0).await.is_empty(), "limit 0");

    // The customer's transcript.
    let t = Transcript::Customer;
    let read = bp.messages(&acc, live.id(), t, None, 100).await.unwrap();
    assert_eq!(read, newest_first(&customer), "customer messages only");
    assert!(
        read.iter().all(|m| m.audience == Audience::Everyone),
        "nothing meant for agents only"
    );
    assert_eq!(page(bp, &live, t, None, 2).await, [6, 5], "newest page");
    assert_eq!(page(bp, &live, t, Some(4), 2).await, [3, 2], "below 4");
    assert_eq!(page(bp, &live, t, Some(2), 5).await, [1], "the oldest");
    assert!(page(bp, &live, t, Some(1), 5).await.is_empty(), "below 1");
    assert_eq!(
        page(bp, &live, t, Some(50), 2).await,
        [6, 5],
        "before beyond the end"
    );
    assert_eq!(
        page(bp, &live, t, Some(u64::MAX), 2).await,
        [6, 5],
        "before at the end of the range"
    );
    assert!(page(bp, &live, t, None, 0).await.is_empty(), "limit 0");

    // Walking the pages gives each transcript whole.
    for (t, whole) in [
        (Transcript::Agents, &all),
        (Transcript::Customer, &customer),
    ] {
        let mut walked = Vec::new();
        let mut before = None;
        for _ in 0..=whole.len() {
            let p = bp.messages(&acc, live.id(), t, before, 4).await.unwrap();
            let Some(last) = p.last() else { break };
            before = Some(number(last, t));
            walked.extend(p);
        }
        assert_eq!(walked, newest_first(whole), "{t:?}: walked in pages of 4");
    }

    // Scoped.
    let other = account_id();
    for t in [Transcript::Agents, Transcript::Customer] {
        assert!(
            bp.messages(&other, live.id(), t, None, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            bp.messages(&acc, &SessionId::random(), t, None, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }
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

// ---------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

/// `ping` answers `Ok` when the store is reachable.
pub async fn health_ping_is_ok(bp: &dyn Backplane) {
    bp.ping().await.unwrap();
}

/// An `Idempotency-Key` is held by the first `reserve` only; a record
/// replaces the hold, belongs to its account, and goes when forgotten or
/// when it lapses.
pub async fn idempotency_the_first_reserve_holds_and_records_lapse(bp: &dyn Backplane) {
    let (a, b) = (account_id(), account_id());
    let long = Duration::from_secs(60);
    assert_eq!(bp.reserve(&a, "k1", "running", long).await.unwrap(), None);
    assert_eq!(
        bp.reserve(&a, "k1", "again", long)
            .await
            .unwrap()
            .as_deref(),
        Some("running")
    );
    // Another account's key of the same name is another key.
    assert_eq!(bp.reserve(&b, "k1", "running-b", long).await.unwrap(), None);
    bp.record(&a, "k1", "done", long).await.unwrap();
    assert_eq!(
        bp.reserve(&a, "k1", "again", long)
            .await
            .unwrap()
            .as_deref(),
        Some("done")
    );
    bp.forget(&a, "k1").await.unwrap();
    assert_eq!(bp.reserve(&a, "k1", "fresh", long).await.unwrap(), None);
    // A record lapses with its lifetime; so does a hold.
    bp.record(&a, "k2", "short", Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(
        bp.reserve(&a, "k2", "x", long).await.unwrap().as_deref(),
        Some("short")
    );
    bp.reserve(&a, "k3", "held", Duration::from_millis(150))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(bp.reserve(&a, "k2", "after", long).await.unwrap(), None);
    assert_eq!(bp.reserve(&a, "k3", "after", long).await.unwrap(), None);
}

/// Two racing reserves of one key: exactly one holds it.
pub async fn idempotency_racing_reserves_have_one_holder(bp: &dyn Backplane) {
    let a = &account_id();
    let long = Duration::from_secs(60);
    let racers = (0..16).map(|i| {
        let running = format!("r{i}");
        async move { bp.reserve(a, "race", &running, long).await.unwrap() }
    });
    let held = futures_util::future::join_all(racers).await;
    assert_eq!(held.iter().filter(|h| h.is_none()).count(), 1, "{held:?}");
}

/// With no replicas asked for, a change is confirmed at once.
pub async fn durability_confirm_without_replicas_asked_is_immediate(bp: &dyn Backplane) {
    bp.confirm(&account_id()).await.unwrap();
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

/// Expands to one `#[tokio::test]` per backplane rule. `$make` is evaluated
/// once per test and must produce something that derefs to a [`Backplane`]
/// (`Arc<dyn Backplane>`, `Arc<MyBackplane>`, a fixture holding one). Every
/// rule uses fresh random ids; the timer rules need the backplane's due
/// stream, so `$make` must build a new backplane each time (see the module
/// documentation).
///
/// `backplane_conformance_suite!(sequential NAME)` instead defines
/// `async fn NAME(make)` that runs every rule in turn, each on a backplane
/// `make()` builds: for a store too costly to start once per rule (a Redis
/// Cluster), started once by the calling test.
#[doc(hidden)]
#[macro_export]
macro_rules! backplane_conformance_suite {
    (sequential $name:ident) => {
        $crate::backplane_conformance_suite!(@list @sequential $name);
    };
    (@rules $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "current_thread")]
            async fn $rule() {
                let bp = $make;
                let bp: &dyn ::collabd::backplane::Backplane = &*bp;
                $crate::conformance::$rule(bp).await;
            }
        )*
    };
    (@sequential $name:ident; $($rule:ident),* $(,)?) => {
        async fn $name<F, Fut, B>(make: F)
        where
            F: Fn() -> Fut,
            Fut: ::std::future::Future<Output = B>,
            B: ::std::ops::Deref<Target = dyn ::collabd::backplane::Backplane>,
        {
            $(
                eprintln!("conformance rule: {}", stringify!($rule));
                let bp = make().await;
                $crate::conformance::$rule(&*bp).await;
            )*
        }
    };
    (@list $($head:tt)*) => {
        $crate::backplane_conformance_suite!($($head)*;
            directory_accounts_put_reports_creation_and_keeps_latest,
            directory_portals_are_scoped_by_account_and_listed_sorted,
            directory_agents_are_scoped_by_account,
            directory_account_and_agent_reads_both,
            directory_revocation_marks_refuse_older_tokens,
            rate_buckets_allow_a_burst_then_refill,
            directory_lists_in_pages_and_deletes,
            sessions_are_listed_by_status_in_pages,
            presence_login_returns_previous_and_logout_clears,
            presence_is_scoped_by_account,
            presence_online_in_lists_only_that_portals_logged_in_agents,
            presence_a_portal_with_thousands_online_is_read_whole,
            presence_window_lists_online_agents_with_portal_and_active_sessions,
            sessions_commit_is_versioned_and_scoped_by_account,
            sessions_a_conflict_changes_nothing,
            sessions_a_refused_guard_changes_nothing,
            sessions_the_delta_updates_agent_sessions_open_invitations_and_active_counts,
            sessions_messages_page_newest_first,
            sessions_closed_invitations_go_to_history_and_their_claims_go,
            sessions_refresh_says_current_changed_or_gone,
            sessions_accept_context_reads_what_an_accept_needs,
            sessions_an_ended_session_is_gone_after_its_retention,
            bus_published_messages_reach_only_the_topics_subscribers,
            bus_a_late_subscriber_sees_only_later_messages,
            claim_first_wins_and_is_idempotent_for_the_winner,
            claims_are_scoped_by_account,
            claim_fences_strictly_increase,
            claim_release_by_holder_lets_another_win_with_larger_fence,
            claim_release_by_non_holder_does_nothing,
            claim_expires_after_its_ttl,
            claim_concurrent_claims_have_exactly_one_winner,
            timers_the_due_stream_is_handed_out_once,
            timers_schedule_delivers_a_timer_once_when_due,
            timers_scheduling_again_moves_the_timer,
            timers_a_committed_arm_is_delivered_once_when_due,
            timers_a_disarmed_timer_is_never_delivered,
            timers_a_timer_armed_again_after_its_delivery_survives_completing_it,
            timers_completing_a_delivery_removes_the_timer,
            health_ping_is_ok,
            idempotency_the_first_reserve_holds_and_records_lapse,
            idempotency_racing_reserves_have_one_holder,
            durability_confirm_without_replicas_asked_is_immediate,
            audit_a_commit_stores_its_entries_and_a_refused_one_none,
            sessions_a_moved_invitation_drops_its_claim_and_changes_index,
            audit_a_put_replaces_only_what_its_entries_were_made_from,
            audit_directory_changes_store_their_entries,
        );
    };
    ($make:expr) => {
        $crate::backplane_conformance_suite!(@list @rules $make);
    };
}

// ---------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------

/// The account's whole trail, read in pages of `page`.
async fn account_trail(
    bp: &dyn Backplane,
    account: &AccountId,
    page: usize,
) -> Vec<(AuditCursor, AuditEntry)> {
    let mut all: Vec<(AuditCursor, AuditEntry)> = Vec::new();
    loop {
        let after = all.last().map(|(id, _)| *id);
        let batch = bp.account_audit(account, after, page).await.unwrap();
        let done = batch.len() < page;
        all.extend(batch);
        if done {
            return all;
        }
    }
}

/// The entries only, in order.
fn entries(trail: &[(AuditCursor, AuditEntry)]) -> Vec<AuditEntry> {
    trail.iter().map(|(_, e)| e.clone()).collect()
}

/// An administrative entry naming `agent`.
fn admin_entry(action: AuditAction, agent: &AgentId) -> AuditEntry {
    AuditEntry::admin(Utc::now(), action, serde_json::json!({"agent": agent}))
}

fn audited(entries: &[AuditEntry]) -> Audited<'_> {
    Audited {
        entries,
        retention: KEEP,
        replaces: Replaces::Anything,
    }
}

/// A stored commit stores its audit entries in the session's trail and the
/// account's, in order; a conflicting or refused commit stores none.
pub async fn audit_a_commit_stores_its_entries_and_a_refused_one_none(bp: &dyn Backplane) {
    let acc = account_id();
    let (a, b) = (agent_id(), agent_id());
    let (mut live, created) = Live::create(&acc, &a);
    live.store(bp, &created).await;
    let inv = live
        .invite(bp, &a, Target::Agent(b.clone()), std::slice::from_ref(&b))
        .await;
    let fence = won(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        "b claims",
    );
    let joined = live.run(bp, accept(&inv, &b, 0, fence)).await;
    assert!(!joined.audit.is_empty(), "an accept has entries");

    let session = bp.session_audit(&acc, live.id(), 0, 100).await.unwrap();
    let actions: Vec<AuditAction> = session.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::SessionCreated,
            AuditAction::InvitationSent,
            AuditAction::InvitationAccepted,
            AuditAction::ParticipantJoined,
        ]
    );
    assert_eq!(session[3].actor.id.as_ref(), Some(&b));
    // Paged from a position.
    assert_eq!(
        bp.session_audit(&acc, live.id(), 1, 2).await.unwrap(),
        session[1..3].to_vec()
    );
    assert!(
        bp.session_audit(&acc, live.id(), 4, 2)
            .await
            .unwrap()
            .is_empty()
    );
    // The account's trail: the same, in order, ids increasing, paged.
    let trail = account_trail(bp, &acc, 3).await;
    assert_eq!(entries(&trail), session);
    assert!(trail.windows(2).all(|w| w[0].0 < w[1].0), "{trail:?}");
    let rest = bp.account_audit(&acc, Some(trail[1].0), 10).await.unwrap();
    assert_eq!(entries(&rest), session[2..].to_vec());

    // A conflicting commit and a refused guard store no entry.
    let mut other = live.clone();
    let left = other.apply(Leave {
        agent: b.clone(),
        by_admin: false,
    });
    assert!(!left.audit.is_empty());
    let stale = Commit {
        ..other.commit(live.version - 1, &left)
    };
    assert_eq!(bp.commit(&acc, stale).await.unwrap(), Committed::Conflict);
    let guard = Guard {
        agent: a.clone(),
        below: 0,
    };
    let refused = Commit {
        guard: Some(&guard),
        ..other.commit(live.version, &left)
    };
    assert_eq!(bp.commit(&acc, refused).await.unwrap(), Committed::Refused);
    assert_eq!(
        bp.session_audit(&acc, live.id(), 0, 100).await.unwrap(),
        session
    );
    assert_eq!(entries(&account_trail(bp, &acc, 100).await), session);
    // Another account's trail is its own.
    assert!(
        bp.account_audit(&account_id(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Administrative changes store their entries with them; a deletion of
/// nothing stores none; the trail outlives the account's deletion.
pub async fn audit_directory_changes_store_their_entries(bp: &dyn Backplane) {
    let acc = account_id();
    let (a, gone) = (agent_id(), agent_id());
    let p = portal_id();
    let created = [AuditEntry::admin(
        Utc::now(),
        AuditAction::AccountUpdated,
        serde_json::json!({"name": "Acme"}),
    )];
    bp.put_account(&account(&acc, "Acme"), audited(&created))
        .await
        .unwrap();
    bp.put_portal(
        &acc,
        &Portal {
            id: p.clone(),
            name: "Support".into(),
        },
    )
    .await
    .unwrap();
    let mut expected = created.to_vec();
    let steps = [
        admin_entry(AuditAction::AgentCreated, &a),
        admin_entry(AuditAction::AgentLoggedOut, &a),
        admin_entry(AuditAction::TokensRevoked, &a),
        admin_entry(AuditAction::AgentDeleted, &a),
        admin_entry(AuditAction::PortalDeleted, &a),
    ];
    let profile_a = profile(&a, std::slice::from_ref(&p));
    assert!(
        bp.put_agent(&acc, &profile_a, audited(&steps[..1]))
            .await
            .unwrap()
    );
    bp.login(&acc, &profile_a, &p).await.unwrap();
    bp.logout(&acc, &profile_a, audited(&steps[1..2]))
        .await
        .unwrap();
    bp.revoke_tokens(&acc, Some(&a), Utc::now(), LONG_TTL, audited(&steps[2..3]))
        .await
        .unwrap();
    assert!(
        bp.delete_agent(&acc, &a, audited(&steps[3..4]))
            .await
            .unwrap()
    );
    expected.extend_from_slice(&steps[..4]);
    // Deleting what is not there records nothing.
    let nothing = [admin_entry(AuditAction::AgentDeleted, &gone)];
    assert!(
        !bp.delete_agent(&acc, &gone, audited(&nothing))
            .await
            .unwrap()
    );
    assert!(!bp.delete_agent(&acc, &a, audited(&nothing)).await.unwrap());
    assert!(
        bp.delete_portal(&acc, &p, audited(&steps[4..5]))
            .await
            .unwrap()
    );
    expected.push(steps[4].clone());
    assert!(!bp.delete_portal(&acc, &p, audited(&nothing)).await.unwrap());
    assert_eq!(entries(&account_trail(bp, &acc, 2).await), expected);

    // The account goes; its trail, ending with the deletion, stays.
    let deleted = [AuditEntry::admin(
        Utc::now(),
        AuditAction::AccountDeleted,
        serde_json::json!({}),
    )];
    assert!(bp.delete_account(&acc, audited(&deleted)).await.unwrap());
    assert_eq!(bp.account(&acc).await.unwrap(), None);
    expected.push(deleted[0].clone());
    assert_eq!(entries(&account_trail(bp, &acc, 100).await), expected);
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

/// An audited `put` applies only over the record its entries were made
/// from: a record changed meanwhile is `Changed`, and nothing (no record,
/// no entry) is written.
pub async fn audit_a_put_replaces_only_what_its_entries_were_made_from(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let entry = |what: &str| {
        [AuditEntry::admin(
            Utc::now(),
            AuditAction::AgentUpdated,
            serde_json::json!({"agent": a, "what": what}),
        )]
    };
    let with = |entries, replaces| Audited {
        replaces,
        ..audited(entries)
    };
    let (created, theirs_entry, mine_entry) = (entry("created"), entry("theirs"), entry("mine"));
    let (renamed, stale_entry) = (entry("renamed"), entry("stale"));
    assert!(
        bp.put_account(&account(&acc, "Acme"), with(&created, Replaces::Nothing))
            .await
            .unwrap()
    );
    let first = profile(&a, &[]);
    assert!(
        bp.put_agent(&acc, &first, with(&created, Replaces::Nothing))
            .await
            .unwrap()
    );
    let read = bp.agent_record(&acc, &a).await.unwrap().expect("stored");
    assert_eq!(read.value, first);
    // Someone else's write lands first…
    let theirs = Agent {
        name: "Theirs".into(),
        ..first.clone()
    };
    assert!(
        !bp.put_agent(
            &acc,
            &theirs,
            with(&theirs_entry, Replaces::Bytes(&read.bytes))
        )
        .await
        .unwrap()
    );
    // …so a write made from the first read is refused, and so is a creation.
    let mine = Agent {
        name: "Mine".into(),
        ..first.clone()
    };
    for stale in [Replaces::Bytes(&read.bytes), Replaces::Nothing] {
        assert!(matches!(
            bp.put_agent(&acc, &mine, with(&mine_entry, stale)).await,
            Err(BackplaneError::Changed)
        ));
    }
    assert_eq!(bp.agent(&acc, &a).await.unwrap(), Some(theirs));
    // The account the same way.
    let stored = bp.account_record(&acc).await.unwrap().expect("stored");
    assert!(
        !bp.put_account(
            &account(&acc, "Acme 2"),
            with(&renamed, Replaces::Bytes(&stored.bytes))
        )
        .await
        .unwrap()
    );
    assert!(matches!(
        bp.put_account(
            &account(&acc, "Acme 3"),
            with(&stale_entry, Replaces::Bytes(&stored.bytes))
        )
        .await,
        Err(BackplaneError::Changed)
    ));
    assert_eq!(
        bp.account(&acc).await.unwrap().map(|a| a.name),
        Some("Acme 2".into())
    );
    let whats: Vec<String> = entries(&account_trail(bp, &acc, 100).await)
        .iter()
        .map(|e| e.details["what"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(whats, ["created", "created", "theirs", "renamed"]);
}
