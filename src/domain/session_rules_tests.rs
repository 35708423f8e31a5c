//! Specification of the session rules.
//!
//! One test per rule of the session aggregate, written against
//! `Session::create`, `Session::apply`, `check_accept` and the closed
//! invitation's `accept_again` / `decline_again` only. The helpers at the top
//! build a session with a lead (`lead`) and drive it with readable commands;
//! every test then states one rule.
//!
//! The session is *hot state*: only open invitations live in it. The spec
//! keeps what the commit would append beside it — closed invitations (the
//! history) and chat messages (the transcript) — so that a test can ask what
//! became of an invitation wherever it now lives. Every command the spec runs
//! is checked against the laws every outcome obeys (`check_outcome`), and
//! every refusal against the rule that a refused command changes nothing
//! (`assert_refused`).

use crate::domain::directory::display;
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::directory::AgentRef;
use super::error::DomainError;
use super::id::{AccountId, AgentId, InvitationId, MessageId, PortalId, SessionId};
use super::policy::{Policy, SessionMode};
use super::session::{
    Accept, Audience, Author, Cancel, CheckIdle, Command, Comment, CustomerReconnected, Decline,
    End, EndReason, Ending, Escalate, EscalateAfter, Event, Expire, IndexDelta, Invitation,
    InvitationKind, InvitationStatus, InvitationSummary, Invite, Leave, MAX_COMMENT_CHARS,
    MAX_MASK_CHANGES, MAX_MESSAGE_CHARS, Message, Outcome, Post, Poster, RecipientGone, Role,
    Rules, Session, SessionStatus, SetMasked, Target, Timer, WithdrawReason, check_accept,
};
use super::visibility::{Viewer, message_view};

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

/// The agent who creates every session in this file.
const LEAD: &str = "lead";

/// When every session in this file is created.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

/// `secs` seconds after the session was created.
fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

/// The id of every session in this file: a real one (`ses-` and 24 hex
/// digits), so that `InvitationId::within` can name it.
fn session_id() -> SessionId {
    SessionId::parse("ses-0123456789abcdef01234567").unwrap()
}

fn id(name: &str) -> AgentId {
    AgentId::parse(name).unwrap()
}

fn ids(names: &[&str]) -> Vec<AgentId> {
    names.iter().map(|n| id(n)).collect()
}

fn agent(name: &str) -> AgentRef {
    AgentRef {
        id: id(name),
        name: display(&format!("Agent {name}")),
    }
}

fn inv(raw: &str) -> InvitationId {
    InvitationId::parse(raw).unwrap()
}

fn portal() -> Target {
    Target::Portal(PortalId::parse("support").unwrap())
}

fn direct(name: &str) -> Target {
    Target::Agent(id(name))
}

fn invalid(detail: &str) -> DomainError {
    DomainError::Invalid(detail.to_owned())
}

/// An invitation about to be sent; `masked` and `comment` are opt-in.
struct Draft {
    inviter: &'static str,
    target: Target,
    online: Vec<AgentId>,
    kind: InvitationKind,
    masked: bool,
    comment: Option<String>,
    escalate: Option<EscalateAfter>,
    target_busy: bool,
    escalation_online: Vec<AgentId>,
}

/// `inviter` invites `target`; `online` are the agents logged in for it now.
fn invite(inviter: &'static str, target: Target, online: &[&str]) -> Draft {
    Draft {
        inviter,
        target,
        online: ids(online),
        kind: InvitationKind::Collaborate,
        masked: false,
        comment: None,
        escalate: None,
        target_busy: false,
        escalation_online: Vec::new(),
    }
}

impl Draft {
    fn masked(mut self) -> Self {
        self.masked = true;
        self
    }

    /// Escalates to `support` after `secs`; `portal_online` are the
    /// portal's agents below their limit if it escalates when sent.
    fn escalate(mut self, secs: u32, portal_online: &[&str]) -> Self {
        self.escalate = Some(EscalateAfter {
            after_secs: secs,
            portal: PortalId::parse("support").unwrap(),
        });
        self.escalation_online = ids(portal_online);
        self
    }

    /// The direct target is at its session limit.
    fn busy(mut self) -> Self {
        self.target_busy = true;
        self
    }

    fn transfer(mut self) -> Self {
        self.kind = InvitationKind::Transfer;
        self
    }

    fn comment(mut self, text: &str) -> Self {
        self.comment = Some(text.to_owned());
        self
    }

    fn command(self, invitation: InvitationId) -> Command {
        Invite {
            id: invitation,
            inviter: id(self.inviter),
            target: self.target,
            kind: self.kind,
            masked: self.masked,
            comment: self
                .comment
                .and_then(|c| Comment::parse(&c).expect("a valid comment")),
            online: self.online,
            escalate: self.escalate,
            target_busy: self.target_busy,
            escalation_online: self.escalation_online,
        }
        .into()
    }
}

fn decline(invitation: &InvitationId, who: &str) -> Command {
    Decline {
        invitation: invitation.clone(),
        agent: agent(who),
    }
    .into()
}

fn cancel(invitation: &InvitationId, by: &str) -> Command {
    Cancel {
        invitation: invitation.clone(),
        by: id(by),
    }
    .into()
}

fn expire(invitation: &InvitationId) -> Command {
    Expire {
        invitation: invitation.clone(),
    }
    .into()
}

fn gone(who: &str) -> Command {
    RecipientGone { agent: id(who) }.into()
}

fn post(who: &str, text: &str, audience: Audience) -> Command {
    Post {
        id: MessageId::parse("msg-1").unwrap(),
        author: Poster::Agent(id(who)),
        text: text.to_owned(),
        audience,
    }
    .into()
}

fn customer_post(text: &str) -> Command {
    Post {
        id: MessageId::parse("msg-1").unwrap(),
        author: Poster::Customer,
        text: text.to_owned(),
        audience: Audience::Agents, // customers always write to everyone
    }
    .into()
}

fn leave(who: &str) -> Command {
    Leave {
        agent: id(who),
        by_admin: false,
    }
    .into()
}

fn end(by: &str) -> Command {
    End { by: id(by) }.into()
}

fn reconnected(generation: u32) -> Command {
    CustomerReconnected {
        generation,
        screen_shared: true,
    }
    .into()
}

fn check_idle() -> Command {
    CheckIdle.into()
}

/// Creates this file's `web` session led by `lead` under `policy` at `now`.
fn create(
    mode: SessionMode,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(Session, Outcome), DomainError> {
    Session::create(
        session_id(),
        AccountId::parse("acme").unwrap(),
        mode,
        agent(LEAD),
        display("Carol Customer"),
        Rules { policy, now },
    )
}

/// Applies `command` to `session`, which must refuse it with `expected` and
/// be exactly as it was before.
fn assert_refused(
    session: &mut Session,
    command: &Command,
    rules: Rules<'_>,
    expected: DomainError,
) {
    let before = session.clone();
    let result = session.apply(command, rules);
    assert_eq!(result, Err(expected), "{command:?}");
    assert_eq!(
        *session, before,
        "the refused {command:?} changed the session"
    );
}

/// A session under test, its policy, the clock, the last claim's fence, and
/// what the commits would have appended beside it.
struct Spec {
    policy: Policy,
    session: Session,
    now: DateTime<Utc>,
    fence: u64,
    /// Closed invitations, in the order they closed.
    history: Vec<Invitation>,
    /// Chat messages, in the order they were written.
    transcript: Vec<Message>,
}

impl Spec {
    /// A `web` session led by `lead`, under the default policy.
    fn new() -> Self {
        Self::with(Policy::default())
    }

    /// A `web` session led by `lead`, under `policy`.
    fn with(policy: Policy) -> Self {
        let (session, _) = create(SessionMode::Web, &policy, t0()).unwrap();
        Self {
            policy,
            session,
            now: t0(),
            fence: 0,
            history: Vec::new(),
            transcript: Vec::new(),
        }
    }

    /// A session in which `lead` and then each of `others` (unmasked) are participants.
    fn with_participants(others: &[&'static str]) -> Self {
        let mut spec = Self::new();
        for a in others {
            spec.join(a);
        }
        spec
    }

    fn advance(&mut self, secs: i64) {
        self.now += Duration::seconds(secs);
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            policy: &self.policy,
            now: self.now,
        }
    }

    /// What `command` would do now, leaving the spec as it is.
    fn try_(&self, command: &Command) -> Result<Outcome, DomainError> {
        let mut scratch = self.session.clone();
        let result = scratch.apply(command, self.rules());
        if result.is_err() {
            assert_eq!(scratch, self.session, "the refused {command:?} changed it");
        }
        result
    }

    /// Applies `command` now, which must succeed and obey the laws of every
    /// outcome; keeps the closed invitations and the message beside the state.
    fn run(&mut self, command: Command) -> Outcome {
        let rules = Rules {
            policy: &self.policy,
            now: self.now,
        };
        let outcome = self
            .session
            .apply(&command, rules)
            .unwrap_or_else(|e| panic!("{command:?} was refused: {e}"));
        check_outcome(&self.session, &outcome);
        self.history.extend(outcome.closed.iter().cloned());
        self.transcript.extend(outcome.message.clone());
        outcome
    }

    /// `command` must be refused now with `expected`, changing nothing.
    fn refuse(&mut self, command: Command, expected: DomainError) {
        let rules = Rules {
            policy: &self.policy,
            now: self.now,
        };
        assert_refused(&mut self.session, &command, rules, expected);
    }

    /// The id the next invitation gets.
    fn next_invitation_id(&self) -> InvitationId {
        inv(&format!("inv-{}", self.session.counters.invitations + 1))
    }

    fn try_invite(&self, draft: Draft) -> Result<Outcome, DomainError> {
        self.try_(&draft.command(self.next_invitation_id()))
    }

    fn refuse_invite(&mut self, draft: Draft, expected: DomainError) {
        let command = draft.command(self.next_invitation_id());
        self.refuse(command, expected);
    }

    /// Sends the invitation, which must succeed; its id.
    fn send(&mut self, draft: Draft) -> InvitationId {
        self.send_with_outcome(draft).0
    }

    fn send_with_outcome(&mut self, draft: Draft) -> (InvitationId, Outcome) {
        let id = self.next_invitation_id();
        let outcome = self.run(draft.command(id.clone()));
        (id, outcome)
    }

    fn accept_command(&mut self, invitation: &InvitationId, who: &str, active: u32) -> Command {
        self.fence += 1;
        Accept {
            invitation: invitation.clone(),
            agent: agent(who),
            active_sessions: active,
            fence: self.fence,
        }
        .into()
    }

    /// What `who` (in no other session) accepting would do now.
    fn try_accept(&mut self, invitation: &InvitationId, who: &str) -> Result<Outcome, DomainError> {
        let command = self.accept_command(invitation, who, 0);
        self.try_(&command)
    }

    /// `who`, in `active` other sessions, accepting must be refused with `expected`.
    fn refuse_accept(
        &mut self,
        invitation: &InvitationId,
        who: &str,
        active: u32,
        expected: DomainError,
    ) {
        let command = self.accept_command(invitation, who, active);
        self.refuse(command, expected);
    }

    /// `who` accepts, which must succeed.
    fn accept(&mut self, invitation: &InvitationId, who: &str) -> Outcome {
        let command = self.accept_command(invitation, who, 0);
        self.run(command)
    }

    /// `who` accepts the *closed* `invitation`: the hot state no longer
    /// knows it (and changes nothing), the history answers.
    fn accept_closed(&mut self, invitation: &InvitationId, who: &str) -> Result<(), DomainError> {
        self.refuse_accept(invitation, who, 0, DomainError::InvitationNotFound);
        self.closed(invitation).accept_again(&id(who))
    }

    /// `who` declines the *closed* `invitation`: the hot state no longer
    /// knows it (and changes nothing), the history answers.
    fn decline_closed(&mut self, invitation: &InvitationId, who: &str) -> Result<(), DomainError> {
        self.refuse(decline(invitation, who), DomainError::InvitationNotFound);
        self.closed(invitation).decline_again(&id(who))
    }

    /// `who` is invited directly by the lead and joins; the accept's outcome.
    fn join(&mut self, who: &'static str) -> Outcome {
        let i = self.send(invite(LEAD, direct(who), &[who]));
        self.accept(&i, who)
    }

    /// `who` is invited directly and masked by the lead and joins.
    fn join_masked(&mut self, who: &'static str) -> Outcome {
        let i = self.send(invite(LEAD, direct(who), &[who]).masked());
        self.accept(&i, who)
    }

    /// The open invitation `id`, which must still be in the hot state.
    fn pending(&self, id: &InvitationId) -> &Invitation {
        self.session
            .invitation(id)
            .unwrap_or_else(|| panic!("{id} is not open"))
    }

    /// The closed invitation `id`, which must be in the history.
    fn closed(&self, id: &InvitationId) -> &Invitation {
        self.history
            .iter()
            .find(|i| &i.id == id)
            .unwrap_or_else(|| panic!("{id} is not in the history"))
    }

    /// The invitation `id` wherever it lives now.
    fn invitation(&self, id: &InvitationId) -> &Invitation {
        match self.session.invitation(id) {
            Some(open) => open,
            None => self.closed(id),
        }
    }

    fn status(&self, id: &InvitationId) -> InvitationStatus {
        self.invitation(id).status
    }

    fn participant_ids(&self) -> Vec<AgentId> {
        self.session.agent_ids()
    }
}

/// The laws every successful command obeys, whatever it did.
fn check_outcome(after: &Session, outcome: &Outcome) {
    assert!(
        after.invitations.iter().all(Invitation::is_pending),
        "only open invitations are hot state: {:?}",
        after.invitations
    );
    for closed in &outcome.closed {
        assert!(!closed.is_pending(), "{closed:?}");
        assert!(
            after.invitation(&closed.id).is_none(),
            "{} stayed",
            closed.id
        );
        assert!(
            outcome
                .delta
                .closed
                .contains(&(closed.id.clone(), closed.target.clone())),
            "{:?}",
            outcome.delta
        );
        assert!(
            outcome.disarm.contains(&Timer::Expiry(closed.id.clone())),
            "{:?}",
            outcome.disarm
        );
    }
    // An escalation moves an open invitation from one target to another:
    // out of one index and into the other, its expiry armed since it was sent.
    let retargeted = |id: &InvitationId| {
        outcome.delta.closed.iter().any(|(c, _)| c == id)
            && outcome.delta.opened.iter().any(|(o, _)| o == id)
    };
    assert_eq!(
        outcome.delta.closed.len(),
        outcome.closed.len()
            + outcome
                .delta
                .closed
                .iter()
                .filter(|(id, _)| retargeted(id))
                .count()
    );
    for (opened, target) in &outcome.delta.opened {
        let open = after
            .invitation(opened)
            .expect("an opened invitation is open");
        assert_eq!(&open.target, target);
        assert!(
            retargeted(opened)
                || outcome
                    .arm
                    .contains(&(Timer::Expiry(opened.clone()), open.expires_at)),
            "no open invitation lacks its expiry: {:?}",
            outcome.arm
        );
    }
    if let Some(message) = &outcome.message {
        assert_eq!(message.seq, after.counters.messages);
        assert_eq!(
            outcome.events,
            [Event::MessagePosted {
                message: message.clone()
            }]
        );
    }
    let ended_events = outcome
        .events
        .iter()
        .filter(|e| matches!(e, Event::SessionEnded { .. }))
        .count();
    assert_eq!(ended_events, usize::from(outcome.ended));
    if outcome.ended {
        assert!(after.ended.is_some());
        assert!(after.invitations.is_empty());
        assert!(outcome.disarm.contains(&Timer::Idle));
    }
    for agent in after.agent_ids() {
        assert!(
            outcome.audience.contains(&agent),
            "{agent} is in the session"
        );
    }
}

/// Every `InvitationWithdrawn` in `events`: whose alerts and why.
fn withdrawals(events: &[Event]) -> Vec<(Vec<AgentId>, WithdrawReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::InvitationWithdrawn {
                recipients, reason, ..
            } => Some((recipients.clone(), *reason)),
            _ => None,
        })
        .collect()
}

