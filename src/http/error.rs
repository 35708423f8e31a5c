//! The one error type that reaches the wire: RFC 9457 problem details with
//! a stable machine-readable `code`, and the table that maps every failure
//! to its status and code.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::app::Error as AppError;
use crate::backplane::BackplaneError;
use crate::domain::DomainError;

/// Declares [`Code`], the name of each code, and [`Code::ALL`] together.
macro_rules! codes {
    ($($variant:ident => $name:literal,)*) => {
        /// The stable, machine-readable `code` of a problem: the one table
        /// of every code collabd answers with (OpenAPI's `ProblemCode`
        /// lists the same, a test holds them together).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $(#[doc = $name] $variant,)*
        }

        impl Code {
            /// Every code.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The code as it is on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }
        }
    };
}

codes! {
    InvalidRequest => "invalid_request",
    Unauthorized => "unauthorized",
    Forbidden => "forbidden",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    RequestTimeout => "request_timeout",
    Unavailable => "unavailable",
    FeatureDisabled => "feature_disabled",
    AgentUnavailable => "agent_unavailable",
    AlreadyParticipant => "already_participant",
    NoAgentsOnline => "no_agents_online",
    SessionFull => "session_full",
    SessionEnded => "session_ended",
    NotARecipient => "not_a_recipient",
    InvitationTaken => "invitation_taken",
    InvitationClosed => "invitation_closed",
    AgentBusy => "agent_busy",
    Conflict => "conflict",
    LimitReached => "limit_reached",
    PayloadTooLarge => "payload_too_large",
    TooManyStreams => "too_many_streams",
    RateLimited => "rate_limited",
    IdempotencyKeyReused => "idempotency_key_reused",
    IdempotencyInProgress => "idempotency_in_progress",
    Internal => "internal",
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem+json error.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Stable code, e.g. `invitation_taken`.
    pub code: Code,
    /// Seconds after which a retry may succeed (`Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// The methods a path allows (`Allow`, with 405).
    #[serde(skip)]
    pub allow: Option<String>,
}

impl ApiError {
    /// An error with this status, code and detail.
    pub fn new(status: StatusCode, code: Code, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://collabd.dev/problems/{}", code.as_str()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            retry_after: None,
            allow: None,
        }
    }

    /// 405 `method_not_allowed`, naming the methods the path has.
    pub fn method_not_allowed(method: &str, allow: String) -> Self {
        Self {
            allow: Some(allow.clone()),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::MethodNotAllowed,
                format!("{method} is not allowed here; this path allows {allow}"),
            )
        }
    }

    /// 413 `payload_too_large`: the body is over `http.max_body_bytes`.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::PayloadTooLarge,
            "the request body is larger than this server accepts",
        )
    }

    /// 408 `request_timeout`: the request's body did not arrive in time.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::RequestTimeout,
            "the request body did not arrive in time (http.request_timeout_secs)",
        )
    }

    /// 400 `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidRequest, detail)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Code::Forbidden, detail)
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("{what} not found"),
        )
    }

    /// 503 `unavailable`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable, detail)
    }

    /// 503 `unavailable` for a change made but not confirmed durable
    /// (`app::durable`): it may or may not persist, and the client retries.
    pub fn not_confirmed(e: &BackplaneError) -> Self {
        let detail = match e {
            BackplaneError::Unconfirmed(why) => format!(
                "the change was made but not confirmed by replicas in time ({why}); it may \
                 or may not persist: read it back, or retry with the same Idempotency-Key"
            ),
            BackplaneError::Unavailable(_)
            | BackplaneError::Changed
            | BackplaneError::Corrupt(_) => {
                "the change was made but the shared store could not confirm it; it may or may \
                 not persist: read it back, or retry with the same Idempotency-Key"
                    .to_owned()
            }
        };
        Self {
            retry_after: Some(1),
            ..Self::unavailable(detail)
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header(ContentType(mime_problem()));
        if let Some(secs) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        if let Some(allow) = &self.allow {
            response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
        }
        response.body(serde_json::to_string(self).unwrap_or_default())
    }
}

