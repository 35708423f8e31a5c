//! `collabd load`: an open-loop load generator that drives running nodes
//! over the public HTTP API only (API.md), verifies every outcome from the
//! event streams and the HTTP answers, and measures latencies with HDR
//! histograms.
//!
//! Layout: [`client`] speaks HTTP and SSE, [`scenario`] provisions the
//! account and runs the schedule, [`ledger`] keeps what is known of each
//! invitation in play and judges it once settled, [`report`] turns what was
//! observed into figures, a table and JSON, [`floor`] measures raw Redis
//! round trips, [`cpu`] reads the nodes' and the generator's CPU time,
//! [`timeline`] keeps the run second by second, [`faults`] runs the
//! `--fault` commands on schedule and [`html`] draws the `--html` page.
//! [`peer`] is `collabd peer-load`: the same shape against nginx + nchan.
//!
//! The generator is a client behind a balancer: a request or a stream that
//! cannot reach its node goes to another of `--nodes` (and the node is
//! skipped for a second), and a stream that comes back is reconciled with
//! what its snapshot shows (late alerts and withdrawals).

pub mod client;
pub mod cpu;
pub mod faults;
pub mod floor;
pub mod html;
pub mod ledger;
pub mod peer;
pub mod report;
pub mod scenario;
pub mod timeline;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

pub use report::Report;

