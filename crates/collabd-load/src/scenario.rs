//! The run itself: provision an account of its own, log the agents in,
//! hold their streams, open the sessions, send invitations on schedule,
//! let recipients race to accept, and judge every outcome.
//!
//! Everything runs on one actix (current-thread) system. Nothing here
//! waits on anything else on the measuring path: stream readers are tasks
//! of their own that timestamp events as their bytes arrive, take only the
//! fields they need from each frame and hand them to the [`Ledger`]; each
//! invitation and each accept is a task of its own. The ledger judges each
//! invitation as soon as it is settled and asks for the accepts and leaves
//! the scenario then sends.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use awc::http::Method;
use futures_util::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{Answer, Frame, Nodes, StreamEnd, pump};
use super::cpu;
use super::ledger::{self, AcceptPlan, Key, Ledger, Lookup, Reply};
use super::report::{Latency, Observed};
use super::timeline::Timeline;
use super::{LoadArgs, LoadError, faults};

/// Set-up requests in flight at once: enough to provision a thousand agents
/// in seconds, few enough not to look like the load being measured.
const SETUP_CONCURRENCY: usize = 32;
/// How long set-up may take in all before the run is given up.
const SETUP_LIMIT: Duration = Duration::from_secs(120);
/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);
/// How often invitations past their grace are judged.
const SWEEP_TICK: Duration = Duration::from_millis(50);
/// Pause before reopening a stream the server closed, doubled after each
/// failed try up to [`RECONNECT_PAUSE_MAX`] (as a console backs off: a
/// node answering 503 through a failover is not asked ten times a second
/// by every stream).
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two tries to reopen a stream.
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(2);
/// The account's invitation TTL: far longer than any run's accept delay,
/// so expiry never decides a race.
const INVITATION_TTL_SECS: u64 = 120;
/// Invitations one session may send in its life: the policy's maximum, so
/// a long run never meets the limit (the default is 10,000).
const MAX_INVITATIONS_PER_SESSION: u64 = 100_000;
/// Invitations open at once in one session: the policy's maximum, so a
/// slow race never meets the limit (the default is 16).
const MAX_PENDING_INVITATIONS_PER_SESSION: u64 = 256;
/// How long accepts still waiting for an answer at the end of the drain
/// may take to give up (they are bounded by the run's end already).
const ACCEPTS_SETTLE_LIMIT: Duration = Duration::from_secs(2);
/// How long the lookups of lost answers, the leaves they call for, ending
/// the sessions and logging the agents out may each take.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);

/// One provisioned agent.
struct Agent {
    id: String,
    token: String,
    portal: usize,
    /// Its account's index: its portal's ([`account_of_portal`]).
    account: usize,
    /// Where it logged in, accepts and leaves.
    login_node: usize,
    /// Where its event stream is held: another node when there is one, so
    /// every alert crosses the backplane.
    stream_node: usize,
    /// Since when its stream is cut off by its node's death (`None`: open,
    /// or closed by a live node).
    down_since: Cell<Option<Instant>>,
}

/// One live session. Its lead is the ledger's to know: a transfer moves it.
struct Live {
    id: String,
    /// The agent who opened it, its first lead.
    opened_by: usize,
}

/// Live figures for the progress bar and the CPU window.
#[derive(Default)]
struct Counters {
    ready: Cell<usize>,
    sent: Cell<u64>,
    created: Cell<u64>,
    /// `invitation_offered` frames received, matched or not.
    alerts: Cell<u64>,
    /// `invitation_withdrawn` frames received, matched or not.
    withdrawals: Cell<u64>,
    drops: Cell<u64>,
    /// Transfer POSTs sent.
    transfers: Cell<u64>,
    /// POSTs of escalating invitations sent.
    escalations: Cell<u64>,
    /// Invitations refused because their inviter stopped leading meanwhile.
    stale_lead: Cell<u64>,
    /// Event streams open now (agents' and customers').
    open_streams: Cell<u64>,
    /// Recipients of a 201 whose stream had been down past the fade bound.
    ghost_offers: Cell<u64>,
    /// Recipients of a 201 whose stream had been down less than that.
    offers_while_down: Cell<u64>,
}

impl Counters {
    fn delivered(&self) -> u64 {
        self.alerts.get() + self.withdrawals.get()
    }
}

fn bump<T: Copy + std::ops::Add<Output = T> + From<u8>>(c: &Cell<T>) {
    c.set(c.get() + T::from(1));
}

/// The run's shared state.
struct Run {
    nodes: Nodes,
    /// The run's id: its account id and the prefix of every id it creates.
    prefix: String,
    agents: Vec<Agent>,
    sessions: RefCell<Vec<Live>>,
    /// Session id key → session index.
    session_keys: RefCell<HashMap<Key, u32>>,
    portals: Vec<String>,
    /// Account ids (`--accounts`), and per account its portals and agents.
    accounts: Vec<String>,
    account_portals: Vec<Vec<usize>>,
    account_agents: Vec<Vec<u32>>,
    args: LoadArgs,
    /// Flips to true when every reader must stop.
    stop: watch::Receiver<bool>,
    /// Nothing is awaited past this.
    end: Cell<Instant>,
    ledger: RefCell<Ledger>,
    errors: RefCell<std::collections::BTreeMap<String, u64>>,
    counters: Counters,
    /// Per (agent, session): accepts in flight plus joins not yet left. An
    /// accept made while the agent has another one in flight or is still in
    /// the session is rightly refused with `already_participant`.
    in_session: RefCell<HashMap<(u32, u32), u32>>,
    /// The run second by second (shared with the ledger and the faults).
    timeline: Rc<RefCell<Timeline>>,
    /// With `--read-back`: every accept answered 2xx (invitation, session,
    /// agent), to be read back after the drain; at most [`MAX_READ_BACK`].
    acknowledged: RefCell<Vec<(Rc<str>, u32, u32)>>,
}

/// The most acknowledged accepts a run keeps to read back (40 bytes each).
const MAX_READ_BACK: usize = 1_000_000;

impl Run {
    fn enter(&self, agent: u32, session: u32) -> u32 {
        let mut counts = self.in_session.borrow_mut();
        let n = counts.entry((agent, session)).or_default();
        *n += 1;
        *n
    }

    fn exit(&self, agent: u32, session: u32) {
        let mut counts = self.in_session.borrow_mut();
        if let Some(n) = counts.get_mut(&(agent, session)) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&(agent, session));
            }
        }
    }
}

impl Run {
    fn agent_id(&self, i: usize) -> String {
        format!("{}-ag{i}", self.prefix)
    }

    /// The index of one of our agents from its id.
    fn agent_index(&self, id: &str) -> Option<u32> {
        id.strip_prefix(&self.prefix)?
            .strip_prefix("-ag")?
            .parse()
            .ok()
            .filter(|i| (*i as usize) < self.agents.len())
    }

    /// Session `session`'s lead as the run knows it (the ledger follows
    /// transfers).
    fn lead(&self, session: u32) -> usize {
        self.ledger.borrow().lead(session).unwrap_or(0) as usize
    }

    /// `agent` is known to be in `session`, or on its way in or out: its
    /// lead, or with an accept in flight or a join not yet left.
    fn inside(&self, agent: u32, session: u32) -> bool {
        self.in_session.borrow().contains_key(&(agent, session))
            || self.ledger.borrow().lead(session) == Some(agent)
    }