/// How many `CustomerReconnectRequired` events are in `events`.
fn reconnect_requests(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::CustomerReconnectRequired { .. }))
        .count()
}

/// The kind of each event, for order assertions.
fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            Event::InvitationOffered { .. } => "offered",
            Event::InvitationSent { .. } => "sent",
            Event::InvitationWithdrawn { .. } => "withdrawn",
            Event::InvitationEscalated { .. } => "escalated",
            Event::InvitationAccepted { .. } => "accepted",
            Event::InvitationDeclined { .. } => "declined",
            Event::InvitationExpired { .. } => "expired",
            Event::InvitationCancelled { .. } => "cancelled",
            Event::ParticipantJoined { .. } => "joined",
            Event::ParticipantLeft { .. } => "left",
            Event::ParticipantUpdated { .. } => "updated",
            Event::LeadChanged { .. } => "lead_changed",
            Event::MessagePosted { .. } => "message",
            Event::CustomerReconnectRequired { .. } => "reconnect_required",
            Event::CustomerReconnected { .. } => "reconnected",
            Event::SessionEnded { .. } => "session_ended",
        })
        .collect()
}

fn policy(change: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    change(&mut p);
    p
}

/// The session encoded as it is stored, in bytes.
fn encoded_len(session: &Session) -> usize {
    serde_json::to_vec(session).unwrap().len()
}

// ---------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------

#[test]
fn a_new_session_has_its_creator_as_unmasked_lead_and_the_customer_at_generation_one() {
    let spec = Spec::new();
    let s = &spec.session;
    assert_eq!(s.status(), SessionStatus::Active);
    assert_eq!(s.ended, None);
    assert_eq!(s.lead, Some(id(LEAD)));
    assert_eq!(s.participants.len(), 1);
    assert_eq!(s.participants[0].role, Role::Lead);
    assert!(!s.participants[0].masked);
    assert_eq!(s.participants[0].joined_at, t0());
    assert_eq!(s.customer.generation, 1);
    assert!(!s.customer.reconnect_required);
    assert!(s.invitations.is_empty());
    assert_eq!(s.counters, Default::default());
    assert_eq!(s.created_at, t0());
    assert_eq!(s.last_activity, t0());
}

#[test]
fn creating_a_session_in_a_mode_the_policy_does_not_allow_is_feature_disabled() {
    let web_only = policy(|p| p.session_modes = vec![SessionMode::Web]);
    assert_eq!(
        create(SessionMode::Queue, &web_only, t0()).unwrap_err(),
        DomainError::FeatureDisabled("sessions in this mode")
    );
    assert!(create(SessionMode::Web, &web_only, t0()).is_ok());
}

#[test]
fn creating_a_session_joins_its_lead_and_arms_the_idle_timer() {
    let idle_10_min = policy(|p| p.session_idle_timeout_secs = 600);
    let (session, outcome) = create(SessionMode::Web, &idle_10_min, t0()).unwrap();
    assert_eq!(
        outcome.delta,
        IndexDelta {
            joined: ids(&[LEAD]),
            ..Default::default()
        }
    );
    assert_eq!(outcome.arm, [(Timer::Idle, at(600))]);
    assert_eq!(session.idle_deadline(&idle_10_min), at(600));
    assert_eq!(outcome.audience, ids(&[LEAD]));
    assert!(outcome.events.is_empty() && outcome.closed.is_empty());
    assert!(outcome.disarm.is_empty() && !outcome.ended);
}

// ---------------------------------------------------------------------------
// Invite
// ---------------------------------------------------------------------------

#[test]
fn a_portal_invitation_is_offered_to_logged_in_agents_minus_inviter_and_participants() {
    let mut spec = Spec::with_participants(&["bob"]);
    let (i, outcome) =
        spec.send_with_outcome(invite(LEAD, portal(), &[LEAD, "bob", "ann", "cid", "ann"]));
    assert_eq!(kinds(&outcome.events), ["sent", "offered"]);
    let Event::InvitationOffered {
        invitation,
        session,
    } = &outcome.events[1]
    else {
        unreachable!()
    };
    assert_eq!(invitation.id, i);
    assert_eq!(invitation.recipients, ids(&["ann", "cid"]));
    assert_eq!(invitation.status, InvitationStatus::Pending);
    assert_eq!(invitation.inviter, agent(LEAD));
    assert_eq!(invitation.session, spec.session.id);
    assert_eq!(session, &spec.session.brief());
    assert_eq!(spec.pending(&i), invitation);
}

#[test]
fn the_sessions_agents_are_told_of_an_invitation_by_its_summary_without_recipients() {
    let mut spec = Spec::new();
    let (i, outcome) = spec.send_with_outcome(invite(LEAD, portal(), &["ann", "bob", "cid"]));
    let Event::InvitationSent { invitation } = &outcome.events[0] else {
        panic!("{:?}", outcome.events)
    };
    assert_eq!(invitation, &InvitationSummary::from(spec.pending(&i)));
    assert_eq!(invitation.recipient_count, 3);
    assert_eq!(invitation.status, InvitationStatus::Pending);
}

#[test]
fn a_direct_invitation_is_offered_to_its_target_only() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann", "bob"]));
    assert_eq!(spec.pending(&i).recipients, ids(&["ann"]));
}

#[test]
fn an_invitation_expires_the_policys_ttl_after_it_was_sent() {
    let mut spec = Spec::with(policy(|p| p.invitation_ttl_secs = 45));
    spec.advance(7);
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    let sent = spec.pending(&i);
    assert_eq!(sent.created_at, at(7));
    assert_eq!(sent.expires_at, at(7 + 45));
}

#[test]
fn sending_an_invitation_opens_it_for_its_target_and_arms_its_expiry_at_expires_at() {
    let mut spec = Spec::with(policy(|p| p.invitation_ttl_secs = 45));
    spec.advance(7);
    let (i, outcome) = spec.send_with_outcome(invite(LEAD, portal(), &["ann", "bob"]));
    assert_eq!(outcome.arm, [(Timer::Expiry(i.clone()), at(7 + 45))]);
    assert!(outcome.disarm.is_empty());
    assert_eq!(
        outcome.delta,
        IndexDelta {
            opened: vec![(i, portal())],
            ..Default::default()
        },
        "indexed by its target, however many recipients"
    );
}

#[test]
fn an_invitation_carries_its_masking_and_comment() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]).masked().comment("VIP"));
    assert!(spec.pending(&i).masked);
    assert_eq!(spec.pending(&i).comment.as_deref(), Some("VIP"));
}

#[test]
fn an_invitation_id_made_within_the_session_names_the_session() {
    let mut spec = Spec::new();
    let i = InvitationId::within(&spec.session.id);
    spec.run(invite(LEAD, portal(), &["ann"]).command(i.clone()));
    assert_eq!(i.session(), Some(spec.session.id.clone()));
    assert_eq!(spec.pending(&i).session, spec.session.id);
}

