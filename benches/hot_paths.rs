//! Micro-benchmarks of the pure hot paths every command goes through: the
//! session rules (`Session::apply`, whose outcome carries the index delta),
//! the visibility gate, the node-to-node codec and the routing of committed
//! events to topics. The session is measured at a realistic size — 8
//! participants, 50 past invitations — built through the public rules, not
//! by hand; the `history` group compares it with the same session after 500
//! past invitations. Figures and the command to run them are in
//! `benches/README.md`.

// Bench setup should fail loudly: a fixture the rules refuse is a broken
// bench, not a case to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use collabd::actors::session::deliveries;
use collabd::backplane::codec::{decode, decode_current, encode, encode_current};
use collabd::domain::session::{
    Accept, Audience, Cancel, Comment, Decline, Expire, InvitationKind, Invite, Post, Poster,
    Target,
};
use collabd::domain::visibility::{Viewer, agent_session_view, customer_session_view, view};
use collabd::domain::{
    AccountId, AgentId, AgentRef, Command, DisplayName, Event, InvitationId, MessageId, Outcome,
    Policy, PortalId, Rules, Session, SessionId, SessionMode,
};
use criterion::{
    BatchSize, Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};

/// Agents in the session besides its lead: 8 participants in all.
const COLLABORATORS: usize = 7;
/// Invitations sent into the session before the measured command.
const PAST_INVITATIONS: usize = 50;
/// The histories the `history` group compares.
const HISTORY_SIZES: [usize; 2] = [PAST_INVITATIONS, 500];
/// Agents logged into the portal each past invitation went to.
const PAST_RECIPIENTS: usize = 5;
/// Agents in the portal pool the past invitations were offered to.
const PORTAL_POOL: usize = 20;
/// Time between two past invitations: longer than the policy's TTL, so
/// each one can expire before the next is sent.
const INVITATION_SPACING_SECS: i64 = 180;
/// Online agents of the portal the measured invitation goes to.
const ONLINE_SIZES: [usize; 2] = [10, 100];
/// The commit version the routed events are published under.
const VERSION: u64 = 160;

/// A display name, parsed as a request's would be.
fn display(name: &str) -> DisplayName {
    DisplayName::parse("name", name).expect("a valid display name")
}

fn agent(id: &str) -> AgentRef {
    AgentRef {
        id: AgentId::parse(id).unwrap(),
        name: display(&format!("Agent {id}")),
    }
}

/// The first event of `events` that `want` picks.
fn pick(events: &[Event], want: fn(&Event) -> bool) -> Event {
    events.iter().find(|e| want(e)).cloned().unwrap()
}

/// Measures `session.apply(command)`. `apply` changes the session in place,
/// so every iteration needs a session of its own: `iter_batched` clones it
/// in the setup, which is not measured, and the session and outcome are
/// returned so that dropping them is not measured either. What is measured
/// is the rule alone — checks, the in-place change and building the outcome
/// (events, closed invitations, index delta, timers, audience).
fn bench_apply(b: &mut Bencher<'_>, session: &Session, command: &Command, rules: Rules<'_>) {
    b.iter_batched(
        || session.clone(),
        |mut session| {
            let outcome = session.apply(black_box(command), rules);
            (session, outcome)
        },
        BatchSize::SmallInput,
    )
}

/// A support session as it looks after an hour of work: the lead, 7
/// collaborators who joined through invitations, and more invitations that
/// expired, were cancelled or were declined by everyone. None is open: the
/// hot state keeps only pending invitations, the closed ones went to the
/// history (which the rules never read).
struct Fixture {
    account: AccountId,
    policy: Policy,
    lead: AgentId,
    session: Session,
    /// The id of the measured `tier-2` invitation.
    offer: InvitationId,
    now: DateTime<Utc>,
}