    fn session_index(&self, id: &str) -> Option<u32> {
        self.session_keys.borrow().get(&ledger::key(id)).copied()
    }

    fn error(&self, call: &str, what: &str) {
        let key = format!("{call} {what}");
        self.timeline.borrow_mut().refused(Instant::now(), &key);
        *self.errors.borrow_mut().entry(key).or_default() += 1;
    }

    /// `agent` POSTs to `path` (no body); a failure or a refusal is counted
    /// under `label`. True when it was answered 2xx.
    async fn post_as(&self, label: &str, agent: &Agent, path: &str) -> bool {
        match self.call_as(label, agent, Method::POST, path).await {
            Some(a) if a.ok() => true,
            Some(a) => {
                self.error(label, &a.error_key());
                false
            }
            None => false,
        }
    }

    /// A call without a body by `agent`, from its login node (as [`Run::call`]).
    async fn call_as(
        &self,
        label: &str,
        agent: &Agent,
        method: Method,
        path: &str,
    ) -> Option<Answer> {
        self.call(label, agent.login_node, method, path, &agent.token, None)
            .await
    }

    /// A call bounded by the run's end; every failure is counted under `call`.
    async fn call(
        &self,
        label: &str,
        node: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Option<Answer> {
        self.call_with(label, node, method, path, token, body, None)
            .await
    }

    /// [`Run::call`] with an `Idempotency-Key` (sent again elsewhere on any
    /// transport failure but a timeout).
    #[allow(clippy::too_many_arguments)]
    async fn call_with(
        &self,
        label: &str,
        node: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Option<Answer> {
        let sent = self
            .nodes
            .call_with(node, method, path, token, body, idempotency_key);
        match tokio::time::timeout_at(self.end.get(), sent).await {
            Err(_) => {
                self.error(label, "unanswered by the end");
                None
            }
            Ok(Err(_)) => {
                self.error(label, "transport");
                None
            }
            Ok(Ok(answer)) => Some(answer),
        }
    }
}

/// Runs the scenario and returns what it observed.
pub async fn run(args: &LoadArgs) -> Result<Observed, LoadError> {
    let began = Instant::now();
    let prefix = args
        .account
        .clone()
        .unwrap_or_else(|| format!("ld{:08x}", rand::random::<u32>()));
    let nodes = Nodes::new(&args.nodes);
    let n = nodes.len();
    let (stop_tx, stop) = watch::channel(false);
    let agents = (0..args.agents)
        .map(|i| Agent {
            id: format!("{prefix}-ag{i}"),
            token: String::new(),
            portal: i % args.portals,
            account: account_of_portal(i % args.portals, args.accounts),
            login_node: i % n,
            stream_node: (i + 1) % n,
            down_since: Cell::new(None),
        })
        .collect();
    let expected = (args.rate * args.duration.as_secs_f64()).ceil() as u64;
    let ledger = Ledger::new(ledger::Config {
        prefix: prefix.clone(),
        agents: args.agents,
        racers: args.racers,
        grace: args.grace,
        accept_delay: args.accept_delay,
        expected_invitations: usize::try_from(expected).unwrap_or(usize::MAX / 2),
    })?;
    let accounts: Vec<String> = if args.accounts == 1 {
        vec![prefix.clone()]
    } else {
        (0..args.accounts)
            .map(|a| format!("{prefix}a{a}"))
            .collect()
    };
    let mut account_portals = vec![Vec::new(); args.accounts];
    for p in 0..args.portals {
        account_portals[account_of_portal(p, args.accounts)].push(p);
    }
    let mut account_agents = vec![Vec::new(); args.accounts];
    for i in 0..args.agents {
        account_agents[account_of_portal(i % args.portals, args.accounts)].push(i as u32);
    }
    let timeline = Rc::new(RefCell::new(Timeline::default()));
    let mut ledger = ledger;
    ledger.set_timeline(Rc::clone(&timeline));
    let mut run = Run {
        nodes,
        prefix: prefix.clone(),
        agents,
        sessions: RefCell::new(Vec::new()),
        session_keys: RefCell::new(HashMap::new()),
        portals: (0..args.portals)
            .map(|p| format!("{prefix}-p{p}"))
            .collect(),
        accounts,
        account_portals,
        account_agents,
        args: args.clone(),
        stop,
        end: Cell::new(began + SETUP_LIMIT),
        ledger: RefCell::new(ledger),
        errors: RefCell::new(Default::default()),
        counters: Counters::default(),
        in_session: RefCell::default(),
        timeline: Rc::clone(&timeline),
        acknowledged: RefCell::default(),
    };
    let progress = progress_bar();
    progress.set_message(format!("provisioning account {prefix}"));
    provision(&mut run).await?;
    let run = Rc::new(run);

    progress.set_message("logging in and opening agent streams");
    connect_agents(&run).await?;
    progress.set_message("opening sessions and customer streams");
    open_sessions(&run).await?;
    wait_until_ready(&run, &progress).await?;
    let setup = began.elapsed();

    // The schedule: invitation k leaves at start + k / rate, whether or not
    // earlier ones were answered (open loop). A late wake-up sends the
    // overdue ones at once rather than shifting the schedule.
    let ticks_per_s = cpu::clock_ticks_per_second();
    let cpu_start = cpu::Reading::take(&args.node_pids);
    let delivered_start = run.counters.delivered();
    let start = Instant::now();
    timeline.borrow_mut().start(start);
    let faults = actix_web::rt::spawn(faults::run(
        args.faults.clone(),
        start,
        run.accounts[0].clone(),
        Rc::clone(&timeline),
    ));
    let schedule_end = start + args.duration;
    let end = schedule_end + args.grace;
    run.end.set(end);
    run.ledger
        .borrow_mut()
        .set_accept_cutoff(schedule_end + args.grace / 2);
    progress.set_length(expected);
    progress.set_style(bar_style());
    let ticker = actix_web::rt::spawn(show_progress(Rc::clone(&run), progress.clone()));
    let sweeper = actix_web::rt::spawn(sweep(Rc::clone(&run)));
    let mut lag = Latency::new()?;
    if args.rate > 0.0 {
        let mut k: u64 = 0;
        loop {
            let at = start + Duration::from_secs_f64(k as f64 / args.rate);
            if at >= schedule_end {
                break;
            }
            tokio::time::sleep_until(at).await;
            // How late the generator itself is: if this grows, the figures
            // measure the generator, not the nodes.
            lag.record(Instant::now().saturating_duration_since(at));
            actix_web::rt::spawn(invite(Rc::clone(&run), k));
            k += 1;
        }
    } else {
        tokio::time::sleep_until(schedule_end).await;
    }
    let sending = start.elapsed();
    progress.set_message("draining");
    tokio::time::sleep_until(end).await;
    let cpu_end = cpu::Reading::take(&args.node_pids);
    let delivered = run.counters.delivered() - delivered_start;
    let _ = stop_tx.send(true);
    ticker.abort();
    sweeper.abort();
    faults.abort();
    // Accepts still waiting for an answer give up at `end`: let them record
    // that, so every lost answer is known before the lookups.
    let limit = Instant::now() + ACCEPTS_SETTLE_LIMIT;
    while run.ledger.borrow().accepts_in_flight() > 0 && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    progress.set_message("looking up lost answers");
    run.end.set(Instant::now() + CLEANUP_LIMIT);
    let lookups = run.ledger.borrow_mut().finish_run();
    look_up(&run, &lookups).await;
    leave_learned(&run).await;
    let (read_back_count, acknowledged_lost) = if args.read_back {
        progress.set_message("reading back the acknowledged accepts");
        read_back(&run).await
    } else {
        (0, 0)
    };
    progress.set_message("checking the transferred sessions' leads");
    let (lead_checks, lead_breaks) = check_leads(&run).await;
    progress.finish_and_clear();

    let mut observed = run.ledger.borrow_mut().finish();
    observed.read_back = read_back_count;
    observed.acknowledged_lost = acknowledged_lost;
    observed.sent = run.counters.sent.get();
    observed.lead_checks = lead_checks;
    observed.lead_breaks = lead_breaks;
    observed.transfers.sent = run.counters.transfers.get();
    observed.transfers.stale_lead = run.counters.stale_lead.get();
    observed.escalations.sent = run.counters.escalations.get();
    observed.setup = setup;
    observed.sending = sending;
    observed.stream_drops = run.counters.drops.get();
    observed.ghost_offers = run.counters.ghost_offers.get();
    observed.offers_while_down = run.counters.offers_while_down.get();
    observed.failovers = run.nodes.failovers();
    observed.schedule_lag = lag;
    observed.cpu = Some(cpu::CpuUse::between(
        &args.node_pids,
        &cpu_start,
        &cpu_end,
        ticks_per_s,
        delivered,
    ));
    clean_up(&run).await;
    observed.errors = run.errors.borrow().clone();
    // Fault commands still running (a restart waiting for readiness) may
    // finish meanwhile: their exit lands on the timeline until here.
    observed.timeline = timeline.borrow().clone();
    Ok(observed)
}

/// Judges invitations past their grace, every [`SWEEP_TICK`].
async fn sweep(run: Rc<Run>) {
    loop {
        tokio::time::sleep(SWEEP_TICK).await;
        run.ledger.borrow_mut().sweep(Instant::now());
        dispatch(&run);
    }
}

/// Sends the accepts and leaves the ledger asked for, each as a task.
fn dispatch(run: &Rc<Run>) {
    if !run.ledger.borrow().has_orders() {
        return;
    }
    let (mut plans, mut leaves) = (Vec::new(), Vec::new());
    {
        let mut ledger = run.ledger.borrow_mut();
        ledger.take_plans(&mut plans);
        ledger.take_leaves(&mut leaves);
    }
    for plan in plans {
        actix_web::rt::spawn(accept(Rc::clone(run), plan));
    }
    for order in leaves {
        actix_web::rt::spawn(leave(Rc::clone(run), order.agent, order.session));
    }
}

#[derive(Deserialize)]
struct LookedUp<'a> {
    #[serde(borrow)]
    accepted_by: Option<Cow<'a, str>>,
}

/// Asks each session's lead how its invitations with lost answers ended.
async fn look_up(run: &Rc<Run>, lookups: &[Lookup]) {
    for_each(lookups.len(), |i| {
        let lookup = &lookups[i];
        async move {
            let session = run.sessions.borrow()[lookup.session as usize].id.clone();
            let agent = &run.agents[run.lead(lookup.session)];
            let path = format!("/v1/sessions/{session}/invitations/{}", lookup.id);
            let outcome = match run.call_as("lookup", agent, Method::GET, &path).await {
                Some(a) if a.ok() => a
                    .json::<LookedUp<'_>>()
                    .map(|found| found.accepted_by.and_then(|by| run.agent_index(&by))),
                Some(a) => {
                    run.error("lookup", &a.error_key());
                    None
                }
                None => None,
            };
            run.ledger.borrow_mut().looked_up(lookup.key, outcome);
        }
    })
    .await;
}

/// Reads back every accept answered 2xx: its invitation must say it was
/// accepted by that agent. Returns (read, lost): an acknowledged accept
/// the state does not have is a lost write; a read that failed is counted
/// as an error, not as lost.
async fn read_back(run: &Rc<Run>) -> (u64, u64) {
    let acknowledged = run.acknowledged.borrow().clone();
    let outcomes = for_each(acknowledged.len(), |i| {
        let (id, session, agent) = &acknowledged[i];
        async move {
            let session_id = run.sessions.borrow()[*session as usize].id.clone();
            let lead = &run.agents[run.lead(*session)];
            let path = format!("/v1/sessions/{session_id}/invitations/{id}");
            match run.call_as("read back", lead, Method::GET, &path).await {
                Some(a) if a.ok() => Some(
                    a.json::<LookedUp<'_>>()
                        .and_then(|found| found.accepted_by.and_then(|by| run.agent_index(&by)))
                        == Some(*agent),
                ),
                // Gone: the state does not have the acknowledged accept.
                Some(a) if a.status == 404 => Some(false),
                Some(a) => {
                    run.error("read back", &a.error_key());
                    None
                }
                None => None,
            }
        }
    })
    .await;
    let read = outcomes.iter().flatten().count() as u64;
    let lost = outcomes.iter().flatten().filter(|kept| !**kept).count() as u64;
    (read, lost)
}

/// Winners learned after the drain leave too, as answered winners do.
async fn leave_learned(run: &Rc<Run>) {
    let mut leaves = Vec::new();
    run.ledger.borrow_mut().take_leaves(&mut leaves);
    for_each(leaves.len(), |i| {
        leave(Rc::clone(run), leaves[i].agent, leaves[i].session)
    })
    .await;
}

#[derive(Deserialize)]
struct SessionView<'a> {
    #[serde(borrow)]
    lead: Option<Cow<'a, str>>,
    #[serde(borrow)]
    participants: Vec<SeatHead<'a>>,
}

