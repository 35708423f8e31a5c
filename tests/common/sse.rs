//! The SSE event streams: opening them, and reading them event by event.

use std::time::Duration;

use awc::http::header::CONTENT_TYPE;
use collabd_load::client::{Body, Frame, FrameBuffer};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use super::http::header_text;
use super::{EVENT_WAIT, TestApp};

impl TestApp {
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
            frames: FrameBuffer::default(),
            raw: Vec::new(),
            last_id: 0,
            ended: false,
            path: path.to_owned(),
        }
    }
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

/// An open `text/event-stream`, read frame by frame. Every event must carry
/// an id greater than the one before it.
pub struct EventStream {
    body: Body,
    frames: FrameBuffer,
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
            if let Some(frame) = self.frames.next_frame() {
                return Read::Event(to_event(&frame, &self.path, &mut self.last_id));
            }
            if self.ended {
                return Read::End;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Read::Timeout,
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.frames.push(&chunk);
                }
                // A reset connection ends the stream as surely as a clean end.
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
            }
        }
    }
}

/// An event from a frame the load generator's parser cut out (comment-only
/// frames never get here), checked strictly: it must carry a numeric id
/// greater than `last_id`, and JSON data.
fn to_event(frame: &Frame<'_>, path: &str, last_id: &mut u64) -> SseEvent {
    let name = frame.name.as_ref();
    let id: u64 = match frame.id.as_deref() {
        None => panic!("{path}: event `{name}` without an id"),
        Some(id) => id
            .parse()
            .unwrap_or_else(|_| panic!("{path}: non-numeric event id {id:?}")),
    };
    assert!(
        id > *last_id,
        "{path}: event ids must increase: `{name}` has id {id} after {last_id}"
    );
    *last_id = id;
    let data = serde_json::from_str(&frame.data)
        .unwrap_or_else(|e| panic!("{path}: `{name}` data is not JSON ({e}): {}", frame.data));
    SseEvent {
        id,
        name: name.to_owned(),
        data,
    }
}