impl Fixture {
    /// The session after `past` invitations (at least the 7 accepted ones).
    fn new(past: usize) -> Self {
        assert!(past >= COLLABORATORS);
        let account = AccountId::parse("acme").unwrap();
        // The default policy allows 8 agents; allow more so an invitation
        // into an 8-agent session is still accepted by the rules.
        let policy = Policy {
            max_agents_per_session: 16,
            ..Policy::default()
        };
        assert!(past < policy.max_invitations_per_session as usize);
        let lead = agent("lead");
        let start = Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap();
        // A real session id (`ses-` and 24 hex digits), so that invitation
        // ids made by `InvitationId::within` have their production length.
        let id = SessionId::parse("ses-be4c0ffee0000000000000a1").unwrap();
        let (mut session, _) = Session::create(
            id,
            account.clone(),
            SessionMode::Web,
            lead.clone(),
            display("Jane Customer"),
            Rules {
                policy: &policy,
                now: start,
            },
        )
        .unwrap();
        let pool: Vec<AgentRef> = (0..PORTAL_POOL)
            .map(|k| agent(&format!("tier1-{k:02}")))
            .collect();
        let portal = PortalId::parse("tier-1").unwrap();
        for i in 0..past {
            let sent = start + Duration::seconds(INVITATION_SPACING_SECS * (i as i64 + 1));
            // Agents who joined are no longer offered anything.
            let available: Vec<&AgentRef> = pool
                .iter()
                .filter(|a| !session.is_participant(&a.id))
                .collect();
            let online: Vec<AgentId> = (0..PAST_RECIPIENTS)
                .map(|k| available[(i + k) % available.len()].id.clone())
                .collect();
            let id = InvitationId::within(&session.id);
            assert_eq!(id.session().as_ref(), Some(&session.id));
            let invite: Command = Invite {
                id: id.clone(),
                inviter: lead.id.clone(),
                target: Target::Portal(portal.clone()),
                kind: InvitationKind::Collaborate,
                masked: i % 4 == 0,
                comment: Comment::parse(
                    "Customer on Windows 11; the printer driver fails to install",
                )
                .unwrap(),
                online,
                escalate: None,
                target_busy: false,
                escalation_online: Vec::new(),
            }
            .into();
            let rules = Rules {
                policy: &policy,
                now: sent,
            };
            session.apply(&invite, rules).unwrap();
            let recipients = session.invitation(&id).unwrap().recipients.clone();
            // Accepts, cancels and declines come in while it is open; an
            // expiry once its time has run out.
            let open_at = sent + Duration::seconds(30);
            let (close, closed_at): (Vec<Command>, _) = if i < COLLABORATORS {
                let joiner = pool.iter().find(|a| a.id == recipients[0]).unwrap();
                let accept = Accept {
                    invitation: id,
                    agent: joiner.clone(),
                    active_sessions: 1,
                    fence: i as u64 + 1,
                };
                (vec![accept.into()], open_at)
            } else {
                match i % 3 {
                    0 => (
                        vec![Expire { invitation: id }.into()],
                        sent + Duration::seconds(INVITATION_SPACING_SECS - 1),
                    ),
                    1 => {
                        let cancel = Cancel {
                            invitation: id,
                            by: lead.id.clone(),
                        };
                        (vec![cancel.into()], open_at)
                    }
                    _ => {
                        let declines = recipients
                            .into_iter()
                            .map(|agent| {
                                Decline {
                                    invitation: id.clone(),
                                    agent: AgentRef {
                                        name: display(agent.as_str()),
                                        id: agent,
                                    },
                                }
                                .into()
                            })
                            .collect();
                        (declines, open_at)
                    }
                }
            };
            let rules = Rules {
                policy: &policy,
                now: closed_at,
            };
            for command in &close {
                session.apply(command, rules).unwrap();
            }
        }
        assert_eq!(session.participants.len(), COLLABORATORS + 1);
        assert_eq!(session.counters.invitations, past as u64);
        // Bounded hot state: every past invitation is closed and gone.
        assert!(session.invitations.is_empty());
        let now = start + Duration::seconds(INVITATION_SPACING_SECS * (past as i64 + 2));
        Self {
            account,
            policy,
            lead: lead.id,
            offer: InvitationId::within(&session.id),
            session,
            now,
        }
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            policy: &self.policy,
            now: self.now,
        }
    }

    /// The `k`-th online agent of the measured portal invitation.
    fn online_agent(k: usize) -> AgentRef {
        agent(&format!("tier2-{k:03}"))
    }

    /// The lead invites the `tier-2` portal with `online` agents logged in.
    fn invite(&self, online: usize) -> Command {
        Invite {
            id: self.offer.clone(),
            inviter: self.lead.clone(),
            target: Target::Portal(PortalId::parse("tier-2").unwrap()),
            kind: InvitationKind::Collaborate,
            masked: false,
            comment: Comment::parse("Needs a network specialist: VPN drops every few minutes")
                .unwrap(),
            online: (0..online).map(|k| Self::online_agent(k).id).collect(),
            escalate: None,
            target_busy: false,
            escalation_online: Vec::new(),
        }
        .into()
    }

    /// The session once the `tier-2` invitation to `online` agents is open,
    /// and the outcome of sending it.
    fn offered(&self, online: usize) -> (Session, Outcome) {
        let mut session = self.session.clone();
        let outcome = session.apply(&self.invite(online), self.rules()).unwrap();
        (session, outcome)
    }

    /// The first online agent accepts the `tier-2` invitation.
    fn accept(&self) -> Command {
        Accept {
            invitation: self.offer.clone(),
            agent: Self::online_agent(0),
            active_sessions: 1,
            fence: 1000,
        }
        .into()
    }

    /// The session once the first online agent of `online` accepted, the
    /// session before, and the outcome of the acceptance.
    fn accepted(&self, online: usize) -> (Session, Session, Outcome) {
        let (before, _) = self.offered(online);
        let mut after = before.clone();
        let outcome = after.apply(&self.accept(), self.rules()).unwrap();
        (before, after, outcome)
    }

    /// The lead writes to everyone.
    fn post(&self) -> Command {
        Post {
            id: MessageId::parse("msg-bench").unwrap(),
            author: Poster::Agent(self.lead.clone()),
            text: "I have asked a network specialist to join us; they will look at the VPN logs."
                .into(),
            audience: Audience::Everyone,
        }
        .into()
    }
}

