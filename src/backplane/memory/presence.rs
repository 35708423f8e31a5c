//! Who is logged in where, and the collaboration window.

use std::time::Instant;

use async_trait::async_trait;

use super::MemoryBackplane;
use crate::backplane::{Audited, Presence, Result, Window, WindowAgent};
use crate::domain::{AccountId, Agent, AgentId, PortalId};

#[async_trait]
impl Presence for MemoryBackplane {
    async fn login(
        &self,
        account: &AccountId,
        agent: &Agent,
        portal: &PortalId,
    ) -> Result<Option<PortalId>> {
        let mut s = self.store();
        let data = s.data_mut(account);
        let previous = data.presence.insert(agent.id.clone(), portal.clone());
        if let Some(old) = &previous
            && let Some(set) = data.portal_online.get_mut(old)
        {
            set.remove(&agent.id);
        }
        data.portal_online
            .entry(portal.clone())
            .or_default()
            .insert(agent.id.clone());
        Ok(previous)
    }

    async fn logout(
        &self,
        account: &AccountId,
        agent: &Agent,
        audit: Audited<'_>,
    ) -> Result<Option<PortalId>> {
        let mut s = self.store();
        let data = s.data_mut(account);
        let previous = data.presence.remove(&agent.id);
        if let Some(old) = &previous
            && let Some(set) = data.portal_online.get_mut(old)
        {
            set.remove(&agent.id);
        }
        if previous.is_some() {
            s.record(account, audit, Instant::now());
        }
        Ok(previous)
    }

    async fn presence(&self, account: &AccountId, agent: &AgentId) -> Result<Option<PortalId>> {
        Ok(self
            .store()
            .data(account)
            .and_then(|d| d.presence.get(agent).cloned()))
    }

    async fn online_in(
        &self,
        account: &AccountId,
        portal: &PortalId,
    ) -> Result<Option<Vec<AgentId>>> {
        let s = self.store();
        let Some(d) = s.data(account).filter(|d| d.portals.contains_key(portal)) else {
            return Ok(None);
        };
        Ok(Some(
            d.portal_online
                .get(portal)
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default(),
        ))
    }

    async fn window(&self, account: &AccountId) -> Result<Window> {
        let s = self.store();
        let Some(d) = s.data(account) else {
            return Ok(Window::default());
        };
        let mut agents: Vec<WindowAgent> = d
            .presence
            .iter()
            .filter_map(|(id, portal)| {
                Some(WindowAgent {
                    agent: d.agents.get(id)?.clone(),
                    portal: portal.clone(),
                    active_sessions: d.agent_sessions.get(id).map_or(0, |s| s.len() as u32),
                })
            })
            .collect();
        agents.sort_by(|a, b| a.agent.id.cmp(&b.agent.id));
        Ok(Window {
            agents,
            portals: d.portals.values().cloned().collect(),
        })
    }

    async fn active_counts(&self, account: &AccountId, agents: &[AgentId]) -> Result<Vec<u32>> {
        let s = self.store();
        Ok(agents
            .iter()
            .map(|a| {
                s.data(account)
                    .and_then(|d| d.agent_sessions.get(a))
                    .map_or(0, |set| set.len() as u32)
            })
            .collect())
    }

    /// In one process presence never expires: there is nothing to hold.
    fn hold_presence(&self, _: &AccountId, _: &AgentId, _: bool) {}
}
