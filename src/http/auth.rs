//! Who is calling. Each role is an extractor, so a handler's signature says
//! who may call it and none can forget to check.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use chrono::Utc;

use super::AppState;
use super::error::ApiError;
use super::token::Subject;
use crate::domain::{Account, Agent, SessionId};

/// The provisioning administrator.
pub struct Admin;

/// An agent, with its account and profile loaded.
pub struct AgentCaller {
    /// The agent's account.
    pub account: Account,
    /// The agent.
    pub agent: Agent,
}

/// The customer of one session.
pub struct CustomerCaller {
    /// The session's account.
    pub account: Account,
    /// The session.
    pub session: SessionId,
}

enum Bearer {
    Admin,
    Subject(Subject),
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

fn bearer(req: &HttpRequest, state: &AppState) -> Result<Bearer, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
    if same(
        token.as_bytes(),
        state.node.settings.auth.admin_token.as_bytes(),
    ) {
        return Ok(Bearer::Admin);
    }
    state
        .tokens
        .verify(token, Utc::now())
        .map(Bearer::Subject)
        .ok_or_else(|| ApiError::unauthorized("the token is invalid or has expired"))
}

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = state(req).and_then(|s| match bearer(req, &s)? {
            Bearer::Admin => Ok(Admin),
            Bearer::Subject(_) => Err(ApiError::forbidden("this call needs the admin token")),
        });
        Box::pin(async move { result })
    }
}

impl FromRequest for AgentCaller {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let (account_id, agent_id) = match bearer(&req, &state)? {
                Bearer::Subject(Subject::Agent { account, agent }) => (account, agent),
                _ => return Err(ApiError::forbidden("this call needs an agent token")),
            };
            let backplane = &state.node.backplane;
            let account = backplane.account(&account_id).await?;
            let agent = backplane.agent(&account_id, &agent_id).await?;
            match (account, agent) {
                (Some(account), Some(agent)) => Ok(AgentCaller { account, agent }),
                _ => Err(ApiError::unauthorized(
                    "the token names an agent that no longer exists",
                )),
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
            let (account_id, session) = match bearer(&req, &state)? {
                Bearer::Subject(Subject::Customer { account, session }) => (account, session),
                _ => return Err(ApiError::forbidden("this call needs a customer token")),
            };
            let account = state
                .node
                .backplane
                .account(&account_id)
                .await?
                .ok_or_else(|| {
                    ApiError::unauthorized("the token names an account that no longer exists")
                })?;
            Ok(CustomerCaller { account, session })
        })
    }
}
