//! Missed schedules (issue #19): `flyteNotify.expectations` names launch plans that must succeed
//! every so often. When no SUCCEEDED event of one arrives within `every + grace`, one alert goes
//! out; when it succeeds again, one recovery. Shared by replicas, kept across restarts.

mod common;

use std::time::Duration;

use common::postgres::TestDatabase;
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{EnqueueRequest, ListExpectationsRequest, expectation};

const LAUNCH_PLAN: &str = "flytesnacks/development/lp.daily";

fn config(sink_port: u16, every: &str, grace: &str, dsn: Option<&str>) -> String {
    let store = match dsn {
        Some(dsn) => format!("  store: postgres\n  postgres: {{ dsn: \"{dsn}\" }}\n"),
        None => String::new(),
    };
    format!(
        "notifications:\n  emailer:\n    sender: flyte@example.com\n    emailServerConfig:\n      \
         serviceName: smtp\n      smtpServer: 127.0.0.1\n      smtpPort: \"{sink_port}\"\n\
         flyteNotify:\n{store}  expectations:\n    - launchPlan: {LAUNCH_PLAN}\n      every: {every}\n      \
         grace: {grace}\n      notify: {{ email: [oncall@example.com] }}\n"
    )
}

/// A SUCCEEDED run of lp.daily, whose one notification is for failures only: it sends nothing
/// itself, and is the success the expectation waits for.
fn success(name: &str) -> EnqueueRequest {
    let mut execution = failed_execution(name);
    execution.phase = Phase::Succeeded as i32;
    execution.error = None;
    EnqueueRequest {
        request_id: name.into(),
        execution: Some(execution),
        notifications: vec![email(&[Phase::Failed], &["team@example.com"], "")],
        webhooks: Vec::new(),
        deadline: None,
    }
}

async fn listed(server: &Server) -> flyte_notify::proto::flytenotify::v1::Expectation {
    let mut all = server
        .client()
        .await
        .list_expectations(ListExpectationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .expectations;
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn subjects(sink: &SmtpSink) -> Vec<String> {
    maildir_messages(&sink.maildir)
        .iter()
        .map(|m| parse_mail(m).subject)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successes_stopping_give_one_alert_and_the_next_success_one_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let metrics_port = free_port();
    let yaml = format!(
        "{}  metricsListen: 127.0.0.1:{metrics_port}\n",
        config(port, "5s", "2s", None)
    );
    let mut server = Server::start(dir.path(), Some(&yaml));
    server
        .client()
        .await
        .enqueue(success("run-1"))
        .await
        .unwrap();
    // Recorded: due 7 s after that success.
    let mut seen = listed(&server).await;
    for _ in 0..50 {
        if seen.last_success_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = listed(&server).await;
    }
    let last = seen.last_success_at.expect("the success is recorded");
    let due = seen.next_due_at.expect("due");
    assert_eq!(due.seconds - last.seconds, 7, "{seen:?}");
    assert_eq!(seen.state, expectation::State::Ok as i32);
    assert_eq!(seen.recipients, vec!["oncall@example.com"]);

    // No more successes: one alert, about 7 s later.
    let alerts = wait_for_messages(&sink.maildir, 1, Duration::from_secs(30));
    assert_eq!(alerts.len(), 1, "log:\n{}", server.log());
    let alert = parse_mail(&alerts[0]);
    assert_eq!(
        alert.subject,
        format!("Flyte launch plan {LAUNCH_PLAN} missed its schedule (a success every 5s)")
    );
    assert_eq!(alert.to, vec!["oncall@example.com"]);
    assert!(
        alert
            .text
            .contains("has missed its schedule: no success within 5s and 2s of grace"),
        "{}",
        alert.text
    );
    assert!(alert.text.contains("Last success: "), "{}", alert.text);
    assert_eq!(
        listed(&server).await.state,
        expectation::State::Missed as i32
    );

    // Once, also across a restart.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.kill();
    let server = server.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(subjects(&sink).len(), 1, "{:?}", subjects(&sink));

    // It succeeds again: one recovery.
    server
        .client()
        .await
        .enqueue(success("run-2"))
        .await
        .unwrap();
    let all = wait_for_messages(&sink.maildir, 2, Duration::from_secs(30));
    assert_eq!(all.len(), 2, "log:\n{}", server.log());
    let subjects_now = subjects(&sink);
    assert!(
        subjects_now.contains(&format!("Flyte launch plan {LAUNCH_PLAN} succeeded again")),
        "{subjects_now:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(subjects(&sink).len(), 2);
    let seen = listed(&server).await;
    assert_eq!(seen.state, expectation::State::Ok as i32);
    assert!(seen.next_due_at.is_some());
    // This process (started after the miss was recorded) recorded the recovery.
    let metrics = scrape_metrics(metrics_port).await;
    let line = "flyte_notify_expectation_alerts_total{kind=\"recovered\"} 1";
    assert!(
        metrics.lines().any(|l| l == line),
        "{line} not in\n{metrics}"
    );
}

/// Two replicas on one PostgreSQL database both look every second: a miss is alerted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_replicas_a_miss_is_alerted_once() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let yaml = config(port, "2s", "1s", Some(&database.dsn()));
    let _replicas: Vec<Server> = (0..2)
        .map(|i| {
            let home = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start_env(&home, &yaml, &[])
        })
        .collect();
    // No success at all: the alert counts from when watching began.
    let alerts = wait_for_messages(&sink.maildir, 1, Duration::from_secs(30));
    assert_eq!(alerts.len(), 1);
    assert!(
        parse_mail(&alerts[0])
            .text
            .contains("none since flyte-notify began watching"),
        "{}",
        parse_mail(&alerts[0]).text
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(subjects(&sink).len(), 1, "{:?}", subjects(&sink));
}

#[test]
fn bad_expectations_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (entry, key) in [
        (
            "{ launchPlan: p/d, every: 1h, notify: { email: [a@example.com] } }",
            "flyteNotify.expectations[0].launchPlan",
        ),
        (
            "{ launchPlan: p/d/n, every: 0s, notify: { email: [a@example.com] } }",
            "flyteNotify.expectations[0].every",
        ),
        (
            "{ launchPlan: p/d/n, every: 1h, grace: 60d, notify: { email: [a@example.com] } }",
            "flyteNotify.expectations[0].grace",
        ),
        (
            "{ launchPlan: p/d/n, every: 1h, notify: {} }",
            "flyteNotify.expectations[0].notify",
        ),
        (
            "{ launchPlan: p/d/n, every: 1h, notify: { email: [not-an-address] } }",
            "flyteNotify.expectations[0].notify.email[0]",
        ),
        (
            "{ launchPlan: p/d/n, every: 1h, notify: { email: [a@example.com] }, evry: 2h }",
            "evry",
        ),
        (
            "{ launchPlan: p/d/n, every: 1h, notify: { webhooks: [nowhere] } }",
            "flyteNotify.expectations[0].notify.webhooks[0]",
        ),
    ] {
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            format!("flyteNotify:\n  expectations:\n    - {entry}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{entry}: {err}");
        assert!(err.contains(key), "{entry}: {key} not in {err}");
    }
}
