//! SendGrid's v3 mail send API, as FlyteAdmin uses it (one message to all recipients, from
//! "Flyte Notifications"), with two differences: both the text and the HTML part are sent, and
//! only a 2xx answer counts as sent. FlyteAdmin logs any answer as a success, so a revoked key or
//! an unverified sender silently drops every notification.
//!
//! A 400 (or another 4xx about the message itself) can never succeed as it is: permanent, with
//! SendGrid's own explanation. 401/403 mean the key is wrong or lacks the mail.send scope, which
//! an operator can fix without touching the notification: retried. 429 and 5xx are retried,
//! honouring Retry-After.
//!
//! Cc and Bcc go in the one personalization beside To. SendGrid refuses a request that names an
//! address twice anywhere in a personalization, so each address is sent once, in the first of
//! To, Cc, Bcc that names it. An email with a provider template is sent as a dynamic template:
//! `template_id`, the data as `dynamic_template_data`, and no subject or content (the template
//! has its own).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;

use super::{email_of, message_id};
use crate::channels::{SendError, Sender, error_chain, rest};
use crate::delivery::{Channel, DeliveryRef, EmailMessage, Rendered, email_address};

/// FlyteAdmin's display name for the sender; ours too unless the configured sender has its own.
const FROM_NAME: &str = "Flyte Notifications";

/// The custom_args key that carries the delivery id into SendGrid's event webhook and activity
/// feed, where an operator can match an event to `flyte-notify show`.
pub const DELIVERY_ID_ARG: &str = "flyte_notify_delivery_id";

pub struct SendgridSender {
    url: String,
    client: reqwest::Client,
    authorization: HeaderValue,
    /// Kept only to scrub it from anything a peer echoes back into an error.
    api_key: String,
    timeout: Duration,
}

/// The API key as FlyteAdmin finds it: the environment variable named by `env_var` when that is
/// set (it wins), else the trimmed contents of `file_path`. Errors name the config key, and never
/// hold the key itself.
pub fn read_api_key(env_var: &str, file_path: &str) -> Result<String, String> {
    const KEY: &str = "notifications.emailer.emailServerConfig";
    let key = if !env_var.is_empty() {
        let value = std::env::var(env_var).unwrap_or_default();
        if value.trim().is_empty() {
            return Err(format!(
                "{KEY}.apiKeyEnvVar: the environment variable {env_var} that should hold the \
                 SendGrid API key is not set or empty"
            ));
        }
        value.trim().to_string()
    } else if !file_path.is_empty() {
        let text = std::fs::read_to_string(Path::new(file_path)).map_err(|e| {
            format!("{KEY}.apiKeyFilePath: cannot read the SendGrid API key from {file_path}: {e}")
        })?;
        if text.trim().is_empty() {
            return Err(format!(
                "{KEY}.apiKeyFilePath: {file_path}, which should hold the SendGrid API key, is empty"
            ));
        }
        text.trim().to_string()
    } else {
        return Err(format!(
            "{KEY}: serviceName sendgrid needs apiKeyEnvVar or apiKeyFilePath"
        ));
    };
    bearer(&key)?;
    Ok(key)
}

fn bearer(key: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        "the SendGrid API key has characters that cannot go in an HTTP header".to_string()
    })?;
    // Keeps it out of reqwest's and hyper's debug output.
    value.set_sensitive(true);
    Ok(value)
}

impl SendgridSender {
    /// `base_url` as validated by the config (`flyteNotify.sendgrid.baseUrl`); every request,
    /// connecting included, must finish within `timeout`.
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect means a wrong base URL; following it would carry the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("flyte-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTPS client for SendGrid: {e}"))?;
        Ok(Self {
            url: format!("{}/v3/mail/send", base_url.trim_end_matches('/')),
            client,
            authorization: bearer(&api_key)?,
            api_key,
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn scrub(&self, text: String) -> String {
        text.replace(&self.api_key, "<redacted>")
    }
}

#[derive(Debug, Serialize, PartialEq)]
struct Address {
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug, Serialize)]
struct Personalization<'a> {
    to: Vec<Address>,
    // SendGrid refuses an empty list: left out instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cc: Vec<Address>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bcc: Vec<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dynamic_template_data: Option<&'a BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
