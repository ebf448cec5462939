//! Every sender passes the same checks, through the `Sender` trait alone, each against a real
//! peer. Email senders: a Maildir on disk, aiosmtpd (plain, STARTTLS and implicit TLS), the SendGrid stand-in, and moto's SES. A new
//! sender gets a backend function here and so the same checks.
//!
//! Native senders over HTTP pass the same checks as each other: delivered once; a 5xx, a 429
//! (with its Retry-After), no answer and no peer are retryable; the service's refusal is
//! permanent; and the secret is in no error, even one the peer quotes it in. Webhooks (generic
//! and Slack-flavored) and Teams run them against tests/peers/webhook_sink.py (which also
//! verifies signatures), Slack's incoming webhooks
//! and chat.postMessage and PagerDuty's Events v2 against tests/peers/slack_pagerduty_sink.py.

mod common;

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::http_sink::WebhookSink;
use common::smtp::{PeerTls, SMTP_PASSWORD, SMTP_USER, TlsSmtpPeer};
use common::*;
use flyte_notify::channels::email::maildir::MaildirSender;
use flyte_notify::channels::email::sendgrid::SendgridSender;
use flyte_notify::channels::email::ses::SesSender;
use flyte_notify::channels::email::smtp::{SmtpSender, SmtpTls};
use flyte_notify::channels::net_guard::WebhookPolicy;
use flyte_notify::channels::pagerduty::{
    DEFAULT_PER_ROUTING_KEY, PagerDutyRoute, PagerDutySender, PagerDutySettings,
};
use flyte_notify::channels::secret::Secret;
use flyte_notify::channels::slack::{
    DEFAULT_PER_CHANNEL, SlackDestination, SlackRoute, SlackSender, SlackSettings,
};
use flyte_notify::channels::teams::{DEFAULT_PER_URL as TEAMS_PER_URL, TeamsSender, TeamsSettings};
use flyte_notify::channels::webhook::{
    DEFAULT_RATE_LIMIT, WebhookDestination, WebhookSender, WebhookSettings,
};
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{
    DeliveryRef, EmailMessage, LeaseToken, PagerDutyAction, PagerDutyEvent, Rendered, SlackMessage,
    WebhookRequest, WebhookTarget,
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
        cc: Vec::new(),
        bcc: Vec::new(),
        provider_template: None,
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
        flavor: flyte_notify::delivery::WebhookFlavor::Generic,
    })
}

