//! What the rules share: random ids and directory records, the session a
//! rule drives the way a session actor does ([`Live`]) and the commands it
//! applies, and the waits for pub/sub deliveries and due timers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;

use collabd::backplane::{
    Backplane, BusMessage, Claim, Commit, Committed, Deadline, Guard, Route, Routed, TokenHolder,
    Topic, Transcript, Versioned,
};
use collabd::domain::id::random_id;
use collabd::domain::session::{
    Accept, Audience, Command, EndReason, InvitationKind, Invite, Post, Poster, Target, Timer,
};
use collabd::domain::{
    Account, AccountId, Agent, AgentId, AgentRef, DisplayName, Event, InvitationId, Message,
    MessageId, Outcome, Policy, Portal, PortalId, Rules, Session, SessionId, SessionMode,
};

use super::{ARRIVAL_TIMEOUT, KEEP, LONG_TTL};

pub(super) fn account_id() -> AccountId {
    AccountId::parse(&random_id("acc")).expect("random account id is valid")
}

pub(super) fn agent_id() -> AgentId {
    AgentId::parse(&random_id("agt")).expect("random agent id is valid")
}

pub(super) fn portal_id() -> PortalId {
    PortalId::parse(&random_id("ptl")).expect("random portal id is valid")
}

pub(super) fn invitation_id() -> InvitationId {
    InvitationId::within(&SessionId::random())
}

/// A display name, parsed as a request's would be.
pub(super) fn display(name: &str) -> DisplayName {
    DisplayName::parse("name", name).expect("a valid display name")
}

pub(super) fn account(id: &AccountId, name: &str) -> Account {
    Account {
        id: id.clone(),
        name: display(name),
        policy: Policy::default(),
    }
}

pub(super) fn portal(id: &PortalId, name: &str) -> Portal {
    Portal {
        id: id.clone(),
        name: display(name),
    }
}

pub(super) fn agent(id: &AgentId, name: &str, portals: &[PortalId]) -> Agent {
    Agent {
        id: id.clone(),
        name: display(name),
        portals: portals.to_vec(),
    }
}

/// An agent's profile with a name made from its id.
pub(super) fn profile(id: &AgentId, portals: &[PortalId]) -> Agent {
    agent(id, &format!("Agent {id}"), portals)
}

pub(super) fn agent_ref(id: &AgentId) -> AgentRef {
    AgentRef {
        id: id.clone(),
        name: display(&format!("Agent {id}")),
    }
}

/// What `account_and_agent` read, without the revocation mark.
pub(super) fn pair(holder: TokenHolder) -> (Option<Account>, Option<Agent>) {
    (holder.account, holder.agent)
}

pub(super) fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `offset_ms` from now, to the millisecond (what timers keep).
pub(super) fn in_ms(offset_ms: i64) -> DateTime<Utc> {
    let at = Utc::now() + chrono::Duration::milliseconds(offset_ms);
    DateTime::from_timestamp_millis(at.timestamp_millis()).expect("a time in range")
}

pub(super) fn won(claim: Claim, what: &str) -> u64 {
    match claim {
        Claim::Won { fence } => fence,
        Claim::Lost { by } => panic!("{what}: expected Won, got Lost {{ by: {by} }}"),
    }
}

/// A session as a session actor holds it: the hot state, the version it
/// was stored at (0: not stored yet), and the policy it is run under.
#[derive(Clone)]
pub(super) struct Live {
    pub(super) account: AccountId,
    policy: Policy,
    pub(super) session: Session,
    pub(super) version: u64,
}

impl Live {
    /// A new session led by `lead` under the default policy, not stored
    /// yet, and what creating it changes.
    pub(super) fn create(account: &AccountId, lead: &AgentId) -> (Self, Outcome) {
        Self::create_as(account, lead, SessionId::random(), Policy::default())
    }

    /// The same under `policy`.
    pub(super) fn create_with(
        account: &AccountId,
        lead: &AgentId,
        policy: Policy,
    ) -> (Self, Outcome) {
        Self::create_as(account, lead, SessionId::random(), policy)
    }

