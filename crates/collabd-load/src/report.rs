//! What a run observed, as HDR histograms and counts, and the two ways it
//! is shown: a table for people and JSON under stable keys for CI.
//!
//! Latencies, all measured by the generator's clock:
//! - `invite_to_alert`: the invitation's POST was sent → its
//!   `invitation_offered` arrived on a recipient's stream (one sample per
//!   recipient);
//! - `accept`: round trip of `POST /v1/invitations/{id}/accept`, won or lost;
//! - `withdraw`: the winning accept was sent → `invitation_withdrawn`
//!   arrived on another recipient's stream (one sample per other recipient);
//! - `decline_to_offer`: an escalating invitation's invitee sent its decline
//!   → the escalated `invitation_offered` arrived on a portal agent's stream
//!   (one sample per portal recipient);
//! - `invite`: round trip of the invitation's POST;
//! - `schedule_lag`: how late the generator sent each invitation against its
//!   open-loop schedule (the generator's own health, not the server's).
//!
//! CPU, from `/proc` over the window from the first invitation to the end
//! of the drain: `node_cpu` (with `--node-pids`) and `generator_cpu`, each
//! also per delivered event (alerts plus withdrawals the generator's
//! streams received in that window).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::cpu::CpuUse;
use super::floor::Floor;
use super::timeline::{self, FaultMark, Outage, Second, Timeline};
use super::{LoadArgs, LoadError};

/// Schedule lag p99 above which the figures include a starved generator.
pub const LAG_WARNING_MS: f64 = 5.0;

