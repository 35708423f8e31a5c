//! `collabd` (= `collabd serve`): runs a node. `collabd load`: the load
//! generator (`collabd load --help`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use collabd::load::{LoadArgs, LoadError};
use collabd::settings::Settings;
use collabd::startup::Application;

const USAGE: &str = "usage: collabd [serve] [--config FILE]\n\
                     \x20      collabd load --nodes URL[,URL...] --admin-token TOKEN [...] (see collabd load --help)\n\
                     \n\
                     Runs a collabd node. Configuration: built-in defaults < config/default.toml\n\
                     < --config FILE < environment COLLABD__SECTION__KEY (e.g. COLLABD__HTTP__LISTEN).";

/// jemalloc rather than the system allocator: about 2 KiB less resident
/// memory per connected agent (README, "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status of a load run that counted an invariant break, so CI fails.
const EXIT_INVARIANT_BROKEN: u8 = 3;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("load") {
        // clap prints --help and argument errors itself (exit 0 / 2).
        let args = LoadArgs::parse_from(
            std::iter::once("collabd load".to_owned()).chain(std::env::args().skip(2)),
        );
        return load(args);
    }
    let mut args = std::env::args().skip(1).peekable();
    let mut config: Option<PathBuf> = None;
    if args.peek().map(String::as_str) == Some("serve") {
        args.next();
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(path) => config = Some(path.into()),
                None => return usage_error("--config needs a file"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    let settings = match Settings::load(config.as_deref()) {
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
    match actix_web::rt::System::new().block_on(collabd::load::run(args)) {
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

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("collabd: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

async fn serve(settings: Settings) -> std::io::Result<()> {
    if settings.auth.admin_token == "dev-admin-token" {
        tracing::warn!(
            "auth.admin_token is the development default; set COLLABD__AUTH__ADMIN_TOKEN"
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