#[test]
fn only_a_participant_may_invite() {
    let mut spec = Spec::new();
    spec.refuse_invite(
        invite("eve", direct("ann"), &["ann"]),
        DomainError::NotParticipant,
    );
}

#[test]
fn inviting_when_collaboration_is_off_is_feature_disabled() {
    let mut spec = Spec::with(policy(|p| p.collaboration = false));
    for target in [direct("ann"), portal()] {
        spec.refuse_invite(
            invite(LEAD, target, &["ann"]),
            DomainError::FeatureDisabled("collaboration"),
        );
    }
}

#[test]
fn a_portal_invitation_when_portal_invitations_are_off_is_feature_disabled() {
    let mut spec = Spec::with(policy(|p| p.portal_invitations = false));
    spec.refuse_invite(
        invite(LEAD, portal(), &["ann"]),
        DomainError::FeatureDisabled("portal invitations"),
    );
    assert!(
        spec.try_invite(invite(LEAD, direct("ann"), &["ann"]))
            .is_ok()
    );
}

#[test]
fn a_masked_invitation_when_masking_is_off_is_feature_disabled() {
    let mut spec = Spec::with(policy(|p| p.masking = false));
    spec.refuse_invite(
        invite(LEAD, direct("ann"), &["ann"]).masked(),
        DomainError::FeatureDisabled("masked agents"),
    );
    assert!(
        spec.try_invite(invite(LEAD, direct("ann"), &["ann"]))
            .is_ok()
    );
}

#[test]
fn an_accept_is_checked_against_the_policy_as_it_is_now() {
    // Sent while the feature was on; the account switched it off since.
    type SwitchOff = fn(&mut Policy);
    let cases: [(Draft, SwitchOff, &str); 3] = [
        (
            invite(LEAD, direct("ann"), &["ann"]).masked(),
            |p| p.masking = false,
            "masked agents",
        ),
        (
            invite(LEAD, portal(), &["ann"]),
            |p| p.portal_invitations = false,
            "portal invitations",
        ),
        (
            invite(LEAD, direct("ann"), &["ann"]),
            |p| p.collaboration = false,
            "collaboration",
        ),
    ];
    for (draft, switch_off, feature) in cases {
        let mut spec = Spec::new();
        let sent = spec.send(draft);
        switch_off(&mut spec.policy);
        spec.refuse_accept(&sent, "ann", 0, DomainError::FeatureDisabled(feature));
        // Nothing was decided: switched back on, the same accept goes through.
        spec.policy = Policy::default();
        spec.accept(&sent, "ann");
    }
}

#[test]
fn a_comment_when_comments_are_off_is_feature_disabled() {
    let mut spec = Spec::with(policy(|p| p.comments = false));
    spec.refuse_invite(
        invite(LEAD, direct("ann"), &["ann"]).comment("hi"),
        DomainError::FeatureDisabled("invitation comments"),
    );
    assert!(
        spec.try_invite(invite(LEAD, direct("ann"), &["ann"]))
            .is_ok()
    );
}

#[test]
fn a_comment_of_more_than_500_characters_is_invalid() {
    let spec = Spec::new();
    // Characters, not bytes: 500 two-byte characters are fine.
    let longest = "é".repeat(MAX_COMMENT_CHARS);
    assert_eq!(MAX_COMMENT_CHARS, 500);
    assert!(
        spec.try_invite(invite(LEAD, direct("ann"), &["ann"]).comment(&longest))
            .is_ok()
    );
    // Longer cannot even be made into a Comment, so no command carries one.
    let too_long = "x".repeat(MAX_COMMENT_CHARS + 1);
    assert_eq!(
        Comment::parse(&too_long),
        Err(invalid("comment must be at most 500 characters"))
    );
}

#[test]
fn directly_inviting_an_agent_who_is_not_logged_in_is_agent_unavailable() {
    let mut spec = Spec::new();
    spec.refuse_invite(
        invite(LEAD, direct("ann"), &["bob", "cid"]),
        DomainError::AgentUnavailable,
    );
}

#[test]
fn directly_inviting_an_agent_already_in_the_session_is_already_participant() {
    let mut spec = Spec::with_participants(&["bob"]);
    spec.refuse_invite(
        invite(LEAD, direct("bob"), &["bob"]),
        DomainError::AlreadyParticipant,
    );
    spec.refuse_invite(
        invite(LEAD, direct(LEAD), &[LEAD]),
        DomainError::AlreadyParticipant,
    );
}

#[test]
fn a_portal_invitation_with_nobody_else_online_is_no_agents_online() {
    let mut spec = Spec::with_participants(&["bob"]);
    for online in [&[][..], &[LEAD][..], &[LEAD, "bob"][..]] {
        spec.refuse_invite(invite(LEAD, portal(), online), DomainError::NoAgentsOnline);
    }
}

#[test]
fn inviting_into_a_full_session_is_session_full() {
    let mut spec = Spec::with(policy(|p| p.max_agents_per_session = 2));
    spec.join("bob");
    for target in [direct("ann"), portal()] {
        spec.refuse_invite(invite(LEAD, target, &["ann"]), DomainError::SessionFull);
    }
}

#[test]
fn inviting_into_an_ended_session_is_session_ended() {
    let mut spec = Spec::new();
    spec.run(end(LEAD));
    spec.refuse_invite(
        invite(LEAD, direct("ann"), &["ann"]),
        DomainError::SessionEnded,
    );
}

#[test]
fn a_session_holds_at_most_the_policys_pending_invitations_at_once() {
    let mut spec = Spec::with(policy(|p| p.max_pending_invitations_per_session = 3));
    let first = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.send(invite(LEAD, portal(), &["bob"]));
    spec.send(invite(LEAD, direct("cid"), &["cid"]));
    for target in [portal(), direct("dan")] {
        spec.refuse_invite(
            invite(LEAD, target, &["dan"]),
            DomainError::LimitReached("max_pending_invitations_per_session"),
        );
    }
    spec.run(cancel(&first, LEAD));
    spec.send(invite(LEAD, direct("dan"), &["dan"]));
    assert_eq!(spec.session.invitations.len(), 3);
}

#[test]
fn a_session_sends_at_most_the_policys_invitations_in_its_life() {
    let mut spec = Spec::with(policy(|p| p.max_invitations_per_session = 3));
    for _ in 0..3 {
        let i = spec.send(invite(LEAD, portal(), &["ann"]));
        spec.run(cancel(&i, LEAD));
    }
    assert!(spec.session.invitations.is_empty(), "none is open");
    assert_eq!(spec.session.counters.invitations, 3);
    spec.refuse_invite(
        invite(LEAD, portal(), &["ann"]),
        DomainError::LimitReached("max_invitations_per_session"),
    );
}

// ---------------------------------------------------------------------------
// Accept
// ---------------------------------------------------------------------------

#[test]
fn the_first_recipient_to_accept_joins_as_collaborator_and_wins_the_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.advance(5);
    let outcome = spec.accept(&i, "ann");
    assert_eq!(
        kinds(&outcome.events),
        ["accepted", "withdrawn", "joined", "reconnect_required"]
    );
    let won = spec.closed(&i);
    assert_eq!(won.status, InvitationStatus::Accepted);
    assert_eq!(won.accepted_by, Some(id("ann")));
    assert_eq!(outcome.invitation(&spec.session, &i), Some(won));
    let ann = spec.session.participant(&id("ann")).unwrap();
    assert_eq!(ann.role, Role::Collaborator);
    assert_eq!(ann.agent, agent("ann"));
    assert_eq!(ann.joined_at, at(5));
    assert_eq!(spec.session.lead, Some(id(LEAD)));
}

#[test]
fn a_second_recipient_accepting_is_invitation_taken() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.accept(&i, "ann");
    assert_eq!(
        spec.accept_closed(&i, "bob"),
        Err(DomainError::InvitationTaken)
    );
}

#[test]
fn the_winner_accepting_again_is_ok_and_changes_nothing() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.accept(&i, "ann");
    spec.advance(1);
    let before = spec.session.clone();
    assert_eq!(spec.accept_closed(&i, "ann"), Ok(()));
    assert_eq!(spec.session, before);
}

#[test]
fn an_agent_who_was_not_offered_the_invitation_accepting_is_not_a_recipient() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.refuse_accept(&i, "eve", 0, DomainError::NotARecipient);
    // Even once it is taken, an outsider learns nothing more than that.
    spec.accept(&i, "ann");
    assert_eq!(
        spec.accept_closed(&i, "eve"),
        Err(DomainError::NotARecipient)
    );
}

#[test]
fn accepting_an_unknown_invitation_is_invitation_not_found() {
    let mut spec = Spec::new();
    spec.refuse_accept(&inv("inv-404"), "ann", 0, DomainError::InvitationNotFound);
}

#[test]
fn accepting_a_closed_invitation_is_invitation_closed() {
    let mut spec = Spec::new();
    let cancelled = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.run(cancel(&cancelled, LEAD));
    let declined = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    spec.run(decline(&declined, "ann"));
    let expired = spec.send(invite(LEAD, direct("bob"), &["bob"]));
    spec.advance(i64::from(spec.policy.invitation_ttl_secs));
    spec.run(expire(&expired));
    let gone_away = spec.send(invite(LEAD, direct("cid"), &["cid"]));
    spec.run(gone("cid"));
    // Back before any deadline, so only the closed status can refuse.
    spec.now = t0();
    for (i, who) in [
        (cancelled, "bob"),
        (declined, "ann"),
        (expired, "bob"),
        (gone_away, "cid"),
    ] {
        assert_eq!(
            spec.accept_closed(&i, who),
            Err(DomainError::InvitationClosed),
            "{i}"
        );
    }
}

#[test]
fn accepting_at_or_after_expires_at_is_invitation_closed_even_before_the_timer_fires() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.advance(i64::from(spec.policy.invitation_ttl_secs) - 1);
    assert!(spec.try_accept(&i, "ann").is_ok(), "one second before");
    spec.advance(1);
    spec.refuse_accept(&i, "ann", 0, DomainError::InvitationClosed);
    spec.advance(3600);
    spec.refuse_accept(&i, "ann", 0, DomainError::InvitationClosed);
    assert!(spec.pending(&i).is_pending(), "refusing changed nothing");
}

#[test]
fn accepting_into_a_full_session_is_session_full() {
    let mut spec = Spec::with(policy(|p| p.max_agents_per_session = 2));
    let first = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    let second = spec.send(invite(LEAD, direct("bob"), &["bob"]));
    spec.accept(&first, "ann");
    spec.refuse_accept(&second, "bob", 0, DomainError::SessionFull);
}

#[test]
fn an_agent_at_its_active_session_limit_accepting_is_agent_busy() {
    let mut spec = Spec::with(policy(|p| p.max_active_sessions_per_agent = 3));
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.refuse_accept(&i, "ann", 3, DomainError::AgentBusy);
    spec.refuse_accept(&i, "ann", 7, DomainError::AgentBusy);
    let command = spec.accept_command(&i, "ann", 2);
    assert!(spec.try_(&command).is_ok());
}

