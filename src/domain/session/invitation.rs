//! The invitation state machine: `pending → accepted | declined |
//! cancelled | expired`. An invitation lives in the session's hot state
//! while it is pending; the command that closes it moves it into the
//! outcome's `closed` list, and the commit appends it to the history.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::event::{Event, InvitationSummary};
use super::participants::{Participant, Role};
use super::{
    Accept, AdminCancel, Cancel, Decline, Escalate, Expire, Invite, Outcome, RecipientGone, Rules,
    Session, Timer,
};
use crate::domain::directory::AgentRef;
use crate::domain::error::DomainError;
use crate::domain::id::{AgentId, InvitationId, PortalId, SessionId};
use crate::domain::policy::Policy;

/// Longest invitation comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;

/// An invitation's comment (only its invitees see it), parsed once where
/// it enters: trimmed, at most [`MAX_COMMENT_CHARS`] characters; a blank
/// one is no comment. What is stored was parsed when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Comment(String);

impl Comment {
    /// The comment in `raw`, if it says anything.
    pub fn parse(raw: &str) -> Result<Option<Self>, DomainError> {
        let text = raw.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.chars().count() > MAX_COMMENT_CHARS {
            return Err(DomainError::Invalid(format!(
                "comment must be at most {MAX_COMMENT_CHARS} characters"
            )));
        }
        Ok(Some(Self(text.to_owned())))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Comment {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Comment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whom an invitation is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One agent.
    Agent(AgentId),
    /// Every agent logged into a portal when it was sent.
    Portal(PortalId),
}

/// What accepting an invitation does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationKind {
    /// The recipient joins as a collaborator.
    #[default]
    Collaborate,
    /// The recipient becomes the lead and the inviting lead leaves.
    Transfer,
}

/// Where an invitation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    /// Open: recipients may accept.
    Pending,
    /// One recipient joined the session.
    Accepted,
    /// Every recipient declined.
    Declined,
    /// Taken back by the session's agents, by the session ending, or because
    /// nobody it was offered to is still logged in.
    Cancelled,
    /// Nobody accepted within the policy's time.
    Expired,
}

/// Why a recipient's alert disappears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    /// Another recipient accepted first.
    AcceptedByOther,
    /// A session agent cancelled it.
    Cancelled,
    /// Its time ran out.
    Expired,
    /// The session ended.
    SessionEnded,
    /// The recipient is no longer logged in.
    RecipientUnavailable,
    /// Not taken in time by its agent: it went to a portal instead.
    Escalated,
}

/// Where a direct invitation goes when its agent does not take it: planned
/// when it is sent, done once (`from` set) when it is re-targeted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// The portal it goes to.
    pub portal: PortalId,
    /// When it goes there if its agent has not accepted by then.
    pub at: DateTime<Utc>,
    /// The agent it was first sent to, once it went to the portal.
    pub from: Option<AgentId>,
}

/// What an inviter asks: escalate after `after_secs` to `portal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateAfter {
    /// Seconds, from 5 to the invitation's time to live.
    pub after_secs: u32,
    /// The portal.
    pub portal: PortalId,
}

/// The shortest escalation delay.
pub const MIN_ESCALATE_SECS: u32 = 5;

/// An invitation to join a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The invitation's id.
    pub id: InvitationId,
    /// The session it invites into.
    pub session: SessionId,
    /// The agent who sent it.
    pub inviter: AgentRef,
    /// One agent or a portal.
    pub target: Target,
    /// The joining agent will be invisible to the customer.
    pub masked: bool,
    /// A note for the invitees only.
    pub comment: Option<Comment>,
    /// The agents it was offered to.
    pub recipients: Vec<AgentId>,
    /// Recipients who said no.
    pub declined_by: Vec<AgentId>,
    /// Recipients who logged out while it was open.
    pub unavailable: Vec<AgentId>,
    /// Its state.
    pub status: InvitationStatus,
    /// Collaborate, or take the session over.
    pub kind: InvitationKind,
    /// The recipient who joined, once accepted.
    pub accepted_by: Option<AgentId>,
    /// The claim's fencing token the acceptance was applied with.
    pub fence: Option<u64>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it expires if nobody accepts.
    pub expires_at: DateTime<Utc>,
    /// Why it closed, if it closed without being accepted or declined.
    pub closed_reason: Option<WithdrawReason>,
    /// Its escalation, if it was sent with one.
    pub escalation: Option<Escalation>,
}

