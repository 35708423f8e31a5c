//! Test-only support for collabd, kept out of the server library (the
//! library holds only what the product runs): the backplane
//! conformance suite that every backplane (memory, Redis, Redis Cluster)
//! must pass, and the settings tests start nodes with.

// Test support: it panics on purpose when a contract is broken.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod conformance;

use collabd::settings::Settings;

/// The admin token of [`settings`] (32 bytes or more, as every secret in
/// tests and scripts).
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Settings for tests: memory backplane, a free port, one worker, a random
/// node id and token secret, and rate limits no test reaches unless it
/// sets them itself.
pub fn settings() -> Settings {
    let mut s = Settings::defaults();
    s.http.listen = "127.0.0.1:0".into();
    s.http.workers = 1;
    s.http.shutdown_timeout_secs = 1;
    s.node.id = collabd::domain::id::random_id("node");
    s.auth.admin_token = TEST_ADMIN_TOKEN.into();
    s.auth.secret = collabd::domain::id::random_id("secret");
    s.sources = Vec::new();
    // Tests drive one token hard (floods, races); the tests of the limits
    // themselves set them low.
    s.limits.rate_per_token = 1_000_000;
    s.limits.rate_burst = 1_000_000;
    s.limits.admin_rate = 1_000_000;
    s.limits.admin_burst = 1_000_000;
    s.limits.customer_rate_per_account = 1_000_000;
    s.limits.customer_burst_per_account = 1_000_000;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_settings_are_valid_on_loopback_and_memory() {
        let s = settings();
        assert_eq!(s.http.listen, "127.0.0.1:0");
        assert_eq!(s.backplane.kind, collabd::settings::BackplaneKind::Memory);
        assert!(s.validate().is_ok(), "{:?}", s.validate());
    }
}
