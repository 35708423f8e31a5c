//! Sessions: the two transcripts a commit appends to, read in pages newest
//! first.

use collabd::backplane::{Backplane, Transcript};
use collabd::domain::session::{Audience, Poster};
use collabd::domain::{Message, SessionId};

use super::fixtures::{Live, account_id, agent_id, post};

fn number(m: &Message, transcript: Transcript) -> u64 {
    match transcript {
        Transcript::Agents => m.seq,
        Transcript::Customer => m
            .customer_seq
            .unwrap_or_else(|| panic!("message {} in the customer transcript", m.seq)),
    }
}

async fn page(
    bp: &dyn Backplane,
    live: &Live,
    transcript: Transcript,
    before: Option<u64>,
    limit: usize,
) -> Vec<u64> {
    bp.messages(&live.account, live.id(), transcript, before, limit)
        .await
        .unwrap()
        .iter()
        .map(|m| number(m, transcript))
        .collect()
}

/// A commit appends its message to the agents' transcript, and to the
/// customer's when it has a customer number. `messages` returns a page,
/// newest first, of at most `limit` messages numbered below `before` (by
/// `seq` for the agents' transcript, by `customer_seq` for the customer's);
/// walking the pages gives the whole transcript. The customer transcript
/// holds exactly the customer-numbered messages. Another account or an
/// unknown session has no messages.
pub async fn sessions_messages_page_newest_first(bp: &dyn Backplane) {
    let acc = account_id();
    let a = agent_id();
    let mut live = Live::started(bp, &acc, &a).await;
    let agent = || Poster::Agent(a.clone());
    let script = [
        (Poster::Customer, Audience::Everyone),
        (agent(), Audience::Everyone),
        (agent(), Audience::Agents),
        (Poster::Customer, Audience::Everyone),
        (agent(), Audience::Agents),
        (agent(), Audience::Agents),
        (Poster::Customer, Audience::Everyone),
        (agent(), Audience::Everyone),
        (agent(), Audience::Agents),
        (Poster::Customer, Audience::Everyone),
    ];
    let mut all = Vec::new();
    for (i, (author, audience)) in script.into_iter().enumerate() {
        let text = format!("message {}", i + 1);
        let outcome = live.run(bp, post(author, &text, audience)).await;
        all.push(outcome.message.expect("a post writes a message"));
    }
    let customer: Vec<Message> = all
        .iter()
        .filter(|m| m.customer_seq.is_some())
        .cloned()
        .collect();
    assert_eq!(customer.len(), 6, "the script's customer messages");
    let newest_first = |v: &[Message]| v.iter().rev().cloned().collect::<Vec<_>>();

    // The agents' transcript.
    let t = Transcript::Agents;
    assert_eq!(
        bp.messages(&acc, live.id(), t, None, 100).await.unwrap(),
        newest_first(&all),
        "every message, newest first"
    );
    assert_eq!(page(bp, &live, t, None, 3).await, [10, 9, 8], "newest page");
    assert_eq!(page(bp, &live, t, Some(8), 3).await, [7, 6, 5], "below 8");
    assert_eq!(page(bp, &live, t, Some(3), 5).await, [2, 1], "the oldest");
    assert!(page(bp, &live, t, Some(1), 5).await.is_empty(), "below 1");
    assert_eq!(
        page(bp, &live, t, Some(1000), 2).await,
        [10, 9],
        "before beyond the end"
    );
    assert_eq!(
        page(bp, &live, t, Some(u64::MAX), 2).await,
        [10, 9],
        "before at the end of the range"
    );
    assert!(page(bp, &live, t, None, 0).await.is_empty(), "limit 0");

    // The customer's transcript.
    let t = Transcript::Customer;
    let read = bp.messages(&acc, live.id(), t, None, 100).await.unwrap();
    assert_eq!(read, newest_first(&customer), "customer messages only");
    assert!(
        read.iter().all(|m| m.audience == Audience::Everyone),
        "nothing meant for agents only"
    );
    assert_eq!(page(bp, &live, t, None, 2).await, [6, 5], "newest page");
    assert_eq!(page(bp, &live, t, Some(4), 2).await, [3, 2], "below 4");
    assert_eq!(page(bp, &live, t, Some(2), 5).await, [1], "the oldest");
    assert!(page(bp, &live, t, Some(1), 5).await.is_empty(), "below 1");
    assert_eq!(
        page(bp, &live, t, Some(50), 2).await,
        [6, 5],
        "before beyond the end"
    );
    assert_eq!(
        page(bp, &live, t, Some(u64::MAX), 2).await,
        [6, 5],
        "before at the end of the range"
    );
    assert!(page(bp, &live, t, None, 0).await.is_empty(), "limit 0");

    // Walking the pages gives each transcript whole.
    for (t, whole) in [
        (Transcript::Agents, &all),
        (Transcript::Customer, &customer),
    ] {
        let mut walked = Vec::new();
        let mut before = None;
        for _ in 0..=whole.len() {
            let p = bp.messages(&acc, live.id(), t, before, 4).await.unwrap();
            let Some(last) = p.last() else { break };
            before = Some(number(last, t));
            walked.extend(p);
        }
        assert_eq!(walked, newest_first(whole), "{t:?}: walked in pages of 4");
    }

    // Scoped.
    let other = account_id();
    for t in [Transcript::Agents, Transcript::Customer] {
        assert!(
            bp.messages(&other, live.id(), t, None, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            bp.messages(&acc, &SessionId::random(), t, None, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