impl Invitation {
    /// Whether it may still go to a portal: planned, not done yet.
    pub fn escalates(&self) -> bool {
        self.escalation.as_ref().is_some_and(|e| e.from.is_none())
    }

    /// Whether it is still open.
    pub fn is_pending(&self) -> bool {
        self.status == InvitationStatus::Pending
    }

    /// Recipients who still have the alert: not declined, not gone.
    pub fn live_recipients(&self) -> Vec<AgentId> {
        self.recipients
            .iter()
            .filter(|a| self.holds_alert(a))
            .cloned()
            .collect()
    }

    /// Whether `agent` still holds this alert.
    pub fn is_live_recipient(&self, agent: &AgentId) -> bool {
        self.recipients.contains(agent) && self.holds_alert(agent)
    }

    fn holds_alert(&self, agent: &AgentId) -> bool {
        !self.declined_by.contains(agent) && !self.unavailable.contains(agent)
    }

    /// Why `agent`, not among its recipients, may not take or refuse it:
    /// the agent it escalated away from lost it like any late answer (409);
    /// anyone else was never offered it (403).
    fn not_offered_to(&self, agent: &AgentId) -> DomainError {
        match &self.escalation {
            Some(Escalation {
                from: Some(from), ..
            }) if from == agent => DomainError::InvitationClosed,
            _ => DomainError::NotARecipient,
        }
    }

    /// What an accept of this *closed* invitation by `agent` answers: `Ok`
    /// for the winner asking again, the reason it cannot join otherwise.
    pub fn accept_again(&self, agent: &AgentId) -> Result<(), DomainError> {
        if !self.recipients.contains(agent) {
            return Err(self.not_offered_to(agent));
        }
        match (&self.status, &self.accepted_by) {
            (InvitationStatus::Accepted, Some(winner)) if winner == agent => Ok(()),
            (InvitationStatus::Accepted, _) => Err(DomainError::InvitationTaken),
            _ => Err(DomainError::InvitationClosed),
        }
    }

    /// What a decline of this *closed* invitation by `agent` answers:
    /// declining twice changes nothing; otherwise it is over.
    pub fn decline_again(&self, agent: &AgentId) -> Result<(), DomainError> {
        if !self.recipients.contains(agent) {
            return Err(self.not_offered_to(agent));
        }
        if self.declined_by.contains(agent) {
            Ok(())
        } else {
            Err(DomainError::InvitationClosed)
        }
    }
}

/// The features an invitation to `target` (masked or not) uses must be
/// allowed by `policy`.
fn require_features(policy: &Policy, target: &Target, masked: bool) -> Result<(), DomainError> {
    if !policy.collaboration {
        return Err(DomainError::FeatureDisabled("collaboration"));
    }
    if matches!(target, Target::Portal(_)) && !policy.portal_invitations {
        return Err(DomainError::FeatureDisabled("portal invitations"));
    }
    if masked && !policy.masking {
        return Err(DomainError::FeatureDisabled("masked agents"));
    }
    Ok(())
}

/// Whom an invitation goes to, once resolved: its recipients, its target
/// (a direct invitation to an agent who cannot come goes straight to its
/// escalation's portal), and its escalation plan.
struct Resolved {
    recipients: Vec<AgentId>,
    target: Target,
    escalation: Option<Escalation>,
}

