//! Prometheus metrics: what an operator alerts on. Names are defined here, once, so the README's
//! list and the code cannot drift apart.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

mod endpoint;

pub use endpoint::MetricsEndpoint;

/// Deliveries recorded by Enqueue, by channel.
pub const ACCEPTED: &str = "flyte_notify_deliveries_accepted_total";
/// Send attempts by sender and outcome (delivered, retry, dead).
pub const ATTEMPTS: &str = "flyte_notify_send_attempts_total";
/// How long sends take, by sender.
pub const SEND_SECONDS: &str = "flyte_notify_send_duration_seconds";
/// Calls per ledger commit: the group-commit batch size.
pub const BATCH_SIZE: &str = "flyte_notify_ledger_batch_size";
/// Deliveries per worker call to the ledger, by `op` (lease, record): how much the worker's
/// batching saves, one ledger write serving this many deliveries.
pub const WORKER_BATCH_SIZE: &str = "flyte_notify_worker_batch_size";
/// This replica's worker slots (`worker.concurrency`), and how many of them hold a delivery now:
/// from its lease, through the send and any rate-limit wait, until its outcome is written. Busy
/// at the configured count while the oldest pending delivery ages means the slots are the limit.
pub const WORKER_SLOTS: &str = "flyte_notify_worker_slots";
/// See WORKER_SLOTS.
pub const WORKER_SLOTS_BUSY: &str = "flyte_notify_worker_slots_busy";
/// Outcomes the ledger refused because their lease was no longer current (a worker that lost its
/// lease, e.g. a send that outlived it). Each one is a send that may have gone out twice.
pub const STALE_RECORDS: &str = "flyte_notify_stale_records_total";
/// Calls refused for want of a valid bearer token, by code (Unauthenticated, PermissionDenied).
pub const AUTH_REFUSED: &str = "flyte_notify_auth_refused_total";
/// Permission decisions, by action and decision (allow, deny).
pub const AUTHZ_DECISIONS: &str = "flyte_notify_authz_decisions_total";
/// Announcements a cloud queue did not take (the deliveries are sent anyway).
pub const ANNOUNCE_FAILED: &str = "flyte_notify_announce_failed_total";
/// Requests refused with InvalidArgument.
pub const INVALID: &str = "flyte_notify_invalid_requests_total";
/// Deliveries not yet settled, by state (pending, retrying, dead), read from the ledger on each
/// scrape: every replica of a shared ledger reports the same figures.
pub const PENDING: &str = "flyte_notify_pending_deliveries";
/// How long ago the oldest pending or retrying delivery was accepted; 0 when none is.
pub const OLDEST_PENDING_AGE: &str = "flyte_notify_oldest_pending_age_seconds";
/// From the ledger's accept to the send that succeeded, by channel (email, slack, pagerduty,
/// webhook): retries and rate-limit waits included.
pub const ENQUEUE_TO_DELIVERED: &str = "flyte_notify_enqueue_to_delivered_seconds";
/// gRPC calls by service, method and status code, and how long each took to answer; the label
/// names are go-grpc-prometheus's, which dashboards already know.
pub const GRPC_HANDLING: &str = "flyte_notify_grpc_server_handling_seconds";
/// Sends that waited for (or were put off by) their destination's rate limit, by sender.
pub const RATE_LIMITED: &str = "flyte_notify_rate_limited_total";
/// Deliveries not sent because a silence matched them when they were due, by channel.
pub const SILENCED: &str = "flyte_notify_silenced_total";
/// Stuck-run deadline alerts armed by Enqueue (one per notification of a non-terminal event).
pub const DEADLINES_ARMED: &str = "flyte_notify_deadlines_armed_total";
/// Stuck-run deadline alerts sent (their run had not ended in time), by channel.
pub const DEADLINES_FIRED: &str = "flyte_notify_deadlines_fired_total";
/// Missed-schedule alerts (`kind` = missed) and recoveries (`kind` = recovered) recorded.
pub const EXPECTATION_ALERTS: &str = "flyte_notify_expectation_alerts_total";
/// Members per digest sent, by channel.
pub const GROUP_SIZE: &str = "flyte_notify_group_size";

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

/// Latency buckets, in seconds: a millisecond Enqueue up to a delivery that waited out an hour of
/// retries.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// A digest holds from one member up to maxGroupSize (at most 500).
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

/// Installs the process's metrics recorder and binds `addr`, so that a port already taken stops
/// start-up; the endpoint serves once it is given the ledger (`MetricsEndpoint::serve`).
/// Histograms get buckets rather than summaries: buckets add up across replicas.
pub fn install(addr: SocketAddr) -> anyhow::Result<MetricsEndpoint> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(WORKER_BATCH_SIZE.into()), BATCH_BUCKETS)
        })
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(GROUP_SIZE.into()), GROUP_BUCKETS))
        .and_then(|b| b.install_recorder())
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    describe();
    MetricsEndpoint::new(listener, handle)
}

/// HELP lines for every metric, and the unlabelled counters at zero: an alert on `increase()`
/// needs the series to exist before its first event.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(ACCEPTED, "Deliveries recorded by Enqueue, by channel");
    describe_counter!(ATTEMPTS, "Send attempts by sender and outcome");
    describe_histogram!(
        SEND_SECONDS,
        Unit::Seconds,
        "How long sends take, by sender"
    );
    describe_histogram!(BATCH_SIZE, "Calls per ledger commit");
    describe_histogram!(
        WORKER_BATCH_SIZE,
        "Deliveries per worker call to the ledger, by op (lease, record)"
    );
    describe_counter!(
        STALE_RECORDS,
        "Outcomes refused because their lease had ended"
    );
    describe_counter!(
        AUTHZ_DECISIONS,
        "Permission decisions, by action and decision"
    );
    describe_counter!(
        AUTH_REFUSED,
        "Calls refused for want of a valid token, by code"
    );
    describe_counter!(ANNOUNCE_FAILED, "Announcements a cloud queue did not take");
    describe_counter!(INVALID, "Requests refused with InvalidArgument");
    describe_counter!(
        RATE_LIMITED,
        "Sends delayed by their destination's rate limit"
    );
    describe_counter!(
        SILENCED,
        "Deliveries held back by a silence instead of being sent, by channel"
    );
    describe_counter!(
        DEADLINES_FIRED,
        "Stuck-run deadline alerts sent, by channel"
    );
    describe_counter!(
        EXPECTATION_ALERTS,
        "Missed-schedule alerts and recoveries recorded, by kind"
    );
    describe_counter!(
        DEADLINES_ARMED,
        "Stuck-run deadline alerts armed, by channel"
    );
    describe_histogram!(GROUP_SIZE, "Members per digest sent, by channel");
    describe_gauge!(
        PENDING,
        "Deliveries not yet settled, by state, from the ledger"
    );
    describe_gauge!(
        OLDEST_PENDING_AGE,
        Unit::Seconds,
        "Age of the oldest pending or retrying delivery"
    );
    describe_histogram!(
        ENQUEUE_TO_DELIVERED,
        Unit::Seconds,
        "From accept to successful send, by channel"
    );
    describe_histogram!(
        GRPC_HANDLING,
        Unit::Seconds,
        "gRPC calls by service, method and code, and their time to answer"
    );
    for unlabelled in [STALE_RECORDS, INVALID] {
        metrics::counter!(unlabelled).increment(0);
    }
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
