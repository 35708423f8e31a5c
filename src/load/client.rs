//! HTTP and Server-Sent Events over awc, for the generator. One client for
//! every call and stream: its connector has no connection limit, because
//! every open event stream holds a connection for the whole run.

use std::pin::Pin;
use std::time::Duration;

use actix_web::web::Bytes;
use awc::error::PayloadError;
use awc::http::Method;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a request may wait for its response head (and an ordinary
/// body); streams' bodies have no limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest ordinary response body read.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// The nodes under load and a client to reach them.
#[derive(Clone)]
pub struct Nodes {
    client: awc::Client,
    urls: Vec<String>,
}

/// An HTTP answer: status and the body as JSON (`Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body parsed as JSON.
    pub body: Value,
}

impl Answer {
    /// True for a 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `"<status> <problem code>"`, the key errors are counted under.
    pub fn error_key(&self) -> String {
        match self.body.get("code").and_then(Value::as_str) {
            Some(code) => format!("{} {code}", self.status),
            None => self.status.to_string(),
        }
    }

    /// The problem code, if the body is a problem.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
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
        }
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// True when there is no node (never, after argument validation).
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Sends a request to node `node % len`; `Err` carries a transport
    /// failure (no HTTP answer at all).
    pub async fn call(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.urls[node % self.urls.len()]);
        let request = self.client.request(method, url).bearer_auth(token);
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| format!("{e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .body()
            .limit(MAX_REPLY_BYTES)
            .await
            .map_err(|e| format!("{e}"))?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// Opens an event stream on node `node % len` and returns its body once
    /// the server answered 200.
    pub async fn open_stream(&self, node: usize, path: &str, token: &str) -> Result<Body, String> {
        let url = format!("{}{path}", self.urls[node % self.urls.len()]);
        let response = self
            .client
            .get(url)
            .bearer_auth(token)
            .insert_header(("Accept", "text/event-stream"))
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("{path}: HTTP {status}"));
        }
        Ok(Box::pin(response))
    }
}

/// One SSE event: its `event:` type and its `data:` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The event type (`message` when absent).
    pub name: String,
    /// The data lines joined by `\n`.
    pub data: String,
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
    mut on_event: impl FnMut(Frame, Instant),
) -> StreamEnd {
    let mut buffer = FrameBuffer::default();
    loop {
        if *stop.borrow_and_update() {
            return StreamEnd::Deadline;
        }
        tokio::select! {
            biased;
            changed = stop.changed() => {
                // A dropped sender means the run is over as well.
                if changed.is_err() || *stop.borrow() {
                    return StreamEnd::Deadline;
                }
            }
            chunk = body.next() => match chunk {
                None | Some(Err(_)) => return StreamEnd::Closed,
                Some(Ok(chunk)) => {
                    let arrived = Instant::now();
                    buffer.push(&chunk);
                    while let Some(frame) = buffer.next_frame() {
                        on_event(frame, arrived);
                    }
                }
            },
        }
    }
}

/// Splits a byte stream into SSE frames (events separated by a blank line).
#[derive(Debug, Default)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
    /// Where to resume looking for a blank line, so a frame that arrives in
    /// many chunks is not rescanned from its start each time.
    scanned: usize,
}

impl FrameBuffer {
    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
    }

    /// The next complete event, skipping comment-only frames (keep-alives).
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let from = self.scanned.saturating_sub(1);
            let Some(at) = self.bytes[from..].windows(2).position(|w| w == b"\n\n") else {
                self.scanned = self.bytes.len();
                return None;
            };
            let end = from + at;
            let frame = parse_frame(&self.bytes[..end]);
            self.bytes.drain(..end + 2);
            self.scanned = 0;
            if frame.is_some() {
                return frame;
            }
        }
    }
}

fn parse_frame(raw: &[u8]) -> Option<Frame> {
    let text = String::from_utf8_lossy(raw);
    let mut name = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if name.is_none() && data.is_empty() {
        return None;
    }
    Some(Frame {
        name: name.unwrap_or_else(|| "message".to_owned()),
        data: data.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Some(Frame {
                name: "snapshot".into(),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(
            buffer.next_frame(),
            Some(Frame {
                name: "message".into(),
                data: "x\ny".into()
            })
        );
        assert_eq!(buffer.next_frame(), None);
    }
}
