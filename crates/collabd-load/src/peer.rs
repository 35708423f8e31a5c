//! `collabd peer-load`: the same shape of traffic against a plain pub/sub
//! relay, nginx + nchan, so one script (`benches/peer/run.sh`) can measure
//! both sides on one machine in one sitting.
//!
//! The shape mirrors `collabd load` with portal invitations: subscribers
//! are the agents (subscriber `i` listens on channel `i mod C`, on node
//! `i + 1 mod N`), a published message is an invitation (to a random
//! channel, through node `k mod N`, so every delivery crosses the relay's
//! Redis as collabd's alerts do), and its payload is padded to `--payload`
//! bytes. Open loop: message `k` leaves at `start + k / rate`.
//!
//! What it measures is what the relay promises: every subscriber of a
//! channel receives each message published to it while it listens. A
//! message's latency is publish sent → event arrived, one sample per
//! subscriber; a message published (answered 2xx) that a subscriber never
//! received is `missing`.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use actix_web::web::Bytes;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use awc::error::PayloadError;
use futures_util::StreamExt;

use crate::client::{Body, Frame, Nodes, StreamEnd, pump};
use crate::report::{Latency, Quantiles};
use crate::{LoadError, cpu, parse_duration};

/// Most messages one run may publish (a send instant is kept for each, so
/// latencies can be taken on arrival): 1,000/s for 30 minutes.
const MAX_MESSAGES: u64 = 1_800_000;
/// Largest payload; nchan's default `client_max_body_size` is nginx's 1 MiB.
const MAX_PAYLOAD: usize = 512 * 1024;
/// How long the subscriptions are given to reach the relay's Redis after
/// their streams opened, before the first message.
const SETTLE: Duration = Duration::from_secs(1);

/// Arguments of `collabd peer-load`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = "Drives nginx + nchan with collabd load's shape (benches/peer): subscribers in channels, \
             open-loop publishes, every delivery checked and timed.",
    long_about = "Drives nginx + nchan nodes the way `collabd load` drives collabd's: --subscribers \
                  EventSource streams in --channels channels (subscriber i on channel i mod C, \
                  held on node i+1 mod N), and --rate messages per second, open loop, each to a \
                  random channel through node k mod N, padded to --payload bytes. Every message \
                  published (2xx) must reach every subscriber of its channel within --grace; \
                  latency is publish sent -> event arrived (HDR histogram). With --node-pids \
                  (the nginx worker processes), CPU per delivered event is reported as for \
                  collabd load.\n\n\
                  Exit status: 0 when nothing published was missing, 3 when anything was, \
                  1 when the run could not be carried out, 2 for bad arguments."
)]
pub struct PeerArgs {
    /// Base URLs of the relay's nodes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Subscribers (EventSource streams) to hold.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Channels; subscriber i listens on channel i mod C.
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Messages per second, open loop.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to publish.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long after the last publish deliveries still count.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Bytes of each message's body.
    #[arg(long, default_value_t = 1024)]
    pub payload: usize,
    /// Publisher location: a message to channel C is POSTed to PREFIX + C.
    #[arg(long, default_value = "/pub/")]
    pub publish_path: String,
    /// Subscriber location: channel C's stream is GET PREFIX + C.
    #[arg(long, default_value = "/sub/")]
    pub subscribe_path: String,
    /// Process ids whose CPU time counts as the relay's (nginx's workers).
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "PID[,PID...]")]
    pub node_pids: Vec<u32>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

impl PeerArgs {
    /// Rejects arguments that cannot run, before anything is sent.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: &str| Err(LoadError::Arguments(m.to_owned()));
        for node in &self.nodes {
            if !node.starts_with("http://") {
                return bad(&format!("--nodes: {node:?} is not an http:// URL"));
            }
        }
        if self.channels == 0 || self.subscribers < self.channels {
            return bad("--channels must be at least 1 and at most --subscribers");
        }
        if !self.rate.is_finite() || self.rate <= 0.0 {
            return bad("--rate must be a positive number");
        }
        if (self.rate * self.duration.as_secs_f64()).ceil() as u64 > MAX_MESSAGES {
            return bad(&format!(
                "--rate x --duration: at most {MAX_MESSAGES} messages"
            ));
        }
        if !(16..=MAX_PAYLOAD).contains(&self.payload) {
            return bad(&format!("--payload: 16 to {MAX_PAYLOAD} bytes"));
        }
        for pid in &self.node_pids {
            if cpu::ticks(Some(*pid)).is_none() {
                return bad(&format!("--node-pids: cannot read /proc/{pid}/stat"));
            }
        }
        Ok(())
    }
}