#[derive(Deserialize)]
struct SeatHead<'a> {
    #[serde(borrow)]
    agent: IdHead<'a>,
    #[serde(borrow)]
    role: Cow<'a, str>,
}

/// What is wrong with a transferred session's agent view, if anything: its
/// lead must be the one the run tracked, the only participant with role
/// `lead`, and none of its earlier leads may still be in it.
fn lead_fault(run: &Run, check: &ledger::Transferred, view: &SessionView<'_>) -> Option<String> {
    let lead = run.agent_id(check.lead as usize);
    if view.lead.as_deref() != Some(lead.as_str()) {
        return Some(format!("lead {:?}, tracked {lead}", view.lead));
    }
    let leads = view
        .participants
        .iter()
        .filter(|p| p.role == "lead")
        .count();
    if leads != 1 {
        return Some(format!("{leads} participants with role lead"));
    }
    view.participants
        .iter()
        .filter_map(|p| run.agent_index(&p.agent.id))
        .find(|a| check.previous.contains(a))
        .map(|a| format!("earlier lead {} still in", run.agent_id(a as usize)))
}

/// After the drain: every session the run transferred is read as its
/// tracked lead, and checked ([`lead_fault`]). Returns (sessions checked,
/// breaks); each break's reason is counted among the errors too.
async fn check_leads(run: &Rc<Run>) -> (u64, u64) {
    // Collaborators who won lately leave first: wait for their leaves.
    let limit = Instant::now() + ACCEPTS_SETTLE_LIMIT;
    while !run.in_session.borrow().is_empty() && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let checks = run.ledger.borrow().transferred();
    let broken = for_each(checks.len(), |i| {
        let check = &checks[i];
        async move {
            let id = run.sessions.borrow()[check.session as usize].id.clone();
            let agent = &run.agents[check.lead as usize];
            let path = format!("/v1/sessions/{id}");
            let fault = match run.call_as("lead check", agent, Method::GET, &path).await {
                None => Some("unanswered".to_owned()),
                Some(a) if a.status != 200 => {
                    Some(format!("as the tracked lead: {}", a.error_key()))
                }
                Some(a) => match a.json::<SessionView<'_>>() {
                    Some(view) => lead_fault(run, check, &view),
                    None => Some("unreadable session view".to_owned()),
                },
            };
            if let Some(fault) = &fault {
                run.error("lead check", fault);
            }
            fault.is_some()
        }
    })
    .await;
    (
        checks.len() as u64,
        broken.into_iter().filter(|b| *b).count() as u64,
    )
}

