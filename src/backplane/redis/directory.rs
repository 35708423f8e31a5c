//! Accounts, portals and agents, tokens and their revocation marks, each
//! audited change written with its entries by one script.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::limits::verdict;
use super::{
    RedisBackplane, audit_args, corrupt, decoded, replaces_args, set_outcome, stored, unavailable,
};
use crate::backplane::{
    Audited, BackplaneError, CustomerHolder, CustomerRates, Directory, Rate, RateVerdict, Result,
    Stored, TokenHolder, codec,
};
use crate::domain::session::SessionStatus;
use crate::domain::{Account, AccountId, Agent, AgentId, Portal, PortalId, SessionId};

#[async_trait]
impl Directory for RedisBackplane {
    async fn put_account(&self, account: &Account, audit: Audited<'_>) -> Result<bool> {
        // Two hash tags (the account's, its bucket of the list): two
        // calls, sent together (a cluster routes each to its shard); the
        // record and its audit entries are one script on the account's.
        let k = self.account_keys(&account.id);
        let mut record = self.scripts.audited_set.prepare_invoke();
        record
            .key(k.account())
            .key(k.audit())
            .arg("set")
            .arg("")
            .arg(codec::encode(account));
        replaces_args(&mut record, audit.replaces);
        audit_args(&mut record, audit);
        let mut listed = redis::cmd("ZADD");
        listed
            .arg(self.keys.accounts(self.keys.bucket_of(&account.id)))
            .arg(0)
            .arg(account.id.as_str());
        let (mut a, mut b) = (self.conn(), self.conn());
        let (new, _): (i64, i64) =
            tokio::try_join!(record.invoke_async(&mut a), listed.query_async(&mut b))
                .map_err(unavailable)?;
        set_outcome(new)
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        Ok(self.account_record(id).await?.map(|s| s.value))
    }

    async fn account_record(&self, id: &AccountId) -> Result<Option<Stored<Account>>> {
        let bytes: Option<Vec<u8>> = self
            .conn()
            .get(self.account_keys(id).account())
            .await
            .map_err(unavailable)?;
        stored(bytes)
    }

    async fn put_portal(&self, account: &AccountId, portal: &Portal) -> Result<bool> {
        let key = self.account_keys(account).portals();
        self.hset_new(key, portal.id.as_str(), codec::encode(portal))
            .await
    }

    async fn portal(&self, account: &AccountId, id: &PortalId) -> Result<Option<Portal>> {
        let key = self.account_keys(account).portals();
        self.hget_decoded(key, id.as_str()).await
    }

    async fn portals(&self, account: &AccountId) -> Result<Vec<Portal>> {
        let all: HashMap<String, Vec<u8>> = self
            .conn()
            .hgetall(self.account_keys(account).portals())
            .await
            .map_err(unavailable)?;
        let mut portals = all
            .values()
            .map(|b| codec::decode::<Portal>(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        portals.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(portals)
    }

    async fn put_agent(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let k = self.account_keys(account);
        let mut call = self.scripts.audited_set.prepare_invoke();
        call.key(k.agents())
            .key(k.audit())
            .arg("hset")
            .arg(agent.id.as_str())
            .arg(codec::encode(agent));
        replaces_args(&mut call, audit.replaces);
        audit_args(&mut call, audit);
        let new: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        set_outcome(new)
    }

    async fn agent(&self, account: &AccountId, id: &AgentId) -> Result<Option<Agent>> {
        let key = self.account_keys(account).agents();
        self.hget_decoded(key, id.as_str()).await
    }

    async fn agent_record(
        &self,
        account: &AccountId,
        id: &AgentId,
    ) -> Result<Option<Stored<Agent>>> {
        let key = self.account_keys(account).agents();
        let bytes: Option<Vec<u8>> = self
            .conn()
            .hget(key, id.as_str())
            .await
            .map_err(unavailable)?;
        stored(bytes)
    }

    async fn account_and_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        token: &str,
        rate: Rate,
    ) -> Result<TokenHolder> {
        let k = self.account_keys(account);
        type Read = (
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<i64>,
            Option<i64>,
            u64,
        );
        let (a, g, agent_mark, account_mark, wait): Read = self
            .scripts
            .account_and_agent
            .key(k.account())
            .key(k.agents())
            .key(k.revoked(Some(agent)))
            .key(k.revoked(None))
            .key(k.bucket(token))
            .arg(agent.as_str())
            .arg(rate.per_sec)
            .arg(rate.burst)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        holder(a, g, agent_mark.max(account_mark), verdict(wait))
    }

    async fn token_holder(&self, account: &AccountId, agent: &AgentId) -> Result<TokenHolder> {
        let k = self.account_keys(account);
        type Read = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, Option<i64>);
        let (a, g, agent_mark, account_mark): Read = self
            .scripts
            .token_holder
            .key(k.account())
            .key(k.agents())
            .key(k.revoked(Some(agent)))
            .key(k.revoked(None))
            .arg(agent.as_str())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        holder(a, g, agent_mark.max(account_mark), RateVerdict::Allowed)
    }

