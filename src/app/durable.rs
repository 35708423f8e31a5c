//! Durable acknowledgements: with `backplane.wait_replicas` > 0 a change
//! is answered 2xx only after the replicas confirmed it.

use crate::actors::{Metrics, Node};
use crate::backplane::BackplaneError;
use crate::domain::AccountId;

/// Whether changes wait for replicas before they are answered.
pub fn wanted(node: &Node) -> bool {
    node.settings.backplane.wait_replicas > 0
}

/// Waits until the replicas confirmed every change made so far in
/// `account` (at once when none are asked for); counts and logs a change
/// that was not confirmed.
pub async fn confirm(node: &Node, account: &AccountId) -> Result<(), BackplaneError> {
    if !wanted(node) {
        return Ok(());
    }
    node.backplane.confirm(account).await.inspect_err(|e| {
        if matches!(e, BackplaneError::Unconfirmed(_)) {
            Metrics::inc(&node.metrics.changes_unconfirmed);
        }
        tracing::warn!(error = %e, %account, "change not confirmed");
    })
}
