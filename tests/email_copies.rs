//! Flyte 2's email parts on every email sender, each against its real peer: Cc and Bcc (aiosmtpd
//! sees a Bcc address in RCPT TO and no Bcc header in the data; moto's SES gets every destination;
//! the SendGrid stand-in gets the exact personalizations, each address once), and provider
//! templates (SendGrid's dynamic templates, SES's `Content.Template`; SMTP and the Maildir refuse
//! them). moto 5.2.1 answers SES v2's SendEmail with a template with NotImplementedError, so that
//! request is checked as the AWS SDK puts it on the wire, against tests/peers/webhook_sink.py
//! standing in for SES's endpoint.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::http_sink::WebhookSink;
use common::*;
use flyte_notify::channels::email::maildir::MaildirSender;
use flyte_notify::channels::email::sendgrid::SendgridSender;
use flyte_notify::channels::email::ses::SesSender;
use flyte_notify::channels::email::smtp::SmtpSender;
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{DeliveryRef, EmailMessage, LeaseToken, ProviderTemplate, Rendered};

const TIMEOUT: Duration = Duration::from_secs(10);

fn delivery(id: &str) -> DeliveryRef {
    DeliveryRef {
        id: id.into(),
        request_id: id.into(),
        attempt: 1,
        lease: LeaseToken(1),
    }
}

fn copied() -> EmailMessage {
    EmailMessage {
        recipients: vec!["oncall@example.com".into()],
        cc: vec!["Lead <lead@example.com>".into()],
        bcc: vec!["audit@example.com".into()],
        sender: "flyte@example.com".into(),
        subject: "run r-1 failed".into(),
        html_body: "<p>run r-1 failed</p>".into(),
        text_body: "run r-1 failed".into(),
        provider_template: None,
    }
}

fn templated() -> EmailMessage {
    EmailMessage {
        subject: String::new(),
        html_body: String::new(),
        text_body: String::new(),
        provider_template: Some(ProviderTemplate {
            template_id: "d-0123456789abcdef".into(),
            data: BTreeMap::from([
                ("phase".to_string(), "FAILED".to_string()),
                ("run".to_string(), "r-1".to_string()),
            ]),
        }),
        ..copied()
    }
}

/// A header's value in a raw message, if it has one (names compared in any case).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .or_else(|| {
            // aiosmtpd's Maildir writes bare line feeds.
            raw.split("\n\n")
                .next()
                .unwrap_or_default()
                .lines()
                .find_map(|line| {
                    let (n, v) = line.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
        })
}

#[tokio::test]
async fn smtp_sends_bcc_in_the_envelope_only() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let smtp = SmtpSender::new("127.0.0.1".into(), port, false, None, TIMEOUT);
    smtp.send(&delivery("d-smtp"), &Rendered::Email(copied()))
        .await
        .unwrap();
    let files = wait_for_messages(&sink.maildir, 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1);
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    // aiosmtpd's Mailbox handler records the envelope's RCPT TO as X-RcptTo.
    assert_eq!(
        header(&raw, "X-RcptTo").as_deref(),
        Some("oncall@example.com, lead@example.com, audit@example.com"),
        "{raw}"
    );
    assert_eq!(header(&raw, "To").as_deref(), Some("oncall@example.com"));
    assert_eq!(
        header(&raw, "Cc").as_deref(),
        Some("Lead <lead@example.com>")
    );
    assert_eq!(header(&raw, "Bcc"), None, "{raw}");
    // Nowhere in the data, only in the envelope (which X-RcptTo reports).
    let data = raw.replace(&header(&raw, "X-RcptTo").unwrap(), "");
    assert!(!data.contains("audit@example.com"), "{raw}");
}

#[tokio::test]
async fn the_maildir_copy_keeps_its_bcc_line() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = MaildirSender::open(dir.path()).unwrap();
    maildir
        .send(&delivery("d-maildir"), &Rendered::Email(copied()))
        .await
        .unwrap();
    let files = maildir_messages(dir.path());
    assert_eq!(files.len(), 1);
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(
        header(&raw, "Cc").as_deref(),
        Some("Lead <lead@example.com>")
    );
    assert_eq!(
        header(&raw, "Bcc").as_deref(),
        Some("audit@example.com"),
        "{raw}"
    );
}

#[tokio::test]
async fn smtp_and_the_maildir_refuse_a_provider_template_before_sending_anything() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &dir.path().join("sink"));
    let smtp = SmtpSender::new("127.0.0.1".into(), port, false, None, TIMEOUT);
    let maildir = MaildirSender::open(&dir.path().join("maildir")).unwrap();
    for sender in [&smtp as &dyn Sender, &maildir] {
        assert!(!sender.provider_templates(), "{}", sender.name());
        let e = sender
            .send(&delivery("d-t"), &Rendered::Email(templated()))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SendError::permanent(format!(
                "the configured emailer ({}) has no provider templates, so the email's template \
                 \"d-0123456789abcdef\" cannot be sent; configure SendGrid or SES, or give the \
                 email an inline subject and body",
                sender.name()
            ))
        );
    }
    // Give aiosmtpd the time a message would take, then check that none came.
    smtp.send(&delivery("d-after"), &Rendered::Email(copied()))
        .await
        .unwrap();
    let files = wait_for_messages(&sink.maildir, 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1, "only the inline email arrived");
    assert!(maildir_messages(&dir.path().join("maildir")).is_empty());
}

