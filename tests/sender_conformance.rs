//! Every sender passes the same checks, through the `Sender` trait alone, each against a real
//! peer. Email senders: a Maildir on disk, aiosmtpd, the SendGrid stand-in, and moto's SES.
//! Native senders over HTTP (webhooks): a receiver that answers from a script
//! (tests/peers/webhook_sink.py), which also shows that a sender tells a retryable failure from
//! a permanent one, gives up on a silent peer, and never puts a secret in its errors. A new
//! sender gets a backend function here and so the same checks.

mod common;

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::http_sink::WebhookSink;
use common::*;
use flyte_notify::channels::email::maildir::MaildirSender;
use flyte_notify::channels::email::sendgrid::SendgridSender;
use flyte_notify::channels::email::ses::SesSender;
use flyte_notify::channels::email::smtp::SmtpSender;
use flyte_notify::channels::net_guard::WebhookPolicy;
use flyte_notify::channels::secret::Secret;
use flyte_notify::channels::webhook::{
    DEFAULT_RATE_LIMIT, WebhookDestination, WebhookSender, WebhookSettings,
};
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{
    DeliveryRef, EmailMessage, LeaseToken, Rendered, WebhookRequest, WebhookTarget,
};
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
async fn sendgrid_conforms() {
    conformance(sendgrid().await).await;
}

#[tokio::test]
async fn ses_conforms() {
    conformance(ses().await).await;
}

/// A native sender over HTTP, made for a peer at `base` (`http://127.0.0.1:PORT`) with
/// `timeout` per attempt, and the message it sends there.
type MakeHttp = Box<dyn Fn(&str, Duration) -> (Arc<dyn Sender>, Rendered)>;

struct HttpBackend {
    make: MakeHttp,
    /// The receiver's key, when requests are signed: the sink checks each signature with it.
    signing_secret: Option<&'static str>,
    /// Texts no error may hold, whatever the peer echoes back.
    secrets: Vec<&'static str>,
}

async fn http_conformance(backend: HttpBackend) {
    let timeout = Duration::from_millis(500);
    let fails = |script: &str| {
        let sink = WebhookSink::start(script, backend.signing_secret);
        let (sender, message) = (backend.make)(&format!("http://127.0.0.1:{}", sink.port), timeout);
        (sink, sender, message)
    };
    let no_secret = |name: &str, e: &SendError| {
        for secret in &backend.secrets {
            assert!(!e.to_string().contains(secret), "{name}: {secret:?} in {e}");
        }
    };

    // Accepted: sent once, signed if it should be.
    let (sink, sender, message) = fails("");
    let name = sender.name();
    sender
        .send(&delivery("0194-http-ok"), &message)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = sink.requests();
    assert_eq!(seen.len(), 1, "{name}: {seen:#?}");
    if backend.signing_secret.is_some() {
        assert_eq!(seen[0]["signature"], "valid", "{name}: {:#}", seen[0]);
    }

    // A busy or broken peer is worth another try, with its Retry-After; a refusal is not.
    for (script, retryable, retry_after) in [
        ("503", true, None),
        ("429@3", true, Some(Duration::from_secs(3))),
        ("400", false, None),
        ("403", false, None),
    ] {
        let (_sink, sender, message) = fails(script);
        let e = sender
            .send(&delivery("0194-http-fail"), &message)
            .await
            .expect_err(name);
        match &e {
            SendError::Retryable {
                retry_after: got, ..
            } if retryable => assert_eq!(*got, retry_after, "{name} {script}"),
            SendError::Permanent { .. } if !retryable => {}
            other => panic!("{name} {script}: {other:?}"),
        }
        no_secret(name, &e);
    }

    // A peer that never answers: given up on within the timeout, retryable.
    let (_sink, sender, message) = fails("sleep");
    let started = std::time::Instant::now();
    let e = sender
        .send(&delivery("0194-http-slow"), &message)
        .await
        .expect_err(name);
    assert!(matches!(e, SendError::Retryable { .. }), "{name}: {e:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "{name}");
    no_secret(name, &e);

    // A peer that is down.
    let (sender, message) = (backend.make)(&format!("http://127.0.0.1:{}", free_port()), timeout);
    let e = sender
        .send(&delivery("0194-http-down"), &message)
        .await
        .expect_err(name);
    assert!(matches!(e, SendError::Retryable { .. }), "{name}: {e:?}");
    no_secret(name, &e);
}

const WEBHOOK_SECRET: &str = "whsec_Y29uZm9ybWFuY2Uta2V5LW9mLXRoZS13ZWJob29r";

fn webhook_message(target: WebhookTarget) -> Rendered {
    Rendered::Webhook(WebhookRequest {
        recipients: Vec::new(),
        target,
        method: "POST".into(),
        headers: vec![("X-Team".into(), "ml".into())],
        body: r#"{"text": "flytesnacks/development/exec-1 failed"}"#.into(),
        timeout: None,
    })
}

fn webhook_settings(timeout: Duration) -> WebhookSettings {
    WebhookSettings {
        policy: Arc::new(WebhookPolicy::new(&["127.0.0.1".into()], false).unwrap()),
        destinations: Vec::new(),
        default_signing_secret: Some(Secret::new(WEBHOOK_SECRET)),
        timeout,
        per_url: DEFAULT_RATE_LIMIT,
    }
}

/// A URL named in the request, with the caller's token in its query.
fn webhook_inline() -> HttpBackend {
    HttpBackend {
        make: Box::new(|base, timeout| {
            let sender = WebhookSender::new(webhook_settings(timeout)).unwrap();
            let url = format!("{base}/hooks/flyte?token=inline-t0k3n");
            (Arc::new(sender), webhook_message(WebhookTarget::Url(url)))
        }),
        signing_secret: Some(WEBHOOK_SECRET),
        secrets: vec!["inline-t0k3n", WEBHOOK_SECRET],
    }
}

/// A configured destination, whose URL is a secret.
fn webhook_destination() -> HttpBackend {
    HttpBackend {
        make: Box::new(|base, timeout| {
            let mut settings = webhook_settings(timeout);
            settings.destinations = vec![WebhookDestination {
                name: "ops".into(),
                url: Secret::new(format!("{base}/services/T0001/dest-s3cr3t?key=dest-k3y")),
                signing_secret: Some(Secret::new(WEBHOOK_SECRET)),
                headers: vec![("X-Api".into(), "from-config".into())],
            }];
            let sender = WebhookSender::new(settings).unwrap();
            let message = webhook_message(WebhookTarget::Destination("ops".into()));
            (Arc::new(sender), message)
        }),
        signing_secret: Some(WEBHOOK_SECRET),
        secrets: vec!["dest-s3cr3t", "dest-k3y", "T0001", WEBHOOK_SECRET],
    }
}

#[tokio::test]
async fn webhook_to_a_url_conforms() {
    http_conformance(webhook_inline()).await;
}

#[tokio::test]
async fn webhook_to_a_destination_conforms() {
    http_conformance(webhook_destination()).await;
}
