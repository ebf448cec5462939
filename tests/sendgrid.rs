//! SendGrid end to end: the real binary against a local stand-in for SendGrid's v3 API
//! (tests/peers/sendgrid_sink.py) that records every request and answers from a script.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{DeliveryState, EnqueueRequest, PreviewRequest};

const KEY_VAR: &str = "FLYTE_NOTIFY_TEST_SENDGRID_KEY";
const KEY: &str = "SG.test-key.s3cr3t-part";

fn config(port: u16, retry: &str) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: SendGrid
      apiKeyEnvVar: {KEY_VAR}
flyteNotify:
  sendgrid:
    baseUrl: http://127.0.0.1:{port}/
  retry: {retry}
"#
    )
}

/// A sink answering `script`, and the server sending to it.
fn start(dir: &Path, script: &str, retry: &str) -> (Peer, Server) {
    let port = free_port();
    let sink = start_sendgrid_sink(port, &dir.join("requests.jsonl"), script);
    let server = Server::start_env(dir, &config(port, retry), &[(KEY_VAR, KEY)]);
    (sink, server)
}

fn requests(dir: &Path) -> Vec<serde_json::Value> {
    read_jsonl(&dir.join("requests.jsonl"))
}

fn request(name: &str, recipients: &[&str]) -> EnqueueRequest {
    let mut execution = failed_execution(name);
    // A fixed time, so that Preview renders the very bodies that are sent.
    execution.occurred_at = Some(prost_types::Timestamp {
        seconds: 1_790_000_000,
        nanos: 0,
    });
    EnqueueRequest {
        request_id: name.into(),
        execution: Some(execution),
        notifications: vec![email(&[Phase::Failed], recipients, "")],
        webhooks: Vec::new(),
        deadline: None,
    }
}

