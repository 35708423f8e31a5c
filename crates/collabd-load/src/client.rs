//! HTTP and Server-Sent Events over awc, for the generator. One client for
//! every call and stream: its connector has no connection limit, because
//! every open event stream holds a connection for the whole run.
//!
//! The stream side is on the generator's hot path (one call per delivered
//! event): frames are cut out of the receive buffer in place and handed to
//! the caller as borrowed text, so reading an event allocates nothing.

use std::borrow::Cow;
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix_web::web::Bytes;
use awc::error::{PayloadError, SendRequestError};
use awc::http::Method;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a request may wait for its response head (and an ordinary
/// body); streams' bodies have no limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest ordinary response body read.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
/// How long [`Nodes::alive`] waits for a node's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often, and how far apart, a create whose first try is still being
/// answered elsewhere (409 `idempotency_in_progress`) is sent again.
const IN_PROGRESS_RETRIES: u32 = 20;
const IN_PROGRESS_PAUSE: Duration = Duration::from_millis(100);
/// How long a node that refused a connection is passed over, as a
/// balancer's health check would, before it is tried again.
const NODE_DOWN_FOR: Duration = Duration::from_secs(1);

/// The nodes under load and a client to reach them, as a client behind a
/// balancer sees them: a call or a stream that cannot reach its node goes
/// to the next one, and that node is passed over for [`NODE_DOWN_FOR`].
#[derive(Clone)]
pub struct Nodes {
    client: awc::Client,
    urls: Vec<String>,
    /// Per node: passed over until then.
    down_until: Rc<Vec<Cell<Option<Instant>>>>,
    /// Calls and streams that went to another node than asked.
    failovers: Rc<Cell<u64>>,
}

/// Whether a failed send may be sent again elsewhere: always when nothing
/// reached a server (no connection), and for any failure but a timeout
/// when the request is idempotent (it carries an `Idempotency-Key`).
fn may_resend(error: &SendRequestError, idempotent: bool) -> bool {
    match error {
        SendRequestError::Connect(_) => true,
        SendRequestError::Timeout => false,
        _ => idempotent,
    }
}

/// An HTTP answer: its status and raw body, parsed only as far as a caller
/// asks (most answers on the hot path are judged by their status alone).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body as received.
    pub body: Bytes,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<u64>,
}

#[derive(Deserialize)]
struct ProblemHead<'a> {
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

impl Answer {
    /// True for a 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed into `T`, borrowing from it where `T` does.
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as a JSON value (`Null` when not JSON); for set-up only.
    pub fn value(&self) -> Value {
        self.json().unwrap_or(Value::Null)
    }

    /// The problem code, if the body is a problem.
    pub fn code(&self) -> Option<Cow<'_, str>> {
        self.json::<ProblemHead<'_>>()?.code
    }

    /// `"<status> <problem code>"`, the key errors are counted under.
    pub fn error_key(&self) -> String {
        match self.code() {
            Some(code) => format!("{} {code}", self.status),
            None => self.status.to_string(),
        }
    }
}

/// An event stream's body, as raw chunks.
pub type Body = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