/// Ends the run's sessions and logs its agents out. Without it every run
/// leaves its agents online (a logged-in agent keeps its actor and its
/// presence heartbeat on the node), and the next run on the same nodes
/// measures nodes carrying every earlier run.
async fn clean_up(run: &Rc<Run>) {
    let deadline = Instant::now() + CLEANUP_LIMIT;
    run.end.set(deadline);
    let sessions: Vec<(String, usize)> = run
        .sessions
        .borrow()
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), run.lead(i as u32)))
        .collect();
    for_each(sessions.len(), |s| {
        let (id, lead) = &sessions[s];
        let agent = &run.agents[*lead];
        let path = format!("/v1/sessions/{id}/end");
        async move {
            run.post_as("cleanup end", agent, &path).await;
        }
    })
    .await;
    for_each(run.agents.len(), |i| {
        let agent = &run.agents[i];
        async move {
            run.post_as("cleanup logout", agent, "/v1/me/logout").await;
        }
    })
    .await;
}

fn progress_bar() -> ProgressBar {
    // stderr, and hidden by indicatif itself when stderr is not a terminal.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.enable_steady_tick(PROGRESS_TICK);
    bar
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} invitations  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

async fn show_progress(run: Rc<Run>, bar: ProgressBar) {
    loop {
        let c = &run.counters;
        run.timeline
            .borrow_mut()
            .open_streams(Instant::now(), c.open_streams.get());
        bar.set_position(c.sent.get());
        let (live, pending) = run.ledger.borrow().in_play();
        bar.set_message(format!(
            "created {}  alerts {}  in play {}  errors {}  drops {}",
            c.created.get(),
            c.alerts.get(),
            live + pending,
            run.errors.borrow().values().sum::<u64>(),
            c.drops.get()
        ));
        tokio::time::sleep(PROGRESS_TICK).await;
    }
}

/// Runs `make(i)` for every i in `0..count`, [`SETUP_CONCURRENCY`] at a time.
async fn for_each<F, Fut, T>(count: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    stream::iter(0..count)
        .map(make)
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await
}

fn setup_failed(what: &str, answer: Result<Answer, String>) -> LoadError {
    match answer {
        Ok(a) => LoadError::Setup(format!(
            "{what}: HTTP {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        )),
        Err(e) => LoadError::Setup(format!("{what}: {e}")),
    }
}

/// The accounts, their portals, their agents and the agents' tokens.
async fn provision(run: &mut Run) -> Result<(), LoadError> {
    let admin = run.args.admin_token.clone();
    let nodes = &run.nodes;
    let accounts = &run.accounts;
    let results = for_each(accounts.len(), |a| {
        let policy = json!({"name": format!("collabd load {}", accounts[a]),
        "policy": {
            "invitation_ttl_secs": INVITATION_TTL_SECS,
            "max_invitations_per_session": MAX_INVITATIONS_PER_SESSION,
            "max_pending_invitations_per_session": MAX_PENDING_INVITATIONS_PER_SESSION,
        }});
        let path = format!("/v1/accounts/{}", accounts[a]);
        let admin = &admin;
        async move {
            nodes
                .call_paced(a, Method::PUT, &path, admin, Some(&policy))
                .await
        }
    })
    .await;
    for put in results {
        if !matches!(&put, Ok(a) if a.ok()) {
            return Err(setup_failed("creating an account", put));
        }
    }
    let portals = &run.portals;
    let results = for_each(portals.len(), |p| {
        let account = &accounts[account_of_portal(p, accounts.len())];
        let path = format!("/v1/accounts/{account}/portals/{}", portals[p]);
        let body = json!({"name": format!("Portal {p}")});
        let admin = &admin;
        async move {
            nodes
                .call_paced(p, Method::PUT, &path, admin, Some(&body))
                .await
        }
    })
    .await;
    for result in results {
        if !matches!(&result, Ok(a) if a.ok()) {
            return Err(setup_failed("creating a portal", result));
        }
    }
    let agents = &run.agents;
    let tokens = for_each(agents.len(), |i| {
        let agent = &agents[i];
        let admin = &admin;
        let account = &accounts[agent.account];
        let portal = &portals[agent.portal];
        async move {
            let path = format!("/v1/accounts/{account}/agents/{}", agent.id);
            let body = json!({"name": format!("Agent {i}"), "portals": [portal]});
            let put = nodes
                .call_paced(i, Method::PUT, &path, admin, Some(&body))
                .await;
            if !matches!(&put, Ok(a) if a.ok()) {
                return Err(setup_failed("creating an agent", put));
            }
            let minted = nodes
                .call_paced(
                    i,
                    Method::POST,
                    &format!("{path}/tokens"),
                    admin,
                    Some(&json!({})),
                )
                .await;
            match &minted {
                Ok(a) if a.ok() => match a.value()["token"].as_str() {
                    Some(token) => Ok((i, token.to_owned())),
                    None => Err(setup_failed("minting a token", minted)),
                },
                _ => Err(setup_failed("minting a token", minted)),
            }
        }
    })
    .await;
    for minted in tokens {
        let (i, token) = minted?;
        run.agents[i].token = token;
    }
    Ok(())
}

/// Logs every agent in and opens its stream on another node than its login.
async fn connect_agents(run: &Rc<Run>) -> Result<(), LoadError> {
    let results = for_each(run.agents.len(), |i| {
        let run = Rc::clone(run);
        async move {
            let agent = &run.agents[i];
            let body = json!({"portal": run.portals[agent.portal]});
            let login = run
                .nodes
                .call_paced(
                    agent.login_node,
                    Method::POST,
                    "/v1/me/login",
                    &agent.token,
                    Some(&body),
                )
                .await;
            if !matches!(&login, Ok(a) if a.ok()) {
                return Err(setup_failed("logging in", login));
            }
            let body = run
                .nodes
                .open_stream(agent.stream_node, "/v1/me/events", &agent.token)
                .await
                .map_err(LoadError::Setup)?;
            actix_web::rt::spawn(agent_stream(Rc::clone(&run), i, Some(body)));
            Ok(())
        }
    })
    .await;
    results.into_iter().collect()
}

/// Opens the sessions, each led by its own agent, and their customer streams.
async fn open_sessions(run: &Rc<Run>) -> Result<(), LoadError> {
    let count = run.args.sessions;
    let results = for_each(count, |s| {
        let run = Rc::clone(run);
        async move {
            let lead = lead_of(s, count, run.agents.len(), run.args.portals);
            let agent = &run.agents[lead];
            let body = json!({"mode": "web", "customer": {"name": format!("Customer {s}")}});
            let created = run
                .nodes
                .call(
                    agent.login_node,
                    Method::POST,
                    "/v1/sessions",
                    &agent.token,
                    Some(&body),
                )
                .await;
            let body = created.as_ref().map(Answer::value).unwrap_or(Value::Null);
            let (id, customer_token) = match &created {
                Ok(a) if a.ok() => match (
                    body["session"]["id"].as_str(),
                    body["customer_token"].as_str(),
                ) {
                    (Some(id), Some(t)) => (id.to_owned(), t.to_owned()),
                    _ => return Err(setup_failed("creating a session", created)),
                },
                _ => return Err(setup_failed("creating a session", created)),
            };
            Ok((
                s,
                Live {
                    id,
                    opened_by: lead,
                },
                customer_token,
            ))
        }
    })
    .await;
    let mut opened = Vec::with_capacity(count);
    for result in results {
        opened.push(result?);
    }
    opened.sort_by_key(|(s, _, _)| *s);
    let mut customers = Vec::with_capacity(count);
    {
        let mut sessions = run.sessions.borrow_mut();
        let mut keys = run.session_keys.borrow_mut();
        let mut ledger = run.ledger.borrow_mut();
        for (s, live, token) in opened {
            customers.push((s, run.agents[live.opened_by].login_node + 1, token));
            keys.insert(ledger::key(&live.id), s as u32);
            ledger.opened(s as u32, live.opened_by as u32);
            sessions.push(live);
        }
    }
    for (s, node, token) in customers {
        let body = run
            .nodes
            .open_stream(node, "/v1/customer/events", &token)
            .await
            .map_err(LoadError::Setup)?;
        actix_web::rt::spawn(customer_stream(Rc::clone(run), s, node, token, body));
    }
    Ok(())
}

async fn wait_until_ready(run: &Rc<Run>, progress: &ProgressBar) -> Result<(), LoadError> {
    let want = run.agents.len() + run.args.sessions;
    let deadline = Instant::now() + SETUP_LIMIT;
    while run.counters.ready.get() < want {
        if Instant::now() >= deadline {
            return Err(LoadError::Setup(format!(
                "only {} of {want} streams sent their snapshot",
                run.counters.ready.get()
            )));
        }
        progress.set_message(format!(
            "waiting for snapshots: {}/{want}",
            run.counters.ready.get()
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The fields of the events the generator reads; everything else of a
/// frame is skipped unparsed, and ids are borrowed from the frame.
#[derive(Deserialize)]
struct IdHead<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WithdrawnHead<'a> {
    #[serde(borrow)]
    invitation: Cow<'a, str>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

/// An offer's target: only whether it names a portal matters.
#[derive(Deserialize)]
struct TargetHead<'a> {
    #[serde(borrow, default)]
    portal: Option<Cow<'a, str>>,
}

/// What the generator needs of an `invitation_offered`.
#[derive(Deserialize)]
struct OfferHead<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    target: Option<TargetHead<'a>>,
    #[serde(default)]
    recipient_count: u32,
}

impl OfferHead<'_> {
    /// `Some(recipient_count)` when the offer names a portal.
    fn to_portal(&self) -> Option<u32> {
        self.target
            .as_ref()
            .and_then(|t| t.portal.as_ref())
            .map(|_| self.recipient_count)
    }
}

#[derive(Deserialize)]
struct SummaryHead<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    recipient_count: u32,
}

#[derive(Deserialize)]
struct EscalatedHead<'a> {
    #[serde(borrow)]
    invitation: SummaryHead<'a>,
}

#[derive(Deserialize)]
struct AcceptedHead<'a> {
    #[serde(borrow)]
    invitation: IdHead<'a>,
    #[serde(borrow)]
    by: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ParticipantHead<'a> {
    #[serde(borrow)]
    agent: IdHead<'a>,
    masked: bool,
}

