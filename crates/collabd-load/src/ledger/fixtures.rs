//! What the rooms' tests share: a small ledger and the races they replay.

use std::time::Duration;

use tokio::time::Instant;

use super::{AcceptPlan, Config, Delay, Kind, Leave, Ledger, Reply};

pub(super) const GRACE: Duration = Duration::from_secs(5);

pub(super) fn ledger() -> Ledger {
    Ledger::new(Config {
        prefix: "ldx".into(),
        agents: 20,
        racers: 3,
        grace: GRACE,
        accept_delay: Delay::Fixed(Duration::from_millis(10)),
        expected_invitations: 16,
    })
    .unwrap()
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn plans(l: &mut Ledger) -> Vec<AcceptPlan> {
    let mut out = Vec::new();
    l.take_plans(&mut out);
    out
}

pub(super) fn leaves(l: &mut Ledger) -> Vec<Leave> {
    let mut out = Vec::new();
    l.take_leaves(&mut out);
    out
}

/// Sends invitation `id` from session 0 to agents 1..=5 at `t0` and
/// delivers every alert; returns the accepts it asks for.
pub(super) fn offered(l: &mut Ledger, id: &str, masked: bool, t0: Instant) -> Vec<AcceptPlan> {
    l.invited(
        id,
        0,
        masked,
        t0,
        t0 + ms(2),
        vec![1, 2, 3, 4, 5],
        Kind::default(),
    );
    for a in 1..=5 {
        l.alert(id, a, t0 + ms(3));
    }
    plans(l)
}

/// A race where every accept but the winner's was answered `taken`, and
/// the winner's answer was lost.
pub(super) fn lost_winner(l: &mut Ledger, id: &str, masked: bool, t0: Instant) -> AcceptPlan {
    let accepts = offered(l, id, masked, t0);
    let winner = accepts[0].clone();
    for p in &accepts[1..] {
        l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), Reply::Taken);
    }
    l.replied(
        winner.key,
        winner.agent,
        0,
        t0 + ms(13),
        t0 + ms(13) + ms(10_000),
        Reply::Lost,
    );
    winner
}