struct Content<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

#[derive(Debug, Serialize)]
struct MailSend<'a> {
    personalizations: Vec<Personalization<'a>>,
    from: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    content: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_id: Option<&'a str>,
    headers: BTreeMap<&'static str, String>,
    custom_args: BTreeMap<&'static str, &'a str>,
}

/// The request body for one attempt of `delivery`. Addresses that do not parse can never be sent:
/// permanent, as for the other email senders.
fn mail_send<'a>(
    delivery: &'a DeliveryRef,
    email: &'a EmailMessage,
) -> Result<MailSend<'a>, SendError> {
    let from =
        email_address(&email.sender).map_err(|e| SendError::permanent(format!("sender: {e}")))?;
    // SendGrid refuses the whole request when an address appears twice, in one list or across
    // them: each goes in the first list that names it, so To wins over Cc, and Cc over Bcc.
    let mut seen: Vec<String> = Vec::new();
    let mut list = |field: &str, addresses: &[String]| -> Result<Vec<Address>, SendError> {
        let mut out = Vec::with_capacity(addresses.len());
        for r in addresses {
            let mailbox =
                email_address(r).map_err(|e| SendError::permanent(format!("{field}: {e}")))?;
            let address = mailbox.email.to_string();
            if seen.iter().any(|a| a.eq_ignore_ascii_case(&address)) {
                continue;
            }
            seen.push(address.clone());
            out.push(Address {
                email: address,
                name: mailbox.name,
            });
        }
        Ok(out)
    };
    let to = list("recipient", &email.recipients)?;
    let cc = list("cc", &email.cc)?;
    let bcc = list("bcc", &email.bcc)?;
    let personalization = |dynamic_template_data| Personalization {
        to,
        cc,
        bcc,
        dynamic_template_data,
    };
    let (personalization, subject, content, template_id) = match &email.provider_template {
        Some(template) => {
            if template.template_id.trim().is_empty() {
                return Err(SendError::permanent(
                    "sendgrid: the email's provider template has no template_id",
                ));
            }
            (
                personalization(Some(&template.data)),
                None,
                Vec::new(),
                Some(template.template_id.as_str()),
            )
        }
        None => (
            personalization(None),
            Some(email.subject.as_str()),
            contents(email),
            None,
        ),
    };
    Ok(MailSend {
        personalizations: vec![personalization],
        // Message-ID is not among the headers SendGrid reserves, so every path gives a delivery
        // the same id and a re-sent attempt threads with the first in mail clients.
        headers: BTreeMap::from([("Message-ID", message_id(delivery, &from))]),
        from: Address {
            email: from.email.to_string(),
            name: Some(from.name.unwrap_or_else(|| FROM_NAME.to_string())),
        },
        subject,
        content,
        template_id,
        custom_args: BTreeMap::from([(DELIVERY_ID_ARG, delivery.id.as_str())]),
    })
}

/// The text and HTML parts of an email rendered here.
fn contents(email: &EmailMessage) -> Vec<Content<'_>> {
    // SendGrid requires text/plain before text/html, and refuses an empty value; the other
    // senders deliver an empty body, so an empty part is left out rather than failing the send.
    let mut content: Vec<Content> = [
        ("text/plain", email.text_body.as_str()),
        ("text/html", email.html_body.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(kind, value)| Content { kind, value })
    .collect();
    if content.is_empty() {
        content.push(Content {
            kind: "text/plain",
            value: " ",
        });
    }
    content
}

