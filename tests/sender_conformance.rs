//! Every email sender passes the same checks, through the `Sender` trait alone, each against a
//! real peer: a Maildir on disk, aiosmtpd (plain, STARTTLS and implicit TLS), the SendGrid
//! stand-in, and moto's SES. A new sender gets a backend function here and so the same checks.

mod common;

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::smtp::{PeerTls, SMTP_PASSWORD, SMTP_USER, TlsSmtpPeer};
use common::*;
use flyte_notify::channels::email::maildir::MaildirSender;
use flyte_notify::channels::email::sendgrid::SendgridSender;
use flyte_notify::channels::email::ses::SesSender;
use flyte_notify::channels::email::smtp::{SmtpSender, SmtpTls};
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{DeliveryRef, EmailMessage, LeaseToken, Rendered};
use futures::future::BoxFuture;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One message as a peer received it.
#[derive(Debug)]
struct Received {
    to: Vec<String>,
    subject: String,
    html: String,
    text: String,
}

impl From<ParsedMail> for Received {
    fn from(m: ParsedMail) -> Self {
        Received {
            to: m.to,
            subject: m.subject,
            html: m.html,
            text: m.text,
        }
    }
}

/// What the live peer has received so far.
type Reader = Box<dyn Fn() -> BoxFuture<'static, Vec<Received>>>;

/// A sender with a live peer, one whose peer is down, and a way to read what the live peer got.
struct Backend {
    sender: Arc<dyn Sender>,
    down: Arc<dyn Sender>,
    received: Reader,
    /// Whatever must live as long as the test: temporary dirs, peer processes.
    _keep: Vec<Box<dyn Any>>,
}

fn maildir_reader(dir: PathBuf) -> Reader {
    Box::new(move || {
        let files = maildir_messages(&dir);
        Box::pin(async move { files.iter().map(|f| parse_mail(f).into()).collect() })
    })
}

async fn maildir() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("maildir");
    let sender = MaildirSender::open(&root).unwrap();
    // A Maildir whose new/ is a file cannot take mail: the disk is the peer that is down.
    let broken = dir.path().join("broken");
    let down = MaildirSender::open(&broken).unwrap();
    std::fs::remove_dir(broken.join("new")).unwrap();
    std::fs::write(broken.join("new"), "").unwrap();
    Backend {
        sender: Arc::new(sender),
        down: Arc::new(down),
        received: maildir_reader(root),
        _keep: vec![Box::new(dir) as Box<dyn Any>],
    }
}

async fn smtp() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let smtp = |port| SmtpSender::new("127.0.0.1".into(), port, false, None, TIMEOUT);
    Backend {
        sender: Arc::new(smtp(port)),
        down: Arc::new(smtp(free_port())),
        received: maildir_reader(dir.path().join("sink")),
        _keep: vec![Box::new(sink) as Box<dyn Any>, Box::new(dir)],
    }
}

/// aiosmtpd with TLS (`peer`) and AUTH, and a sender in `mode` that logs in.
async fn smtp_tls(peer: PeerTls, mode: SmtpTls) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = TlsSmtpPeer::start(dir.path(), port, peer);
    let smtp = |port| {
        let login = Some((SMTP_USER.to_string(), SMTP_PASSWORD.to_string()));
        SmtpSender::new("127.0.0.1".into(), port, true, login, TIMEOUT).with_tls(mode)
    };
    Backend {
        sender: Arc::new(smtp(port)),
        down: Arc::new(smtp(free_port())),
        received: maildir_reader(sink.maildir.clone()),
        _keep: vec![Box::new(sink) as Box<dyn Any>, Box::new(dir)],
    }
}

