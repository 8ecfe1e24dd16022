//! facteur's HTTP side for operators.
//!
//! Purpose: `/healthz` (the process is alive and answering) and `/readyz`
//! (every listener is bound, storage takes writes, its invariants held at
//! the last check, and free disk is above the reserve), for load balancers
//! and orchestrators; `/metrics` in the Prometheus text format (rendered by
//! the binary, see `facteur::telemetry`); the admin API. The public status
//! page will live here too.
//!
//! Failure behaviour: `/readyz` answers `503` with the reason while not ready;
//! the server never blocks on storage to answer either endpoint.

pub mod bounded;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Readiness as the rest of the server reports it: each component (storage
/// writes, invariants, disk, startup) says what is wrong with it, if
/// anything; the node is ready when nothing is.
#[derive(Debug, Default)]
pub struct Health {
    problems: Mutex<std::collections::BTreeMap<&'static str, String>>,
}

impl Health {
    /// Not ready until [`Health::set`]`("startup", None)`.
    pub fn new_starting() -> Arc<Self> {
        let h = Health::default();
        if let Ok(mut g) = h.problems.lock() {
            g.insert("startup", "starting".into());
        }
        Arc::new(h)
    }

    /// What is wrong with `component` now (`None`: nothing).
    pub fn set(&self, component: &'static str, problem: Option<String>) {
        if let Ok(mut g) = self.problems.lock() {
            match problem {
                Some(p) => {
                    if g.get(component) != Some(&p) {
                        tracing::warn!(component, problem = %p, "not ready");
                    }
                    g.insert(component, p);
                }
                None => {
                    if g.remove(component).is_some() && component != "startup" {
                        tracing::info!(component, "ready again");
                    }
                }
            }
        }
    }

    /// The problems, by component (empty: ready).
    pub fn problems(&self) -> std::collections::BTreeMap<&'static str, String> {
        self.problems.lock().map(|g| g.clone()).unwrap_or_else(|_| [("health", "state poisoned".into())].into())
    }

    /// `None` when ready; otherwise every problem in one line.
    pub fn reason(&self) -> Option<String> {
        let p = self.problems();
        (!p.is_empty()).then(|| p.iter().map(|(c, why)| format!("{c}: {why}")).collect::<Vec<_>>().join("; "))
    }
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.reason() {
        None => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "reason": why, "problems": health.problems()})),
        ),
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(health)
}

/// The server side of the admin API, implemented by the binary. Answers are
/// JSON; an `Err` is the operator's mistake (400) with a clear text.
pub type JsonFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send + 'a>>;

pub trait AdminApi: Send + Sync + 'static {
    /// Queue depth and age per class and per destination.
    fn queue(&self) -> JsonFuture<'_>;
    /// Adaptive state of each destination (concurrency, rate, waiting jobs).
    fn destinations(&self) -> JsonFuture<'_>;
    /// Controls in force.
    fn controls(&self) -> JsonFuture<'_>;
    /// Apply a control (`{"action": "pause"|"resume"|"rate"|"retry", ...}`).
    fn control(&self, body: serde_json::Value, actor: String) -> JsonFuture<'_>;
    /// Open and recent incidents with their timelines.
    fn incidents(&self) -> JsonFuture<'_>;
    /// An operator's change to an incident
    /// (`{"action": "update"|"rename"|"resolve", "id": N, "text"|"title": ...}`).
    fn incident(&self, body: serde_json::Value, actor: String) -> JsonFuture<'_>;
    /// Flip a fault switch (`{"fault": "storage"|"mailbox-login", "on": bool}`);
    /// refused unless the process allows faults (tests).
    fn fault(&self, body: serde_json::Value) -> JsonFuture<'_>;
}

#[derive(Clone)]
struct AdminState {
    api: Arc<dyn AdminApi>,
    token: Arc<str>,
}

/// Constant-time comparison of the bearer token.
fn authorized(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let Some(given) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else { return false };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(r: Result<serde_json::Value, String>) -> axum::response::Response {
    match r {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": e}))).into_response(),
    }
}

fn denied() -> axum::response::Response {
    (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "missing or wrong bearer token"})))
        .into_response()
}

