//! Cluster mode: real `redis-server` processes and real collabd nodes.

// Fixtures that cannot start must fail the test loudly.
#![allow(clippy::expect_used)]

pub mod redis_cluster;
pub mod support;

mod beyond_seed;
mod cluster_mode;
mod conformance;
mod cost;
mod durability;
mod faults;
mod scenarios;
mod tls;
