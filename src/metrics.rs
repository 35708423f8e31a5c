//! What a node measures, exported on `/metrics` in the OpenMetrics text
//! format through `prometheus-client` (one registry per node, no globals
//! but the Redis command timer, which the backplane records before a node
//! exists).

use std::sync::LazyLock;
use std::time::Duration;

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How an accept ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// The agent joined.
    Won,
    /// Another agent accepted first.
    Taken,
    /// The invitation was closed (expired, cancelled, declined).
    Expired,
    /// Refused by a rule (policy, membership, limits, not a recipient).
    Refused,
}

impl EncodeLabelValue for AcceptOutcome {
    fn encode(&self, w: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        w.write_str(match self {
            Self::Won => "won",
            Self::Taken => "taken",
            Self::Expired => "expired",
            Self::Refused => "refused",
        })
    }
}

/// The `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// How it ended.
    pub outcome: AcceptOutcome,
}

/// Who holds an event stream.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Role {
    /// An agent's stream.
    Agent,
    /// A customer's stream.
    Customer,
}

impl EncodeLabelValue for Role {
    fn encode(&self, w: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        w.write_str(match self {
            Self::Agent => "agent",
            Self::Customer => "customer",
        })
    }
}

/// The `role` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// Whose stream.
    pub role: Role,
}

/// A request's route (its pattern, e.g. `/v1/sessions/{session}`), method
/// and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern, or `unmatched`.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The status answered.
    pub status: u16,
}

/// A request's route and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern, or `unmatched`.
    pub route: String,
    /// The HTTP method.
    pub method: String,
}

/// A kind of actor, of backplane operation, …
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind.
    pub kind: String,
}

/// The `version` label of `collabd_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.25 ms to ≈4 s, doubling: request, delivery and Redis latencies.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Redis command round trips, by every Redis backplane of the process.
pub static REDIS_SECONDS: LazyLock<Histogram> = LazyLock::new(latency);

/// Records one Redis round trip.
pub fn redis_round_trip(took: Duration) {
    REDIS_SECONDS.observe(took.as_secs_f64());
}

/// Redis Cluster clients replaced because they had wedged, by every Redis
/// backplane of the process.
pub static REDIS_CLIENTS_REPLACED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Counts one wedged Redis Cluster client replaced.
pub fn redis_client_replaced() {
    REDIS_CLIENTS_REPLACED.inc();
}

/// Everything a node counts and times.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions created on this node.
    pub sessions_created: Counter,
    /// Invitations sent from this node.
    pub invitations_sent: Counter,
    /// Accepts by outcome.
    pub accepts: Family<OutcomeLabel, Counter>,
    /// Commits retried after a version conflict.
    pub commit_conflicts: Counter,
    /// Event streams opened.
    pub streams_opened: Counter,
    /// Clients dropped because their outbox was full.
    pub slow_clients_dropped: Counter,
    /// Events written to client outboxes.
    pub events_delivered: Counter,
    /// Events viewed and serialized (once per node per event and viewer kind).
    pub events_prepared: Counter,
    /// Stream requests refused because the token had too many open.
    pub streams_refused: Counter,
    /// Session states read from the backplane (cache misses and reloads).
    pub session_loads: Counter,
    /// Requests refused because the node was at capacity.
    pub requests_shed: Counter,
    /// Requests refused because their token's rate was used up.
    pub requests_rate_limited: Counter,
    /// Changes answered 503 because replicas did not confirm them in time.
    pub changes_unconfirmed: Counter,
    /// Creating requests answered from their `Idempotency-Key` record.
    pub idempotent_replays: Counter,
    /// Requests answered, by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer, by route and method.
    pub request_seconds: Histograms<RouteLabels>,
    /// From an invitation's creation to its offer in this node's streams.
    pub invitation_delivery_seconds: Histogram,
    /// Event streams open on this node, by role.
    pub open_streams: Family<RoleLabel, Gauge>,
    /// The backplane's fan-out was lost and restored.
    pub pubsub_reconnects: Counter,
    /// Agents faded because the node they streamed from died (counted by
    /// the node that reaped it).
    pub agents_faded: Counter,
    /// How late a timer was handled after it fell due.
    pub timer_lag_seconds: Histogram,
    /// Requests being handled now (set when scraped).
    pub requests_in_flight: Gauge,
    /// Actors running, by kind (set when scraped).
    pub live_actors: Family<KindLabel, Gauge>,
    /// The allocator's figures, by kind (set when scraped; see [`heap`]).
    pub heap_bytes: Family<KindLabel, Gauge>,
}

