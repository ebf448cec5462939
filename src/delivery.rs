//! The delivery vocabulary: what a delivery is, how it is stored, what a send came to, and what a
//! sender puts on the wire. The core, the ledger, the queues, the worker and every channel speak
//! it. It imports nothing else from the crate, so none of them has to import another to talk about
//! a delivery.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// Which kind of notification a delivery is: the proto oneof it came from (email, Slack,
/// PagerDuty) or, for webhooks, the route that made it. The router sends it natively when a sender
/// for the channel is configured; Slack and PagerDuty otherwise go by email, as FlyteAdmin sends
/// them to those services' email-ingest addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Slack,
    Pagerduty,
    Webhook,
    /// Microsoft Teams: an incoming webhook or a Workflows URL, sent natively (Teams has no
    /// email-ingest address to fall back to).
    Teams,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Email,
        Channel::Slack,
        Channel::Pagerduty,
        Channel::Webhook,
        Channel::Teams,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
            Channel::Pagerduty => "pagerduty",
            Channel::Webhook => "webhook",
            Channel::Teams => "teams",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one delivery needs, beside its request's execution context, to be rendered and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub channel: Channel,
    pub recipients: Vec<String>,
    pub content: Content,
}

/// Where a delivery's message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Rendered at send time from the request's execution context with the notification's own
    /// template; empty for the configured or built-in one. Everything Enqueue accepts.
    Template(String),
    /// Arrived already rendered: FlyteAdmin's `EmailMessage` from a cloud queue. Sent as it is.
    Rendered(RenderedEmail),
    /// A queue message that could not be read, kept (its first bytes, and why) for an operator
    /// to see. Its first attempt records it dead with `error`; it is never sent.
    Unreadable { raw: Vec<u8>, error: String },
    /// A webhook (`flytenotify.v1.WebhookNotification`): rendered at send time like a template.
    Webhook(WebhookSpec),
    /// One message for the members of a group, rendered at send time from theirs: the ledger
    /// hands the members out with the lease.
    Digest,
    /// A Flyte 2 rule's delivery (`flyte.notify`): its template and the event it renders, with
    /// Go-template style variables, at send time.
    Flyte2(Box<Flyte2Spec>),
}

/// A Flyte 2 delivery as stored: what happened, and the message its rule asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flyte2Spec {
    pub event: Flyte2Event,
    pub message: Flyte2Message,
}

/// The variables of a Flyte 2 notification: a run reaching a phase, or an action waiting for a
/// person (`paused`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flyte2Event {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    pub project: String,
    pub domain: String,
    /// The run's name.
    pub name: String,
    /// flyteidl2.common.ActionPhase.
    pub phase: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When the phase was reached, in milliseconds since the epoch.
    pub occurred_at_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Flyte2Paused>,
    /// Set on the alert of a stuck-run deadline: how long the run had been in `phase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub still_running_after_ms: Option<u64>,
}

/// What a paused action asks of a person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flyte2Paused {
    pub action: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt_type: String,
}

/// The message a Flyte 2 rule sends, with its templates unrendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Flyte2Message {
    Email {
        to: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cc: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bcc: Vec<String>,
        content: Flyte2EmailContent,
    },
    /// Slack, Teams and generic webhooks alike: the SDK makes each of them an HTTP request.
    Webhook {
        target: WebhookTarget,
        /// Upper case.
        method: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<(String, String)>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        body_template: String,
        /// Told from the URL when the rule was accepted: Slack's and Teams' webhooks answer in
        /// their own ways.
        #[serde(default)]
        flavor: WebhookFlavor,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Flyte2EmailContent {
    Inline {
        subject: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        html: String,
    },
    /// A template kept by the email provider; its data values are templates too.
    Provider {
        template_id: String,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        data: std::collections::BTreeMap<String, String>,
    },
}

/// Where a webhook goes: a URL the request named, or a destination in the config (whose URL,
/// signing secret and headers stay in the config, and may change without touching the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookTarget {
    Url(String),
    Destination(String),
}