fn apply(c: &mut Criterion) {
    let f = Fixture::new(PAST_INVITATIONS);
    let mut group = c.benchmark_group("apply");
    group.bench_function("create_session", |b| {
        b.iter(|| {
            Session::create(
                black_box(f.session.id.clone()),
                black_box(f.account.clone()),
                SessionMode::Web,
                black_box(agent("lead")),
                black_box(display("Jane Customer")),
                f.rules(),
            )
        })
    });
    for online in ONLINE_SIZES {
        let invite = f.invite(online);
        let (_, outcome) = f.offered(online);
        assert!(outcome.events.iter().any(|e| matches!(
            e,
            Event::InvitationOffered { invitation, .. } if invitation.recipients.len() == online
        )));
        group.bench_with_input(
            BenchmarkId::new("invite_portal", online),
            &invite,
            |b, invite| bench_apply(b, &f.session, invite, f.rules()),
        );
    }
    let accept = f.accept();
    for online in ONLINE_SIZES {
        let (offered, _, outcome) = f.accepted(online);
        assert!(outcome.events.iter().any(|e| matches!(
            e,
            Event::InvitationWithdrawn { recipients, .. } if recipients.len() == online - 1
        )));
        group.bench_with_input(
            BenchmarkId::new("accept_with_withdrawal", online),
            &offered,
            |b, offered| bench_apply(b, offered, &accept, f.rules()),
        );
    }
    let post = f.post();
    group.bench_function("post_message", |b| {
        bench_apply(b, &f.session, &post, f.rules())
    });
    group.finish();
}

