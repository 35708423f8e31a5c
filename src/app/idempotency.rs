//! Creating requests made safe to retry (`Idempotency-Key`): a retry with
//! the same key within 24 h gets the first result and changes nothing, so
//! a client that lost an answer, or got 503 because replicas did not
//! confirm in time, can always retry safely.
//!
//! The first request holds the key (an atomic reserve in the backplane,
//! on the account's hash tag) while it runs; its result replaces the hold,
//! kept 24 h. A key is the caller's own (agent or customer), and bound to
//! the request it was first used with: the same key with another request
//! is `KeyReused`; while the first still runs, `KeyInProgress`. A request
//! that fails changes nothing and gives its key back.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Error;
use crate::actors::{Metrics, Node};
use crate::backplane::BackplaneError;
use crate::domain::AccountId;

/// How long a result is kept for retries.
pub const KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a request may hold its key while it runs: a node that dies
/// mid-request frees the key after this.
const RUNNING_FOR: Duration = Duration::from_secs(30);
/// What a creating request answers when it succeeds.
const CREATED: u16 = 201;

/// Which side of a session a caller is on. Customers' records are kept
/// apart from agents' (their slots start with [`CUSTOMER_SLOT`]), so a
/// store that bounds records per account bounds each side on its own: a
/// customer cannot push the agents' records out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// An agent (its own id is the caller).
    Agent,
    /// A session's customer.
    Customer,
}

/// How a customer's record slot starts (an agent's is the bare digest).
pub const CUSTOMER_SLOT: &str = "c:";

/// One use of a key: whose key, and the request it came with.
pub struct Keyed<'a> {
    /// The caller's side.
    pub side: Side,
    /// The caller's own name (its agent id or its customer token), so two
    /// callers never share a key.
    pub caller: &'a str,
    /// The key as sent.
    pub key: &'a str,
    /// What makes two requests the same one (method, path, body as
    /// parsed).
    pub request: &'a [&'a str],
}

/// What a creating request answers.
#[derive(Debug)]
pub enum Answer {
    /// Made now: 201 with this body.
    Created(Value),
    /// Made by an earlier request with the same key: its answer.
    Replayed {
        /// Its status.
        status: u16,
        /// Its body.
        body: Value,
    },
}

/// What is stored under a key.
#[derive(Serialize, Deserialize)]
struct Record {
    /// Digest of the method, path and body the key was first used with.
    request: String,
    /// The answer, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
}

/// Runs `create` once per key of `keyed`'s caller in `account`; without a
/// key, simply runs it.
pub async fn once<F, E>(
    node: &Node,
    account: &AccountId,
    keyed: Option<Keyed<'_>>,
    create: F,
) -> Result<Answer, E>
where
    F: Future<Output = Result<Value, E>>,
    E: From<Error>,
{
    let Some(keyed) = keyed else {
        return Ok(Answer::Created(create.await?));
    };
    let fingerprint = digest(keyed.request);
    let slot = match keyed.side {
        Side::Agent => digest(&[keyed.caller, keyed.key]),
        Side::Customer => format!("{CUSTOMER_SLOT}{}", digest(&[keyed.caller, keyed.key])),
    };
    let running = record_json(&Record {
        request: fingerprint.clone(),
        status: None,
        body: None,
    });
    let held = node
        .backplane
        .reserve(account, &slot, &running, RUNNING_FOR)
        .await
        .map_err(Error::from)?;
    if let Some(held) = held {
        return Ok(replay(node, &held, &fingerprint)?);
    }
    match create.await {
        Ok(body) => {
            let done = record_json(&Record {
                request: fingerprint,
                status: Some(CREATED),
                body: Some(body.clone()),
            });
            // Written before the answer, so `WAIT` (`durable.rs`) covers it.
            if let Err(e) = node.backplane.record(account, &slot, &done, KEEP).await {
                tracing::warn!(error = %e, "an Idempotency-Key result could not be recorded");
            }
            Ok(Answer::Created(body))
        }
        Err(e) => {
            if let Err(e) = node.backplane.forget(account, &slot).await {
                tracing::warn!(error = %e, "an Idempotency-Key hold could not be released");
            }
            Err(e)
        }
    }
}

/// The answer to a key that is already held or used.
fn replay(node: &Node, held: &str, fingerprint: &str) -> Result<Answer, Error> {
    let held: Record = serde_json::from_str(held).map_err(|e| {
        BackplaneError::Corrupt(format!("an Idempotency-Key record is unreadable: {e}"))
    })?;
    if held.request != fingerprint {
        return Err(Error::KeyReused);
    }
    match (held.status, held.body) {
        (Some(status), Some(body)) => {
            Metrics::inc(&node.metrics.idempotent_replays);
            Ok(Answer::Replayed { status, body })
        }
        _ => Err(Error::KeyInProgress),
    }
}

fn record_json(record: &Record) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// SHA-256 of the parts, each ended by a NUL, in hex.
fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_separate_their_parts() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_eq!(digest(&["a"]).len(), 64);
    }
}