fn mime_problem() -> actix_web::mime::Mime {
    "application/problem+json"
        .parse()
        .unwrap_or(actix_web::mime::APPLICATION_JSON)
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        use DomainError as D;
        let (status, code) = match &e {
            D::FeatureDisabled(_) => (StatusCode::FORBIDDEN, Code::FeatureDisabled),
            D::AgentUnavailable => (StatusCode::CONFLICT, Code::AgentUnavailable),
            D::AlreadyParticipant => (StatusCode::CONFLICT, Code::AlreadyParticipant),
            D::NoAgentsOnline => (StatusCode::CONFLICT, Code::NoAgentsOnline),
            D::SessionFull => (StatusCode::CONFLICT, Code::SessionFull),
            D::SessionEnded => (StatusCode::CONFLICT, Code::SessionEnded),
            D::NotARecipient => (StatusCode::FORBIDDEN, Code::NotARecipient),
            D::InvitationTaken => (StatusCode::CONFLICT, Code::InvitationTaken),
            D::InvitationClosed => (StatusCode::CONFLICT, Code::InvitationClosed),
            D::AgentBusy => (StatusCode::CONFLICT, Code::AgentBusy),
            D::NotParticipant | D::NotLead | D::NotAMember(_) => {
                (StatusCode::FORBIDDEN, Code::Forbidden)
            }
            D::InvitationNotFound | D::ParticipantNotFound => {
                (StatusCode::NOT_FOUND, Code::NotFound)
            }
            D::Conflict(_) => (StatusCode::CONFLICT, Code::Conflict),
            D::LimitReached(_) | D::TooManyMaskChanges => {
                (StatusCode::CONFLICT, Code::LimitReached)
            }
            D::Invalid(_) => (StatusCode::BAD_REQUEST, Code::InvalidRequest),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Domain(d) => d.into(),
            AppError::NotFound(what) => ApiError::not_found(what),
            AppError::Backplane(b @ BackplaneError::Unconfirmed(_)) => ApiError::not_confirmed(&b),
            AppError::Backplane(BackplaneError::Corrupt(why)) => {
                tracing::error!(%why, "stored data is unreadable");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Code::Internal,
                    "stored data could not be read; the error is logged",
                )
            }
            AppError::Backplane(b) => {
                tracing::warn!(error = %b, "shared store failure");
                ApiError::unavailable("the shared store is unreachable; retry shortly")
            }
            AppError::Contended => {
                ApiError::new(StatusCode::CONFLICT, Code::Conflict, e.to_string())
            }
            AppError::Forbidden(detail) => ApiError::forbidden(detail),
            AppError::Overloaded => ApiError {
                retry_after: Some(1),
                ..ApiError::unavailable(e.to_string())
            },
            AppError::RateLimited(wait) => ApiError {
                retry_after: Some(u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::RateLimited,
                    e.to_string(),
                )
            },
            AppError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Code::IdempotencyKeyReused,
                e.to_string(),
            ),
            AppError::KeyInProgress => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    Code::IdempotencyInProgress,
                    e.to_string(),
                )
            },
            AppError::TooManyStreams(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::TooManyStreams,
                e.to_string(),
            ),
            AppError::Unavailable(detail) => {
                tracing::warn!(%detail, "actor unavailable");
                ApiError::unavailable("this node is shutting down; retry")
            }
        }
    }
}

/// A JSON body that did not parse, or was too large.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as J;
    match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::payload_too_large(),
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidRequest,
            "send the body as application/json",
        ),
        J::Deserialize(e) => ApiError::invalid(format!("invalid JSON body: {e}")),
        _ => ApiError::invalid(format!("unreadable body: {err}")),
    }
}

/// Middleware hook: an error answered by the framework itself (a body
/// extractor's 413, a panic's 500, …) becomes problem+json too, so every
/// error a client sees has the same shape and a stable code.
pub fn problem_for_plain_errors<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::middleware::ErrorHandlerResponse;
    let is_problem = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status.as_u16() {
        401 => Code::Unauthorized,
        403 => Code::Forbidden,
        404 => Code::NotFound,
        405 => Code::MethodNotAllowed,
        408 => Code::RequestTimeout,
        409 => Code::Conflict,
        429 => Code::RateLimited,
        413 => Code::PayloadTooLarge,
        503 => Code::Unavailable,
        400..=499 => Code::InvalidRequest,
        _ => Code::Internal,
    };
    let detail = match code {
        Code::Internal => "the server failed; the error is logged".to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (req, _) = res.into_parts();
    let response = ApiError::new(status, code, detail).error_response();
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        AppError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_error_has_a_stable_code() {
        assert_eq!(
            ApiError::from(DomainError::InvitationTaken).code,
            "invitation_taken"
        );
        assert_eq!(ApiError::from(DomainError::InvitationTaken).status, 409);
        assert_eq!(
            ApiError::from(DomainError::FeatureDisabled("masking")).code,
            "feature_disabled"
        );
        assert_eq!(ApiError::from(DomainError::NotLead).status, 403);
        assert_eq!(ApiError::from(DomainError::Invalid("x".into())).status, 400);
    }

    #[test]
    fn the_codes_are_the_openapi_problem_codes_and_each_is_described() {
        let doc: serde_json::Value = serde_json::from_str(super::super::ops::OPENAPI).unwrap();
        let schema = &doc["components"]["schemas"]["ProblemCode"];
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        let ours: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        for code in &ours {
            assert!(
                listed.contains(code),
                "{code} is not in OpenAPI's ProblemCode"
            );
        }
        for code in &listed {
            assert!(
                ours.contains(code),
                "OpenAPI lists {code}, which Code does not have"
            );
        }
        let described = schema["description"].as_str().unwrap();
        for code in &ours {
            assert!(
                described.contains(&format!("- `{code}` — ")),
                "ProblemCode's description does not say what {code} means"
            );
        }
        assert_eq!(
            serde_json::to_value(Code::InvitationTaken).unwrap(),
            "invitation_taken"
        );
    }

    #[test]
    fn unreadable_stored_data_is_a_500_not_a_retry() {
        let corrupt = ApiError::from(AppError::Backplane(BackplaneError::Corrupt(
            "undecodable data in Redis".into(),
        )));
        assert_eq!((corrupt.status, corrupt.code.as_str()), (500, "internal"));
        assert_eq!(corrupt.retry_after, None);
        let down = ApiError::from(AppError::Backplane(BackplaneError::Unavailable(
            "connection refused".into(),
        )));
        assert_eq!((down.status, down.code.as_str()), (503, "unavailable"));
    }
}
