//! What every end-to-end test shares, by concern: an isolated node per test
//! ([`app`]), raw HTTP and the problem+json check ([`http`]), typed calls for
//! the HTTP contract of API.md ([`api`]), the SSE event streams ([`sse`]),
//! picking values out of JSON answers ([`json`]), and a scene fixture with
//! agent and session handles for the set-up most tests repeat ([`scene`],
//! [`handles`]).

pub mod api;
pub mod app;
pub mod handles;
pub mod http;
pub mod json;
pub mod scene;
pub mod sse;

use std::time::Duration;

pub use app::TestApp;
pub use handles::{AgentHandle, AgentLogin, SessionHandle};
pub use http::{Reply, assert_problem};
pub use json::{id_of, participant_ids, pluck, strings};
pub use scene::Scene;
pub use sse::EventStream;

/// The admin token of `collabd_test_support::settings()`.
pub const ADMIN: &str = collabd_test_support::TEST_ADMIN_TOKEN;
/// How long a test waits for something that must happen.
pub const EVENT_WAIT: Duration = Duration::from_secs(5);
/// How long a test listens for something that must not happen, always
/// after a sync point that was published later than the forbidden event.
pub const QUIET: Duration = Duration::from_millis(300);
/// The account most tests provision.
pub const ACME: &str = "acme";
