//! `notifications.type: gcp` against the Pub/Sub emulator, with SendGrid at a local sink: what
//! Enqueue publishes is FlyteAdmin's message, FlyteAdmin's own message becomes a delivery, a
//! failing SendGrid is retried until it takes the mail (once), and no message is acked before
//! the ledger holds it.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::pubsub::{Emulator, PROJECT};
use common::*;
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;
use flyte_notify::queue::wire;

const KEY_VAR: &str = "FLYTE_NOTIFY_TEST_SENDGRID_KEY";
const KEY: &str = "SG.test-key";

fn config(sink_port: u16) -> String {
    format!(
        r#"
notifications:
  type: gcp
  gcp: {{ projectId: {PROJECT} }}
  publisher: {{ topicName: flyte-notifications }}
  processor: {{ queueName: flyte-notify }}
  emailer:
    sender: flyte@example.com
    subject: "Notice: Execution \"{{{{ name }}}}\" has {{{{ phase }}}} in \"{{{{ domain }}}}\"."
    emailServerConfig: {{ serviceName: sendgrid, apiKeyEnvVar: {KEY_VAR} }}
flyteNotify:
  sendgrid: {{ baseUrl: "http://127.0.0.1:{sink_port}" }}
  retry: {{ baseDelay: 300ms, maxDelay: 1s, maxAttempts: 10 }}
"#
    )
}

async fn start(dir: &Path, script: &str, what: &str) -> Option<(Emulator, Peer, Server)> {
    let emulator = Emulator::start_unless_skipped(what)?;
    emulator
        .create("flyte-notifications", "flyte-notify", 10)
        .await;
    // A second subscription: what a FlyteAdmin processor on the topic would receive.
    emulator
        .create_subscription("flyte-notifications", "observer")
        .await;
    let port = free_port();
    let sink = start_sendgrid_sink(port, &dir.join("requests.jsonl"), script);
    let host = emulator.host();
    let server = Server::start_env(
        dir,
        &config(port),
        &[(KEY_VAR, KEY), ("PUBSUB_EMULATOR_HOST", host.as_str())],
    );
    Some((emulator, sink, server))
}

fn sent(dir: &Path) -> Vec<serde_json::Value> {
    read_jsonl(&dir.join("requests.jsonl"))
        .into_iter()
        .filter(|r| {
            r["status"]
                .as_i64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .collect()
}

async fn wait_for_sent(dir: &Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = sent(dir);
        if s.len() >= count || std::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_on_gcp_is_published_as_flyteadmin_would_and_sent_by_sendgrid_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((emulator, _sink, server)) =
        start(dir.path(), "202", "gcp_queue: publish and send").await
    else {
        return;
    };
    let mut client = server.client().await;
    client
        .enqueue(EnqueueRequest {
            request_id: "gcp-1".into(),
            execution: Some(failed_execution("f8a3c2e1")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap();
    let sent_now = wait_for_sent(dir.path(), 1).await;
    assert_eq!(sent_now.len(), 1, "log:\n{}", server.log());
    assert_eq!(
        sent_now[0]["body"]["subject"],
        "Notice: Execution \"f8a3c2e1\" has failed in \"development\"."
    );
    // The observer sees FlyteAdmin's format: raw EmailMessage bytes under key.
    let pulled = emulator.pull("observer").await;
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    let (data, attributes) = &pulled[0];
    assert_eq!(attributes["key"], "flyteidl.admin.EmailNotification");
    assert!(
        attributes.contains_key("flyte-notify-delivery-id"),
        "{attributes:?}"
    );
    let message = <EmailMessage as prost::Message>::decode(data.as_slice()).unwrap();
    assert_eq!(message.recipients_email, vec!["oncall@example.com"]);
    // Our own announcement was received, found in the ledger and acked: nothing is sent twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sent(dir.path()).len(), 1);
    assert!(list_all(&mut client, "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flyteadmins_message_is_retried_through_sendgrid_errors_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((emulator, _sink, server)) = start(
        dir.path(),
        "500,500,500,202",
        "gcp_queue: FlyteAdmin's message retried",
    )
    .await
    else {
        return;
    };
    let message = EmailMessage {
        recipients_email: vec!["oncall@example.com".into()],
        sender_email: "flyte@example.com".into(),
        subject_line: "Notice: Execution \"e1\" has failed in \"development\".".into(),
        body: "<html><body>Execution e1 has failed.</body></html>".into(),
    };
    let (data, attributes) = wire::to_pubsub_email(&message);
    emulator
        .publish("flyte-notifications", &data, attributes)
        .await;
    // A poison message beside it: a dead entry, and the processor goes on.
    emulator
        .publish(
            "flyte-notifications",
            b"\xff\xfe",
            HashMap::from([("key".to_string(), "something.else".to_string())]),
        )
        .await;
    let retrying = wait_for_pending(
        &server,
        "eq(state,retrying)",
        Duration::from_secs(30),
        |d| !d.is_empty(),
    )
    .await;
    assert!(
        retrying[0].last_error.contains("sendgrid: HTTP 500"),
        "{:?}",
        retrying[0]
    );
    assert!(retrying[0].request_id.starts_with("pubsub:"));
    let dead = wait_for_pending(&server, "eq(state,dead)", Duration::from_secs(30), |d| {
        d.len() == 1
    })
    .await;
    assert!(
        dead[0].last_error.contains("\"something.else\""),
        "{:?}",
        dead[0]
    );
    let delivered = wait_for_sent(dir.path(), 1).await;
    assert_eq!(delivered.len(), 1, "log:\n{}", server.log());
    assert_eq!(delivered[0]["body"]["subject"], message.subject_line);
    // Four requests in all: three refused, one taken; none after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let statuses: Vec<i64> = read_jsonl(&dir.path().join("requests.jsonl"))
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 202]);
    // Both messages were acked once recorded: the subscription holds nothing.
    assert!(emulator.pull("flyte-notify").await.is_empty());
}
