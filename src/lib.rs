//! collabd: session collaboration for remote support.

pub mod domain;
pub mod backplane;
