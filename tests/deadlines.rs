//! Stuck-run deadlines (issue #19): an Enqueue of a non-terminal phase (RUNNING) with a
//! `deadline` arms one "still running after ..." alert per notification; a terminal phase of the
//! same execution that comes first disarms it. The alerts are ledger rows with a due time, so they
//! survive a restart and go out once across replicas.

mod common;

use std::time::{Duration, Instant};

use common::postgres::TestDatabase;
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{
    DeliveryState, EnqueueRequest, GetDeliveryRequest, delivery_event,
};
use tonic::Code;

fn config(sink_port: u16, dsn: Option<&str>) -> String {
    let store = match dsn {
        Some(dsn) => format!("  store: postgres\n  postgres: {{ dsn: \"{dsn}\" }}\n"),
        None => String::new(),
    };
    format!(
        "notifications:\n  emailer:\n    sender: flyte@example.com\n    emailServerConfig:\n      \
         serviceName: smtp\n      smtpServer: 127.0.0.1\n      smtpPort: \"{sink_port}\"\n\
         flyteNotify:\n{store}  retry: {{ baseDelay: 200ms, maxDelay: 1s, maxAttempts: 20 }}\n"
    )
}

/// `name` at `phase`, with one email notification (named for FAILED only) to `to`.
fn event(
    name: &str,
    request_id: &str,
    phase: Phase,
    to: &str,
    deadline: Option<Duration>,
) -> EnqueueRequest {
    let mut execution = failed_execution(name);
    execution.phase = phase as i32;
    if phase != Phase::Failed {
        execution.error = None;
    }
    EnqueueRequest {
        request_id: request_id.into(),
        execution: Some(execution),
        notifications: vec![email(&[Phase::Failed, Phase::Succeeded], &[to], "")],
        webhooks: Vec::new(),
        deadline: deadline.map(|d| prost_types::Duration::try_from(d).unwrap()),
    }
}

