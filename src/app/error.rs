//! Why a use case could not be served: what its actors failed with, and
//! what only a request can meet (who may do what, rate limits, the node's
//! admission, idempotency keys). `http/error.rs` maps each to its answer.

use std::time::Duration;

use crate::actors::{Failure, StreamsFull};
use crate::backplane::BackplaneError;
use crate::domain::DomainError;

/// Why a request could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A domain rule refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Something named does not exist (in the caller's account).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The backplane cannot be reached, or confirm, or read what it holds.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    /// Too many concurrent changes to one session; the client may retry.
    #[error("the session is changing too fast; retry")]
    Contended,
    /// This node is shutting down or an actor is gone.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// This node is handling as many requests as it may at once.
    #[error("this node is at capacity; retry shortly")]
    Overloaded,
    /// A token already has as many event streams open as it may.
    #[error("this token already has {0} event streams open")]
    TooManyStreams(usize),
    /// The caller's token made more requests than its rate allows; the
    /// next one fits after this long.
    #[error("too many requests with this token; retry after the time given")]
    RateLimited(Duration),
    /// An `Idempotency-Key` first used with another request.
    #[error("this Idempotency-Key was used with a different request; use a new key")]
    KeyReused,
    /// The first request with this `Idempotency-Key` is still running.
    #[error("a request with this Idempotency-Key is still running; retry shortly")]
    KeyInProgress,
}

impl From<Failure> for Error {
    fn from(e: Failure) -> Self {
        match e {
            Failure::Domain(d) => Error::Domain(d),
            Failure::NotFound(what) => Error::NotFound(what),
            Failure::Backplane(b) => Error::Backplane(b),
            Failure::Contended => Error::Contended,
            Failure::Unavailable(why) => Error::Unavailable(why),
        }
    }
}

impl From<StreamsFull> for Error {
    fn from(StreamsFull(limit): StreamsFull) -> Self {
        Error::TooManyStreams(limit)
    }
}

impl From<actix::MailboxError> for Error {
    fn from(e: actix::MailboxError) -> Self {
        Failure::from(e).into()
    }
}
