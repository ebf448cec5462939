//! SMTP as FlyteAdmin does it, against a real server that offers STARTTLS and AUTH: the client
//! upgrades to TLS, authenticates with PLAIN using the password from FlyteAdmin's secret
//! convention, and a wrong password leaves the delivery retrying with the reason.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{DeliveryState, EnqueueRequest};

fn start_peer(dir: &Path, port: u16) -> Peer {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let args = [
        port.to_string().into(),
        dir.join("sink").into(),
        dir.join("auth.jsonl").into(),
        cert.into(),
        key.into(),
        "flyte".into(),
        "s3cr3t pass".into(),
    ];
    start_python_peer("smtp_tls_auth.py", &args, port)
}

fn config(port: u16, secrets: &Path) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: {port}
      smtpSkipTLSVerify: true
      smtpUsername: flyte
      smtpPasswordSecretName: smtp_pw
flyteNotify:
  secretsDir: {secrets}
  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 3 }}
"#,
        secrets = secrets.display()
    )
}

async fn enqueue_one(server: &Server) {
    let mut client = server.client().await;
    client
        .enqueue(EnqueueRequest {
            request_id: "tls".into(),
            execution: Some(failed_execution("exec-tls")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
            webhooks: Vec::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn starttls_then_plain_auth_with_the_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _peer = start_peer(dir.path(), port);
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    // FlyteAdmin trims the secret file's trailing newline; so do we.
    std::fs::write(secrets.join("smtp_pw"), "s3cr3t pass\n").unwrap();
    let server = Server::start(dir.path(), Some(&config(port, &secrets)));
    enqueue_one(&server).await;

    let files = wait_for_messages(&dir.path().join("sink"), 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1, "log:\n{}", server.log());
    let mail = parse_mail(&files[0]);
    assert_eq!(mail.to, vec!["oncall@example.com"]);
    assert_eq!(
        mail.subject,
        "Flyte execution flytesnacks/development/exec-tls failed"
    );
    let auth = std::fs::read_to_string(dir.path().join("auth.jsonl")).unwrap();
    let attempts: Vec<serde_json::Value> = auth
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(attempts.len(), 1, "{auth}");
    assert_eq!(attempts[0]["mechanism"], "PLAIN");
    assert_eq!(attempts[0]["login"], "flyte");
    assert_eq!(attempts[0]["password_ok"], true);
    assert_eq!(attempts[0]["tls"], true, "AUTH before STARTTLS");
}

#[tokio::test]
async fn a_wrong_password_is_retried_with_the_reason_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _peer = start_peer(dir.path(), port);
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("smtp_pw"), "wrong").unwrap();
    let server = Server::start(dir.path(), Some(&config(port, &secrets)));
    enqueue_one(&server).await;

    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivery = loop {
        let pending = list_all(&mut client, "").await;
        if let Some(d) = pending.first().filter(|d| d.attempts == 1) {
            break d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no attempt recorded; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery.state, DeliveryState::Retrying as i32);
    assert!(
        delivery.last_error.contains("AUTH"),
        "{}",
        delivery.last_error
    );
    assert!(
        delivery.last_error.contains("535"),
        "{}",
        delivery.last_error
    );
    assert!(
        !delivery.last_error.contains("wrong"),
        "the password leaked: {}",
        delivery.last_error
    );
    assert!(maildir_messages(&dir.path().join("sink")).is_empty());
}

/// FlyteAdmin sends without authenticating when the server offers no AUTH; so do we, but a
/// configured username the server never asked for is worth one warning in the log.
#[tokio::test]
async fn a_username_with_a_server_that_offers_no_auth_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let _sink = SmtpSink::start(port, &sink);
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("smtp_pw"), "s3cr3t pass\n").unwrap();
    let server = Server::start(dir.path(), Some(&config(port, &secrets)));
    let mut client = server.client().await;
    for i in 0..2 {
        client
            .enqueue(EnqueueRequest {
                request_id: format!("no-auth-{i}"),
                execution: Some(failed_execution(&format!("exec-no-auth-{i}"))),
                notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
                webhooks: Vec::new(),
            })
            .await
            .unwrap();
    }
    let files = wait_for_messages(&sink, 2, Duration::from_secs(20));
    assert_eq!(files.len(), 2, "log:\n{}", server.log());
    let log = server.log();
    let warnings = log
        .matches("offers no AUTH PLAIN (nor STARTTLS, after which servers often offer it): sending without authenticating although smtpUsername is set")
        .count();
    assert_eq!(warnings, 1, "one warning, not one per send; log:\n{log}");
}
