//! Admin: accounts, portals, agents, agent tokens.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::Error;
use super::tokens::{Subject, Tokens};
use crate::actors::Node;
use crate::backplane::{BackplaneError, Replaces, Stored};
use crate::domain::{
    Account, AccountId, Agent, AgentId, AuditAction, AuditEntry, DomainError, LogoutReason, Portal,
};

/// How often an audited write is tried when its record changed between
/// the read its entries were made from and the write.
const AUDITED_TRIES: usize = 4;

/// Runs `attempt` (read a record, write over it with the entries made from
/// what was read) again while the record changed meanwhile: the entries
/// always describe what the write replaced.
pub(crate) async fn audited_write<T, Fut>(mut attempt: impl FnMut() -> Fut) -> Result<T, Error>
where
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    for _ in 0..AUDITED_TRIES {
        match attempt().await {
            Err(Error::Backplane(BackplaneError::Changed)) => continue,
            done => return done,
        }
    }
    Err(Error::Contended)
}

/// What an audited write over `before` replaces.
fn replacing<T>(before: Option<&Stored<T>>) -> Replaces<'_> {
    before.map_or(Replaces::Nothing, |b| Replaces::Bytes(&b.bytes))
}

/// Stores an account; `true` if it is new. Replacing one records what
/// changed: its name (`account_updated`), its policy (`policy_changed`).
pub async fn put_account(node: &Arc<Node>, account: &Account) -> Result<bool, Error> {
    audited_write(|| async {
        let before = node.backplane.account_record(&account.id).await?;
        store_account(node, before.as_ref(), account).await
    })
    .await
}

/// Stores `account` over `before` (as read), with the audit entries of
/// the change; `Changed` if it is no longer `before`.
pub(crate) async fn store_account(
    node: &Arc<Node>,
    stored: Option<&Stored<Account>>,
    account: &Account,
) -> Result<bool, Error> {
    let now = Utc::now();
    let mut entries = Vec::new();
    if let Some(before) = stored.map(|s| &s.value) {
        if before.name != account.name {
            entries.push(AuditEntry::admin(
                now,
                AuditAction::AccountUpdated,
                json!({"name": account.name}),
            ));
        }
        if before.policy != account.policy {
            entries.push(AuditEntry::admin(
                now,
                AuditAction::PolicyChanged,
                json!({"fields": changed_fields(&before.policy, &account.policy)}),
            ));
        }
    }
    let audit = crate::backplane::Audited {
        replaces: replacing(stored),
        ..super::audited(account, &entries)
    };
    Ok(node.backplane.put_account(account, audit).await?)
}

/// The names of the policy fields that differ.
fn changed_fields(before: &crate::domain::Policy, after: &crate::domain::Policy) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Vec::new();
    };
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Stores `agent` over `before` (as read) with its audit entry:
/// `agent_created`, or `agent_updated` when it changed; `true` if it is
/// new; `Changed` if it is no longer `before`.
pub(crate) async fn store_agent(
    node: &Arc<Node>,
    account: &Account,
    stored: Option<&Stored<Agent>>,
    agent: &Agent,
) -> Result<bool, Error> {
    let action = match stored.map(|s| &s.value) {
        None => Some(AuditAction::AgentCreated),
        Some(b) if b != agent => Some(AuditAction::AgentUpdated),
        Some(_) => None,
    };
    let entries: Vec<AuditEntry> = action
        .map(|action| {
            AuditEntry::admin(
                Utc::now(),
                action,
                json!({"agent": agent.id, "name": agent.name, "portals": agent.portals}),
            )
        })
        .into_iter()
        .collect();
    let audit = crate::backplane::Audited {
        replaces: replacing(stored),
        ..super::audited(account, &entries)
    };
    Ok(node.backplane.put_agent(&account.id, agent, audit).await?)
}

/// An account that must exist (404 otherwise).
pub async fn existing_account(node: &Arc<Node>, id: &AccountId) -> Result<Account, Error> {
    node.backplane
        .account(id)
        .await?
        .ok_or(Error::NotFound("account"))
}