/// The largest latency a histogram tells apart (one hour, in µs); longer
/// ones are counted as this.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency distribution, recorded in microseconds.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Latency {
    /// An empty distribution with three significant digits.
    pub fn new() -> Result<Self, LoadError> {
        Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .map(Self)
            .map_err(|e| LoadError::Setup(format!("histogram: {e}")))
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        self.0.saturating_record(micros.max(1));
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The usual quantiles, in milliseconds.
    pub fn quantiles(&self) -> Quantiles {
        let ms = |micros: u64| round3(micros as f64 / 1000.0);
        if self.0.is_empty() {
            return Quantiles::default();
        }
        Quantiles {
            count: self.0.len(),
            p50: ms(self.0.value_at_quantile(0.50)),
            p90: ms(self.0.value_at_quantile(0.90)),
            p99: ms(self.0.value_at_quantile(0.99)),
            p999: ms(self.0.value_at_quantile(0.999)),
            max: ms(self.0.max()),
            mean: round3(self.0.mean() / 1000.0),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Quantiles of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Quantiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Everything a run observed, before it is turned into a report.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The run's id (its account id).
    pub run: String,
    /// How long set-up (provisioning, logins, streams) took.
    pub setup: Duration,
    /// How long invitations were being sent.
    pub sending: Duration,
    /// Invitations whose POST was sent.
    pub sent: u64,
    /// Invitations created (201).
    pub invitations: u64,
    /// `invitation_offered` events received for them by their recipients.
    pub alerts: u64,
    /// Accept attempts answered.
    pub accepts: u64,
    /// Invitations with exactly one winner.
    pub winners: u64,
    /// Accepts answered 409 `invitation_taken` (someone else was first).
    pub lost_races: u64,
    /// Invitations with two or more winners.
    pub double_winners: u64,
    /// Invitations nobody won although a recipient accepted in time and
    /// every refusal said it was taken.
    pub no_winners: u64,
    /// Recipients whose alert never arrived.
    pub missing_alerts: u64,
    /// Recipients other than the winner whose alert was never withdrawn.
    pub missing_withdrawals: u64,
    /// Alerts missing for agents whose stream was down meanwhile.
    pub missing_alerts_while_down: u64,
    /// Withdrawals missing for agents whose stream was down meanwhile.
    pub missing_withdrawals_while_down: u64,
    /// Alerts learned from a reopened stream's snapshot.
    pub late_alerts: u64,
    /// Invitation sent → its offer in a reopened stream's snapshot.
    pub late_alert: Latency,
    /// Withdrawals learned from a reopened stream's snapshot (the offer was gone).
    pub late_withdrawals: u64,
    /// Offers (recipients of a 201) to agents whose stream had been down
    /// longer than the fade bound.
    pub ghost_offers: u64,
    /// Offers to agents whose stream had been down less than the fade bound.
    pub offers_while_down: u64,
    /// Calls and streams that went to another node than the one picked
    /// (the picked one could not be reached).
    pub failovers: u64,
    /// The run second by second, and its faults.
    pub timeline: Timeline,
    /// Acknowledged accepts read back after the drain (`--read-back`).
    pub read_back: u64,
    /// Of those, the ones the state did not have: acknowledged writes lost.
    pub acknowledged_lost: u64,
    /// Customer stream events carrying something a customer must not see.
    pub customer_leaks: u64,
    /// The same, by kind.
    pub leaks: LeakCounts,
    /// Transferred sessions whose agent view after the drain disagreed with
    /// the lead the run tracked (or could not be read).
    pub lead_breaks: u64,
    /// Transferred sessions checked after the drain.
    pub lead_checks: u64,
    /// Transfers sent, won, cancelled by another, and invitations refused
    /// because their inviter had stopped leading meanwhile.
    pub transfers: TransferCounts,
    /// Escalating invitations sent, escalated and won.
    pub escalations: EscalationCounts,
    /// Customer stream events checked.
    pub customer_events: u64,
    /// Accepts whose answer was lost and whose outcome was learned.
    pub learned: u64,
    /// Where those outcomes were learned from.
    pub learned_from: LearnedFrom,
    /// Accepts whose answer was lost and whose outcome nothing told.
    pub unknown: u64,
    /// Alerts for invitations whose POST answer never came.
    pub orphan_alerts: u64,
    /// Alerts and withdrawals that arrived after their invitation was judged.
    pub late_events: u64,
    /// CPU of the nodes and of the generator, when it could be read.
    pub cpu: Option<CpuUse>,
    /// Event streams the server closed during the run (each reconnected).
    pub stream_drops: u64,
    /// Non-2xx answers and transport failures, by `"<call> <status> <code>"`.
    pub errors: BTreeMap<String, u64>,
    /// Invitation sent → alert on each recipient's stream.
    pub invite_to_alert: Latency,
    /// Accept round trips.
    pub accept: Latency,
    /// Winning accept sent → withdrawal on each other recipient's stream.
    pub withdraw: Latency,
    /// The invitee's decline sent → the escalated offer on each portal
    /// recipient's stream.
    pub decline_to_offer: Latency,
    /// Invitation POST round trips.
    pub invite: Latency,
    /// How late each invitation left against its schedule.
    pub schedule_lag: Latency,
}

impl Observed {
    /// Nothing observed yet.
    pub fn new(run: String) -> Result<Self, LoadError> {
        Ok(Self {
            run,
            setup: Duration::ZERO,
            sending: Duration::ZERO,
            sent: 0,
            invitations: 0,
            alerts: 0,
            accepts: 0,
            winners: 0,
            lost_races: 0,
            double_winners: 0,
            no_winners: 0,
            missing_alerts: 0,
            missing_withdrawals: 0,
            missing_alerts_while_down: 0,
            missing_withdrawals_while_down: 0,
            late_alerts: 0,
            late_alert: Latency::new()?,
            late_withdrawals: 0,
            ghost_offers: 0,
            offers_while_down: 0,
            failovers: 0,
            timeline: Timeline::default(),
            read_back: 0,
            acknowledged_lost: 0,
            customer_leaks: 0,
            leaks: LeakCounts::default(),
            lead_breaks: 0,
            lead_checks: 0,
            transfers: TransferCounts::default(),
            escalations: EscalationCounts::default(),
            customer_events: 0,
            learned: 0,
            learned_from: LearnedFrom::default(),
            unknown: 0,
            orphan_alerts: 0,
            late_events: 0,
            cpu: None,
            stream_drops: 0,
            errors: BTreeMap::new(),
            invite_to_alert: Latency::new()?,
            accept: Latency::new()?,
            withdraw: Latency::new()?,
            decline_to_offer: Latency::new()?,
            invite: Latency::new()?,
            schedule_lag: Latency::new()?,
        })
    }
}

/// Transfers (`--mix transfer=`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TransferCounts {
    /// Transfer POSTs sent.
    pub sent: u64,
    /// Transfers won: the winner became the session's lead.
    pub completed: u64,
    /// Transfers cancelled because another transfer of their session won
    /// first (a right outcome, not an error).
    pub superseded: u64,
    /// Invitations (of any kind) refused 403 `forbidden` because their
    /// inviter had stopped leading the session meanwhile (a right
    /// outcome, not an error).
    pub stale_lead: u64,
}

/// Escalating invitations (`--mix escalate=`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct EscalationCounts {
    /// Direct invitations sent with `escalate`.
    pub sent: u64,
    /// Of them, those that went to the portal.
    pub escalated: u64,
    /// Of those, the ones a portal agent won.
    pub won: u64,
}

