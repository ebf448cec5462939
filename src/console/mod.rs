//! The web console for the people on call: server-rendered pages over the core (`Notifier`),
//! no transport of its own beyond HTTP. Deliveries by state with ListPending's filters, one
//! delivery with its message and history, redrive / discard / send-test behind a confirmation,
//! and a chart of the last hours from the ledger.
//!
//! The files, each with one job:
//! - `routes.rs`: the URL table and the handlers (read the request, call the core, pick a view);
//! - `views.rs`: the askama templates' data, built from the core's answers;
//! - `session.rs`: the login cookie (when `flyteNotify.auth` is on), who it names, and the CSRF
//!   token;
//! - `issuer_login.rs`: logging in through the OIDC issuer (authorization code with PKCE);
//! - `chart.rs`: the inline SVG of deliveries and failures per hour;
//! - `words.rs`: readable times and errors in words;
//! - `templates/console/*.html` and `console.css`: the pages, compiled into the binary.

mod chart;
mod issuer_login;
mod routes;
mod session;
mod views;
mod words;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

use crate::api::auth::Authenticator;
use crate::notify::Notifier;

pub use issuer_login::IssuerLogin;
pub use routes::router;

/// What the console needs besides the core.
#[derive(Clone, Default)]
pub struct ConsoleOptions {
    /// Who a bearer token names, when `flyteNotify.auth` is on: the console then asks for a
    /// token (or a login through the issuer), keeps it in a cookie, and shows and allows what the
    /// permission rules give that caller. None: open, like the gRPC port.
    pub auth: Option<Arc<Authenticator>>,
    /// `flyteNotify.console.login`: the issuer's login page, beside pasting a token.
    pub login: Option<Arc<IssuerLogin>>,
    /// Mark cookies `Secure`: the console is reached over TLS (the gRPC port's own, or an
    /// ingress's, as the login's https redirect URL says).
    pub secure_cookies: bool,
}

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// A connection that does not finish sending its request headers within this is closed, so
/// that idle or trickling clients cannot hold the slots.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router(notifier, options)` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish. HTTP/1 with a header timeout and a bound on connections, like the
/// metrics endpoint (`axum::serve` has neither).
pub async fn serve(
    listener: tokio::net::TcpListener,
    notifier: Arc<Notifier>,
    options: ConsoleOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!("web console on http://{addr}/");
    let app = router(notifier, options);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing_tx, closing) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: wait rather than spin.
                tracing::warn!(error = %e, "the web console cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                // The guard wait_for gives is not Send: dropped inside, before the await below.
                _ = async { drop(closing.wait_for(|c| *c).await) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    let _ = closing_tx.send(true);
    Ok(())
}
