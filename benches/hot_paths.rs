//! Micro-benchmarks of the pure hot paths every command goes through: the
//! session rules (`Session::apply`, `IndexDelta::between`), the visibility
//! gate, the node-to-node codec and the routing of committed events to
//! topics. The session is measured at a realistic size — 8 participants and
//! 50 past invitations — built through the public rules, not by hand.
//! Figures and the command to run them are in `benches/README.md`.

// Bench setup should fail loudly: a fixture the rules refuse is a broken
// bench, not a case to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Utc};
use collabd::actors::session::deliveries;
use collabd::backplane::codec::{decode, encode};
use collabd::domain::session::{Audience, Poster, Target};
use collabd::domain::visibility::{Viewer, agent_session_view, customer_session_view, view};
use collabd::domain::{
    AccountId, AgentId, AgentRef, Command, Event, InvitationId, MessageId, Outcome, Policy,
    PortalId, Session, SessionId, SessionMode,
};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Agents in the session besides its lead: 8 participants in all.
const COLLABORATORS: usize = 7;
/// Invitations sent into the session before the measured command.
const PAST_INVITATIONS: usize = 50;
/// Agents logged into the portal each past invitation went to.
const PAST_RECIPIENTS: usize = 5;
/// Agents in the portal pool the past invitations were offered to.
const PORTAL_POOL: usize = 20;
/// Time between two past invitations: longer than the policy's TTL, so
/// each one can expire before the next is sent.
const INVITATION_SPACING_SECS: i64 = 180;
/// Online agents of the portal the measured invitation goes to.
const ONLINE_SIZES: [usize; 2] = [10, 100];

fn agent(id: &str) -> AgentRef {
    AgentRef {
        id: AgentId::parse(id).unwrap(),
        name: format!("Agent {id}"),
    }
}

/// A support session as it looks after an hour of work: the lead, 7
/// collaborators who joined through invitations, and 43 more invitations
/// that expired, were cancelled or were declined by everyone.
struct Fixture {
    account: AccountId,
    policy: Policy,
    lead: AgentId,
    session: Session,
    now: DateTime<Utc>,
}

impl Fixture {
    fn new() -> Self {
        let account = AccountId::parse("acme").unwrap();
        // The default policy allows 8 agents; allow more so an invitation
        // into an 8-agent session is still accepted by the rules.
        let policy = Policy {
            max_agents_per_session: 16,
            ..Policy::default()
        };
        let lead = agent("lead");
        let start = Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap();
        let mut session = Session::create(
            SessionId::parse("ses-bench").unwrap(),
            account.clone(),
            SessionMode::Web,
            lead.clone(),
            "Jane Customer".into(),
            &policy,
            start,
        )
        .unwrap();
        let pool: Vec<AgentRef> = (0..PORTAL_POOL)
            .map(|k| agent(&format!("tier1-{k:02}")))
            .collect();
        let portal = PortalId::parse("tier-1").unwrap();
        for i in 0..PAST_INVITATIONS {
            let sent = start + Duration::seconds(INVITATION_SPACING_SECS * (i as i64 + 1));
            // Agents who joined are no longer offered anything.
            let available: Vec<&AgentRef> = pool
                .iter()
                .filter(|a| !session.is_participant(&a.id))
                .collect();
            let online: Vec<AgentId> = (0..PAST_RECIPIENTS)
                .map(|k| available[(i + k) % available.len()].id.clone())
                .collect();
            let id = InvitationId::parse(&format!("inv-past-{i:02}")).unwrap();
            let invite = Command::Invite {
                id: id.clone(),
                inviter: lead.id.clone(),
                target: Target::Portal(portal.clone()),
                masked: i % 4 == 0,
                comment: Some("Customer on Windows 11; the printer driver fails to install".into()),
                online,
            };
            session = session.apply(invite, &policy, sent).unwrap().session;
            let recipients = session.invitation(&id).unwrap().recipients.clone();
            // Accepts, cancels and declines come in while it is open; an
            // expiry once its time has run out.
            let open_at = sent + Duration::seconds(30);
            let (close, closed_at) = if i < COLLABORATORS {
                let joiner = pool.iter().find(|a| a.id == recipients[0]).unwrap();
                let accept = Command::Accept {
                    invitation: id,
                    agent: joiner.clone(),
                    active_sessions: 1,
                    fence: i as u64 + 1,
                };
                (vec![accept], open_at)
            } else {
                match i % 3 {
                    0 => (
                        vec![Command::Expire { invitation: id }],
                        sent + Duration::seconds(INVITATION_SPACING_SECS - 1),
                    ),
                    1 => {
                        let cancel = Command::Cancel {
                            invitation: id,
                            by: lead.id.clone(),
                        };
                        (vec![cancel], open_at)
                    }
                    _ => {
                        let declines = recipients
                            .into_iter()
                            .map(|agent| Command::Decline {
                                invitation: id.clone(),
                                agent,
                            })
                            .collect();
                        (declines, open_at)
                    }
                }
            };
            for command in close {
                session = session.apply(command, &policy, closed_at).unwrap().session;
            }
        }
        assert_eq!(session.participants.len(), COLLABORATORS + 1);
        assert_eq!(session.invitations.len(), PAST_INVITATIONS);
        assert_eq!(session.pending_invitations().count(), 0);
        let now =
            start + Duration::seconds(INVITATION_SPACING_SECS * (PAST_INVITATIONS as i64 + 2));
        Self {
            account,
            policy,
            lead: lead.id,
            session,
            now,
        }
    }

    /// The id of the `k`-th online agent of the measured portal invitation.
    fn online_agent(k: usize) -> AgentRef {
        agent(&format!("tier2-{k:03}"))
    }

