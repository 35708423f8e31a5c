//! Specification of the session rules.
//!
//! One test per rule of the session aggregate, written against
//! `Session::create`, `Session::apply` and `IndexDelta::between` only. The
//! helpers at the top build a session with a lead (`lead`) and drive it with
//! readable commands; every test then states one rule.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::directory::AgentRef;
use super::error::DomainError;
use super::id::{AccountId, AgentId, InvitationId, MessageId, PortalId, SessionId};
use super::policy::{Policy, SessionMode};
use super::session::{
    Audience, Author, Command, Event, IndexDelta, Invitation, InvitationStatus, MAX_COMMENT_CHARS,
    MAX_MESSAGE_CHARS, Outcome, Poster, Role, Session, SessionStatus, Target, WithdrawReason,
};

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

/// The agent who creates every session in this file.
const LEAD: &str = "lead";

/// When every session in this file is created.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
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
        name: format!("Agent {name}"),
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

/// An invitation about to be sent; `masked` and `comment` are opt-in.
struct Invite {
    inviter: &'static str,
    target: Target,
    online: Vec<AgentId>,
    masked: bool,
    comment: Option<String>,
}

/// `inviter` invites `target`; `online` are the agents logged in for it now.
fn invite(inviter: &'static str, target: Target, online: &[&str]) -> Invite {
    Invite {
        inviter,
        target,
        online: ids(online),
        masked: false,
        comment: None,
    }
}

impl Invite {
    fn masked(mut self) -> Self {
        self.masked = true;
        self
    }

    fn comment(mut self, text: &str) -> Self {
        self.comment = Some(text.to_owned());
        self
    }

    fn command(self, invitation: InvitationId) -> Command {
        Command::Invite {
            id: invitation,
            inviter: id(self.inviter),
            target: self.target,
            masked: self.masked,
            comment: self.comment,
            online: self.online,
        }
    }
}

fn decline(invitation: &InvitationId, who: &str) -> Command {
    Command::Decline {
        invitation: invitation.clone(),
        agent: id(who),
    }
}

fn cancel(invitation: &InvitationId, by: &str) -> Command {
    Command::Cancel {
        invitation: invitation.clone(),
        by: id(by),
    }
}

fn expire(invitation: &InvitationId) -> Command {
    Command::Expire {
        invitation: invitation.clone(),
    }
}

fn gone(who: &str) -> Command {
    Command::RecipientGone { agent: id(who) }
}

fn post(who: &str, text: &str, audience: Audience) -> Command {
    Command::Post {
        id: MessageId::parse("msg-1").unwrap(),
        author: Poster::Agent(id(who)),
        text: text.to_owned(),
        audience,
    }
}

fn customer_post(text: &str) -> Command {
    Command::Post {
        id: MessageId::parse("msg-1").unwrap(),
        author: Poster::Customer,
        text: text.to_owned(),
        audience: Audience::Agents, // customers always write to everyone
    }
}

fn leave(who: &str) -> Command {
    Command::Leave { agent: id(who) }
}

fn end(by: &str) -> Command {
    Command::End { by: id(by) }
}

fn reconnected(generation: u32) -> Command {
    Command::CustomerReconnected {
        generation,
        screen_shared: true,
    }
}

/// A session under test, its policy, the clock, and the last claim's fence.
struct Spec {
    policy: Policy,
    session: Session,
    now: DateTime<Utc>,
    fence: u64,
}

impl Spec {
    /// A `web` session led by `lead`, under the default policy.
    fn new() -> Self {
        Self::with(Policy::default())
    }

