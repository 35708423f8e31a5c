//! What an actor can fail with. The use cases (`app::Error`) add what only
//! a request can meet (rate limits, admission, permissions).

use crate::backplane::BackplaneError;
use crate::domain::DomainError;

/// Why an actor could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A domain rule refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Something named does not exist (in the caller's account).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The backplane cannot be reached.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    /// Too many concurrent changes to one session; the client may retry.
    #[error("the session is changing too fast; retry")]
    Contended,
    /// This node is shutting down or an actor is gone.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl From<actix::MailboxError> for Failure {
    fn from(e: actix::MailboxError) -> Self {
        Failure::Unavailable(e.to_string())
    }
}