/// What a `WebhookNotification` asked for, as stored with its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSpec {
    pub target: WebhookTarget,
    /// Upper case: "POST", "PUT", ...
    pub method: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// FlyteAdmin `{{ var }}` template; empty for the built-in JSON body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body_template: String,
    /// Per attempt; None for the worker's sendTimeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// FlyteAdmin's rendered email: its body is HTML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedEmail {
    pub sender: String,
    pub subject: String,
    pub body: String,
}

/// The stored form of a payload. Versioned so that a newer binary still sends what an older one
/// wrote; a payload is written in the oldest version that can hold it, so that the version before
/// can still read templated deliveries after an upgrade is rolled back.
#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum StoredPayload {
    /// Written by 0.1: the execution context rode along in every delivery, protobuf then base64.
    #[serde(rename = "1")]
    V1 {
        channel: Channel,
        recipients: Vec<String>,
        #[serde(default)]
        template: String,
        execution: String,
    },
    /// The execution context is stored once, as bytes, with the request.
    #[serde(rename = "2")]
    V2 {
        channel: Channel,
        recipients: Vec<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        template: String,
    },
    /// Content that arrived from a queue rather than from Enqueue.
    #[serde(rename = "3")]
    V3 {
        channel: Channel,
        recipients: Vec<String>,
        content: StoredContent,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum StoredContent {
    Rendered(RenderedEmail),
    Unreadable { raw: String, error: String },
    Webhook(WebhookSpec),
    Digest,
    Flyte2(Box<Flyte2Spec>),
}

impl Payload {
    /// The stored form this binary writes.
    pub fn encode(&self) -> String {
        let channel = self.channel;
        let recipients = self.recipients.clone();
        let stored = match &self.content {
            Content::Template(template) => StoredPayload::V2 {
                channel,
                recipients,
                template: template.clone(),
            },
            Content::Rendered(email) => StoredPayload::V3 {
                channel,
                recipients,
                content: StoredContent::Rendered(email.clone()),
            },
            Content::Unreadable { raw, error } => StoredPayload::V3 {
                channel,
                recipients,
                content: StoredContent::Unreadable {
                    raw: BASE64.encode(raw),
                    error: error.clone(),
                },
            },
            Content::Webhook(spec) => StoredPayload::V3 {
                channel,
                recipients,
                content: StoredContent::Webhook(spec.clone()),
            },
            Content::Digest => StoredPayload::V3 {
                channel,
                recipients,
                content: StoredContent::Digest,
            },
            Content::Flyte2(spec) => StoredPayload::V3 {
                channel,
                recipients,
                content: StoredContent::Flyte2(spec.clone()),
            },
        };
        serde_json::to_string(&stored).expect("a payload always serializes")
    }

    /// Reads any stored version. A version 1 payload carries its own execution context, which is
    /// returned beside it; later versions leave that to the request.
    pub fn decode(stored: &str) -> Result<(Payload, Option<Vec<u8>>), String> {
        let stored: StoredPayload = serde_json::from_str(stored)
            .map_err(|e| format!("the stored payload cannot be read by this version: {e}"))?;
        Ok(match stored {
            StoredPayload::V1 {
                channel,
                recipients,
                template,
                execution,
            } => {
                let execution = BASE64
                    .decode(execution)
                    .map_err(|e| format!("the stored execution is not base64: {e}"))?;
                let payload = Payload {
                    channel,
                    recipients,
                    content: Content::Template(template),
                };
                (payload, Some(execution))
            }
            StoredPayload::V2 {
                channel,
                recipients,
                template,
            } => (
                Payload {
                    channel,
                    recipients,
                    content: Content::Template(template),
                },
                None,
            ),
            StoredPayload::V3 {
                channel,
                recipients,
                content,
            } => {
                let content = match content {
                    StoredContent::Rendered(email) => Content::Rendered(email),
                    StoredContent::Unreadable { raw, error } => Content::Unreadable {
                        raw: BASE64
                            .decode(raw)
                            .map_err(|e| format!("the stored raw message is not base64: {e}"))?,
                        error,
                    },
                    StoredContent::Webhook(spec) => Content::Webhook(spec),
                    StoredContent::Digest => Content::Digest,
                    StoredContent::Flyte2(spec) => Content::Flyte2(spec),
                };
                (
                    Payload {
                        channel,
                        recipients,
                        content,
                    },
                    None,
                )
            }
        })
    }
}

/// Proof of a lease, minted by the ledger each time it hands a delivery out. An outcome carrying a
/// token that is no longer current (the lease ran out and another worker or replica took the
/// delivery) is refused, so a late worker can never overwrite a newer outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub i64);

/// One attempt at one delivery: who it is, which attempt, and under which lease. The ledger mints
/// it, the sender gets it (and builds stable ids from `id`: the email Message-ID, PagerDuty's
/// dedup_key, a webhook's Idempotency-Key), and the outcome carries it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRef {
    pub id: String,
    pub request_id: String,
    /// 1 for the first lease of this delivery, counting every lease, also one whose worker died.
    pub attempt: u32,
    pub lease: LeaseToken,
}

