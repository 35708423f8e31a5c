//! First accept wins: a claim per invitation, with a fencing counter.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryBackplane;
use crate::backplane::{Claim, Claims, Result};
use crate::domain::{AccountId, AgentId, InvitationId};

#[async_trait]
impl Claims for MemoryBackplane {
    async fn claim(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
        ttl: Duration,
    ) -> Result<Claim> {
        let mut s = self.store();
        let data = s.data_mut(account);
        let now = Instant::now();
        if let Some((holder, fence, until)) = data.claims.get(invitation)
            && *until > now
        {
            return Ok(if holder == agent {
                Claim::Won { fence: *fence }
            } else {
                Claim::Lost { by: holder.clone() }
            });
        }
        data.fence += 1;
        let fence = data.fence;
        data.claims
            .insert(invitation.clone(), (agent.clone(), fence, now + ttl));
        Ok(Claim::Won { fence })
    }

    async fn release(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
    ) -> Result<()> {
        let mut s = self.store();
        let data = s.data_mut(account);
        if data
            .claims
            .get(invitation)
            .is_some_and(|(holder, _, _)| holder == agent)
        {
            data.claims.remove(invitation);
        }
        Ok(())
    }
}