#[test]
fn check_accept_answers_what_accepting_would_without_changing_anything() {
    let mut spec = Spec::with(policy(|p| p.max_active_sessions_per_agent = 3));
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob", "cid"]));
    spec.run(decline(&i, "cid"));
    let cases = [
        (i.clone(), "ann", 0, Ok(())),
        (i.clone(), "ann", 3, Err(DomainError::AgentBusy)),
        (i.clone(), "eve", 0, Err(DomainError::NotARecipient)),
        (i.clone(), "cid", 0, Err(DomainError::InvitationClosed)),
        (
            inv("inv-404"),
            "ann",
            0,
            Err(DomainError::InvitationNotFound),
        ),
    ];
    for (invitation, who, active, expected) in cases {
        let checked = check_accept(
            &spec.session,
            &invitation,
            &id(who),
            active,
            &spec.policy,
            spec.now,
        );
        assert_eq!(checked, expected, "{who} accepting {invitation}");
        let command = spec.accept_command(&invitation, who, active);
        assert_eq!(spec.try_(&command).map(|_| ()), expected, "{who}");
    }
}

#[test]
fn every_other_live_recipient_gets_exactly_one_withdrawal_because_another_accepted() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob", "cid", "dan", "eli"]));
    spec.run(decline(&i, "dan")); // already said no: no alert to withdraw
    spec.run(gone("eli")); // already withdrawn when eli logged out
    let outcome = spec.accept(&i, "bob");
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["ann", "cid"]), WithdrawReason::AcceptedByOther)]
    );
}

#[test]
fn accepting_a_direct_invitation_withdraws_nothing() {
    let mut spec = Spec::new();
    let outcome = spec.join("ann");
    assert!(
        withdrawals(&outcome.events).is_empty(),
        "{:?}",
        outcome.events
    );
}

#[test]
fn the_acceptance_records_the_fence_of_the_winning_claim() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.run(
        Accept {
            invitation: i.clone(),
            agent: agent("ann"),
            active_sessions: 0,
            fence: 42,
        }
        .into(),
    );
    assert_eq!(spec.closed(&i).fence, Some(42));
}

#[test]
fn a_masked_invitation_makes_a_masked_participant_and_an_unmasked_one_a_visible_one() {
    let mut spec = Spec::new();
    let outcome = spec.join_masked("ann");
    assert!(outcome.events.iter().any(|e| matches!(
        e,
        Event::ParticipantJoined { participant } if participant.masked
    )));
    assert!(spec.session.participant(&id("ann")).unwrap().masked);
    spec.join("bob");
    assert!(!spec.session.participant(&id("bob")).unwrap().masked);
}

#[test]
fn an_agent_already_in_the_session_accepting_another_invitation_is_already_participant() {
    let mut spec = Spec::new();
    let by_portal = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.join("ann");
    spec.refuse_accept(&by_portal, "ann", 0, DomainError::AlreadyParticipant);
}

// ---------------------------------------------------------------------------
// The customer's reconnect
// ---------------------------------------------------------------------------

#[test]
fn the_customer_must_reconnect_once_when_a_second_agent_first_joins() {
    let mut spec = Spec::new();
    let outcome = spec.join("ann");
    assert_eq!(reconnect_requests(&outcome.events), 1);
    assert!(
        outcome
            .events
            .contains(&Event::CustomerReconnectRequired { generation: 2 })
    );
    assert_eq!(spec.session.customer.generation, 2);
    assert!(spec.session.customer.reconnect_required);
}

#[test]
fn a_masked_second_agent_also_makes_the_customer_reconnect() {
    let mut spec = Spec::new();
    let outcome = spec.join_masked("ann");
    assert!(
        outcome
            .events
            .contains(&Event::CustomerReconnectRequired { generation: 2 })
    );
}

#[test]
fn a_third_agent_joining_asks_no_new_reconnect() {
    let mut spec = Spec::with_participants(&["ann"]);
    let outcome = spec.join("bob");
    assert_eq!(reconnect_requests(&outcome.events), 0);
    assert_eq!(spec.session.customer.generation, 2);
}

#[test]
fn after_someone_left_another_agent_joining_asks_no_new_reconnect() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.run(reconnected(2));
    spec.run(leave("ann"));
    let outcome = spec.join("bob");
    assert_eq!(reconnect_requests(&outcome.events), 0);
    assert_eq!(spec.session.customer.generation, 2);
    assert!(!spec.session.customer.reconnect_required);
}

#[test]
fn the_customer_reconnecting_with_a_stale_generation_is_conflict() {
    let mut spec = Spec::with_participants(&["ann"]);
    for stale in [1, 3] {
        spec.refuse(
            reconnected(stale),
            DomainError::Conflict(format!("the client's generation is 2, not {stale}")),
        );
    }
    assert!(spec.session.customer.reconnect_required);
}

#[test]
fn the_customer_reconnecting_with_the_current_generation_clears_reconnect_required() {
    let mut spec = Spec::with_participants(&["ann"]);
    let outcome = spec.run(reconnected(2));
    assert_eq!(
        outcome.events,
        [Event::CustomerReconnected {
            generation: 2,
            screen_shared: true
        }]
    );
    assert!(!spec.session.customer.reconnect_required);
    assert!(spec.session.customer.screen_shared);
    assert_eq!(spec.session.customer.generation, 2);
}

// ---------------------------------------------------------------------------
// Decline
// ---------------------------------------------------------------------------

#[test]
fn a_portal_invitation_is_declined_only_when_every_recipient_declined() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob", "cid"]));
    for who in ["ann", "bob"] {
        let outcome = spec.run(decline(&i, who));
        assert_eq!(kinds(&outcome.events), ["declined"]);
        assert!(outcome.closed.is_empty() && outcome.delta.is_empty());
        assert_eq!(spec.status(&i), InvitationStatus::Pending, "after {who}");
    }
    assert!(spec.try_accept(&i, "cid").is_ok(), "cid may still accept");
    spec.run(decline(&i, "cid"));
    assert_eq!(spec.closed(&i).status, InvitationStatus::Declined);
    assert_eq!(spec.closed(&i).declined_by, ids(&["ann", "bob", "cid"]));
}

#[test]
fn a_direct_invitation_is_declined_at_once() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    let outcome = spec.run(decline(&i, "ann"));
    let [Event::InvitationDeclined { invitation, by }] = outcome.events.as_slice() else {
        panic!("{:?}", outcome.events);
    };
    assert_eq!(by, &agent("ann"));
    assert_eq!(invitation.status, InvitationStatus::Declined);
    assert_eq!(invitation, &InvitationSummary::from(spec.closed(&i)));
}

#[test]
fn declining_twice_is_a_no_op() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.run(decline(&i, "ann"));
    let before = spec.session.clone();
    let again = spec.run(decline(&i, "ann"));
    assert!(again.is_noop(), "{again:?}");
    assert_eq!(spec.session, before);
    // Still so once everyone declined and the invitation closed.
    spec.run(decline(&i, "bob"));
    assert_eq!(spec.decline_closed(&i, "ann"), Ok(()));
    assert_eq!(spec.decline_closed(&i, "bob"), Ok(()));
}

#[test]
fn declining_an_invitation_not_offered_to_you_is_not_a_recipient() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.refuse(decline(&i, "eve"), DomainError::NotARecipient);
    spec.run(cancel(&i, LEAD));
    assert_eq!(
        spec.decline_closed(&i, "eve"),
        Err(DomainError::NotARecipient)
    );
}

#[test]
fn declining_an_invitation_someone_else_accepted_is_invitation_closed() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.accept(&i, "ann");
    assert_eq!(
        spec.decline_closed(&i, "bob"),
        Err(DomainError::InvitationClosed)
    );
}

#[test]
fn declining_after_logging_out_is_invitation_closed() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.run(gone("ann"));
    spec.refuse(decline(&i, "ann"), DomainError::InvitationClosed);
}

#[test]
fn accepting_again_and_declining_again_answer_for_a_closed_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob", "cid"]));
    spec.run(decline(&i, "cid"));
    spec.accept(&i, "ann");
    let closed = spec.closed(&i);
    let answers = [
        ("ann", Ok(()), Err(DomainError::InvitationClosed)),
        (
            "bob",
            Err(DomainError::InvitationTaken),
            Err(DomainError::InvitationClosed),
        ),
        ("cid", Err(DomainError::InvitationTaken), Ok(())),
        (
            "eve",
            Err(DomainError::NotARecipient),
            Err(DomainError::NotARecipient),
        ),
    ];
    for (who, accept_again, decline_again) in answers {
        assert_eq!(closed.accept_again(&id(who)), accept_again, "{who}");
        assert_eq!(closed.decline_again(&id(who)), decline_again, "{who}");
    }
}

// ---------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------

#[test]
fn a_participant_cancelling_withdraws_every_live_recipient_with_reason_cancelled() {
    let mut spec = Spec::with_participants(&["bob"]);
    let i = spec.send(invite(LEAD, portal(), &["ann", "cid", "dan"]));
    spec.run(decline(&i, "dan"));
    let outcome = spec.run(cancel(&i, "bob")); // any participant, not only the inviter
    assert_eq!(kinds(&outcome.events), ["cancelled", "withdrawn"]);
    assert!(matches!(
        &outcome.events[0],
        Event::InvitationCancelled {
            reason: WithdrawReason::Cancelled,
            ..
        }
    ));
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["ann", "cid"]), WithdrawReason::Cancelled)]
    );
    assert_eq!(spec.closed(&i).status, InvitationStatus::Cancelled);
    assert_eq!(
        spec.closed(&i).closed_reason,
        Some(WithdrawReason::Cancelled)
    );
}

#[test]
fn only_a_participant_may_cancel() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    for who in ["eve", "ann"] {
        spec.refuse(cancel(&i, who), DomainError::NotParticipant);
    }
}

#[test]
fn cancelling_a_closed_invitation_is_refused_by_the_hot_state_which_no_longer_knows_it() {
    let mut spec = Spec::new();
    let cancelled = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.run(cancel(&cancelled, LEAD));
    let accepted = spec.send(invite(LEAD, portal(), &["bob"]));
    spec.accept(&accepted, "bob");
    for i in [cancelled, accepted] {
        // The caller tells invitation_closed from not_found by the history.
        spec.refuse(cancel(&i, LEAD), DomainError::InvitationNotFound);
        assert!(!spec.closed(&i).is_pending());
    }
    spec.refuse(
        cancel(&inv("inv-404"), LEAD),
        DomainError::InvitationNotFound,
    );
}

// ---------------------------------------------------------------------------
// Expire
// ---------------------------------------------------------------------------

#[test]
fn an_invitation_expires_only_once_due_withdrawing_its_recipients() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.advance(i64::from(spec.policy.invitation_ttl_secs));
    let outcome = spec.run(expire(&i));
    assert_eq!(kinds(&outcome.events), ["expired", "withdrawn"]);
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["ann", "bob"]), WithdrawReason::Expired)]
    );
    assert_eq!(spec.closed(&i).status, InvitationStatus::Expired);
    assert_eq!(spec.closed(&i).closed_reason, Some(WithdrawReason::Expired));
}

#[test]
fn an_expiry_timer_firing_early_re_arms_it_at_expires_at_and_changes_nothing() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let expires_at = spec.pending(&i).expires_at;
    spec.advance(i64::from(spec.policy.invitation_ttl_secs) - 1);
    let before = spec.session.clone();
    let early = spec.run(expire(&i));
    assert!(early.events.is_empty(), "{:?}", early.events);
    assert_eq!(early.arm, [(Timer::Expiry(i.clone()), expires_at)]);
    assert!(early.closed.is_empty() && early.disarm.is_empty());
    assert_eq!(spec.session, before);
}