/// Customer events that showed what a customer must never see, by kind.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct LeakCounts {
    /// An agent id.
    pub agent_id: u64,
    /// An invitation's comment.
    pub comment: u64,
    /// An invitation id.
    pub invitation_id: u64,
    /// A masked agent's name (an agent shown joining or leaving a session
    /// more often than it joined it unmasked).
    pub masked_agent: u64,
    /// An `agent_joined` / `agent_left` naming no agent of the run.
    pub unreadable: u64,
}

impl LeakCounts {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.agent_id + self.comment + self.invitation_id + self.masked_agent + self.unreadable
    }
}

/// Where lost answers' outcomes were learned from.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct LearnedFrom {
    /// Another racer's 2xx named the winner.
    pub other_answer: u64,
    /// `invitation_accepted` on the session agents' streams.
    pub invitation_accepted: u64,
    /// The accepting agent's own `participant_joined`.
    pub participant_joined: u64,
    /// `GET /v1/sessions/{id}/invitations/{inv}` after the drain.
    pub lookup: u64,
}

/// The nodes' CPU over the measured window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeCpu {
    /// CPU seconds of every node readable at both ends, together.
    pub seconds: f64,
    /// Each node, in `--node-pids` order.
    pub per_node: Vec<PidCpu>,
    /// Alerts plus withdrawals received by the generator in the window.
    pub delivered_events: u64,
    /// Node CPU µs per delivered event (null when none was delivered).
    pub us_per_delivered_event: Option<f64>,
}

/// One node's CPU.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PidCpu {
    /// Its process id.
    pub pid: u32,
    /// CPU seconds (null when `/proc/<pid>/stat` could not be read at
    /// both ends, e.g. the node exited).
    pub seconds: Option<f64>,
}

/// The generator's own CPU over the measured window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GeneratorCpu {
    /// CPU seconds.
    pub seconds: f64,
    /// Alerts plus withdrawals received in the window.
    pub delivered_events: u64,
    /// Generator CPU µs per delivered event (null when none was delivered).
    pub us_per_delivered_event: Option<f64>,
}

fn per_event(seconds: f64, events: u64) -> Option<f64> {
    (events > 0).then(|| round3(seconds * 1e6 / events as f64))
}