impl Invite {
    /// Validate what was asked, resolve whom it goes to, open it.
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        let inviter = self.validate(s, rules.policy)?;
        let resolved = self.resolve(s, &inviter.id, rules.now)?;
        self.open(s, inviter, resolved, rules, out);
        Ok(())
    }

    /// Everything about the request itself and the session's bounds; the
    /// inviter as the session knows it.
    fn validate(&self, s: &Session, policy: &Policy) -> Result<AgentRef, DomainError> {
        s.require_active()?;
        let inviter = s.require_participant(&self.inviter)?.agent.clone();
        require_features(policy, &self.target, self.masked)?;
        if self.kind == InvitationKind::Transfer {
            if s.lead.as_ref() != Some(&self.inviter) {
                return Err(DomainError::NotLead);
            }
            if self.masked {
                return Err(DomainError::Invalid(
                    "a transfer is never masked: the new lead is the customer's agent".into(),
                ));
            }
        }
        if let Some(escalate) = &self.escalate {
            if !matches!(self.target, Target::Agent(_)) {
                return Err(DomainError::Invalid(
                    "only a direct invitation escalates (to a portal)".into(),
                ));
            }
            if !policy.portal_invitations {
                return Err(DomainError::FeatureDisabled("portal invitations"));
            }
            if !(MIN_ESCALATE_SECS..=policy.invitation_ttl_secs).contains(&escalate.after_secs) {
                return Err(DomainError::Invalid(format!(
                    "escalate.after_secs must be {MIN_ESCALATE_SECS} to the invitation's time \
                     to live ({} s)",
                    policy.invitation_ttl_secs
                )));
            }
        }
        if self.comment.is_some() && !policy.comments {
            return Err(DomainError::FeatureDisabled("invitation comments"));
        }
        if s.invitation(&self.id).is_some() {
            return Err(DomainError::Conflict(
                "an invitation with this id is already open".into(),
            ));
        }
        // A transfer leaves the session as big as it is: its inviter leaves.
        if self.kind == InvitationKind::Collaborate
            && s.participants.len() as u32 >= policy.max_agents_per_session
        {
            return Err(DomainError::SessionFull);
        }
        if s.invitations.len() as u32 >= policy.max_pending_invitations_per_session {
            return Err(DomainError::LimitReached(
                "max_pending_invitations_per_session",
            ));
        }
        if s.counters.invitations >= u64::from(policy.max_invitations_per_session) {
            return Err(DomainError::LimitReached("max_invitations_per_session"));
        }
        Ok(inviter)
    }

    /// The agents it is offered to: the target agent if it can come (or,
    /// with an escalation, the escalation portal's agents at once), or the
    /// portal's agents who are logged in and not in the session.
    fn resolve(
        &self,
        s: &Session,
        inviter: &AgentId,
        now: DateTime<Utc>,
    ) -> Result<Resolved, DomainError> {
        let mut recipients = candidates(s, inviter, None, &self.online);
        let mut target = self.target.clone();
        let mut escalation = self.escalate.as_ref().map(|e| Escalation {
            portal: e.portal.clone(),
            at: now + Duration::seconds(i64::from(e.after_secs)),
            from: None,
        });
        match &self.target {
            Target::Agent(agent) => {
                if agent == inviter || s.is_participant(agent) {
                    return Err(DomainError::AlreadyParticipant);
                }
                recipients.retain(|a| a == agent);
                let unavailable = recipients.is_empty() || self.target_busy;
                match &mut escalation {
                    // Not logged in, or at its session limit: straight to the portal.
                    Some(plan) if unavailable => {
                        recipients = candidates(s, inviter, Some(agent), &self.escalation_online);
                        if recipients.is_empty() {
                            return Err(DomainError::NoAgentsOnline);
                        }
                        plan.at = now;
                        plan.from = Some(agent.clone());
                        target = Target::Portal(plan.portal.clone());
                    }
                    _ if recipients.is_empty() => return Err(DomainError::AgentUnavailable),
                    _ => {}
                }
            }
            Target::Portal(_) => {
                if recipients.is_empty() {
                    return Err(DomainError::NoAgentsOnline);
                }
            }
        }
        Ok(Resolved {
            recipients,
            target,
            escalation,
        })
    }

    /// Opens the invitation: stored in the session, its timers armed, and
    /// the events that offer it.
    fn open(
        &self,
        s: &mut Session,
        inviter: AgentRef,
        Resolved {
            recipients,
            target,
            escalation,
        }: Resolved,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) {
        let (now, policy) = (rules.now, rules.policy);
        let invitation = Invitation {
            id: self.id.clone(),
            session: s.id.clone(),
            inviter,
            target,
            masked: self.masked,
            comment: self.comment.clone(),
            recipients,
            declined_by: Vec::new(),
            unavailable: Vec::new(),
            status: InvitationStatus::Pending,
            kind: self.kind,
            accepted_by: None,
            fence: None,
            created_at: now,
            expires_at: now + Duration::seconds(i64::from(policy.invitation_ttl_secs)),
            closed_reason: None,
            escalation,
        };
        s.counters.invitations += 1;
        s.touch(now);
        out.delta
            .opened
            .push((invitation.id.clone(), invitation.target.clone()));
        out.arm
            .push((Timer::Expiry(invitation.id.clone()), invitation.expires_at));
        if let Some(plan) = invitation.escalation.as_ref().filter(|e| e.from.is_none()) {
            out.arm
                .push((Timer::Escalate(invitation.id.clone()), plan.at));
        }
        out.events.push(Event::InvitationSent {
            invitation: InvitationSummary::from(&invitation),
        });
        if let Some(Escalation {
            portal,
            from: Some(_),
            ..
        }) = &invitation.escalation
        {
            out.events.push(Event::InvitationEscalated {
                invitation: InvitationSummary::from(&invitation),
                portal: portal.clone(),
            });
        }
        out.events.push(Event::InvitationOffered {
            invitation: invitation.clone(),
            session: s.brief(),
        });
        s.invitations.push(invitation);
    }
}

