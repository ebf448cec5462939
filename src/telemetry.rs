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
/// Calls refused for want of a valid bearer token, by code (Unauthenticated, PermissionDenied).
pub const AUTH_REFUSED: &str = "flyte_notify_auth_refused_total";
/// Announcements a cloud queue did not take (the deliveries are sent anyway).
pub const ANNOUNCE_FAILED: &str = "flyte_notify_announce_failed_total";
/// Requests refused with InvalidArgument.
pub const INVALID: &str = "flyte_notify_invalid_requests_total";
/// Sends that waited for (or were put off by) their destination's rate limit, by sender.
pub const RATE_LIMITED: &str = "flyte_notify_rate_limited_total";

/// `parts` joined by `/` for a log field, with control characters escaped (`\n`, `\u{1b}`), so
/// that a caller's execution name cannot end a log line early or forge another one.
pub fn log_safe(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        for c in part.chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// Serves GET /metrics on `addr` from a background task of the current runtime.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    tracing::info!("Prometheus metrics on http://{addr}/metrics");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_fields_cannot_break_a_line() {
        assert_eq!(
            super::log_safe(&["p", "d", "x\n2026-01-01 INFO forged\u{1b}[0m é"]),
            "p/d/x\\n2026-01-01 INFO forged\\u{1b}[0m é"
        );
    }
}