/// The report: figures under stable keys (the JSON is what CI reads).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's id (its account id).
    pub run: String,
    /// The nodes driven.
    pub nodes: Vec<String>,
    /// Agents connected.
    pub agents: usize,
    /// Portals.
    pub portals: usize,
    /// Accounts the portals, agents and sessions were spread over.
    pub accounts: usize,
    /// Sessions.
    pub sessions: usize,
    /// Invitations per second asked for.
    pub rate: f64,
    /// Seconds of sending asked for.
    pub duration_s: f64,
    /// The accept delay distribution.
    pub accept_delay: String,
    /// The invitation mix.
    pub mix: String,
    /// Racers per portal invitation.
    pub racers: usize,
    /// Seconds spent provisioning and connecting.
    pub setup_s: f64,
    /// Invitations whose POST was sent.
    pub invitations_sent: u64,
    /// Invitations created (201).
    pub invitations: u64,
    /// Created invitations per second of sending.
    pub invitations_per_s: f64,
    /// Alerts received.
    pub alerts: u64,
    /// Alerts per second of sending.
    pub alerts_per_s: f64,
    /// Accept attempts answered.
    pub accepts: u64,
    /// Invitations with exactly one winner.
    pub winners: u64,
    /// Accepts that lost the race (409 `invitation_taken`).
    pub lost_races: u64,
    /// Invariant break: two or more winners.
    pub double_winners: u64,
    /// Invariant break: nobody won although someone accepted in time.
    pub no_winners: u64,
    /// Invariant break: alerts that never arrived.
    pub missing_alerts: u64,
    /// Invariant break: alerts never withdrawn.
    pub missing_withdrawals: u64,
    /// Alerts missing for agents whose stream was down meanwhile (a
    /// crash's cost to the agents it cut off; not a break).
    pub missing_alerts_while_down: u64,
    /// Withdrawals missing for agents whose stream was down meanwhile.
    pub missing_withdrawals_while_down: u64,
    /// Alerts learned late, from a reopened stream's snapshot (included in `alerts`).
    pub late_alerts: u64,
    /// Withdrawals learned from a reopened stream's snapshot.
    pub late_withdrawals: u64,
    /// Offers to agents whose stream had been down longer than
    /// `--fade-bound` (a dead node's agents still offered to).
    pub ghost_offers: u64,
    /// Offers to agents whose stream had been down less than the bound.
    pub offers_while_down: u64,
    /// Calls and streams sent to another node because the one picked
    /// could not be reached.
    pub failovers: u64,
    /// The fade bound the offers were judged by, in seconds.
    pub fade_bound_s: f64,
    /// Runs of seconds in which invitation POSTs were refused or failed.
    pub outages: Vec<Outage>,
    /// Faults injected (`--fault`), with their exit status.
    pub faults: Vec<FaultMark>,
    /// The run second by second.
    pub timeline: Vec<Second>,
    /// Acknowledged accepts read back after the drain (`--read-back`).
    pub read_back: u64,
    /// Invariant break: acknowledged accepts the state did not have.
    pub acknowledged_lost: u64,
    /// Invariant break: customer events carrying agent ids, comments,
    /// masked agents' names or invitation ids.
    pub customer_leaks: u64,
    /// The customer leaks by kind.
    pub customer_leaks_by_kind: LeakCounts,
    /// Invariant break: a transferred session whose agent view after the
    /// drain does not have the tracked lead as its one lead, or still has
    /// an earlier lead among its participants.
    pub lead_breaks: u64,
    /// Transferred sessions checked after the drain.
    pub lead_checks: u64,
    /// Transfers sent, completed, superseded; stale-lead refusals.
    pub transfers: TransferCounts,
    /// Escalating invitations sent, escalated, won.
    pub escalations: EscalationCounts,
    /// Customer events checked.
    pub customer_events: u64,
    /// Accepts whose answer was lost (timeout, transport failure) and whose
    /// outcome was learned from the streams or a lookup; not a break.
    pub learned: u64,
    /// Where those outcomes were learned from.
    pub learned_from: LearnedFrom,
    /// Accepts whose answer was lost and whose outcome nothing told; not a
    /// break.
    pub unknown: u64,
    /// Alerts for invitations whose POST answer never came.
    pub orphan_alerts: u64,
    /// Alerts and withdrawals that arrived after their invitation was
    /// judged (already counted missing).
    pub late_events: u64,
    /// Streams the server closed during the run.
    pub stream_drops: u64,
    /// Errors (non-2xx other than lost races, and transport failures).
    pub errors: u64,
    /// Errors by `"<call> <status> <code>"`.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Latency quantiles in milliseconds.
    pub latency_ms: Latencies,
    /// The Redis floor in milliseconds, when `--redis` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_ms: Option<FloorQuantiles>,
    /// Our latencies divided by the floor, when `--redis` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratios: Option<Ratios>,
    /// The nodes' CPU, when `--node-pids` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_cpu: Option<NodeCpu>,
    /// The generator's own CPU (absent without `/proc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_cpu: Option<GeneratorCpu>,
    /// The generator ran late (schedule lag p99 above 5 ms): the figures
    /// include a starved generator.
    pub generator_lagged: bool,
}

/// The measured latencies.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Invitation sent → alert.
    pub invite_to_alert: Quantiles,
    /// Accept round trip.
    pub accept: Quantiles,
    /// Winning accept sent → withdrawal.
    pub withdraw: Quantiles,
    /// Invitee's decline sent → escalated offer.
    pub decline_to_offer: Quantiles,
    /// Invitation POST round trip.
    pub invite: Quantiles,
    /// Invitation sent → its offer in a reopened stream's snapshot.
    pub late_alert: Quantiles,
    /// How late the generator sent each invitation against its schedule.
    pub schedule_lag: Quantiles,
}

/// The raw Redis round trips.
#[derive(Debug, Clone, Serialize)]
pub struct FloorQuantiles {
    /// `PUBLISH` → message on a subscribed connection.
    pub publish: Quantiles,
    /// `SET key value NX PX ttl` round trip.
    pub set_nx: Quantiles,
}