/// Checks everything about an accept of an open invitation that can be
/// checked before claiming it, so a claim is only taken by an agent who
/// could join.
pub fn check_accept(
    s: &Session,
    invitation: &InvitationId,
    agent: &AgentId,
    active_sessions: u32,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    let inv = s
        .invitation(invitation)
        .ok_or(DomainError::InvitationNotFound)?;
    if !inv.recipients.contains(agent) {
        return Err(inv.not_offered_to(agent));
    }
    if !inv.is_live_recipient(agent) || now >= inv.expires_at {
        return Err(DomainError::InvitationClosed);
    }
    s.require_active()?;
    if s.is_participant(agent) {
        return Err(DomainError::AlreadyParticipant);
    }
    // The account's policy now, not when it was sent: a feature switched
    // off meanwhile stops the invitations that use it.
    require_features(policy, &inv.target, inv.masked)?;
    match inv.kind {
        InvitationKind::Collaborate => {
            if s.participants.len() as u32 >= policy.max_agents_per_session {
                return Err(DomainError::SessionFull);
            }
        }
        // Open transfers are cancelled when their inviter stops leading;
        // this only guards that rule.
        InvitationKind::Transfer => {
            if s.lead.as_ref() != Some(&inv.inviter.id) {
                return Err(DomainError::InvitationClosed);
            }
        }
    }
    if active_sessions >= policy.max_active_sessions_per_agent {
        return Err(DomainError::AgentBusy);
    }
    Ok(())
}

/// Checks who is accepting, as the backplane knows it now: only an agent
/// logged in now may join (a logout may have raced the invite), and only
/// while it is still a member of the portal it is logged into and, for a
/// portal invitation, of the invitation's portal (membership now, not at
/// login: an agent removed from a portal takes nothing more from it, even
/// if its removal raced this accept).
pub fn check_joiner(
    s: &Session,
    invitation: &InvitationId,
    logged_into: Option<&PortalId>,
    member_of: &[PortalId],
) -> Result<(), DomainError> {
    let logged_into = logged_into.ok_or(DomainError::AgentUnavailable)?;
    if !member_of.contains(logged_into) {
        return Err(DomainError::NotAMember(
            "the agent is no longer a member of the portal it is logged into",
        ));
    }
    if let Some(inv) = s.invitation(invitation)
        && let Target::Portal(portal) = &inv.target
        && !member_of.contains(portal)
    {
        return Err(DomainError::NotAMember(
            "the agent is no longer a member of the invitation's portal",
        ));
    }
    Ok(())
}