    /// A `web` session led by `lead`, under `policy`.
    fn with(policy: Policy) -> Self {
        let session = Session::create(
            SessionId::parse("ses-1").unwrap(),
            AccountId::parse("acme").unwrap(),
            SessionMode::Web,
            agent(LEAD),
            "Carol Customer".into(),
            &policy,
            t0(),
        )
        .unwrap();
        Self {
            policy,
            session,
            now: t0(),
            fence: 0,
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

    /// Applies `command` now, leaving the spec as it was.
    fn try_(&self, command: Command) -> Result<Outcome, DomainError> {
        self.session.apply(command, &self.policy, self.now)
    }

    /// Applies `command` now, which must succeed; keeps the new session.
    fn run(&mut self, command: Command) -> Vec<Event> {
        let outcome = self
            .try_(command.clone())
            .unwrap_or_else(|e| panic!("{command:?} was refused: {e}"));
        self.session = outcome.session;
        outcome.events
    }

    /// The id the next invitation gets.
    fn next_invitation_id(&self) -> InvitationId {
        inv(&format!("inv-{}", self.session.invitations.len() + 1))
    }

    fn try_invite(&self, invite: Invite) -> Result<Outcome, DomainError> {
        self.try_(invite.command(self.next_invitation_id()))
    }

    /// Sends the invitation, which must succeed; its id.
    fn send(&mut self, invite: Invite) -> InvitationId {
        let id = self.next_invitation_id();
        self.run(invite.command(id.clone()));
        id
    }

    fn accept_command(&mut self, invitation: &InvitationId, who: &str, active: u32) -> Command {
        self.fence += 1;
        Command::Accept {
            invitation: invitation.clone(),
            agent: agent(who),
            active_sessions: active,
            fence: self.fence,
        }
    }

    /// `who`, in `active` other sessions, tries to accept.
    fn try_accept_busy(
        &mut self,
        invitation: &InvitationId,
        who: &str,
        active: u32,
    ) -> Result<Outcome, DomainError> {
        let command = self.accept_command(invitation, who, active);
        self.try_(command)
    }

    fn try_accept(&mut self, invitation: &InvitationId, who: &str) -> Result<Outcome, DomainError> {
        self.try_accept_busy(invitation, who, 0)
    }

    /// `who` accepts, which must succeed.
    fn accept(&mut self, invitation: &InvitationId, who: &str) -> Vec<Event> {
        let command = self.accept_command(invitation, who, 0);
        self.run(command)
    }

    /// `who` is invited directly by the lead and joins; the accept's events.
    fn join(&mut self, who: &'static str) -> Vec<Event> {
        let i = self.send(invite(LEAD, direct(who), &[who]));
        self.accept(&i, who)
    }

    /// `who` is invited directly and masked by the lead and joins.
    fn join_masked(&mut self, who: &'static str) -> Vec<Event> {
        let i = self.send(invite(LEAD, direct(who), &[who]).masked());
        self.accept(&i, who)
    }

    fn invitation(&self, id: &InvitationId) -> &Invitation {
        self.session.invitation(id).unwrap()
    }

    fn status(&self, id: &InvitationId) -> InvitationStatus {
        self.invitation(id).status
    }

    fn participant_ids(&self) -> Vec<AgentId> {
        self.session
            .participants
            .iter()
            .map(|p| p.agent.id.clone())
            .collect()
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
            Event::InvitationWithdrawn { .. } => "withdrawn",
            Event::InvitationAccepted { .. } => "accepted",
            Event::InvitationDeclined { .. } => "declined",
            Event::InvitationExpired { .. } => "expired",
            Event::InvitationCancelled { .. } => "cancelled",
            Event::ParticipantJoined { .. } => "joined",
            Event::ParticipantLeft { .. } => "left",
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

// ---------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------

#[test]
fn a_new_session_has_its_creator_as_unmasked_lead_and_the_customer_at_generation_one() {
    let spec = Spec::new();
    let s = &spec.session;
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(s.lead, Some(id(LEAD)));
    assert_eq!(s.participants.len(), 1);
    assert_eq!(s.participants[0].role, Role::Lead);
    assert!(!s.participants[0].masked);
    assert_eq!(s.customer.generation, 1);
    assert!(!s.customer.reconnect_required);
    assert!(s.invitations.is_empty());
    assert_eq!(s.message_count, 0);
}

#[test]
fn creating_a_session_in_a_mode_the_policy_does_not_allow_is_feature_disabled() {
    let web_only = policy(|p| p.session_modes = vec![SessionMode::Web]);
    let queue = Session::create(
        SessionId::parse("ses-1").unwrap(),
        AccountId::parse("acme").unwrap(),
        SessionMode::Queue,
        agent(LEAD),
        "Carol".into(),
        &web_only,
        t0(),
    );
    assert!(matches!(queue, Err(DomainError::FeatureDisabled(_))));
}

// ---------------------------------------------------------------------------
// Invite
// ---------------------------------------------------------------------------

#[test]
fn a_portal_invitation_is_offered_to_logged_in_agents_minus_inviter_and_participants() {
    let mut spec = Spec::with_participants(&["bob"]);
    let outcome = spec
        .try_invite(invite(LEAD, portal(), &[LEAD, "bob", "ann", "cid", "ann"]))
        .unwrap();
    let [
        Event::InvitationOffered {
            invitation,
            session,
        },
    ] = outcome.events.as_slice()
    else {
        panic!("expected one offer, got {:?}", outcome.events);
    };
    assert_eq!(invitation.recipients, ids(&["ann", "cid"]));
    assert_eq!(invitation.status, InvitationStatus::Pending);
    assert_eq!(invitation.inviter, agent(LEAD));
    assert_eq!(session, &spec.session.brief());
    spec.session = outcome.session;
    assert!(spec.session.invitation(&inv("inv-2")).unwrap().is_pending());
}

#[test]
fn a_direct_invitation_is_offered_to_its_target_only() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann", "bob"]));
    assert_eq!(spec.invitation(&i).recipients, ids(&["ann"]));
}

#[test]
fn an_invitation_expires_the_policys_ttl_after_it_was_sent() {
    let mut spec = Spec::with(policy(|p| p.invitation_ttl_secs = 45));
    spec.advance(7);
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    let sent = spec.invitation(&i);
    assert_eq!(sent.created_at, t0() + Duration::seconds(7));
    assert_eq!(sent.expires_at, t0() + Duration::seconds(7 + 45));
}

#[test]
fn an_invitation_carries_its_masking_and_comment() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]).masked().comment("VIP"));
    assert!(spec.invitation(&i).masked);
    assert_eq!(spec.invitation(&i).comment.as_deref(), Some("VIP"));
}

