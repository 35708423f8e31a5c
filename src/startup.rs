//! Building and running a node: `Application::build(settings)` binds the
//! listener (port 0 picks a free one) and wires backplane, actors and HTTP.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::actors::Node;
use crate::actors::session::{Execute, Want};
use crate::app::Error as AppError;
use crate::app::tokens::Tokens;
use crate::backplane::memory::MemoryBackplane;
use crate::backplane::redis::RedisBackplane;
use crate::backplane::{Backplane, Deadline, Faded};
use crate::domain::Command;
use crate::domain::session::{CheckIdle, Expire, Timer};
use crate::http::error::problem_for_plain_errors;
use crate::http::{AppState, configure};
use crate::settings::{BackplaneKind, Settings};

/// A node, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    node: Arc<Node>,
}

impl Application {
    /// Binds `http.listen`, starts the actors' arbiter and the timer worker.
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        // Shared actors live on one arbiter made before the server: the
        // server's factory runs once per worker.
        let arbiter = Arbiter::new();
        let backplane: Arc<dyn Backplane> = match settings.backplane.kind {
            BackplaneKind::Memory => Arc::new(MemoryBackplane::new()),
            BackplaneKind::Redis | BackplaneKind::RedisCluster => {
                // The Redis connection, its pub/sub and its timer loops run
                // on the actors' thread: the actors' calls and the events
                // they receive do not cross threads.
                let (tx, rx) = tokio::sync::oneshot::channel();
                let config = settings.backplane.clone();
                arbiter.spawn(async move {
                    let _ = tx.send(RedisBackplane::start(&config));
                });
                rx.await
                    .map_err(std::io::Error::other)?
                    .map_err(std::io::Error::other)?
            }
        };
        Self::assemble(settings, backplane, arbiter)
    }

    /// Like [`Application::build`], on a given backplane.
    pub async fn build_with(
        settings: Settings,
        backplane: Arc<dyn Backplane>,
    ) -> std::io::Result<Self> {
        Self::assemble(settings, backplane, Arbiter::new())
    }

    fn assemble(
        settings: Settings,
        backplane: Arc<dyn Backplane>,
        arbiter: Arbiter,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(&settings.http.listen)?;
        let port = listener.local_addr()?.port();
        let node = Node::new(backplane, settings.clone(), arbiter.handle());
        let timers = node.clone();
        arbiter.spawn(async move {
            if let Some(due) = timers.backplane.take_due() {
                expire_due(timers, due).await;
            }
        });
        arbiter.spawn(resync_on_reconnect(node.clone()));
        if let Some(faded) = node.backplane.take_faded() {
            arbiter.spawn(withdraw_faded(node.clone(), faded));
        }
        let state = web::Data::new(AppState {
            node: node.clone(),
            tokens: Tokens::new(&settings.auth.secret),
        });
        let max_body = settings.http.max_body_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(middleware::from_fn(crate::http::durable::acknowledge))
                .wrap(middleware::from_fn(crate::http::guard::read_body))
                .wrap(middleware::ErrorHandlers::new().default_handler(problem_for_plain_errors))
                .wrap(middleware::from_fn(crate::http::observe::observe))
                .configure(configure(max_body))
        })
        .listen(listener)?
        // A client that does not finish its headers in time is dropped;
        // its body has the same time again (`guard::read_body`).
        .client_request_timeout(Duration::from_secs(settings.http.request_timeout_secs))
        // Event frames are small and must leave at once: Nagle's algorithm
        // with delayed ACKs would hold them back by up to ~40 ms.
        .tcp_nodelay(true)
        // A client that closed its side is gone: an event stream must end
        // (and free its outbox and its token's place) at once, not at the
        // next write that fails.
        .h1_allow_half_closed(false)
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_timeout_secs);
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        let server = server.run();
        tracing::info!(node = %settings.node.id, "listening on {}", display_addr(&settings.http.listen, port));
        Ok(Self { port, server, node })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop it gracefully.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            server: self.server.handle(),
            node: self.node.clone(),
        }
    }

    /// Serves until stopped (by a [`ShutdownHandle`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Stops a node: closes every event stream cleanly, then the server.
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    node: Arc<Node>,
}