/// What a peer run measured (the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    /// Messages per second asked for.
    pub rate: f64,
    /// Subscribers and channels.
    pub subscribers: usize,
    pub channels: usize,
    /// Bytes per message.
    pub payload: usize,
    /// Messages sent, answered 2xx, refused (non-2xx) and unanswered.
    pub sent: u64,
    pub published: u64,
    pub refused: u64,
    pub unanswered: u64,
    /// Deliveries owed (each published message times its channel's
    /// subscribers), received within the grace, and missing.
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub missing: u64,
    /// Events that named no message of this run, or arrived twice.
    pub unexpected: u64,
    /// Subscriber streams that closed before the end.
    pub stream_drops: u64,
    /// Publish sent -> event arrived, per delivery (ms).
    pub latency: Quantiles,
    /// How late the generator sent, per message (ms).
    pub schedule_lag: Quantiles,
    /// CPU seconds of the relay's processes and of this one, over the
    /// sending and the grace, and µs of each per delivered event.
    pub node_cpu_s: Option<f64>,
    pub generator_cpu_s: Option<f64>,
    pub node_us_per_event: Option<f64>,
    pub generator_us_per_event: Option<f64>,
    /// Errors by kind.
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl PeerReport {
    /// Nothing published went missing.
    pub fn clean(&self) -> bool {
        self.missing == 0
    }

    /// A one-line summary for the terminal.
    pub fn line(&self) -> String {
        format!(
            "rate {}/s: published {} of {}, delivered {} of {} (missing {}), p50 {} ms, \
             p99 {} ms, max {} ms, relay {} µs/event, generator {} µs/event, errors {:?}",
            self.rate,
            self.published,
            self.sent,
            self.delivered,
            self.expected_deliveries,
            self.missing,
            self.latency.p50,
            self.latency.p99,
            self.latency.max,
            self.node_us_per_event
                .map_or("-".into(), |v| format!("{v:.1}")),
            self.generator_us_per_event
                .map_or("-".into(), |v| format!("{v:.1}")),
            self.errors,
        )
    }
}

/// The run's shared state (one thread: the generator's arbiter).
struct Peer {
    args: PeerArgs,
    nodes: Nodes,
    /// Channel names, `<run>-<c>`.
    channels: Vec<String>,
    /// Subscribers per channel.
    listeners: Vec<u64>,
    /// Per message: when its publish was sent (`None`: not yet sent) and
    /// how many deliveries it has had.
    sent_at: RefCell<Vec<Option<Instant>>>,
    received: RefCell<Vec<u32>>,
    latency: RefCell<Latency>,
    delivered: Cell<u64>,
    unexpected: Cell<u64>,
    drops: Cell<u64>,
    published: Cell<u64>,
    refused: Cell<u64>,
    unanswered: Cell<u64>,
    errors: RefCell<std::collections::BTreeMap<String, u64>>,
    /// Messages answered non-2xx or not at all: nothing is owed for them
    /// (at most one entry per message).
    not_published: RefCell<HashSet<usize>>,
    /// Deliveries after this instant do not count.
    deadline: Cell<Option<Instant>>,
    body: RefCell<Vec<u8>>,
}

impl Peer {
    fn error(&self, key: String) {
        *self.errors.borrow_mut().entry(key).or_default() += 1;
    }