#[derive(Deserialize)]
struct JoinedHead<'a> {
    #[serde(borrow)]
    session: Cow<'a, str>,
    #[serde(borrow)]
    participant: ParticipantHead<'a>,
}

/// What the generator needs of an invitation's 201.
#[derive(Deserialize)]
struct CreatedHead<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    recipients: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    escalation: Option<EscalationHead<'a>>,
}

/// An invitation's escalation: `from` is set once it went to the portal.
#[derive(Deserialize)]
struct EscalationHead<'a> {
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
}

/// Reads agent `i`'s stream until the stop flag, reopening it when the
/// server closes it or its node goes away (a slow client is dropped and
/// resyncs, by design; a dead node's agents come back through another
/// node), after `--reconnect-pause`. Each reopened stream's snapshot is
/// reconciled with what the ledger expected.
async fn agent_stream(run: Rc<Run>, i: usize, mut body: Option<super::client::Body>) {
    let mut first = true;
    let mut node = run.agents[i].stream_node;
    let agent = &run.agents[i];
    loop {
        let current = match body.take() {
            Some(b) => b,
            None => {
                // Reaching out again: from now on the server may rightly
                // take it back (it does as the stream opens, before its
                // snapshot arrives here), so offers are no ghosts.
                agent.down_since.set(None);
                let Some((at, b)) = reopen(
                    &run,
                    "stream",
                    agent.stream_node,
                    "/v1/me/events",
                    &agent.token,
                )
                .await
                else {
                    return;
                };
                node = at;
                b
            }
        };
        let ended = pump_counted(&run, current, |frame, at| {
            on_agent_event(&run, i as u32, frame, at, &mut first)
        })
        .await;
        if ended == StreamEnd::Deadline || *run.stop.borrow() {
            return;
        }
        let now = Instant::now();
        run.ledger.borrow_mut().stream_down(i as u32, now);
        // Cut off by a dead node, or closed by a live one (a slow client,
        // a resync that failed): only the first is the fade's to end.
        if !run.nodes.alive(node).await {
            agent.down_since.set(Some(now));
        }
        bump(&run.counters.drops);
        tokio::time::sleep(run.args.reconnect_pause).await;
    }
}

/// Opens a stream again (through another node when its own is gone),
/// backing off from [`RECONNECT_PAUSE`] to [`RECONNECT_PAUSE_MAX`]; `None`
/// once the run is over.
async fn reopen(
    run: &Run,
    label: &str,
    node: usize,
    path: &str,
    token: &str,
) -> Option<(usize, super::client::Body)> {
    let mut pause = RECONNECT_PAUSE;
    loop {
        match run.nodes.open_stream_at(node, path, token).await {
            Ok(opened) => return Some(opened),
            Err(_) => {
                run.error(label, "reopen failed");
                if *run.stop.borrow() {
                    return None;
                }
                tokio::time::sleep(pause).await;
                pause = backoff(pause);
            }
        }
    }
}

/// The pause after `pause`: twice as long, at most [`RECONNECT_PAUSE_MAX`].
fn backoff(pause: Duration) -> Duration {
    (pause * 2).min(RECONNECT_PAUSE_MAX)
}

/// [`pump`], counting the stream as open meanwhile.
async fn pump_counted(
    run: &Run,
    body: super::client::Body,
    on_event: impl FnMut(&Frame<'_>, Instant),
) -> StreamEnd {
    let open = &run.counters.open_streams;
    open.set(open.get() + 1);
    let ended = pump(body, run.stop.clone(), on_event).await;
    open.set(open.get().saturating_sub(1));
    ended
}

/// What the generator reads of a snapshot: the open offers.
#[derive(Deserialize)]
struct SnapshotHead<'a> {
    #[serde(borrow, default)]
    invitations: Vec<OfferHead<'a>>,
}