#[tokio::test]
async fn the_request_is_sendgrids_mail_send_with_both_parts_and_the_delivery_id() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, server) = start(dir.path(), "", "{ baseDelay: 1h, maxDelay: 2h }");
    let mut client = server.client().await;
    let req = request(
        "exec-sg",
        &["oncall@example.com", "Team <team@example.com>"],
    );
    let preview = client
        .preview(PreviewRequest {
            execution: req.execution.clone(),
            notifications: req.notifications.clone(),
            webhooks: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rendered = &preview.messages[0];
    let ids = client.enqueue(req).await.unwrap().into_inner().delivery_ids;
    wait_for_pending(&server, "", Duration::from_secs(20), |d| d.is_empty()).await;

    let seen = requests(dir.path());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let r = &seen[0];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/v3/mail/send");
    assert_eq!(r["headers"]["authorization"], format!("Bearer {KEY}"));
    assert_eq!(r["headers"]["content-type"], "application/json");
    assert_eq!(
        rendered.subject,
        "Flyte execution flytesnacks/development/exec-sg failed"
    );
    assert!(
        rendered.text_body.contains("x < 0 & y > \"1\""),
        "{rendered:?}"
    );
    assert!(rendered.html_body.contains("x &#60; 0"), "{rendered:?}");
    let id = &ids[0];
    assert_eq!(
        r["body"],
        serde_json::json!({
            "personalizations": [{"to": [
                {"email": "oncall@example.com"},
                {"email": "team@example.com", "name": "Team"},
            ]}],
            "from": {"email": "flyte@example.com", "name": "Flyte Notifications"},
            "subject": rendered.subject,
            "content": [
                {"type": "text/plain", "value": rendered.text_body},
                {"type": "text/html", "value": rendered.html_body},
            ],
            "headers": {"Message-ID": format!("<{id}.flyte-notify@example.com>")},
            "custom_args": {"flyte_notify_delivery_id": id},
        })
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_accepted_and_it_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    // The first retry comes 250-500 ms after the failure: time to see it retrying.
    let (_sink, server) = start(
        dir.path(),
        "500,500,500,202",
        "{ baseDelay: 500ms, maxDelay: 1s, maxAttempts: 10 }",
    );
    let mut client = server.client().await;
    client
        .enqueue(request("exec-5xx", &["oncall@example.com"]))
        .await
        .unwrap();
    let retrying = wait_for_pending(
        &server,
        "eq(state,retrying)",
        Duration::from_secs(20),
        |d| !d.is_empty(),
    )
    .await;
    let error = &retrying[0].last_error;
    assert!(
        error.starts_with("attempt ")
            && error.ends_with(": sendgrid: HTTP 500 Internal Server Error: Internal server error"),
        "{error}"
    );
    wait_for_pending(&server, "", Duration::from_secs(20), |d| d.is_empty()).await;
    // Nothing more goes out once SendGrid has accepted it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = requests(dir.path());
    let statuses: Vec<i64> = seen.iter().map(|r| r["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 500, 202]);
    // Every attempt is the same message: SendGrid's activity shows one delivery id.
    assert!(seen.iter().all(|r| r["body"] == seen[0]["body"]));
}

#[tokio::test]
async fn a_rejected_message_is_dead_with_sendgrids_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, server) = start(dir.path(), "400", "{ baseDelay: 100ms, maxDelay: 1s }");
    let mut client = server.client().await;
    client
        .enqueue(request("exec-400", &["oncall@example.com"]))
        .await
        .unwrap();
    let dead = wait_for_pending(&server, "eq(state,dead)", Duration::from_secs(20), |d| {
        !d.is_empty()
    })
    .await;
    assert_eq!(dead[0].state, DeliveryState::Dead as i32);
    assert_eq!(
        dead[0].last_error,
        "permanent failure on attempt 1: sendgrid: HTTP 400 Bad Request: The from address does \
         not match a verified Sender Identity. (field from)"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        requests(dir.path()).len(),
        1,
        "a permanent failure is not retried"
    );
}

#[tokio::test]
async fn a_refused_key_is_retried_and_the_key_is_in_no_error_or_log() {
    let dir = tempfile::tempdir().unwrap();
    // The sink's 401 quotes the Authorization header back, as a careless proxy might.
    let (_sink, server) = start(
        dir.path(),
        "401,202",
        "{ baseDelay: 500ms, maxDelay: 1s, maxAttempts: 10 }",
    );
    let mut client = server.client().await;
    client
        .enqueue(request("exec-401", &["oncall@example.com"]))
        .await
        .unwrap();
    let retrying = wait_for_pending(
        &server,
        "eq(state,retrying)",
        Duration::from_secs(20),
        |d| !d.is_empty(),
    )
    .await;
    let error = &retrying[0].last_error;
    assert!(error.contains("HTTP 401 Unauthorized"), "{error}");
    assert!(error.contains("check the API key"), "{error}");
    assert!(error.contains("Bearer <redacted>"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
    wait_for_pending(&server, "", Duration::from_secs(20), |d| d.is_empty()).await;
    let log = server.log();
    assert!(log.contains("email goes out through SendGrid"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
}

#[tokio::test]
async fn retry_after_is_honoured_over_the_backoff() {
    let dir = tempfile::tempdir().unwrap();
    // An hour of backoff: only SendGrid's Retry-After of one second can bring the retry sooner.
    let (_sink, server) = start(dir.path(), "429@1", "{ baseDelay: 1h, maxDelay: 2h }");
    let mut client = server.client().await;
    client
        .enqueue(request("exec-429", &["oncall@example.com"]))
        .await
        .unwrap();
    wait_for_pending(&server, "", Duration::from_secs(20), |d| d.is_empty()).await;
    let statuses: Vec<i64> = requests(dir.path())
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 202]);
}

#[test]
fn a_missing_api_key_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(free_port(), "{}")).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&path)
        .env_remove(KEY_VAR)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("apiKeyEnvVar") && stderr.contains(KEY_VAR),
        "{stderr}"
    );
}