/// p50 and p99 of one of our latencies over the matching floor.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratio {
    /// Median over median.
    pub p50: f64,
    /// p99 over p99.
    pub p99: f64,
}

/// Our latencies as multiples of the floor: fan-outs over PUBLISH, the
/// accept over SET NX (it is a claim plus a commit).
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Invitation → alert over PUBLISH → subscriber.
    pub invite_to_alert: Ratio,
    /// Accept over SET NX.
    pub accept: Ratio,
    /// Withdrawal over PUBLISH → subscriber.
    pub withdraw: Ratio,
}

fn ratio(ours: &Quantiles, floor: &Quantiles) -> Ratio {
    let div = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    Ratio {
        p50: div(ours.p50, floor.p50),
        p99: div(ours.p99, floor.p99),
    }
}

impl Report {
    /// The report of a run.
    pub fn build(args: &LoadArgs, observed: Observed, floor: Option<Floor>) -> Self {
        let seconds = observed.sending.as_secs_f64();
        let per_s = |n: u64| {
            if seconds > 0.0 {
                round3(n as f64 / seconds)
            } else {
                0.0
            }
        };
        let latency_ms = Latencies {
            invite_to_alert: observed.invite_to_alert.quantiles(),
            accept: observed.accept.quantiles(),
            withdraw: observed.withdraw.quantiles(),
            decline_to_offer: observed.decline_to_offer.quantiles(),
            invite: observed.invite.quantiles(),
            late_alert: observed.late_alert.quantiles(),
            schedule_lag: observed.schedule_lag.quantiles(),
        };
        let floor_ms = floor.map(|f| FloorQuantiles {
            publish: f.publish.quantiles(),
            set_nx: f.set_nx.quantiles(),
        });
        let ratios = floor_ms.as_ref().map(|f| Ratios {
            invite_to_alert: ratio(&latency_ms.invite_to_alert, &f.publish),
            accept: ratio(&latency_ms.accept, &f.set_nx),
            withdraw: ratio(&latency_ms.withdraw, &f.publish),
        });
        let (node_cpu, generator_cpu) = match &observed.cpu {
            Some(cpu) => {
                let events = cpu.delivered_events;
                let node_cpu = (!cpu.pids.is_empty()).then(|| {
                    let seconds: f64 = cpu.nodes.iter().flatten().sum();
                    NodeCpu {
                        seconds: round3(seconds),
                        per_node: cpu
                            .pids
                            .iter()
                            .zip(&cpu.nodes)
                            .map(|(pid, s)| PidCpu {
                                pid: *pid,
                                seconds: s.map(round3),
                            })
                            .collect(),
                        delivered_events: events,
                        us_per_delivered_event: per_event(seconds, events),
                    }
                });
                let generator_cpu = cpu.generator.map(|seconds| GeneratorCpu {
                    seconds: round3(seconds),
                    delivered_events: events,
                    us_per_delivered_event: per_event(seconds, events),
                });
                (node_cpu, generator_cpu)
            }
            None => (None, None),
        };
        let generator_lagged = latency_ms.schedule_lag.p99 > LAG_WARNING_MS;
        let seconds = observed.timeline.seconds();
        Self {
            run: observed.run,
            nodes: args.nodes.clone(),
            agents: args.agents,
            portals: args.portals,
            accounts: args.accounts,
            sessions: args.sessions,
            rate: args.rate,
            duration_s: args.duration.as_secs_f64(),
            accept_delay: args.accept_delay.to_string(),
            mix: args.mix.to_string(),
            racers: args.racers,
            setup_s: round3(observed.setup.as_secs_f64()),
            invitations_sent: observed.sent,
            invitations: observed.invitations,
            invitations_per_s: per_s(observed.invitations),
            alerts: observed.alerts,
            alerts_per_s: per_s(observed.alerts),
            accepts: observed.accepts,
            winners: observed.winners,
            lost_races: observed.lost_races,
            double_winners: observed.double_winners,
            no_winners: observed.no_winners,
            missing_alerts: observed.missing_alerts,
            missing_withdrawals: observed.missing_withdrawals,
            missing_alerts_while_down: observed.missing_alerts_while_down,
            missing_withdrawals_while_down: observed.missing_withdrawals_while_down,
            late_alerts: observed.late_alerts,
            late_withdrawals: observed.late_withdrawals,
            ghost_offers: observed.ghost_offers,
            offers_while_down: observed.offers_while_down,
            failovers: observed.failovers,
            fade_bound_s: args.fade_bound.as_secs_f64(),
            outages: timeline::outages(&seconds),
            faults: observed.timeline.faults.clone(),
            timeline: seconds,
            read_back: observed.read_back,
            acknowledged_lost: observed.acknowledged_lost,
            customer_leaks: observed.customer_leaks,
            customer_leaks_by_kind: observed.leaks,
            lead_breaks: observed.lead_breaks,
            lead_checks: observed.lead_checks,
            transfers: observed.transfers,
            escalations: observed.escalations,
            customer_events: observed.customer_events,
            learned: observed.learned,
            learned_from: observed.learned_from,
            unknown: observed.unknown,
            orphan_alerts: observed.orphan_alerts,
            late_events: observed.late_events,
            stream_drops: observed.stream_drops,
            errors: observed.errors.values().sum(),
            errors_by_code: observed.errors,
            latency_ms,
            floor_ms,
            ratios,
            node_cpu,
            generator_cpu,
            generator_lagged,
        }
    }

