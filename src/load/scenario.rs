//! The run itself: provision an account of its own, log the agents in,
//! hold their streams, open the sessions, send invitations on schedule,
//! let recipients race to accept, and judge every outcome at the end.
//!
//! Everything runs on one actix (current-thread) system. Nothing here
//! waits on anything else on the measuring path: stream readers are tasks
//! of their own that timestamp events as their bytes arrive and only append
//! to the ledger; each invitation and each accept is a task of its own;
//! judging happens once, after the drain.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
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
use super::report::Observed;
use super::{LoadArgs, LoadError};

/// Set-up requests in flight at once: enough to provision a thousand agents
/// in seconds, few enough not to look like the load being measured.
const SETUP_CONCURRENCY: usize = 32;
/// How long set-up may take in all before the run is given up.
const SETUP_LIMIT: Duration = Duration::from_secs(120);
/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);
/// Pause before reopening a stream the server closed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The account's invitation TTL: far longer than any run's accept delay,
/// so expiry never decides a race.
const INVITATION_TTL_SECS: u64 = 120;
/// How long ending the sessions and logging the agents out may take.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);

/// One provisioned agent.
struct Agent {
    id: String,
    token: String,
    portal: usize,
    /// Where it logged in, accepts and leaves.
    login_node: usize,
    /// Where its event stream is held: another node when there is one, so
    /// every alert crosses the backplane.
    stream_node: usize,
}

/// One live session.
struct Live {
    id: String,
    lead: usize,
}

/// An invitation the server created.
struct Sent {
    session: usize,
    sent_at: Instant,
    recipients: Vec<usize>,
    masked: bool,
}

/// One accept and its answer.
struct Attempt {
    agent: usize,
    sent_at: Instant,
    answered_at: Instant,
    status: u16,
    code: Option<String>,
}

/// What the streams and the answers showed, appended as it happens and
/// judged at the end.
#[derive(Default)]
struct Ledger {
    invitations: HashMap<String, Sent>,
    alerts: HashMap<String, Vec<(usize, Instant)>>,
    withdrawals: HashMap<String, Vec<(usize, Instant)>>,
    attempts: HashMap<String, Vec<Attempt>>,
    /// Winners named by `invitation_accepted` on the session agents' streams.
    announced: HashMap<String, HashSet<String>>,
    /// Every event of every customer stream, by session.
    customer: Vec<(usize, Frame)>,
    /// Invitation POST round trips.
    invite_rtt: Vec<Duration>,
}

/// Live figures for the progress bar.
#[derive(Default)]
struct Counters {
    ready: Cell<usize>,
    sent: Cell<u64>,
    created: Cell<u64>,
    alerts: Cell<u64>,
    drops: Cell<u64>,
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
    portals: Vec<String>,
    args: LoadArgs,
    /// Flips to true when every reader must stop.
    stop: watch::Receiver<bool>,
    /// No accept starts after this, so each finishes before judging.
    accept_cutoff: Cell<Instant>,
    /// Nothing is awaited past this.
    end: Cell<Instant>,
    ledger: RefCell<Ledger>,
    errors: RefCell<std::collections::BTreeMap<String, u64>>,
    counters: Counters,
}

impl Run {
    fn agent_id(&self, i: usize) -> String {
        format!("{}-ag{i}", self.prefix)
    }

    /// The index of one of our agents from its id.
    fn agent_index(&self, id: &str) -> Option<usize> {
        id.strip_prefix(&self.prefix)?
            .strip_prefix("-ag")?
            .parse()
            .ok()
            .filter(|i| *i < self.agents.len())
    }

