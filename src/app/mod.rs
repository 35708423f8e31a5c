//! The use cases, one layer below `http/`: each is one function that takes
//! the caller and what it asked for, drives the actors and the backplane,
//! and returns what to answer. `http/` only extracts, calls one of these,
//! and maps the result; it never names the backplane or the bus.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod customer;
pub mod durable;
mod error;
pub mod idempotency;
pub mod provisioning;
pub mod sessions;
pub mod tokens;

use std::sync::Arc;

use crate::actors::outbox::{Connect, Inbox, Outbox};
use crate::actors::session::{Execute, Executed, Want};
use crate::actors::{Admitted, Metrics, Node, StreamPermit};
use crate::backplane::{CustomerRates, Guard, Rate, RateVerdict};
use crate::domain::{Account, Agent, AgentId, Command, SessionId};

pub use error::Error;

/// `entries` as stored with a change of `account`: kept for its trail's
/// retention.
pub(crate) fn audited<'a>(
    account: &Account,
    entries: &'a [crate::domain::AuditEntry],
) -> crate::backplane::Audited<'a> {
    crate::backplane::Audited {
        entries,
        retention: account.policy.trail_retention(),
        replaces: crate::backplane::Replaces::Anything,
    }
}

/// An agent calling, with its account and profile as stored now.
#[derive(Debug)]
pub struct AgentCaller {
    /// The agent's account.
    pub account: Account,
    /// The agent.
    pub agent: Agent,
    /// Names the token it called with (its signature), for per-token limits.
    pub token: String,
    /// When that token was minted.
    pub minted: chrono::DateTime<chrono::Utc>,
    /// The agent's last revocation mark, if any (deleting an agent revokes
    /// its tokens too): what the agent did before it belongs to another
    /// epoch (see [`AgentCaller::key_owner`]).
    pub epoch: Option<chrono::DateTime<chrono::Utc>>,
    /// Its place among the requests the node handles now.
    pub admitted: Admitted,
}

impl AgentCaller {
    /// Whose `Idempotency-Key`s the caller's are: the agent's, within its
    /// epoch, so an agent deleted and created again under the same id never
    /// gets its predecessor's answers (and their customer tokens) replayed.
    pub fn key_owner(&self) -> String {
        let epoch = self.epoch.map_or(0, |t| t.timestamp_millis());
        format!("agent:{}:{epoch}", self.agent.id.as_str())
    }
}

/// The customer of one session calling.
#[derive(Debug)]
pub struct CustomerCaller {
    /// The session's account.
    pub account: Account,
    /// The session.
    pub session: SessionId,
    /// Names the token it called with (its signature), for per-token limits.
    pub token: String,
    /// When that token was minted.
    pub minted: chrono::DateTime<chrono::Utc>,
    /// Its place among the requests the node handles now.
    pub admitted: Admitted,
}

/// A place among the requests this node handles now, or `Overloaded`.
pub fn admit(node: &Node) -> Result<Admitted, Error> {
    node.admission.try_admit().ok_or_else(|| {
        Metrics::inc(&node.metrics.requests_shed);
        Error::Overloaded
    })
}

/// The bucket of each agent and customer token.
fn token_rate(node: &Node) -> Rate {
    let limits = &node.settings.limits;
    Rate {
        per_sec: limits.rate_per_token,
        burst: limits.rate_burst,
    }
}

/// The admin token's bucket.
fn admin_rate(node: &Node) -> Rate {
    let limits = &node.settings.limits;
    Rate {
        per_sec: limits.admin_rate,
        burst: limits.admin_burst,
    }
}

/// What an agent token stands for now.
#[derive(Debug)]
pub enum TokenCheck {
    /// Its account and agent as stored now, and the agent's last
    /// revocation mark.
    Valid(Account, Agent, Option<chrono::DateTime<chrono::Utc>>),
    /// The account or the agent no longer exists.
    Gone,
    /// Minted before its agent's (or account's) tokens were revoked.
    Revoked,
}

