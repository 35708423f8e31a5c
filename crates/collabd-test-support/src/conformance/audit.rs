//! The audit trail: a commit's entries and administrative ones, stored with
//! the change they record (and only with it), read by session and by
//! account.

use chrono::Utc;

use collabd::backplane::{
    AuditCursor, Audited, Backplane, BackplaneError, Commit, Committed, Guard, Replaces,
};
use collabd::domain::session::{Leave, Target};
use collabd::domain::{AccountId, Agent, AgentId, AuditAction, AuditEntry, Portal};

use super::fixtures::{
    Live, accept, account, account_id, agent_id, display, portal_id, profile, won,
};
use super::{KEEP, LONG_TTL};

/// The account's whole trail, read in pages of `page`.
async fn account_trail(
    bp: &dyn Backplane,
    account: &AccountId,
    page: usize,
) -> Vec<(AuditCursor, AuditEntry)> {
    let mut all: Vec<(AuditCursor, AuditEntry)> = Vec::new();
    loop {
        let after = all.last().map(|(id, _)| *id);
        let batch = bp.account_audit(account, after, page).await.unwrap();
        let done = batch.len() < page;
        all.extend(batch);
        if done {
            return all;
        }
    }
}

/// The entries only, in order.
fn entries(trail: &[(AuditCursor, AuditEntry)]) -> Vec<AuditEntry> {
    trail.iter().map(|(_, e)| e.clone()).collect()
}

/// An administrative entry naming `agent`.
fn admin_entry(action: AuditAction, agent: &AgentId) -> AuditEntry {
    AuditEntry::admin(Utc::now(), action, serde_json::json!({"agent": agent}))
}

fn audited(entries: &[AuditEntry]) -> Audited<'_> {
    Audited {
        entries,
        retention: KEEP,
        replaces: Replaces::Anything,
    }
}

