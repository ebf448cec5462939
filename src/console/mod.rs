//! The web console for the people on call: server-rendered pages over the core (`Notifier`),
//! no transport of its own beyond HTTP. Deliveries by state with ListPending's filters, one
//! delivery with its message and history, redrive / discard / send-test behind a confirmation,
//! and a chart of the last hours from the ledger.
//!
//! The files, each with one job:
//! - `routes.rs`: the URL table and the handlers (read the request, call the core, pick a view);
//! - `views.rs`: the askama templates' data, built from the core's answers;
//! - `session.rs`: the login cookie (when `flyteNotify.auth` is on) and the CSRF token;
//! - `chart.rs`: the inline SVG of deliveries and failures per hour;
//! - `words.rs`: readable times and errors in words;
//! - `templates/console/*.html` and `console.css`: the pages, compiled into the binary.

mod chart;
mod routes;
mod session;
mod views;
mod words;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use crate::api::auth::Tokens;
use crate::notify::Notifier;

pub use routes::router;

/// What the console needs besides the core.
#[derive(Clone, Default)]
pub struct ConsoleOptions {
    /// The accepted bearer tokens when `flyteNotify.auth` is on: the console then asks for one
    /// and keeps it in a cookie. None: open, like the gRPC port.
    pub tokens: Option<Arc<Tokens>>,
}

/// Serves `router(notifier, options)` on `listener` until `shutdown` completes; requests in
/// flight finish first (axum's graceful shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    notifier: Arc<Notifier>,
    options: ConsoleOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!("web console on http://{addr}/");
    axum::serve(listener, router(notifier, options))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the web console's server failed")
}
