//! facteur's HTTP side for operators.
//!
//! Purpose: `/healthz` (the process is alive and answering) and `/readyz`
//! (every listener is bound and the storage invariants held at the last
//! check), for load balancers and orchestrators. Metrics, operator controls
//! and the public status page will live here too.
//!
//! Failure behaviour: `/readyz` answers `503` with the reason while not ready;
//! the server never blocks on storage to answer either endpoint.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Readiness as the rest of the server reports it.
#[derive(Debug, Default)]
pub struct Health {
    /// `None` when ready; otherwise why not.
    not_ready: Mutex<Option<String>>,
}

impl Health {
    pub fn new_starting() -> Arc<Self> {
        Arc::new(Health { not_ready: Mutex::new(Some("starting".into())) })
    }

    pub fn set_ready(&self) {
        if let Ok(mut g) = self.not_ready.lock() {
            *g = None;
        }
    }

    pub fn set_not_ready(&self, why: impl Into<String>) {
        if let Ok(mut g) = self.not_ready.lock() {
            *g = Some(why.into());
        }
    }

    pub fn reason(&self) -> Option<String> {
        self.not_ready.lock().map(|g| g.clone()).unwrap_or_else(|_| Some("health state poisoned".into()))
    }
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.reason() {
        None => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))),
        Some(why) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "not ready", "reason": why})))
        }
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(health)
}

/// Serve until `shutdown` turns true.
pub async fn serve(listener: TcpListener, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    let app = router(health);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