#[tokio::test]
async fn ses_gets_every_destination_and_no_bcc_header() {
    let moto = Moto::start();
    moto.verify_sender("flyte@example.com").await;
    let ses = SesSender::new(moto.ses_client(), TIMEOUT);
    ses.send(&delivery("d-ses"), &Rendered::Email(copied()))
        .await
        .unwrap();
    let sent = moto.sent_raw_messages().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (_, destinations, raw) = &sent[0];
    // moto keeps the Destination's To, Cc and Bcc as one list.
    for address in [
        "oncall@example.com",
        "lead@example.com",
        "audit@example.com",
    ] {
        assert!(
            destinations.iter().any(|d| d == address),
            "{destinations:?}"
        );
    }
    assert_eq!(
        header(raw, "Cc").as_deref(),
        Some("Lead <lead@example.com>")
    );
    assert_eq!(header(raw, "Bcc"), None, "{raw}");
    assert!(!raw.contains("audit@example.com"), "{raw}");
}

/// The SendEmail requests an SES client at `sink` made, as JSON.
fn ses_requests(sink: &WebhookSink) -> Vec<serde_json::Value> {
    sink.requests()
        .into_iter()
        .map(|r| {
            assert_eq!(r["method"], "POST");
            assert_eq!(r["path"], "/v2/email/outbound-emails");
            r["json"].clone()
        })
        .collect()
}

#[tokio::test]
async fn ses_sends_a_provider_template_by_name_with_its_data_and_each_destination_list() {
    // SES's answer to SendEmail; the sink echoes nothing else.
    let sink = WebhookSink::start(r#"200={"MessageId":"m-1"},200={"MessageId":"m-2"}"#, None);
    let ses = SesSender::new(ses_client_at(&sink.url("")), TIMEOUT);
    assert!(ses.provider_templates());
    ses.send(&delivery("d-ses-t"), &Rendered::Email(templated()))
        .await
        .unwrap();
    ses.send(&delivery("d-ses-raw"), &Rendered::Email(copied()))
        .await
        .unwrap();
    let requests = ses_requests(&sink);
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let destination = serde_json::json!({
        "ToAddresses": ["oncall@example.com"],
        "CcAddresses": ["lead@example.com"],
        "BccAddresses": ["audit@example.com"],
    });
    assert_eq!(
        requests[0],
        serde_json::json!({
            "FromEmailAddress": "flyte@example.com",
            "Destination": destination,
            "Content": {"Template": {
                "TemplateName": "d-0123456789abcdef",
                "TemplateData": r#"{"phase":"FAILED","run":"r-1"}"#,
            }},
        })
    );
    assert_eq!(requests[1]["Destination"], destination);
    assert!(
        requests[1]["Content"]["Raw"]["Data"].is_string(),
        "{:#}",
        requests[1]
    );
}

fn sendgrid(port: u16) -> SendgridSender {
    SendgridSender::new(
        &format!("http://127.0.0.1:{port}"),
        "SG.copies".into(),
        TIMEOUT,
    )
    .unwrap()
}

#[tokio::test]
async fn sendgrid_gets_cc_and_bcc_each_address_once_to_first() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("requests.jsonl");
    let _sink = start_sendgrid_sink(port, &log, "");
    let mut email = copied();
    // Named again in Cc and Bcc (in another case): SendGrid would refuse the whole request.
    email.cc.push("ONCALL@example.com".into());
    email
        .bcc
        .extend(["lead@example.com".into(), "audit@example.com".into()]);
    sendgrid(port)
        .send(&delivery("d-sg"), &Rendered::Email(email))
        .await
        .unwrap();
    let requests = read_jsonl(&log);
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["body"]["personalizations"],
        serde_json::json!([{
            "to": [{"email": "oncall@example.com"}],
            "cc": [{"email": "lead@example.com", "name": "Lead"}],
            "bcc": [{"email": "audit@example.com"}],
        }])
    );
}

#[tokio::test]
async fn sendgrid_sends_a_provider_template_as_a_dynamic_template() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("requests.jsonl");
    let _sink = start_sendgrid_sink(port, &log, "");
    let sender = sendgrid(port);
    assert!(sender.provider_templates());
    sender
        .send(&delivery("d-sg-t"), &Rendered::Email(templated()))
        .await
        .unwrap();
    let requests = read_jsonl(&log);
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["body"],
        serde_json::json!({
            "personalizations": [{
                "to": [{"email": "oncall@example.com"}],
                "cc": [{"email": "lead@example.com", "name": "Lead"}],
                "bcc": [{"email": "audit@example.com"}],
                "dynamic_template_data": {"phase": "FAILED", "run": "r-1"},
            }],
            "from": {"email": "flyte@example.com", "name": "Flyte Notifications"},
            "template_id": "d-0123456789abcdef",
            "headers": {"Message-ID": "<d-sg-t.flyte-notify@example.com>"},
            "custom_args": {"flyte_notify_delivery_id": "d-sg-t"},
        })
    );
}
