//! Who is logged in where: the portal of each agent, the per-portal sets
//! and the expiry scores this node's heartbeat keeps fresh (and a dead
//! node's lease fades, `lease.rs`).

use async_trait::async_trait;

use tokio::sync::mpsc;

use super::{PRESENCE_TTL, RedisBackplane, audit_args, corrupt, lock, now_ms, unavailable};
use crate::backplane::{Audited, Faded, Presence, Result, Window, WindowAgent, codec};
use crate::domain::{AccountId, Agent, AgentId, Portal, PortalId};

#[async_trait]
impl Presence for RedisBackplane {
    async fn login(
        &self,
        account: &AccountId,
        agent: &Agent,
        portal: &PortalId,
    ) -> Result<Option<PortalId>> {
        // Listed before it is held: a reaper finds every `held` hash.
        self.index_account(account).await.map_err(unavailable)?;
        let k = self.account_keys(account);
        let mut call = self.scripts.login.prepare_invoke();
        call.key(k.presence())
            .key(k.online())
            .key(k.portal_online(portal))
            .key(k.held(&self.node_id));
        for other in agent.portals.iter().filter(|p| *p != portal) {
            call.key(k.portal_online(other));
        }
        let now = now_ms();
        let previous: Option<String> = call
            .arg(agent.id.as_str())
            .arg(portal.as_str())
            .arg(now + PRESENCE_TTL.as_millis() as i64)
            .arg(now)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.serve(account, &agent.id, |s| s.logged_in = true);
        Ok(previous.and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn logout(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<Option<PortalId>> {
        let k = self.account_keys(account);
        let mut call = self.scripts.logout.prepare_invoke();
        call.key(k.presence()).key(k.online()).key(k.audit());
        for portal in &agent.portals {
            call.key(k.portal_online(portal));
        }
        call.arg(agent.id.as_str()).arg(now_ms());
        audit_args(&mut call, audit);
        let previous: Option<String> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.serve(account, &agent.id, |s| s.logged_in = false);
        Ok(previous.and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        let k = self.account_keys(account);
        let (portal, expires): (Option<String>, Option<f64>) = redis::pipe()
            .hget(k.presence(), agent.as_str())
            .zscore(k.online(), agent.as_str())
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let live = expires.is_some_and(|e| e > now_ms() as f64);
        Ok(portal
            .filter(|_| live)
            .and_then(|p| PortalId::parse(&p).ok()))
    }

    async fn online_in(
        &self,
        account: &AccountId,
        portal: &PortalId,
    ) -> Result<Option<Vec<AgentId>>> {
        let k = self.account_keys(account);
        let ids: Option<Vec<String>> = self
            .scripts
            .online_in
            .key(k.portal_online(portal))
            .key(k.online())
            .key(k.presence())
            .key(k.portals())
            .arg(portal.as_str())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(ids.map(|ids| {
            let mut ids: Vec<AgentId> = ids.iter().filter_map(|a| AgentId::parse(a).ok()).collect();
            ids.sort();
            ids
        }))
    }

    async fn window(&self, account: &AccountId) -> Result<Window> {
        let k = self.account_keys(account);
        type Rows = (
            Vec<String>,
            Vec<Option<String>>,
            Vec<Option<Vec<u8>>>,
            Vec<Option<i64>>,
            Vec<Vec<u8>>,
        );
        let (ids, portals_of, profiles, actives, portal_hash): Rows = self
            .scripts
            .window
            .key(k.online())
            .key(k.presence())
            .key(k.agents())
            .key(k.active())
            .key(k.portals())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut agents = Vec::with_capacity(ids.len());
        for (i, _) in ids.iter().enumerate() {
            let (Some(Some(portal)), Some(Some(profile))) = (portals_of.get(i), profiles.get(i))
            else {
                continue;
            };
            let Ok(portal) = PortalId::parse(portal) else {
                continue;
            };
            let agent: Agent = codec::decode(profile).map_err(corrupt)?;
            let active = actives.get(i).copied().flatten().unwrap_or(0).max(0);
            agents.push(WindowAgent {
                agent,
                portal,
                active_sessions: u32::try_from(active).unwrap_or(u32::MAX),
            });
        }
        let mut portals = portal_hash
            .chunks(2)
            .filter_map(|pair| pair.get(1))
            .map(|b| codec::decode::<Portal>(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        portals.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Window { agents, portals })
    }

    async fn active_counts(&self, account: &AccountId, agents: &[AgentId]) -> Result<Vec<u32>> {
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.account_keys(account).active());
        for agent in agents {
            hmget.arg(agent.as_str());
        }
        let counts: Vec<Option<u32>> = hmget
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn hold_presence(&self, account: &AccountId, agent: &AgentId, held: bool) {
        self.serve(account, agent, |s| match held {
            true => s.streams += 1,
            false => s.streams = s.streams.saturating_sub(1),
        });
    }

    async fn hold(&self, account: &AccountId, agent: &AgentId) -> Result<()> {
        self.write_held(account, &[(agent.clone(), Some("s"))])
            .await
            .map_err(unavailable)
    }

    fn take_faded(&self) -> Option<mpsc::Receiver<Faded>> {
        lock(&self.faded_rx).take()
    }
}