/// Arguments of `collabd load`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = "Drives running collabd nodes over the public HTTP API and verifies every outcome.",
    long_about = "Drives running collabd nodes over the public HTTP API only: provisions its own \
                  account (random id), logs agents in through the nodes round-robin, holds one \
                  event stream per agent on a different node than its login, creates sessions \
                  (each with a customer stream) and sends invitations open-loop at --rate. \
                  --racers recipients of each invitation (chosen from the POST answer's recipient \
                  list) accept after --accept-delay. Every alert, acceptance and withdrawal is \
                  checked against the streams; latencies are HDR histograms. Each invitation is \
                  judged once settled (race decided, every withdrawal in) or --grace after it was \
                  created, so memory stays flat on long runs.\n\n\
                  An accept whose answer was lost (timeout, transport failure, 503 `unavailable`) \
                  is no refusal: its outcome is learned from the streams or, after the drain, from \
                  GET /v1/sessions/{id}/invitations/{inv}, and reported as `learned`, or \
                  `unknown` when nothing told; neither is an invariant break.\n\n\
                  With --mix transfer=F, that share of invitations hands the session over \
                  (`kind: transfer`, from its current lead): the winner stays as the lead and later \
                  invitations of the session go out from it. With --mix escalate=F, that share of \
                  direct invitations escalates to another portal after 5 s; the invitee declines at \
                  once, so the portal's agents race for the same invitation.\n\n\
                  It is a client behind a balancer: a call or a stream that cannot reach its node \
                  goes to the next one of --nodes (invitations carry an Idempotency-Key, so a \
                  resend is safe); a reopened or resynced stream's snapshot is reconciled (open \
                  offers never seen count as late alerts, seen offers gone as late withdrawals), \
                  and what an agent missed while its stream was down is counted apart from \
                  missing alerts. --fault AT=COMMAND runs a command (a kill, a restart) on \
                  schedule and marks it on the report's per-second timeline; --html draws the \
                  timeline with the faults; --read-back reads every acknowledged accept back \
                  after the drain.\n\n\
                  Exit status: 0 when no invariant broke, 3 when any did (two winners, no winner \
                  although someone accepted in time, a missing alert or withdrawal, a customer \
                  leak, a session whose lead after a transfer is not the one the run tracked, an \
                  acknowledged accept not read back), 1 when the run could not be carried out, 2 for bad arguments."
)]
pub struct LoadArgs {
    /// Base URLs of the nodes to drive, comma-separated
    /// (e.g. http://127.0.0.1:8081,http://127.0.0.1:8082). Nothing else is contacted.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub nodes: Vec<String>,
    /// The nodes' admin token (auth.admin_token), used to provision the run's account.
    #[arg(long)]
    pub admin_token: String,
    /// Agents to provision, log in and hold an event stream for.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Portals; agent i is a member of portal i mod P and logs in there.
    #[arg(long, default_value_t = 4)]
    pub portals: usize,
    /// Accounts to spread the run over: portal p belongs to account
    /// p mod N, so an agent (and a session, through its lead) belongs to its
    /// portal's account, and every invitation stays inside its session's
    /// account. On Redis Cluster each account's keys live on one master, so
    /// N accounts spread the work over the masters. With N = 1 the account
    /// is the run's id; else the run's id + `a0` … `a{N-1}`.
    #[arg(long, default_value_t = 1)]
    pub accounts: usize,
    /// Live sessions, each with its own lead agent and customer stream;
    /// every invitation goes out from one of them, chosen at random.
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Invitations per second, open-loop: each is sent on schedule whether
    /// or not earlier ones were answered. 0 only connects and holds the streams.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long to send invitations (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long an invitation stays in play after its POST answer: its
    /// alerts, acceptances and withdrawals must arrive within it (later
    /// ones count as missing). The run listens this long after the last
    /// invitation, then looks up lost answers' outcomes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Delay between a recipient's alert and its accept: `fixed:10ms`,
    /// `uniform:0ms..50ms` or `exp:20ms` (exponential with that mean).
    #[arg(long, default_value = "uniform:0ms..50ms")]
    pub accept_delay: Delay,
    /// How many of a portal invitation's recipients race to accept it: a
    /// window of consecutive entries of the POST answer's recipient list, from
    /// a position hashed from the invitation id. The others only see the
    /// alert and its withdrawal.
    #[arg(long, default_value_t = 3)]
    pub racers: usize,
    /// Shares of invitations, each in [0, 1]: `portal` (vs direct to one
    /// agent), `masked`, `comment` (carries a comment), `transfer` (sent as
    /// `kind: transfer` by the session's current lead, never masked; at most
    /// one open per session, else a collaborate invitation goes instead; the
    /// winner stays as the new lead), `escalate` (of direct invitations:
    /// carries `escalate` to another portal after 5 s, and the invitee
    /// declines at once so the portal's agents race for it). Keys not named
    /// keep their defaults: portal=0.8,masked=0.3,comment=0.5,transfer=0,escalate=0.
    #[arg(long, default_value = "portal=0.8,masked=0.3,comment=0.5")]
    pub mix: Mix,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// A Redis URL: first measure the floor (PUBLISH → subscriber and
    /// SET NX round trips from this process) and report latencies as ratios to it.
    #[arg(long)]
    pub redis: Option<String>,
    /// Process ids of the nodes (local ones; comma-separated): report their
    /// CPU time (utime + stime from /proc/<pid>/stat) from the first
    /// invitation to the end of the drain, in all, per node and in µs per
    /// delivered event (alerts + withdrawals the generator received). The
    /// generator's own CPU is reported the same way with or without this.
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "PID[,PID...]")]
    pub node_pids: Vec<u32>,
    /// A fault to inject: `AT=COMMAND` runs COMMAND under `sh -c` at AT
    /// after the first invitation (e.g. `40s=deploy/local-cluster.sh
    /// kill-master-of "$COLLABD_LOAD_ACCOUNT"`), marked on the timeline
    /// with its exit status. Repeat for more.
    #[arg(long = "fault", value_name = "AT=COMMAND")]
    pub faults: Vec<faults::Fault>,
    /// The run's account id (and the prefix of every id it creates), so a
    /// fault script can find the account's Redis master before the run;
    /// random (`ld` + 8 hex digits) when not given. It must be new.
    #[arg(long)]
    pub account: Option<String>,
    /// After the drain, read back every accept answered 2xx: its invitation
    /// must name that agent as its winner (an acknowledged write lost is an
    /// invariant break).
    #[arg(long)]
    pub read_back: bool,
    /// Write the report as an HTML page with the timeline's plots here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// How long a dead node's agents may still be offered invitations: an
    /// offer to an agent whose stream has been down longer counts as a
    /// ghost offer (the server's `FADE_BOUND` is 3 s).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub fade_bound: Duration,
    /// How long an agent's console waits before it reopens a stream the
    /// server closed or lost (a crash's cut-off agents stay away this long).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub reconnect_pause: Duration,
}

impl LoadArgs {
    /// Rejects combinations that cannot run, before anything is sent.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: &str| Err(LoadError::Arguments(m.to_owned()));
        if self.nodes.is_empty() {
            return bad("--nodes needs at least one URL");
        }
        for node in &self.nodes {
            if !(node.starts_with("http://") || node.starts_with("https://")) {
                return bad(&format!("--nodes: {node:?} is not an http:// URL"));
            }
        }
        if self.portals == 0 || self.sessions == 0 {
            return bad("--portals and --sessions must be at least 1");
        }
        if self.accounts == 0 || self.accounts > self.portals {
            return bad("--accounts must be at least 1 and at most --portals");
        }
        // Every account needs a lead and someone for it to invite.
        if self.accounts > 1 && self.agents < 2 * self.portals {
            return bad("--agents must be at least twice --portals with --accounts above 1");
        }
        // Every session needs its own lead and someone else to invite.
        if self.agents < self.sessions + 1 || self.agents < self.portals {
            return bad("--agents must exceed --sessions and be at least --portals");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return bad("--rate must be a non-negative number");
        }
        if let Some(account) = &self.account
            && (account.is_empty()
                || account.len() > 40
                || !account
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        {
            return bad("--account: 1 to 40 lower-case letters and digits");
        }
        if self.racers == 0 {
            return bad("--racers must be at least 1");
        }
        for pid in &self.node_pids {
            if cpu::ticks(Some(*pid)).is_none() {
                return bad(&format!(
                    "--node-pids: cannot read /proc/{pid}/stat (no such local process?)"
                ));
            }
        }
        Ok(())
    }
}

