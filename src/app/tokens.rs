//! Agent and customer tokens: `v1.<claims>.<signature>`, base64url, signed
//! with HMAC-SHA256 under `auth.secret`, so any node can check them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{AccountId, AgentId, SessionId};

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// An agent of an account.
    Agent {
        /// The account.
        account: AccountId,
        /// The agent.
        agent: AgentId,
    },
    /// The customer of one session.
    Customer {
        /// The account.
        account: AccountId,
        /// The session.
        session: SessionId,
    },
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: Subject,
    exp: i64,
    /// When it was minted, in milliseconds (0 in tokens minted before
    /// revocation existed: any revocation refuses them).
    #[serde(default)]
    iat: i64,
}

/// A valid token's subject and when it was minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who it speaks for.
    pub subject: Subject,
    /// When it was minted.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// Mints and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    secret: Vec<u8>,
}

impl Tokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn sign(&self, payload: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// A token for `subject`, minted now, valid until `expires_at`.
    pub fn mint(&self, subject: Subject, expires_at: DateTime<Utc>) -> String {
        self.mint_at(subject, Utc::now(), expires_at)
    }

    /// A token for `subject`, minted at `issued_at`, valid until `expires_at`.
    pub fn mint_at(
        &self,
        subject: Subject,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> String {
        let claims = Claims {
            sub: subject,
            exp: expires_at.timestamp(),
            iat: issued_at.timestamp_millis(),
        };
        let payload = format!(
            "v1.{}",
            B64.encode(serde_json::to_vec(&claims).unwrap_or_default())
        );
        let signature = self.sign(&payload);
        format!("{payload}.{signature}")
    }

    /// The subject of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<Subject> {
        self.verify_full(token, now).map(|v| v.subject)
    }

    /// The subject of a valid, unexpired token, and when it was minted.
    pub fn verify_full(&self, token: &str, now: DateTime<Utc>) -> Option<Verified> {
        let (payload, signature) = token.rsplit_once('.')?;
        let given = B64.decode(signature).ok()?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).ok()?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&given).ok()?; // constant-time comparison
        let claims = payload.strip_prefix("v1.")?;
        let claims: Claims = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
        let issued_at = DateTime::from_timestamp_millis(claims.iat)?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0)?;
        (claims.exp > now.timestamp()).then_some(Verified {
            subject: claims.sub,
            issued_at,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn agent() -> Subject {
        Subject::Agent {
            account: AccountId::parse("acme").unwrap(),
            agent: AgentId::parse("ann").unwrap(),
        }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let t = Tokens::new("k");
        let now = Utc::now();
        let token = t.mint(agent(), now + Duration::seconds(60));
        assert_eq!(t.verify(&token, now), Some(agent()));
        assert_eq!(t.verify(&token, now + Duration::seconds(61)), None);
    }

    #[test]
    fn a_token_knows_when_it_was_minted() {
        let t = Tokens::new("k");
        let now = Utc::now();
        let at = now - Duration::seconds(5);
        let token = t.mint_at(agent(), at, now + Duration::seconds(60));
        let verified = t.verify_full(&token, now).unwrap();
        assert_eq!(verified.issued_at.timestamp_millis(), at.timestamp_millis());
        assert_eq!(verified.subject, agent());
    }

    #[test]
    fn a_tampered_or_foreign_token_is_refused() {
        let t = Tokens::new("k");
        let now = Utc::now();
        let token = t.mint(agent(), now + Duration::seconds(60));
        assert_eq!(Tokens::new("other").verify(&token, now), None);
        let mut forged = token.clone();
        forged.insert(5, 'x');
        assert_eq!(t.verify(&forged, now), None);
        assert_eq!(t.verify("garbage", now), None);
    }
}