/// SendGrid's `errors[].message` (with the field it names), or the start of whatever else came.
fn error_text(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        field: Option<String>,
    }
    if let Ok(parsed) = serde_json::from_str::<Errors>(body) {
        let messages: Vec<String> = parsed
            .errors
            .into_iter()
            .filter_map(|e| {
                let message = e.message.filter(|m| !m.is_empty())?;
                Some(match e.field.filter(|f| !f.is_empty()) {
                    Some(field) => format!("{message} (field {field})"),
                    None => message,
                })
            })
            .collect();
        if !messages.is_empty() {
            return messages.join("; ");
        }
    }
    let body = body.trim();
    match body.char_indices().nth(200) {
        None => body.to_string(),
        Some((cut, _)) => format!("{}…", &body[..cut]),
    }
}

/// What a non-2xx answer means for the delivery.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendError {
    let detail = error_text(body);
    let mut message = format!("sendgrid: HTTP {status}");
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(&detail);
    }
    let retryable = |message: String| SendError::Retryable {
        message,
        retry_after,
    };
    match status.as_u16() {
        401 | 403 => retryable(format!(
            "{message}; check the API key (apiKeyEnvVar or apiKeyFilePath) and that it has the \
             mail.send permission: retrying, as the notification itself is fine"
        )),
        404 | 405 => retryable(format!(
            "{message}; is flyteNotify.sendgrid.baseUrl right? retrying"
        )),
        408 | 425 | 429 => retryable(message),
        400..=499 => SendError::permanent(message),
        // 5xx, and 1xx/3xx that a correct endpoint never answers.
        _ => retryable(message),
    }
}

#[async_trait]
impl Sender for SendgridSender {
    fn name(&self) -> &'static str {
        "sendgrid"
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn provider_templates(&self) -> bool {
        true
    }