/// Who an agent token minted at `issued_at` names: its account and agent
/// as stored now, checked against their revocation marks (one backplane
/// round trip, on every request, on every node: a revocation holds at once).
pub async fn agent_caller(
    node: &Node,
    account: &crate::domain::AccountId,
    agent: &AgentId,
    issued_at: chrono::DateTime<chrono::Utc>,
    token: &str,
) -> Result<TokenCheck, Error> {
    let rate = token_rate(node);
    let holder = node
        .backplane
        .account_and_agent(account, agent, token, rate)
        .await?;
    if let RateVerdict::Limited(wait) = holder.rate {
        Metrics::inc(&node.metrics.requests_rate_limited);
        return Err(Error::RateLimited(wait));
    }
    if holder.not_before.is_some_and(|t| issued_at < t) {
        return Ok(TokenCheck::Revoked);
    }
    Ok(match (holder.account, holder.agent) {
        (Some(account), Some(agent)) => TokenCheck::Valid(account, agent, holder.not_before),
        _ => TokenCheck::Gone,
    })
}

/// The account a customer token names, as stored now, once the token had
/// a request left (one backplane round trip).
pub async fn customer_account(
    node: &Node,
    account: &crate::domain::AccountId,
    session: &SessionId,
    token: &str,
) -> Result<CustomerCheck, Error> {
    let limits = &node.settings.limits;
    let rates = CustomerRates {
        token: token_rate(node),
        account: Rate {
            per_sec: limits.customer_rate_per_account,
            burst: limits.customer_burst_per_account,
        },
    };
    let holder = node
        .backplane
        .account_for_token(account, session, token, rates)
        .await?;
    if let RateVerdict::Limited(wait) = holder.rate {
        Metrics::inc(&node.metrics.requests_rate_limited);
        return Err(Error::RateLimited(wait));
    }
    Ok(match holder.account {
        None => CustomerCheck::AccountGone,
        Some(_) if !holder.session_open => CustomerCheck::SessionClosed,
        Some(account) => CustomerCheck::Valid(account),
    })
}

/// What a customer token's check found.
#[derive(Debug)]
pub enum CustomerCheck {
    /// The token is good: its account.
    Valid(Account),
    /// The account was deleted.
    AccountGone,
    /// Its session ended (or is past its retention): the token is no
    /// longer good, so ending sessions cannot mint fresh request buckets.
    SessionClosed,
}

/// The admin token had a request left (one backplane round trip).
pub async fn admin_allowed(node: &Node) -> Result<(), Error> {
    match node.backplane.take_admin(admin_rate(node)).await? {
        RateVerdict::Allowed => Ok(()),
        RateVerdict::Limited(wait) => {
            Metrics::inc(&node.metrics.requests_rate_limited);
            Err(Error::RateLimited(wait))
        }
    }
}

/// Runs a command on a session through this node's session actor, under
/// the account's current policy.
pub(crate) async fn run(
    node: &Arc<Node>,
    account: &Account,
    session: &SessionId,
    command: Command,
    guard: Option<Guard>,
    want: Want,
) -> Result<Executed, Error> {
    let execute = Execute {
        policy: account.policy.clone(),
        command,
        guard,
        want,
    };
    Ok(node.ask_session(&account.id, session, execute).await??)
}

/// Opens an event stream on `actor` (an agent's or a session's), once the
/// token `token`, minted at `minted`, has a place left among its streams.
pub(crate) async fn open_stream<A>(
    node: &Node,
    token: &str,
    minted: chrono::DateTime<chrono::Utc>,
    role: crate::metrics::Role,
    actor: actix::Addr<A>,
) -> Result<(Inbox, StreamPermit), Error>
where
    A: actix::Actor<Context = actix::Context<A>> + actix::Handler<Connect>,
{
    let permit = node
        .permits
        .acquire(token, node.metrics.streams_of(role))
        .inspect_err(|_| Metrics::inc(&node.metrics.streams_refused))?;
    let sse = &node.settings.sse;
    let (outbox, inbox) = Outbox::channel(sse.outbox, sse.outbox_bytes);
    actor.send(Connect { outbox, minted }).await?;
    tracing::debug!(open = node.permits.open_streams(), "event stream opened");
    Ok((inbox, permit))
}

/// Whether the backplane answers (readiness).
pub async fn ready(node: &Node) -> Result<(), Error> {
    Ok(node.backplane.ping().await?)
}