/// A stored commit stores its audit entries in the session's trail and the
/// account's, in order; a conflicting or refused commit stores none.
pub async fn audit_a_commit_stores_its_entries_and_a_refused_one_none(bp: &dyn Backplane) {
    let acc = account_id();
    let (a, b) = (agent_id(), agent_id());
    let (mut live, created) = Live::create(&acc, &a);
    live.store(bp, &created).await;
    let inv = live
        .invite(bp, &a, Target::Agent(b.clone()), std::slice::from_ref(&b))
        .await;
    let fence = won(
        bp.claim(&acc, &inv, &b, LONG_TTL).await.unwrap(),
        "b claims",
    );
    let joined = live.run(bp, accept(&inv, &b, 0, fence)).await;
    assert!(!joined.audit.is_empty(), "an accept has entries");

    let session = bp.session_audit(&acc, live.id(), 0, 100).await.unwrap();
    let actions: Vec<AuditAction> = session.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::SessionCreated,
            AuditAction::InvitationSent,
            AuditAction::InvitationAccepted,
            AuditAction::ParticipantJoined,
        ]
    );
    assert_eq!(session[3].actor.id.as_ref(), Some(&b));
    // Paged from a position.
    assert_eq!(
        bp.session_audit(&acc, live.id(), 1, 2).await.unwrap(),
        session[1..3].to_vec()
    );
    assert!(
        bp.session_audit(&acc, live.id(), 4, 2)
            .await
            .unwrap()
            .is_empty()
    );
    // The account's trail: the same, in order, ids increasing, paged.
    let trail = account_trail(bp, &acc, 3).await;
    assert_eq!(entries(&trail), session);
    assert!(trail.windows(2).all(|w| w[0].0 < w[1].0), "{trail:?}");
    let rest = bp.account_audit(&acc, Some(trail[1].0), 10).await.unwrap();
    assert_eq!(entries(&rest), session[2..].to_vec());

    // A conflicting commit and a refused guard store no entry.
    let mut other = live.clone();
    let left = other.apply(Leave {
        agent: b.clone(),
        by_admin: false,
    });
    assert!(!left.audit.is_empty());
    let stale = Commit {
        ..other.commit(live.version - 1, &left)
    };
    assert_eq!(bp.commit(&acc, stale).await.unwrap(), Committed::Conflict);
    let guard = Guard {
        agent: a.clone(),
        below: 0,
    };
    let refused = Commit {
        guard: Some(&guard),
        ..other.commit(live.version, &left)
    };
    assert_eq!(bp.commit(&acc, refused).await.unwrap(), Committed::Refused);
    assert_eq!(
        bp.session_audit(&acc, live.id(), 0, 100).await.unwrap(),
        session
    );
    assert_eq!(entries(&account_trail(bp, &acc, 100).await), session);
    // Another account's trail is its own.
    assert!(
        bp.account_audit(&account_id(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Administrative changes store their entries with them; a deletion of
/// nothing stores none; the trail outlives the account's deletion.
pub async fn audit_directory_changes_store_their_entries(bp: &dyn Backplane) {
    let acc = account_id();
    let (a, gone) = (agent_id(), agent_id());
    let p = portal_id();
    let created = [AuditEntry::admin(
        Utc::now(),
        AuditAction::AccountUpdated,
        serde_json::json!({"name": "Acme"}),
    )];
    bp.put_account(&account(&acc, "Acme"), audited(&created))
        .await
        .unwrap();
    bp.put_portal(
        &acc,
        &Portal {
            id: p.clone(),
            name: display("Support"),
        },
    )
    .await
    .unwrap();
    let mut expected = created.to_vec();
    let steps = [
        admin_entry(AuditAction::AgentCreated, &a),
        admin_entry(AuditAction::AgentLoggedOut, &a),
        admin_entry(AuditAction::TokensRevoked, &a),
        admin_entry(AuditAction::AgentDeleted, &a),
        admin_entry(AuditAction::PortalDeleted, &a),
    ];
    let profile_a = profile(&a, std::slice::from_ref(&p));
    assert!(
        bp.put_agent(&acc, &profile_a, audited(&steps[..1]))
            .await
            .unwrap()
    );
    bp.login(&acc, &profile_a, &p).await.unwrap();
    bp.logout(&acc, &profile_a, audited(&steps[1..2]))
        .await
        .unwrap();
    bp.revoke_tokens(&acc, Some(&a), Utc::now(), LONG_TTL, audited(&steps[2..3]))
        .await
        .unwrap();
    assert!(
        bp.delete_agent(&acc, &a, audited(&steps[3..4]))
            .await
            .unwrap()
    );
    expected.extend_from_slice(&steps[..4]);
    // Deleting what is not there records nothing.
    let nothing = [admin_entry(AuditAction::AgentDeleted, &gone)];
    assert!(
        !bp.delete_agent(&acc, &gone, audited(&nothing))
            .await
            .unwrap()
    );
    assert!(!bp.delete_agent(&acc, &a, audited(&nothing)).await.unwrap());
    assert!(
        bp.delete_portal(&acc, &p, audited(&steps[4..5]))
            .await
            .unwrap()
    );
    expected.push(steps[4].clone());
    assert!(!bp.delete_portal(&acc, &p, audited(&nothing)).await.unwrap());
    assert_eq!(entries(&account_trail(bp, &acc, 2).await), expected);

    // The account goes; its trail, ending with the deletion, stays.
    let deleted = [AuditEntry::admin(
        Utc::now(),
        AuditAction::AccountDeleted,
        serde_json::json!({}),
    )];
    assert!(bp.delete_account(&acc, audited(&deleted)).await.unwrap());
    assert_eq!(bp.account(&acc).await.unwrap(), None);
    expected.push(deleted[0].clone());
    assert_eq!(entries(&account_trail(bp, &acc, 100).await), expected);
}

/// An audited `put` applies only over the record its entries were made
/// from: a record changed meanwhile is `Changed`, and nothing (no record,
/// no entry) is written.
pub async fn audit_a_put_replaces_only_what_its_entries_were_made_from(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let entry = |what: &str| {
        [AuditEntry::admin(
            Utc::now(),
            AuditAction::AgentUpdated,
            serde_json::json!({"agent": a, "what": what}),
        )]
    };
    let with = |entries, replaces| Audited {
        replaces,
        ..audited(entries)
    };
    let (created, theirs_entry, mine_entry) = (entry("created"), entry("theirs"), entry("mine"));
    let (renamed, stale_entry) = (entry("renamed"), entry("stale"));
    assert!(
        bp.put_account(&account(&acc, "Acme"), with(&created, Replaces::Nothing))
            .await
            .unwrap()
    );
    let first = profile(&a, &[]);
    assert!(
        bp.put_agent(&acc, &first, with(&created, Replaces::Nothing))
            .await
            .unwrap()
    );
    let read = bp.agent_record(&acc, &a).await.unwrap().expect("stored");
    assert_eq!(read.value, first);
    // Someone else's write lands first…
    let theirs = Agent {
        name: display("Theirs"),
        ..first.clone()
    };
    assert!(
        !bp.put_agent(
            &acc,
            &theirs,
            with(&theirs_entry, Replaces::Bytes(&read.bytes))
        )
        .await
        .unwrap()
    );
    // …so a write made from the first read is refused, and so is a creation.
    let mine = Agent {
        name: display("Mine"),
        ..first.clone()
    };
    for stale in [Replaces::Bytes(&read.bytes), Replaces::Nothing] {
        assert!(matches!(
            bp.put_agent(&acc, &mine, with(&mine_entry, stale)).await,
            Err(BackplaneError::Changed)
        ));
    }
    assert_eq!(bp.agent(&acc, &a).await.unwrap(), Some(theirs));
    // The account the same way.
    let stored = bp.account_record(&acc).await.unwrap().expect("stored");
    assert!(
        !bp.put_account(
            &account(&acc, "Acme 2"),
            with(&renamed, Replaces::Bytes(&stored.bytes))
        )
        .await
        .unwrap()
    );
    assert!(matches!(
        bp.put_account(
            &account(&acc, "Acme 3"),
            with(&stale_entry, Replaces::Bytes(&stored.bytes))
        )
        .await,
        Err(BackplaneError::Changed)
    ));
    assert_eq!(
        bp.account(&acc).await.unwrap().map(|a| a.name),
        Some(display("Acme 2"))
    );
    let whats: Vec<String> = entries(&account_trail(bp, &acc, 100).await)
        .iter()
        .map(|e| e.details["what"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(whats, ["created", "created", "theirs", "renamed"]);
}