/// Stores a portal of an existing account; `true` if it is new.
pub async fn put_portal(
    node: &Arc<Node>,
    account: &AccountId,
    portal: &Portal,
) -> Result<bool, Error> {
    existing_account(node, account).await?;
    Ok(node.backplane.put_portal(account, portal).await?)
}

/// Stores an agent of an existing account, whose portals must all exist;
/// `true` if it is new. A change of portals takes effect at once: an agent
/// logged into a portal it is no longer a member of is logged out of it
/// (`logged_out`, reason `membership_changed`) and its offers withdrawn.
pub async fn put_agent(
    node: &Arc<Node>,
    account: &AccountId,
    agent: &Agent,
) -> Result<bool, Error> {
    let stored_account = existing_account(node, account).await?;
    let known = node.backplane.portals(account).await?;
    if let Some(missing) = agent
        .portals
        .iter()
        .find(|p| !known.iter().any(|k| &k.id == *p))
    {
        return Err(DomainError::Invalid(format!(
            "portal '{missing}' does not exist in this account"
        ))
        .into());
    }
    let (before, created) = audited_write(|| async {
        let before = node.backplane.agent_record(account, &agent.id).await?;
        let created = store_agent(node, &stored_account, before.as_ref(), agent).await?;
        Ok((before.map(|b| b.value), created))
    })
    .await?;
    if let Some(before) = before
        && let Some(portal) = node.backplane.presence(account, &agent.id).await?
        && !agent.is_member_of(&portal)
    {
        // Its offers are found through the portals it had.
        let mut was = agent.clone();
        was.portals.extend(before.portals);
        super::agents::log_out(
            node,
            &stored_account,
            &was,
            Some(LogoutReason::MembershipChanged),
        )
        .await?;
    }
    Ok(created)
}

/// An agent that must exist in an existing account (404 otherwise).
pub async fn existing_agent(
    node: &Arc<Node>,
    account: &AccountId,
    agent: &AgentId,
) -> Result<Agent, Error> {
    existing_account(node, account).await?;
    node.backplane
        .agent(account, agent)
        .await?
        .ok_or(Error::NotFound("agent"))
}

/// A token minted for an existing agent.
#[derive(Debug, serde::Serialize)]
pub struct AgentToken {
    /// The token.
    pub token: String,
    /// When it stops being valid.
    pub expires_at: chrono::DateTime<Utc>,
    /// Its account.
    pub account: AccountId,
    /// Its agent.
    pub agent: AgentId,
}

/// A token for `agent`, valid `ttl_secs` (at most, and by default,
/// `auth.agent_token_ttl_secs`).
pub async fn agent_token(
    node: &Arc<Node>,
    tokens: &Tokens,
    account: &AccountId,
    agent: &AgentId,
    ttl_secs: Option<u64>,
) -> Result<AgentToken, Error> {
    existing_agent(node, account, agent).await?;
    let max = node.settings.auth.agent_token_ttl_secs;
    let ttl = ttl_secs.unwrap_or(max);
    if ttl == 0 || ttl > max {
        return Err(DomainError::Invalid(format!("ttl_secs must be 1 to {max}")).into());
    }
    let expires_at = Utc::now() + chrono::Duration::seconds(ttl as i64);
    let subject = Subject::Agent {
        account: account.clone(),
        agent: agent.clone(),
    };
    Ok(AgentToken {
        token: tokens.mint(subject, expires_at),
        expires_at,
        account: account.clone(),
        agent: agent.clone(),
    })
}

/// An account and one of its agents, both of which must exist (404
/// otherwise), each read once.
pub async fn existing_account_and_agent(
    node: &Arc<Node>,
    account: &AccountId,
    agent: &AgentId,
) -> Result<(Account, Agent), Error> {
    let stored = existing_account(node, account).await?;
    let agent = node
        .backplane
        .agent(account, agent)
        .await?
        .ok_or(Error::NotFound("agent"))?;
    Ok((stored, agent))
}