impl Accept {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        check_accept(
            s,
            &self.invitation,
            &self.agent.id,
            self.active_sessions,
            rules.policy,
            rules.now,
        )?;
        let Some(mut inv) = s.take_invitation(&self.invitation) else {
            return Err(DomainError::InvitationNotFound);
        };
        inv.status = InvitationStatus::Accepted;
        inv.accepted_by = Some(self.agent.id.clone());
        inv.fence = Some(self.fence);
        let losers: Vec<AgentId> = inv
            .live_recipients()
            .into_iter()
            .filter(|a| a != &self.agent.id)
            .collect();
        out.events.push(Event::InvitationAccepted {
            invitation: InvitationSummary::from(&inv),
        });
        if !losers.is_empty() {
            out.events.push(Event::InvitationWithdrawn {
                invitation: inv.id.clone(),
                recipients: losers,
                reason: WithdrawReason::AcceptedByOther,
                accepted_by: Some(self.agent.clone()),
            });
        }
        let transfer = inv.kind == InvitationKind::Transfer;
        let previous_lead = inv.inviter.id.clone();
        let participant = Participant {
            agent: self.agent.clone(),
            role: if transfer {
                Role::Lead
            } else {
                Role::Collaborator
            },
            masked: inv.masked && !transfer,
            joined_at: rules.now,
        };
        out.delta.joined.push(participant.agent.id.clone());
        out.close(inv);
        s.participants.push(participant.clone());
        s.touch(rules.now);
        out.events.push(Event::ParticipantJoined { participant });
        // The reconnect rule holds for any join, a transfer's too: for a
        // moment the session has both agents.
        if s.participants.len() >= 2 && !s.customer.second_agent_joined {
            s.customer.second_agent_joined = true;
            s.customer.generation += 1;
            s.customer.reconnect_required = true;
            out.events.push(Event::CustomerReconnectRequired {
                generation: s.customer.generation,
            });
        }
        if transfer {
            hand_over(s, &previous_lead, &self.agent, out);
        }
        Ok(())
    }
}

impl Decline {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        let index = s
            .invitations
            .iter()
            .position(|i| i.id == self.invitation)
            .ok_or(DomainError::InvitationNotFound)?;
        let inv = &mut s.invitations[index];
        let agent = &self.agent.id;
        if !inv.recipients.contains(agent) {
            return Err(inv.not_offered_to(agent));
        }
        if inv.declined_by.contains(agent) {
            return Ok(()); // declining twice changes nothing
        }
        if inv.unavailable.contains(agent) {
            return Err(DomainError::InvitationClosed);
        }
        inv.declined_by.push(agent.clone());
        if inv.live_recipients().is_empty() && inv.escalates() {
            // Its agent said no: it goes to the portal now.
            out.events.push(Event::InvitationDeclined {
                invitation: InvitationSummary::from(&*inv),
                by: self.agent.clone(),
            });
            out.arm.push((Timer::Escalate(inv.id.clone()), rules.now));
        } else if inv.live_recipients().is_empty() {
            let mut inv = s.invitations.remove(index);
            inv.status = InvitationStatus::Declined;
            out.events.push(Event::InvitationDeclined {
                invitation: InvitationSummary::from(&inv),
                by: self.agent.clone(),
            });
            out.close(inv);
        } else {
            out.events.push(Event::InvitationDeclined {
                invitation: InvitationSummary::from(&*inv),
                by: self.agent.clone(),
            });
        }
        Ok(())
    }
}

impl Cancel {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        s.require_participant(&self.by)?;
        cancel_open(s, &self.invitation, out)?;
        s.touch(rules.now);
        Ok(())
    }
}

