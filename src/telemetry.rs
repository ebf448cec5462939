//! Prometheus metrics: what an operator alerts on. Names are defined here, once, so the README's
//! list and the code cannot drift apart.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Deliveries recorded by Enqueue, by channel.
pub const ACCEPTED: &str = "flyte_notify_deliveries_accepted_total";
/// Send attempts by sender and outcome (delivered, retry, dead).
pub const ATTEMPTS: &str = "flyte_notify_send_attempts_total";
/// How long sends take, by sender.
pub const SEND_SECONDS: &str = "flyte_notify_send_duration_seconds";
/// Calls per ledger commit: the group-commit batch size.
pub const BATCH_SIZE: &str = "flyte_notify_ledger_batch_size";
/// Outcomes the ledger refused because their lease was no longer current (a worker that lost its
/// lease, e.g. a send that outlived it). Each one is a send that may have gone out twice.
pub const STALE_RECORDS: &str = "flyte_notify_stale_records_total";
/// Requests refused with InvalidArgument.
pub const INVALID: &str = "flyte_notify_invalid_requests_total";

/// Serves GET /metrics on `addr` from a background task of the current runtime.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    tracing::info!("Prometheus metrics on http://{addr}/metrics");
    Ok(())
}
