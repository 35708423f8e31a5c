//! Durable acknowledgements: with `backplane.wait_replicas` > 0 a change is
//! answered 2xx only after the replicas confirmed it (`Durability`); when
//! they do not in time the answer is 503 `unavailable` saying the change
//! may or may not persist, and the client retries (with its
//! `Idempotency-Key` where the request creates something).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use super::AppState;
use super::error::ApiError;
use crate::app;
use crate::domain::AccountId;

/// The account a request changed, set by the caller extractors (agents
/// and customers act in their token's account); admin paths name theirs.
#[derive(Clone, Debug)]
pub struct Changed(pub AccountId);

/// Middleware: a successful change waits for `Durability::confirm` of its
/// account before it is answered.
pub async fn acknowledge(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let res = next.call(req).await?;
    let Some(state) = state.filter(|s| app::durable::wanted(&s.node)) else {
        return Ok(res.map_into_left_body());
    };
    if !changes || !res.status().is_success() {
        return Ok(res.map_into_left_body());
    }
    let account = res
        .request()
        .extensions()
        .get::<Changed>()
        .map(|c| c.0.clone())
        .or_else(|| {
            res.request()
                .match_info()
                .get("account")
                .and_then(|a| a.parse().ok())
        });
    let Some(account) = account else {
        return Ok(res.map_into_left_body());
    };
    match app::durable::confirm(&state.node, &account).await {
        Ok(()) => Ok(res.map_into_left_body()),
        Err(e) => {
            let (req, _) = res.into_parts();
            let answer = ApiError::not_confirmed(&e).error_response();
            Ok(ServiceResponse::new(req, answer).map_into_right_body())
        }
    }
}
