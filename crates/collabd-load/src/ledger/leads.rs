//! One lead per session: a won transfer makes its winner the lead at once
//! (however the win was learned), one transfer per session is open at a
//! time, and the lead it took over from may be shown leaving.

use super::Ledger;

/// A session the run transferred: what the check after the drain compares
/// the session's agent view with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// The session.
    pub session: u32,
    /// Its lead as the run knows it.
    pub lead: u32,
    /// Every agent that led it before, the lead excepted.
    pub previous: Vec<u32>,
}

/// One session's leads.
#[derive(Debug, Clone, Default)]
pub(super) struct Leads {
    current: u32,
    /// Agents that led it before, in order (the current one may be among
    /// them, if it led before).
    previous: Vec<u32>,
    /// A transfer of it is being sent or in play.
    transfer_open: bool,
    /// Transfers of it that were won.
    completed: u32,
}

impl Ledger {
    /// Session `session` was opened, led by `lead` (sessions are numbered
    /// from 0 in the order they are opened).
    pub fn opened(&mut self, session: u32, lead: u32) {
        let s = session as usize;
        if self.leads.len() <= s {
            self.leads.resize(s + 1, Leads::default());
        }
        self.leads[s] = Leads {
            current: lead,
            ..Leads::default()
        };
    }

    /// Session `session`'s lead, as far as the run knows.
    pub fn lead(&self, session: u32) -> Option<u32> {
        self.leads.get(session as usize).map(|l| l.current)
    }

    /// True while a transfer of `session` is being sent or in play.
    pub fn transfer_open(&self, session: u32) -> bool {
        self.leads
            .get(session as usize)
            .is_some_and(|l| l.transfer_open)
    }

    /// Reserves `session` for a transfer about to be sent: false (and
    /// nothing reserved) when one is open already.
    pub fn begin_transfer(&mut self, session: u32) -> bool {
        match self.leads.get_mut(session as usize) {
            Some(l) if !l.transfer_open => {
                l.transfer_open = true;
                true
            }
            _ => false,
        }
    }

    /// The transfer reserved for `session` was not created.
    pub fn transfer_not_created(&mut self, session: u32) {
        if let Some(l) = self.leads.get_mut(session as usize) {
            l.transfer_open = false;
        }
    }

    /// The sessions that were transferred, with their lead and earlier leads.
    pub fn transferred(&self) -> Vec<Transferred> {
        self.leads
            .iter()
            .enumerate()
            .filter(|(_, l)| l.completed > 0)
            .map(|(s, l)| {
                let mut previous: Vec<u32> = l
                    .previous
                    .iter()
                    .copied()
                    .filter(|a| *a != l.current)
                    .collect();
                previous.sort_unstable();
                previous.dedup();
                Transferred {
                    session: s as u32,
                    lead: l.current,
                    previous,
                }
            })
            .collect()
    }

    /// Transfer winner `winner` now leads `session`; the lead it took over
    /// from left, which the customer sees (`agent_left`).
    fn promote(&mut self, session: u32, winner: u32) {
        let Some(l) = self.leads.get_mut(session as usize) else {
            return;
        };
        l.transfer_open = false;
        l.completed += 1;
        self.tally.transfers.completed += 1;
        if l.current != winner {
            let old = std::mem::replace(&mut l.current, winner);
            l.previous.push(old);
            self.allowed.entry((session, old)).or_default()[1] += 1;
        }
    }