/// Why a run could not be carried out (invariant breaks are not errors:
/// they are figures of the report).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The arguments do not describe a runnable load.
    #[error("invalid arguments: {0}")]
    Arguments(String),
    /// Provisioning, login or stream set-up failed.
    #[error("set-up failed: {0}")]
    Setup(String),
    /// The Redis floor could not be measured.
    #[error("redis floor: {0}")]
    Redis(#[from] redis::RedisError),
    /// The report could not be written.
    #[error("report: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the load described by `args` and returns what it observed.
pub async fn run(args: LoadArgs) -> Result<Report, LoadError> {
    args.validate()?;
    let floor = match &args.redis {
        Some(url) => Some(floor::measure(url).await?),
        None => None,
    };
    let observed = scenario::run(&args).await?;
    let report = Report::build(&args, observed, floor);
    if let Some(path) = &args.report {
        std::fs::write(path, report.to_json())?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&report))?;
    }
    Ok(report)
}

/// A duration such as `250ms`, `3s`, `1.5s`, `2m` or `100us`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms or 3s"))?;
    let seconds = match unit.trim() {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        other => return Err(format!("unknown duration unit {other:?} (us, ms, s, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// How long a recipient waits between its alert and its accept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    /// Always this long.
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
    /// Exponential with this mean.
    Exponential(Duration),
}

/// The longest delay ever sampled, so a heavy exponential tail cannot
/// push an accept past the run's end.
const MAX_DELAY: Duration = Duration::from_secs(10);

impl Delay {
    /// One delay drawn from the distribution.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let drawn = match *self {
            Delay::Fixed(d) => d,
            Delay::Uniform(low, high) if high > low => {
                let span = (high - low).as_secs_f64();
                low + Duration::from_secs_f64(rng.random::<f64>() * span)
            }
            Delay::Uniform(low, _) => low,
            Delay::Exponential(mean) => {
                // 1 - u lies in (0, 1], so the logarithm is finite.
                let u: f64 = rng.random();
                Duration::try_from_secs_f64(-(1.0 - u).ln() * mean.as_secs_f64())
                    .unwrap_or(MAX_DELAY)
            }
        };
        drawn.min(MAX_DELAY)
    }
}

impl FromStr for Delay {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected fixed:D, uniform:A..B or exp:MEAN"))?;
        match kind {
            "fixed" => Ok(Delay::Fixed(parse_duration(rest)?)),
            "exp" => Ok(Delay::Exponential(parse_duration(rest)?)),
            "uniform" => {
                let (low, high) = rest
                    .split_once("..")
                    .ok_or_else(|| format!("{text:?}: expected uniform:A..B"))?;
                let (low, high) = (parse_duration(low)?, parse_duration(high)?);
                if high < low {
                    return Err(format!("{text:?}: the upper bound is below the lower"));
                }
                Ok(Delay::Uniform(low, high))
            }
            other => Err(format!(
                "unknown distribution {other:?} (fixed, uniform, exp)"
            )),
        }
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        match self {
            Delay::Fixed(d) => write!(f, "fixed:{}ms", ms(d)),
            Delay::Uniform(a, b) => write!(f, "uniform:{}ms..{}ms", ms(a), ms(b)),
            Delay::Exponential(m) => write!(f, "exp:{}ms", ms(m)),
        }
    }
}