/// Cancels an open invitation of an active session: its recipients get
/// their alert withdrawn (reason `cancelled`).
fn cancel_open(
    s: &mut Session,
    invitation: &InvitationId,
    out: &mut Outcome,
) -> Result<(), DomainError> {
    if s.invitation(invitation).is_none() {
        return Err(DomainError::InvitationNotFound);
    }
    close(
        s,
        invitation,
        InvitationStatus::Cancelled,
        WithdrawReason::Cancelled,
        None,
        out,
    );
    Ok(())
}

impl AdminCancel {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        _: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        cancel_open(s, &self.invitation, out)
    }
}

impl Expire {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        // A timer may fire late or twice: only an open, due invitation
        // expires; one that is open but not due yet keeps its timer.
        let Some(inv) = s.invitation(&self.invitation) else {
            return Ok(());
        };
        if rules.now < inv.expires_at {
            out.arm
                .push((Timer::Expiry(inv.id.clone()), inv.expires_at));
            return Ok(());
        }
        close(
            s,
            &self.invitation,
            InvitationStatus::Expired,
            WithdrawReason::Expired,
            None,
            out,
        );
        Ok(())
    }
}

impl RecipientGone {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        let affected: Vec<InvitationId> = s
            .invitations
            .iter()
            .filter(|i| i.is_live_recipient(&self.agent))
            .map(|i| i.id.clone())
            .collect();
        for id in affected {
            let Some(inv) = s.invitations.iter_mut().find(|i| i.id == id) else {
                continue;
            };
            inv.unavailable.push(self.agent.clone());
            if inv.live_recipients().is_empty() && inv.escalates() {
                // Its agent is gone: it goes to the portal now, and the
                // escalation withdraws the agent's alert.
                out.arm.push((Timer::Escalate(id.clone()), rules.now));
            } else if inv.live_recipients().is_empty() {
                // Nobody is left who could take it.
                close(
                    s,
                    &id,
                    InvitationStatus::Cancelled,
                    WithdrawReason::RecipientUnavailable,
                    Some(vec![self.agent.clone()]),
                    out,
                );
            } else {
                out.events.push(Event::InvitationWithdrawn {
                    invitation: id,
                    recipients: vec![self.agent.clone()],
                    reason: WithdrawReason::RecipientUnavailable,
                    accepted_by: None,
                });
            }
        }
        Ok(())
    }
}

/// Who among `online` may be offered an invitation of `s`: not its inviter,
/// not an agent already in the session, not `excluded`, each once.
fn candidates(
    s: &Session,
    inviter: &AgentId,
    excluded: Option<&AgentId>,
    online: &[AgentId],
) -> Vec<AgentId> {
    let mut recipients: Vec<AgentId> = Vec::with_capacity(online.len());
    let mut seen: HashSet<&AgentId> = HashSet::with_capacity(online.len());
    for agent in online {
        if agent != inviter
            && Some(agent) != excluded
            && !s.is_participant(agent)
            && seen.insert(agent)
        {
            recipients.push(agent.clone());
        }
    }
    recipients
}