    pub(super) fn promote_winner(&mut self, promoted: Option<(u32, u32)>) {
        if let Some((session, winner)) = promoted {
            self.promote(session, winner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures::*;
    use crate::ledger::{Kind, Reply};
    use tokio::time::Instant;

    fn transfer() -> Kind {
        Kind {
            transfer: true,
            ..Kind::default()
        }
    }

    #[test]
    fn a_won_transfer_makes_its_winner_lead_and_only_the_old_lead_may_be_shown_leaving() {
        let mut l = ledger();
        let t0 = Instant::now();
        l.opened(0, 0);
        l.opened(1, 10);
        assert_eq!((l.lead(0), l.lead(1), l.lead(2)), (Some(0), Some(10), None));
        assert!(l.begin_transfer(0));
        assert!(!l.begin_transfer(0), "one transfer per session at a time");
        assert!(l.transfer_open(0) && !l.transfer_open(1));
        l.invited(
            "inv-t",
            0,
            false,
            t0,
            t0 + ms(2),
            vec![1, 2, 3, 4, 5],
            transfer(),
        );
        for a in 1..=5 {
            l.alert("inv-t", a, t0 + ms(3));
        }
        let accepts = plans(&mut l);
        assert!(accepts.iter().all(|p| p.transfer));
        let w = accepts[0].agent;
        l.replied(accepts[0].key, w, 0, t0 + ms(13), t0 + ms(15), Reply::Won);
        // Known as soon as it is answered: later invitations go out from it.
        assert_eq!(l.lead(0), Some(w));
        assert!(!l.transfer_open(0));
        assert!(leaves(&mut l).is_empty(), "a transfer's winner stays");
        assert_eq!(
            l.transferred(),
            vec![Transferred {
                session: 0,
                lead: w,
                previous: vec![0]
            }]
        );
        // The winner hands it back to agent 0 through a lost answer,
        // learned from the announcement: no leave either.
        assert!(l.begin_transfer(0));
        l.invited("inv-u", 0, false, t0, t0 + ms(40), vec![0], transfer());
        l.alert("inv-u", 0, t0 + ms(41));
        let back = plans(&mut l).pop().unwrap();
        l.replied(back.key, 0, 0, t0 + ms(51), t0 + ms(10_051), Reply::Lost);
        l.announced("inv-u", Some(0));
        assert!(leaves(&mut l).is_empty());
        assert_eq!(l.lead(0), Some(0));
        assert_eq!(
            l.transferred()[0].previous,
            vec![w],
            "the lead is not an earlier lead"
        );
        // The customer saw the winner come and go and agent 0 go and come
        // back: no leak. A loser of the race shown leaving, or agent 0 shown
        // joining once more, is one each.
        let named = |i: u32| format!(r#"{{"agent":{{"name":"Agent {i}"}}}}"#);
        l.customer_frame(0, "agent_joined", &named(w));
        l.customer_frame(0, "agent_left", &named(0));
        l.customer_frame(0, "agent_joined", &named(0));
        l.customer_frame(0, "agent_left", &named(w));
        l.customer_frame(0, "agent_left", &named(accepts[1].agent));
        l.customer_frame(0, "agent_joined", &named(0));
        let o = l.finish();
        assert_eq!(o.transfers.completed, 2);
        assert_eq!((o.leaks.masked_agent, o.customer_leaks), (2, 2));
    }

    #[test]
    fn a_transfer_nobody_took_frees_its_session_and_counts_once_if_superseded() {
        let mut l = ledger();
        let t0 = Instant::now();
        l.opened(0, 0);
        assert!(l.begin_transfer(0));
        l.transfer_not_created(0);
        assert!(l.begin_transfer(0), "a refused transfer frees its session");
        l.invited("inv-v", 0, false, t0, t0 + ms(2), vec![4], transfer());
        l.sweep(t0 + ms(2) + GRACE);
        assert!(!l.transfer_open(0), "judged without a winner");
        assert_eq!(l.lead(0), Some(0));
        // Another transfer wins later: this one is cancelled, which is
        // counted, once, and is no late event.
        l.withdrawn_for("inv-v", 4, t0 + GRACE * 2, true);
        l.withdrawn_for("inv-v", 4, t0 + GRACE * 2, true);
        let o = l.finish();
        assert_eq!(o.transfers.superseded, 1);
        assert_eq!(o.late_events, 1, "only the repeat is late");
        assert!(l.transferred().is_empty());
    }
}
