//! The Prometheus endpoint: GET /metrics renders the process's counters and histograms, after
//! reading the ledger's gauges (pending by state, the oldest pending age) fresh from the store.
//! Reading on scrape rather than on a timer means a figure is never older than the scrape that
//! shows it, and costs nothing when nobody scrapes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Mutex, Semaphore};

use crate::ledger::{Ledger, LedgerStats};

/// Scrapes closer together than this share one reading of the ledger, so that a scraper gone
/// wild cannot keep the store busy counting.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// A ledger that takes longer than this to count (a stalled disk, PostgreSQL unreachable) leaves
/// the previous figures in place; the scrape itself still answers.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// Histogram upkeep (draining recorded samples into the buckets), as the exporter asks.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// A connection that does not finish sending its request headers within this is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound metrics port and the recorder's handle, waiting for the ledger.
pub struct MetricsEndpoint {
    listener: std::net::TcpListener,
    handle: PrometheusHandle,
}

struct Scrape {
    handle: PrometheusHandle,
    ledger: Arc<dyn Ledger>,
    /// When the gauges were last read; held across the read, so concurrent scrapes share it.
    refreshed: Mutex<Option<Instant>>,
}

impl MetricsEndpoint {
    pub(super) fn new(
        listener: std::net::TcpListener,
        handle: PrometheusHandle,
    ) -> anyhow::Result<MetricsEndpoint> {
        listener.set_nonblocking(true)?;
        Ok(MetricsEndpoint { listener, handle })
    }

    /// Serves GET /metrics from background tasks of the current runtime until the process ends.
    pub fn serve(self, ledger: Arc<dyn Ledger>) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let addr = listener.local_addr()?;
        let scrape = Arc::new(Scrape {
            handle: self.handle,
            ledger,
            refreshed: Mutex::new(None),
        });
        let upkeep = scrape.handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        tokio::spawn(accept_loop(listener, scrape));
        tracing::info!("Prometheus metrics on http://{addr}/metrics");
        Ok(())
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, scrape: Arc<Scrape>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: wait rather than spin.
                tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let scrape = scrape.clone();
                async move { Ok::<_, std::convert::Infallible>(scrape.answer(request).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

impl Scrape {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: String| {
            Response::builder()
                .status(status)
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(body)))
                .expect("a static response is valid")
        };
        if request.uri().path() != "/metrics" {
            return reply(StatusCode::NOT_FOUND, "metrics are at /metrics\n".into());
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
        }
        self.refresh().await;
        reply(StatusCode::OK, self.handle.render())
    }

    async fn refresh(&self) {
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_some_and(|at| at.elapsed() < MIN_REFRESH) {
            return;
        }
        match tokio::time::timeout(STATS_TIMEOUT, self.ledger.stats()).await {
            Ok(Ok(stats)) => {
                set_gauges(&stats);
                *refreshed = Some(Instant::now());
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the ledger's figures; /metrics shows the last ones");
            }
            Err(_) => {
                tracing::warn!(
                    "the ledger did not give its figures within {}; /metrics shows the last ones",
                    humantime::format_duration(STATS_TIMEOUT)
                );
            }
        }
    }
}

fn set_gauges(stats: &LedgerStats) {
    use super::{OLDEST_PENDING_AGE, PENDING};
    for (state, count) in [
        ("pending", stats.pending),
        ("retrying", stats.retrying),
        ("dead", stats.dead),
    ] {
        metrics::gauge!(PENDING, "state" => state).set(count as f64);
    }
    metrics::gauge!(OLDEST_PENDING_AGE).set(
        stats
            .oldest_pending_age
            .map_or(0.0, |age| age.as_secs_f64()),
    );
}