fn visibility(c: &mut Criterion) {
    let f = Fixture::new(PAST_INVITATIONS);
    let (offered, offer) = f.offered(ONLINE_SIZES[0]);
    let (_, _, accepted) = f.accepted(ONLINE_SIZES[0]);
    let mut posted = f.session.clone();
    let post = posted.apply(&f.post(), f.rules()).unwrap();
    let events = [
        (
            "invitation_offered",
            pick(&offer.events, |e| {
                matches!(e, Event::InvitationOffered { .. })
            }),
        ),
        (
            "message_posted",
            pick(&post.events, |e| matches!(e, Event::MessagePosted { .. })),
        ),
        (
            "participant_joined",
            pick(&accepted.events, |e| {
                matches!(e, Event::ParticipantJoined { .. })
            }),
        ),
    ];
    let recipient = Fixture::online_agent(0).id;
    let viewers = [
        ("customer", Viewer::Customer),
        ("participant", Viewer::Participant(&f.lead)),
        ("recipient", Viewer::Recipient(&recipient)),
    ];
    let session = &f.session.id;
    let mut group = c.benchmark_group("visibility");
    for (event_name, event) in &events {
        for (viewer_name, viewer) in &viewers {
            group.bench_with_input(
                BenchmarkId::new(*event_name, viewer_name),
                event,
                |b, event| b.iter(|| view(black_box(viewer), session, black_box(event))),
            );
        }
    }
    // The session with the open invitation to 10 agents: the agents' view
    // lists it with its recipients.
    let state = &offered;
    group.bench_function("customer_session_view", |b| {
        b.iter(|| customer_session_view(black_box(state)))
    });
    group.bench_function("agent_session_view", |b| {
        b.iter(|| agent_session_view(black_box(state)))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let f = Fixture::new(PAST_INVITATIONS);
    let (_, offer) = f.offered(ONLINE_SIZES[0]);
    let event = pick(&offer.events, |e| {
        matches!(e, Event::InvitationOffered { .. })
    });
    let session_bytes = encode(&f.session);
    let event_bytes = encode_current(&event);
    assert_eq!(decode::<Session>(&session_bytes).unwrap(), f.session);
    // Events are bus messages: they exist only in the current format.
    let decode_event = decode_current::<Event>;
    assert_eq!(decode_event(&event_bytes).unwrap(), event);
    eprintln!(
        "codec: session hot state {} bytes, invitation_offered event {} bytes",
        session_bytes.len(),
        event_bytes.len()
    );

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(session_bytes.len() as u64));
    group.bench_function("encode_session", |b| {
        b.iter(|| encode(black_box(&f.session)))
    });
    group.bench_function("decode_session", |b| {
        b.iter(|| decode::<Session>(black_box(&session_bytes)))
    });
    group.throughput(Throughput::Bytes(event_bytes.len() as u64));
    group.bench_function("encode_event_offered", |b| {
        b.iter(|| encode_current(black_box(&event)))
    });
    group.bench_function("decode_event_offered", |b| {
        b.iter(|| decode_event(black_box(&event_bytes)))
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    let f = Fixture::new(PAST_INVITATIONS);
    let mut group = c.benchmark_group("deliveries");
    for online in ONLINE_SIZES {
        let (_, after, outcome) = f.accepted(online);
        // The actor moves the events into shared pointers once.
        let events: Vec<Arc<Event>> = outcome.events.iter().cloned().map(Arc::new).collect();
        // 9 agents hear of the acceptance and the join, the customer of the
        // join, the portal of the withdrawal.
        let routed = deliveries(&f.account, &after, VERSION, &outcome, &events);
        assert_eq!(routed.len(), 2 * (COLLABORATORS + 2) + 2);
        group.bench_with_input(
            BenchmarkId::new("accept", online),
            &outcome,
            |b, outcome| {
                b.iter(|| {
                    deliveries(
                        black_box(&f.account),
                        black_box(&after),
                        VERSION,
                        black_box(outcome),
                        black_box(&events),
                    )
                })
            },
        );
    }
    group.finish();
}

/// The hot state is bounded: what a command costs, and what the session
/// weighs on the wire, must not grow with the invitations it has sent.
fn history(c: &mut Criterion) {
    let mut group = c.benchmark_group("history");
    for past in HISTORY_SIZES {
        let f = Fixture::new(past);
        let invite = f.invite(ONLINE_SIZES[0]);
        let bytes = encode(&f.session);
        eprintln!(
            "history: session hot state after {past} past invitations: {} bytes",
            bytes.len()
        );
        group.bench_with_input(
            BenchmarkId::new("apply_invite_10", past),
            &invite,
            |b, invite| bench_apply(b, &f.session, invite, f.rules()),
        );
        group.bench_with_input(
            BenchmarkId::new("encode_session", past),
            &f.session,
            |b, session| b.iter(|| encode(black_box(session))),
        );
    }
    group.finish();
}

criterion_group!(hot_paths, apply, visibility, codec, routing, history);
criterion_main!(hot_paths);
