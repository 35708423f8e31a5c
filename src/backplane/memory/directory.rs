//! Accounts, portals, agents, tokens and revocation marks.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryBackplane, replaces, stored};
use crate::backplane::{
    Audited, CustomerHolder, CustomerRates, Directory, Rate, RateVerdict, Result, Stored,
    TokenHolder,
};
use crate::domain::{Account, AccountId, Agent, AgentId, Portal, PortalId, SessionId};

/// The name of an account's bucket of customer requests among its tokens'
/// buckets (no token is blank-led).
const CUSTOMERS_BUCKET: &str = " customers";

#[async_trait]
impl Directory for MemoryBackplane {
    async fn put_account(&self, account: &Account, audit: Audited<'_>) -> Result<bool> {
        let mut s = self.store();
        let data = s.data_mut(&account.id);
        replaces(data.account.as_ref(), audit.replaces)?;
        let new = data.account.replace(account.clone()).is_none();
        s.record(&account.id, audit, Instant::now());
        Ok(new)
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        Ok(self.store().data(id).and_then(|d| d.account.clone()))
    }

    async fn account_record(&self, id: &AccountId) -> Result<Option<Stored<Account>>> {
        Ok(self.account(id).await?.map(stored))
    }

    async fn put_portal(&self, account: &AccountId, portal: &Portal) -> Result<bool> {
        let mut s = self.store();
        let data = s.data_mut(account);
        Ok(data
            .portals
            .insert(portal.id.clone(), portal.clone())
            .is_none())
    }

    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.portals.get(id).cloned()))
    }

    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>> {
        Ok(self
            .store()
            .data(account)
            .map(|d| d.portals.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn put_agent(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let mut s = self.store();
        let data = s.data_mut(account);
        replaces(data.agents.get(&agent.id), audit.replaces)?;
        let new = data
            .agents
            .insert(agent.id.clone(), agent.clone())
            .is_none();
        s.record(account, audit, Instant::now());
        Ok(new)
    }

    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.agents.get(id).cloned()))
    }

    async fn agent_record(
        &self,
        account: &AccountId,
        id: &AgentId,
    ) -> Result<Option<Stored<Agent>>> {
        Ok(self.agent(account, id).await?.map(stored))
    }

    async fn account_and_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        token: &str,
        rate: Rate,
    ) -> Result<TokenHolder> {
        let mut s = self.store();
        let now = Instant::now();
        let verdict = s.take(Some((account.clone(), token.to_owned())), rate, now);
        let not_before = s
            .revocation(account, Some(agent), now)
            .max(s.revocation(account, None, now))
            .and_then(DateTime::from_timestamp_millis);
        Ok(match s.data(account) {
            Some(d) => TokenHolder {
                account: d.account.clone(),
                agent: d.agents.get(agent).cloned(),
                not_before,
                rate: verdict,
            },
            None => TokenHolder {
                not_before,
                rate: verdict,
                ..TokenHolder::default()
            },
        })
    }

    async fn token_holder(&self, account: &AccountId, agent: &AgentId) -> Result<TokenHolder> {
        let s = self.store();
        let now = Instant::now();
        let not_before = s
            .revocation(account, Some(agent), now)
            .max(s.revocation(account, None, now))
            .and_then(DateTime::from_timestamp_millis);
        let data = s.data(account);
        Ok(TokenHolder {
            account: data.and_then(|d| d.account.clone()),
            agent: data.and_then(|d| d.agents.get(agent).cloned()),
            not_before,
            rate: RateVerdict::Allowed,
        })
    }

    async fn account_for_token(
        &self,
        account: &AccountId,
        session: &SessionId,
        token: &str,
        rates: CustomerRates,
    ) -> Result<CustomerHolder> {
        let mut s = self.store();
        let now = Instant::now();
        let session_open = s
            .data(account)
            .and_then(|d| d.session(session, now))
            .is_some_and(|stored| stored.delete_at.is_none());
        let rate = if session_open {
            match s.take(Some((account.clone(), token.to_owned())), rates.token, now) {
                RateVerdict::Allowed => s.take(
                    Some((account.clone(), CUSTOMERS_BUCKET.to_owned())),
                    rates.account,
                    now,
                ),
                limited => limited,
            }
        } else {
            RateVerdict::Allowed
        };
        Ok(CustomerHolder {
            account: s.data(account).and_then(|d| d.account.clone()),
            session_open,
            rate,
        })
    }

    async fn accounts(&self, after: Option<&AccountId>, limit: usize) -> Result<Vec<Account>> {
        let s = self.store();
        let mut all: Vec<&Account> = s
            .accounts
            .values()
            .filter_map(|d| d.account.as_ref())
            .filter(|a| after.is_none_or(|after| &a.id > after))
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all.into_iter().take(limit).cloned().collect())
    }

    async fn agents(
        &self,
        account: &AccountId,
        after: Option<&AgentId>,
        limit: usize,
    ) -> Result<Vec<Agent>> {
        let s = self.store();
        let Some(d) = s.data(account) else {
            return Ok(Vec::new());
        };
        let mut all: Vec<&Agent> = d
            .agents
            .values()
            .filter(|a| after.is_none_or(|after| &a.id > after))
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all.into_iter().take(limit).cloned().collect())
    }

    async fn delete_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let mut s = self.store();
        let Some(d) = s.accounts.get_mut(account) else {
            return Ok(false);
        };
        let existed = d.agents.remove(agent).is_some();
        if existed {
            s.record(account, audit, Instant::now());
        }
        Ok(existed)
    }

    async fn delete_portal(
        &self,
        account: &AccountId,
        portal: &PortalId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let mut s = self.store();
        let Some(d) = s.accounts.get_mut(account) else {
            return Ok(false);
        };
        d.portal_online.remove(portal);
        let existed = d.portals.remove(portal).is_some();
        if existed {
            s.record(account, audit, Instant::now());
        }
        Ok(existed)
    }

    async fn delete_account(&self, account: &AccountId, audit: Audited<'_>) -> Result<bool> {
        let mut s = self.store();
        let existed = s
            .accounts
            .remove(account)
            .is_some_and(|d| d.account.is_some());
        if existed {
            s.record(account, audit, Instant::now());
        }
        Ok(existed)
    }

    async fn revoke_tokens(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        at: DateTime<Utc>,
        keep_for: Duration,
        audit: Audited<'_>,
    ) -> Result<()> {
        let mut s = self.store();
        s.record(account, audit, Instant::now());
        let until = Instant::now() + keep_for;
        let mark = s
            .revoked
            .entry((account.clone(), agent.cloned()))
            .or_insert((i64::MIN, until));
        mark.0 = mark.0.max(at.timestamp_millis());
        mark.1 = mark.1.max(until);
        Ok(())
    }
}