    async fn account_for_token(
        &self,
        account: &AccountId,
        session: &SessionId,
        token: &str,
        rates: CustomerRates,
    ) -> Result<CustomerHolder> {
        let k = self.account_keys(account);
        let (a, open, wait): (Option<Vec<u8>>, u8, u64) = self
            .scripts
            .account_for_token
            .key(k.account())
            .key(k.bucket(token))
            .key(k.session(session))
            .key(k.sessions_index(SessionStatus::Ended))
            .key(k.customers_bucket())
            .arg(rates.token.per_sec)
            .arg(rates.token.burst)
            .arg(session.as_str())
            .arg(rates.account.per_sec)
            .arg(rates.account.burst)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(CustomerHolder {
            account: decoded(a)?,
            session_open: open == 1,
            rate: verdict(wait),
        })
    }

    async fn accounts(&self, after: Option<&AccountId>, limit: usize) -> Result<Vec<Account>> {
        let mut out = Vec::with_capacity(limit);
        let mut from = match after {
            Some(a) => format!("({}", a.as_str()),
            None => "-".to_owned(),
        };
        // Each bucket is sorted by id; a page is the first `want` ids of
        // their merge. An id whose account is gone (a deletion cut short)
        // is dropped from its bucket as it is met, and the page filled
        // from further on.
        while out.len() < limit {
            let want = limit - out.len();
            let mut ids: Vec<String> = Vec::new();
            let reads = self.keys.buckets().map(|bucket| {
                let mut conn = self.conn();
                let key = self.keys.accounts(bucket);
                let from = from.clone();
                async move {
                    redis::cmd("ZRANGE")
                        .arg(key)
                        .arg(from)
                        .arg("+")
                        .arg("BYLEX")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(want)
                        .query_async::<Vec<String>>(&mut conn)
                        .await
                }
            });
            for bucket in futures_util::future::try_join_all(reads)
                .await
                .map_err(unavailable)?
            {
                ids.extend(bucket);
            }
            ids.sort();
            ids.truncate(want);
            let Some(last) = ids.last() else { break };
            from = format!("({last}");
            let mut accounts = Vec::with_capacity(ids.len());
            for id in &ids {
                let id = AccountId::parse(id)
                    .map_err(|_| BackplaneError::Unavailable(format!("bad account id {id:?}")))?;
                accounts.push(id);
            }
            // One GET per account (each in its own slot), sent together.
            let found = futures_util::future::try_join_all(accounts.iter().map(|id| {
                let mut conn = self.conn();
                let key = self.account_keys(id).account();
                async move { conn.get::<_, Option<Vec<u8>>>(key).await }
            }))
            .await
            .map_err(unavailable)?;
            for (id, bytes) in accounts.iter().zip(found) {
                match decoded::<Account>(bytes)? {
                    Some(account) => out.push(account),
                    None => {
                        let _: i64 = self
                            .conn()
                            .zrem(self.keys.accounts(self.keys.bucket_of(id)), id.as_str())
                            .await
                            .map_err(unavailable)?;
                    }
                }
            }
            if ids.len() < want {
                break;
            }
        }
        Ok(out)
    }

