//! End-to-end tests of collabd over HTTP: each test starts its own node on
//! a free port and speaks only the public contract (docs/API.md). One
//! binary for all of them (one link instead of one per file, which keeps
//! builds fast); the modules live in `tests/e2e/`, what they share in
//! `tests/common/`.

/// What the tests share, by concern (`tests/common/`).
mod common;

/// Cluster mode: real redis-server processes and real collabd nodes.
mod cluster;

/// The backplane conformance suite against the embedded (memory) backplane;
/// `cluster::conformance` runs it against Redis and a Redis Cluster.
mod memory_conformance {
    collabd_test_support::backplane_conformance_suite!(std::sync::Arc::new(
        collabd::backplane::memory::MemoryBackplane::new()
    )
        as std::sync::Arc<dyn collabd::backplane::Backplane>);
}

#[path = "e2e/admin.rs"]
mod admin;
#[path = "e2e/bad_input.rs"]
mod bad_input;
#[path = "e2e/beyond_seed.rs"]
mod beyond_seed;
#[path = "e2e/console.rs"]
mod console;
#[path = "e2e/customer.rs"]
mod customer;
#[path = "e2e/escalation.rs"]
mod escalation;
#[path = "e2e/idempotency.rs"]
mod idempotency;
#[path = "e2e/invitations.rs"]
mod invitations;
#[path = "e2e/limits.rs"]
mod limits;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/operations.rs"]
mod operations;
#[path = "e2e/presence.rs"]
mod presence;
#[path = "e2e/provisioning.rs"]
mod provisioning;
#[path = "e2e/sessions.rs"]
mod sessions;
#[path = "e2e/startup.rs"]
mod startup;
#[path = "e2e/tenancy.rs"]
mod tenancy;