#[test]
fn only_a_participant_may_invite() {
    let spec = Spec::new();
    let outsider = spec.try_invite(invite("eve", direct("ann"), &["ann"]));
    assert_eq!(outsider.unwrap_err(), DomainError::NotParticipant);
}

#[test]
fn inviting_when_collaboration_is_off_is_feature_disabled() {
    let spec = Spec::with(policy(|p| p.collaboration = false));
    for target in [direct("ann"), portal()] {
        let r = spec.try_invite(invite(LEAD, target, &["ann"]));
        assert!(matches!(r, Err(DomainError::FeatureDisabled(_))), "{r:?}");
    }
}

#[test]
fn a_portal_invitation_when_portal_invitations_are_off_is_feature_disabled() {
    let spec = Spec::with(policy(|p| p.portal_invitations = false));
    let r = spec.try_invite(invite(LEAD, portal(), &["ann"]));
    assert!(matches!(r, Err(DomainError::FeatureDisabled(_))), "{r:?}");
    assert!(
        spec.try_invite(invite(LEAD, direct("ann"), &["ann"]))
            .is_ok()
    );
}

#[test]
fn a_masked_invitation_when_masking_is_off_is_feature_disabled() {
    let spec = Spec::with(policy(|p| p.masking = false));
    let r = spec.try_invite(invite(LEAD, direct("ann"), &["ann"]).masked());
    assert!(matches!(r, Err(DomainError::FeatureDisabled(_))), "{r:?}");
    assert!(
        spec.try_invite(invite(LEAD, direct("ann"), &["ann"]))
            .is_ok()
    );
}

#[test]
fn a_comment_when_comments_are_off_is_feature_disabled() {
    let spec = Spec::with(policy(|p| p.comments = false));
    let r = spec.try_invite(invite(LEAD, direct("ann"), &["ann"]).comment("hi"));
    assert!(matches!(r, Err(DomainError::FeatureDisabled(_))), "{r:?}");
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
    let too_long = "x".repeat(MAX_COMMENT_CHARS + 1);
    let r = spec.try_invite(invite(LEAD, direct("ann"), &["ann"]).comment(&too_long));
    assert!(matches!(r, Err(DomainError::Invalid(_))), "{r:?}");
}

#[test]
fn directly_inviting_an_agent_who_is_not_logged_in_is_agent_unavailable() {
    let spec = Spec::new();
    let r = spec.try_invite(invite(LEAD, direct("ann"), &["bob", "cid"]));
    assert_eq!(r.unwrap_err(), DomainError::AgentUnavailable);
}

#[test]
fn directly_inviting_an_agent_already_in_the_session_is_already_participant() {
    let spec = Spec::with_participants(&["bob"]);
    let r = spec.try_invite(invite(LEAD, direct("bob"), &["bob"]));
    assert_eq!(r.unwrap_err(), DomainError::AlreadyParticipant);
    let myself = spec.try_invite(invite(LEAD, direct(LEAD), &[LEAD]));
    assert_eq!(myself.unwrap_err(), DomainError::AlreadyParticipant);
}

#[test]
fn a_portal_invitation_with_nobody_else_online_is_no_agents_online() {
    let spec = Spec::with_participants(&["bob"]);
    for online in [&[][..], &[LEAD][..], &[LEAD, "bob"][..]] {
        let r = spec.try_invite(invite(LEAD, portal(), online));
        assert_eq!(
            r.unwrap_err(),
            DomainError::NoAgentsOnline,
            "online {online:?}"
        );
    }
}

#[test]
fn inviting_into_a_full_session_is_session_full() {
    let mut spec = Spec::with(policy(|p| p.max_agents_per_session = 2));
    spec.join("bob");
    for target in [direct("ann"), portal()] {
        let r = spec.try_invite(invite(LEAD, target, &["ann"]));
        assert_eq!(r.unwrap_err(), DomainError::SessionFull);
    }
}

#[test]
fn inviting_into_an_ended_session_is_session_ended() {
    let mut spec = Spec::new();
    spec.run(end(LEAD));
    let r = spec.try_invite(invite(LEAD, direct("ann"), &["ann"]));
    assert_eq!(r.unwrap_err(), DomainError::SessionEnded);
}

// ---------------------------------------------------------------------------
// Accept
// ---------------------------------------------------------------------------

