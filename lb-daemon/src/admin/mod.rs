//! The HTTP endpoints of the daemon (DESIGN.md §6 and §5), on two
//! listeners:
//!
//! - admin (`[admin] listen`, localhost by default):
//!   - `GET /api/v1/status`: the [`Status`] snapshot as JSON;
//!   - `POST /api/v1/backends/{virtual_server}/{address}/drain` and
//!     `.../undrain`: the backend's new [`BackendStatus`] as JSON;
//! - metrics (`[metrics] listen`): `GET /metrics`, Prometheus text format.
//!
//! Errors are JSON objects `{"error": "..."}`: 404 for an unknown virtual
//! server, backend or path, 400 for an address that does not parse, 405
//! for a method a path does not take, 500 when the daemon fails to apply a
//! change.
//!
//! The daemon plugs in through [`Control`]. Its methods are synchronous
//! and may block (read BPF maps, wait for the state task), so the handlers
//! call them on tokio's blocking pool.
pub mod client;

use std::{future::Future, net::IpAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, State, rejection::PathRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use crate::{
    metrics::{self, Metrics},
    status::{BackendStatus, Status},
};

/// Path of the status endpoint.
pub const STATUS_PATH: &str = "/api/v1/status";
/// Path of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// What the HTTP endpoints need from the running daemon.
pub trait Control: Send + Sync + 'static {
    /// A snapshot of the daemon, counters included.
    fn status(&self) -> Status;

    /// Drains (`drained`: no new flows, established ones stay) or undrains
    /// `backend` of `virtual_server`, and returns the backend's new status.
    fn set_drained(
        &self,
        virtual_server: &str,
        backend: IpAddr,
        drained: bool,
    ) -> Result<BackendStatus, ControlError>;
}

/// Why [`Control::set_drained`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no virtual server named {0:?}")]
    UnknownVirtualServer(String),
    #[error("virtual server {virtual_server:?} has no backend {backend}")]
    UnknownBackend {
        virtual_server: String,
        backend: IpAddr,
    },
    /// The change could not be applied (a map update failed, the daemon is
    /// shutting down, ...).
    #[error("{0}")]
    Failed(String),
}

impl ControlError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownVirtualServer(_) | Self::UnknownBackend { .. } => StatusCode::NOT_FOUND,
            Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Serves the admin API on `listener` until `shutdown` completes; requests
/// in progress then finish.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    control: Arc<dyn Control>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(control))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    control: Arc<dyn Control>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(control, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The admin API's routes.
pub fn admin_router(control: Arc<dyn Control>) -> Router {
    Router::new()
        .route(STATUS_PATH, get(get_status))
        .route(
            "/api/v1/backends/{virtual_server}/{address}/drain",
            post(drain),
        )
        .route(
            "/api/v1/backends/{virtual_server}/{address}/undrain",
            post(undrain),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(control)
}

/// The metrics endpoint's route.
pub fn metrics_router(control: Arc<dyn Control>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(get_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state((control, metrics))
}

async fn get_status(State(control): State<Arc<dyn Control>>) -> Response {
    match tokio::task::spawn_blocking(move || control.status()).await {
        Ok(status) => Json(status).into_response(),
        Err(join) => internal(&join),
    }
}

async fn drain(
    State(control): State<Arc<dyn Control>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    set_drained(control, path, true).await
}

async fn undrain(
    State(control): State<Arc<dyn Control>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    set_drained(control, path, false).await
}

async fn set_drained(
    control: Arc<dyn Control>,
    path: Result<Path<(String, String)>, PathRejection>,
    drained: bool,
) -> Response {
    let Path((virtual_server, address)) = match path {
        Ok(path) => path,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let backend: IpAddr = match address.parse() {
        Ok(backend) => backend,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{address:?} is not an IPv4 or IPv6 address"),
            );
        }
    };
    let result =
        tokio::task::spawn_blocking(move || control.set_drained(&virtual_server, backend, drained))
            .await;
    match result {
        Ok(Ok(backend)) => Json(backend).into_response(),
        Ok(Err(refused)) => error(refused.status_code(), refused.to_string()),
        Err(join) => internal(&join),
    }
}

async fn get_metrics(
    State((control, metrics)): State<(Arc<dyn Control>, Arc<Metrics>)>,
) -> Response {
    let render = move || {
        let status = control.status();
        let text = metrics.render(&status);
        // A snapshot of many backends is many small allocations.
        drop(status);
        crate::memory::release_free_memory();
        text
    };
    match tokio::task::spawn_blocking(render).await {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(join) => internal(&join),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

/// A [`Control`] call panicked: answer 500 rather than drop the connection.
fn internal(join: &tokio::task::JoinError) -> Response {
    tracing::error!(error = %join, "admin request handler failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}