#[test]
fn a_timer_firing_for_a_closed_or_unknown_invitation_or_twice_is_a_no_op() {
    let mut spec = Spec::new();
    let accepted = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.accept(&accepted, "ann");
    let expired = spec.send(invite(LEAD, portal(), &["bob"]));
    spec.advance(10_000);
    spec.run(expire(&expired));
    for i in [accepted.clone(), expired, inv("inv-404")] {
        let before = spec.session.clone();
        let again = spec.run(expire(&i));
        assert!(again.is_noop(), "{i}: {again:?}");
        assert!(again.closed.is_empty() && again.delta.is_empty(), "{i}");
        assert_eq!(spec.session, before, "{i}");
    }
    assert_eq!(
        spec.status(&accepted),
        InvitationStatus::Accepted,
        "an accepted invitation never expires"
    );
}

// ---------------------------------------------------------------------------
// A recipient logs out
// ---------------------------------------------------------------------------

#[test]
fn a_direct_invitee_logging_out_cancels_the_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    let outcome = spec.run(gone("ann"));
    assert_eq!(kinds(&outcome.events), ["cancelled", "withdrawn"]);
    assert!(matches!(
        &outcome.events[0],
        Event::InvitationCancelled {
            reason: WithdrawReason::RecipientUnavailable,
            ..
        }
    ));
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["ann"]), WithdrawReason::RecipientUnavailable)]
    );
    assert_eq!(spec.closed(&i).status, InvitationStatus::Cancelled);
}

#[test]
fn one_of_several_portal_recipients_logging_out_withdraws_only_that_one() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let outcome = spec.run(gone("ann"));
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["ann"]), WithdrawReason::RecipientUnavailable)]
    );
    assert_eq!(kinds(&outcome.events), ["withdrawn"]);
    assert_eq!(spec.pending(&i).live_recipients(), ids(&["bob"]));
    spec.refuse_accept(&i, "ann", 0, DomainError::InvitationClosed);
}

#[test]
fn the_last_portal_recipient_logging_out_cancels_the_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.run(gone("ann"));
    let outcome = spec.run(gone("bob"));
    assert_eq!(kinds(&outcome.events), ["cancelled", "withdrawn"]);
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["bob"]), WithdrawReason::RecipientUnavailable)]
    );
    assert_eq!(spec.closed(&i).status, InvitationStatus::Cancelled);
    assert!(spec.closed(&i).live_recipients().is_empty());
}

#[test]
fn an_agent_logging_out_who_holds_no_alert_changes_nothing() {
    let mut spec = Spec::new();
    spec.send(invite(LEAD, portal(), &["ann"]));
    let before = spec.session.clone();
    let outcome = spec.run(gone("eve"));
    assert!(outcome.is_noop(), "{outcome:?}");
    assert_eq!(spec.session, before);
}

#[test]
fn the_invitation_in_a_logout_cancellation_is_the_invitation_as_stored() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    let outcome = spec.run(gone("ann"));
    let stored = spec.closed(&i);
    assert_eq!(stored.unavailable, ids(&["ann"]));
    for event in &outcome.events {
        match event {
            Event::InvitationCancelled { invitation, .. } => assert_eq!(
                invitation,
                &InvitationSummary::from(stored),
                "the event says \"as it is now\""
            ),
            Event::InvitationWithdrawn { invitation, .. } => assert_eq!(invitation, &i),
            other => panic!("{other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Closed invitations leave the hot state
// ---------------------------------------------------------------------------

/// `outcome` closed `i` (sent to `target`) with `status`: it left the hot
/// state for the outcome's `closed` list, its index entry and its timer.
fn assert_closed_by(
    spec: &Spec,
    outcome: &Outcome,
    i: &InvitationId,
    target: Target,
    status: InvitationStatus,
) {
    assert_eq!(spec.session.invitation(i), None, "{i} left the hot state");
    let closed: Vec<_> = outcome.closed.iter().filter(|c| &c.id == i).collect();
    assert_eq!(closed.len(), 1, "{i} in {:?}", outcome.closed);
    assert_eq!(closed[0].status, status, "{i}");
    assert!(outcome.delta.closed.contains(&(i.clone(), target)), "{i}");
    assert!(outcome.disarm.contains(&Timer::Expiry(i.clone())), "{i}");
}

#[test]
fn every_way_an_invitation_closes_moves_it_out_of_the_hot_state_with_its_final_status() {
    use InvitationStatus::{Accepted, Cancelled, Declined, Expired};
    // (what closes it, the invitation's target and online agents, its status)
    type Closing = fn(&mut Spec, &InvitationId) -> Outcome;
    let cases: [(&str, Closing, &[&str], InvitationStatus); 8] = [
        (
            "accepted",
            |s, i| s.accept(i, "ann"),
            &["ann", "bob"],
            Accepted,
        ),
        (
            "declined by all",
            |s, i| {
                s.run(decline(i, "ann"));
                s.run(decline(i, "bob"))
            },
            &["ann", "bob"],
            Declined,
        ),
        (
            "cancelled",
            |s, i| s.run(cancel(i, LEAD)),
            &["ann"],
            Cancelled,
        ),
        (
            "expired",
            |s, i| {
                s.advance(10_000);
                s.run(expire(i))
            },
            &["ann"],
            Expired,
        ),
        (
            "all recipients gone",
            |s, _| {
                s.run(gone("bob"));
                s.run(gone("ann"))
            },
            &["ann", "bob"],
            Cancelled,
        ),
        (
            "session ended",
            |s, _| s.run(end(LEAD)),
            &["ann"],
            Cancelled,
        ),
        (
            "last agent left",
            |s, _| s.run(leave(LEAD)),
            &["ann"],
            Cancelled,
        ),
        (
            "idle",
            |s, _| {
                s.advance(i64::from(s.policy.session_idle_timeout_secs));
                s.run(check_idle())
            },
            &["ann"],
            Cancelled,
        ),
    ];
    for (how, close, online, status) in cases {
        let mut spec = Spec::new();
        let other = spec.send(invite(LEAD, direct("zed"), &["zed"]));
        let i = spec.send(invite(LEAD, portal(), online));
        let outcome = close(&mut spec, &i);
        assert_closed_by(&spec, &outcome, &i, portal(), status);
        assert_eq!(spec.closed(&i).status, status, "{how}");
        if outcome.ended {
            assert_closed_by(&spec, &outcome, &other, direct("zed"), Cancelled);
        } else {
            assert_eq!(
                spec.pending(&other).id,
                other,
                "{how}: the other stays open"
            );
            assert_eq!(outcome.closed.len(), 1, "{how}");
        }
    }
}

#[test]
fn the_hot_state_stays_bounded_however_many_invitations_were_sent_and_closed() {
    let mut spec = Spec::new();
    // Two stay open throughout; one at a time comes and goes beside them.
    spec.send(invite(LEAD, direct("pat"), &["pat"]));
    spec.send(invite(LEAD, portal(), &["quinn", "ray"]));
    let mut sizes = Vec::new();
    for n in 0..500 {
        let i = spec.send(invite(LEAD, direct("ann"), &["ann"]));
        match n % 4 {
            0 => {
                spec.run(cancel(&i, LEAD));
            }
            1 => {
                spec.run(decline(&i, "ann"));
            }
            2 => {
                spec.advance(i64::from(spec.policy.invitation_ttl_secs));
                spec.run(expire(&i));
            }
            _ => {
                spec.accept(&i, "ann");
                spec.run(leave("ann"));
            }
        }
        if [5, 500].contains(&(n + 1)) {
            sizes.push(encoded_len(&spec.session));
        }
    }
    assert_eq!(spec.session.invitations.len(), 2, "only the open ones");
    assert_eq!(
        spec.history.len(),
        500,
        "the closed ones went to the history"
    );
    assert_eq!(spec.session.counters.invitations, 502);
    let [after_5, after_500] = sizes[..] else {
        panic!("{sizes:?}")
    };
    // Only the invitation counter's digits ("7" → "502") may differ.
    assert!(
        after_500 <= after_5 + 3,
        "the session grew from {after_5} to {after_500} bytes"
    );
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

#[test]
fn a_masked_agents_message_is_always_for_agents_only() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    let outcome = spec.run(post("ann", "psst", Audience::Everyone));
    let message = outcome.message.clone().unwrap();
    assert_eq!(message.audience, Audience::Agents);
    assert_eq!(
        message.author,
        Author::Agent {
            agent: agent("ann"),
            masked: true
        }
    );
    assert_eq!(outcome.events, [Event::MessagePosted { message }]);
}

#[test]
fn an_unmasked_agent_chooses_the_audience() {
    let spec = Spec::new();
    for audience in [Audience::Everyone, Audience::Agents] {
        let message = spec
            .try_(&post(LEAD, "hi", audience))
            .unwrap()
            .message
            .unwrap();
        assert_eq!(message.audience, audience);
    }
}

#[test]
fn a_customer_message_is_for_everyone() {
    let spec = Spec::new();
    let message = spec.try_(&customer_post("help")).unwrap().message.unwrap();
    assert_eq!(message.audience, Audience::Everyone);
    assert_eq!(
        message.author,
        Author::Customer {
            name: display("Carol Customer")
        }
    );
}

#[test]
fn a_message_of_more_than_4000_characters_is_invalid() {
    let mut spec = Spec::new();
    assert_eq!(MAX_MESSAGE_CHARS, 4000);
    let longest = "ü".repeat(MAX_MESSAGE_CHARS);
    assert!(spec.try_(&post(LEAD, &longest, Audience::Everyone)).is_ok());
    let too_long = "x".repeat(MAX_MESSAGE_CHARS + 1);
    for command in [
        post(LEAD, &too_long, Audience::Everyone),
        customer_post(&too_long),
    ] {
        spec.refuse(command, invalid("text must be at most 4000 characters"));
    }
}

#[test]
fn an_empty_or_blank_message_is_invalid() {
    let mut spec = Spec::new();
    for text in ["", "   ", "\n\t"] {
        for command in [post(LEAD, text, Audience::Everyone), customer_post(text)] {
            spec.refuse(command, invalid("text must not be empty"));
        }
    }
}

#[test]
fn only_a_participant_may_post() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.run(leave("ann"));
    for who in ["eve", "ann"] {
        spec.refuse(
            post(who, "hi", Audience::Agents),
            DomainError::NotParticipant,
        );
    }
}

#[test]
fn messages_are_numbered_from_one_in_the_order_they_are_posted() {
    let mut spec = Spec::new();
    let commands = [
        post(LEAD, "a", Audience::Everyone),
        customer_post("b"),
        post(LEAD, "c", Audience::Agents),
    ];
    for (n, command) in (1..).zip(commands) {
        let outcome = spec.run(command);
        assert_eq!(outcome.message.as_ref().unwrap().seq, n);
        assert_eq!(spec.session.counters.messages, n);
    }
}

#[test]
fn the_customers_numbering_counts_only_the_messages_it_may_read() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    let posts = [
        (post(LEAD, "hello", Audience::Everyone), Some(1)),
        (post(LEAD, "internal", Audience::Agents), None),
        (post("ann", "masked", Audience::Everyone), None),
        (customer_post("thanks"), Some(2)),
        (post("ann", "masked again", Audience::Agents), None),
        (post(LEAD, "bye", Audience::Everyone), Some(3)),
    ];
    for (command, customer_seq) in posts {
        spec.run(command);
        let last = spec.transcript.last().unwrap();
        assert_eq!(last.customer_seq, customer_seq, "{}", last.text);
    }
    let seqs: Vec<u64> = spec.transcript.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "seq counts everything");
    assert_eq!(spec.session.counters.messages, 6);
    assert_eq!(spec.session.counters.customer_messages, 3);
    // What the customer is shown carries its own numbering, contiguous from 1.
    let shown: Vec<(u64, String)> = spec
        .transcript
        .iter()
        .filter_map(|m| message_view(&Viewer::Customer, m))
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                v["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (1, "hello".to_owned()),
            (2, "thanks".to_owned()),
            (3, "bye".to_owned())
        ]
    );
}