    /// The lead invites the `tier-2` portal with `online` agents logged in.
    fn invite(&self, online: usize) -> Command {
        Command::Invite {
            id: InvitationId::parse("inv-bench").unwrap(),
            inviter: self.lead.clone(),
            target: Target::Portal(PortalId::parse("tier-2").unwrap()),
            masked: false,
            comment: Some("Needs a network specialist: VPN drops every few minutes".into()),
            online: (0..online).map(|k| Self::online_agent(k).id).collect(),
        }
    }

    /// The session once the `tier-2` invitation to `online` agents is open.
    fn offered(&self, online: usize) -> Outcome {
        self.session
            .apply(self.invite(online), &self.policy, self.now)
            .unwrap()
    }

    /// The first online agent accepts the `tier-2` invitation.
    fn accept(&self) -> Command {
        Command::Accept {
            invitation: InvitationId::parse("inv-bench").unwrap(),
            agent: Self::online_agent(0),
            active_sessions: 1,
            fence: 1000,
        }
    }

    /// The lead writes to everyone.
    fn post(&self) -> Command {
        Command::Post {
            id: MessageId::parse("msg-bench").unwrap(),
            author: Poster::Agent(self.lead.clone()),
            text: "I have asked a network specialist to join us; they will look at the VPN logs."
                .into(),
            audience: Audience::Everyone,
        }
    }
}

fn apply(c: &mut Criterion) {
    let f = Fixture::new();
    let mut group = c.benchmark_group("apply");
    group.bench_function("create_session", |b| {
        b.iter(|| {
            Session::create(
                black_box(f.session.id.clone()),
                black_box(f.account.clone()),
                SessionMode::Web,
                black_box(agent("lead")),
                black_box("Jane Customer".to_owned()),
                &f.policy,
                f.now,
            )
        })
    });
    for online in ONLINE_SIZES {
        let invite = f.invite(online);
        group.bench_with_input(
            BenchmarkId::new("invite_portal", online),
            &invite,
            |b, invite| {
                b.iter_batched(
                    || invite.clone(),
                    |cmd| f.session.apply(black_box(cmd), &f.policy, f.now),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    for online in ONLINE_SIZES {
        let offered = f.offered(online).session;
        let accept = f.accept();
        let outcome = offered.apply(accept.clone(), &f.policy, f.now).unwrap();
        assert!(matches!(
            &outcome.events[1],
            Event::InvitationWithdrawn { recipients, .. } if recipients.len() == online - 1
        ));
        group.bench_with_input(
            BenchmarkId::new("accept_with_withdrawal", online),
            &offered,
            |b, offered| {
                b.iter_batched(
                    || accept.clone(),
                    |cmd| offered.apply(black_box(cmd), &f.policy, f.now),
                    BatchSize::SmallInput,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("index_delta_accept", online),
            &(offered.clone(), outcome.session),
            |b, (before, after)| {
                b.iter(|| {
                    collabd::domain::session::IndexDelta::between(
                        Some(black_box(before)),
                        black_box(after),
                    )
                })
            },
        );
    }
    let post = f.post();
    group.bench_function("post_message", |b| {
        b.iter_batched(
            || post.clone(),
            |cmd| f.session.apply(black_box(cmd), &f.policy, f.now),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn visibility(c: &mut Criterion) {
    let f = Fixture::new();
    let offered = f.offered(ONLINE_SIZES[0]);
    let accepted = offered.session.apply(f.accept(), &f.policy, f.now).unwrap();
    let posted = f.session.apply(f.post(), &f.policy, f.now).unwrap();
    let pick = |events: &[Event], want: fn(&Event) -> bool| -> Event {
        events.iter().find(|e| want(e)).cloned().unwrap()
    };
    let events = [
        (
            "invitation_offered",
            pick(&offered.events, |e| {
                matches!(e, Event::InvitationOffered { .. })
            }),
        ),
        (
            "message_posted",
            pick(&posted.events, |e| matches!(e, Event::MessagePosted { .. })),
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
    let state = &offered.session;
    group.bench_function("customer_session_view", |b| {
        b.iter(|| customer_session_view(black_box(state)))
    });
    group.bench_function("agent_session_view", |b| {
        b.iter(|| agent_session_view(black_box(state)))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let f = Fixture::new();
    let offered = f.offered(ONLINE_SIZES[0]);
    let event = offered.events[0].clone();
    assert!(matches!(event, Event::InvitationOffered { .. }));
    let session_bytes = encode(&f.session);
    let event_bytes = encode(&event);
    assert_eq!(decode::<Session>(&session_bytes).unwrap(), f.session);
    assert_eq!(decode::<Event>(&event_bytes).unwrap(), event);
    eprintln!(
        "codec: session state {} bytes, invitation_offered event {} bytes",
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
        b.iter(|| encode(black_box(&event)))
    });
    group.bench_function("decode_event_offered", |b| {
        b.iter(|| decode::<Event>(black_box(&event_bytes)))
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    let f = Fixture::new();
    let mut group = c.benchmark_group("deliveries");
    for online in ONLINE_SIZES {
        let before = f.offered(online).session;
        let accepted = before.apply(f.accept(), &f.policy, f.now).unwrap();
        // 9 agents hear of the acceptance and the join, the customer of the
        // join, the portal of the withdrawal.
        let routed = deliveries(&f.account, &before, &accepted.session, &accepted.events);
        assert_eq!(routed.len(), 2 * (COLLABORATORS + 2) + 2);
        group.bench_with_input(
            BenchmarkId::new("accept", online),
            &accepted,
            |b, accepted| {
                b.iter(|| {
                    deliveries(
                        black_box(&f.account),
                        black_box(&before),
                        black_box(&accepted.session),
                        black_box(&accepted.events),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(hot_paths, apply, visibility, codec, routing);
criterion_main!(hot_paths);