/// What a send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again after `delay`, counted from when the ledger records it (the ledger owns the clock).
    Retry {
        delay: Duration,
        error: String,
    },
    /// Given up: a permanent failure, or no attempts left.
    Dead {
        error: String,
    },
    /// Not sent: the silence with this id matched it when it was due. Counts as no attempt. The
    /// ledger applies it only while that silence is active by the ledger's clock.
    Silenced {
        silence_id: String,
    },
}

/// Reads one email address (a recipient, or the sender with an optional display name) the way
/// the email builder will: validation and sending use this one parser, so what Enqueue accepts
/// can be sent, and what cannot be sent is refused before it is accepted.
pub fn email_address(text: &str) -> Result<lettre::message::Mailbox, String> {
    let mailbox: lettre::message::Mailbox = text
        .parse()
        .map_err(|e| format!("{} is not an email address: {e}", quoted(text)))?;
    // Parsing and formatting must agree: a quoted local part or a domain literal that parses but
    // comes out differently (or not at all) in the To: header is refused here, not at send time.
    let round_trip: Result<lettre::message::Mailbox, _> = mailbox.to_string().parse();
    match round_trip {
        Ok(again) if again == mailbox => Ok(mailbox),
        _ => Err(format!(
            "{} is not an address that can be sent to",
            quoted(text)
        )),
    }
}

/// `text` quoted for an error message, cut to its first 64 characters: the caller wrote it, and
/// the reason after it must still fit in a capped error.
pub fn quoted(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
    }
}

/// An email, exactly as it goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    /// To.
    pub recipients: Vec<String>,
    /// Cc: seen by every recipient. Empty for everything Flyte 1 makes.
    pub cc: Vec<String>,
    /// Bcc: in the envelope only, so no other recipient learns of them. Empty for Flyte 1.
    pub bcc: Vec<String>,
    pub sender: String,
    /// Unused when `provider_template` is set: the provider's template has its own.
    pub subject: String,
    pub html_body: String,
    pub text_body: String,
    /// A template stored at the email provider (SendGrid, SES), filled in by the provider with
    /// `data`, instead of the subject and bodies above. Only senders whose
    /// `Sender::provider_templates` is true can send it.
    pub provider_template: Option<ProviderTemplate>,
}

/// A template kept by the email provider, and the values it is filled in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTemplate {
    /// SendGrid's dynamic template id (`d-...`), or the SES template's name.
    pub template_id: String,
    pub data: std::collections::BTreeMap<String, String>,
}

/// A Slack message: Block Kit blocks plus the plain `text` that notifications and clients without
/// blocks show. `recipients` are the notification's own, which a route maps to a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    pub recipients: Vec<String>,
    pub text: String,
    pub blocks: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagerDutyAction {
    Trigger,
    Resolve,
}