    async fn agents(
        &self,
        account: &AccountId,
        after: Option<&AgentId>,
        limit: usize,
    ) -> Result<Vec<Agent>> {
        // The admin's list: the agents hash is read whole and paged here.
        let all: HashMap<String, Vec<u8>> = self
            .conn()
            .hgetall(self.account_keys(account).agents())
            .await
            .map_err(unavailable)?;
        let mut ids: Vec<&String> = all
            .keys()
            .filter(|id| after.is_none_or(|a| id.as_str() > a.as_str()))
            .collect();
        ids.sort();
        ids.into_iter()
            .take(limit)
            .map(|id| codec::decode::<Agent>(&all[id]).map_err(corrupt))
            .collect()
    }

    async fn delete_agent(
        &self,
        account: &AccountId,
        agent: &AgentId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let k = self.account_keys(account);
        let mut call = self.scripts.audited_hdel.prepare_invoke();
        call.key(k.agents()).key(k.audit()).arg(agent.as_str());
        audit_args(&mut call, audit);
        let removed: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn delete_portal(
        &self,
        account: &AccountId,
        portal: &PortalId,
        audit: Audited<'_>,
    ) -> Result<bool> {
        let k = self.account_keys(account);
        let mut call = self.scripts.audited_hdel.prepare_invoke();
        call.key(k.portals())
            .key(k.audit())
            .key(k.portal_online(portal))
            .arg(portal.as_str());
        audit_args(&mut call, audit);
        let removed: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn delete_account(&self, account: &AccountId, audit: Audited<'_>) -> Result<bool> {
        let k = self.account_keys(account);
        let mut conn = self.conn();
        let existed: i64 = conn.exists(k.account()).await.map_err(unavailable)?;
        // Every key of the account shares its prefix. SCAN walks the whole
        // keyspace (in pages), which is fine for a rare admin action.
        // On a cluster the scan runs on the primary of the account's slot
        // (SCAN has no key to route by), which holds every key it has.
        let slot = crate::backplane::keys::slot(k.account().as_bytes());
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(k.pattern())
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) =
                self.query_slot(scan, slot).await.map_err(unavailable)?;
            // The account's own record goes last: a deletion cut short is
            // found and finished by the next call.
            let record = k.account();
            let doomed: Vec<&String> = keys
                .iter()
                .filter(|key| !k.outlives_account(key) && **key != record)
                .collect();
            if !doomed.is_empty() {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(&doomed)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut last = self.scripts.audited_unlink.prepare_invoke();
        last.key(k.account()).key(k.audit());
        audit_args(&mut last, audit);
        let _: i64 = last.invoke_async(&mut conn).await.map_err(unavailable)?;
        let _: i64 = conn
            .zrem(
                self.keys.accounts(self.keys.bucket_of(account)),
                account.as_str(),
            )
            .await
            .map_err(unavailable)?;
        Ok(existed == 1)
    }

    async fn revoke_tokens(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        at: DateTime<Utc>,
        keep_for: Duration,
        audit: Audited<'_>,
    ) -> Result<()> {
        let k = self.account_keys(account);
        let mut call = self.scripts.revoke.prepare_invoke();
        call.key(k.revoked(agent))
            .key(k.audit())
            .arg(at.timestamp_millis())
            .arg(keep_for.as_millis().max(1) as u64);
        audit_args(&mut call, audit);
        let _: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// What the token scripts read, decoded: the later revocation mark counts.
fn holder(
    account: Option<Vec<u8>>,
    agent: Option<Vec<u8>>,
    mark_ms: Option<i64>,
    rate: RateVerdict,
) -> Result<TokenHolder> {
    Ok(TokenHolder {
        account: decoded(account)?,
        agent: decoded(agent)?,
        not_before: mark_ms.and_then(DateTime::from_timestamp_millis),
        rate,
    })
}
