//! The run second by second: invitations sent, created and refused (by
//! reason), alerts on time and late, the p99 of invite → alert and of the
//! invitation round trip, and the streams open; plus the faults the run
//! injected, marked where they happened. An outage is then a number: the
//! seconds in which invitations were refused, in runs.
//!
//! Bounded: one slot per second of the run, at most [`MAX_SECONDS`]; each
//! slot keeps two small histograms (two significant digits, 10 µs units).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// The longest run a timeline covers (later seconds are not kept).
pub const MAX_SECONDS: usize = 4 * 3600;
/// Histogram unit: 10 µs; the largest value kept is 60 s.
const UNIT_US: u64 = 10;
const MAX_UNITS: u64 = 6_000_000;

#[derive(Debug, Clone)]
struct Slot {
    sent: u64,
    created: u64,
    refused: BTreeMap<String, u64>,
    alerts: u64,
    late_alerts: u64,
    alert: Option<Histogram<u32>>,
    invite: Option<Histogram<u32>>,
    open_streams: u64,
    ghost_offers: u64,
}

impl Slot {
    fn new() -> Self {
        Self {
            sent: 0,
            created: 0,
            refused: BTreeMap::new(),
            alerts: 0,
            late_alerts: 0,
            alert: None,
            invite: None,
            open_streams: 0,
            ghost_offers: 0,
        }
    }
}

fn record(h: &mut Option<Histogram<u32>>, latency: Duration) {
    if h.is_none() {
        *h = Histogram::new_with_bounds(1, MAX_UNITS, 2).ok();
    }
    if let Some(h) = h {
        let units = u64::try_from(latency.as_micros() / u128::from(UNIT_US)).unwrap_or(MAX_UNITS);
        h.saturating_record(units.clamp(1, MAX_UNITS));
    }
}

fn p99_ms(h: &Option<Histogram<u32>>) -> Option<f64> {
    h.as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| (h.value_at_quantile(0.99) * UNIT_US) as f64 / 1000.0)
}

/// A fault the run injected (`--fault`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaultMark {
    /// Seconds from the first invitation.
    pub at_s: f64,
    /// The command as given.
    pub command: String,
    /// Its exit status (null: still running at the end, or killed by a signal).
    pub exit: Option<i32>,
}

/// The timeline being recorded.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    start: Option<Instant>,
    slots: Vec<Slot>,
    /// Faults injected, in order.
    pub faults: Vec<FaultMark>,
}

impl Timeline {
    /// Seconds count from `start` (the first invitation); nothing before it is kept.
    pub fn start(&mut self, start: Instant) {
        self.start = Some(start);
    }

    /// Seconds from the start to `at` (0 before the start).
    pub fn offset(&self, at: Instant) -> f64 {
        self.start
            .map_or(0.0, |s| at.saturating_duration_since(s).as_secs_f64())
    }

    fn slot(&mut self, at: Instant) -> Option<&mut Slot> {
        let start = self.start?;
        let i = usize::try_from(at.checked_duration_since(start)?.as_secs()).ok()?;
        if i >= MAX_SECONDS {
            return None;
        }
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, Slot::new);
        }
        self.slots.get_mut(i)
    }

    /// An invitation POST left.
    pub fn sent(&mut self, at: Instant) {
        if let Some(s) = self.slot(at) {
            s.sent += 1;
        }
    }

    /// An invitation POST that left at `sent_at` was answered 201.
    pub fn created(&mut self, sent_at: Instant, answered_at: Instant) {
        if let Some(s) = self.slot(sent_at) {
            s.created += 1;
            record(
                &mut s.invite,
                answered_at.saturating_duration_since(sent_at),
            );
        }
    }

    /// A call failed or was refused, under `key` (`"<call> <status> <code>"`).
    pub fn refused(&mut self, at: Instant, key: &str) {
        if let Some(s) = self.slot(at) {
            match s.refused.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    s.refused.insert(key.to_owned(), 1);
                }
            }
        }
    }

    /// An alert arrived live, `latency` after its invitation's POST.
    pub fn alert(&mut self, at: Instant, latency: Duration) {
        if let Some(s) = self.slot(at) {
            s.alerts += 1;
            record(&mut s.alert, latency);
        }
    }

    /// An alert was learned late, from a reopened stream's snapshot.
    pub fn late_alert(&mut self, at: Instant) {
        if let Some(s) = self.slot(at) {
            s.late_alerts += 1;
        }
    }

    /// An invitation was offered to an agent whose stream had been down
    /// longer than the fade bound.
    pub fn ghost_offer(&mut self, at: Instant) {
        if let Some(s) = self.slot(at) {
            s.ghost_offers += 1;
        }
    }

    /// Streams open at `at` (the last sample of a second is kept).
    pub fn open_streams(&mut self, at: Instant, open: u64) {
        if let Some(s) = self.slot(at) {
            s.open_streams = open;
        }
    }

    /// A fault was started at `at`; returns its index for [`Timeline::fault_done`].
    pub fn fault(&mut self, at: Instant, command: &str) -> usize {
        self.faults.push(FaultMark {
            at_s: (self.offset(at) * 1000.0).round() / 1000.0,
            command: command.to_owned(),
            exit: None,
        });
        self.faults.len() - 1
    }

    /// Fault `i` exited with `exit`.
    pub fn fault_done(&mut self, i: usize, exit: Option<i32>) {
        if let Some(f) = self.faults.get_mut(i) {
            f.exit = exit;
        }
    }

    /// The seconds as reported.
    pub fn seconds(&self) -> Vec<Second> {
        let mut open = 0;
        self.slots
            .iter()
            .enumerate()
            .map(|(t, s)| {
                // A second without a sample keeps the last one seen.
                if s.open_streams > 0 {
                    open = s.open_streams;
                }
                Second {
                    t: t as u64,
                    sent: s.sent,
                    created: s.created,
                    refused: s.refused.values().sum(),
                    refused_by_reason: s.refused.clone(),
                    alerts: s.alerts,
                    late_alerts: s.late_alerts,
                    ghost_offers: s.ghost_offers,
                    alert_p99_ms: p99_ms(&s.alert),
                    invite_p99_ms: p99_ms(&s.invite),
                    open_streams: open,
                }
            })
            .collect()
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Second {
    /// Seconds from the first invitation.
    pub t: u64,
    /// Invitation POSTs sent.
    pub sent: u64,
    /// Of those, created (201).
    pub created: u64,
    /// Calls of any kind refused or failed in this second.
    pub refused: u64,
    /// The same by `"<call> <status> <code>"`.
    pub refused_by_reason: BTreeMap<String, u64>,
    /// Alerts that arrived live.
    pub alerts: u64,
    /// Alerts learned from a reopened stream's snapshot.
    pub late_alerts: u64,
    /// Offers to agents whose stream had been down longer than the fade bound.
    pub ghost_offers: u64,
    /// p99 of invite → alert for alerts that arrived in this second (ms).
    pub alert_p99_ms: Option<f64>,
    /// p99 of the invitation round trip for POSTs sent in this second (ms).
    pub invite_p99_ms: Option<f64>,
    /// Event streams open.
    pub open_streams: u64,
}

/// A run of seconds in which invitations were refused or failed.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Outage {
    /// First second.
    pub from_s: u64,
    /// One past the last second.
    pub to_s: u64,
    /// Invitation calls refused or failed in it.
    pub refused: u64,
}