#[test]
fn the_first_recipient_to_accept_joins_as_collaborator_and_wins_the_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.advance(5);
    let events = spec.accept(&i, "ann");
    assert_eq!(
        kinds(&events),
        ["accepted", "withdrawn", "joined", "reconnect_required"]
    );
    let won = spec.invitation(&i);
    assert_eq!(won.status, InvitationStatus::Accepted);
    assert_eq!(won.accepted_by, Some(id("ann")));
    let ann = spec.session.participant(&id("ann")).unwrap();
    assert_eq!(ann.role, Role::Collaborator);
    assert_eq!(ann.agent, agent("ann"));
    assert_eq!(ann.joined_at, t0() + Duration::seconds(5));
    assert_eq!(spec.session.lead, Some(id(LEAD)));
}

#[test]
fn a_second_recipient_accepting_is_invitation_taken() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.accept(&i, "ann");
    assert_eq!(
        spec.try_accept(&i, "bob").unwrap_err(),
        DomainError::InvitationTaken
    );
}

#[test]
fn the_winner_accepting_again_is_ok_with_no_events_and_nothing_changed() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.accept(&i, "ann");
    spec.advance(1);
    let again = spec.try_accept(&i, "ann").unwrap();
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(again.session, spec.session);
    assert_eq!(again.message, None);
}

#[test]
fn an_agent_who_was_not_offered_the_invitation_accepting_is_not_a_recipient() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    assert_eq!(
        spec.try_accept(&i, "eve").unwrap_err(),
        DomainError::NotARecipient
    );
    // Even once it is taken, an outsider learns nothing more than that.
    spec.accept(&i, "ann");
    assert_eq!(
        spec.try_accept(&i, "eve").unwrap_err(),
        DomainError::NotARecipient
    );
}

#[test]
fn accepting_an_unknown_invitation_is_invitation_not_found() {
    let mut spec = Spec::new();
    assert_eq!(
        spec.try_accept(&inv("inv-404"), "ann").unwrap_err(),
        DomainError::InvitationNotFound
    );
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
    // Back before any deadline, so only the closed status can refuse.
    spec.now = t0();
    for (i, who) in [(cancelled, "bob"), (declined, "ann"), (expired, "bob")] {
        assert_eq!(
            spec.try_accept(&i, who).unwrap_err(),
            DomainError::InvitationClosed,
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
    assert_eq!(
        spec.try_accept(&i, "ann").unwrap_err(),
        DomainError::InvitationClosed
    );
    spec.advance(3600);
    assert_eq!(
        spec.try_accept(&i, "ann").unwrap_err(),
        DomainError::InvitationClosed
    );
    assert!(spec.invitation(&i).is_pending(), "refusing changed nothing");
}

#[test]
fn accepting_into_a_full_session_is_session_full() {
    let mut spec = Spec::with(policy(|p| p.max_agents_per_session = 2));
    let first = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    let second = spec.send(invite(LEAD, direct("bob"), &["bob"]));
    spec.accept(&first, "ann");
    assert_eq!(
        spec.try_accept(&second, "bob").unwrap_err(),
        DomainError::SessionFull
    );
}

#[test]
fn an_agent_at_its_active_session_limit_accepting_is_agent_busy() {
    let mut spec = Spec::with(policy(|p| p.max_active_sessions_per_agent = 3));
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    assert_eq!(
        spec.try_accept_busy(&i, "ann", 3).unwrap_err(),
        DomainError::AgentBusy
    );
    assert_eq!(
        spec.try_accept_busy(&i, "ann", 7).unwrap_err(),
        DomainError::AgentBusy
    );
    assert!(spec.try_accept_busy(&i, "ann", 2).is_ok());
}

#[test]
fn every_other_live_recipient_gets_exactly_one_withdrawal_because_another_accepted() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob", "cid", "dan", "eli"]));
    spec.run(decline(&i, "dan")); // already said no: no alert to withdraw
    spec.run(gone("eli")); // already withdrawn when eli logged out
    let events = spec.accept(&i, "bob");
    assert_eq!(
        withdrawals(&events),
        [(ids(&["ann", "cid"]), WithdrawReason::AcceptedByOther)]
    );
}

#[test]
fn accepting_a_direct_invitation_withdraws_nothing() {
    let mut spec = Spec::new();
    let events = spec.join("ann");
    assert!(withdrawals(&events).is_empty(), "{events:?}");
}

#[test]
fn the_acceptance_records_the_fence_of_the_winning_claim() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    let outcome = spec
        .try_(Command::Accept {
            invitation: i.clone(),
            agent: agent("ann"),
            active_sessions: 0,
            fence: 42,
        })
        .unwrap();
    assert_eq!(outcome.session.invitation(&i).unwrap().fence, Some(42));
}

