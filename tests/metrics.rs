//! /metrics after a known sequence: 3 delivered, 1 dead, 2 waiting to be retried, 1 silenced. Every counter,
//! gauge and histogram count an operator would alert or chart on is checked for its exact value,
//! and the alert rules the README documents (docs/prometheus-alerts.yml) name only metrics the
//! service exports. A second server sends one digest of three: the group size histogram counts it.

mod common;

use std::time::{Duration, Instant};

use common::http_sink::WebhookSink;
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{
    CreateSilenceRequest, EnqueueRequest, Silence, WebhookNotification,
};

async fn scrape(port: u16) -> String {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the one sample of `name` whose labels are exactly `labels` (in any order).
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let mut got: Vec<(String, String)> = rest
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        got.sort();
        want.sort();
        (got == want).then(|| value.parse().ok())?
    })
}

fn webhook(destination: &str) -> WebhookNotification {
    WebhookNotification {
        destination: destination.into(),
        phases: vec![Phase::Failed as i32],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_three_delivered_one_dead_and_two_pending() {
    let dir = tempfile::tempdir().unwrap();
    // 400: permanent, so dead on its first attempt.
    let refusing = WebhookSink::start("400", None);
    // 503 again and again, and an hour's backoff: both stay retrying while the test looks.
    let failing = WebhookSink::start(&["503"; 10].join(","), None);
    let metrics_port = free_port();
    let config = format!(
        r#"
notifications:
  emailer: {{ sender: flyte@example.com }}
flyteNotify:
  metricsListen: 127.0.0.1:{metrics_port}
  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }}
  webhooks:
    destinations:
      - {{ name: refusing, urlEnvVar: FN_TEST_REFUSING_URL }}
      - {{ name: failing, urlEnvVar: FN_TEST_FAILING_URL }}
"#
    );
    let server = Server::start_env(
        dir.path(),
        &config,
        &[
            ("FN_TEST_REFUSING_URL", &refusing.url("/hook")),
            ("FN_TEST_FAILING_URL", &failing.url("/hook")),
        ],
    );
    let mut client = server.client().await;
    // One more email, which a silence holds back: accepted, never attempted.
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    client
        .create_silence(CreateSilenceRequest {
            silence: Some(Silence {
                matcher: "eq(name,exec-silenced)".into(),
                ends_at: Some(prost_types::Timestamp {
                    seconds: in_an_hour,
                    nanos: 0,
                }),
                comment: "metrics test".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    client
        .enqueue(failed_email_request("exec-silenced"))
        .await
        .unwrap();
    wait_for_pending(
        &server,
        "eq(state,silenced)",
        Duration::from_secs(30),
        |d| d.len() == 1,
    )
    .await;
    let accepted = client
        .enqueue(EnqueueRequest {
            request_id: "metrics-sequence".into(),
            execution: Some(failed_execution("exec-metrics")),
            notifications: vec![
                email(&[Phase::Failed], &["a@example.com"], ""),
                email(&[Phase::Failed], &["b@example.com"], ""),
                email(&[Phase::Failed], &["c@example.com"], ""),
            ],
            webhooks: vec![webhook("refusing"), webhook("failing"), webhook("failing")],
            deadline: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.delivery_ids.len(), 6);
    let refused = client
        .enqueue(EnqueueRequest {
            request_id: "metrics-invalid".into(),
            execution: None,
            notifications: vec![],
            webhooks: vec![],
            deadline: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // Wait for every first attempt to be recorded, through the API rather than the metrics.
    let open = wait_for_pending(&server, "", Duration::from_secs(30), |d| {
        d.len() == 3 && d.iter().all(|d| d.attempts == 1)
    })
    .await;
    assert_eq!(maildir_messages(&server.maildir()).len(), 3);
    assert_eq!(refusing.requests().len(), 1);
    assert_eq!(failing.requests().len(), 2);
    drop(open);

    // The gauges are read from the ledger on a scrape, at most once a second: wait for the read
    // that follows the last record.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = scrape(metrics_port).await;
        if sample(
            &body,
            "flyte_notify_pending_deliveries",
            &[("state", "retrying")],
        ) == Some(2.0)
            && sample(
                &body,
                "flyte_notify_pending_deliveries",
                &[("state", "dead")],
            ) == Some(1.0)
        {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}\nlog:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exact = [
        // The default worker.concurrency, and every send recorded.
        ("flyte_notify_worker_slots", vec![], 16.0),
        ("flyte_notify_worker_slots_busy", vec![], 0.0),
        (
            "flyte_notify_pending_deliveries",
            vec![("state", "pending")],
            0.0,
        ),
        (
            "flyte_notify_pending_deliveries",
            vec![("state", "retrying")],
            2.0,
        ),
        (
            "flyte_notify_pending_deliveries",
            vec![("state", "dead")],
            1.0,
        ),
        (
            "flyte_notify_deliveries_accepted_total",
            vec![("channel", "email")],
            4.0,
        ),
        (
            "flyte_notify_silenced_total",
            vec![("channel", "email")],
            1.0,
        ),
        (
            "flyte_notify_deliveries_accepted_total",
            vec![("channel", "webhook")],
            3.0,
        ),
        (
            "flyte_notify_send_attempts_total",
            vec![("sender", "maildir"), ("outcome", "delivered")],
            3.0,
        ),
        (
            "flyte_notify_send_attempts_total",
            vec![("sender", "webhook"), ("outcome", "dead")],
            1.0,
        ),
        (
            "flyte_notify_send_attempts_total",
            vec![("sender", "webhook"), ("outcome", "retry")],
            2.0,
        ),
        ("flyte_notify_invalid_requests_total", vec![], 1.0),
        (
            "flyte_notify_enqueue_to_delivered_seconds_count",
            vec![("channel", "email")],
            3.0,
        ),
        (
            "flyte_notify_enqueue_to_delivered_seconds_bucket",
            vec![("channel", "email"), ("le", "+Inf")],
            3.0,
        ),
        (
            "flyte_notify_grpc_server_handling_seconds_count",
            vec![
                ("grpc_service", "flytenotify.v1.NotificationService"),
                ("grpc_method", "Enqueue"),
                ("grpc_code", "OK"),
            ],
            2.0,
        ),
        (
            "flyte_notify_grpc_server_handling_seconds_count",
            vec![
                ("grpc_service", "flytenotify.v1.NotificationService"),
                ("grpc_method", "Enqueue"),
                ("grpc_code", "InvalidArgument"),
            ],
            1.0,
        ),
    ];
    for (name, labels, want) in exact {
        assert_eq!(
            sample(&body, name, &labels),
            Some(want),
            "{name} {labels:?}\n{body}"
        );
    }
    // Nothing was delivered by webhook, so there is no such series at all.
    assert!(
        !body.contains(r#"flyte_notify_enqueue_to_delivered_seconds_count{channel="webhook"}"#),
        "{body}"
    );
    // The waits the test made through ListPending are there, with whatever count they reached.
    assert!(
        sample(
            &body,
            "flyte_notify_grpc_server_handling_seconds_count",
            &[
                ("grpc_service", "flytenotify.v1.NotificationService"),
                ("grpc_method", "ListPending"),
                ("grpc_code", "OK"),
            ],
        )
        .is_some_and(|n| n >= 1.0),
        "{body}"
    );

    // The oldest pending delivery is as old as the time since Enqueue, and it keeps ageing.
    let age = sample(&body, "flyte_notify_oldest_pending_age_seconds", &[]).unwrap();
    assert!(age > 0.0, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = scrape(metrics_port).await;
    let older = sample(&later, "flyte_notify_oldest_pending_age_seconds", &[]).unwrap();
    assert!(older >= age + 1.0, "{age} then {older}");

    // The documented alert rules only use metrics this service exports.
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus-alerts.yml"),
    )
    .unwrap();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rules).unwrap();
    let mut checked = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            for name in metric_names(expr) {
                let exported = later.lines().any(|l| {
                    l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))
                });
                assert!(
                    exported,
                    "{} uses {name}, which /metrics lacks",
                    rule["alert"].as_str().unwrap()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "the rules name {checked} metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_sent_is_counted_by_its_group_size() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let config = format!(
        r#"
notifications:
  emailer: {{ sender: flyte@example.com }}
flyteNotify:
  metricsListen: 127.0.0.1:{metrics_port}
  grouping:
    email: {{ groupWait: 1s }}
"#
    );
    let server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    for name in ["exec-a", "exec-b", "exec-c"] {
        client.enqueue(failed_email_request(name)).await.unwrap();
    }
    let messages = wait_for_messages(&server.maildir(), 1, Duration::from_secs(30));
    assert_eq!(messages.len(), 1);
    // The histogram is recorded after the digest is recorded delivered, just after the mail.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = scrape(metrics_port).await;
        if sample(
            &body,
            "flyte_notify_group_size_count",
            &[("channel", "email")],
        )
        .is_some()
        {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}\nlog:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (name, labels, want) in [
        (
            "flyte_notify_group_size_count",
            vec![("channel", "email")],
            1.0,
        ),
        (
            "flyte_notify_group_size_sum",
            vec![("channel", "email")],
            3.0,
        ),
        (
            "flyte_notify_group_size_bucket",
            vec![("channel", "email"), ("le", "2")],
            0.0,
        ),
        (
            "flyte_notify_group_size_bucket",
            vec![("channel", "email"), ("le", "5")],
            1.0,
        ),
        (
            "flyte_notify_deliveries_accepted_total",
            vec![("channel", "email")],
            3.0,
        ),
    ] {
        assert_eq!(
            sample(&body, name, &labels),
            Some(want),
            "{name} {labels:?}\n{body}"
        );
    }
}

/// Every flyte_notify_* identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("flyte_notify_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The value of `name` with no labels once it equals `want`, waiting up to `patience`.
async fn wait_for_gauge(server: &Server, port: u16, name: &str, want: f64, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let body = scrape(port).await;
        if sample(&body, name, &[]) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {want}:\n{body}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_worker_slots_are_counted_from_lease_to_outcome() {
    let dir = tempfile::tempdir().unwrap();
    // Every request is held past the send timeout: five sends that each fill a slot for 2 s.
    let holding = WebhookSink::start(&["sleep"; 5].join(","), None);
    let metrics_port = free_port();
    let config = format!(
        r#"
notifications:
  emailer: {{ sender: flyte@example.com }}
flyteNotify:
  metricsListen: 127.0.0.1:{metrics_port}
  worker: {{ concurrency: 3, sendTimeout: 2s }}
  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }}
  webhooks:
    destinations:
      - {{ name: holding, urlEnvVar: FN_TEST_HOLDING_URL }}
"#
    );
    let server = Server::start_env(
        dir.path(),
        &config,
        &[("FN_TEST_HOLDING_URL", &holding.url("/hook"))],
    );
    wait_for_gauge(
        &server,
        metrics_port,
        "flyte_notify_worker_slots",
        3.0,
        Duration::from_secs(10),
    )
    .await;
    let mut client = server.client().await;
    for n in 0..5 {
        client
            .enqueue(EnqueueRequest {
                request_id: format!("slots-{n}"),
                execution: Some(failed_execution(&format!("exec-slots-{n}"))),
                notifications: vec![],
                webhooks: vec![webhook("holding")],
                deadline: None,
            })
            .await
            .unwrap();
    }
    // Three of the five fill every slot while the other two wait for one.
    wait_for_gauge(
        &server,
        metrics_port,
        "flyte_notify_worker_slots_busy",
        3.0,
        Duration::from_secs(10),
    )
    .await;
    // The held sends time out and are recorded for a retry in an hour: the slots empty once the
    // last two have had their turn too.
    wait_for_pending(&server, "", Duration::from_secs(30), |d| {
        d.len() == 5 && d.iter().all(|d| d.attempts == 1)
    })
    .await;
    wait_for_gauge(
        &server,
        metrics_port,
        "flyte_notify_worker_slots_busy",
        0.0,
        Duration::from_secs(10),
    )
    .await;
    let body = scrape(metrics_port).await;
    assert_eq!(
        sample(&body, "flyte_notify_worker_slots", &[]),
        Some(3.0),
        "{body}"
    );
    assert_eq!(holding.requests().len(), 5);
}