    async fn send(&self, delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let email = email_of(self.name(), message)?;
        let body = mail_send(delivery, email)?;
        let response = self
            .client
            .post(&self.url)
            .header(AUTHORIZATION, self.authorization.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    format!(
                        "no answer within {} (flyteNotify.worker.sendTimeout)",
                        humantime::format_duration(self.timeout)
                    )
                } else {
                    // The URL is said once, before.
                    error_chain(&e.without_url())
                };
                SendError::retryable(self.scrub(format!("sendgrid POST {}: {why}", self.url)))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = rest::retry_after(response.headers());
        let text = rest::read_bounded(response).await;
        Err(match classify(status, retry_after, &text) {
            SendError::Retryable {
                message,
                retry_after,
            } => SendError::Retryable {
                message: self.scrub(message),
                retry_after,
            },
            SendError::Permanent { message } => SendError::permanent(self.scrub(message)),
            deferred @ SendError::Deferred { .. } => deferred,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::LeaseToken;

    fn delivery() -> DeliveryRef {
        DeliveryRef {
            id: "0194-abc".into(),
            request_id: "r".into(),
            attempt: 1,
            lease: LeaseToken(1),
        }
    }

    #[test]
    fn one_message_to_all_recipients_text_first_with_the_delivery_id() {
        let email = EmailMessage {
            recipients: vec![
                "a@example.com".into(),
                "B <b@example.com>".into(),
                "A@example.com".into(),
            ],
            cc: Vec::new(),
            bcc: Vec::new(),
            provider_template: None,
            sender: "flyte@example.org".into(),
            subject: "s".into(),
            html_body: "<p>h</p>".into(),
            text_body: "t".into(),
        };
        let d = delivery();
        let body = serde_json::to_value(mail_send(&d, &email).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "personalizations": [{"to": [
                    {"email": "a@example.com"},
                    {"email": "b@example.com", "name": "B"},
                ]}],
                "from": {"email": "flyte@example.org", "name": "Flyte Notifications"},
                "subject": "s",
                "content": [
                    {"type": "text/plain", "value": "t"},
                    {"type": "text/html", "value": "<p>h</p>"},
                ],
                "headers": {"Message-ID": "<0194-abc.flyte-notify@example.org>"},
                "custom_args": {"flyte_notify_delivery_id": "0194-abc"},
            })
        );
    }

    #[test]
    fn a_sender_with_its_own_name_keeps_it() {
        let email = EmailMessage {
            recipients: vec!["a@example.com".into()],
            cc: Vec::new(),
            bcc: Vec::new(),
            provider_template: None,
            sender: "Ops <ops@example.org>".into(),
            subject: "s".into(),
            html_body: String::new(),
            text_body: "t".into(),
        };
        let d = delivery();
        let body = mail_send(&d, &email).unwrap();
        assert_eq!(
            body.from,
            Address {
                email: "ops@example.org".into(),
                name: Some("Ops".into())
            }
        );
        assert_eq!(body.content.len(), 1, "an empty HTML part is left out");
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_is_a_retryable_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let sender = SendgridSender::new(
            &format!("http://{addr}"),
            "SG.k".into(),
            Duration::from_millis(300),
        )
        .unwrap();
        let email = Rendered::Email(EmailMessage {
            recipients: vec!["a@example.com".into()],
            cc: Vec::new(),
            bcc: Vec::new(),
            provider_template: None,
            sender: "f@example.com".into(),
            subject: "s".into(),
            html_body: "h".into(),
            text_body: "t".into(),
        });
        let e = sender.send(&delivery(), &email).await.unwrap_err();
        assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
        assert!(e.to_string().contains("no answer within 300ms"), "{e}");
        silent.abort();
    }

    #[test]
    fn statuses_are_classified() {
        let permanent = |e: SendError| matches!(e, SendError::Permanent { .. });
        let body = r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#;
        let e = classify(StatusCode::BAD_REQUEST, None, body);
        assert_eq!(
            e,
            SendError::permanent(
                "sendgrid: HTTP 400 Bad Request: The from address does not match a verified \
                 Sender Identity. (field from)"
            )
        );
        assert!(permanent(classify(StatusCode::PAYLOAD_TOO_LARGE, None, "")));
        for status in [401, 403, 404, 429, 500, 502, 503] {
            let e = classify(StatusCode::from_u16(status).unwrap(), None, "");
            assert!(!permanent(e), "{status}");
        }
        let e = classify(StatusCode::UNAUTHORIZED, None, "");
        assert!(e.to_string().contains("check the API key"), "{e}");
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(7)),
            "",
        );
        assert_eq!(
            e,
            SendError::Retryable {
                message: "sendgrid: HTTP 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        // Not SendGrid's JSON (a proxy's page): its start is shown.
        let e = classify(StatusCode::BAD_GATEWAY, None, &"x".repeat(1000));
        assert!(e.to_string().ends_with('…'), "{e}");
        assert!(e.to_string().len() < 300, "{e}");
    }

    #[test]
    fn the_key_comes_from_the_env_var_else_the_trimmed_file_and_is_never_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "  SG.file-key \n").unwrap();
        let file = file.to_str().unwrap();
        // HOME stands in for a variable holding a key (setting one would race other tests):
        // the env var wins over the file.
        if let Ok(home) = std::env::var("HOME") {
            assert_eq!(read_api_key("HOME", file).unwrap(), home.trim());
        }
        assert_eq!(read_api_key("", file).unwrap(), "SG.file-key");
        let e = read_api_key("FLYTE_NOTIFY_TEST_UNSET_VARIABLE", file).unwrap_err();
        assert!(e.contains("apiKeyEnvVar"), "{e}");
        assert!(e.contains("FLYTE_NOTIFY_TEST_UNSET_VARIABLE"), "{e}");
        let e = read_api_key("", "/nonexistent/key").unwrap_err();
        assert!(
            e.contains("apiKeyFilePath") && e.contains("/nonexistent/key"),
            "{e}"
        );
        std::fs::write(dir.path().join("bad"), "SG.a\nb").unwrap();
        let e = read_api_key("", dir.path().join("bad").to_str().unwrap()).unwrap_err();
        assert!(!e.contains("SG.a"), "{e}");
    }
}