async fn state_of(server: &Server, id: &str) -> (DeliveryState, Vec<delivery_event::Kind>, String) {
    let d = server
        .client()
        .await
        .get_delivery(GetDeliveryRequest {
            delivery_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let delivery = d.delivery.unwrap();
    let kinds = d
        .history
        .iter()
        .map(|e| delivery_event::Kind::try_from(e.kind).unwrap())
        .collect();
    let detail = d
        .history
        .last()
        .map(|e| e.detail.clone())
        .unwrap_or_default();
    (
        DeliveryState::try_from(delivery.state).unwrap(),
        kinds,
        detail,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_gets_one_still_running_alert() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let metrics_port = free_port();
    let yaml = format!(
        "{}  metricsListen: 127.0.0.1:{metrics_port}\n",
        config(port, None)
    );
    let server = Server::start(dir.path(), Some(&yaml));
    let mut client = server.client().await;
    let armed_at = Instant::now();
    let response = client
        .enqueue(event(
            "stuck-1",
            "stuck-1-running",
            Phase::Running,
            "oncall@example.com",
            Some(Duration::from_secs(3)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.delivery_ids.len(), 1, "{response:?}");
    // Armed: listed as pending, due in about 3 s; nothing sent yet.
    let listed = list_all(&mut client, "").await;
    assert_eq!(listed.len(), 1);
    let due = listed[0].next_attempt_at.unwrap();
    let created = listed[0].created_at.unwrap();
    let wait =
        (due.seconds - created.seconds) * 1000 + i64::from(due.nanos - created.nanos) / 1_000_000;
    assert!((2900..=3100).contains(&wait), "due {wait} ms after accept");
    assert!(maildir_messages(&sink.maildir).is_empty());

    let messages = wait_for_messages(&sink.maildir, 1, Duration::from_secs(30));
    assert_eq!(messages.len(), 1, "log:\n{}", server.log());
    assert!(armed_at.elapsed() >= Duration::from_secs(3));
    let mail = parse_mail(&messages[0]);
    assert_eq!(
        mail.subject,
        "Flyte execution flytesnacks/development/stuck-1 still running after 3s"
    );
    assert!(
        mail.text.contains(
            "domain development is still running after 3s: no terminal phase has arrived."
        ),
        "{}",
        mail.text
    );
    // Once: nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(maildir_messages(&sink.maildir).len(), 1);
    let (state, _, _) = state_of(&server, &response.delivery_ids[0]).await;
    assert_eq!(state, DeliveryState::Delivered);
    let metrics = scrape_metrics(metrics_port).await;
    for line in [
        "flyte_notify_deadlines_armed_total{channel=\"email\"} 1",
        "flyte_notify_deadlines_fired_total{channel=\"email\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_phase_within_the_deadline_disarms_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let server = Server::start(dir.path(), Some(&config(port, None)));
    let mut client = server.client().await;
    let armed = client
        .enqueue(event(
            "on-time",
            "on-time-running",
            Phase::Running,
            "oncall@example.com",
            Some(Duration::from_secs(3)),
        ))
        .await
        .unwrap()
        .into_inner();
    let ended = client
        .enqueue(event(
            "on-time",
            "on-time-succeeded",
            Phase::Succeeded,
            "team@example.com",
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let messages = wait_for_messages(&sink.maildir, 1, Duration::from_secs(30));
    // Past the deadline: only the SUCCEEDED notification arrived.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let messages_now = maildir_messages(&sink.maildir);
    assert_eq!(messages_now.len(), 1, "{messages:?}");
    let mail = parse_mail(&messages_now[0]);
    assert!(
        mail.subject.ends_with("on-time succeeded"),
        "{}",
        mail.subject
    );
    let (state, kinds, detail) = state_of(&server, &armed.delivery_ids[0]).await;
    assert_eq!(state, DeliveryState::Disarmed);
    assert_eq!(kinds, vec![delivery_event::Kind::Disarmed]);
    assert!(detail.contains("on-time-succeeded"), "{detail}");
    let (state, _, _) = state_of(&server, &ended.delivery_ids[0]).await;
    assert_eq!(state, DeliveryState::Delivered);
    assert!(list_all(&mut client, "").await.is_empty());
}

/// Armed, then the process is SIGKILLed before the deadline: after the restart the alert still
/// goes out, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_survives_a_crash_and_fires_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let mut server = Server::start(dir.path(), Some(&config(port, None)));
    server
        .client()
        .await
        .enqueue(event(
            "crash",
            "crash-running",
            Phase::Running,
            "oncall@example.com",
            Some(Duration::from_secs(3)),
        ))
        .await
        .unwrap();
    server.kill();
    let restarted = server.restart();
    let messages = wait_for_messages(&sink.maildir, 1, Duration::from_secs(30));
    assert_eq!(messages.len(), 1, "log:\n{}", restarted.log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(maildir_messages(&sink.maildir).len(), 1);
}

/// Two replicas on one PostgreSQL database: the alert is armed through one and goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_replicas_a_deadline_fires_once() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let yaml = config(port, Some(&database.dsn()));
    let replicas: Vec<Server> = (0..2)
        .map(|i| {
            let home = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start_env(&home, &yaml, &[])
        })
        .collect();
    for i in 0..5 {
        replicas[i % 2]
            .client()
            .await
            .enqueue(event(
                &format!("shared-{i}"),
                &format!("shared-{i}-running"),
                Phase::Running,
                "oncall@example.com",
                Some(Duration::from_secs(2)),
            ))
            .await
            .unwrap();
    }
    let messages = wait_for_messages(&sink.maildir, 5, Duration::from_secs(30));
    assert_eq!(messages.len(), 5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        maildir_messages(&sink.maildir).len(),
        5,
        "an alert went out twice"
    );
}

#[tokio::test]
async fn deadline_inputs_are_checked_and_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let cases: Vec<(EnqueueRequest, &str, &str)> = vec![
        (
            event("a", "a", Phase::Running, "x@example.com", None),
            "execution.phase",
            "set deadline",
        ),
        (
            event(
                "b",
                "b",
                Phase::Succeeded,
                "x@example.com",
                Some(Duration::from_secs(60)),
            ),
            "deadline",
            "only a non-terminal phase",
        ),
        (
            event(
                "c",
                "c",
                Phase::Running,
                "x@example.com",
                Some(Duration::from_millis(500)),
            ),
            "deadline",
            "from 1s to 30 days",
        ),
        (
            event(
                "d",
                "d",
                Phase::Running,
                "x@example.com",
                Some(Duration::from_secs(31 * 24 * 3600)),
            ),
            "deadline",
            "from 1s to 30 days",
        ),
        (
            {
                let mut r = event(
                    "e",
                    "e",
                    Phase::Running,
                    "x@example.com",
                    Some(Duration::from_secs(5)),
                );
                r.execution.as_mut().unwrap().still_running_after = Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                });
                r
            },
            "execution.still_running_after",
            "set by the server",
        ),
        (
            event(
                "f",
                "f",
                Phase::Undefined,
                "x@example.com",
                Some(Duration::from_secs(5)),
            ),
            "execution.phase",
            "must be a terminal phase",
        ),
    ];
    for (request, field, words) in cases {
        let status = client.enqueue(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        let violations = field_violations(&status);
        assert!(
            violations
                .iter()
                .any(|(f, d)| f == field && d.contains(words)),
            "{field}: {words:?} not in {violations:?}"
        );
    }
    // Still serving, and nothing was recorded.
    assert!(list_all(&mut client, "").await.is_empty());
}
