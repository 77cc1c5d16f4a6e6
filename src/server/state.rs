//! The state every handler and server function reaches.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use super::config::Config;
use super::service::Service;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub service: Service,
    pub config: std::sync::Arc<Config>,
}
