//! `collabd` (= `collabd serve`): runs a node. `collabd load`: the load
//! generator (`collabd load --help`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use collabd::settings::{BackplaneKind, Settings};
use collabd::startup::Application;
use collabd_load::peer::PeerArgs;
use collabd_load::{LoadArgs, LoadError};

/// jemalloc rather than the system allocator: about 2 KiB less resident
/// memory per connected agent (README, "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status of a load run that counted an invariant break, so CI fails.
const EXIT_INVARIANT_BROKEN: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "collabd",
    version,
    about = "Session collaboration for remote support: invite agents or portals into a live session.",
    after_help = "Configuration: built-in defaults < config/default.toml < --config FILE < \
                  environment COLLABD__SECTION__KEY (e.g. COLLABD__HTTP__LISTEN).",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `collabd --config FILE` is `collabd serve --config FILE`.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a node (the default).
    Serve(ServeArgs),
    /// Drives running nodes and checks every outcome (see `collabd load --help`).
    #[command(name = "load")]
    Load(Box<LoadArgs>),
    /// Drives nginx + nchan with the same shape, for comparison (benches/peer).
    #[command(name = "peer-load")]
    PeerLoad(Box<PeerArgs>),
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// A configuration file (TOML) layered over config/default.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serve_args = match cli.command {
        Some(Command::Load(args)) => return load(*args),
        Some(Command::PeerLoad(args)) => return peer_load(*args),
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let settings = match Settings::load(serve_args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("collabd: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    collabd::telemetry::init(&settings.log);
    match actix_web::rt::System::new().block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "collabd stopped with an error");
            ExitCode::FAILURE
        }
    }
}

fn load(args: LoadArgs) -> ExitCode {
    match actix_web::rt::System::new().block_on(collabd_load::run(args)) {
        Ok(report) => {
            println!("{}", report.table());
            if report.invariant_breaks() > 0 {
                eprintln!(
                    "collabd load: {} invariant break(s) counted",
                    report.invariant_breaks()
                );
                ExitCode::from(EXIT_INVARIANT_BROKEN)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e @ LoadError::Arguments(_)) => {
            eprintln!("collabd load: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("collabd load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn peer_load(args: PeerArgs) -> ExitCode {
    match actix_web::rt::System::new().block_on(collabd_load::peer::run(args)) {
        Ok(report) => {
            println!("{}", report.line());
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INVARIANT_BROKEN)
            }
        }
        Err(e @ LoadError::Arguments(_)) => {
            eprintln!("collabd peer-load: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("collabd peer-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> std::io::Result<()> {
    let redis_url = match settings.backplane.kind {
        BackplaneKind::Memory => "-".to_owned(),
        BackplaneKind::Redis => settings.redis_url_for_logs(),
        BackplaneKind::RedisCluster => settings.redis_urls_for_logs(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node = %settings.node.id,
        backplane = ?settings.backplane.kind,
        redis_url = %redis_url,
        tls_ca_file = %settings.backplane.tls_ca_file,
        namespace = %settings.backplane.namespace,
        config_files = ?settings.sources,
        metrics_protected = !settings.auth.metrics_token.is_empty(),
        "starting collabd"
    );
    for why in settings.unsafe_secrets() {
        // Only reachable on loopback with the memory backplane (anything
        // else refused to start): loud, because it is one setting away
        // from a node anyone can forge tokens for.
        tracing::warn!(
            "UNSAFE SECRET: {why}; allowed only because this node listens on loopback \
             with the memory backplane. Any other setting refuses to start."
        );
    }
    let app = Application::build(settings).await?;
    let handle = app.handle();
    actix_web::rt::spawn(async move {
        wait_for_signal().await;
        handle.stop().await;
    });
    app.run_until_stopped().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
