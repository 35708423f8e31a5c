//! collabd: session collaboration for remote support.

pub mod actors;
pub mod app;
pub mod backplane;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod settings;
pub mod startup;
pub mod telemetry;