impl Outage {
    /// How long it lasted, in seconds (a whole-second resolution).
    pub fn seconds(&self) -> u64 {
        self.to_s - self.from_s
    }
}

/// Whether a refusal of an invitation says it could not be written: a 5xx,
/// a transport failure or no answer — not a rule's 4xx (e.g. a portal
/// whose agents all went away answers 409 `no_agents_online`, rightly).
fn write_refused(key: &str) -> bool {
    key.strip_prefix("invite ").is_some_and(|what| {
        what.starts_with('5') || what == "transport" || what.starts_with("unanswered")
    })
}

/// The runs of seconds in which invitation POSTs could not be written
/// ([`write_refused`]); runs one quiet second apart are one outage.
pub fn outages(seconds: &[Second]) -> Vec<Outage> {
    let mut out: Vec<Outage> = Vec::new();
    for s in seconds {
        let refused: u64 = s
            .refused_by_reason
            .iter()
            .filter(|(k, _)| write_refused(k))
            .map(|(_, n)| n)
            .sum();
        if refused == 0 {
            continue;
        }
        match out.last_mut() {
            Some(o) if s.t <= o.to_s + 1 => {
                o.to_s = s.t + 1;
                o.refused += refused;
            }
            _ => out.push(Outage {
                from_s: s.t,
                to_s: s.t + 1,
                refused,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn events_land_in_their_second_and_p99s_are_per_second() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        // Before the start: not kept.
        tl.sent(t0);
        tl.start(t0 + ms(1));
        let t = t0 + ms(1);
        for i in 0..100 {
            tl.sent(t + ms(i));
            tl.created(t + ms(i), t + ms(i) + ms(2));
            tl.alert(t + ms(i), ms(if i == 99 { 900 } else { 3 }));
        }
        tl.sent(t + ms(2500));
        tl.refused(t + ms(2500), "invite 503 unavailable");
        tl.open_streams(t + ms(10), 40);
        tl.late_alert(t + ms(2600));
        let s = tl.seconds();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].sent, s[0].created, s[0].alerts), (100, 100, 100));
        assert!((s[0].alert_p99_ms.unwrap() - 3.0).abs() < 0.1, "{s:?}");
        assert!((s[0].invite_p99_ms.unwrap() - 2.0).abs() < 0.1);
        assert_eq!((s[1].sent, s[1].alert_p99_ms), (0, None));
        // A second without a stream sample shows the last one.
        assert_eq!((s[1].open_streams, s[2].open_streams), (40, 40));
        assert_eq!((s[2].refused, s[2].late_alerts), (1, 1));
        assert_eq!(s[2].refused_by_reason["invite 503 unavailable"], 1);
    }

    #[test]
    fn outages_are_runs_of_refused_invitations_one_quiet_second_apart_merged() {
        let second = |t: u64, refused: &[(&str, u64)]| Second {
            t,
            sent: 10,
            created: 10,
            refused: refused.iter().map(|(_, n)| n).sum(),
            refused_by_reason: refused.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            alerts: 0,
            late_alerts: 0,
            ghost_offers: 0,
            alert_p99_ms: None,
            invite_p99_ms: None,
            open_streams: 0,
        };
        let seconds = vec![
            second(0, &[]),
            second(1, &[("invite 503 unavailable", 4)]),
            second(2, &[("invite transport", 2)]),
            second(3, &[]),
            second(4, &[("invite 503 unavailable", 1)]),
            second(
                5,
                &[
                    ("accept 503 unavailable", 9),
                    ("invite 409 no_agents_online", 3),
                ],
            ),
            second(6, &[]),
            second(7, &[]),
            second(8, &[("invite 503 unavailable", 1)]),
        ];
        let o = outages(&seconds);
        assert_eq!(
            o,
            vec![
                Outage {
                    from_s: 1,
                    to_s: 5,
                    refused: 7
                },
                Outage {
                    from_s: 8,
                    to_s: 9,
                    refused: 1
                },
            ]
        );
        assert_eq!(o[0].seconds(), 4);
    }
}