async fn admin_get(
    State(st): State<AdminState>,
    axum::extract::Path(what): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if !authorized(&headers, &st.token) {
        return denied();
    }
    match what.as_str() {
        "queue" => answer(st.api.queue().await),
        "destinations" => answer(st.api.destinations().await),
        "controls" => answer(st.api.controls().await),
        "incidents" => answer(st.api.incidents().await),
        _ => (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "no such resource"}))).into_response(),
    }
}

async fn admin_post(
    State(st): State<AdminState>,
    axum::extract::Path(what): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if !authorized(&headers, &st.token) {
        return denied();
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return answer(Err(format!("body is not JSON: {e}"))),
    };
    let r = match what.as_str() {
        "control" => st.api.control(value, "http:admin".into()).await,
        "incident" => st.api.incident(value, "http:admin".into()).await,
        "fault" => st.api.fault(value).await,
        _ => {
            return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "no such resource"})))
                .into_response();
        }
    };
    if let Ok(v) = &r {
        tracing::info!(what, result = %v, "admin action applied");
    }
    answer(r)
}

/// Renders the metrics in the Prometheus text format (version 0.0.4).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

async fn metrics(State(render): State<Render>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render())
}

/// The health router plus `/metrics` when given a renderer and, when a
/// token is configured, `/admin/...`: `GET /admin/queue|destinations|controls|incidents`,
/// `POST /admin/control|incident|fault`. `/metrics` is open like the health endpoints:
/// the listener is the operators' (loopback by default), and no series
/// names a user, a message or a client.
pub fn router_with_admin(
    health: Arc<Health>,
    admin: Option<(Arc<dyn AdminApi>, String)>,
    render: Option<Render>,
) -> Router {
    let mut base = router(health);
    if let Some(render) = render {
        base = base.merge(Router::new().route("/metrics", get(metrics)).with_state(render));
    }
    match admin {
        Some((api, token)) if !token.is_empty() => {
            let st = AdminState { api, token: token.into() };
            base.merge(Router::new().route("/admin/{what}", get(admin_get).post(admin_post)).with_state(st))
        }
        _ => base,
    }
}

/// Serve until `shutdown` turns true.
pub async fn serve(listener: TcpListener, health: Arc<Health>, shutdown: watch::Receiver<bool>) {
    serve_with_admin(listener, health, None, None, shutdown).await
}

/// Serve health, metrics and the admin API until `shutdown` turns true.
pub async fn serve_with_admin(
    listener: TcpListener,
    health: Arc<Health>,
    admin: Option<(Arc<dyn AdminApi>, String)>,
    render: Option<Render>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router_with_admin(health, admin, render);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// The public status page's three renderings (see `facteur_watch::status`).
pub trait StatusPages: Send + Sync + 'static {
    fn html(&self) -> String;
    fn json(&self) -> serde_json::Value;
    /// The Atom feed; `base` is this site's URL (`http://HOST`).
    fn atom(&self, base: &str) -> String;
}

/// `/status`, `/status.json`, `/status.atom`, and `/` sending to `/status`.
pub fn status_router(pages: Arc<dyn StatusPages>) -> Router {
    let html = |State(p): State<Arc<dyn StatusPages>>| async move {
        (
            [
                (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (axum::http::header::CACHE_CONTROL, "no-cache"),
            ],
            p.html(),
        )
    };
    let json = |State(p): State<Arc<dyn StatusPages>>| async move {
        ([(axum::http::header::CACHE_CONTROL, "no-cache")], axum::Json(p.json()))
    };
    let atom = |State(p): State<Arc<dyn StatusPages>>, headers: axum::http::HeaderMap| async move {
        let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        ([(axum::http::header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], p.atom(&format!("http://{host}")))
    };
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/status") }))
        .route("/status", get(html))
        .route("/status.json", get(json))
        .route("/status.atom", get(atom))
        .with_state(pages)
}

/// Serve the status page until `shutdown` turns true, within the default
/// [`bounded::Bounds`]: the listener is public. Each request is a render
/// from memory, never a storage read.
pub async fn serve_status(listener: TcpListener, pages: Arc<dyn StatusPages>, shutdown: watch::Receiver<bool>) {
    serve_status_within(listener, pages, bounded::Bounds::default(), shutdown).await
}

pub async fn serve_status_within(
    listener: TcpListener,
    pages: Arc<dyn StatusPages>,
    bounds: bounded::Bounds,
    mut shutdown: watch::Receiver<bool>,
) {
    let r = axum::serve(bounded::BoundedListener::new(listener, bounds), status_router(pages))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "status page server failed");
    }
}