impl ShutdownHandle {
    /// Graceful stop: streams end, requests in flight finish.
    pub async fn stop(&self) {
        tracing::info!("shutting down: closing event streams");
        self.node.close_streams();
        // Let the actors drop their outboxes before the server waits on connections.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.server.stop(true).await;
    }
}

fn display_addr(listen: &str, port: u16) -> String {
    match listen.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => listen.to_owned(),
    }
}

/// Due timers handled at once.
const TIMER_CONCURRENCY: usize = 16;
/// How many accounts' faded agents are handled side by side.
const FADE_CONCURRENCY: usize = 4;
/// How long a failed timer waits before it is tried again.
const TIMER_RETRY: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// Handles timers that fell due: invitation expiries and idle sessions.
/// The session rules ignore a timer whose moment passed (an invitation
/// accepted meanwhile, a session that became busy again). A failed timer
/// is tried again a second later: an invitation must not stay open past
/// its time because Redis or a session was busy once.
async fn expire_due(node: Arc<Node>, due: mpsc::Receiver<Deadline>) {
    // Timers of different sessions are handled side by side (each session
    // actor still takes its commands one at a time).
    ReceiverStream::new(due)
        .for_each_concurrent(TIMER_CONCURRENCY, |deadline| {
            let node = node.clone();
            async move { handle_due(&node, &deadline).await }
        })
        .await;
}

async fn handle_due(node: &Arc<Node>, deadline: &Deadline) {
    node.metrics.timer_handled(deadline.at);
    {
        let handled = match fire(node, deadline).await {
            Ok(()) => true,
            // Nothing to do (no such session any more): done.
            Err(e @ (AppError::Domain(_) | AppError::NotFound(_))) => {
                tracing::debug!(error = %e, session = %deadline.session, "timer refused");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, session = %deadline.session, "timer failed; retrying");
                let at = chrono::Utc::now() + TIMER_RETRY;
                node.backplane
                    .schedule(&deadline.account, &deadline.session, &deadline.timer, at)
                    .await
                    .is_ok()
            }
        };
        // Unless the retry could not even be armed, this delivery is done
        // (otherwise the backplane delivers it again after its lease).
        if handled && let Err(e) = node.backplane.complete(deadline).await {
            tracing::warn!(error = %e, "could not complete a timer; it will fire again (harmless)");
        }
    }
}

async fn fire(node: &Arc<Node>, deadline: &Deadline) -> Result<(), AppError> {
    let Some(account) = node.backplane.account(&deadline.account).await? else {
        return Ok(());
    };
    let command = match &deadline.timer {
        Timer::Expiry(invitation) => Command::from(Expire {
            invitation: invitation.clone(),
        }),
        Timer::Idle => Command::from(CheckIdle),
        Timer::Escalate(invitation) => {
            crate::app::sessions::escalation_command(node, &account, &deadline.session, invitation)
                .await?
        }
    };
    let execute = Execute {
        policy: account.policy,
        command,
        guard: None,
        want: Want::default(),
    };
    node.ask_session(&deadline.account, &deadline.session, execute)
        .await??;
    Ok(())
}

/// The agents of a dead node that faded: their alerts are withdrawn, a
/// few accounts side by side. A failure is only logged: the alerts still
/// expire by their timers.
async fn withdraw_faded(node: Arc<Node>, faded: mpsc::Receiver<Faded>) {
    ReceiverStream::new(faded)
        .for_each_concurrent(FADE_CONCURRENCY, |faded| {
            let node = node.clone();
            async move {
                node.metrics.agents_faded.inc_by(faded.agents.len() as u64);
                if let Err(e) = crate::app::agents::fade(&node, &faded).await {
                    tracing::warn!(error = %e, account = %faded.account, "faded agents' alerts not all withdrawn");
                }
            }
        })
        .await;
}

/// After the backplane's fan-out was interrupted and restored, every local
/// stream re-reads the truth (messages published during the gap are lost).
async fn resync_on_reconnect(node: Arc<Node>) {
    let mut resyncs = node.backplane.resyncs();
    let mut first = true;
    while resyncs.changed().await.is_ok() {
        // The first connection is not a reconnection: nothing was missed.
        if std::mem::take(&mut first) && *resyncs.borrow() == 1 {
            continue;
        }
        tracing::info!("backplane fan-out restored; resyncing local streams");
        crate::actors::Metrics::inc(&node.metrics.pubsub_reconnects);
        node.resync_streams();
    }
}