    /// An event on some subscriber's stream: the message number is the
    /// body's first field, `{"seq":K,...`.
    fn on_event(&self, frame: &Frame<'_>, at: Instant) {
        if self.deadline.get().is_some_and(|d| at > d) {
            return;
        }
        let Some(k) = sequence(&frame.data) else {
            bump(&self.unexpected);
            return;
        };
        let sent = self.sent_at.borrow().get(k).copied().flatten();
        let mut received = self.received.borrow_mut();
        match (sent, received.get_mut(k)) {
            (Some(sent), Some(count)) => {
                *count += 1;
                bump(&self.delivered);
                self.latency
                    .borrow_mut()
                    .record(at.saturating_duration_since(sent));
            }
            _ => bump(&self.unexpected),
        }
    }
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// The message number at the start of a body `{"seq":K,...`.
pub fn sequence(data: &str) -> Option<usize> {
    let digits = data.strip_prefix("{\"seq\":")?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Message `k`'s body: `{"seq":K,"pad":"xxx…"}`, exactly `size` bytes when
/// `size` leaves room for the number (else a little longer).
pub fn message_body(k: u64, size: usize, into: &mut Vec<u8>) {
    into.clear();
    into.extend_from_slice(format!("{{\"seq\":{k},\"pad\":\"").as_bytes());
    let room = size.saturating_sub(into.len() + 2);
    into.resize(into.len() + room, b'x');
    into.extend_from_slice(b"\"}");
}

/// Runs the peer load described by `args`.
pub async fn run(args: PeerArgs) -> Result<PeerReport, LoadError> {
    args.validate()?;
    let nodes = Nodes::new(&args.nodes);
    let n = nodes.len();
    let run_id = format!("pr{:08x}", rand::random::<u32>());
    let channels: Vec<String> = (0..args.channels)
        .map(|c| format!("{run_id}-{c}"))
        .collect();
    let mut listeners = vec![0u64; args.channels];
    for i in 0..args.subscribers {
        listeners[i % args.channels] += 1;
    }
    let expected = (args.rate * args.duration.as_secs_f64()).ceil() as usize;
    let peer = Rc::new(Peer {
        nodes,
        channels,
        listeners,
        sent_at: RefCell::new(vec![None; expected]),
        received: RefCell::new(vec![0; expected]),
        latency: RefCell::new(Latency::new()?),
        delivered: Cell::new(0),
        unexpected: Cell::new(0),
        drops: Cell::new(0),
        published: Cell::new(0),
        refused: Cell::new(0),
        unanswered: Cell::new(0),
        errors: RefCell::default(),
        not_published: RefCell::default(),
        deadline: Cell::new(None),
        body: RefCell::new(Vec::with_capacity(args.payload)),
        args,
    });

    // Subscribe everyone, one after the other, before the first message.
    let (stop_tx, stop) = watch::channel(false);
    let mut streams = Vec::with_capacity(peer.args.subscribers);
    for i in 0..peer.args.subscribers {
        let path = format!(
            "{}{}",
            peer.args.subscribe_path,
            peer.channels[i % peer.args.channels]
        );
        let address = host_port(&peer.args.nodes[(i + 1) % n]);
        let (socket, head_rest) = subscribe(address, &path)
            .await
            .map_err(|e| LoadError::Setup(format!("subscriber {i}: {path}: {e}")))?;
        let (peer2, stop) = (Rc::clone(&peer), stop.clone());
        streams.push(actix_web::rt::spawn(async move {
            let body = socket_body(socket, head_rest);
            let ended = pump(body, stop, |frame, at| peer2.on_event(frame, at)).await;
            if ended == StreamEnd::Closed {
                bump(&peer2.drops);
            }
        }));
    }
    tokio::time::sleep(SETTLE).await;

    let ticks_per_s = cpu::clock_ticks_per_second();
    let cpu_start = cpu::Reading::take(&peer.args.node_pids);
    let start = Instant::now();
    let schedule_end = start + peer.args.duration;
    let mut lag = Latency::new()?;
    let mut k = 0u64;
    let mut publishes = Vec::new();
    loop {
        let at = start + Duration::from_secs_f64(k as f64 / peer.args.rate);
        if at >= schedule_end || k as usize >= expected {
            break;
        }
        tokio::time::sleep_until(at).await;
        lag.record(Instant::now().saturating_duration_since(at));
        publishes.push(actix_web::rt::spawn(publish(Rc::clone(&peer), k)));
        k += 1;
        if publishes.len() >= 4096 {
            publishes.retain(|p| !p.is_finished());
        }
    }
    let end = schedule_end + peer.args.grace;
    tokio::time::sleep_until(end).await;
    peer.deadline.set(Some(end));
    let cpu_end = cpu::Reading::take(&peer.args.node_pids);
    let _ = stop_tx.send(true);
    for p in publishes {
        p.abort();
    }
    for s in streams {
        let _ = s.await;
    }

    // What was owed: each message answered 2xx, times its channel's listeners.
    let sent_at = peer.sent_at.borrow();
    let received = peer.received.borrow();
    let mut owed = 0u64;
    let mut missing = 0u64;
    let mut duplicates = 0u64;
    for (k, sent) in sent_at.iter().enumerate() {
        if sent.is_none() || peer.not_published.borrow().contains(&k) {
            continue;
        }
        let listeners = peer.listeners[channel_of(k as u64, peer.args.channels)];
        owed += listeners;
        missing += listeners.saturating_sub(u64::from(received[k]));
        duplicates += u64::from(received[k]).saturating_sub(listeners);
    }
    let delivered = peer.delivered.get();
    let used = cpu::CpuUse::between(
        &peer.args.node_pids,
        &cpu_start,
        &cpu_end,
        ticks_per_s,
        delivered,
    );
    let node_cpu: Option<f64> = if used.nodes.is_empty() {
        None
    } else {
        used.nodes.iter().copied().sum()
    };
    let per_event = |s: Option<f64>| {
        s.filter(|_| delivered > 0)
            .map(|s| (s * 1e6 / delivered as f64 * 10.0).round() / 10.0)
    };
    let report = PeerReport {
        rate: peer.args.rate,
        subscribers: peer.args.subscribers,
        channels: peer.args.channels,
        payload: peer.args.payload,
        sent: k,
        published: peer.published.get(),
        refused: peer.refused.get(),
        unanswered: peer.unanswered.get(),
        expected_deliveries: owed,
        delivered,
        missing,
        unexpected: peer.unexpected.get() + duplicates,
        stream_drops: peer.drops.get(),
        latency: peer.latency.borrow().quantiles(),
        schedule_lag: lag.quantiles(),
        node_cpu_s: node_cpu,
        generator_cpu_s: used.generator,
        node_us_per_event: per_event(node_cpu),
        generator_us_per_event: per_event(used.generator),
        errors: peer.errors.borrow().clone(),
    };
    if let Some(path) = &peer.args.report {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| LoadError::Setup(format!("report: {e}")))?;
        std::fs::write(path, json)?;
    }
    Ok(report)
}

/// `host:port` of a base URL `http://host:port[/]`.
fn host_port(url: &str) -> &str {
    url.strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/')
}

/// Largest response head a relay may send before its stream.
const MAX_HEAD: usize = 16 * 1024;

/// Opens an EventSource stream over a plain socket: nchan answers an
/// HTTP/1.1 request keep-alive with neither a length nor chunks, which awc
/// reads as an empty body. Asked as HTTP/1.0, the answer is read until the
/// connection closes. Returns the socket and the bytes after the head.
async fn subscribe(address: &str, path: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let mut socket = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = socket.set_nodelay(true);
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = socket
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before its head".into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = head.split(|b| *b == b' ').nth(1).unwrap_or_default();
            if status != b"200" {
                return Err(format!("HTTP {}", String::from_utf8_lossy(status)));
            }
            return Ok((socket, head.split_off(end + 4)));
        }
        if head.len() > MAX_HEAD {
            return Err("response head too large".into());
        }
    }
}