    pub(super) fn create_as(
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
            display("Customer"),
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
    pub(super) async fn started(bp: &dyn Backplane, account: &AccountId, lead: &AgentId) -> Self {
        let (mut live, created) = Self::create(account, lead);
        live.store(bp, &created).await;
        live
    }

    pub(super) fn id(&self) -> &SessionId {
        &self.session.id
    }

    pub(super) fn topic(&self) -> Topic {
        Topic::Session(self.account.clone(), self.session.id.clone())
    }

    pub(super) fn versioned(&self) -> Versioned {
        Versioned {
            version: self.version,
            session: self.session.clone(),
        }
    }

    /// Applies a command to the local state (it must be valid).
    pub(super) fn apply(&mut self, command: impl Into<Command>) -> Outcome {
        let rules = Rules {
            policy: &self.policy,
            now: Utc::now(),
        };
        self.session
            .apply(&command.into(), rules)
            .unwrap_or_else(|e| panic!("the command must be valid: {e}"))
    }

    /// A plain commit of the local state: no fan-out, no guard, kept long.
    pub(super) fn commit<'a>(&'a self, expected_version: u64, outcome: &'a Outcome) -> Commit<'a> {
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
    pub(super) fn stored(&mut self, committed: Committed) {
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
    pub(super) async fn store(&mut self, bp: &dyn Backplane, outcome: &Outcome) {
        let committed = bp
            .commit(&self.account, self.commit(self.version, outcome))
            .await
            .unwrap();
        self.stored(committed);
    }

    /// Applies a command and stores its outcome.
    pub(super) async fn run(&mut self, bp: &dyn Backplane, command: impl Into<Command>) -> Outcome {
        let outcome = self.apply(command);
        self.store(bp, &outcome).await;
        outcome
    }

    /// An invitation command from `inviter` to `target`, `online` being the
    /// agents logged in for it.
    pub(super) fn invitation(
        &self,
        inviter: &AgentId,
        target: Target,
        online: &[AgentId],
    ) -> Invite {
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
    pub(super) async fn invite(
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
    pub(super) async fn accept_by(
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

pub(super) fn accept(
    invitation: &InvitationId,
    agent: &AgentId,
    active_sessions: u32,
    fence: u64,
) -> Accept {
    Accept {
        invitation: invitation.clone(),
        agent: agent_ref(agent),
        active_sessions,
        fence,
    }
}

pub(super) fn post(author: Poster, text: &str, audience: Audience) -> Post {
    Post {
        id: MessageId::random(),
        author,
        text: text.to_owned(),
        audience,
    }
}

pub(super) fn presence_msg(agent: &AgentId, portal: Option<&PortalId>) -> BusMessage {
    BusMessage::Presence {
        agent: agent.clone(),
        portal: portal.cloned(),
    }
}

pub(super) fn ended_msg(session: &SessionId, version: u64) -> BusMessage {
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
pub(super) async fn next(rx: &mut broadcast::Receiver<Arc<BusMessage>>, what: &str) -> BusMessage {
    match tokio::time::timeout(ARRIVAL_TIMEOUT, rx.recv()).await {
        Ok(Ok(m)) => (*m).clone(),
        Ok(Err(e)) => panic!("{what}: receive failed: {e}"),
        Err(_) => panic!("{what}: nothing arrived within {ARRIVAL_TIMEOUT:?}"),
    }
}

/// Shows that nothing arrived on `topic` (for `rx`) so far: a sentinel
/// published now must be the next thing `rx` receives.
pub(super) async fn assert_quiet(
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
pub(super) async fn transcripts(
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
pub(super) async fn assert_active(
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

pub(super) fn due_stream(bp: &dyn Backplane) -> Receiver<Deadline> {
    bp.take_due().expect(
        "this rule needs the backplane's due stream: give it a backplane of its own \
         (take_due already handed the stream out)",
    )
}

/// The next deadline of `account` (other accounts' are skipped).
pub(super) async fn next_due(
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
pub(super) async fn due_until(
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
pub(super) fn delivers(d: &Deadline, session: &SessionId, timer: &Timer) -> bool {
    &d.session == session && &d.timer == timer
}

/// Receives `n` deadlines of `account`.
pub(super) async fn next_dues(
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

pub(super) fn find_due<'a>(
    dues: &'a [Deadline],
    session: &SessionId,
    timer: &Timer,
) -> &'a Deadline {
    dues.iter()
        .find(|d| delivers(d, session, timer))
        .unwrap_or_else(|| panic!("{timer:?} of {session} was delivered: {dues:?}"))
}
