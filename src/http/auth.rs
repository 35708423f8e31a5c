//! Who is calling. Each role is an extractor, so a handler's signature says
//! who may call it and none can forget to check.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use chrono::Utc;

use super::AppState;
use super::error::ApiError;
use crate::app::TokenCheck;
use crate::app::tokens::{Subject, Verified};
pub use crate::app::{AgentCaller, CustomerCaller};

/// The provisioning administrator.
pub struct Admin {
    /// Its place among the requests the node handles now.
    pub admitted: crate::actors::Admitted,
}

enum Bearer {
    Admin,
    Subject(Verified, String),
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("application state missing"))
}

/// Constant-time equality, so the admin token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials of `Authorization: Bearer <token>`. The scheme is
/// case-insensitive (RFC 9110, 11.1): `bearer` and `BEARER` are Bearer.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let header = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn bearer(req: &HttpRequest, state: &AppState) -> Result<Bearer, ApiError> {
    let token = bearer_token(req)
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
    if same(
        token.as_bytes(),
        state.node.settings.auth.admin_token.as_bytes(),
    ) {
        return Ok(Bearer::Admin);
    }
    let verified = state
        .tokens
        .verify_full(token, Utc::now())
        .ok_or_else(|| ApiError::unauthorized("the token is invalid or has expired"))?;
    // A token that lives longer than tokens are minted for now is refused:
    // revocation marks are kept only that long, so such a token could
    // outlive its revocation (the configured lifetime was lowered since).
    let auth = &state.node.settings.auth;
    let longest = match verified.subject {
        Subject::Agent { .. } => auth.agent_token_ttl_secs,
        Subject::Customer { .. } => auth.customer_token_ttl_secs,
    };
    // (Tokens of the previous release carry no mint time, read as 1970:
    // they are exempt, and refused by any revocation.)
    let lives = (verified.expires_at - verified.issued_at).num_seconds();
    let legacy = verified.issued_at.timestamp_millis() == 0;
    if !legacy && lives > i64::try_from(longest).unwrap_or(i64::MAX).saturating_add(1) {
        return Err(ApiError::unauthorized(
            "the token lives longer than tokens are minted for now; mint a new one",
        ));
    }
    // The signature names the token (for per-token limits) without keeping it.
    let name = token.rsplit('.').next().unwrap_or(token).to_owned();
    Ok(Bearer::Subject(verified, name))
}

/// Lets a `/metrics` scrape through: anyone when `auth.metrics_token` is
/// unset, else only a caller that sends it as its bearer token.
pub fn metrics_caller(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let expected = state.node.settings.auth.metrics_token.as_bytes();
    if expected.is_empty() {
        return Ok(());
    }
    let given = bearer_token(req)
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <auth.metrics_token>"))?;
    if same(given.as_bytes(), expected) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("the metrics token is wrong"))
    }
}

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            match bearer(&req, &state)? {
                Bearer::Admin => {}
                Bearer::Subject(..) => {
                    return Err(ApiError::forbidden("this call needs the admin token"));
                }
            }
            crate::app::admin_allowed(&state.node).await?;
            Ok(Admin {
                admitted: crate::app::admit(&state.node)?,
            })
        })
    }
}

impl FromRequest for AgentCaller {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let (account, agent, issued_at, token) = match bearer(&req, &state)? {
                Bearer::Subject(
                    Verified {
                        subject: Subject::Agent { account, agent },
                        issued_at,
                        ..
                    },
                    token,
                ) => (account, agent, issued_at, token),
                _ => return Err(ApiError::forbidden("this call needs an agent token")),
            };
            let admitted = crate::app::admit(&state.node)?;
            match crate::app::agent_caller(&state.node, &account, &agent, issued_at, &token).await?
            {
                TokenCheck::Valid(account, agent, epoch) => {
                    req.extensions_mut()
                        .insert(super::durable::Changed(account.id.clone()));
                    Ok(AgentCaller {
                        account,
                        agent,
                        token,
                        minted: issued_at,
                        epoch,
                        admitted,
                    })
                }
                TokenCheck::Gone => Err(ApiError::unauthorized(
                    "the token names an agent that no longer exists",
                )),
                TokenCheck::Revoked => Err(ApiError::unauthorized("the token was revoked")),
            }
        })
    }
}

impl FromRequest for CustomerCaller {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let (account, session, minted, token) = match bearer(&req, &state)? {
                Bearer::Subject(
                    Verified {
                        subject: Subject::Customer { account, session },
                        issued_at,
                        ..
                    },
                    token,
                ) => (account, session, issued_at, token),
                _ => return Err(ApiError::forbidden("this call needs a customer token")),
            };
            let admitted = crate::app::admit(&state.node)?;
            let account = match crate::app::customer_account(
                &state.node,
                &account,
                &session,
                &token,
            )
            .await?
            {
                crate::app::CustomerCheck::Valid(account) => account,
                crate::app::CustomerCheck::AccountGone => {
                    return Err(ApiError::unauthorized(
                        "the token names an account that no longer exists",
                    ));
                }
                crate::app::CustomerCheck::SessionClosed => {
                    return Err(ApiError::unauthorized(
                        "the session has ended: its customer token is no longer good",
                    ));
                }
            };
            req.extensions_mut()
                .insert(super::durable::Changed(account.id.clone()));
            Ok(CustomerCaller {
                account,
                session,
                token,
                minted,
                admitted,
            })
        })
    }
}
