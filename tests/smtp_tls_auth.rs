//! SMTP against a real server (aiosmtpd) that offers TLS and AUTH. Through the binary: the client
//! upgrades with STARTTLS and authenticates with PLAIN using the password from FlyteAdmin's
//! secret convention, and a wrong password makes the delivery dead with a reason. Through
//! `SmtpSender` itself: implicit TLS, required STARTTLS, a refused login, one connection reused
//! for many messages, and a server that dropped the connection replaced without the caller
//! noticing.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::smtp::{PeerTls, SMTP_PASSWORD, SMTP_USER, TlsSmtpPeer};
use common::*;
use flyte_notify::channels::email::smtp::{SmtpSender, SmtpTls};
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{DeliveryRef, EmailMessage, LeaseToken, Rendered};
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{DeliveryState, EnqueueRequest};

const TIMEOUT: Duration = Duration::from_secs(10);

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

/// `dir/secrets` holding `password` under the name the config gives.
fn secrets_dir(dir: &Path, password: &str) -> std::path::PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("smtp_pw"), password).unwrap();
    secrets
}

async fn enqueue_one(server: &Server) {
    let mut client = server.client().await;
    client
        .enqueue(EnqueueRequest {
            request_id: "tls".into(),
            execution: Some(failed_execution("exec-tls")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap();
}

/// A sender to the peer on `port`, accepting its self-signed certificate.
fn sender(port: u16, password: &str, tls: SmtpTls) -> SmtpSender {
    SmtpSender::new(
        "127.0.0.1".into(),
        port,
        true,
        Some((SMTP_USER.into(), password.into())),
        TIMEOUT,
    )
    .with_tls(tls)
}

fn delivery(id: &str) -> DeliveryRef {
    DeliveryRef {
        id: id.into(),
        request_id: id.into(),
        attempt: 1,
        lease: LeaseToken(1),
    }
}

fn message(subject: &str) -> Rendered {
    Rendered::Email(EmailMessage {
        recipients: vec!["oncall@example.com".into()],
        cc: Vec::new(),
        bcc: Vec::new(),
        provider_template: None,
        sender: "Flyte <flyte@example.com>".into(),
        subject: subject.into(),
        html_body: "<p>Execution <b>exec-1</b> failed</p>".into(),
        text_body: "Execution exec-1 failed".into(),
    })
}

/// Sends `count` messages one after the other, each of which must succeed.
async fn send_in_turn(sender: &SmtpSender, ids: std::ops::Range<usize>) {
    for i in ids {
        let id = format!("0194-seq-{i}");
        sender
            .send(&delivery(&id), &message(&format!("message {i}")))
            .await
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
}

#[tokio::test]
async fn starttls_then_plain_auth_with_the_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    // FlyteAdmin trims the secret file's trailing newline; so do we.
    let secrets = secrets_dir(dir.path(), &format!("{SMTP_PASSWORD}\n"));
    let server = Server::start(dir.path(), Some(&config(port, &secrets)));
    enqueue_one(&server).await;

    let files = wait_for_messages(&peer.maildir, 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1, "log:\n{}", server.log());
    let mail = parse_mail(&files[0]);
    assert_eq!(mail.to, vec!["oncall@example.com"]);
    assert_eq!(
        mail.subject,
        "Flyte execution flytesnacks/development/exec-tls failed"
    );
    let attempts = peer.events("auth");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["mechanism"], "PLAIN");
    assert_eq!(attempts[0]["login"], "flyte");
    assert_eq!(attempts[0]["password_ok"], true);
    assert_eq!(attempts[0]["tls"], true, "AUTH before STARTTLS");
}

/// A refused login cannot succeed until the operator changes the password: the delivery dies at
/// its first attempt, and says whose login was refused and where the password comes from.
#[tokio::test]
async fn a_wrong_password_makes_the_delivery_dead_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    let secrets = secrets_dir(dir.path(), "wr0ng-pa55");
    let server = Server::start(dir.path(), Some(&config(port, &secrets)));
    enqueue_one(&server).await;

    let listed = wait_for_pending(&server, "", Duration::from_secs(20), |d| {
        d.first().is_some_and(|d| d.attempts >= 1)
    })
    .await;
    let delivery = &listed[0];
    assert_eq!(
        delivery.state,
        DeliveryState::Dead as i32,
        "{delivery:?}\nlog:\n{}",
        server.log()
    );
    assert_eq!(delivery.attempts, 1, "a refused login is not retried");
    let reason = &delivery.last_error;
    for part in ["AUTH", "535", "\"flyte\"", "smtpPasswordSecretName"] {
        assert!(reason.contains(part), "{part:?} missing from: {reason}");
    }
    assert!(!reason.contains("wr0ng"), "the password leaked: {reason}");
    assert!(
        !server.log().contains("wr0ng"),
        "the password is in the log"
    );
    assert!(maildir_messages(&peer.maildir).is_empty());
}

/// FlyteAdmin sends without authenticating when the server offers no AUTH; so do we, but a
/// configured username the server never asked for is worth one warning in the log.
#[tokio::test]
async fn a_username_with_a_server_that_offers_no_auth_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let _sink = SmtpSink::start(port, &sink);
    let secrets = secrets_dir(dir.path(), &format!("{SMTP_PASSWORD}\n"));
    let server = Server::start(dir.path(), Some(&config(port, &secrets)));
    let mut client = server.client().await;
    for i in 0..2 {
        client
            .enqueue(EnqueueRequest {
                request_id: format!("no-auth-{i}"),
                execution: Some(failed_execution(&format!("exec-no-auth-{i}"))),
                notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
                webhooks: Vec::new(),
                deadline: None,
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

/// With STARTTLS required, the message goes out encrypted and authenticated, and it is a proper
/// email: dated, with its delivery's Message-ID, plain text and HTML as alternatives.
#[tokio::test]
async fn required_starttls_delivers_a_dated_multipart_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    sender(port, SMTP_PASSWORD, SmtpTls::StartTls)
        .send(&delivery("0194-tls"), &message("over STARTTLS"))
        .await
        .expect("send over STARTTLS");

    let files = wait_for_messages(&peer.maildir, 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1);
    let raw = String::from_utf8(std::fs::read(&files[0]).unwrap()).unwrap();
    let header = |name: &str| {
        raw.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} header in:\n{raw}"))
            .to_string()
    };
    chrono::DateTime::parse_from_rfc2822(&header("Date"))
        .unwrap_or_else(|e| panic!("Date {:?}: {e}", header("Date")));
    assert_eq!(header("Message-ID"), "<0194-tls.flyte-notify@example.com>");
    assert!(
        header("Content-Type").starts_with("multipart/alternative;"),
        "{raw}"
    );
    let plain = raw.find("Content-Type: text/plain").expect("a text part");
    let html = raw.find("Content-Type: text/html").expect("an HTML part");
    assert!(plain < html, "the preferred (HTML) part must come last");
    let mail = parse_mail(&files[0]);
    assert_eq!(mail.text.trim_end(), "Execution exec-1 failed");
    assert!(mail.html.contains("<b>exec-1</b>"), "{mail:?}");

    let auth = peer.events("auth");
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0]["password_ok"], true);
    assert_eq!(auth[0]["tls"], true);
    let delivered = peer.events("message");
    assert_eq!(delivered[0]["tls"], true, "{delivered:?}");
}