#[test]
fn a_masked_invitation_makes_a_masked_participant_and_an_unmasked_one_a_visible_one() {
    let mut spec = Spec::new();
    let events = spec.join_masked("ann");
    assert!(events.iter().any(|e| matches!(
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
    assert_eq!(
        spec.try_accept(&by_portal, "ann").unwrap_err(),
        DomainError::AlreadyParticipant
    );
}

// ---------------------------------------------------------------------------
// The customer's reconnect
// ---------------------------------------------------------------------------

#[test]
fn the_customer_must_reconnect_once_when_a_second_agent_first_joins() {
    let mut spec = Spec::new();
    let events = spec.join("ann");
    assert_eq!(reconnect_requests(&events), 1);
    assert!(events.contains(&Event::CustomerReconnectRequired { generation: 2 }));
    assert_eq!(spec.session.customer.generation, 2);
    assert!(spec.session.customer.reconnect_required);
}

#[test]
fn a_masked_second_agent_also_makes_the_customer_reconnect() {
    let mut spec = Spec::new();
    let events = spec.join_masked("ann");
    assert!(events.contains(&Event::CustomerReconnectRequired { generation: 2 }));
}

#[test]
fn a_third_agent_joining_asks_no_new_reconnect() {
    let mut spec = Spec::with_participants(&["ann"]);
    let events = spec.join("bob");
    assert_eq!(reconnect_requests(&events), 0);
    assert_eq!(spec.session.customer.generation, 2);
}

#[test]
fn after_someone_left_another_agent_joining_asks_no_new_reconnect() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.run(reconnected(2));
    spec.run(leave("ann"));
    let events = spec.join("bob");
    assert_eq!(reconnect_requests(&events), 0);
    assert_eq!(spec.session.customer.generation, 2);
    assert!(!spec.session.customer.reconnect_required);
}

#[test]
fn the_customer_reconnecting_with_a_stale_generation_is_conflict() {
    let spec = Spec::with_participants(&["ann"]);
    for stale in [1, 3] {
        let r = spec.try_(reconnected(stale));
        assert!(matches!(r, Err(DomainError::Conflict(_))), "{r:?}");
    }
    assert!(spec.session.customer.reconnect_required);
}

#[test]
fn the_customer_reconnecting_with_the_current_generation_clears_reconnect_required() {
    let mut spec = Spec::with_participants(&["ann"]);
    let events = spec.run(reconnected(2));
    assert_eq!(
        events,
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
        let events = spec.run(decline(&i, who));
        assert_eq!(kinds(&events), ["declined"]);
        assert_eq!(spec.status(&i), InvitationStatus::Pending, "after {who}");
    }
    assert!(spec.try_accept(&i, "cid").is_ok(), "cid may still accept");
    spec.run(decline(&i, "cid"));
    assert_eq!(spec.status(&i), InvitationStatus::Declined);
    assert_eq!(spec.invitation(&i).declined_by, ids(&["ann", "bob", "cid"]));
}

#[test]
fn a_direct_invitation_is_declined_at_once() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    let events = spec.run(decline(&i, "ann"));
    let [Event::InvitationDeclined { invitation, by }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(by, &id("ann"));
    assert_eq!(invitation.status, InvitationStatus::Declined);
    assert_eq!(spec.status(&i), InvitationStatus::Declined);
}

#[test]
fn declining_twice_is_a_no_op() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.run(decline(&i, "ann"));
    let again = spec.try_(decline(&i, "ann")).unwrap();
    assert!(again.events.is_empty());
    assert_eq!(again.session, spec.session);
}

#[test]
fn declining_an_invitation_not_offered_to_you_is_not_a_recipient() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    assert_eq!(
        spec.try_(decline(&i, "eve")).unwrap_err(),
        DomainError::NotARecipient
    );
}

#[test]
fn declining_an_invitation_someone_else_accepted_is_invitation_closed() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.accept(&i, "ann");
    assert_eq!(
        spec.try_(decline(&i, "bob")).unwrap_err(),
        DomainError::InvitationClosed
    );
}

// ---------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------

#[test]
fn a_participant_cancelling_withdraws_every_live_recipient_with_reason_cancelled() {
    let mut spec = Spec::with_participants(&["bob"]);
    let i = spec.send(invite(LEAD, portal(), &["ann", "cid", "dan"]));
    spec.run(decline(&i, "dan"));
    let events = spec.run(cancel(&i, "bob")); // any participant, not only the inviter
    assert_eq!(kinds(&events), ["cancelled", "withdrawn"]);
    assert!(matches!(
        &events[0],
        Event::InvitationCancelled {
            reason: WithdrawReason::Cancelled,
            ..
        }
    ));
    assert_eq!(
        withdrawals(&events),
        [(ids(&["ann", "cid"]), WithdrawReason::Cancelled)]
    );
    assert_eq!(spec.status(&i), InvitationStatus::Cancelled);
    assert_eq!(
        spec.invitation(&i).closed_reason,
        Some(WithdrawReason::Cancelled)
    );
}

