//! The jobdeck server: configuration, database, runner, HTTP, graceful shutdown.

use std::process::ExitCode;

// The runner allocates many small values per item (JSON, strings): mimalloc keeps that
// cheap and memory flat where the system allocator fragments.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use jobdeck::server::{self, config::Config};
use leptos::config::LeptosOptions;

#[tokio::main]
async fn main() -> ExitCode {
    // `jobdeck precompress DIR`: a build step of scripts/build.sh, which makes a release
    // without cargo-leptos.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, dir] = args.as_slice() {
        if command == "precompress" {
            return match server::assets::precompress(std::path::Path::new(dir)) {
                Ok(n) => {
                    println!("precompressed {n} files under {dir}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("jobdeck precompress {dir}: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    let mode = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => Mode::Serve { runner: true },
        ["serve", "--no-runner"] => Mode::Serve { runner: false },
        ["worker"] => Mode::Worker,
        _ => {
            eprintln!(
                "usage: jobdeck [serve [--no-runner] | worker | precompress DIR]\n  \
                 serve        the UI, the REST API and a runner (the default)\n  \
                 --no-runner  the UI and the REST API only (PostgreSQL)\n  \
                 worker       a runner only, with a health endpoint at LEPTOS_SITE_ADDR (PostgreSQL)"
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,jobdeck=info,hyper=warn,reqwest=warn".into()),
        )
        .init();
    match run(mode).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("jobdeck cannot start: {e}");
            eprintln!("jobdeck cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What this process is (SPEC section 10).
#[derive(Clone, Copy)]
enum Mode {
    Serve { runner: bool },
    Worker,
}

async fn run(mode: Mode) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::load()?;
    // Every connection to a researched site, to a browser and to the database is an
    // open file; many systems start a process with a soft limit of 1,024 and allow far
    // more. Take what the hard limit allows, as servers commonly do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(open_files = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    if config.server.postgres_url().is_none() && !matches!(mode, Mode::Serve { runner: true }) {
        return Err("`jobdeck worker` and `jobdeck serve --no-runner` need JOBDECK_DATABASE_URL=postgres://…; \
                    on the SQLite file one `jobdeck serve` runs everything"
            .into());
    }
    let addr: std::net::SocketAddr = config
        .server
        .site_addr
        .parse()
        .map_err(|_| format!("site address `{}` is not host:port", config.server.site_addr))?;
    if let Some(refusal) = config.server.open_refusal(addr) {
        return Err(refusal.into());
    }
    if let Some(refusal) = server::access::token_refusal(&config.server.token) {
        return Err(refusal.into());
    }
    if config.server.token.trim().is_empty() {
        if addr.ip().is_loopback() {
            tracing::info!("no JOBDECK_TOKEN: open to anyone on this machine (loopback only)");
        } else {
            tracing::warn!("no JOBDECK_TOKEN and JOBDECK_ALLOW_OPEN=1: open to anyone who can reach {addr}");
        }
    } else {
        tracing::info!("JOBDECK_TOKEN is set: the API needs the bearer token, the UI a sign-in");
    }
    let output_name = std::env::var("LEPTOS_OUTPUT_NAME").unwrap_or_else(|_| "jobdeck".into());
    let pkg_dir = std::env::var("LEPTOS_SITE_PKG_DIR").unwrap_or_else(|_| "pkg".into());
    // Where a list of the front end's hashed names goes when none is beside the binary.
    let hash_list = config.server.db.with_extension("front-hashes.txt");
    let leptos_options = LeptosOptions::builder()
        .output_name(output_name.clone())
        .site_root(config.server.site_root.clone())
        .site_pkg_dir(pkg_dir.clone())
        .site_addr(addr)
        .env(match std::env::var("LEPTOS_ENV").as_deref() {
            Ok("PROD") | Ok("prod") => leptos::config::Env::PROD,
            _ => leptos::config::Env::DEV,
        })
        .reload_port(std::env::var("LEPTOS_RELOAD_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3001))
        .build();
    let mut state = server::open_state(config, leptos_options).await?;
    if matches!(mode, Mode::Worker) {
        return run_worker(state, addr).await;
    }
    // Only now, holding the database's lock, may this server write beside it.
    let hashing = server::assets::hashing(&state.config.server.site_root, &pkg_dir, &output_name, &hash_list);
    state.leptos_options.hash_files = hashing.hashed;
    state.leptos_options.hash_file = hashing.hash_file.into();
    let service = state.service.clone();
    if matches!(mode, Mode::Serve { runner: false }) {
        service.runner().start_without_jobs();
    } else {
        service.runner().start().await?;
    }
    let grace = state.config.runner.shutdown_grace();
    let app = server::app(state);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("jobdeck is serving on http://{addr}");
    let draining = std::sync::Arc::new(tokio::sync::Notify::new());
    let serve = server::http::serve(listener, app, {
        let draining = draining.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight items");
            service.runner().shutdown().await;
            draining.notify_one();
        }
    });
    // Open connections (a long export download, say) get the grace period to finish
    // once the runner has stopped; then the process exits without them.
    tokio::select! {
        served = serve => served?,
        () = async {
            draining.notified().await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("connections still open after the grace period were closed"),
    }
    tracing::info!("jobdeck stopped");
    Ok(())
}

/// `jobdeck worker`: the runner, and `GET /health` at `addr` for whoever supervises it.
async fn run_worker(
    state: server::state::AppState,
    addr: std::net::SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runner = state.service.runner().clone();
    runner.start().await?;
    let health = axum::Router::new()
        .route("/health", axum::routing::get(|| async { axum::Json(serde_json::json!({"ok": true})) }));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("jobdeck worker is running; health at http://{addr}/health");
    server::http::serve(listener, health, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight items");
        runner.shutdown().await;
    })
    .await?;
    tracing::info!("jobdeck worker stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
