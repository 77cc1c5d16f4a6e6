//! Everything that runs only on the server.

pub mod access;
pub mod assets;
pub mod config;
pub mod error;
pub mod http;
pub mod import;
pub mod notify;
pub mod origin;
pub mod outcomes;
pub mod policy;
pub mod rest;
pub mod rows;
pub mod runner;
pub mod service;
pub mod state;
pub mod steps;
pub mod store;
pub mod upload;

use std::sync::OnceLock;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use leptos_axum::{file_and_error_handler_with_context, generate_route_list, AxumRouteListing, LeptosRoutes};
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

use crate::app::{shell, App};
use state::AppState;

/// The whole HTTP surface: REST API, server functions, pages and static files.
/// Public so tests can drive it in-process.
pub fn app(state: AppState) -> Router {
    let routes = page_routes();
    let server_fns = policy::ServerFnPaths::collect();
    let limits =
        upload::BodyLimits { max_upload_bytes: state.config.server.max_upload_bytes, server_fns: server_fns.clone() };
    let pkg = assets::pkg_service(&state.leptos_options.site_root, &state.leptos_options.site_pkg_dir);
    let hashed = state.leptos_options.hash_files;
    let guard = access::Guard {
        access: access::Access::new(&state.config.server.token),
        service: state.service.clone(),
        pkg_dir: state.leptos_options.site_pkg_dir.to_string(),
    };
    let hosts = origin::Hosts::new(
        &state.config.server.site_addr,
        &state.config.notify.public_url,
        &state.config.server.allowed_hosts,
    );
    let sign_in = Router::new()
        .route("/signin", axum::routing::post(access::sign_in))
        .route("/signout", axum::routing::post(access::sign_out))
        .with_state(guard.clone());
    Router::new()
        .merge(rest::routes())
        .merge(sign_in)
        .nest_service(
            &format!("/{}", state.leptos_options.site_pkg_dir),
            tower::ServiceBuilder::new()
                .layer(from_fn(move |req, next| assets::cache_policy(hashed, req, next)))
                .service(pkg),
        )
        .leptos_routes_with_context(&state, routes, policy::page_context, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(file_and_error_handler_with_context::<AppState, _>(policy::page_context, shell))
        .layer(from_fn_with_state(server_fns, policy::api_errors))
        // SPEC section 9: with a token set, nothing but the sign-in page without it.
        .layer(from_fn_with_state(guard, access::guard))
        .layer(from_fn(policy::safety_headers))
        // Pages, JSON lists and exports go out compressed when the browser takes it;
        // small answers (a status read) and files already compressed go as they are.
        .layer(
            CompressionLayer::new()
                .compress_when(SizeAbove::new(1024).and(NotForContentType::GRPC).and(NotForContentType::IMAGES)),
        )
        // A body over its limit is refused before anything reads it.
        .layer(from_fn_with_state(limits, upload::bound_body))
        // SPEC section 11: another site's page cannot change anything through the
        // browser, and a name this server does not answer to (DNS rebinding) reaches
        // nothing; both before any body is read, the Host check first of all.
        .layer(from_fn_with_state(hosts.clone(), origin::check_origin))
        .layer(from_fn_with_state(hosts, origin::check_host))
        .with_state(state)
}

/// The page routes, generated once per process and shared by every router.
///
/// `generate_route_list` renders the app once with leptos' process-wide "suppress
/// resource loads" flag set, so any page another thread renders meanwhile creates its
/// resources with a fetcher that waits forever: a `/` whose `list_jobs` never runs,
/// hanging that response. The routes depend on `App` alone, so they are generated on
/// the first call only; no router, hence no page, exists before that call returns.
fn page_routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Opens the SQLite database, builds the steps and the runner, and returns the state the
/// router needs. The runner is not started; call `service.runner().start()`.
pub fn build_state(
    config: config::Config,
    leptos_options: leptos::config::LeptosOptions,
) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    let db = store::sqlite::db::Db::open(&config.server.db, config.server.busy_timeout())?;
    build_state_with(db.into(), config, leptos_options)
}

/// Opens the store the configuration names (PostgreSQL when `database_url` is set,
/// else the SQLite file) and builds the state on it, as [`build_state`].
pub async fn open_state(
    config: config::Config,
    leptos_options: leptos::config::LeptosOptions,
) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    match config.server.postgres_url() {
        Some(url) => {
            // The runner's global cap plus room for status reads and control actions.
            let size = config.runner.global_concurrency.clamp(4, 64) + 8;
            let pg = store::postgres::PgStore::open(url, None, size)
                .await
                .map_err(|e| format!("cannot open the PostgreSQL database: {}", e.detail()))?;
            tracing::info!(worker = pg.worker_id, name = %pg.name, "on PostgreSQL");
            build_state_with(pg.into(), config, leptos_options)
        }
        None => build_state(config, leptos_options),
    }
}

/// Builds the steps, the runner and the service over `store`.
pub fn build_state_with(
    store: store::Store,
    config: config::Config,
    leptos_options: leptos::config::LeptosOptions,
) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    use std::sync::Arc;
    let http = steps::net::Http::new(&config.runner)?;
    let llm =
        steps::llm::Llm::new(&config.llm, config.runner.request_timeout().max(std::time::Duration::from_secs(60)));
    let steps = runner::Steps {
        research: Arc::new(steps::research::ResearchStep::new(http.clone(), llm, config.runner.max_extra_pages)),
        preprocess: Arc::new(steps::preprocess::PreprocessStep::new(http)),
    };
    let runner = runner::Runner::new(store.clone(), config.runner.clone(), steps);
    runner.set_notifier(notify::Notifier::new(&config.notify, &config.server.site_addr)?);
    let limits = import::Limits {
        max_bytes: config.server.max_upload_bytes,
        max_rows: config.server.max_rows,
        default_concurrency: config.runner.default_concurrency,
        names_alone: config.llm.enabled(),
    };
    let service = service::Service::new(store, runner, limits);
    Ok(AppState { leptos_options, service, config: Arc::new(config) })
}