/// Shares of the kinds of invitations sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Share of portal invitations (the rest are direct).
    pub portal: f64,
    /// Share of masked invitations.
    pub masked: f64,
    /// Share of invitations with a comment.
    pub comment: f64,
    /// Share of invitations sent as transfers (by the session's lead).
    pub transfer: f64,
    /// Share of direct invitations that escalate to another portal.
    pub escalate: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            portal: 0.8,
            masked: 0.3,
            comment: 0.5,
            transfer: 0.0,
            escalate: 0.0,
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=share"))?;
            let share: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the share is not a number"))?;
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{part:?}: a share lies in [0, 1]"));
            }
            match key.trim() {
                "portal" => mix.portal = share,
                "masked" => mix.masked = share,
                "comment" => mix.comment = share,
                "transfer" => mix.transfer = share,
                "escalate" => mix.escalate = share,
                other => {
                    return Err(format!(
                        "unknown mix key {other:?} (portal, masked, comment, transfer, escalate)"
                    ));
                }
            }
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "portal={},masked={},comment={},transfer={},escalate={}",
            self.portal, self.masked, self.comment, self.transfer, self.escalate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn delay_distributions_parse_and_stay_in_bounds() {
        let uniform: Delay = "uniform:0ms..50ms".parse().unwrap();
        assert_eq!(
            uniform,
            Delay::Uniform(Duration::ZERO, Duration::from_millis(50))
        );
        let mut rng = rand::rng();
        for _ in 0..1000 {
            assert!(uniform.sample(&mut rng) <= Duration::from_millis(50));
        }
        let exp: Delay = "exp:20ms".parse().unwrap();
        assert_eq!(exp, Delay::Exponential(Duration::from_millis(20)));
        assert!(exp.sample(&mut rng) <= MAX_DELAY);
        assert!("uniform:50ms..10ms".parse::<Delay>().is_err());
        assert!("normal:5ms".parse::<Delay>().is_err());
    }

    #[test]
    fn a_mix_overrides_only_the_shares_it_names() {
        let mix: Mix = "portal=1,comment=0".parse().unwrap();
        assert_eq!(
            mix,
            Mix {
                portal: 1.0,
                comment: 0.0,
                ..Mix::default()
            }
        );
        assert!("portal=1.5".parse::<Mix>().is_err());
        assert!("colour=0.5".parse::<Mix>().is_err());
    }

    #[test]
    fn transfer_and_escalate_shares_default_to_none_and_parse_like_the_others() {
        let plain: Mix = "portal=0.8".parse().unwrap();
        assert_eq!((plain.transfer, plain.escalate), (0.0, 0.0));
        let mix: Mix = "transfer=0.2, escalate=1".parse().unwrap();
        assert_eq!(
            mix,
            Mix {
                transfer: 0.2,
                escalate: 1.0,
                ..Mix::default()
            }
        );
        assert_eq!(mix.to_string().parse::<Mix>(), Ok(mix));
        assert!(mix.to_string().contains("transfer=0.2,escalate=1"), "{mix}");
        assert!("transfer=-0.1".parse::<Mix>().is_err());
        assert!("escalate=2".parse::<Mix>().is_err());
        assert!("escalate=often".parse::<Mix>().is_err());
        assert!("transfers=0.1".parse::<Mix>().is_err());
    }

    #[test]
    fn the_command_line_parses_every_flag() {
        let args = LoadArgs::try_parse_from([
            "collabd load",
            "--nodes",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--admin-token",
            "t",
            "--agents",
            "40",
            "--duration",
            "3s",
            "--accept-delay",
            "exp:20ms",
        ])
        .unwrap();
        assert_eq!(args.nodes.len(), 2);
        assert_eq!(args.agents, 40);
        assert_eq!(args.duration, Duration::from_secs(3));
        assert!(args.validate().is_ok());
        let too_few = LoadArgs::try_parse_from([
            "collabd load",
            "--nodes",
            "http://127.0.0.1:1",
            "--admin-token",
            "t",
            "--agents",
            "5",
            "--sessions",
            "5",
        ])
        .unwrap();
        assert!(too_few.validate().is_err());
    }

    #[test]
    fn node_pids_are_a_list_of_readable_local_processes() {
        let me = std::process::id().to_string();
        let parse = |pids: &str| {
            LoadArgs::try_parse_from([
                "collabd load",
                "--nodes",
                "http://127.0.0.1:1",
                "--admin-token",
                "t",
                "--node-pids",
                pids,
            ])
        };
        let args = parse(&format!("{me},{me}")).unwrap();
        assert_eq!(args.node_pids, vec![std::process::id(); 2]);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(args.validate().is_ok());
            // Above the kernel's pid_max: never a live process.
            assert!(parse("4194305").unwrap().validate().is_err());
        }
        assert!(parse("not-a-pid").is_err());
        let none = LoadArgs::try_parse_from([
            "collabd load",
            "--nodes",
            "http://127.0.0.1:1",
            "--admin-token",
            "t",
        ])
        .unwrap();
        assert!(none.node_pids.is_empty());
    }
}
