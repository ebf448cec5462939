//! Amazon SES through its v2 API: one SendEmail to all recipients, as FlyteAdmin does, but with
//! the raw MIME the other email senders write (text and HTML parts, the delivery's stable
//! Message-ID) instead of FlyteAdmin's HTML-only body. To, Cc and Bcc go in the Destination
//! (the raw message has no Bcc header); an email with a provider template is sent as SES's
//! `Content.Template` (the template's name and its data as JSON), filled in by SES.
//!
//! Region, endpoint and credentials follow the AWS SDK's own conventions (AWS_REGION,
//! AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SESV2, profiles, web identity, instance roles), so SES works
//! wherever the AWS CLI does. The SDK's own retries are off: the worker owns the retry schedule,
//! and every failed attempt shows in ListPending.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::{BehaviorVersion, Region};
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage, Template};

use super::{BccHeader, build_email, email_of, mailboxes};
use crate::channels::{SendError, Sender, error_chain};
use crate::delivery::{Channel, DeliveryRef, EmailMessage, ProviderTemplate, Rendered};

pub struct SesSender {
    client: aws_sdk_sesv2::Client,
    timeout: Duration,
}

impl SesSender {
    /// A sender on `client`, whose retries should be off (see the module doc).
    pub fn new(client: aws_sdk_sesv2::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// A sender configured by the SDK's default chain, with `region` (from the config file)
    /// taking precedence over the chain's. Returns the region in use, for the start-up log.
    pub async fn from_environment(
        region: Option<&str>,
        endpoint_url: Option<&str>,
        timeout: Duration,
    ) -> Result<(Self, String), String> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build());
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_string()));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        // Without a region every send would fail the same way: say so at start-up instead.
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(
                "SES needs an AWS region: set notifications.aws.region (or AWS_REGION, \
                 or a region in the AWS profile)"
                    .into(),
            );
        };
        let client = aws_sdk_sesv2::Client::new(&shared);
        Ok((Self::new(client, timeout), region))
    }
}

/// Codes that mean "not now" rather than "never": throttling, and states of the account or its
/// credentials that an operator can put right while the notification waits.
const RETRYABLE_CODES: &[&str] = &[
    "TooManyRequestsException",
    "LimitExceededException",
    "Throttling",
    "ThrottlingException",
    "AccountSuspendedException",
    "SendingPausedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "AccessDeniedException",
    "AccessDenied",
];

/// What an error answer from SES means for the delivery, from its code, message and status.
fn classify_service(code: Option<&str>, message: Option<&str>, status: u16) -> SendError {
    let code = code.unwrap_or("unknown error");
    let mut text = format!("ses: {code}");
    if let Some(message) = message.filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(message);
    }
    if RETRYABLE_CODES.contains(&code) || matches!(status, 401 | 403 | 408 | 429) {
        let hint = match code {
            "AccountSuspendedException" | "SendingPausedException" => {
                "; the SES account cannot send until an operator resolves it: retrying"
            }
            "TooManyRequestsException" | "LimitExceededException" => "",
            c if c.contains("Throttl") => "",
            _ => "; check the AWS credentials and their ses:SendEmail permission: retrying",
        };
        text.push_str(hint);
        SendError::retryable(text)
    } else if (400..500).contains(&status) {
        // MessageRejected, MailFromDomainNotVerifiedException, BadRequestException, and
        // NotFoundException (an identity or configuration set that does not exist): the same
        // request would be refused again.
        SendError::permanent(text)
    } else {
        SendError::retryable(text)
    }
}

fn classify(e: SdkError<SendEmailError>, timeout: Duration) -> SendError {
    match e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let err = service.err();
            classify_service(err.code(), err.message(), status)
        }
        SdkError::TimeoutError(_) => SendError::retryable(format!(
            "ses: no answer within {} (flyteNotify.worker.sendTimeout)",
            humantime::format_duration(timeout)
        )),
        // Cannot connect, cannot resolve credentials, an answer that is not SES's: all of them
        // may pass, or be put right by an operator.
        other => SendError::retryable(format!("ses: {}", error_chain(&other))),
    }
}

#[async_trait]
impl Sender for SesSender {
    fn name(&self) -> &'static str {
        "ses"
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn provider_templates(&self) -> bool {
        true
    }