#[tokio::test]
async fn implicit_tls_delivers_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::Implicit);
    sender(port, SMTP_PASSWORD, SmtpTls::Implicit)
        .send(&delivery("0194-smtps"), &message("over implicit TLS"))
        .await
        .expect("send over implicit TLS");

    let files = wait_for_messages(&peer.maildir, 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1);
    assert_eq!(parse_mail(&files[0]).subject, "over implicit TLS");
    let ehlo = peer.events("ehlo");
    assert_eq!(ehlo.len(), 1, "one EHLO, no STARTTLS: {ehlo:?}");
    assert_eq!(ehlo[0]["tls"], true, "EHLO in clear on an SMTPS port");
    let auth = peer.events("auth");
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0]["password_ok"], true);
    assert_eq!(auth[0]["tls"], true);
}

/// `starttls` means never in clear: a server that does not offer it gets nothing, and the reason
/// says so. Retryable, since a server's TLS can come back (or an attacker stop stripping it).
#[tokio::test]
async fn required_starttls_refuses_a_server_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let _sink = SmtpSink::start(port, &sink);
    let e = sender(port, SMTP_PASSWORD, SmtpTls::StartTls)
        .send(&delivery("0194-clear"), &message("never in clear"))
        .await
        .expect_err("sent in clear");
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().contains("does not offer STARTTLS"), "{e}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(maildir_messages(&sink).is_empty());
}

