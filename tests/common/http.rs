//! Raw HTTP against a node: any method, token, headers or body, and the
//! answer as a [`Reply`]; the RFC 9457 problem check.

use std::panic::Location;

use awc::error::PayloadError;
use awc::http::Method;
use awc::http::header::CONTENT_TYPE;
use futures_util::Stream;
use serde_json::Value;

use super::TestApp;

/// Largest response body a test reads.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A response: its status, content type, raw body and the body as JSON
/// (`Value::Null` when it is empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header, or empty.
    pub content_type: String,
    /// The `Retry-After` header, or empty.
    pub retry_after: String,
    /// The `Allow` header, or empty.
    pub allow: String,
    /// The `X-Request-Id` header, or empty.
    pub request_id: String,
    /// The `Idempotent-Replayed` header, or empty.
    pub replayed: String,
    /// The body as text.
    pub text: String,
    /// The body parsed as JSON.
    pub json: Value,
    /// Every header of the answer.
    pub headers: awc::http::header::HeaderMap,
}

impl Reply {
    /// A header's value as text, or empty.
    pub fn header(&self, name: &str) -> String {
        header_text(self.headers.get(name))
    }
}

impl Reply {
    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {} with body {}",
            self.status, self.text
        );
        self.json.clone()
    }

    /// [`Reply::expect_status`] for a helper that asserts on its caller's
    /// behalf: a failure names `caller`, the test's line.
    pub fn expect_status_at(&self, status: u16, caller: &Location<'_>) -> Value {
        assert_eq!(
            self.status, status,
            "expected HTTP {status} (at {caller}), got {} with body {}",
            self.status, self.text
        );
        self.json.clone()
    }
}

/// Asserts that `reply` is an RFC 9457 problem with this status and `code`.
#[track_caller]
pub fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status, status,
        "expected HTTP {status} {code}, got {} with body {}",
        reply.status, reply.text
    );
    assert!(
        reply.content_type.starts_with("application/problem+json"),
        "expected content-type application/problem+json, got {:?} (body {})",
        reply.content_type,
        reply.text
    );
    assert_eq!(
        reply.json["code"], code,
        "wrong problem code in {}",
        reply.text
    );
    assert_eq!(
        reply.json["status"], status,
        "problem status in {}",
        reply.text
    );
    for field in ["type", "title", "detail"] {
        assert!(
            reply.json[field].is_string(),
            "problem without {field}: {}",
            reply.text
        );
    }
}

impl TestApp {
    /// Sends a request with an optional bearer token and optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        read_reply(sent).await
    }

    /// `POST path` with a JSON body and an `Idempotency-Key`.
    pub async fn post_once(&self, path: &str, token: &str, key: &str, body: Value) -> Reply {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .insert_header(("Idempotency-Key", key));
        read_reply(request.send_json(&body).await).await
    }

    /// Sends a request without a body, with these headers.
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        read_reply(request.send().await).await
    }

    /// Sends raw bytes with a given content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, self.url(path))
            .insert_header((CONTENT_TYPE, content_type.to_owned()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read_reply(request.send_body(body).await).await
    }

    /// Sends a request with this exact `Authorization` header value.
    pub async fn call_with_authorization(
        &self,
        method: Method,
        path: &str,
        authorization: &str,
    ) -> Reply {
        let request = self
            .client
            .request(method, self.url(path))
            .insert_header(("Authorization", authorization.to_owned()));
        read_reply(request.send().await).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(&body))
            .await
    }

    /// `POST path` without a body.
    pub async fn post_empty(&self, path: &str, token: &str) -> Reply {
        self.call(Method::POST, path, Some(token), None).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(&body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }
}

pub(super) fn header_text(value: Option<&awc::http::header::HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn read_reply<S>(sent: Result<awc::ClientResponse<S>, awc::error::SendRequestError>) -> Reply
where
    S: Stream<Item = Result<actix_web::web::Bytes, PayloadError>> + Unpin,
{
    let mut response = sent.unwrap_or_else(|e| panic!("the server did not answer: {e}"));
    let status = response.status().as_u16();
    let content_type = header_text(response.headers().get(CONTENT_TYPE));
    let retry_after = header_text(response.headers().get("retry-after"));
    let allow = header_text(response.headers().get("allow"));
    let request_id = header_text(response.headers().get("x-request-id"));
    let replayed = header_text(response.headers().get("idempotent-replayed"));
    let headers = response.headers().clone();
    let bytes = response
        .body()
        .limit(MAX_REPLY_BYTES)
        .await
        .unwrap_or_else(|e| panic!("the response body is unreadable: {e}"));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        retry_after,
        allow,
        request_id,
        replayed,
        text,
        json,
        headers,
    }
}
