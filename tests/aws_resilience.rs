//! On AWS, nothing accepted is lost and nothing recorded as delivered is sent again: not when the
//! service is killed with messages in flight, not when AWS (moto) goes away for a while.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::aws::*;
use common::*;
use flyte_notify::delivery::{Content, Payload};
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;
use sqlx::{Connection, Row};
use tonic_health::pb::health_check_response::ServingStatus;

fn flyteadmin_email(i: usize) -> EmailMessage {
    EmailMessage {
        recipients_email: vec!["oncall@example.com".into()],
        sender_email: SENDER.into(),
        subject_line: format!("execution e{i:02} has failed"),
        body: format!("<p>e{i:02}</p>"),
    }
}

/// Subjects of the deliveries a (stopped) service's ledger records as delivered.
async fn delivered_subjects(data_dir: &std::path::Path) -> Vec<String> {
    let url = format!("sqlite://{}", data_dir.join("ledger.sqlite").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT payload FROM deliveries WHERE state = 'delivered'")
        .fetch_all(&mut db)
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let (payload, _): (Payload, _) = Payload::decode(r.get::<&str, _>(0)).unwrap();
            match payload.content {
                Content::Rendered(email) => email.subject,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

fn counts(sent: &[(String, Vec<String>, String)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, _, raw) in sent {
        *counts
            .entry(parse_mail_bytes(raw.as_bytes()).subject)
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_with_messages_in_flight_loses_none_and_resends_nothing_recorded() {
    const COUNT: usize = 30;
    let aws = Aws::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = aws.server(dir.path());
    for i in 0..COUNT {
        aws.publish_like_flyteadmin(&flyteadmin_email(i)).await;
    }
    // Some are sent, the rest still on the queue or in the ledger: kill it there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while aws.moto.sent_raw_messages().await.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "nothing sent; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let recorded = delivered_subjects(&server.data_dir).await;
    let server = server.restart();

    aws.wait_for_sent(COUNT).await;
    // Let anything still due go out, so that a second send would show.
    aws.wait_for_empty_queue().await;
    wait_for_pending(&server, "", Duration::from_secs(30), |d| d.is_empty()).await;
    let sent = counts(&aws.moto.sent_raw_messages().await);
    for i in 0..COUNT {
        let subject = flyteadmin_email(i).subject_line;
        assert!(
            sent.get(&subject).is_some_and(|n| *n >= 1),
            "{subject} never sent; log:\n{}",
            server.log()
        );
    }
    // At least once for what was in flight; exactly once for what the ledger had recorded.
    for subject in &recorded {
        assert_eq!(
            sent[subject], 1,
            "{subject} was recorded delivered and sent again"
        );
    }
    assert!(!recorded.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_outage_is_reported_and_everything_accepted_goes_out_afterwards() {
    let aws = Aws::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = aws.config().replace(
        "maxAttempts: 3 }",
        "maxAttempts: 1000 }\n  worker: { sendTimeout: 2s }",
    );
    let env = aws.moto.server_env("AWS_ENDPOINT_URL");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_env(dir.path(), &config, &env);
    wait_for_processor_health(&server, ServingStatus::Serving).await;

    // AWS stops: SNS, SQS and SES at once, every call hanging (SIGSTOP), its state kept.
    let pid = aws.moto.peer.0.id().to_string();
    let signal = |name: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let stopped = Instant::now();
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = client
            .enqueue(EnqueueRequest {
                request_id: format!("outage-{i}"),
                execution: Some(failed_execution(&format!("outage-{i}"))),
                notifications: vec![email(
                    &[flyte_notify::proto::flyteidl::core::workflow_execution::Phase::Failed],
                    &["oncall@example.com"],
                    "",
                )],
                webhooks: Vec::new(),
                deadline: None,
            })
            .await
            .expect("Enqueue answers while AWS is down: the ledger is local")
            .into_inner();
        ids.extend(r.delivery_ids);
    }
    wait_for_processor_health(&server, ServingStatus::NotServing).await;
    let retrying = wait_for_pending(
        &server,
        "eq(state,retrying)",
        Duration::from_secs(30),
        |d| d.len() == 3,
    )
    .await;
    assert!(!retrying[0].last_error.is_empty());
    assert_eq!(
        health_status(connect(&server).await).await.unwrap(),
        ServingStatus::Serving as i32,
        "the API keeps serving"
    );
    if let Some(rest) = Duration::from_secs(10).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    // Back, with everything it held.
    signal("-CONT");
    wait_for_processor_health(&server, ServingStatus::Serving).await;
    // Every one goes out. A send that timed out while moto was stopped may have been taken by
    // moto when it resumed, and the retry sent it again: at least once, with the same
    // Message-ID, which is what a timeout allows.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let subjects = counts(&aws.moto.sent_raw_messages().await);
        if subjects.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sent: {subjects:?}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_pending(&server, "", Duration::from_secs(30), |d| d.is_empty()).await;
    assert_eq!(ids.len(), 3);
}
