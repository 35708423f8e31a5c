//! What every end-to-end test shares: an isolated node per test, typed
//! calls for the HTTP contract (API.md), the problem+json check, and a
//! reader for the SSE event streams.

use std::pin::Pin;
use std::time::Duration;

use awc::error::PayloadError;
use awc::http::Method;
use awc::http::header::CONTENT_TYPE;
use collabd::settings::Settings;
use collabd::startup::{Application, ShutdownHandle};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The admin token of `collabd_test_support::settings()`.
pub const ADMIN: &str = collabd_test_support::TEST_ADMIN_TOKEN;
/// How long a test waits for something that must happen.
pub const EVENT_WAIT: Duration = Duration::from_secs(5);
/// How long a test listens for something that must not happen, always
/// after a sync point that was published later than the forbidden event.
pub const QUIET: Duration = Duration::from_millis(300);
/// The account most tests provision.
pub const ACME: &str = "acme";
/// Largest response body a test reads.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// One node on a free port, running on the test's actix system.
pub struct TestApp {
    /// The port it listens on.
    pub port: u16,
    /// A client for ordinary request/response calls.
    pub client: awc::Client,
    /// Set when the node runs in this test's process.
    handle: Option<ShutdownHandle>,
}

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

/// An agent provisioned for a test, with a minted token.
#[derive(Debug, Clone)]
pub struct AgentLogin {
    /// The agent's id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its bearer token.
    pub token: String,
}