/// jemalloc's own figures, in bytes: `allocated` (what live allocations
/// hold), `active` (pages holding them), `resident` (pages the allocator
/// keeps in memory, the part of RSS that is the heap) and `retained` (pages
/// given back to the system but kept mapped). Resident well above allocated
/// is the allocator holding freed pages, not live memory. Near 0 where the
/// binary's allocator is not jemalloc (the test harnesses).
pub fn heap() -> [(&'static str, u64); 4] {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The figures are cached until the epoch advances.
    let _ = epoch::advance();
    let read = |r: tikv_jemalloc_ctl::Result<usize>| r.map_or(0, |v| v as u64);
    [
        ("allocated", read(stats::allocated::read())),
        ("active", read(stats::active::read())),
        ("resident", read(stats::resident::read())),
        ("retained", read(stats::retained::read())),
    ]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let sessions_created = counter(
            &mut registry,
            "collabd_sessions_created",
            "Sessions created on this node",
        );
        let invitations_sent = counter(
            &mut registry,
            "collabd_invitations_sent",
            "Invitations sent from this node",
        );
        let commit_conflicts = counter(
            &mut registry,
            "collabd_commit_conflicts",
            "Session commits retried after a version conflict",
        );
        let streams_opened = counter(
            &mut registry,
            "collabd_streams_opened",
            "Event streams opened",
        );
        let slow_clients_dropped = counter(
            &mut registry,
            "collabd_slow_clients_dropped",
            "Streams dropped because the client fell behind",
        );
        let events_delivered = counter(
            &mut registry,
            "collabd_events_delivered",
            "Events written to client outboxes",
        );
        let events_prepared = counter(
            &mut registry,
            "collabd_events_prepared",
            "Events viewed and serialized (once per node per event and kind of viewer)",
        );
        let streams_refused = counter(
            &mut registry,
            "collabd_streams_refused",
            "Event streams refused: the token had as many open as it may",
        );
        let session_loads = counter(
            &mut registry,
            "collabd_session_loads",
            "Session states read from the backplane (not served from the node's cache)",
        );
        let requests_shed = counter(
            &mut registry,
            "collabd_requests_shed",
            "Requests refused with 503 because the node was at capacity",
        );
        let requests_rate_limited = counter(
            &mut registry,
            "collabd_requests_rate_limited",
            "Requests refused with 429 because their token's rate was used up",
        );
        let changes_unconfirmed = counter(
            &mut registry,
            "collabd_changes_unconfirmed",
            "Changes answered 503 because backplane.wait_replicas replicas did not confirm them in time",
        );
        let idempotent_replays = counter(
            &mut registry,
            "collabd_idempotent_replays",
            "Creating requests answered with the first result of their Idempotency-Key",
        );
        let pubsub_reconnects = counter(
            &mut registry,
            "collabd_pubsub_reconnects",
            "Times the backplane's fan-out was lost and restored (streams then resync)",
        );
        let agents_faded = counter(
            &mut registry,
            "collabd_agents_faded",
            "Agents faded because the node they streamed from died (their alerts withdrawn)",
        );
        let accepts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "collabd_accepts",
            "Accepts of invitations by outcome: won, taken (another agent was first), expired (closed), refused (a rule)",
            accepts.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "collabd_http_requests",
            "Requests answered, by route pattern, method and status",
            requests.clone(),
        );
        let request_seconds: Histograms<RouteLabels> = Family::new_with_constructor(latency);
        registry.register(
            "collabd_http_request_duration_seconds",
            "Time to answer a request (an event stream: until it started), by route and method",
            request_seconds.clone(),
        );
        let invitation_delivery_seconds = latency();
        registry.register(
            "collabd_invitation_delivery_seconds",
            "From an invitation's creation to its offer reaching this node's streams",
            invitation_delivery_seconds.clone(),
        );
        let timer_lag_seconds = latency();
        registry.register(
            "collabd_timer_lag_seconds",
            "How late an expiry or idle timer was handled after it fell due",
            timer_lag_seconds.clone(),
        );
        registry.register(
            "collabd_redis_command_duration_seconds",
            "Round trips to Redis (commands, scripts, pipelines) of this process",
            REDIS_SECONDS.clone(),
        );
        registry.register(
            "collabd_redis_clients_replaced",
            "Redis Cluster clients this process replaced because they had wedged (commands timing out, none answered for 5 s)",
            REDIS_CLIENTS_REPLACED.clone(),
        );
        let open_streams = Family::<RoleLabel, Gauge>::default();
        registry.register(
            "collabd_open_streams",
            "Event streams open on this node, by role",
            open_streams.clone(),
        );
        for role in [Role::Agent, Role::Customer] {
            let _ = open_streams.get_or_create(&RoleLabel { role });
        }
        let requests_in_flight = Gauge::default();
        registry.register(
            "collabd_requests_in_flight",
            "Requests being handled on this node",
            requests_in_flight.clone(),
        );
        let live_actors = Family::<KindLabel, Gauge>::default();
        for kind in ["session", "agent", "portal"] {
            let _ = live_actors.get_or_create(&KindLabel {
                kind: kind.to_owned(),
            });
        }
        registry.register(
            "collabd_live_actors",
            "Actors running on this node, by kind",
            live_actors.clone(),
        );
        let heap_bytes = Family::<KindLabel, Gauge>::default();
        registry.register(
            "collabd_heap_bytes",
            "The allocator's memory, by kind: allocated (live allocations), active, resident (the heap's part of RSS), retained",
            heap_bytes.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("collabd_build_info", "This build's version", build);
        for outcome in [
            AcceptOutcome::Won,
            AcceptOutcome::Taken,
            AcceptOutcome::Expired,
            AcceptOutcome::Refused,
        ] {
            let _ = accepts.get_or_create(&OutcomeLabel { outcome });
        }
        Self {
            registry,
            sessions_created,
            invitations_sent,
            accepts,
            commit_conflicts,
            streams_opened,
            slow_clients_dropped,
            events_delivered,
            events_prepared,
            streams_refused,
            session_loads,
            requests_shed,
            requests_rate_limited,
            changes_unconfirmed,
            idempotent_replays,
            requests,
            request_seconds,
            invitation_delivery_seconds,
            open_streams,
            pubsub_reconnects,
            agents_faded,
            timer_lag_seconds,
            requests_in_flight,
            live_actors,
            heap_bytes,
        }
    }

    /// Adds one to a counter.
    pub fn inc(counter: &Counter) {
        counter.inc();
    }

    /// Counts an accept's outcome.
    pub fn accepted(&self, outcome: AcceptOutcome) {
        self.accepts.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts one fan-out to clients: events queued and slow clients dropped.
    pub fn record_delivery(&self, delivered: usize, slow: usize) {
        self.events_delivered.inc_by(delivered as u64);
        self.slow_clients_dropped.inc_by(slow as u64);
    }

    /// An offer created at `created_at` reached this node's streams now.
    pub fn offer_delivered(&self, created_at: chrono::DateTime<chrono::Utc>) {
        let took = (chrono::Utc::now() - created_at)
            .num_microseconds()
            .unwrap_or(0);
        self.invitation_delivery_seconds
            .observe(took.max(0) as f64 / 1_000_000.0);
    }

    /// A timer due at `due` is being handled now.
    pub fn timer_handled(&self, due: chrono::DateTime<chrono::Utc>) {
        let late = (chrono::Utc::now() - due).num_microseconds().unwrap_or(0);
        self.timer_lag_seconds
            .observe(late.max(0) as f64 / 1_000_000.0);
    }

    /// The gauge of open streams of `role`.
    pub fn streams_of(&self, role: Role) -> Gauge {
        self.open_streams.get_or_create(&RoleLabel { role }).clone()
    }

    /// Counts and times one answered request.
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Everything, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_type_and_counters_end_in_total() {
        let m = Metrics::new();
        Metrics::inc(&m.sessions_created);
        m.accepted(AcceptOutcome::Taken);
        m.request("/v1/sessions", "POST", 201, Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("# TYPE collabd_live_actors gauge"), "{text}");
        assert!(text.contains("# HELP collabd_live_actors "), "{text}");
        assert!(text.contains("collabd_sessions_created_total 1"), "{text}");
        assert!(
            text.contains("collabd_accepts_total{outcome=\"taken\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("collabd_http_requests_total{route=\"/v1/sessions\",method=\"POST\",status=\"201\"} 1"),
            "{text}"
        );
        assert!(text.contains("collabd_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
