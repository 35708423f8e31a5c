//! What a commit does to the stored state, written once.
//!
//! A [`Commit`] carries the domain's [`Outcome`]; [`effects`] turns it into
//! the list of [`Effect`]s every backplane carries out: the memory backplane
//! changes its maps by them, the Redis backplane encodes each as an op of the
//! commit script (`redis/commit.rs`). Before this plan each backplane read the
//! outcome itself and they drifted (an escalated invitation's claim was
//! dropped by one and kept by the other).
//!
//! [`effects`] destructures every field of [`Commit`] and [`Outcome`] by
//! name, without `..`: a field added to either does not compile until
//! someone decides here what it does to the store.
//!
//! Not effects: the version check and the guard (preconditions, checked
//! before anything is written), the new hot state (always written) and the
//! fan-out (`Commit::publish`, sent once the change is stored).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Commit;
use crate::domain::session::{IndexDelta, Target, Timer};
use crate::domain::{AgentId, AuditEntry, Invitation, InvitationId, Message, Outcome};

/// One change a commit makes to the store besides the hot state, in the
/// order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect<'a> {
    /// The session is new: it joins the list of active sessions, and
    /// nothing of an earlier session under the same id survives.
    Listed,
    /// A message joins the transcript; `to_customer`: also the customer's.
    Posted {
        /// The message.
        message: &'a Message,
        /// Whether the customer may read it.
        to_customer: bool,
    },
    /// An entry joins the session's audit trail and the account's.
    Audited(&'a AuditEntry),
    /// The account's trail drops what is past the retention (once per
    /// commit that adds entries).
    AuditTrimmed,
    /// A closed invitation leaves the hot state for the session's history.
    Archived(&'a Invitation),
    /// Nobody needs the claim taken for this invitation any more: it was
    /// decided, or moved to another target (an escalation).
    ClaimDropped(&'a InvitationId),
    /// The invitation is open for `target` (its recipients list it).
    Opened {
        /// The invitation.
        invitation: &'a InvitationId,
        /// For whom.
        target: &'a Target,
    },
    /// The invitation is no longer open for `target`.
    Unlisted {
        /// The invitation.
        invitation: &'a InvitationId,
        /// For whom it was.
        target: &'a Target,
    },
    /// The agent is active in the session now (it counts towards its limit).
    Joined(&'a AgentId),
    /// The agent is no longer active in it.
    Left(&'a AgentId),
    /// A timer of the session is no longer needed.
    Disarmed(&'a Timer),
    /// A timer of the session fires at `at` (armed, or moved).
    Armed(&'a Timer, DateTime<Utc>),
    /// The session ended: it moves to the list of ended sessions and
    /// everything of it is kept for `retention`, then deleted.
    Ended {
        /// How long it is kept.
        retention: Duration,
    },
}

/// The effects of `commit`, in the order they are made.
pub fn effects<'a>(commit: &Commit<'a>) -> Vec<Effect<'a>> {
    let Commit {
        // Preconditions, checked before anything is written.
        expected_version,
        guard: _,
        // Always written, as the new version.
        session: _,
        outcome,
        // Sent once the change is stored; nothing is kept of it.
        publish: _,
        retention,
    } = *commit;
    let Outcome {
        // The events reach others as `Commit::publish` (built from them and
        // from the audience by the session's use case); nothing stores them.
        events: _,
        audience: _,
        closed,
        message,
        delta:
            IndexDelta {
                joined,
                left,
                opened,
                closed: unlisted,
            },
        arm,
        disarm,
        ended,
        audit,
    } = outcome;
    let mut out = Vec::with_capacity(
        2 + audit.len()
            + 2 * closed.len()
            + opened.len()
            + 2 * unlisted.len()
            + joined.len()
            + left.len()
            + arm.len()
            + disarm.len(),
    );
    if expected_version == 0 {
        out.push(Effect::Listed);
    }
    if let Some(message) = message {
        out.push(Effect::Posted {
            message,
            to_customer: message.customer_seq.is_some(),
        });
    }
    out.extend(audit.iter().map(Effect::Audited));
    if !audit.is_empty() {
        out.push(Effect::AuditTrimmed);
    }
    for invitation in closed {
        out.push(Effect::Archived(invitation));
        out.push(Effect::ClaimDropped(&invitation.id));
    }
    out.extend(
        opened
            .iter()
            .map(|(invitation, target)| Effect::Opened { invitation, target }),
    );
    for (invitation, target) in unlisted {
        out.push(Effect::Unlisted { invitation, target });
        // Still open, for another target (an escalation): the claim was
        // taken for the old one. A closed one's claim went with `Archived`.
        if !closed.iter().any(|c| &c.id == invitation) {
            out.push(Effect::ClaimDropped(invitation));
        }
    }
    out.extend(joined.iter().map(Effect::Joined));
    out.extend(left.iter().map(Effect::Left));
    out.extend(disarm.iter().map(Effect::Disarmed));
    out.extend(arm.iter().map(|(timer, at)| Effect::Armed(timer, *at)));
    if *ended {
        out.push(Effect::Ended { retention });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::directory::display;
    use crate::domain::session::{Command, InvitationKind, Invite, Rules};
    use crate::domain::{AccountId, AgentRef, Policy, PortalId, Session, SessionId, SessionMode};

    fn commit<'a>(session: &'a Session, outcome: &'a Outcome, version: u64) -> Commit<'a> {
        Commit {
            expected_version: version,
            session,
            outcome,
            publish: &[],
            guard: None,
            retention: Duration::from_secs(60),
        }
    }

    /// A session led by `lead`, and the outcome of inviting a portal into it.
    fn session_with_invitation() -> (Session, Outcome) {
        let policy = Policy::default();
        let rules = Rules {
            policy: &policy,
            now: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let sid = SessionId::parse("ses-0123456789abcdef01234567").unwrap();
        let lead = AgentRef {
            id: AgentId::parse("lead").unwrap(),
            name: display("Lead"),
        };
        let account = AccountId::parse("acme").unwrap();
        let (mut session, _) = Session::create(
            sid.clone(),
            account,
            SessionMode::Web,
            lead,
            display("Carl"),
            rules,
        )
        .unwrap();
        let invite = Invite {
            id: InvitationId::within(&sid),
            inviter: AgentId::parse("lead").unwrap(),
            target: Target::Portal(PortalId::parse("support").unwrap()),
            kind: InvitationKind::Collaborate,
            masked: false,
            comment: None,
            online: vec![AgentId::parse("a").unwrap(), AgentId::parse("b").unwrap()],
            escalate: None,
            target_busy: false,
            escalation_online: Vec::new(),
        };
        let outcome = session.apply(&Command::Invite(invite), rules).unwrap();
        (session, outcome)
    }

    #[test]
    fn a_new_session_is_listed_first_and_an_ended_one_last() {
        let (session, mut outcome) = session_with_invitation();
        outcome.ended = true;
        let first = effects(&commit(&session, &outcome, 0));
        assert_eq!(first.first(), Some(&Effect::Listed));
        assert!(matches!(first.last(), Some(Effect::Ended { .. })));
        let later = effects(&commit(&session, &outcome, 3));
        assert!(!later.contains(&Effect::Listed));
    }

    #[test]
    fn a_closed_invitation_is_archived_and_its_claim_dropped_once() {
        let (session, mut outcome) = session_with_invitation();
        let open = session.invitations.first().cloned().unwrap();
        outcome.closed.push(open.clone());
        outcome
            .delta
            .closed
            .push((open.id.clone(), open.target.clone()));
        let effects = effects(&commit(&session, &outcome, 1));
        let drops = effects
            .iter()
            .filter(|e| **e == Effect::ClaimDropped(&open.id))
            .count();
        assert_eq!(drops, 1, "{effects:?}");
        assert!(effects.contains(&Effect::Archived(&open)));
        assert!(effects.contains(&Effect::Unlisted {
            invitation: &open.id,
            target: &open.target
        }));
    }

    #[test]
    fn a_moved_invitation_keeps_its_place_but_loses_its_claim() {
        let (session, mut outcome) = session_with_invitation();
        let id = session.invitations.first().unwrap().id.clone();
        let old = Target::Agent(AgentId::parse("a").unwrap());
        outcome.delta.closed.push((id.clone(), old.clone()));
        let effects = effects(&commit(&session, &outcome, 1));
        assert!(effects.contains(&Effect::Unlisted {
            invitation: &id,
            target: &old
        }));
        assert!(effects.contains(&Effect::ClaimDropped(&id)));
        assert!(!effects.iter().any(|e| matches!(e, Effect::Archived(_))));
    }

    #[test]
    fn audit_entries_are_trimmed_once_after_them() {
        let (session, outcome) = session_with_invitation();
        assert!(!outcome.audit.is_empty(), "an invitation is audited");
        let effects = effects(&commit(&session, &outcome, 1));
        let trims: Vec<usize> = effects
            .iter()
            .enumerate()
            .filter(|(_, e)| **e == Effect::AuditTrimmed)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(trims.len(), 1);
        let last_entry = effects
            .iter()
            .rposition(|e| matches!(e, Effect::Audited(_)))
            .unwrap();
        assert!(last_entry < trims[0]);
        let quiet = Outcome::default();
        assert!(super::effects(&commit(&session, &quiet, 1)).is_empty());
    }
}