#[test]
fn each_side_of_a_session_holds_at_most_the_policys_messages() {
    let mut spec = Spec::with(policy(|p| p.max_messages_per_session = 2));
    spec.run(customer_post("a"));
    spec.run(customer_post("b"));
    // The customer used up its side: it is refused ...
    spec.refuse(
        customer_post("c"),
        DomainError::LimitReached("max_messages_per_session"),
    );
    // ... and the agents still have theirs, notes to each other included.
    spec.run(post(LEAD, "d", Audience::Agents));
    spec.run(post(LEAD, "e", Audience::Everyone));
    for command in [
        post(LEAD, "f", Audience::Everyone),
        post(LEAD, "g", Audience::Agents),
        customer_post("h"),
    ] {
        spec.refuse(
            command,
            DomainError::LimitReached("max_messages_per_session"),
        );
    }
    assert_eq!(spec.session.counters.messages, 4);
    assert_eq!(spec.session.counters.customer_posts, 2);
    assert_eq!(spec.session.counters.agent_posts(), 2);
}

#[test]
fn agents_using_up_their_side_leave_the_customer_its_own() {
    let mut spec = Spec::with(policy(|p| p.max_messages_per_session = 1));
    spec.run(post(LEAD, "a", Audience::Everyone));
    spec.refuse(
        post(LEAD, "b", Audience::Agents),
        DomainError::LimitReached("max_messages_per_session"),
    );
    spec.run(customer_post("c"));
    assert_eq!(spec.session.counters.messages, 2);
}

// ---------------------------------------------------------------------------
// Leave
// ---------------------------------------------------------------------------

#[test]
fn a_leaving_lead_hands_the_lead_to_the_longest_joined_agent_left() {
    let mut spec = Spec::new();
    spec.advance(1);
    spec.join("ann");
    spec.advance(1);
    spec.join_masked("bob");
    let outcome = spec.run(leave(LEAD));
    assert_eq!(kinds(&outcome.events), ["left", "lead_changed"]);
    assert_eq!(outcome.events[1], Event::LeadChanged { lead: agent("ann") });
    assert_eq!(spec.session.lead, Some(id("ann")));
    assert_eq!(
        spec.session.participant(&id("ann")).unwrap().role,
        Role::Lead
    );
    assert_eq!(spec.participant_ids(), ids(&["ann", "bob"]));
    assert_eq!(spec.session.status(), SessionStatus::Active);
}

#[test]
fn a_leaving_collaborator_changes_no_lead() {
    let mut spec = Spec::with_participants(&["ann", "bob"]);
    let outcome = spec.run(leave("ann"));
    assert_eq!(kinds(&outcome.events), ["left"]);
    assert_eq!(spec.session.lead, Some(id(LEAD)));
    assert_eq!(spec.participant_ids(), ids(&[LEAD, "bob"]));
}

#[test]
fn the_last_agent_leaving_ends_the_session_and_cancels_pending_invitations() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.advance(9);
    let outcome = spec.run(leave(LEAD));
    assert_eq!(
        kinds(&outcome.events),
        ["left", "cancelled", "withdrawn", "session_ended"]
    );
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["ann", "bob"]), WithdrawReason::SessionEnded)]
    );
    assert!(outcome.ended);
    assert_eq!(spec.session.status(), SessionStatus::Ended);
    assert_eq!(
        spec.session.ended,
        Some(Ending {
            at: at(9),
            reason: EndReason::LastAgentLeft
        })
    );
    // The last to leave is the lead at the end, who reads the trail.
    assert_eq!(spec.session.lead.as_ref().map(AgentId::as_str), Some(LEAD));
    assert_eq!(spec.closed(&i).status, InvitationStatus::Cancelled);
    assert_eq!(
        spec.closed(&i).closed_reason,
        Some(WithdrawReason::SessionEnded)
    );
}

#[test]
fn an_agent_not_in_the_session_leaving_is_not_participant() {
    let mut spec = Spec::new();
    spec.refuse(leave("eve"), DomainError::NotParticipant);
}

// ---------------------------------------------------------------------------
// End
// ---------------------------------------------------------------------------

#[test]
fn only_the_lead_may_end_the_session() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.refuse(end("ann"), DomainError::NotLead);
    spec.refuse(end("eve"), DomainError::NotParticipant);
    assert!(spec.try_(&end(LEAD)).is_ok());
}

#[test]
fn ending_cancels_pending_invitations_withdrawing_their_recipients_with_session_ended() {
    let mut spec = Spec::new();
    let portal_inv = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let direct_inv = spec.send(invite(LEAD, direct("cid"), &["cid"]));
    let taken = spec.send(invite(LEAD, direct("dan"), &["dan"]));
    spec.accept(&taken, "dan");
    spec.advance(3);
    let outcome = spec.run(end(LEAD));
    assert_eq!(
        withdrawals(&outcome.events),
        [
            (ids(&["ann", "bob"]), WithdrawReason::SessionEnded),
            (ids(&["cid"]), WithdrawReason::SessionEnded),
        ]
    );
    assert_eq!(
        outcome.events.last(),
        Some(&Event::SessionEnded {
            at: at(3),
            reason: EndReason::EndedByLead
        })
    );
    assert_eq!(spec.session.status(), SessionStatus::Ended);
    for i in [&portal_inv, &direct_inv] {
        assert_eq!(spec.closed(i).status, InvitationStatus::Cancelled);
    }
    assert_eq!(spec.closed(&taken).status, InvitationStatus::Accepted);
}

#[test]
fn nothing_changes_an_ended_session() {
    let mut spec = Spec::with_participants(&["ann"]);
    let i = spec.send(invite(LEAD, portal(), &["bob"]));
    spec.run(end(LEAD));
    for command in [
        post(LEAD, "hi", Audience::Everyone),
        customer_post("hello?"),
        leave("ann"),
        end(LEAD),
        reconnected(2),
        cancel(&i, LEAD),
        invite(LEAD, direct("bob"), &["bob"]).command(inv("inv-9")),
    ] {
        spec.refuse(command, DomainError::SessionEnded);
    }
    // What is closed is closed: the hot state knows no invitation any more.
    spec.refuse_accept(&i, "bob", 0, DomainError::InvitationNotFound);
    spec.refuse(decline(&i, "bob"), DomainError::InvitationNotFound);
}

// ---------------------------------------------------------------------------
// Idleness
// ---------------------------------------------------------------------------

#[test]
fn checking_idleness_before_the_deadline_re_arms_the_idle_timer_at_the_deadline() {
    let mut spec = Spec::new();
    spec.advance(100);
    spec.run(post(LEAD, "still here", Audience::Everyone));
    // The timer armed at creation fires at t0 + 3600; the deadline moved.
    spec.now = at(3600);
    let before = spec.session.clone();
    let outcome = spec.run(check_idle());
    assert_eq!(outcome.arm, [(Timer::Idle, at(3700))]);
    assert!(outcome.events.is_empty() && outcome.disarm.is_empty() && !outcome.ended);
    assert_eq!(spec.session, before);
    spec.now = at(3699);
    assert_eq!(spec.run(check_idle()).arm, [(Timer::Idle, at(3700))]);
}

#[test]
fn checking_idleness_at_the_deadline_ends_the_session_as_idle() {
    let mut spec = Spec::with_participants(&["ann"]);
    let i = spec.send(invite(LEAD, portal(), &["bob", "cid"]));
    let deadline = spec.session.idle_deadline(&spec.policy);
    spec.now = deadline;
    let outcome = spec.run(check_idle());
    assert!(outcome.ended);
    assert_eq!(
        spec.session.ended,
        Some(Ending {
            at: deadline,
            reason: EndReason::Idle
        })
    );
    assert_eq!(
        kinds(&outcome.events),
        ["cancelled", "withdrawn", "session_ended"]
    );
    assert_eq!(
        withdrawals(&outcome.events),
        [(ids(&["bob", "cid"]), WithdrawReason::SessionEnded)]
    );
    assert_eq!(
        outcome.delta,
        IndexDelta {
            left: ids(&[LEAD, "ann"]),
            closed: vec![(i.clone(), portal())],
            ..Default::default()
        }
    );
    assert_eq!(outcome.disarm, [Timer::Expiry(i.clone()), Timer::Idle]);
    assert!(outcome.arm.is_empty());
    assert_eq!(
        spec.closed(&i).closed_reason,
        Some(WithdrawReason::SessionEnded)
    );
}

#[test]
fn checking_idleness_of_an_ended_session_does_nothing() {
    let mut spec = Spec::new();
    spec.run(end(LEAD));
    spec.advance(100_000);
    let before = spec.session.clone();
    let outcome = spec.run(check_idle());
    assert!(outcome.is_noop() && !outcome.ended, "{outcome:?}");
    assert!(outcome.closed.is_empty() && outcome.delta.is_empty());
    assert_eq!(spec.session, before);
}

#[test]
fn the_actions_of_the_sessions_agents_refresh_its_last_activity() {
    let mut spec = Spec::new();
    type Step = fn(&mut Spec);
    let steps: [(&str, Step); 6] = [
        ("invite", |s| {
            s.send(invite(LEAD, portal(), &["ann", "bob"]));
        }),
        ("accept", |s| {
            s.accept(&inv("inv-1"), "ann");
        }),
        ("cancel", |s| {
            let i = s.send(invite(LEAD, direct("bob"), &["bob"]));
            s.advance(10);
            s.run(cancel(&i, "ann"));
        }),
        ("agent post", |s| {
            s.run(post("ann", "hi", Audience::Agents));
        }),
        ("leave", |s| {
            s.run(leave("ann"));
        }),
        ("end", |s| {
            s.run(end(LEAD));
        }),
    ];
    for (what, step) in steps {
        spec.advance(10);
        step(&mut spec);
        assert_eq!(spec.session.last_activity, spec.now, "{what}");
    }
}

#[test]
fn the_customer_recipients_and_timers_do_not_refresh_last_activity() {
    let mut spec = Spec::with_participants(&["ann"]);
    let declined = spec.send(invite(LEAD, portal(), &["bob", "cid"]));
    let expiring = spec.send(invite(LEAD, direct("dan"), &["dan"]));
    let dropped = spec.send(invite(LEAD, direct("eli"), &["eli"]));
    let last = spec.session.last_activity;
    let commands = [
        customer_post("hello?"),
        decline(&declined, "bob"),
        decline(&declined, "cid"),
        gone("eli"),
        expire(&expiring),
        reconnected(2),
        check_idle(),
    ];
    for command in commands {
        spec.advance(i64::from(spec.policy.invitation_ttl_secs));
        spec.run(command.clone());
        assert_eq!(spec.session.last_activity, last, "{command:?}");
    }
    assert_eq!(spec.status(&expiring), InvitationStatus::Expired);
    assert_eq!(spec.status(&dropped), InvitationStatus::Cancelled);
}