fn webhook_settings(timeout: Duration) -> WebhookSettings {
    WebhookSettings {
        policy: Arc::new(WebhookPolicy::new(&["127.0.0.1".into()], false).unwrap()),
        destinations: Vec::new(),
        default_signing_secret: Some(Secret::new(WEBHOOK_SECRET)),
        timeout,
        per_url: DEFAULT_RATE_LIMIT,
        slack_per_url: flyte_notify::channels::slack::DEFAULT_PER_CHANNEL,
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

/// A Slack incoming webhook named by a Flyte 2 request: unsigned, its path the credential.
fn webhook_slack_flavor() -> HttpBackend {
    HttpBackend {
        make: Box::new(|base, timeout| {
            let sender = WebhookSender::new(webhook_settings(timeout)).unwrap();
            let url = format!("{base}/services/T0001/B0002/slackflavor-s3cr3t-0123");
            let Rendered::Webhook(request) = webhook_message(WebhookTarget::Url(url)) else {
                unreachable!()
            };
            let message = Rendered::Webhook(WebhookRequest {
                flavor: flyte_notify::delivery::WebhookFlavor::Slack,
                ..request
            });
            (Arc::new(sender), message)
        }),
        signing_secret: None,
        secrets: vec!["slackflavor-s3cr3t-0123", "T0001/B0002"],
    }
}

/// A Teams Workflows URL, with its signature in the query.
fn teams() -> HttpBackend {
    HttpBackend {
        make: Box::new(|base, timeout| {
            let webhooks = WebhookSender::new(webhook_settings(timeout)).unwrap();
            let sender = TeamsSender::new(
                &webhooks,
                TeamsSettings {
                    timeout,
                    per_url: TEAMS_PER_URL,
                },
            )
            .unwrap();
            let url = format!("{base}/workflows/teams-fl0w-0123/invoke?sig=teams-s1g-0123");
            let Rendered::Webhook(request) = webhook_message(WebhookTarget::Url(url)) else {
                unreachable!()
            };
            let message = Rendered::Webhook(WebhookRequest {
                flavor: flyte_notify::delivery::WebhookFlavor::Teams,
                ..request
            });
            (Arc::new(sender), message)
        }),
        signing_secret: None,
        secrets: vec!["teams-fl0w-0123", "teams-s1g-0123", WEBHOOK_SECRET],
    }
}

#[tokio::test]
async fn webhook_to_a_slack_url_conforms() {
    http_conformance(webhook_slack_flavor()).await;
}

#[tokio::test]
async fn teams_conforms() {
    http_conformance(teams()).await;
}

/// A native sender against the stand-in: how to build it, what to send, and what the service
/// answers when it refuses the message for good.
struct Native {
    /// The sender with its peer at `url` (`http://127.0.0.1:PORT`), each request within `timeout`.
    sender: fn(url: &str, timeout: Duration) -> Arc<dyn Sender>,
    message: fn() -> Rendered,
    /// What the route holds that no error may show.
    secret: &'static str,
    /// A script answer the service gives for a message it will never take.
    permanent: &'static str,
    /// A script answer quoting the secret back (see the peer's {auth}, {path}, {routing_key}).
    echo: &'static str,
    /// Checks one recorded request for `message`: path, headers, body.
    check_request: fn(&serde_json::Value),
}

fn recipients(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn slack_message() -> Rendered {
    Rendered::Slack(SlackMessage {
        recipients: recipients(&["#ml-alerts"]),
        text: "Flyte execution p/d/exec-1 failed: x &lt; 0".into(),
        blocks: serde_json::json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*x*"}}]),
    })
}

const SLACK_HOOK_SECRET: &str = "cOnF0rmanceW3bhookS3cret";

fn slack_webhook(url: &str, timeout: Duration) -> Arc<dyn Sender> {
    Arc::new(
        SlackSender::new(SlackSettings {
            api_base_url: format!("{url}/api"),
            routes: vec![SlackRoute {
                recipients: recipients(&["#ml-alerts"]),
                destination: SlackDestination::IncomingWebhook {
                    url: Secret::new(format!("{url}/services/T1/B2/{SLACK_HOOK_SECRET}")),
                },
            }],
            timeout,
            per_channel: DEFAULT_PER_CHANNEL,
        })
        .unwrap(),
    )
}

const SLACK_TOKEN: &str = "xoxb-conformance-s3cr3t-t0ken";

fn slack_bot(url: &str, timeout: Duration) -> Arc<dyn Sender> {
    Arc::new(
        SlackSender::new(SlackSettings {
            api_base_url: format!("{url}/api"),
            routes: vec![SlackRoute {
                recipients: recipients(&["#ml-alerts"]),
                destination: SlackDestination::PostMessage {
                    token: Secret::new(SLACK_TOKEN),
                    channel: "C0ML".into(),
                },
            }],
            timeout,
            per_channel: DEFAULT_PER_CHANNEL,
        })
        .unwrap(),
    )
}

const ROUTING_KEY: &str = "c0nf0rmanceR0utingK3yS3cr3t0000";

fn pagerduty(url: &str, timeout: Duration) -> Arc<dyn Sender> {
    Arc::new(
        PagerDutySender::new(PagerDutySettings {
            events_url: format!("{url}/v2/enqueue"),
            routes: vec![PagerDutyRoute {
                recipients: recipients(&["oncall@acme.pagerduty.com"]),
                routing_key: Secret::new(ROUTING_KEY),
            }],
            timeout,
            per_routing_key: DEFAULT_PER_ROUTING_KEY,
        })
        .unwrap(),
    )
}

fn pagerduty_message() -> Rendered {
    Rendered::PagerDuty(PagerDutyEvent {
        recipients: recipients(&["oncall@acme.pagerduty.com"]),
        action: PagerDutyAction::Trigger,
        dedup_key: "flyte/launch_plan/p/d/lp".into(),
        summary: "Flyte execution p/d/exec-1 FAILED: x < 0".into(),
        severity: "error".into(),
        source: "p/d/wf".into(),
        custom_details: serde_json::json!({"phase": "FAILED"}),
        links: Vec::new(),
    })
}

fn slack_body(r: &serde_json::Value) {
    let Rendered::Slack(m) = slack_message() else {
        unreachable!()
    };
    assert_eq!(r["body"]["text"], m.text.as_str());
    assert_eq!(r["body"]["blocks"], m.blocks);
}

async fn native_conformance(backend: Native) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("requests.jsonl");
    // One answer per check below, in order; the hang last, as it holds its connection.
    let script = format!("ok,500,429@2,{},{},hang", backend.permanent, backend.echo);
    let _sink = start_python_peer(
        "slack_pagerduty_sink.py",
        &[port.to_string().into(), log.clone().into(), script.into()],
        port,
    );
    let url = format!("http://127.0.0.1:{port}");
    let sender = (backend.sender)(&url, TIMEOUT);
    let name = sender.name();
    let message = (backend.message)();
    let attempt = delivery("0194-native");
    let send = || sender.send(&attempt, &message);
    let mut errors = Vec::new();

    // Delivered, once, as the service expects it.
    send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
    let requests = read_jsonl(&log);
    assert_eq!(requests.len(), 1, "{name}: {requests:#?}");
    (backend.check_request)(&requests[0]);
    assert!(
        sender.destination(&message).is_some(),
        "{name}: a native destination is rate-limited"
    );

    // A server error is worth another try.
    let e = send().await.expect_err(name);
    assert!(matches!(e, SendError::Retryable { .. }), "{name}: {e:?}");
    errors.push(e);

    // So is a rate limit, no sooner than the service says.
    let e = send().await.expect_err(name);
    match &e {
        SendError::Retryable { retry_after, .. } => assert!(
            retry_after.is_some_and(|d| d >= Duration::from_secs(2)),
            "{name}: {e:?}"
        ),
        other => panic!("{name}: a 429 must be retryable: {other:?}"),
    }
    errors.push(e);

    // The service's refusal ends the delivery.
    let e = send().await.expect_err(name);
    assert!(matches!(e, SendError::Permanent { .. }), "{name}: {e:?}");
    errors.push(e);

    // A peer quoting the secret back: the error still says what happened, without it.
    let e = send().await.expect_err(name);
    assert!(e.to_string().contains("[secret]"), "{name}: {e}");
    errors.push(e);

    // No answer within the timeout.
    let impatient = (backend.sender)(&url, Duration::from_millis(500));
    let e = impatient
        .send(&delivery("0194-native"), &message)
        .await
        .expect_err(name);
    assert!(matches!(e, SendError::Retryable { .. }), "{name}: {e:?}");
    errors.push(e);

    // No peer at all.
    let down = (backend.sender)(&format!("http://127.0.0.1:{}", free_port()), TIMEOUT);
    let e = down
        .send(&delivery("0194-native"), &message)
        .await
        .expect_err(name);
    assert!(matches!(e, SendError::Retryable { .. }), "{name}: {e:?}");
    errors.push(e);

    for e in &errors {
        let text = format!("{e} {e:?}");
        assert!(!text.contains(backend.secret), "{name}: {text}");
    }
    assert_eq!(read_jsonl(&log).len(), 6, "{name}: one request per send");
}

#[tokio::test]
async fn slack_incoming_webhook_conforms() {
    native_conformance(Native {
        sender: slack_webhook,
        message: slack_message,
        secret: SLACK_HOOK_SECRET,
        permanent: "404:channel_not_found",
        echo: "404:no_service for {path}",
        check_request: |r| {
            assert_eq!(
                r["path"],
                format!("/services/T1/B2/{SLACK_HOOK_SECRET}").as_str()
            );
            assert_eq!(r["headers"].get("authorization"), None);
            slack_body(r);
        },
    })
    .await;
}

#[tokio::test]
async fn slack_chat_post_message_conforms() {
    native_conformance(Native {
        sender: slack_bot,
        message: slack_message,
        secret: SLACK_TOKEN,
        permanent: "200:channel_not_found",
        echo: "200:invalid_auth {auth}",
        check_request: |r| {
            assert_eq!(r["path"], "/api/chat.postMessage");
            assert_eq!(
                r["headers"]["authorization"],
                format!("Bearer {SLACK_TOKEN}").as_str()
            );
            assert_eq!(r["body"]["channel"], "C0ML");
            slack_body(r);
        },
    })
    .await;
}

#[tokio::test]
async fn pagerduty_conforms() {
    native_conformance(Native {
        sender: pagerduty,
        message: pagerduty_message,
        secret: ROUTING_KEY,
        permanent: "400:Event object is invalid",
        echo: "400:unknown routing key {routing_key}",
        check_request: |r| {
            assert_eq!(r["path"], "/v2/enqueue");
            assert_eq!(r["body"]["routing_key"], ROUTING_KEY);
            assert_eq!(r["body"]["event_action"], "trigger");
            assert_eq!(r["body"]["dedup_key"], "flyte/launch_plan/p/d/lp");
            assert_eq!(
                r["body"]["payload"]["summary"],
                "Flyte execution p/d/exec-1 FAILED: x < 0"
            );
        },
    })
    .await;
}