#[tokio::test]
async fn a_refused_login_is_permanent_and_names_the_user_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    let password = "not-the-password";
    let e = sender(port, password, SmtpTls::Auto)
        .send(&delivery("0194-wrong"), &message("refused"))
        .await
        .expect_err("a wrong password was accepted");
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    for part in [
        "127.0.0.1",
        "AUTH",
        "535",
        "\"flyte\"",
        "smtpPasswordSecretName",
        "flyteNotify.smtp.passwordFile",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {e}");
    }
    assert!(!text.contains(password), "the password leaked: {text}");
    assert_eq!(peer.events("auth")[0]["password_ok"], false);
    assert!(maildir_messages(&peer.maildir).is_empty());
}

/// TCP, TLS and AUTH once for a run of messages, not once per message.
#[tokio::test]
async fn five_messages_in_turn_share_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    let sender = sender(port, SMTP_PASSWORD, SmtpTls::Auto);
    send_in_turn(&sender, 0..5).await;

    let files = wait_for_messages(&peer.maildir, 5, Duration::from_secs(20));
    assert_eq!(files.len(), 5);
    assert_eq!(peer.connections(), 1, "{:?}", peer.events("ehlo"));
    assert_eq!(peer.events("auth").len(), 1, "one login for all five");
    let ports: Vec<_> = peer
        .events("message")
        .iter()
        .map(|m| m["peer"].clone())
        .collect();
    assert!(ports.windows(2).all(|w| w[0] == w[1]), "{ports:?}");
}

/// Sends at the same time each need a connection; once done, the next round reuses them all.
#[tokio::test]
async fn concurrent_sends_each_get_a_connection_and_the_next_round_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    let sender = Arc::new(sender(port, SMTP_PASSWORD, SmtpTls::Auto));
    for round in 0..2 {
        let sends = (0..4).map(|i| {
            let sender = sender.clone();
            async move {
                let id = format!("0194-r{round}-{i}");
                sender.send(&delivery(&id), &message(&id)).await
            }
        });
        for outcome in futures::future::join_all(sends).await {
            outcome.expect("a concurrent send");
        }
    }
    let files = wait_for_messages(&peer.maildir, 8, Duration::from_secs(20));
    assert_eq!(files.len(), 8);
    assert_eq!(peer.connections(), 4, "{:?}", peer.events("ehlo"));
}

/// The server restarts between two sends: the second finds its connection dead before any of
/// the message went out, and sends on a new one. The caller sees two successes.
#[tokio::test]
async fn a_server_restart_between_sends_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sender = sender(port, SMTP_PASSWORD, SmtpTls::Auto);
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    send_in_turn(&sender, 0..1).await;
    drop(peer);
    let peer = TlsSmtpPeer::start(dir.path(), port, PeerTls::StartTls);
    send_in_turn(&sender, 1..3).await;

    let files = wait_for_messages(&peer.maildir, 3, Duration::from_secs(20));
    assert_eq!(files.len(), 3, "each message once");
    assert_eq!(peer.connections(), 2, "{:?}", peer.events("ehlo"));
    assert_eq!(peer.events("auth").len(), 2, "one login per connection");
}

/// A server that closes a connection left idle (with a 421, as aiosmtpd and Postfix do) costs
/// the next send a reconnect, not a failure.
#[tokio::test]
async fn a_connection_the_server_closed_for_idling_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = TlsSmtpPeer::start_with_idle_timeout(dir.path(), port, PeerTls::StartTls, Some(0.5));
    let sender = sender(port, SMTP_PASSWORD, SmtpTls::Auto);
    send_in_turn(&sender, 0..1).await;
    // Well past the server's idle limit, well within ours.
    tokio::time::sleep(Duration::from_secs(3)).await;
    send_in_turn(&sender, 1..2).await;

    let files = wait_for_messages(&peer.maildir, 2, Duration::from_secs(20));
    assert_eq!(files.len(), 2);
    assert_eq!(peer.connections(), 2, "{:?}", peer.events("ehlo"));
}

/// A server that accepts the connection and never says a word: the send ends, retryable, at the
/// sender's timeout rather than holding a worker forever.
#[tokio::test]
async fn a_silent_server_is_a_retryable_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let sender = SmtpSender::new(
        "127.0.0.1".into(),
        port,
        false,
        None,
        Duration::from_secs(1),
    );
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        sender.send(&delivery("0194-silent"), &message("silence")),
    )
    .await
    .expect("the sender's own timeout never fired")
    .expect_err("a silent server accepted the message");
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().contains("no answer within 1s"), "{e}");
    held.abort();
}