fn on_agent_event(run: &Rc<Run>, me: u32, frame: &Frame<'_>, at: Instant, first: &mut bool) {
    match frame.name.as_ref() {
        "snapshot" if *first => {
            *first = false;
            bump(&run.counters.ready);
        }
        // A reopened stream: what it missed meanwhile, from the truth.
        "snapshot" => {
            run.agents[me as usize].down_since.set(None);
            match serde_json::from_str::<SnapshotHead<'_>>(&frame.data) {
                Ok(snap) => {
                    let offers: Vec<(&str, Option<u32>)> = snap
                        .invitations
                        .iter()
                        .map(|o| (o.id.as_ref(), o.to_portal()))
                        .collect();
                    run.ledger.borrow_mut().reconciled(me, &offers, at);
                    dispatch(run);
                }
                Err(_) => run.error("stream", "unreadable snapshot"),
            }
        }
        "invitation_offered" => {
            bump(&run.counters.alerts);
            match serde_json::from_str::<OfferHead<'_>>(&frame.data) {
                Ok(offer) => {
                    run.ledger
                        .borrow_mut()
                        .offered(&offer.id, me, at, offer.to_portal());
                    dispatch(run);
                }
                Err(_) => run.error("stream", "unreadable invitation_offered"),
            }
        }
        "invitation_withdrawn" => {
            bump(&run.counters.withdrawals);
            match serde_json::from_str::<WithdrawnHead<'_>>(&frame.data) {
                Ok(w) => {
                    let cancelled = w.reason.as_deref() == Some("cancelled");
                    run.ledger
                        .borrow_mut()
                        .withdrawn_for(&w.invitation, me, at, cancelled);
                }
                Err(_) => run.error("stream", "unreadable invitation_withdrawn"),
            }
        }
        // To the session's agents: the same invitation now goes to a portal.
        "invitation_escalated" => match serde_json::from_str::<EscalatedHead<'_>>(&frame.data) {
            Ok(e) => {
                run.ledger
                    .borrow_mut()
                    .escalated(&e.invitation.id, e.invitation.recipient_count);
                dispatch(run);
            }
            Err(_) => run.error("stream", "unreadable invitation_escalated"),
        },
        "invitation_accepted" => match serde_json::from_str::<AcceptedHead<'_>>(&frame.data) {
            Ok(a) => {
                let by = a.by.as_deref().and_then(|by| run.agent_index(by));
                run.ledger.borrow_mut().announced(&a.invitation.id, by);
                dispatch(run);
            }
            Err(_) => run.error("stream", "unreadable invitation_accepted"),
        },
        "participant_joined" => match serde_json::from_str::<JoinedHead<'_>>(&frame.data) {
            // Only its own join tells an agent something.
            Ok(j) if j.participant.agent.id == run.agents[me as usize].id => {
                if let Some(session) = run.session_index(&j.session) {
                    run.ledger
                        .borrow_mut()
                        .joined(me, session, j.participant.masked, at);
                    dispatch(run);
                }
            }
            Ok(_) => {}
            Err(_) => run.error("stream", "unreadable participant_joined"),
        },
        _ => {}
    }
}

/// Reads session `s`'s customer stream; every frame is checked for leaks
/// as it arrives and only counts are kept. A stream the server closed or
/// lost is reopened (through another node when its node is gone).
async fn customer_stream(
    run: Rc<Run>,
    s: usize,
    node: usize,
    token: String,
    body: super::client::Body,
) {
    let mut first = true;
    let mut body = Some(body);
    loop {
        let current = match body.take() {
            Some(b) => b,
            None => {
                match reopen(&run, "customer stream", node, "/v1/customer/events", &token).await {
                    Some((_, b)) => b,
                    None => return,
                }
            }
        };
        let ended = pump_counted(&run, current, |frame, _| {
            if first && frame.name == "snapshot" {
                first = false;
                bump(&run.counters.ready);
            }
            run.ledger
                .borrow_mut()
                .customer_frame(s as u32, &frame.name, &frame.data);
        })
        .await;
        if ended == StreamEnd::Deadline || *run.stop.borrow() {
            return;
        }
        bump(&run.counters.drops);
        tokio::time::sleep(run.args.reconnect_pause).await;
    }
}

/// How long an escalating invitation waits for its invitee: the least the
/// API allows (the invitee declines at once anyway).
const ESCALATE_AFTER_SECS: u64 = 5;

/// The lead agent of session `s` of `sessions`: sessions go round the
/// portals (so over the accounts too), and each portal's leads are spread
/// evenly over its agents (agent `i` is in portal `i mod portals`, on node
/// `i mod nodes`). Distinct for distinct sessions, as `agents > sessions`.
/// A stride over all agents instead (`s * agents / sessions`) put every
/// lead in one portal whenever the stride was a multiple of `portals`
/// (1,000 agents, 50 sessions, 10 or 30 portals), hence every session in
/// one account of a multi-account run.
fn lead_of(s: usize, sessions: usize, agents: usize, portals: usize) -> usize {
    let portals = portals.max(1);
    let (p, j) = (s % portals, s / portals);
    // Sessions led from portal p, and agents in it.
    let led = sessions / portals + usize::from(p < sessions % portals);
    let members = (agents + portals - 1 - p) / portals;
    p + portals * (j * (members / led.max(1)).max(1))
}

/// The account (index) portal `p` belongs to, of `accounts`.
fn account_of_portal(p: usize, accounts: usize) -> usize {
    p % accounts.max(1)
}

/// What [`invite`] decided to send.
struct Plan {
    session: u32,
    lead: usize,
    session_id: String,
    masked: bool,
    body: Value,
    direct: Option<u32>,
    transfer: bool,
    escalate: bool,
}