/// A subscriber's socket as a stream body for [`pump`]: first the bytes
/// that came with the head, then whatever arrives until the close.
fn socket_body(socket: TcpStream, head_rest: Vec<u8>) -> Body {
    let first =
        futures_util::stream::iter((!head_rest.is_empty()).then(|| Ok(Bytes::from(head_rest))));
    let rest = futures_util::stream::unfold(
        (socket, vec![0u8; 32 * 1024]),
        |(mut socket, mut buf)| async move {
            match socket.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok(Bytes::copy_from_slice(&buf[..n])), (socket, buf))),
                Err(e) => Some((Err(PayloadError::Io(e)), (socket, buf))),
            }
        },
    );
    Box::pin(first.chain(rest))
}

/// Message `k`'s channel: spread evenly, in a fixed order, so what is owed
/// can be recomputed from `k` alone.
fn channel_of(k: u64, channels: usize) -> usize {
    // A multiplicative hash of k, so consecutive messages go to different
    // channels without a random generator's state.
    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % channels
}

async fn publish(peer: Rc<Peer>, k: u64) {
    let c = channel_of(k, peer.args.channels);
    let path = format!("{}{}", peer.args.publish_path, peer.channels[c]);
    let body = {
        let mut body = peer.body.borrow_mut();
        message_body(k, peer.args.payload, &mut body);
        Bytes::copy_from_slice(&body)
    };
    let node = k as usize % peer.nodes.len();
    peer.sent_at.borrow_mut()[k as usize] = Some(Instant::now());
    match peer.nodes.post_bytes(node, &path, body).await {
        Ok(status) if (200..300).contains(&status) => bump(&peer.published),
        Ok(status) => {
            bump(&peer.refused);
            peer.not_published.borrow_mut().insert(k as usize);
            peer.error(format!("publish {status}"));
        }
        Err(e) => {
            bump(&peer.unanswered);
            peer.not_published.borrow_mut().insert(k as usize);
            peer.error(format!("publish: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_body_has_its_size_and_its_number_first() {
        let mut body = Vec::new();
        message_body(1234, 1024, &mut body);
        assert_eq!(body.len(), 1024);
        let text = std::str::from_utf8(&body).expect("ascii");
        assert_eq!(sequence(text), Some(1234));
        assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        // Too small for the number: still whole JSON, a little longer.
        message_body(7, 4, &mut body);
        assert_eq!(
            std::str::from_utf8(&body).ok(),
            Some("{\"seq\":7,\"pad\":\"\"}")
        );
        assert_eq!(sequence("nothing"), None);
        assert_eq!(sequence("{\"seq\":x}"), None);
    }

    #[test]
    fn messages_spread_over_every_channel() {
        let mut per = [0u32; 10];
        for k in 0..10_000 {
            per[channel_of(k, 10)] += 1;
        }
        assert!(per.iter().all(|n| (800..1200).contains(n)), "{per:?}");
    }
}