impl TestApp {
    /// A node with the test settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A node with the test settings, adjusted by `tweak` before it is built.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = collabd_test_support::settings();
        tweak(&mut settings);
        let app = Application::build(settings)
            .await
            .unwrap_or_else(|e| panic!("the application does not build: {e}"));
        let port = app.port();
        let handle = app.handle();
        actix_rt::spawn(app.run_until_stopped());
        Self {
            port,
            client: request_client(),
            handle: Some(handle),
        }
    }

    /// A node running in another process on `port` (cluster tests), started
    /// with the same admin token.
    pub fn remote(port: u16) -> Self {
        Self {
            port,
            client: request_client(),
            handle: None,
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A handle to stop the node gracefully.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle
            .clone()
            .unwrap_or_else(|| panic!("the node does not run in this process"))
    }

    // ---- plain HTTP -------------------------------------------------------

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

    /// How many sessions the admin sees in `account` (up to 100).
    pub async fn session_count(&self, account: &str) -> usize {
        let page = self
            .get(&format!("/v1/accounts/{account}/sessions?limit=100"), ADMIN)
            .await
            .expect_status(200);
        page["sessions"].as_array().map_or(0, Vec::len)
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

    // ---- provisioning (admin) ----------------------------------------------

    /// `PUT /v1/accounts/{id}` with this policy.
    pub async fn put_account(&self, id: &str, policy: Value) -> Reply {
        let body = json!({"name": format!("Account {id}"), "policy": policy});
        self.put(&format!("/v1/accounts/{id}"), ADMIN, body).await
    }

    /// `PUT /v1/accounts/{account}/portals/{id}`.
    pub async fn put_portal(&self, account: &str, id: &str, name: &str) -> Reply {
        let path = format!("/v1/accounts/{account}/portals/{id}");
        self.put(&path, ADMIN, json!({"name": name})).await
    }

    /// `PUT /v1/accounts/{account}/agents/{id}`.
    pub async fn put_agent(&self, account: &str, id: &str, name: &str, portals: &[&str]) -> Reply {
        let path = format!("/v1/accounts/{account}/agents/{id}");
        self.put(&path, ADMIN, json!({"name": name, "portals": portals}))
            .await
    }

    /// `POST /v1/accounts/{account}/agents/{agent}/tokens`.
    pub async fn mint_token(&self, account: &str, agent: &str, body: Value) -> Reply {
        let path = format!("/v1/accounts/{account}/agents/{agent}/tokens");
        self.post(&path, ADMIN, body).await
    }

    /// A fresh agent token (asserts 201).
    pub async fn token(&self, account: &str, agent: &str) -> String {
        let minted = self
            .mint_token(account, agent, json!({}))
            .await
            .expect_status(201);
        minted["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {minted}"))
            .to_owned()
    }

    /// Creates an account with this policy (asserts 201).
    pub async fn account(&self, id: &str, policy: Value) {
        self.put_account(id, policy).await.expect_status(201);
    }

    /// Creates a portal (asserts 201).
    pub async fn portal(&self, account: &str, id: &str, name: &str) {
        self.put_portal(account, id, name).await.expect_status(201);
    }

    /// Account `acme` with this policy and the portals `support` ("Support
    /// Desk") and `billing` ("Billing").
    pub async fn acme(&self, policy: Value) {
        self.account(ACME, policy).await;
        self.portal(ACME, "support", "Support Desk").await;
        self.portal(ACME, "billing", "Billing").await;
    }

    /// Creates an agent (asserts 201) and mints its token.
    pub async fn agent(&self, account: &str, id: &str, name: &str, portals: &[&str]) -> AgentLogin {
        self.put_agent(account, id, name, portals)
            .await
            .expect_status(201);
        AgentLogin {
            id: id.to_owned(),
            name: name.to_owned(),
            token: self.token(account, id).await,
        }
    }

    /// Creates an agent that is a member of `portal` and logs it in there.
    pub async fn online(&self, account: &str, id: &str, name: &str, portal: &str) -> AgentLogin {
        let agent = self.agent(account, id, name, &[portal]).await;
        self.login(&agent.token, portal).await.expect_status(200);
        agent
    }

    // ---- the agent's own calls ---------------------------------------------

    /// `POST /v1/me/login`.
    pub async fn login(&self, token: &str, portal: &str) -> Reply {
        self.post("/v1/me/login", token, json!({"portal": portal}))
            .await
    }

    /// `POST /v1/me/logout`.
    pub async fn logout(&self, token: &str) -> Reply {
        self.post_empty("/v1/me/logout", token).await
    }

    /// `GET /v1/me`.
    pub async fn me(&self, token: &str) -> Reply {
        self.get("/v1/me", token).await
    }

    /// `GET /v1/me/invitations` (asserts 200): the offers.
    pub async fn my_invitations(&self, token: &str) -> Vec<Value> {
        let body = self
            .get("/v1/me/invitations", token)
            .await
            .expect_status(200);
        body["invitations"]
            .as_array()
            .unwrap_or_else(|| panic!("no invitations array in {body}"))
            .clone()
    }

    /// `GET /v1/collaborators`, with `q` if given.
    pub async fn collaborators(&self, token: &str, q: Option<&str>) -> Reply {
        let path = match q {
            Some(q) => format!("/v1/collaborators?q={}", encode_query(q)),
            None => "/v1/collaborators".to_owned(),
        };
        self.get(&path, token).await
    }

    // ---- sessions ------------------------------------------------------------

    /// `POST /v1/sessions` (asserts 201): the agent view and the customer token.
    pub async fn create_session(&self, token: &str, mode: &str, customer: &str) -> (Value, String) {
        let body = self
            .post(
                "/v1/sessions",
                token,
                json!({"mode": mode, "customer": {"name": customer}}),
            )
            .await
            .expect_status(201);
        let customer_token = body["customer_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no customer_token in {body}"))
            .to_owned();
        (body["session"].clone(), customer_token)
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, token: &str, id: &str) -> Reply {
        self.get(&format!("/v1/sessions/{id}"), token).await
    }

    /// `POST /v1/sessions/{session}/invitations`.
    pub async fn invite(&self, token: &str, session: &str, body: Value) -> Reply {
        self.post(&format!("/v1/sessions/{session}/invitations"), token, body)
            .await
    }

    /// `DELETE /v1/sessions/{session}/invitations/{inv}`.
    pub async fn cancel(&self, token: &str, session: &str, inv: &str) -> Reply {
        self.delete(&format!("/v1/sessions/{session}/invitations/{inv}"), token)
            .await
    }

    /// `POST /v1/invitations/{inv}/accept`.
    pub async fn accept(&self, token: &str, inv: &str) -> Reply {
        self.post_empty(&format!("/v1/invitations/{inv}/accept"), token)
            .await
    }

    /// `POST /v1/invitations/{inv}/decline`.
    pub async fn decline(&self, token: &str, inv: &str) -> Reply {
        self.post_empty(&format!("/v1/invitations/{inv}/decline"), token)
            .await
    }

    /// `POST /v1/sessions/{session}/messages`.
    pub async fn say(&self, token: &str, session: &str, text: &str, audience: &str) -> Reply {
        let body = json!({"text": text, "audience": audience});
        self.post(&format!("/v1/sessions/{session}/messages"), token, body)
            .await
    }

    /// `GET /v1/sessions/{session}/messages`.
    pub async fn messages(&self, token: &str, session: &str) -> Reply {
        self.get(&format!("/v1/sessions/{session}/messages"), token)
            .await
    }

    /// `POST /v1/sessions/{session}/leave`.
    pub async fn leave(&self, token: &str, session: &str) -> Reply {
        self.post_empty(&format!("/v1/sessions/{session}/leave"), token)
            .await
    }

    /// `POST /v1/sessions/{session}/end`.
    pub async fn end(&self, token: &str, session: &str) -> Reply {
        self.post_empty(&format!("/v1/sessions/{session}/end"), token)
            .await
    }

    /// Invites `joiner` directly and has it accept: returns the invitation id.
    pub async fn bring_in(
        &self,
        inviter: &AgentLogin,
        session: &str,
        joiner: &AgentLogin,
        masked: bool,
    ) -> String {
        let invitation = self
            .invite(
                &inviter.token,
                session,
                json!({"target": {"agent": joiner.id}, "masked": masked}),
            )
            .await
            .expect_status(201);
        let id = id_of(&invitation);
        self.accept(&joiner.token, &id).await.expect_status(200);
        id
    }

    // ---- the customer ----------------------------------------------------------

    /// `GET /v1/customer/session`.
    pub async fn customer_session(&self, token: &str) -> Reply {
        self.get("/v1/customer/session", token).await
    }

    /// `GET /v1/customer/messages`.
    pub async fn customer_messages(&self, token: &str) -> Reply {
        self.get("/v1/customer/messages", token).await
    }

    /// `POST /v1/customer/messages`.
    pub async fn customer_say(&self, token: &str, text: &str) -> Reply {
        self.post("/v1/customer/messages", token, json!({"text": text}))
            .await
    }

    /// `POST /v1/customer/reconnected`.
    pub async fn reconnected(&self, token: &str, generation: u64, screen_shared: bool) -> Reply {
        let body = json!({"generation": generation, "screen_shared": screen_shared});
        self.post("/v1/customer/reconnected", token, body).await
    }

    // ---- event streams -----------------------------------------------------------

    /// Opens `GET /v1/me/events`: the stream, past its `snapshot`, and the snapshot.
    pub async fn agent_events(&self, token: &str) -> (EventStream, Value) {
        self.open_stream("/v1/me/events", token).await
    }

    /// Opens `GET /v1/customer/events`: the stream, past its `snapshot`, and the snapshot.
    pub async fn customer_events(&self, token: &str) -> (EventStream, Value) {
        self.open_stream("/v1/customer/events", token).await
    }

    /// Opens an event stream on its own client (so its connection is its
    /// own) and asserts that the first event is `snapshot`.
    pub async fn open_stream(&self, path: &str, token: &str) -> (EventStream, Value) {
        let mut stream = self.connect_stream(path, token).await;
        let snapshot = stream.expect("snapshot", EVENT_WAIT).await;
        (stream, snapshot)
    }

    /// The status an event stream request is answered with; the stream, if
    /// it opened, is closed again at once.
    pub async fn stream_status(&self, path: &str, token: &str) -> u16 {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        client
            .get(self.url(path))
            .bearer_auth(token)
            .insert_header(("Accept", "text/event-stream"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} was not answered: {e}"))
            .status()
            .as_u16()
    }

    /// Opens an event stream without reading anything from it.
    pub async fn connect_stream(&self, path: &str, token: &str) -> EventStream {
        // The head must come within the timeout; the body, read with
        // `next()`, has no limit.
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let response = client
            .get(self.url(path))
            .bearer_auth(token)
            .insert_header(("Accept", "text/event-stream"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} was not answered: {e}"));
        assert_eq!(response.status().as_u16(), 200, "opening {path}");
        let content_type = header_text(response.headers().get(CONTENT_TYPE));
        assert!(
            content_type.starts_with("text/event-stream"),
            "{path} answered with content-type {content_type:?}"
        );
        EventStream {
            body: Box::pin(response),
            buffer: Vec::new(),
            raw: Vec::new(),
            last_id: 0,
            ended: false,
            path: path.to_owned(),
        }
    }
}

fn header_text(value: Option<&awc::http::header::HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The client for plain requests. It reuses a connection for 2 s at most:
/// a node closes an idle keep-alive connection after 5 s (actix-web's
/// default), and a request sent on one it just closed would fail with
/// "connector has been disconnected" instead of reaching the node.
fn request_client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
        .timeout(Duration::from_secs(30))
        .finish()
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
    }
}