    async fn send(&self, delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let email = email_of(self.name(), message)?;
        let (from, content) = match &email.provider_template {
            Some(template) => {
                let from = crate::delivery::email_address(&email.sender)
                    .map_err(|e| SendError::permanent(format!("sender: {e}")))?;
                // With a display name: SES writes the From: header from this.
                (from.to_string(), template_content(template)?)
            }
            None => {
                let built = build_email(delivery, email, BccHeader::Drop)?;
                let from = built
                    .envelope()
                    .from()
                    .map(|a| a.to_string())
                    .ok_or_else(|| SendError::permanent("ses: the email has no sender"))?;
                let raw = RawMessage::builder()
                    .data(Blob::new(built.formatted()))
                    .build()
                    .map_err(|e| {
                        SendError::permanent(format!("ses: cannot build the request: {e}"))
                    })?;
                (from, EmailContent::builder().raw(raw).build())
            }
        };
        let destination = destination(email)?;
        self.client
            .send_email()
            .from_email_address(from)
            .destination(destination)
            .content(content)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, self.timeout))
    }
}

/// To, Cc and Bcc as SES takes them: bare addresses (the raw message's headers carry the display
/// names), each list left out when empty.
fn destination(email: &EmailMessage) -> Result<Destination, SendError> {
    let addresses = |field: &str, list: &[String]| -> Result<Option<Vec<String>>, SendError> {
        if list.is_empty() {
            return Ok(None);
        }
        let boxes = mailboxes(field, list)?;
        Ok(Some(boxes.iter().map(|m| m.email.to_string()).collect()))
    };
    Ok(Destination::builder()
        .set_to_addresses(addresses("recipient", &email.recipients)?)
        .set_cc_addresses(addresses("cc", &email.cc)?)
        .set_bcc_addresses(addresses("bcc", &email.bcc)?)
        .build())
}

/// SES's `Content.Template`: the template's name and its data, as the JSON object SES expects.
fn template_content(template: &ProviderTemplate) -> Result<EmailContent, SendError> {
    if template.template_id.trim().is_empty() {
        return Err(SendError::permanent(
            "ses: the email's provider template has no template_id",
        ));
    }
    let data = serde_json::to_string(&template.data).expect("a map of strings serializes");
    Ok(EmailContent::builder()
        .template(
            Template::builder()
                .template_name(&template.template_id)
                .template_data(data)
                .build(),
        )
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permanent(e: &SendError) -> bool {
        matches!(e, SendError::Permanent { .. })
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_is_a_retryable_timeout() {
        use crate::delivery::{EmailMessage, LeaseToken};
        use aws_sdk_sesv2::config::Credentials;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let timeout = Duration::from_millis(300);
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("http://{addr}"))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("k", "s", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
            .build();
        let sender = SesSender::new(aws_sdk_sesv2::Client::from_conf(config), timeout);
        let delivery = DeliveryRef {
            id: "d".into(),
            request_id: "r".into(),
            attempt: 1,
            lease: LeaseToken(1),
        };
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
        let e = sender.send(&delivery, &email).await.unwrap_err();
        assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
        assert!(e.to_string().contains("no answer within 300ms"), "{e}");
        silent.abort();
    }

    #[test]
    fn rejections_are_permanent_with_the_service_message() {
        let e = classify_service(
            Some("MessageRejected"),
            Some("Email address is not verified."),
            400,
        );
        assert_eq!(
            e,
            SendError::permanent("ses: MessageRejected: Email address is not verified.")
        );
        for code in [
            "MailFromDomainNotVerifiedException",
            "BadRequestException",
            "NotFoundException",
        ] {
            let status = if code == "NotFoundException" {
                404
            } else {
                400
            };
            assert!(
                permanent(&classify_service(Some(code), None, status)),
                "{code}"
            );
        }
    }

    #[test]
    fn throttling_account_state_credentials_and_server_errors_are_retried() {
        for (code, status) in [
            ("TooManyRequestsException", 429),
            ("LimitExceededException", 400),
            ("Throttling", 400),
            ("AccountSuspendedException", 400),
            ("SendingPausedException", 400),
            ("UnrecognizedClientException", 403),
            ("InvalidSignatureException", 403),
            ("InternalFailure", 500),
            ("ServiceUnavailable", 503),
        ] {
            let e = classify_service(Some(code), Some("m"), status);
            assert!(!permanent(&e), "{code}: {e}");
        }
        let e = classify_service(Some("SendingPausedException"), Some("paused"), 400);
        assert!(e.to_string().contains("operator"), "{e}");
        let e = classify_service(Some("UnrecognizedClientException"), None, 403);
        assert!(e.to_string().contains("credentials"), "{e}");
    }
}