impl Nodes {
    /// A client for these base URLs (trailing slashes are dropped).
    pub fn new(urls: &[String]) -> Self {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(0))
            .timeout(REQUEST_TIMEOUT)
            .finish();
        Self {
            client,
            urls: urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            down_until: Rc::new(urls.iter().map(|_| Cell::new(None)).collect()),
            failovers: Rc::new(Cell::new(0)),
        }
    }

    /// Node `preferred % len` unless it is passed over, else the next one
    /// that is not (or `preferred` when every node is).
    pub fn pick(&self, preferred: usize) -> usize {
        let n = self.urls.len();
        let now = Instant::now();
        (0..n)
            .map(|i| (preferred + i) % n)
            .find(|i| self.down_until[*i].get().is_none_or(|until| now >= until))
            .unwrap_or(preferred % n)
    }

    fn mark_down(&self, node: usize) {
        self.down_until[node % self.urls.len()].set(Some(Instant::now() + NODE_DOWN_FOR));
    }

    /// Calls and streams sent to another node than asked, so far.
    pub fn failovers(&self) -> u64 {
        self.failovers.get()
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// True when there is no node (never, after argument validation).
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Sends a request to node `node % len` (or the next node that takes
    /// it, see [`Nodes`]); `Err` carries a transport failure (no HTTP answer).
    pub async fn call(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        self.call_with(node, method, path, token, body, None).await
    }

    /// [`Nodes::call`] with an `Idempotency-Key`: then a send that failed
    /// in any way but a timeout is sent again to another node, and an answer
    /// 409 `idempotency_in_progress` (the first try, sent to a node that went
    /// away, is still held) is asked again shortly.
    pub async fn call_with(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, String> {
        let mut tries = 0;
        loop {
            let answer = self
                .send_once(node, method.clone(), path, token, body, idempotency_key)
                .await?;
            tries += 1;
            if idempotency_key.is_none()
                || answer.status != 409
                || answer.code().as_deref() != Some("idempotency_in_progress")
                || tries > IN_PROGRESS_RETRIES
            {
                return Ok(answer);
            }
            tokio::time::sleep(IN_PROGRESS_PAUSE).await;
        }
    }

    /// `send(url)` to node `node` (or the next one not passed over) and,
    /// when it fails in a way `resend` allows, to the next nodes; says
    /// which node answered.
    async fn failover<F, Fut, R>(
        &self,
        node: usize,
        path: &str,
        resend: impl Fn(&SendRequestError) -> bool,
        send: F,
    ) -> Result<(usize, R), SendRequestError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<R, SendRequestError>>,
    {
        let mut at = self.pick(node);
        let mut attempt = 0;
        loop {
            match send(format!("{}{path}", self.urls[at])).await {
                Ok(response) => return Ok((at, response)),
                Err(e) => {
                    attempt += 1;
                    if attempt >= self.urls.len() || !resend(&e) {
                        return Err(e);
                    }
                    self.mark_down(at);
                    at = self.pick(at + 1);
                    self.failovers.set(self.failovers.get() + 1);
                }
            }
        }
    }

    async fn send_once(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, String> {
        let send = |url: String| {
            let mut request = self.client.request(method.clone(), url).bearer_auth(token);
            if let Some(key) = idempotency_key {
                request = request.insert_header(("Idempotency-Key", key));
            }
            async move {
                match body {
                    Some(body) => request.send_json(body).await,
                    None => request.send().await,
                }
            }
        };
        let resend = |e: &SendRequestError| may_resend(e, idempotency_key.is_some());
        let (_, mut response) = self
            .failover(node, path, resend, send)
            .await
            .map_err(|e| format!("{e}"))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response
            .body()
            .limit(MAX_REPLY_BYTES)
            .await
            .map_err(|e| format!("{e}"))?;
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// POSTs raw bytes to node `node % len` (or the next node that takes
    /// it) and returns the status; for `collabd peer-load`'s publishes.
    pub async fn post_bytes(&self, node: usize, path: &str, body: Bytes) -> Result<u16, String> {
        let send = |url: String| self.client.post(url).send_body(body.clone());
        let resend = |e: &SendRequestError| may_resend(e, false);
        let (_, mut response) = self
            .failover(node, path, resend, send)
            .await
            .map_err(|e| format!("{e}"))?;
        // Read the (small) answer so the connection can be reused.
        let _ = response.body().limit(MAX_REPLY_BYTES).await;
        Ok(response.status().as_u16())
    }

    /// Like [`Nodes::call`], for setting a run up: a 429 (the admin token's
    /// rate limit, or a token's) is retried after its `Retry-After`, so
    /// provisioning thousands of agents paces itself to the nodes' limits.
    pub async fn call_paced(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        const ATTEMPTS: u32 = 60;
        let mut attempt = 0;
        loop {
            let answer = self.call(node, method.clone(), path, token, body).await?;
            attempt += 1;
            if answer.status != 429 || attempt >= ATTEMPTS {
                return Ok(answer);
            }
            let wait = answer.retry_after.unwrap_or(1).clamp(1, 10);
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    }

    /// Opens an event stream on node `node % len` (or the next node that
    /// takes it) and returns its body once the server answered 200; `Err`
    /// names the status or the failure.
    pub async fn open_stream(&self, node: usize, path: &str, token: &str) -> Result<Body, String> {
        self.open_stream_at(node, path, token)
            .await
            .map(|(_, body)| body)
    }

    /// [`Nodes::open_stream`], also saying which node took it.
    pub async fn open_stream_at(
        &self,
        node: usize,
        path: &str,
        token: &str,
    ) -> Result<(usize, Body), String> {
        let send = |url: String| {
            self.client
                .get(url)
                .bearer_auth(token)
                .insert_header(("Accept", "text/event-stream"))
                .send()
        };
        // Opening a stream changes nothing: any failure but a timeout may go elsewhere.
        let resend = |e: &SendRequestError| !matches!(e, SendRequestError::Timeout);
        let (at, response) = self
            .failover(node, path, resend, send)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("{path}: HTTP {status}"));
        }
        Ok((at, Box::pin(response)))
    }

    /// Whether node `node` takes connections at all (`GET /healthz`): after
    /// a stream broke, this tells a dead node from a live one that closed it.
    pub async fn alive(&self, node: usize) -> bool {
        let url = format!("{}/healthz", self.urls[node % self.urls.len()]);
        match self.client.get(url).timeout(PROBE_TIMEOUT).send().await {
            Ok(_) => true,
            Err(SendRequestError::Connect(_)) => {
                self.mark_down(node);
                false
            }
            // No answer in time: a node that hangs is as good as dead to its clients.
            Err(SendRequestError::Timeout) => false,
            Err(_) => true,
        }
    }
}

/// One SSE event: its `id:`, its `event:` type and its `data:` text,
/// borrowed from the receive buffer (owned only when the data spans several
/// lines or the bytes were not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The last `id:` field's value, if the event has one. The generator
    /// does not read it; the end-to-end tests check that ids increase.
    pub id: Option<Cow<'a, str>>,
    /// The event type (`message` when absent).
    pub name: Cow<'a, str>,
    /// The data lines joined by `\n`.
    pub data: Cow<'a, str>,
}

/// How a stream stopped being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The run told it to stop.
    Deadline,
    /// The server closed it, or the connection broke.
    Closed,
}

/// Reads `body` until `stop` turns true, handing each event to `on_event`
/// with the instant its bytes arrived. Timestamps are taken before parsing,
/// so the parser's own cost never counts as the server's latency.
pub async fn pump(
    mut body: Body,
    mut stop: watch::Receiver<bool>,
    mut on_event: impl FnMut(&Frame<'_>, Instant),
) -> StreamEnd {
    if *stop.borrow_and_update() {
        return StreamEnd::Deadline;
    }
    // One wait for the stop, registered once for the stream's life rather
    // than once per received chunk (a chunk is about one event).
    let stopped = async move {
        // A dropped sender means the run is over as well.
        while stop.changed().await.is_ok() && !*stop.borrow() {}
    };
    let mut stopped = std::pin::pin!(stopped);
    let mut buffer = FrameBuffer::default();
    loop {
        tokio::select! {
            biased;
            () = &mut stopped => return StreamEnd::Deadline,
            chunk = body.next() => match chunk {
                None | Some(Err(_)) => return StreamEnd::Closed,
                Some(Ok(chunk)) => {
                    let arrived = Instant::now();
                    buffer.push(&chunk);
                    while let Some(frame) = buffer.next_frame() {
                        on_event(&frame, arrived);
                    }
                }
            },
        }
    }
}

/// Splits a byte stream into SSE frames (events separated by a blank line).
/// Consumed frames are only marked; the bytes are moved once per received
/// chunk, not once per frame.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
    /// Where the first unconsumed frame starts.
    start: usize,
    /// Where to resume looking for a blank line, so a frame that arrives in
    /// many chunks is not rescanned from its start each time.
    scanned: usize,
}

impl FrameBuffer {
    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.scanned = self.scanned.saturating_sub(self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// The next complete event, skipping comment-only frames (keep-alives).
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let range = loop {
            // A blank line split across chunks: look again from one byte back.
            let from = self.scanned.max(self.start + 1) - 1;
            let rest = &self.bytes[from..];
            let blank = memchr::memchr_iter(b'\n', rest).find(|&i| rest.get(i + 1) == Some(&b'\n'));
            let Some(at) = blank else {
                self.scanned = self.bytes.len();
                return None;
            };
            let range = self.start..from + at;
            self.start = from + at + 2;
            self.scanned = self.start;
            if has_fields(&self.bytes[range.clone()]) {
                break range;
            }
        };
        Some(parse_frame(&self.bytes[range]))
    }
}

/// Whether a frame has any line that is not a comment.
fn has_fields(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n')
        .any(|line| !(line.is_empty() || line == b"\r" || line.starts_with(b":")))
}

fn parse_frame(raw: &[u8]) -> Frame<'_> {
    match std::str::from_utf8(raw) {
        Ok(text) => parse_text(text),
        Err(_) => {
            let text = String::from_utf8_lossy(raw).into_owned();
            let frame = parse_text(&text);
            Frame {
                id: frame.id.map(|id| Cow::Owned(id.into_owned())),
                name: Cow::Owned(frame.name.into_owned()),
                data: Cow::Owned(frame.data.into_owned()),
            }
        }
    }
}