#[test]
fn only_a_participant_may_cancel() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann"]));
    for who in ["eve", "ann"] {
        assert_eq!(
            spec.try_(cancel(&i, who)).unwrap_err(),
            DomainError::NotParticipant,
            "{who}"
        );
    }
}

#[test]
fn cancelling_a_closed_invitation_is_invitation_closed() {
    let mut spec = Spec::new();
    let cancelled = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.run(cancel(&cancelled, LEAD));
    let accepted = spec.send(invite(LEAD, portal(), &["bob"]));
    spec.accept(&accepted, "bob");
    for i in [cancelled, accepted] {
        assert_eq!(
            spec.try_(cancel(&i, LEAD)).unwrap_err(),
            DomainError::InvitationClosed
        );
    }
}

// ---------------------------------------------------------------------------
// Expire
// ---------------------------------------------------------------------------

#[test]
fn an_invitation_expires_only_once_pending_and_due_withdrawing_its_recipients() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.advance(i64::from(spec.policy.invitation_ttl_secs) - 1);
    let early = spec.try_(expire(&i)).unwrap();
    assert!(early.events.is_empty(), "a timer firing early does nothing");
    assert_eq!(early.session, spec.session);

    spec.advance(1);
    let events = spec.run(expire(&i));
    assert_eq!(kinds(&events), ["expired", "withdrawn"]);
    assert_eq!(
        withdrawals(&events),
        [(ids(&["ann", "bob"]), WithdrawReason::Expired)]
    );
    assert_eq!(spec.status(&i), InvitationStatus::Expired);
    assert_eq!(
        spec.invitation(&i).closed_reason,
        Some(WithdrawReason::Expired)
    );
}

#[test]
fn a_timer_firing_for_a_closed_invitation_or_twice_is_a_no_op() {
    let mut spec = Spec::new();
    let accepted = spec.send(invite(LEAD, portal(), &["ann"]));
    spec.accept(&accepted, "ann");
    let expired = spec.send(invite(LEAD, portal(), &["bob"]));
    spec.advance(10_000);
    spec.run(expire(&expired));
    for i in [accepted, expired] {
        let again = spec.try_(expire(&i)).unwrap();
        assert!(again.events.is_empty(), "{i}: {:?}", again.events);
        assert_eq!(again.session, spec.session);
    }
    assert_eq!(
        spec.status(&inv("inv-1")),
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
    let events = spec.run(gone("ann"));
    assert_eq!(kinds(&events), ["cancelled", "withdrawn"]);
    assert!(matches!(
        &events[0],
        Event::InvitationCancelled {
            reason: WithdrawReason::RecipientUnavailable,
            ..
        }
    ));
    assert_eq!(
        withdrawals(&events),
        [(ids(&["ann"]), WithdrawReason::RecipientUnavailable)]
    );
    assert_eq!(spec.status(&i), InvitationStatus::Cancelled);
}

#[test]
fn one_of_several_portal_recipients_logging_out_withdraws_only_that_one() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let events = spec.run(gone("ann"));
    assert_eq!(
        withdrawals(&events),
        [(ids(&["ann"]), WithdrawReason::RecipientUnavailable)]
    );
    assert_eq!(kinds(&events), ["withdrawn"]);
    assert_eq!(spec.status(&i), InvitationStatus::Pending);
    assert_eq!(spec.invitation(&i).live_recipients(), ids(&["bob"]));
    assert_eq!(
        spec.try_accept(&i, "ann").unwrap_err(),
        DomainError::InvitationClosed,
        "a gone recipient's alert is gone"
    );
}

#[test]
fn the_last_portal_recipient_logging_out_cancels_the_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    spec.run(gone("ann"));
    let events = spec.run(gone("bob"));
    assert_eq!(kinds(&events), ["cancelled", "withdrawn"]);
    assert_eq!(
        withdrawals(&events),
        [(ids(&["bob"]), WithdrawReason::RecipientUnavailable)]
    );
    assert_eq!(spec.status(&i), InvitationStatus::Cancelled);
    assert!(spec.invitation(&i).live_recipients().is_empty());
}

#[test]
fn an_agent_logging_out_who_holds_no_alert_changes_nothing() {
    let mut spec = Spec::new();
    spec.send(invite(LEAD, portal(), &["ann"]));
    let outcome = spec.try_(gone("eve")).unwrap();
    assert!(outcome.events.is_empty());
    assert_eq!(outcome.session, spec.session);
}

#[test]
fn the_invitation_in_a_logout_cancellation_is_the_invitation_as_stored() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, direct("ann"), &["ann"]));
    let events = spec.run(gone("ann"));
    let stored = spec.invitation(&i);
    assert_eq!(stored.unavailable, ids(&["ann"]));
    for event in &events {
        if let Event::InvitationCancelled { invitation, .. }
        | Event::InvitationWithdrawn { invitation, .. } = event
        {
            assert_eq!(invitation, stored, "the event says \"as it is now\"");
        }
    }
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