// ---------------------------------------------------------------------------
// How a session ends
// ---------------------------------------------------------------------------

#[test]
fn a_session_ends_by_its_lead_by_its_last_agent_leaving_or_for_idleness_and_says_which() {
    type Ender = fn(&mut Spec) -> Outcome;
    let cases: [(Ender, EndReason); 3] = [
        (|s| s.run(end(LEAD)), EndReason::EndedByLead),
        (
            |s| {
                s.run(leave("ann"));
                s.run(leave(LEAD))
            },
            EndReason::LastAgentLeft,
        ),
        (
            |s| {
                s.advance(i64::from(s.policy.session_idle_timeout_secs));
                s.run(check_idle())
            },
            EndReason::Idle,
        ),
    ];
    for (ending, reason) in cases {
        let mut spec = Spec::with_participants(&["ann"]);
        spec.advance(30);
        let outcome = ending(&mut spec);
        let ended = Ending {
            at: spec.now,
            reason,
        };
        assert_eq!(spec.session.ended, Some(ended), "{reason:?}");
        assert_eq!(
            outcome.events.last(),
            Some(&Event::SessionEnded {
                at: ended.at,
                reason
            })
        );
        assert!(outcome.ended);
        assert_eq!(
            spec.session.retained_until(&spec.policy),
            Some(ended.at + Duration::seconds(i64::from(spec.policy.retention_secs)))
        );
    }
    assert_eq!(Spec::new().session.retained_until(&Policy::default()), None);
}

// ---------------------------------------------------------------------------
// A refused command changes nothing
// ---------------------------------------------------------------------------

#[test]
fn a_refused_command_returns_the_broken_rule_and_the_session_is_unchanged() {
    let mut spec = Spec::with(policy(|p| {
        p.max_agents_per_session = 3;
        p.max_messages_per_session = 1;
    }));
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]).comment("note"));
    spec.accept(&i, "ann");
    let open = spec.send(invite(LEAD, direct("cid"), &["cid"]));
    spec.send(invite(LEAD, direct("dan"), &["dan"]));
    spec.run(post(LEAD, "the one message", Audience::Everyone));
    let refused = [
        (
            invite(LEAD, direct("ann"), &["ann"]).command(inv("inv-9")),
            DomainError::AlreadyParticipant,
        ),
        (
            Accept {
                invitation: i.clone(),
                agent: agent("bob"),
                active_sessions: 0,
                fence: 99,
            }
            .into(),
            DomainError::InvitationNotFound,
        ),
        (decline(&open, "eve"), DomainError::NotARecipient),
        (cancel(&i, LEAD), DomainError::InvitationNotFound),
        (cancel(&open, "eve"), DomainError::NotParticipant),
        (
            post("eve", "hi", Audience::Everyone),
            DomainError::NotParticipant,
        ),
        (
            post(LEAD, "", Audience::Everyone),
            invalid("text must not be empty"),
        ),
        (
            post(LEAD, "one too many", Audience::Agents),
            DomainError::LimitReached("max_messages_per_session"),
        ),
        (leave("eve"), DomainError::NotParticipant),
        (end("ann"), DomainError::NotLead),
        (
            reconnected(1),
            DomainError::Conflict("the client's generation is 2, not 1".into()),
        ),
    ];
    let before = spec.session.clone();
    for (command, expected) in refused {
        spec.refuse(command, expected);
    }
    assert_eq!(spec.session, before);
}

// ---------------------------------------------------------------------------
// Index deltas and audiences
// ---------------------------------------------------------------------------

#[test]
fn the_index_delta_of_an_accept_joins_the_winner_and_closes_the_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let outcome = spec.accept(&i, "bob");
    assert_eq!(
        outcome.delta,
        IndexDelta {
            joined: ids(&["bob"]),
            closed: vec![(i, portal())],
            ..Default::default()
        }
    );
}

#[test]
fn the_index_delta_of_a_decline_or_logout_of_one_recipient_changes_no_index() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob", "cid"]));
    for (who, command) in [("ann", decline(&i, "ann")), ("bob", gone("bob"))] {
        let outcome = spec.run(command);
        assert_eq!(
            outcome.delta,
            IndexDelta::default(),
            "{who}: readers check the live recipients"
        );
        assert!(!spec.pending(&i).is_live_recipient(&id(who)));
    }
}

#[test]
fn the_index_delta_of_a_leave_lets_the_agent_go() {
    let mut spec = Spec::with_participants(&["ann"]);
    let outcome = spec.run(leave("ann"));
    assert_eq!(
        outcome.delta,
        IndexDelta {
            left: ids(&["ann"]),
            ..Default::default()
        }
    );
}

#[test]
fn the_index_delta_of_ending_lets_every_agent_go_and_closes_every_invitation() {
    let mut spec = Spec::with_participants(&["ann"]);
    let i = spec.send(invite(LEAD, portal(), &["bob"]));
    let outcome = spec.run(end(LEAD));
    assert_eq!(
        outcome.delta,
        IndexDelta {
            left: ids(&[LEAD, "ann"]),
            closed: vec![(i.clone(), portal())],
            ..Default::default()
        }
    );
    assert_eq!(outcome.disarm, [Timer::Expiry(i), Timer::Idle]);
}

#[test]
fn the_index_delta_of_a_change_to_nobody_is_empty() {
    let mut spec = Spec::with_participants(&["ann"]);
    let outcome = spec.run(post(LEAD, "hi", Audience::Everyone));
    assert_eq!(outcome.delta, IndexDelta::default());
    assert!(outcome.arm.is_empty() && outcome.disarm.is_empty());
}

#[test]
fn the_audience_of_an_outcome_includes_a_joiner_and_a_leaver() {
    let mut spec = Spec::new();
    let joined = spec.join("ann");
    assert_eq!(joined.audience, ids(&[LEAD, "ann"]));
    spec.join("bob");
    let left = spec.run(leave("bob"));
    assert_eq!(left.audience, ids(&[LEAD, "ann", "bob"]), "bob hears of it");
    spec.run(leave(LEAD));
    let last = spec.run(leave("ann"));
    assert!(last.ended);
    assert_eq!(last.audience, ids(&["ann"]), "the last agent hears the end");
}

// ---------------------------------------------------------------------------
// Transfer
// ---------------------------------------------------------------------------

#[test]
fn an_accepted_transfer_makes_the_winner_lead_and_the_old_lead_leaves() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.advance(5);
    let i = spec.send(invite(LEAD, portal(), &["bob", "cid"]).transfer());
    assert_eq!(spec.pending(&i).kind, InvitationKind::Transfer);
    let outcome = spec.accept(&i, "cid");
    assert_eq!(
        kinds(&outcome.events),
        ["accepted", "withdrawn", "joined", "lead_changed", "left"]
    );
    assert_eq!(spec.session.lead, Some(id("cid")));
    assert_eq!(spec.participant_ids(), ids(&["ann", "cid"]));
    let cid = spec.session.participant(&id("cid")).unwrap();
    assert_eq!((cid.role, cid.masked), (Role::Lead, false));
    assert_eq!(
        spec.session.participant(&id("ann")).unwrap().role,
        Role::Collaborator
    );
    assert_eq!(outcome.delta.joined, ids(&["cid"]));
    assert_eq!(outcome.delta.left, ids(&[LEAD]));
    // The old lead hears of its own leaving.
    assert!(outcome.audience.contains(&id(LEAD)));
    assert_eq!(spec.closed(&i).accepted_by, Some(id("cid")));
}

#[test]
fn a_transfer_to_a_session_with_only_its_lead_asks_the_customer_to_reconnect_once() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]).transfer());
    let outcome = spec.accept(&i, "ann");
    assert_eq!(
        kinds(&outcome.events),
        [
            "accepted",
            "joined",
            "reconnect_required",
            "lead_changed",
            "left"
        ]
    );
    assert_eq!(spec.participant_ids(), ids(&["ann"]));
    assert_eq!(spec.session.customer.generation, 2);
    // A second transfer is a join like any other: no second reconnect.
    let j = spec.send(invite("ann", direct("bob"), &["bob"]).transfer());
    let outcome = spec.accept(&j, "bob");
    assert_eq!(
        kinds(&outcome.events),
        ["accepted", "joined", "lead_changed", "left"]
    );
    assert_eq!(spec.session.lead, Some(id("bob")));
}

#[test]
fn only_the_lead_may_transfer_and_never_masked() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.refuse_invite(
        invite("ann", direct("bob"), &["bob"]).transfer(),
        DomainError::NotLead,
    );
    spec.refuse_invite(
        invite(LEAD, direct("bob"), &["bob"]).transfer().masked(),
        invalid("a transfer is never masked: the new lead is the customer's agent"),
    );
}

#[test]
fn a_transfer_may_be_sent_and_accepted_in_a_full_session() {
    let mut spec = Spec::with(policy(|p| p.max_agents_per_session = 2));
    spec.join("ann");
    spec.refuse_invite(
        invite(LEAD, direct("bob"), &["bob"]),
        DomainError::SessionFull,
    );
    let i = spec.send(invite(LEAD, direct("bob"), &["bob"]).transfer());
    spec.accept(&i, "bob");
    assert_eq!(spec.participant_ids(), ids(&["ann", "bob"]));
}

#[test]
fn a_lead_who_leaves_takes_its_open_transfers_with_it() {
    let mut spec = Spec::with_participants(&["ann"]);
    let t = spec.send(invite(LEAD, direct("bob"), &["bob"]).transfer());
    let c = spec.send(invite(LEAD, direct("cid"), &["cid"]));
    let outcome = spec.run(leave(LEAD));
    assert_eq!(
        kinds(&outcome.events),
        ["left", "lead_changed", "cancelled", "withdrawn"]
    );
    assert_eq!(spec.status(&t), InvitationStatus::Cancelled);
    assert_eq!(spec.status(&c), InvitationStatus::Pending);
    spec.refuse_accept(&t, "bob", 0, DomainError::InvitationNotFound);
}

#[test]
fn accepting_one_transfer_cancels_the_other_open_transfers() {
    let mut spec = Spec::new();
    let first = spec.send(invite(LEAD, direct("ann"), &["ann"]).transfer());
    let second = spec.send(invite(LEAD, direct("bob"), &["bob"]).transfer());
    let outcome = spec.accept(&first, "ann");
    assert!(kinds(&outcome.events).ends_with(&["cancelled", "withdrawn"]));
    assert_eq!(spec.status(&second), InvitationStatus::Cancelled);
    assert_eq!(spec.session.lead, Some(id("ann")));
}

// ---------------------------------------------------------------------------
// Mask and unmask mid-session
// ---------------------------------------------------------------------------

fn set_masked(agent: &str, by: &str, masked: bool) -> Command {
    SetMasked {
        agent: id(agent),
        by: id(by),
        masked,
    }
    .into()
}

#[test]
fn the_lead_or_the_agent_itself_unmasks_and_masks_an_agent() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    spec.join("bob");
    spec.advance(3);
    let outcome = spec.run(set_masked("ann", LEAD, false));
    assert_eq!(kinds(&outcome.events), ["updated"]);
    assert!(!spec.session.participant(&id("ann")).unwrap().masked);
    assert_eq!(spec.session.last_activity, at(3));
    let outcome = spec.run(set_masked("ann", "ann", true));
    assert_eq!(kinds(&outcome.events), ["updated"]);
    assert!(spec.session.participant(&id("ann")).unwrap().masked);
    // Another collaborator may not.
    spec.refuse(set_masked("ann", "bob", false), DomainError::NotLead);
}

