//! First accept wins: a claim key set if absent, with a fencing counter.

use std::time::Duration;

use async_trait::async_trait;

use super::{RedisBackplane, unavailable};
use crate::backplane::{BackplaneError, Claim, Claims, Result};
use crate::domain::{AccountId, AgentId, InvitationId};

#[async_trait]
impl Claims for RedisBackplane {
    async fn claim(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
        ttl: Duration,
    ) -> Result<Claim> {
        let k = self.account_keys(account);
        let (won, value): (i64, String) = self
            .scripts
            .claim
            .key(k.claim(invitation))
            .key(k.fence())
            .arg(agent.as_str())
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if won == 1 {
            let fence = value
                .parse()
                .map_err(|_| BackplaneError::Unavailable(format!("bad fence {value:?}")))?;
            Ok(Claim::Won { fence })
        } else {
            let by = AgentId::parse(&value)
                .map_err(|_| BackplaneError::Unavailable(format!("bad claim holder {value:?}")))?;
            Ok(Claim::Lost { by })
        }
    }

    async fn release(
        &self,
        account: &AccountId,
        invitation: &InvitationId,
        agent: &AgentId,
    ) -> Result<()> {
        let _: i64 = self
            .scripts
            .release
            .key(self.account_keys(account).claim(invitation))
            .arg(agent.as_str())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