#[test]
fn a_masked_agents_message_is_always_for_agents_only() {
    let mut spec = Spec::new();
    spec.join_masked("ann");
    let outcome = spec.try_(post("ann", "psst", Audience::Everyone)).unwrap();
    let message = outcome.message.unwrap();
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
            .try_(post(LEAD, "hi", audience))
            .unwrap()
            .message
            .unwrap();
        assert_eq!(message.audience, audience);
    }
}

#[test]
fn a_customer_message_is_for_everyone() {
    let spec = Spec::new();
    let message = spec.try_(customer_post("help")).unwrap().message.unwrap();
    assert_eq!(message.audience, Audience::Everyone);
    assert_eq!(
        message.author,
        Author::Customer {
            name: "Carol Customer".into()
        }
    );
}

#[test]
fn a_message_of_more_than_4000_characters_is_invalid() {
    let spec = Spec::new();
    assert_eq!(MAX_MESSAGE_CHARS, 4000);
    let longest = "ü".repeat(MAX_MESSAGE_CHARS);
    assert!(spec.try_(post(LEAD, &longest, Audience::Everyone)).is_ok());
    let too_long = "x".repeat(MAX_MESSAGE_CHARS + 1);
    for command in [
        post(LEAD, &too_long, Audience::Everyone),
        customer_post(&too_long),
    ] {
        assert!(matches!(spec.try_(command), Err(DomainError::Invalid(_))));
    }
}

#[test]
fn an_empty_or_blank_message_is_invalid() {
    let spec = Spec::new();
    for text in ["", "   ", "\n\t"] {
        for command in [post(LEAD, text, Audience::Everyone), customer_post(text)] {
            assert!(
                matches!(spec.try_(command), Err(DomainError::Invalid(_))),
                "{text:?}"
            );
        }
    }
}

#[test]
fn only_a_participant_may_post() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.run(leave("ann"));
    for who in ["eve", "ann"] {
        assert_eq!(
            spec.try_(post(who, "hi", Audience::Agents)).unwrap_err(),
            DomainError::NotParticipant
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
        let outcome = spec.try_(command).unwrap();
        assert_eq!(outcome.message.as_ref().unwrap().seq, n);
        spec.session = outcome.session;
        assert_eq!(spec.session.message_count, n);
    }
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
    let events = spec.run(leave(LEAD));
    assert_eq!(kinds(&events), ["left", "lead_changed"]);
    assert_eq!(events[1], Event::LeadChanged { lead: agent("ann") });
    assert_eq!(spec.session.lead, Some(id("ann")));
    assert_eq!(
        spec.session.participant(&id("ann")).unwrap().role,
        Role::Lead
    );
    assert_eq!(spec.participant_ids(), ids(&["ann", "bob"]));
    assert_eq!(spec.session.status, SessionStatus::Active);
}

#[test]
fn a_leaving_collaborator_changes_no_lead() {
    let mut spec = Spec::with_participants(&["ann", "bob"]);
    let events = spec.run(leave("ann"));
    assert_eq!(kinds(&events), ["left"]);
    assert_eq!(spec.session.lead, Some(id(LEAD)));
    assert_eq!(spec.participant_ids(), ids(&[LEAD, "bob"]));
}

#[test]
fn the_last_agent_leaving_ends_the_session_and_cancels_pending_invitations() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let events = spec.run(leave(LEAD));
    assert_eq!(
        kinds(&events),
        ["left", "cancelled", "withdrawn", "session_ended"]
    );
    assert_eq!(
        withdrawals(&events),
        [(ids(&["ann", "bob"]), WithdrawReason::SessionEnded)]
    );
    assert_eq!(spec.session.status, SessionStatus::Ended);
    assert_eq!(spec.session.lead, None);
    assert_eq!(spec.status(&i), InvitationStatus::Cancelled);
    assert_eq!(
        spec.invitation(&i).closed_reason,
        Some(WithdrawReason::SessionEnded)
    );
}

#[test]
fn an_agent_not_in_the_session_leaving_is_not_participant() {
    let spec = Spec::new();
    assert_eq!(
        spec.try_(leave("eve")).unwrap_err(),
        DomainError::NotParticipant
    );
}

// ---------------------------------------------------------------------------
// End
// ---------------------------------------------------------------------------

#[test]
fn only_the_lead_may_end_the_session() {
    let spec = Spec::with_participants(&["ann"]);
    assert_eq!(spec.try_(end("ann")).unwrap_err(), DomainError::NotLead);
    assert_eq!(
        spec.try_(end("eve")).unwrap_err(),
        DomainError::NotParticipant
    );
    assert!(spec.try_(end(LEAD)).is_ok());
}