/// A PagerDuty Events API v2 event, less the routing key (a secret the sender's route holds).
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyEvent {
    pub recipients: Vec<String>,
    pub action: PagerDutyAction,
    pub dedup_key: String,
    pub summary: String,
    pub severity: String,
    pub source: String,
    pub custom_details: serde_json::Value,
    /// (href, text)
    pub links: Vec<(String, String)>,
}

/// Which service a webhook URL belongs to, as `channels::webhook::flavor_of` tells from its host:
/// Slack's incoming webhooks and Teams' webhooks answer in their own ways and have their own rate
/// limits, though Flyte 2 describes all three as one webhook template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFlavor {
    #[default]
    Generic,
    Slack,
    Teams,
}

/// One HTTP request to a webhook. A configured destination's URL, signing secret and headers are
/// the sender's to add (they are secrets); `headers` are the notification's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub recipients: Vec<String>,
    pub target: WebhookTarget,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Per attempt; None for the worker's sendTimeout.
    pub timeout: Option<Duration>,
    /// Generic for every Flyte 1 webhook and every configured destination.
    pub flavor: WebhookFlavor,
}

/// What a sender puts on the wire: one variant per channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Email(EmailMessage),
    Slack(SlackMessage),
    PagerDuty(PagerDutyEvent),
    Webhook(WebhookRequest),
}

impl Rendered {
    pub fn channel(&self) -> Channel {
        match self {
            Rendered::Email(_) => Channel::Email,
            Rendered::Slack(_) => Channel::Slack,
            Rendered::PagerDuty(_) => Channel::Pagerduty,
            Rendered::Webhook(_) => Channel::Webhook,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_version_2_and_reads_both_versions() {
        let payload = Payload {
            channel: Channel::Slack,
            recipients: vec!["a@example.com".into()],
            content: Content::Template("t".into()),
        };
        let stored = payload.encode();
        assert!(stored.contains(r#""version":"2""#), "{stored}");
        assert_eq!(Payload::decode(&stored).unwrap(), (payload.clone(), None));

        // Exactly what 0.1 wrote (tests/fixtures has whole ledgers of these).
        let v1 = r#"{"version":"1","channel":"slack","recipients":["a@example.com"],"template":"t","execution":"CgA="}"#;
        assert_eq!(
            Payload::decode(v1).unwrap(),
            (payload, Some(vec![0x0a, 0x00]))
        );
        assert!(Payload::decode(r#"{"version":"9"}"#).is_err());
    }

    #[test]
    fn content_from_a_queue_is_version_3_and_round_trips() {
        for content in [
            Content::Rendered(RenderedEmail {
                sender: "flyte@example.com".into(),
                subject: "s".into(),
                body: "<p>b</p>".into(),
            }),
            Content::Unreadable {
                raw: vec![0, 0xff, b'x'],
                error: "not an SNS envelope".into(),
            },
            Content::Webhook(WebhookSpec {
                target: WebhookTarget::Destination("ops".into()),
                method: "POST".into(),
                headers: vec![("X-Team".into(), "ml".into())],
                body_template: "{\"n\": \"{{ name }}\"}".into(),
                timeout_ms: Some(5000),
            }),
            Content::Digest,
        ] {
            let payload = Payload {
                channel: Channel::Email,
                recipients: vec!["a@example.com".into()],
                content,
            };
            let stored = payload.encode();
            assert!(stored.contains(r#""version":"3""#), "{stored}");
            assert_eq!(Payload::decode(&stored).unwrap(), (payload, None));
        }
    }

    #[test]
    fn one_parser_says_what_can_be_sent() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.org",
            "Flyte <f@example.com>",
        ] {
            assert!(email_address(ok).is_ok(), "{ok}");
        }
        // The first two were accepted by validation and refused by the email builder, so the
        // delivery died on its first attempt for every co-recipient.
        for bad in [
            "\"a b\"@example.com",
            "a@[127.0.0.1]",
            "x@example.com\r\nBcc: y@example.com",
            "",
            "a",
            "a@",
            "@example.com",
            "oncall at example.com",
            "a@b@c",
        ] {
            assert!(email_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("fax"), None);
    }
}
