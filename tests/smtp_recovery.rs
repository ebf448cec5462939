//! Nothing accepted is lost: with the SMTP server down, deliveries wait in the ledger as retrying,
//! survive a SIGKILL, and all go out once the server is up; health tells meanwhile.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::DeliveryState;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;
use futures::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;

const COUNT: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_notifications_survive_a_dead_smtp_server_and_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    subject: "{{{{ name }}}} {{{{ phase }}}}"
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: "{port}"
flyteNotify:
  retry: {{ baseDelay: 200ms, maxDelay: 1s, maxAttempts: 10000 }}
"#
    );
    let mut server = Server::start(dir.path(), Some(&config));
    let client = server.client().await;

    let ids: Vec<String> = futures::stream::iter(0..COUNT)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let r = client
                    .enqueue(EnqueueRequest {
                        request_id: format!("recovery-{i}"),
                        execution: Some(failed_execution(&format!("exec-{i:04}"))),
                        notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
                        webhooks: Vec::new(),
                        deadline: None,
                    })
                    .await
                    .expect("enqueue")
                    .into_inner();
                r.delivery_ids
            }
        })
        .buffer_unordered(32)
        .concat()
        .await;
    assert_eq!(ids.len(), COUNT);

    // Every delivery is tried against the closed port and moves to retrying.
    let mut client = client;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let retrying = list_all(&mut client, "eq(state,retrying)").await;
        if retrying.len() == COUNT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {COUNT} retrying; log:\n{}",
            retrying.len(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    server.kill();

    // After the kill, a new process sees all of them, each with its attempts and last error, and
    // once its own sends fail again it says so on the processing side; the API keeps serving.
    let server = server.restart();
    wait_for_processor_health(&server, ServingStatus::NotServing).await;
    assert_eq!(
        health_status(connect(&server).await).await.unwrap(),
        ServingStatus::Serving as i32
    );
    let mut client = server.client().await;
    let pending = list_all(&mut client, "").await;
    assert_eq!(pending.len(), COUNT);
    let listed: BTreeSet<String> = pending.iter().map(|d| d.id.clone()).collect();
    assert_eq!(listed, ids.iter().cloned().collect::<BTreeSet<_>>());
    for d in &pending {
        assert_eq!(d.state, DeliveryState::Retrying as i32, "{d:?}");
        assert!(d.attempts >= 1, "{d:?}");
        assert!(
            d.last_error.contains("Connection refused"),
            "{}",
            d.last_error
        );
        assert!(d.next_attempt_at.is_some(), "{d:?}");
    }

    // The mail server comes up: every one of the thousand arrives, once.
    let sink_dir = dir.path().join("sink");
    let _sink = SmtpSink::start(port, &sink_dir);
    let files = wait_for_messages(&sink_dir, COUNT, Duration::from_secs(180));
    assert_eq!(files.len(), COUNT, "log:\n{}", server.log());
    wait_for_processor_health(&server, ServingStatus::Serving).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !list_all(&mut client, "").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "deliveries still pending after all mail arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files = maildir_messages(&sink_dir);
    assert_eq!(files.len(), COUNT, "duplicates were sent");
    let subjects: BTreeSet<String> = files.iter().map(|f| parse_mail(f).subject).collect();
    let expected: BTreeSet<String> = (0..COUNT).map(|i| format!("exec-{i:04} failed")).collect();
    assert_eq!(subjects, expected);
}
