//! What a customer must never see, flagged as each frame of its stream
//! arrives (an agent id, a comment, an invitation id), and the agents it is
//! shown joining and leaving, which [`Ledger::finish`] holds against the
//! joins it may see.

use serde::Deserialize;

use super::{Ledger, key};

#[derive(Deserialize)]
struct NameOnly<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct AgentNamed<'a> {
    #[serde(borrow)]
    agent: NameOnly<'a>,
}

impl Ledger {
    /// One event of session `session`'s customer stream: flags at once
    /// whatever a customer must never see (an agent id, a comment, an
    /// invitation id) and counts the agents shown joining and leaving.
    pub fn customer_frame(&mut self, session: u32, name: &str, data: &str) {
        self.tally.customer_events += 1;
        if data.contains(&self.agent_marker) {
            self.leaks.agent_id += 1;
            return;
        }
        if data.contains(&self.comment_marker) {
            self.leaks.comment += 1;
            return;
        }
        let tokens = data.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        if tokens
            .filter(|t| !t.is_empty())
            .any(|t| self.known.contains(&key(t)))
        {
            self.leaks.invitation_id += 1;
            return;
        }
        let shown = match name {
            "agent_joined" => 0,
            "agent_left" => 1,
            _ => return,
        };
        let agent = serde_json::from_str::<AgentNamed<'_>>(data)
            .ok()
            .and_then(|a| a.agent.name.strip_prefix("Agent ")?.parse::<u32>().ok())
            .filter(|a| (*a as usize) < self.cfg.agents);
        match agent {
            Some(agent) => self.shown.entry((session, agent)).or_default()[shown] += 1,
            None => self.leaks.unreadable += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ledger::fixtures::*;
    use crate::ledger::{Kind, Reply};
    use tokio::time::Instant;

    #[test]
    fn each_kind_of_customer_leak_is_counted_as_it_arrives() {
        let mut l = ledger();
        let t0 = Instant::now();
        // Agent 9 won an unmasked invitation of session 1; a masked one of
        // session 0 was won by someone whose answer was lost, then learned.
        l.invited(
            "inv-open",
            1,
            false,
            t0,
            t0 + ms(2),
            vec![9],
            Kind::default(),
        );
        l.alert("inv-open", 9, t0 + ms(3));
        let p = plans(&mut l).pop().unwrap();
        l.replied(p.key, 9, 1, t0 + ms(13), t0 + ms(15), Reply::Won);
        let masked = lost_winner(&mut l, "inv-masked", true, t0);
        l.announced("inv-masked", Some(masked.agent));
        let named = |i: u32| format!(r#"{{"agent":{{"name":"Agent {i}"}}}}"#);
        let clean = [
            ("snapshot", r#"{"agents":[{"name":"Agent 0"}]}"#.to_owned()),
            ("agent_joined", named(9)),
            ("agent_left", named(9)),
            (
                "reconnect_required",
                r#"{"generation":2,"reshare_screen":true}"#.to_owned(),
            ),
            (
                "message",
                r#"{"message":{"text":"an inventory of things"}}"#.to_owned(),
            ),
        ];
        for (name, data) in &clean {
            l.customer_frame(1, name, data);
        }
        // Planted: a masked agent's name, a comment, an invitation id, an
        // agent id, and the unmasked agent shown twice for one join.
        l.customer_frame(0, "agent_joined", &named(masked.agent));
        l.customer_frame(1, "message", r#"{"message":{"text":"note ldx #3"}}"#);
        l.customer_frame(1, "message", r#"{"message":{"text":"see inv-open."}}"#);
        l.customer_frame(1, "message", r#"{"id":"ldx-ag7"}"#);
        l.customer_frame(1, "agent_joined", &named(9));
        l.customer_frame(0, "agent_joined", r#"{"agent":{"name":"Mallory"}}"#);
        let o = l.finish();
        let k = o.leaks;
        assert_eq!(
            (
                k.masked_agent,
                k.comment,
                k.invitation_id,
                k.agent_id,
                k.unreadable
            ),
            (2, 1, 1, 1, 1),
            "{k:?}"
        );
        assert_eq!(o.customer_leaks, 6);
        assert_eq!(o.customer_events, 11);
    }
}