fn parse_text(text: &str) -> Frame<'_> {
    let mut id = None;
    let mut name = None;
    let mut data: Option<Cow<'_, str>> = None;
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value),
            "event" => name = Some(value),
            "data" => {
                data = Some(match data.take() {
                    None => Cow::Borrowed(value),
                    Some(before) => {
                        let mut joined = before.into_owned();
                        joined.push('\n');
                        joined.push_str(value);
                        Cow::Owned(joined)
                    }
                });
            }
            _ => {}
        }
    }
    Frame {
        id: id.map(Cow::Borrowed),
        name: Cow::Borrowed(name.unwrap_or("message")),
        data: data.unwrap_or(Cow::Borrowed("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: Option<&str>, name: &str, data: &str) -> Frame<'static> {
        Frame {
            id: id.map(|id| Cow::Owned(id.to_owned())),
            name: Cow::Owned(name.to_owned()),
            data: Cow::Owned(data.to_owned()),
        }
    }

    #[test]
    fn frames_split_across_chunks_are_reassembled_and_keep_alives_skipped() {
        let mut buffer = FrameBuffer::default();
        buffer.push(b": keep-alive\n\nid: 1\nevent: snap");
        assert_eq!(buffer.next_frame(), None);
        buffer.push(b"shot\ndata: {\"a\":1}\n");
        assert_eq!(buffer.next_frame(), None);
        buffer.push(b"\nid: 2\ndata: x\ndata: y\n\n");
        assert_eq!(
            buffer.next_frame(),
            Some(frame(Some("1"), "snapshot", "{\"a\":1}"))
        );
        assert_eq!(
            buffer.next_frame(),
            Some(frame(Some("2"), "message", "x\ny"))
        );
        assert_eq!(buffer.next_frame(), None);
    }

    #[test]
    fn a_single_line_frame_is_borrowed_and_consumed_bytes_are_reclaimed() {
        let mut buffer = FrameBuffer::default();
        buffer.push(b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: c\nda");
        let first = buffer.next_frame().unwrap();
        assert!(matches!(first.name, Cow::Borrowed("a")));
        assert!(matches!(first.data, Cow::Borrowed("1")));
        assert_eq!(buffer.next_frame(), Some(frame(None, "b", "2")));
        assert_eq!(buffer.next_frame(), None);
        buffer.push(b"ta: 3\n");
        assert_eq!(buffer.bytes, b"event: c\ndata: 3\n");
        buffer.push(b"\n: ping\n\n");
        assert_eq!(buffer.next_frame(), Some(frame(None, "c", "3")));
        assert_eq!(buffer.next_frame(), None);
        buffer.push(b"");
        assert!(buffer.bytes.is_empty());
    }

    #[test]
    fn the_id_is_borrowed_the_last_one_counts_and_an_event_may_have_none() {
        let mut buffer = FrameBuffer::default();
        buffer.push(b"id: 7\nevent: a\ndata: 1\n\n");
        buffer.push(b"id: 8\nid:9\nevent: b\ndata: 2\n\n");
        buffer.push(b"event: c\ndata: 3\n\nid\nevent: d\ndata: 4\n\n");
        let first = buffer.next_frame().unwrap();
        assert!(matches!(first.id, Some(Cow::Borrowed("7"))));
        assert_eq!(first, frame(Some("7"), "a", "1"));
        assert_eq!(buffer.next_frame(), Some(frame(Some("9"), "b", "2")));
        assert_eq!(buffer.next_frame(), Some(frame(None, "c", "3")));
        // A bare `id` line sets an empty id (the SSE spec's field without a value).
        assert_eq!(buffer.next_frame(), Some(frame(Some(""), "d", "4")));
        // Bytes that are not UTF-8 still give the id, owned.
        buffer.push(b"id: 10\nevent: e\ndata: \xff\n\n");
        assert_eq!(
            buffer.next_frame(),
            Some(frame(Some("10"), "e", "\u{fffd}"))
        );
    }

    #[test]
    fn a_node_that_refused_is_passed_over_for_a_while() {
        let urls: Vec<String> = (1..=3).map(|i| format!("http://127.0.0.1:{i}")).collect();
        let nodes = Nodes::new(&urls);
        assert_eq!((nodes.pick(1), nodes.pick(4)), (1, 1));
        nodes.mark_down(1);
        assert_eq!((nodes.pick(1), nodes.pick(0)), (2, 0));
        nodes.mark_down(2);
        assert_eq!(nodes.pick(1), 0);
        nodes.mark_down(0);
        // Every node passed over: the one asked for.
        assert_eq!(nodes.pick(1), 1);
        assert!(!may_resend(&SendRequestError::Timeout, false));
        assert!(!may_resend(&SendRequestError::Timeout, true));
        assert!(may_resend(&SendRequestError::TunnelNotSupported, true));
        assert!(!may_resend(&SendRequestError::TunnelNotSupported, false));
    }

    #[test]
    fn a_problem_answer_names_its_code() {
        let answer = Answer {
            status: 409,
            body: Bytes::from_static(br#"{"status":409,"code":"invitation_taken"}"#),
            retry_after: None,
        };
        assert_eq!(answer.code().as_deref(), Some("invitation_taken"));
        assert_eq!(answer.error_key(), "409 invitation_taken");
        let bare = Answer {
            status: 502,
            body: Bytes::from_static(b"bad gateway"),
            retry_after: None,
        };
        assert_eq!(bare.error_key(), "502");
    }
}