#[test]
fn masking_as_it_is_already_changes_nothing() {
    let mut spec = Spec::with_participants(&["ann"]);
    let outcome = spec.run(set_masked("ann", LEAD, false));
    assert!(outcome.is_noop(), "{outcome:?}");
}

#[test]
fn the_lead_is_never_masked_and_strangers_are_not_found() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.refuse(
        set_masked(LEAD, LEAD, true),
        DomainError::Conflict(
            "the lead is the customer's agent and cannot be masked; transfer the session first"
                .into(),
        ),
    );
    spec.refuse(
        set_masked("zed", LEAD, true),
        DomainError::ParticipantNotFound,
    );
    spec.refuse(set_masked("ann", "zed", true), DomainError::NotParticipant);
}

#[test]
fn masking_needs_the_policys_masking() {
    let mut spec = Spec::with(policy(|p| p.masking = false));
    spec.join("ann");
    spec.refuse(
        set_masked("ann", LEAD, true),
        DomainError::FeatureDisabled("masked agents"),
    );
}

#[test]
fn messages_follow_the_mask_at_the_time_they_are_written() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    spec.run(post("ann", "while masked", Audience::Everyone));
    spec.run(set_masked("ann", LEAD, false));
    spec.run(post("ann", "unmasked", Audience::Everyone));
    spec.run(set_masked("ann", "ann", true));
    spec.run(post("ann", "masked again", Audience::Everyone));
    let customer: Vec<&str> = spec
        .transcript
        .iter()
        .filter(|m| message_view(&Viewer::Customer, m).is_some())
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(customer, ["unmasked"]);
    assert_eq!(spec.session.counters.customer_messages, 1);
}

#[test]
fn nothing_masks_in_an_ended_session() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.run(end(LEAD));
    spec.refuse(set_masked("ann", LEAD, true), DomainError::SessionEnded);
}

#[test]
fn a_session_allows_at_most_1000_masks_and_unmasks() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    spec.session.counters.mask_changes = MAX_MASK_CHANGES - 1;
    spec.run(set_masked("ann", LEAD, false));
    assert_eq!(spec.session.counters.mask_changes, MAX_MASK_CHANGES);
    spec.refuse(
        set_masked("ann", LEAD, true),
        DomainError::TooManyMaskChanges,
    );
    // Asking for the state it is in is no change, and still answers.
    spec.run(set_masked("ann", LEAD, false));
}

#[test]
fn a_collaborator_masking_itself_cannot_use_up_the_leads_masks() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    spec.session.counters.collaborator_mask_changes = MAX_MASK_CHANGES - 1;
    spec.run(set_masked("ann", "ann", false));
    spec.refuse(
        set_masked("ann", "ann", true),
        DomainError::TooManyMaskChanges,
    );
    // The lead's budget is its own: it still masks and unmasks her.
    spec.run(set_masked("ann", LEAD, true));
    spec.run(set_masked("ann", LEAD, false));
    assert_eq!(spec.session.counters.mask_changes, 2);
    assert_eq!(
        spec.session.counters.collaborator_mask_changes,
        MAX_MASK_CHANGES
    );
}

// ---------------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------------

fn escalate(invitation: &InvitationId, online: &[&str]) -> Command {
    Escalate {
        invitation: invitation.clone(),
        online: ids(online),
    }
    .into()
}

#[test]
fn an_escalating_invitation_arms_its_escalation_and_shows_its_plan() {
    let mut spec = Spec::new();
    spec.advance(1);
    let (i, outcome) =
        spec.send_with_outcome(invite(LEAD, direct("ann"), &["ann"]).escalate(30, &[]));
    assert!(outcome.arm.contains(&(Timer::Escalate(i.clone()), at(31))));
    let plan = spec.pending(&i).escalation.clone().unwrap();
    assert_eq!((plan.at, plan.from), (at(31), None));
    assert_eq!(spec.pending(&i).target, direct("ann"));
}

#[test]
fn escalation_due_re_targets_the_same_invitation_to_the_portal_without_the_agent() {
    let mut spec = Spec::with_participants(&["hal"]);
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]).escalate(30, &[]));
    // Early (a timer fired before its time): wait for the time.
    spec.advance(10);
    let early = spec.run(escalate(&i, &["bob"]));
    assert_eq!(
        early.arm,
        vec![(
            Timer::Escalate(i.clone()),
            spec.pending(&i).escalation.clone().unwrap().at
        )]
    );
    assert!(early.events.is_empty());
    spec.advance(25);
    let outcome = spec.run(escalate(&i, &["ann", "bob", "cid", "hal", LEAD, "bob"]));
    assert_eq!(
        kinds(&outcome.events),
        ["escalated", "withdrawn", "offered"]
    );
    let inv = spec.pending(&i);
    assert_eq!(inv.target, portal());
    assert_eq!(inv.recipients, ids(&["bob", "cid"]));
    assert_eq!(inv.escalation.as_ref().unwrap().from, Some(id("ann")));
    assert_eq!(
        outcome.events[1],
        Event::InvitationWithdrawn {
            invitation: i.clone(),
            recipients: ids(&["ann"]),
            reason: WithdrawReason::Escalated,
            accepted_by: None,
        }
    );
    assert_eq!(outcome.delta.closed, vec![(i.clone(), direct("ann"))]);
    assert_eq!(outcome.delta.opened, vec![(i.clone(), portal())]);
    // Once: firing again changes nothing; the agent can no longer take it.
    assert!(spec.run(escalate(&i, &["dan"])).is_noop());
    // Ann lost it like a late accept (409), not as a stranger (403).
    spec.refuse_accept(&i, "ann", 0, DomainError::InvitationClosed);
    spec.refuse(decline(&i, "ann"), DomainError::InvitationClosed);
    spec.refuse_accept(&i, "dan", 0, DomainError::NotARecipient);
    // First accept wins among the portal's agents, as for any portal invitation.
    let won = spec.accept(&i, "cid");
    assert_eq!(kinds(&won.events)[..2], ["accepted", "withdrawn"]);
    assert!(won.disarm.contains(&Timer::Expiry(i.clone())));
    assert_eq!(spec.closed(&i).accepted_by, Some(id("cid")));
}

#[test]
fn a_decline_or_a_logout_escalates_at_once() {
    let mut spec = Spec::new();
    let declined = spec.send(invite(LEAD, direct("ann"), &["ann"]).escalate(60, &[]));
    let outcome = spec.run(decline(&declined, "ann"));
    assert_eq!(kinds(&outcome.events), ["declined"]);
    assert_eq!(
        outcome.arm,
        vec![(Timer::Escalate(declined.clone()), spec.now)]
    );
    assert_eq!(spec.status(&declined), InvitationStatus::Pending);
    let outcome = spec.run(escalate(&declined, &["bob"]));
    assert_eq!(
        kinds(&outcome.events),
        ["escalated", "withdrawn", "offered"]
    );

    let left = spec.send(invite(LEAD, direct("cid"), &["cid"]).escalate(60, &[]));
    let outcome = spec.run(gone("cid"));
    assert!(outcome.events.is_empty(), "the escalation withdraws it");
    assert_eq!(outcome.arm, vec![(Timer::Escalate(left.clone()), spec.now)]);
    // Nobody in the portal: the invitation has nobody left and is cancelled.
    let outcome = spec.run(escalate(&left, &[]));
    assert_eq!(kinds(&outcome.events), ["cancelled", "withdrawn"]);
    assert_eq!(spec.status(&left), InvitationStatus::Cancelled);
}

#[test]
fn an_agent_offline_or_at_its_limit_when_sent_escalates_at_once() {
    let mut spec = Spec::new();
    let (busy, outcome) = spec.send_with_outcome(
        invite(LEAD, direct("ann"), &["ann"])
            .escalate(30, &["ann", "bob"])
            .busy(),
    );
    assert_eq!(kinds(&outcome.events), ["sent", "escalated", "offered"]);
    assert_eq!(spec.pending(&busy).target, portal());
    assert_eq!(spec.pending(&busy).recipients, ids(&["bob"]));
    assert!(
        !outcome
            .arm
            .iter()
            .any(|(t, _)| matches!(t, Timer::Escalate(_)))
    );
    let (offline, _) =
        spec.send_with_outcome(invite(LEAD, direct("cid"), &[]).escalate(30, &["bob"]));
    assert_eq!(
        spec.pending(&offline).escalation.as_ref().unwrap().from,
        Some(id("cid"))
    );
    // Nobody to go to: refused, nothing changes.
    spec.refuse_invite(
        invite(LEAD, direct("dan"), &[]).escalate(30, &["dan"]),
        DomainError::NoAgentsOnline,
    );
    // Without an escalation an offline agent is still unavailable.
    spec.refuse_invite(
        invite(LEAD, direct("dan"), &[]),
        DomainError::AgentUnavailable,
    );
}

#[test]
fn escalation_is_direct_only_within_the_ttl_and_needs_portal_invitations() {
    let mut spec = Spec::new();
    spec.refuse_invite(
        invite(LEAD, portal(), &["ann"]).escalate(30, &[]),
        invalid("only a direct invitation escalates (to a portal)"),
    );
    for secs in [4, 121] {
        spec.refuse_invite(
            invite(LEAD, direct("ann"), &["ann"]).escalate(secs, &[]),
            invalid("escalate.after_secs must be 5 to the invitation's time to live (120 s)"),
        );
    }
    let mut spec = Spec::with(policy(|p| p.portal_invitations = false));
    spec.refuse_invite(
        invite(LEAD, direct("ann"), &["ann"]).escalate(30, &[]),
        DomainError::FeatureDisabled("portal invitations"),
    );
}

#[test]
fn an_escalation_that_closed_first_disarms_its_timer() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]).escalate(30, &[]));
    let outcome = spec.accept(&i, "ann");
    assert!(outcome.disarm.contains(&Timer::Escalate(i.clone())));
    assert!(spec.run(escalate(&i, &["bob"])).is_noop());
}

#[test]
fn an_escalation_past_expiry_or_with_portal_invitations_off_does_not_move() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]).escalate(120, &[]));
    spec.advance(120);
    // Due with its expiry: the expiry closes it, the escalation does nothing.
    assert!(spec.run(escalate(&i, &["bob"])).is_noop());
    spec.run(expire(&i));
    assert_eq!(spec.status(&i), InvitationStatus::Expired);

    let j = spec.send(invite(LEAD, direct("ann"), &["ann"]).escalate(30, &[]));
    spec.policy.portal_invitations = false;
    spec.advance(30);
    assert!(
        spec.run(escalate(&j, &["bob"])).is_noop(),
        "it stays with Ann"
    );
    assert_eq!(spec.pending(&j).target, direct("ann"));
}

#[test]
fn a_leaving_lead_hands_the_lead_to_the_longest_joined_agent_the_customer_sees() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    spec.join("bob");
    let outcome = spec.run(leave(LEAD));
    assert_eq!(outcome.events[1], Event::LeadChanged { lead: agent("bob") });
    assert_eq!(spec.session.lead, Some(id("bob")));
    // With only masked agents left, the longest-joined of them leads.
    let mut spec = Spec::new();
    spec.join_masked("ann");
    spec.join_masked("cid");
    spec.run(leave(LEAD));
    assert_eq!(spec.session.lead, Some(id("ann")));
}