#[test]
fn ending_cancels_pending_invitations_withdrawing_their_recipients_with_session_ended() {
    let mut spec = Spec::new();
    let portal_inv = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let direct_inv = spec.send(invite(LEAD, direct("cid"), &["cid"]));
    let taken = spec.send(invite(LEAD, direct("dan"), &["dan"]));
    spec.accept(&taken, "dan");
    spec.advance(3);
    let events = spec.run(end(LEAD));
    assert_eq!(
        withdrawals(&events),
        [
            (ids(&["ann", "bob"]), WithdrawReason::SessionEnded),
            (ids(&["cid"]), WithdrawReason::SessionEnded),
        ]
    );
    assert_eq!(
        events.last(),
        Some(&Event::SessionEnded {
            at: t0() + Duration::seconds(3)
        })
    );
    assert_eq!(spec.session.status, SessionStatus::Ended);
    for i in [&portal_inv, &direct_inv] {
        assert_eq!(spec.status(i), InvitationStatus::Cancelled);
    }
    assert_eq!(spec.status(&taken), InvitationStatus::Accepted);
}

#[test]
fn nothing_changes_an_ended_session() {
    let mut spec = Spec::with_participants(&["ann"]);
    spec.run(end(LEAD));
    for command in [
        post(LEAD, "hi", Audience::Everyone),
        customer_post("hello?"),
        leave("ann"),
        end(LEAD),
        reconnected(2),
    ] {
        assert_eq!(
            spec.try_(command.clone()).unwrap_err(),
            DomainError::SessionEnded,
            "{command:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// A refused command changes nothing
// ---------------------------------------------------------------------------

#[test]
fn a_refused_command_returns_the_broken_rule_and_the_session_is_unchanged() {
    let mut spec = Spec::with(policy(|p| p.max_agents_per_session = 3));
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]).comment("note"));
    spec.accept(&i, "ann");
    spec.send(invite(LEAD, direct("cid"), &["cid"]));
    let before = spec.session.clone();
    let refused = [
        invite(LEAD, direct("ann"), &["ann"]).command(inv("inv-9")),
        Command::Accept {
            invitation: i.clone(),
            agent: agent("bob"),
            active_sessions: 0,
            fence: 99,
        },
        decline(&i, "eve"),
        cancel(&i, LEAD),
        expire(&inv("inv-404")),
        post("eve", "hi", Audience::Everyone),
        post(LEAD, "", Audience::Everyone),
        leave("eve"),
        end("ann"),
        reconnected(1),
    ];
    for command in refused {
        assert!(spec.try_(command.clone()).is_err(), "{command:?}");
        assert_eq!(spec.session, before, "{command:?} changed the session");
    }
}

// ---------------------------------------------------------------------------
// Index deltas
// ---------------------------------------------------------------------------

#[test]
fn the_index_delta_of_a_new_session_joins_its_lead() {
    let spec = Spec::new();
    let delta = IndexDelta::between(None, &spec.session);
    assert_eq!(
        delta,
        IndexDelta {
            joined: ids(&[LEAD]),
            ..Default::default()
        }
    );
}

#[test]
fn the_index_delta_of_an_invitation_opens_it_for_its_target_however_many_recipients() {
    let mut spec = Spec::new();
    let before = spec.session.clone();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    assert_eq!(
        IndexDelta::between(Some(&before), &spec.session),
        IndexDelta {
            opened: vec![(i, portal())],
            ..Default::default()
        }
    );
}

#[test]
fn the_index_delta_of_an_accept_joins_the_winner_and_closes_the_invitation() {
    let mut spec = Spec::new();
    let i = spec.send(invite(LEAD, portal(), &["ann", "bob"]));
    let before = spec.session.clone();
    spec.accept(&i, "bob");
    assert_eq!(
        IndexDelta::between(Some(&before), &spec.session),
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
        let before = spec.session.clone();
        spec.run(command);
        assert_eq!(
            IndexDelta::between(Some(&before), &spec.session),
            IndexDelta::default(),
            "{who}: readers check the live recipients"
        );
        assert!(
            !spec
                .session
                .invitation(&i)
                .unwrap()
                .is_live_recipient(&AgentId::parse(who).unwrap())
        );
    }
}

#[test]
fn the_index_delta_of_a_leave_lets_the_agent_go() {
    let mut spec = Spec::with_participants(&["ann"]);
    let before = spec.session.clone();
    spec.run(leave("ann"));
    assert_eq!(
        IndexDelta::between(Some(&before), &spec.session),
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
    let before = spec.session.clone();
    spec.run(end(LEAD));
    assert_eq!(
        IndexDelta::between(Some(&before), &spec.session),
        IndexDelta {
            left: ids(&[LEAD, "ann"]),
            closed: vec![(i, portal())],
            ..Default::default()
        }
    );
}

#[test]
fn the_index_delta_of_a_change_to_nobody_is_empty() {
    let mut spec = Spec::with_participants(&["ann"]);
    let before = spec.session.clone();
    spec.run(post(LEAD, "hi", Audience::Everyone));
    assert_eq!(
        IndexDelta::between(Some(&before), &spec.session),
        IndexDelta::default()
    );
}