async fn sendgrid() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("requests.jsonl");
    let sink = start_sendgrid_sink(port, &log, "");
    let sendgrid = |port| {
        let url = format!("http://127.0.0.1:{port}");
        SendgridSender::new(&url, "SG.conformance".into(), TIMEOUT).unwrap()
    };
    let received: Reader = Box::new(move || {
        let requests = read_jsonl(&log);
        Box::pin(async move {
            requests
                .iter()
                .map(|r| {
                    let body = &r["body"];
                    let to = body["personalizations"][0]["to"].as_array().unwrap();
                    let part = |kind: &str| {
                        body["content"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|c| c["type"] == kind)
                            .map(|c| c["value"].as_str().unwrap().to_string())
                            .unwrap_or_default()
                    };
                    Received {
                        to: to
                            .iter()
                            .map(|a| a["email"].as_str().unwrap().to_string())
                            .collect(),
                        subject: body["subject"].as_str().unwrap().to_string(),
                        html: part("text/html"),
                        text: part("text/plain"),
                    }
                })
                .collect()
        })
    });
    Backend {
        sender: Arc::new(sendgrid(port)),
        down: Arc::new(sendgrid(free_port())),
        received,
        _keep: vec![Box::new(sink) as Box<dyn Any>, Box::new(dir)],
    }
}

async fn ses() -> Backend {
    let moto = Arc::new(Moto::start());
    moto.verify_sender("flyte@example.com").await;
    let down = ses_client_at(&format!("http://127.0.0.1:{}", free_port()));
    let reader = moto.clone();
    let received: Reader = Box::new(move || {
        let moto = reader.clone();
        Box::pin(async move {
            moto.sent_raw_messages()
                .await
                .into_iter()
                .map(|(_, _, raw)| parse_mail_bytes(raw.as_bytes()).into())
                .collect()
        })
    });
    Backend {
        sender: Arc::new(SesSender::new(moto.ses_client(), TIMEOUT)),
        down: Arc::new(SesSender::new(down, TIMEOUT)),
        received,
        _keep: vec![Box::new(moto) as Box<dyn Any>],
    }
}

fn delivery(id: &str) -> DeliveryRef {
    DeliveryRef {
        id: id.into(),
        request_id: id.into(),
        attempt: 1,
        lease: LeaseToken(1),
    }
}

fn message() -> Rendered {
    Rendered::Email(EmailMessage {
        recipients: vec!["oncall@example.com".into(), "team@example.com".into()],
        sender: "flyte@example.com".into(),
        subject: "flytesnacks/development/exec-1 failed".into(),
        html_body: "<p>Execution <b>exec-1</b> failed: x &lt; 0</p>".into(),
        text_body: "Execution exec-1 failed: x < 0".into(),
    })
}

async fn wait_for(backend: &Backend, count: usize) -> Vec<Received> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let received = (backend.received)().await;
        if received.len() >= count || std::time::Instant::now() >= deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn conformance(backend: Backend) {
    let name = backend.sender.name();

    // One message to two recipients arrives once, with the subject and both parts.
    backend
        .sender
        .send(&delivery("0194-conformance"), &message())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    wait_for(&backend, 1).await;
    // Anything sent twice would show by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = (backend.received)().await;
    assert_eq!(received.len(), 1, "{name}: {received:?}");
    let mail = &received[0];
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(to, ["oncall@example.com", "team@example.com"], "{name}");
    assert_eq!(
        mail.subject, "flytesnacks/development/exec-1 failed",
        "{name}"
    );
    assert!(mail.html.contains("<b>exec-1</b>"), "{name}: {mail:?}");
    assert_eq!(
        mail.text.trim_end(),
        "Execution exec-1 failed: x < 0",
        "{name}"
    );

    // A peer that is down is worth another try, not a dead delivery.
    let e = backend
        .down
        .send(&delivery("0194-down"), &message())
        .await
        .expect_err(name);
    assert!(
        matches!(e, SendError::Retryable { .. }),
        "{name}: a peer that is down must be retryable: {e:?}"
    );
}

#[tokio::test]
async fn maildir_conforms() {
    conformance(maildir().await).await;
}

#[tokio::test]
async fn smtp_conforms() {
    conformance(smtp().await).await;
}

#[tokio::test]
async fn smtp_starttls_auth_conforms() {
    conformance(smtp_tls(PeerTls::StartTls, SmtpTls::StartTls).await).await;
}

#[tokio::test]
async fn smtp_implicit_tls_conforms() {
    conformance(smtp_tls(PeerTls::Implicit, SmtpTls::Implicit).await).await;
}

#[tokio::test]
async fn sendgrid_conforms() {
    conformance(sendgrid().await).await;
}

#[tokio::test]
async fn ses_conforms() {
    conformance(ses().await).await;
}