impl Escalate {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        // A timer may fire late or twice: only an open invitation that
        // still escalates does, and only when it is due or nobody holds it.
        let Some(inv) = s.invitation(&self.invitation) else {
            return Ok(());
        };
        let (Some(plan), Target::Agent(original)) = (&inv.escalation, &inv.target) else {
            return Ok(());
        };
        if plan.from.is_some() {
            return Ok(());
        }
        let original = original.clone();
        let held = inv.is_live_recipient(&original);
        // Past its time it expires (its own timer), it does not move.
        if rules.now >= inv.expires_at {
            return Ok(());
        }
        if held && rules.now < plan.at {
            out.arm.push((Timer::Escalate(inv.id.clone()), plan.at));
            return Ok(());
        }
        let portal = plan.portal.clone();
        // Portal invitations switched off since it was sent: nobody there
        // could accept it.
        let recipients = if rules.policy.portal_invitations {
            candidates(s, &inv.inviter.id, Some(&original), &self.online)
        } else {
            Vec::new()
        };
        if recipients.is_empty() {
            if !held {
                // Its agent is gone and nobody could take over.
                close(
                    s,
                    &self.invitation,
                    InvitationStatus::Cancelled,
                    WithdrawReason::RecipientUnavailable,
                    Some(vec![original]),
                    out,
                );
            }
            // Otherwise it stays with its agent; a decline or a logout tries again.
            return Ok(());
        }
        let brief = s.brief();
        let Some(inv) = s.invitations.iter_mut().find(|i| i.id == self.invitation) else {
            return Ok(());
        };
        out.delta.closed.push((inv.id.clone(), inv.target.clone()));
        inv.target = Target::Portal(portal.clone());
        inv.recipients = recipients;
        inv.declined_by.clear();
        inv.unavailable.clear();
        if let Some(plan) = &mut inv.escalation {
            plan.from = Some(original.clone());
        }
        out.delta.opened.push((inv.id.clone(), inv.target.clone()));
        out.events.push(Event::InvitationEscalated {
            invitation: InvitationSummary::from(&*inv),
            portal,
        });
        // Its agent's alert goes, whether it still held it or lost it by
        // declining or logging out.
        out.events.push(Event::InvitationWithdrawn {
            invitation: inv.id.clone(),
            recipients: vec![original],
            reason: WithdrawReason::Escalated,
            accepted_by: None,
        });
        out.events.push(Event::InvitationOffered {
            invitation: inv.clone(),
            session: brief,
        });
        Ok(())
    }
}

/// A transfer was accepted: `new_lead` (already in, as lead) takes the
/// session over and the previous lead leaves it.
fn hand_over(s: &mut Session, previous: &AgentId, new_lead: &AgentRef, out: &mut Outcome) {
    s.lead = Some(new_lead.id.clone());
    out.events.push(Event::LeadChanged {
        lead: new_lead.clone(),
    });
    if let Some(index) = s.participants.iter().position(|p| &p.agent.id == previous) {
        let mut leaving = s.participants.remove(index);
        leaving.role = Role::Collaborator;
        out.delta.left.push(leaving.agent.id.clone());
        out.events.push(Event::ParticipantLeft {
            participant: leaving,
        });
    }
    cancel_transfers(s, out);
}

/// Cancels the open transfers of an agent who no longer leads: only the
/// lead may hand the session over.
pub(super) fn cancel_transfers(s: &mut Session, out: &mut Outcome) {
    let stale: Vec<InvitationId> = s
        .invitations
        .iter()
        .filter(|i| i.kind == InvitationKind::Transfer && s.lead.as_ref() != Some(&i.inviter.id))
        .map(|i| i.id.clone())
        .collect();
    for id in stale {
        close(
            s,
            &id,
            InvitationStatus::Cancelled,
            WithdrawReason::Cancelled,
            None,
            out,
        );
    }
}

/// Closes an open invitation and withdraws the alerts of `holders` (by
/// default, every live recipient); it leaves the hot state.
pub(super) fn close(
    s: &mut Session,
    id: &InvitationId,
    status: InvitationStatus,
    reason: WithdrawReason,
    holders: Option<Vec<AgentId>>,
    out: &mut Outcome,
) {
    let Some(mut inv) = s.take_invitation(id) else {
        return;
    };
    let recipients = holders.unwrap_or_else(|| inv.live_recipients());
    inv.status = status;
    inv.closed_reason = Some(reason);
    let invitation = InvitationSummary::from(&inv);
    out.events.push(match status {
        InvitationStatus::Expired => Event::InvitationExpired { invitation },
        _ => Event::InvitationCancelled { invitation, reason },
    });
    if !recipients.is_empty() {
        out.events.push(Event::InvitationWithdrawn {
            invitation: inv.id.clone(),
            recipients,
            reason,
            accepted_by: None,
        });
    }
    out.close(inv);
}