    fn error(&self, call: &str, what: &str) {
        *self
            .errors
            .borrow_mut()
            .entry(format!("{call} {what}"))
            .or_default() += 1;
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
        let sent = self.nodes.call(node, method, path, token, body);
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
    let prefix = format!("ld{:08x}", rand::random::<u32>());
    let nodes = Nodes::new(&args.nodes);
    let n = nodes.len();
    let (stop_tx, stop) = watch::channel(false);
    let agents = (0..args.agents)
        .map(|i| Agent {
            id: format!("{prefix}-ag{i}"),
            token: String::new(),
            portal: i % args.portals,
            login_node: i % n,
            stream_node: (i + 1) % n,
        })
        .collect();
    let mut run = Run {
        nodes,
        prefix: prefix.clone(),
        agents,
        sessions: RefCell::new(Vec::new()),
        portals: (0..args.portals)
            .map(|p| format!("{prefix}-p{p}"))
            .collect(),
        args: args.clone(),
        stop,
        accept_cutoff: Cell::new(began + SETUP_LIMIT),
        end: Cell::new(began + SETUP_LIMIT),
        ledger: RefCell::new(Ledger::default()),
        errors: RefCell::new(Default::default()),
        counters: Counters::default(),
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
    let start = Instant::now();
    let schedule_end = start + args.duration;
    let end = schedule_end + args.grace;
    run.end.set(end);
    run.accept_cutoff.set(schedule_end + args.grace / 2);
    let expected = (args.rate * args.duration.as_secs_f64()).ceil() as u64;
    progress.set_length(expected);
    progress.set_style(bar_style());
    let ticker = actix_web::rt::spawn(show_progress(Rc::clone(&run), progress.clone()));
    let mut lag = super::report::Latency::new()?;
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
    let _ = stop_tx.send(true);
    ticker.abort();
    progress.finish_and_clear();
    // Readers see the stop flag at their next poll; give them one turn.
    tokio::task::yield_now().await;

    let mut observed = judge(&run)?;
    observed.setup = setup;
    observed.sending = sending;
    observed.stream_drops = run.counters.drops.get();
    observed.schedule_lag = lag;
    progress.set_message("cleaning up");
    clean_up(&run).await;
    observed.errors = run.errors.borrow().clone();
    Ok(observed)
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
        .map(|s| (s.id.clone(), s.lead))
        .collect();
    for_each(sessions.len(), |s| {
        let (id, lead) = &sessions[s];
        let agent = &run.agents[*lead];
        let path = format!("/v1/sessions/{id}/end");
        async move {
            if let Some(a) = run
                .call(
                    "cleanup end",
                    agent.login_node,
                    Method::POST,
                    &path,
                    &agent.token,
                    None,
                )
                .await
                && !a.ok()
            {
                run.error("cleanup end", &a.error_key());
            }
        }
    })
    .await;
    for_each(run.agents.len(), |i| {
        let agent = &run.agents[i];
        async move {
            if let Some(a) = run
                .call(
                    "cleanup logout",
                    agent.login_node,
                    Method::POST,
                    "/v1/me/logout",
                    &agent.token,
                    None,
                )
                .await
                && !a.ok()
            {
                run.error("cleanup logout", &a.error_key());
            }
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
        bar.set_position(c.sent.get());
        bar.set_message(format!(
            "created {}  alerts {}  errors {}  drops {}",
            c.created.get(),
            c.alerts.get(),
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
        Ok(a) => LoadError::Setup(format!("{what}: HTTP {} {}", a.status, a.body)),
        Err(e) => LoadError::Setup(format!("{what}: {e}")),
    }
}

/// The account, its portals, its agents and their tokens.
async fn provision(run: &mut Run) -> Result<(), LoadError> {
    let admin = run.args.admin_token.clone();
    let nodes = &run.nodes;
    let policy = json!({"name": format!("collabd load {}", run.prefix),
        "policy": {"invitation_ttl_secs": INVITATION_TTL_SECS}});
    let put = nodes
        .call(
            0,
            Method::PUT,
            &format!("/v1/accounts/{}", run.prefix),
            &admin,
            Some(&policy),
        )
        .await;
    if !matches!(&put, Ok(a) if a.ok()) {
        return Err(setup_failed("creating the account", put));
    }
    let account = run.prefix.clone();
    let portals = &run.portals;
    let results = for_each(portals.len(), |p| {
        let path = format!("/v1/accounts/{account}/portals/{}", portals[p]);
        let body = json!({"name": format!("Portal {p}")});
        let admin = &admin;
        async move { nodes.call(p, Method::PUT, &path, admin, Some(&body)).await }
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
        let account = &account;
        let portal = &portals[agent.portal];
        async move {
            let path = format!("/v1/accounts/{account}/agents/{}", agent.id);
            let body = json!({"name": format!("Agent {i}"), "portals": [portal]});
            let put = nodes.call(i, Method::PUT, &path, admin, Some(&body)).await;
            if !matches!(&put, Ok(a) if a.ok()) {
                return Err(setup_failed("creating an agent", put));
            }
            let minted = nodes
                .call(
                    i,
                    Method::POST,
                    &format!("{path}/tokens"),
                    admin,
                    Some(&json!({})),
                )
                .await;
            match &minted {
                Ok(a) if a.ok() => match a.body["token"].as_str() {
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
                .call(
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
            // Leads spread evenly over agents, hence over portals and nodes.
            let lead = s * run.agents.len() / count;
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
            let (id, customer_token) = match &created {
                Ok(a) if a.ok() => match (
                    a.body["session"]["id"].as_str(),
                    a.body["customer_token"].as_str(),
                ) {
                    (Some(id), Some(t)) => (id.to_owned(), t.to_owned()),
                    _ => return Err(setup_failed("creating a session", created)),
                },
                _ => return Err(setup_failed("creating a session", created)),
            };
            Ok((s, Live { id, lead }, customer_token))
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
        for (s, live, token) in opened {
            customers.push((s, run.agents[live.lead].login_node + 1, token));
            sessions.push(live);
        }
    }
    for (s, node, token) in customers {
        let body = run
            .nodes
            .open_stream(node, "/v1/customer/events", &token)
            .await
            .map_err(LoadError::Setup)?;
        actix_web::rt::spawn(customer_stream(Rc::clone(run), s, body));
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

/// The fields of an alert the generator needs. The recipient list is
/// borrowed from the frame: a portal alert names every recipient, so owning
/// copies would cost O(recipients²) allocations per invitation.
#[derive(Deserialize)]
struct OfferHead<'a> {
    id: String,
    session: String,
    #[serde(borrow)]
    recipients: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WithdrawnHead {
    invitation: String,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct AcceptedHead {
    invitation: IdOnly,
    by: Option<String>,
}

/// Reads agent `i`'s stream until the stop flag, reopening it when the
/// server closes it (a slow client is dropped and resyncs, by design).
async fn agent_stream(run: Rc<Run>, i: usize, mut body: Option<super::client::Body>) {
    let mut first = true;
    loop {
        let current = match body.take() {
            Some(b) => b,
            None => {
                let agent = &run.agents[i];
                match run
                    .nodes
                    .open_stream(agent.stream_node, "/v1/me/events", &agent.token)
                    .await
                {
                    Ok(b) => b,
                    Err(_) => {
                        run.error("stream", "reopen failed");
                        if *run.stop.borrow() {
                            return;
                        }
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                }
            }
        };
        let ended = pump(current, run.stop.clone(), |frame, at| {
            on_agent_event(&run, i, frame, at, &mut first)
        })
        .await;
        if ended == StreamEnd::Deadline || *run.stop.borrow() {
            return;
        }
        bump(&run.counters.drops);
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

fn on_agent_event(run: &Rc<Run>, me: usize, frame: Frame, at: Instant, first: &mut bool) {
    match frame.name.as_str() {
        "snapshot" if *first => {
            *first = false;
            bump(&run.counters.ready);
        }
        "invitation_offered" => {
            let Ok(offer) = serde_json::from_str::<OfferHead>(&frame.data) else {
                run.error("stream", "unreadable invitation_offered");
                return;
            };
            bump(&run.counters.alerts);
            run.ledger
                .borrow_mut()
                .alerts
                .entry(offer.id.clone())
                .or_default()
                .push((me, at));
            let my_id = &run.agents[me].id;
            if is_racer(&offer.id, &offer.recipients, my_id, run.args.racers)
                && at < run.accept_cutoff.get()
            {
                actix_web::rt::spawn(accept(Rc::clone(run), me, offer.id, offer.session));
            }
        }
        "invitation_withdrawn" => {
            if let Ok(w) = serde_json::from_str::<WithdrawnHead>(&frame.data) {
                run.ledger
                    .borrow_mut()
                    .withdrawals
                    .entry(w.invitation)
                    .or_default()
                    .push((me, at));
            }
        }
        "invitation_accepted" => {
            if let Ok(a) = serde_json::from_str::<AcceptedHead>(&frame.data)
                && let Some(by) = a.by
            {
                run.ledger
                    .borrow_mut()
                    .announced
                    .entry(a.invitation.id)
                    .or_default()
                    .insert(by);
            }
        }
        _ => {}
    }
}

/// Whether `me` is one of the `racers` recipients who try to accept:
/// a window of consecutive recipients starting at a position drawn from the
/// invitation id, so every reader reaches the same verdict on its own.
fn is_racer<S: AsRef<str>>(invitation: &str, recipients: &[S], me: &str, racers: usize) -> bool {
    let n = recipients.len();
    let Some(position) = recipients.iter().position(|r| r.as_ref() == me) else {
        return false;
    };
    let mut hasher = DefaultHasher::new();
    invitation.hash(&mut hasher);
    let offset = (hasher.finish() % n as u64) as usize;
    (position + n - offset) % n < racers
}

async fn customer_stream(run: Rc<Run>, s: usize, body: super::client::Body) {
    let mut first = true;
    let ended = pump(body, run.stop.clone(), |frame, _| {
        if first && frame.name == "snapshot" {
            first = false;
            bump(&run.counters.ready);
        }
        run.ledger.borrow_mut().customer.push((s, frame));
    })
    .await;
    if ended == StreamEnd::Closed && !*run.stop.borrow() {
        // A customer stream is not reopened: what it would have shown is
        // lost to the leak check, so the drop is reported.
        bump(&run.counters.drops);
    }
}

/// Sends invitation `k`: from a random session's lead to a portal or to one agent.
async fn invite(run: Rc<Run>, k: u64) {
    let (session, lead, session_id, body) = {
        let mut rng = rand::rng();
        let sessions = run.sessions.borrow();
        let s = rng.random_range(0..sessions.len());
        let live = &sessions[s];
        let mix = run.args.mix;
        let target = if rng.random_bool(mix.portal) {
            json!({"portal": run.portals[rng.random_range(0..run.portals.len())]})
        } else {
            // Anyone but the lead; a present participant is refused, and counted.
            let mut agent = rng.random_range(0..run.agents.len() - 1);
            if agent >= live.lead {
                agent += 1;
            }
            json!({"agent": run.agent_id(agent)})
        };
        let masked = rng.random_bool(mix.masked);
        let mut body = json!({"target": target, "masked": masked});
        if rng.random_bool(mix.comment) {
            // The marker is what the customer leak check looks for.
            body["comment"] = json!(format!("note {} #{k}", run.prefix));
        }
        (s, live.lead, live.id.clone(), body)
    };
    let agent = &run.agents[lead];
    bump(&run.counters.sent);
    let sent_at = Instant::now();
    let Some(answer) = run
        .call(
            "invite",
            agent.login_node,
            Method::POST,
            &format!("/v1/sessions/{session_id}/invitations"),
            &agent.token,
            Some(&body),
        )
        .await
    else {
        return;
    };
    let rtt = sent_at.elapsed();
    if answer.status != 201 {
        run.error("invite", &answer.error_key());
        return;
    }
    let (Some(id), Some(recipients)) = (
        answer.body["id"].as_str(),
        answer.body["recipients"].as_array(),
    ) else {
        run.error("invite", "201 without id or recipients");
        return;
    };
    let recipients = recipients
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|r| run.agent_index(r))
        .collect();
    bump(&run.counters.created);
    let mut ledger = run.ledger.borrow_mut();
    ledger.invite_rtt.push(rtt);
    ledger.invitations.insert(
        id.to_owned(),
        Sent {
            session,
            sent_at,
            recipients,
            masked: body["masked"].as_bool().unwrap_or(false),
        },
    );
}

/// Agent `me` accepts after its delay; a winner leaves again at once so
/// sessions never fill up and it stays free for the next race.
async fn accept(run: Rc<Run>, me: usize, invitation: String, session: String) {
    let delay = run.args.accept_delay.sample(&mut rand::rng());
    tokio::time::sleep(delay).await;
    let agent = &run.agents[me];
    let sent_at = Instant::now();
    let Some(answer) = run
        .call(
            "accept",
            agent.login_node,
            Method::POST,
            &format!("/v1/invitations/{invitation}/accept"),
            &agent.token,
            None,
        )
        .await
    else {
        // Unanswered: it may have won, so the race cannot be judged as
        // "nobody won" (status 0 is no refusal).
        run.ledger
            .borrow_mut()
            .attempts
            .entry(invitation)
            .or_default()
            .push(Attempt {
                agent: me,
                sent_at,
                answered_at: sent_at,
                status: 0,
                code: None,
            });
        return;
    };
    let answered_at = Instant::now();
    let taken = answer.code() == Some("invitation_taken");
    if !answer.ok() && !taken {
        run.error("accept", &answer.error_key());
    }
    run.ledger
        .borrow_mut()
        .attempts
        .entry(invitation)
        .or_default()
        .push(Attempt {
            agent: me,
            sent_at,
            answered_at,
            status: answer.status,
            code: answer.code().map(str::to_owned),
        });
    if answer.ok()
        && let Some(left) = run
            .call(
                "leave",
                agent.login_node,
                Method::POST,
                &format!("/v1/sessions/{session}/leave"),
                &agent.token,
                None,
            )
            .await
        && !left.ok()
    {
        run.error("leave", &left.error_key());
    }
}

/// Turns the ledger into figures and invariant verdicts.
fn judge(run: &Run) -> Result<Observed, LoadError> {
    let mut o = Observed::new(run.prefix.clone())?;
    let ledger = run.ledger.borrow();
    o.sent = run.counters.sent.get();
    o.invitations = ledger.invitations.len() as u64;
    for rtt in &ledger.invite_rtt {
        o.invite.record(*rtt);
    }
    // (session, agent) → unmasked joins, for the customer check below.
    let mut unmasked_joins: HashMap<(usize, usize), u64> = HashMap::new();
    let empty = Vec::new();
    for (id, sent) in &ledger.invitations {
        let alerts: HashMap<usize, Instant> = first_by_agent(ledger.alerts.get(id));
        for r in &sent.recipients {
            match alerts.get(r) {
                Some(at) => {
                    o.alerts += 1;
                    o.invite_to_alert
                        .record(at.saturating_duration_since(sent.sent_at));
                }
                None => o.missing_alerts += 1,
            }
        }
        let attempts = ledger.attempts.get(id).unwrap_or(&empty);
        let mut winners: HashSet<usize> = HashSet::new();
        for a in attempts.iter().filter(|a| a.status != 0) {
            o.accepts += 1;
            o.accept
                .record(a.answered_at.saturating_duration_since(a.sent_at));
            if (200..300).contains(&a.status) {
                winners.insert(a.agent);
            } else if a.code.as_deref() == Some("invitation_taken") {
                o.lost_races += 1;
            }
        }
        if let Some(named) = ledger.announced.get(id) {
            winners.extend(named.iter().filter_map(|w| run.agent_index(w)));
        }
        match winners.len() {
            0 => {
                // Someone accepted in time and every refusal claimed it was
                // taken, yet nobody has it: the claim went nowhere.
                if !attempts.is_empty()
                    && attempts
                        .iter()
                        .all(|a| a.code.as_deref() == Some("invitation_taken"))
                {
                    o.no_winners += 1;
                }
            }
            1 => {
                o.winners += 1;
                let winner = winners.iter().copied().next().unwrap_or_default();
                let closed_at = attempts
                    .iter()
                    .filter(|a| a.agent == winner && (200..300).contains(&a.status))
                    .map(|a| a.sent_at)
                    .min();
                if !sent.masked {
                    *unmasked_joins.entry((sent.session, winner)).or_default() += 1;
                }
                let withdrawn = first_by_agent(ledger.withdrawals.get(id));
                for r in sent.recipients.iter().filter(|r| **r != winner) {
                    match (withdrawn.get(r), closed_at) {
                        (Some(at), Some(closed)) => {
                            o.withdraw.record(at.saturating_duration_since(closed))
                        }
                        (Some(_), None) => {}
                        (None, _) => o.missing_withdrawals += 1,
                    }
                }
            }
            _ => o.double_winners += 1,
        }
    }
    o.customer_leaks = customer_leaks(&run.prefix, &ledger.customer, &unmasked_joins);
    o.errors = run.errors.borrow().clone();
    Ok(o)
}

fn first_by_agent(events: Option<&Vec<(usize, Instant)>>) -> HashMap<usize, Instant> {
    let mut first = HashMap::new();
    for (agent, at) in events.into_iter().flatten() {
        first.entry(*agent).or_insert(*at);
    }
    first
}

#[derive(Deserialize)]
struct NameOnly {
    name: String,
}

#[derive(Deserialize)]
struct AgentNamed {
    agent: NameOnly,
}

/// Customer events that show what a customer must never see: an agent id,
/// a comment, an invitation id, or a masked agent (more `agent_joined` /
/// `agent_left` for an agent than it had unmasked joins in that session).
fn customer_leaks(
    prefix: &str,
    events: &[(usize, Frame)],
    unmasked_joins: &HashMap<(usize, usize), u64>,
) -> u64 {
    let agent_marker = format!("{prefix}-ag");
    let comment_marker = format!("note {prefix}");
    let mut leaks = 0;
    let mut shown: HashMap<(usize, usize, bool), u64> = HashMap::new();
    for (s, frame) in events {
        if frame.data.contains(&agent_marker)
            || frame.data.contains(&comment_marker)
            || frame.data.contains("inv-")
        {
            leaks += 1;
            continue;
        }
        let joined = match frame.name.as_str() {
            "agent_joined" => true,
            "agent_left" => false,
            _ => continue,
        };
        let agent = serde_json::from_str::<AgentNamed>(&frame.data)
            .ok()
            .and_then(|a| a.agent.name.strip_prefix("Agent ")?.parse::<usize>().ok());
        match agent {
            Some(agent) => *shown.entry((*s, agent, joined)).or_default() += 1,
            None => leaks += 1,
        }
    }
    for ((s, agent, _), count) in shown {
        let allowed = unmasked_joins.get(&(s, agent)).copied().unwrap_or(0);
        leaks += count.saturating_sub(allowed);
    }
    leaks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_racers_recipients_race_and_all_agree() {
        let recipients: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        for inv in ["inv-1", "inv-2", "inv-xyz"] {
            let racing = recipients
                .iter()
                .filter(|r| is_racer(inv, &recipients, r, 3))
                .count();
            assert_eq!(racing, 3);
        }
    }

    fn frame(name: &str, data: &str) -> Frame {
        Frame {
            name: name.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn the_customer_check_flags_ids_comments_and_masked_agents_only() {
        let joined = |i: usize| {
            frame(
                "agent_joined",
                &format!(r#"{{"agent":{{"name":"Agent {i}"}}}}"#),
            )
        };
        let left = |i: usize| {
            frame(
                "agent_left",
                &format!(r#"{{"agent":{{"name":"Agent {i}"}}}}"#),
            )
        };
        // Agent 1 joined session 0 once unmasked; agent 2 only masked.
        let joins = HashMap::from([((0, 1), 1)]);
        let clean = vec![
            (0, frame("snapshot", r#"{"agents":[{"name":"Agent 0"}]}"#)),
            (0, joined(1)),
            (0, left(1)),
            (
                0,
                frame(
                    "reconnect_required",
                    r#"{"generation":2,"reshare_screen":true}"#,
                ),
            ),
        ];
        assert_eq!(customer_leaks("ldx", &clean, &joins), 0);
        let leaky = vec![
            (0, joined(2)),
            (0, joined(1)),
            (0, joined(1)),
            (1, frame("message", r#"{"text":"see inv-abc"}"#)),
            (1, frame("message", r#"{"text":"note ldx #3"}"#)),
            (1, frame("message", r#"{"id":"ldx-ag7"}"#)),
        ];
        assert_eq!(customer_leaks("ldx", &leaky, &joins), 5);
    }

    #[test]
    fn racers_need_to_be_recipients() {
        let one = vec!["a0".to_owned()];
        assert!(is_racer("inv-1", &one, "a0", 3));
        assert!(!is_racer("inv-1", &one, "stranger", 3));
    }
}