/// Draws invitation `k`: a random session, from its current lead; a
/// transfer if the mix says so and none of that session is open; to a
/// portal or one agent; a direct one may escalate to another portal.
fn plan_invitation(run: &Run, k: u64) -> Plan {
    let mut rng = rand::rng();
    let sessions = run.sessions.borrow();
    let s = rng.random_range(0..sessions.len());
    let session = s as u32;
    let mix = run.args.mix;
    let lead = run.lead(session);
    // Everything stays inside the session's account (its first lead's;
    // a transfer's winner is of the same account).
    let account = run.agents[sessions[s].opened_by].account;
    let own_portals = &run.account_portals[account];
    let own_agents = &run.account_agents[account];
    let transfer = rng.random_bool(mix.transfer) && run.ledger.borrow_mut().begin_transfer(session);
    let mut direct = None;
    let mut escalate = None;
    let target = if rng.random_bool(mix.portal) {
        let p = own_portals[rng.random_range(0..own_portals.len())];
        json!({"portal": run.portals[p]})
    } else {
        // Anyone of the account but the lead, and not an agent the run
        // knows to be in (or joining) the session: that one would rightly
        // be refused.
        let pick = |rng: &mut rand::rngs::ThreadRng| {
            own_agents[rng.random_range(0..own_agents.len())] as usize
        };
        let mut agent = pick(&mut rng);
        for _ in 0..own_agents.len() {
            if agent != lead && !run.inside(agent as u32, session) {
                break;
            }
            agent = pick(&mut rng);
        }
        if agent == lead {
            // Every draw hit the lead: anyone else of the account.
            agent = own_agents
                .iter()
                .map(|a| *a as usize)
                .find(|a| *a != lead)
                .unwrap_or(agent);
        }
        direct = Some(agent as u32);
        if rng.random_bool(mix.escalate) {
            // Another portal of the account than the invitee's, when there
            // is one, so other agents take it over.
            let own = run.agents[agent].portal;
            let others: Vec<usize> = own_portals.iter().copied().filter(|p| *p != own).collect();
            let portal = if others.is_empty() {
                own
            } else {
                others[rng.random_range(0..others.len())]
            };
            escalate =
                Some(json!({"after_secs": ESCALATE_AFTER_SECS, "portal": run.portals[portal]}));
        }
        json!({"agent": run.agent_id(agent)})
    };
    // A transfer is never masked: its winner is the customer's agent.
    let masked = !transfer && rng.random_bool(mix.masked);
    let mut body = json!({"target": target, "masked": masked});
    if rng.random_bool(mix.comment) {
        // The marker is what the customer leak check looks for.
        body["comment"] = json!(format!("note {} #{k}", run.prefix));
    }
    if transfer {
        body["kind"] = json!("transfer");
    }
    let escalates = escalate.is_some();
    if let Some(escalate) = escalate {
        body["escalate"] = escalate;
    }
    Plan {
        session,
        lead,
        session_id: sessions[s].id.clone(),
        masked,
        body,
        direct,
        transfer,
        escalate: escalates,
    }
}

/// Sends invitation `k` as [`plan_invitation`] drew it.
async fn invite(run: Rc<Run>, k: u64) {
    let plan = plan_invitation(&run, k);
    let Plan { session, lead, .. } = plan;
    let agent = &run.agents[lead];
    bump(&run.counters.sent);
    if plan.transfer {
        bump(&run.counters.transfers);
    }
    if plan.escalate {
        bump(&run.counters.escalations);
    }
    let sent_at = Instant::now();
    run.timeline.borrow_mut().sent(sent_at);
    // The key makes a resend to another node safe (API.md: a retry with the
    // same key answers the first result).
    let key = format!("{}-inv{k}", run.prefix);
    let answer = run
        .call_with(
            "invite",
            agent.login_node,
            Method::POST,
            &format!("/v1/sessions/{}/invitations", plan.session_id),
            &agent.token,
            Some(&plan.body),
            Some(&key),
        )
        .await;
    let answered_at = Instant::now();
    let created = answer.as_ref().filter(|a| a.status == 201);
    if plan.transfer && created.is_none() {
        run.ledger.borrow_mut().transfer_not_created(session);
    }
    let Some(answer) = answer else {
        return;
    };
    if answer.status != 201 {
        let code = answer.code();
        // The invitee joined this session meanwhile (it won another
        // invitation, or a transfer): a right refusal, not an error.
        let joined_meanwhile = code.as_deref() == Some("already_participant")
            && plan.direct.is_some_and(|agent| run.inside(agent, session));
        // The lead handed the session over meanwhile (or is doing so): it
        // may no longer invite. Right too, and counted.
        let stale_lead = answer.status == 403
            && code.as_deref() == Some("forbidden")
            && (run.lead(session) != lead
                || (!plan.transfer && run.ledger.borrow().transfer_open(session)));
        if stale_lead {
            bump(&run.counters.stale_lead);
        } else if !joined_meanwhile {
            run.error("invite", &answer.error_key());
        }
        return;
    }
    let Some(created) = answer.json::<CreatedHead<'_>>() else {
        run.error("invite", "201 without id or recipients");
        if plan.transfer {
            // Never followed, so it must not keep the session from others.
            run.ledger.borrow_mut().transfer_not_created(session);
        }
        return;
    };
    let recipients: Vec<u32> = created
        .recipients
        .iter()
        .filter_map(|r| run.agent_index(r))
        .collect();
    let escalation = match &created.escalation {
        Some(e) if plan.escalate && e.from.is_some() => ledger::Escalation::AtSend,
        _ if plan.escalate => ledger::Escalation::Armed,
        _ => ledger::Escalation::None,
    };
    let kind = ledger::Kind {
        transfer: plan.transfer,
        escalation,
    };
    bump(&run.counters.created);
    run.timeline.borrow_mut().created(sent_at, answered_at);
    count_offers_while_down(&run, &recipients, sent_at);
    run.ledger.borrow_mut().invited(
        &created.id,
        session,
        plan.masked,
        sent_at,
        answered_at,
        recipients,
        kind,
    );
    dispatch(&run);
}

/// Recipients of a new invitation whose stream is down: sent within the
/// fade bound a node's death allows, or past it (a ghost offer: the server
/// still took a dead node's agent for reachable). Judged by when the POST
/// left, so its own round trip does not count against the server.
fn count_offers_while_down(run: &Run, recipients: &[u32], at: Instant) {
    for r in recipients {
        let Some(since) = run.agents.get(*r as usize).and_then(|a| a.down_since.get()) else {
            continue;
        };
        if at.saturating_duration_since(since) > run.args.fade_bound {
            bump(&run.counters.ghost_offers);
            run.timeline.borrow_mut().ghost_offer(at);
        } else {
            bump(&run.counters.offers_while_down);
        }
    }
}

/// The invitee of an escalating invitation declines it, so it goes to the
/// portal at once.
async fn decline(run: Rc<Run>, plan: AcceptPlan) {
    tokio::time::sleep_until(plan.at).await;
    let agent = &run.agents[plan.agent as usize];
    let path = format!("/v1/invitations/{}/decline", plan.id);
    run.post_as("decline", agent, &path).await;
}

/// An accept as the ledger planned it; a winner leaves again at once so
/// sessions never fill up and it stays free for the next race — unless it
/// won a transfer. A planned decline is sent instead when the plan says so.
async fn accept(run: Rc<Run>, plan: AcceptPlan) {
    if plan.decline {
        return decline(run, plan).await;
    }
    // Too close to the end to be answered: not sent, so no outcome is left
    // in doubt by the run's own deadline.
    if plan.at + run.args.grace / 4 > run.end.get() {
        run.ledger
            .borrow_mut()
            .dropped(plan.key, plan.agent, plan.session);
        return;
    }
    tokio::time::sleep_until(plan.at).await;
    let agent = &run.agents[plan.agent as usize];
    let path = format!("/v1/invitations/{}/accept", plan.id);
    run.enter(plan.agent, plan.session);
    let sent_at = Instant::now();
    let answer = run.call_as("accept", agent, Method::POST, &path).await;
    let answered_at = Instant::now();
    // Another accept of this agent into this session is in flight, or it
    // joined and is still leaving, or it leads the session now (it won a
    // transfer of it).
    let busy_elsewhere = run
        .in_session
        .borrow()
        .get(&(plan.agent, plan.session))
        .is_some_and(|n| *n > 1)
        || run.lead(plan.session) == plan.agent as usize;
    let reply = match &answer {
        // Unanswered: it may have won. Not a refusal; the ledger learns
        // the outcome from the streams or a lookup.
        None => Reply::Lost,
        Some(a) if a.ok() => Reply::Won,
        // 503 `unavailable`: the change may or may not persist (API v2), so
        // the answer tells nothing either.
        Some(a) if a.status == 503 => {
            run.error("accept", &a.error_key());
            Reply::Lost
        }
        Some(a) if a.code().as_deref() == Some("invitation_taken") => Reply::Taken,
        // The agent joined this session through another invitation a
        // moment ago and is still leaving it: a right refusal, not an error.
        Some(a) if a.code().as_deref() == Some("already_participant") && busy_elsewhere => {
            Reply::Refused
        }
        Some(a) => {
            run.error("accept", &a.error_key());
            Reply::Refused
        }
    };
    if reply == Reply::Won && run.args.read_back {
        let mut acknowledged = run.acknowledged.borrow_mut();
        if acknowledged.len() < MAX_READ_BACK {
            acknowledged.push((Rc::clone(&plan.id), plan.session, plan.agent));
        }
    }
    run.ledger.borrow_mut().replied(
        plan.key,
        plan.agent,
        plan.session,
        sent_at,
        answered_at,
        reply,
    );
    dispatch(&run);
    // A transfer's winner stays: it leads the session now (the ledger made
    // it lead as it judged the reply).
    if reply == Reply::Won && !plan.transfer {
        leave_now(&run, plan.agent, plan.session).await;
    }
    run.exit(plan.agent, plan.session);
}