/// Percent-encodes a query value.
fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `id` field of a JSON object, as text.
#[track_caller]
pub fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no string id in {value}"))
        .to_owned()
}

/// The values of `field` in every object of a JSON array.
pub fn pluck(array: &Value, field: &str) -> Vec<String> {
    array
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of a session view's participants, in order.
pub fn participant_ids(session: &Value) -> Vec<String> {
    session["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["agent"]["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The strings of a JSON array (e.g. `recipients`).
pub fn strings(array: &Value) -> Vec<String> {
    array
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One event as read from a stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `id:` sequence number.
    pub id: u64,
    /// The `event:` type.
    pub name: String,
    /// The `data:` payload.
    pub data: Value,
}

enum Read {
    Event(SseEvent),
    Timeout,
    End,
}

type Body = Pin<Box<dyn Stream<Item = Result<actix_web::web::Bytes, PayloadError>>>>;

/// An open `text/event-stream`, read frame by frame. Every event must carry
/// an id greater than the one before it.
pub struct EventStream {
    body: Body,
    buffer: Vec<u8>,
    raw: Vec<u8>,
    last_id: u64,
    ended: bool,
    path: String,
}

impl EventStream {
    /// Everything the server sent on this stream so far, as text.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The next event within `timeout`; `None` on timeout or end of stream.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        match self.read(Instant::now() + timeout).await {
            Read::Event(event) => Some(event),
            Read::Timeout | Read::End => None,
        }
    }

    /// The next event, which must be `name`: returns its data.
    #[track_caller]
    pub fn expect<'a>(
        &'a mut self,
        name: &'a str,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            match self.read(Instant::now() + timeout).await {
                Read::Event(event) => {
                    assert_eq!(
                        event.name, name,
                        "{}: expected `{name}` next (at {caller}), got `{}` {}",
                        self.path, event.name, event.data
                    );
                    event.data
                }
                Read::Timeout => panic!(
                    "{}: no `{name}` within {timeout:?} (at {caller})",
                    self.path
                ),
                Read::End => panic!(
                    "{}: the stream ended while waiting for `{name}` (at {caller})",
                    self.path
                ),
            }
        }
    }

    /// Skips other events until `name` arrives: returns its data.
    #[track_caller]
    pub fn wait_for<'a>(
        &'a mut self,
        name: &'a str,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let deadline = Instant::now() + timeout;
            let mut skipped = Vec::new();
            loop {
                match self.read(deadline).await {
                    Read::Event(event) if event.name == name => return event.data,
                    Read::Event(event) => skipped.push(event.name),
                    Read::Timeout => panic!(
                        "{}: no `{name}` within {timeout:?} (at {caller}); skipped {skipped:?}",
                        self.path
                    ),
                    Read::End => panic!(
                        "{}: the stream ended while waiting for `{name}` (at {caller}); skipped {skipped:?}",
                        self.path
                    ),
                }
            }
        }
    }

    /// Reads until one event of each of `names` arrived (others skipped),
    /// in whatever order: events that travel through different topics
    /// (a portal's offers, an agent's own) are not ordered between them.
    pub async fn gather(
        &mut self,
        names: &[&str],
        timeout: Duration,
    ) -> std::collections::HashMap<String, Value> {
        let deadline = Instant::now() + timeout;
        let mut found = std::collections::HashMap::new();
        while found.len() < names.len() {
            match self.read(deadline).await {
                Read::Event(event) if names.contains(&event.name.as_str()) => {
                    found.entry(event.name).or_insert(event.data);
                }
                Read::Event(_) => {}
                Read::Timeout | Read::End => panic!(
                    "{}: only {:?} of {names:?} arrived",
                    self.path,
                    found.keys().collect::<Vec<_>>()
                ),
            }
        }
        found
    }

    /// Asserts that no event arrives for `window` (keep-alive comments are fine).
    #[track_caller]
    pub fn assert_silent(
        &mut self,
        window: Duration,
    ) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.read(Instant::now() + window).await {
                Read::Timeout => {}
                Read::Event(event) => panic!(
                    "{}: expected silence (at {caller}), got `{}` {}",
                    self.path, event.name, event.data
                ),
                Read::End => panic!(
                    "{}: expected silence (at {caller}), the stream ended",
                    self.path
                ),
            }
        }
    }

    /// Reads until the server ends the stream; panics if it does not within
    /// `timeout`. Returns the events read meanwhile.
    pub async fn expect_end(&mut self, timeout: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self.read(deadline).await {
                Read::End => return seen,
                Read::Event(event) => seen.push(event),
                Read::Timeout => panic!(
                    "{}: the stream did not end within {timeout:?}; read {} events",
                    self.path,
                    seen.len()
                ),
            }
        }
    }

    async fn read(&mut self, deadline: Instant) -> Read {
        loop {
            while let Some(frame) = self.take_frame() {
                if let Some(event) = self.parse(&frame) {
                    return Read::Event(event);
                }
            }
            if self.ended {
                return Read::End;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Read::Timeout,
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.buffer.extend_from_slice(&chunk);
                }
                // A reset connection ends the stream as surely as a clean end.
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
            }
        }
    }

    /// The next complete frame (up to a blank line), if one is buffered.
    fn take_frame(&mut self) -> Option<String> {
        let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
        let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
        Some(String::from_utf8_lossy(&frame[..end]).into_owned())
    }

    /// An event from a frame; `None` for a comment-only frame.
    fn parse(&mut self, frame: &str) -> Option<SseEvent> {
        let (mut id, mut name, mut data): (Option<u64>, Option<String>, Vec<&str>) =
            (None, None, Vec::new());
        for line in frame.split('\n').map(|l| l.trim_end_matches('\r')) {
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => {
                    id = Some(value.parse().unwrap_or_else(|_| {
                        panic!("{}: non-numeric event id {value:?}", self.path)
                    }))
                }
                "event" => name = Some(value.to_owned()),
                "data" => data.push(value),
                _ => {}
            }
        }
        if name.is_none() && data.is_empty() {
            return None;
        }
        let name = name.unwrap_or_else(|| "message".to_owned());
        let id = id.unwrap_or_else(|| panic!("{}: event `{name}` without an id", self.path));
        assert!(
            id > self.last_id,
            "{}: event ids must increase: `{name}` has id {id} after {}",
            self.path,
            self.last_id
        );
        self.last_id = id;
        let text = data.join("\n");
        let data = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: `{name}` data is not JSON ({e}): {text}", self.path));
        Some(SseEvent { id, name, data })
    }
}