    /// Invariant breaks counted (any makes the run fail).
    pub fn invariant_breaks(&self) -> u64 {
        self.double_winners
            + self.no_winners
            + self.missing_alerts
            + self.missing_withdrawals
            + self.customer_leaks
            + self.lead_breaks
            + self.acknowledged_lost
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and finite numbers cannot fail;
        // an empty object would still be valid JSON if it did.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The summary table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "collabd load {} — {} node(s), {} agents, {} portals, {} sessions, {} inv/s for {}s (accept delay {}, mix {}, {} racers)",
            self.run,
            self.nodes.len(),
            self.agents,
            self.portals,
            self.sessions,
            self.rate,
            self.duration_s,
            self.accept_delay,
            self.mix,
            self.racers
        );
        let _ = writeln!(
            out,
            "set-up {:.1}s; invitations {} created of {} sent ({:.1}/s); alerts {} ({:.1}/s); accepts {} ({} won, {} lost races)",
            self.setup_s,
            self.invitations,
            self.invitations_sent,
            self.invitations_per_s,
            self.alerts,
            self.alerts_per_s,
            self.accepts,
            self.winners,
            self.lost_races
        );
        let (t, e) = (&self.transfers, &self.escalations);
        if t.sent + e.sent > 0 {
            let _ = writeln!(
                out,
                "transfers {} sent, {} completed, {} superseded, {} refused to a stale lead; escalations {} sent, {} escalated, {} won",
                t.sent, t.completed, t.superseded, t.stale_lead, e.sent, e.escalated, e.won
            );
        }
        if self.late_alerts
            + self.late_withdrawals
            + self.missing_alerts_while_down
            + self.missing_withdrawals_while_down
            + self.offers_while_down
            + self.ghost_offers
            > 0
        {
            let _ = writeln!(
                out,
                "streams cut: alerts {} late, {} missing while down; withdrawals {} late, {} missing while down; offers to agents cut off {} within the {}s fade bound, {} past it",
                self.late_alerts,
                self.missing_alerts_while_down,
                self.late_withdrawals,
                self.missing_withdrawals_while_down,
                self.offers_while_down,
                self.fade_bound_s,
                self.ghost_offers
            );
        }
        if self.failovers > 0 {
            let _ = writeln!(
                out,
                "failovers: {} calls and streams went to another node",
                self.failovers
            );
        }
        if self.read_back > 0 {
            let _ = writeln!(
                out,
                "read back {} acknowledged accepts: {} lost",
                self.read_back, self.acknowledged_lost
            );
        }
        if !self.faults.is_empty() || !self.outages.is_empty() {
            let faults: Vec<String> = self
                .faults
                .iter()
                .map(|f| match f.exit {
                    Some(c) => format!("{:.1}s `{}` (exit {c})", f.at_s, f.command),
                    None => format!("{:.1}s `{}` (no exit status)", f.at_s, f.command),
                })
                .collect();
            let outages: Vec<String> = self
                .outages
                .iter()
                .map(|o| {
                    format!(
                        "{}–{}s ({} s, {} refused)",
                        o.from_s,
                        o.to_s,
                        o.seconds(),
                        o.refused
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "faults: {}; invitation outages: {}",
                if faults.is_empty() {
                    "none".to_owned()
                } else {
                    faults.join(", ")
                },
                if outages.is_empty() {
                    "none".to_owned()
                } else {
                    outages.join(", ")
                }
            );
        }
        let _ = writeln!(
            out,
            "\n{:<22}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut row = |name: &str, q: &Quantiles| {
            let _ = writeln!(
                out,
                "{:<22}{:>9}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.3}",
                name, q.count, q.p50, q.p90, q.p99, q.p999, q.max
            );
        };
        row("invite → alert", &self.latency_ms.invite_to_alert);
        row("accept round trip", &self.latency_ms.accept);
        row("accept → withdrawal", &self.latency_ms.withdraw);
        if self.latency_ms.decline_to_offer.count > 0 {
            row("decline → escalated", &self.latency_ms.decline_to_offer);
        }
        row("invite round trip", &self.latency_ms.invite);
        row("generator lag", &self.latency_ms.schedule_lag);
        if let Some(floor) = &self.floor_ms {
            row("floor: PUBLISH → sub", &floor.publish);
            row("floor: SET NX", &floor.set_nx);
        }
        if self.latency_ms.late_alert.count > 0 {
            row("late alert (snapshot)", &self.latency_ms.late_alert);
        }
        if let Some(r) = &self.ratios {
            let _ = writeln!(
                out,
                "\nover the floor (p50 / p99): invite → alert {:.1}x / {:.1}x PUBLISH; accept {:.1}x / {:.1}x SET NX; withdrawal {:.1}x / {:.1}x PUBLISH",
                r.invite_to_alert.p50,
                r.invite_to_alert.p99,
                r.accept.p50,
                r.accept.p99,
                r.withdraw.p50,
                r.withdraw.p99
            );
        }
        if let Some(cpu) = &self.node_cpu {
            let per_node: Vec<String> = cpu
                .per_node
                .iter()
                .map(|n| match n.seconds {
                    Some(s) => format!("pid {} {s:.2} s", n.pid),
                    None => format!("pid {} unreadable", n.pid),
                })
                .collect();
            let _ = writeln!(
                out,
                "\nnode cpu: {:.2} s ({}); {} µs per delivered event ({} alerts + withdrawals)",
                cpu.seconds,
                per_node.join(", "),
                micros(cpu.us_per_delivered_event),
                cpu.delivered_events
            );
        }
        if let Some(cpu) = &self.generator_cpu {
            let _ = writeln!(
                out,
                "{}generator cpu: {:.2} s; {} µs per delivered event",
                if self.node_cpu.is_some() { "" } else { "\n" },
                cpu.seconds,
                micros(cpu.us_per_delivered_event)
            );
        }
        if self.generator_lagged {
            let _ = writeln!(
                out,
                "\nWARNING: the generator lagged: figures include a starved generator \
                 (schedule lag p99 {:.3} ms > {LAG_WARNING_MS} ms)",
                self.latency_ms.schedule_lag.p99
            );
        }
        let _ = writeln!(
            out,
            "\ninvariant breaks: {} (double winners {}, no winner {}, missing alerts {}, missing withdrawals {}, customer leaks {}, lead breaks {} of {} transferred sessions); stream drops {}",
            self.invariant_breaks(),
            self.double_winners,
            self.no_winners,
            self.missing_alerts,
            self.missing_withdrawals,
            self.customer_leaks,
            self.lead_breaks,
            self.lead_checks,
            self.stream_drops
        );
        if self.customer_leaks > 0 {
            let k = &self.customer_leaks_by_kind;
            let _ = writeln!(
                out,
                "customer leaks by kind: agent ids {}, comments {}, invitation ids {}, masked agents {}, unreadable {}",
                k.agent_id, k.comment, k.invitation_id, k.masked_agent, k.unreadable
            );
        }
        let f = &self.learned_from;
        let _ = writeln!(
            out,
            "lost answers (not breaks): learned {} (other answer {}, invitation_accepted {}, participant_joined {}, lookup {}), unknown {}; orphan alerts {}, late events {}",
            self.learned,
            f.other_answer,
            f.invitation_accepted,
            f.participant_joined,
            f.lookup,
            self.unknown,
            self.orphan_alerts,
            self.late_events
        );
        let _ = write!(out, "errors: {}", self.errors);
        for (code, n) in &self.errors_by_code {
            let _ = write!(out, "\n  {n:>7}  {code}");
        }
        out
    }
}

fn micros(us: Option<f64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_in_milliseconds_with_three_significant_digits() {
        let mut latency = Latency::new().unwrap();
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        let q = latency.quantiles();
        assert_eq!(q.count, 100);
        assert!((q.p50 - 50.0).abs() < 0.1, "{q:?}");
        assert!((q.p99 - 99.0).abs() < 0.1, "{q:?}");
        assert!((q.max - 100.0).abs() < 0.1, "{q:?}");
        assert_eq!(Latency::new().unwrap().quantiles(), Quantiles::default());
    }

    fn args(extra: &[&str]) -> LoadArgs {
        use clap::Parser;
        let base = [
            "collabd load",
            "--nodes",
            "http://127.0.0.1:1",
            "--admin-token",
            "t",
        ];
        LoadArgs::try_parse_from(base.iter().chain(extra)).unwrap()
    }

    fn observed(lag_ms: u64, cpu: Option<CpuUse>) -> Observed {
        let mut o = Observed::new("ldtest".into()).unwrap();
        o.sending = Duration::from_secs(2);
        o.schedule_lag.record(Duration::from_millis(lag_ms));
        o.learned = 2;
        o.learned_from.lookup = 2;
        o.unknown = 1;
        o.cpu = cpu;
        o
    }

    #[test]
    fn cpu_figures_are_per_node_and_per_delivered_event() {
        let cpu = CpuUse {
            pids: vec![11, 12],
            nodes: vec![Some(1.5), None],
            generator: Some(0.25),
            delivered_events: 5000,
        };
        let report = Report::build(
            &args(&["--node-pids", "11,12"]),
            observed(1, Some(cpu)),
            None,
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let node = &json["node_cpu"];
        assert_eq!(node["seconds"], 1.5);
        assert_eq!(node["per_node"][0]["pid"], 11);
        assert_eq!(node["per_node"][1]["seconds"], serde_json::Value::Null);
        assert_eq!(node["us_per_delivered_event"], 300.0);
        assert_eq!(json["generator_cpu"]["us_per_delivered_event"], 50.0);
        assert_eq!(json["generator_cpu"]["delivered_events"], 5000);
        assert_eq!(
            (json["learned"].as_u64(), json["unknown"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(json["learned_from"]["lookup"], 2);
        assert_eq!(json["generator_lagged"], false);
        let table = report.table();
        assert!(
            table.contains("node cpu: 1.50 s (pid 11 1.50 s, pid 12 unreadable)"),
            "{table}"
        );
        assert!(!table.contains("WARNING"), "{table}");
        // Unknown outcomes are no invariant breaks.
        assert_eq!(report.invariant_breaks(), 0);
    }

    #[test]
    fn without_node_pids_there_is_no_node_cpu_and_a_lagging_generator_is_named() {
        let cpu = CpuUse {
            pids: Vec::new(),
            nodes: Vec::new(),
            generator: Some(0.1),
            delivered_events: 0,
        };
        let report = Report::build(&args(&[]), observed(12, Some(cpu)), None);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert!(json.get("node_cpu").is_none(), "{json}");
        assert_eq!(
            json["generator_cpu"]["us_per_delivered_event"],
            serde_json::Value::Null
        );
        assert_eq!(json["generator_lagged"], true);
        for key in [
            "customer_leaks_by_kind",
            "customer_events",
            "orphan_alerts",
            "late_events",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        let table = report.table();
        assert!(
            table.contains("the generator lagged: figures include a starved generator"),
            "{table}"
        );
    }

    #[test]
    fn ratios_divide_matching_quantiles_and_survive_an_empty_floor() {
        let ours = Quantiles {
            p50: 4.0,
            p99: 10.0,
            ..Quantiles::default()
        };
        let floor = Quantiles {
            p50: 0.5,
            p99: 2.0,
            ..Quantiles::default()
        };
        let r = ratio(&ours, &floor);
        assert_eq!((r.p50, r.p99), (8.0, 5.0));
        let r = ratio(&ours, &Quantiles::default());
        assert_eq!((r.p50, r.p99), (0.0, 0.0));
    }
}