/// Agent `agent` leaves session `session` (a winner learned after the fact).
async fn leave(run: Rc<Run>, agent: u32, session: u32) {
    run.enter(agent, session);
    leave_now(&run, agent, session).await;
    run.exit(agent, session);
}

/// Agent `agent` leaves session `session`.
async fn leave_now(run: &Run, agent: u32, session: u32) {
    let Some(id) = run
        .sessions
        .borrow()
        .get(session as usize)
        .map(|s| s.id.clone())
    else {
        return;
    };
    let agent = &run.agents[agent as usize];
    run.post_as("leave", agent, &format!("/v1/sessions/{id}/leave"))
        .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn leads_are_distinct_agents_spread_over_every_portal() {
        for (sessions, agents, portals) in [
            (50, 1000, 10),
            (50, 1000, 30),
            (250, 1000, 10),
            (10, 11, 10),
            (59, 60, 30),
            (7, 8, 1),
        ] {
            let leads: Vec<usize> = (0..sessions)
                .map(|s| super::lead_of(s, sessions, agents, portals))
                .collect();
            let distinct: std::collections::HashSet<_> = leads.iter().collect();
            assert_eq!(distinct.len(), sessions, "{sessions} {agents} {portals}");
            assert!(leads.iter().all(|l| *l < agents));
            let mut per_portal = vec![0; portals];
            for l in &leads {
                per_portal[l % portals] += 1;
            }
            let (least, most) = (per_portal.iter().min(), per_portal.iter().max());
            assert!(
                most.zip(least).is_some_and(|(m, l)| m - l <= 1),
                "{per_portal:?}"
            );
        }
        // Within a portal, spread over its agents (not its first few).
        assert_eq!(super::lead_of(10, 50, 1000, 10), 10 * 20);
    }

    use super::*;

    #[test]
    fn a_stream_reopen_backs_off_to_two_seconds() {
        let mut pause = RECONNECT_PAUSE;
        let mut seen = vec![pause.as_millis()];
        for _ in 0..7 {
            pause = backoff(pause);
            seen.push(pause.as_millis());
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn event_heads_read_only_what_they_need_and_borrow_ids() {
        let offer = r#"{"id":"inv-1-2","session":"ses-1","inviter":{"id":"ld-ag0","name":"Agent 0"},
            "target":{"portal":"p"},"masked":false,"comment":null,"recipient_count":3,
            "customer":{"name":"C"},"mode":"web"}"#;
        let head: IdHead<'_> = serde_json::from_str(offer).unwrap();
        assert!(matches!(head.id, Cow::Borrowed("inv-1-2")));
        let accepted = r#"{"session":"ses-1","invitation":{"id":"inv-1-2","recipient_count":3},"by":"ld-ag4"}"#;
        let head: AcceptedHead<'_> = serde_json::from_str(accepted).unwrap();
        assert_eq!(
            (&*head.invitation.id, head.by.as_deref()),
            ("inv-1-2", Some("ld-ag4"))
        );
        let joined = r#"{"session":"ses-1","participant":{"agent":{"id":"ld-ag4","name":"Agent 4"},
            "role":"collaborator","masked":true,"joined_at":"2024-01-01T00:00:00Z"}}"#;
        let head: JoinedHead<'_> = serde_json::from_str(joined).unwrap();
        assert_eq!(
            (&*head.session, &*head.participant.agent.id),
            ("ses-1", "ld-ag4")
        );
        assert!(head.participant.masked);
        let withdrawn =
            r#"{"invitation":"inv-1-2","session":"ses-1","reason":"accepted_by_other"}"#;
        let head: WithdrawnHead<'_> = serde_json::from_str(withdrawn).unwrap();
        assert!(matches!(head.invitation, Cow::Borrowed("inv-1-2")));
        assert_eq!(head.reason.as_deref(), Some("accepted_by_other"));
    }

    #[test]
    fn escalation_and_transfer_heads_read_targets_counts_and_leads() {
        let direct =
            r#"{"id":"inv-1-3","target":{"agent":"ld-ag3"},"recipient_count":1,"kind":"transfer"}"#;
        let head: OfferHead<'_> = serde_json::from_str(direct).unwrap();
        assert_eq!(head.to_portal(), None);
        let escalated = r#"{"id":"inv-1-3","target":{"portal":"ld-p2"},"recipient_count":4}"#;
        let head: OfferHead<'_> = serde_json::from_str(escalated).unwrap();
        assert_eq!((&*head.id, head.to_portal()), ("inv-1-3", Some(4)));
        let event = r#"{"session":"ses-1","portal":"ld-p2","invitation":{"id":"inv-1-3",
            "target":{"portal":"ld-p2"},"recipient_count":4,
            "escalation":{"portal":"ld-p2","at":"2024-01-01T00:00:05Z","from":"ld-ag3"}}}"#;
        let head: EscalatedHead<'_> = serde_json::from_str(event).unwrap();
        assert_eq!(
            (&*head.invitation.id, head.invitation.recipient_count),
            ("inv-1-3", 4)
        );
        let created = r#"{"id":"inv-1-3","recipients":["ld-ag7"],
            "escalation":{"portal":"ld-p2","at":"2024-01-01T00:00:00Z","from":"ld-ag3"}}"#;
        let head: CreatedHead<'_> = serde_json::from_str(created).unwrap();
        assert_eq!(
            head.escalation.and_then(|e| e.from).as_deref(),
            Some("ld-ag3")
        );
        let plain: CreatedHead<'_> =
            serde_json::from_str(r#"{"id":"inv-1-4","recipients":[],"escalation":null}"#).unwrap();
        assert!(plain.escalation.is_none());
        let view = r#"{"id":"ses-1","lead":"ld-ag7","participants":[
            {"agent":{"id":"ld-ag7","name":"Agent 7"},"role":"lead","masked":false}]}"#;
        let view: SessionView<'_> = serde_json::from_str(view).unwrap();
        assert_eq!(view.lead.as_deref(), Some("ld-ag7"));
        assert_eq!(&*view.participants[0].role, "lead");
    }
}
