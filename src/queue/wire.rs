//! What travels on the cloud queues, in FlyteAdmin's formats, so that either end of a queue can be
//! FlyteAdmin. FlyteAdmin publishes an already rendered `EmailMessage`:
//!
//! - on SNS, Subject `flyteidl.admin.EmailNotification` and the message base64 (standard); the
//!   SQS queue subscribed to the topic receives SNS's JSON envelope around it;
//! - on Pub/Sub, the raw bytes with attribute `key` set to the same name.
//!
//! flyte-notify's own announcements of ledger deliveries carry the delivery id as well (an SNS
//! message attribute, a Pub/Sub attribute), so that its processor recognises them as work the
//! ledger already holds, while FlyteAdmin's processor, which ignores attributes, can still read an
//! email one.

use std::collections::HashMap;

use base64::Engine as _;
use prost::Message as _;

use crate::proto::flyteidl::admin::EmailMessage;

/// FlyteAdmin's SNS Subject and Pub/Sub `key` for an email.
pub const EMAIL_KIND: &str = "flyteidl.admin.EmailNotification";
/// Our Subject and `key` for an announced delivery that is not an email.
pub const DELIVERY_KIND: &str = "flytenotify.v1.Delivery";
/// The attribute that names the ledger delivery a message announces.
pub const DELIVERY_ID_ATTRIBUTE: &str = "flyte-notify-delivery-id";
/// Pub/Sub's attribute that says what the data is (FlyteAdmin's name for it).
pub const PUBSUB_KIND_ATTRIBUTE: &str = "key";

/// The most recipients one received email may have. No emailer takes more in one message (SES
/// takes 50, SendGrid 1000), and a message naming more would only be a very large dead entry.
pub const MAX_RECIPIENTS: usize = 1000;

/// The most raw bytes of an undecodable message kept with its dead entry: enough to recognise it,
/// bounded so that a huge poison message cannot bloat the ledger.
pub const MAX_POISON_BYTES: usize = 16 * 1024;

/// What a received message asks of the processor.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A delivery the ledger already holds (published by a flyte-notify Enqueue).
    Announced { delivery_id: String },
    /// FlyteAdmin's rendered email: a new delivery, keyed by the broker's message id.
    FlyteAdminEmail(EmailMessage),
    /// Cannot be read: kept as a dead entry with the reason and the first bytes, then removed.
    Poison { error: String, raw: Vec<u8> },
}

fn poison(error: impl Into<String>, raw: &[u8]) -> Inbound {
    Inbound::Poison {
        error: error.into(),
        raw: raw[..raw.len().min(MAX_POISON_BYTES)].to_vec(),
    }
}

/// Decodes and checks FlyteAdmin's `EmailMessage` bytes: an email with no recipient or sender
/// could never be sent, and is better dead with that reason than retried.
fn email(bytes: &[u8], raw: &[u8]) -> Inbound {
    match EmailMessage::decode(bytes) {
        Ok(m) if m.recipients_email.iter().all(|r| r.trim().is_empty()) => {
            poison("the EmailMessage has no recipients", raw)
        }
        Ok(m) if m.sender_email.trim().is_empty() => {
            poison("the EmailMessage has no sender_email", raw)
        }
        Ok(m) if m.recipients_email.len() > MAX_RECIPIENTS => poison(
            format!(
                "the EmailMessage has {} recipients; at most {MAX_RECIPIENTS} can be sent",
                m.recipients_email.len()
            ),
            raw,
        ),
        Ok(m) => Inbound::FlyteAdminEmail(m),
        Err(e) => poison(format!("not a flyteidl.admin.EmailMessage: {e}"), raw),
    }
}

/// The body of an SQS message from an SNS subscription (not raw delivery): SNS's JSON envelope.
pub fn from_sns_envelope(body: &str) -> Inbound {
    let raw = body.as_bytes();
    let envelope: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return poison(format!("not an SNS envelope (JSON): {e}"), raw),
    };
    let attribute = envelope
        .pointer(&format!("/MessageAttributes/{DELIVERY_ID_ATTRIBUTE}/Value"))
        .and_then(|v| v.as_str());
    if let Some(id) = attribute.filter(|id| !id.is_empty()) {
        return Inbound::Announced {
            delivery_id: id.to_string(),
        };
    }
    let subject = envelope
        .get("Subject")
        .and_then(|s| s.as_str())
        .unwrap_or("");
    if subject != EMAIL_KIND {
        return poison(
            format!("SNS Subject {subject:?} is not {EMAIL_KIND:?} and no delivery id is attached"),
            raw,
        );
    }
    let Some(message) = envelope.get("Message").and_then(|m| m.as_str()) else {
        return poison("the SNS envelope has no Message", raw);
    };
    match base64::engine::general_purpose::STANDARD.decode(message.trim()) {
        Ok(bytes) => email(&bytes, raw),
        Err(e) => poison(format!("the SNS Message is not base64: {e}"), raw),
    }
}

/// A Pub/Sub message: FlyteAdmin's raw bytes under `key`, or our announcement.
pub fn from_pubsub(data: &[u8], attributes: &HashMap<String, String>) -> Inbound {
    if let Some(id) = attributes
        .get(DELIVERY_ID_ATTRIBUTE)
        .filter(|id| !id.is_empty())
    {
        return Inbound::Announced {
            delivery_id: id.clone(),
        };
    }
    match attributes.get(PUBSUB_KIND_ATTRIBUTE).map(String::as_str) {
        Some(EMAIL_KIND) => email(data, data),
        other => poison(
            format!(
                "Pub/Sub attribute {PUBSUB_KIND_ATTRIBUTE:?} is {other:?}, not {EMAIL_KIND:?}, and no \
                 delivery id is attached"
            ),
            data,
        ),
    }
}

/// An SNS Publish as FlyteAdmin makes it: (Subject, Message).
pub fn to_sns_email(message: &EmailMessage) -> (&'static str, String) {
    (
        EMAIL_KIND,
        base64::engine::general_purpose::STANDARD.encode(message.encode_to_vec()),
    )
}

/// A Pub/Sub message as FlyteAdmin makes it: (data, attributes).
pub fn to_pubsub_email(message: &EmailMessage) -> (Vec<u8>, HashMap<String, String>) {
    (
        message.encode_to_vec(),
        HashMap::from([(PUBSUB_KIND_ATTRIBUTE.to_string(), EMAIL_KIND.to_string())]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> EmailMessage {
        EmailMessage {
            recipients_email: vec!["oncall@example.com".into()],
            sender_email: "flyte@example.com".into(),
            subject_line: "Execution x has failed".into(),
            body: "<p>x</p>".into(),
        }
    }

    /// SNS's envelope as an SQS subscriber (not raw delivery) receives it.
    fn envelope(subject: &str, message: &str, attributes: serde_json::Value) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "5b0e2c1a-0000-4000-8000-000000000001",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:flyte-notifications",
            "Subject": subject,
            "Message": message,
            "Timestamp": "2026-11-27T05:00:00.000Z",
            "MessageAttributes": attributes,
        })
        .to_string()
    }

    #[test]
    fn flyteadmins_sns_message_round_trips() {
        let (subject, body) = to_sns_email(&message());
        assert_eq!(subject, "flyteidl.admin.EmailNotification");
        let inbound = from_sns_envelope(&envelope(subject, &body, serde_json::json!({})));
        assert_eq!(inbound, Inbound::FlyteAdminEmail(message()));
    }

    #[test]
    fn flyteadmins_pubsub_message_round_trips() {
        let (data, attributes) = to_pubsub_email(&message());
        assert_eq!(attributes["key"], "flyteidl.admin.EmailNotification");
        assert_eq!(
            from_pubsub(&data, &attributes),
            Inbound::FlyteAdminEmail(message())
        );
    }

    #[test]
    fn an_attached_delivery_id_wins_over_the_content() {
        let (subject, body) = to_sns_email(&message());
        let attributes = serde_json::json!({
            DELIVERY_ID_ATTRIBUTE: {"Type": "String", "Value": "0193-abc"}
        });
        assert_eq!(
            from_sns_envelope(&envelope(subject, &body, attributes)),
            Inbound::Announced {
                delivery_id: "0193-abc".into()
            }
        );
        let attributes =
            HashMap::from([(DELIVERY_ID_ATTRIBUTE.to_string(), "0193-abc".to_string())]);
        assert_eq!(
            from_pubsub(b"", &attributes),
            Inbound::Announced {
                delivery_id: "0193-abc".into()
            }
        );
    }

    #[test]
    fn undecodable_messages_are_poison_with_the_reason() {
        let none = serde_json::json!({});
        for (body, reason) in [
            ("not json".to_string(), "not an SNS envelope"),
            (
                envelope("other", "x", none.clone()),
                "is not \"flyteidl.admin.EmailNotification\"",
            ),
            (envelope(EMAIL_KIND, "%%%", none.clone()), "not base64"),
            (
                envelope(EMAIL_KIND, "AAEC", none.clone()),
                "not a flyteidl.admin.EmailMessage",
            ),
            (
                envelope(
                    EMAIL_KIND,
                    &to_sns_email(&EmailMessage::default()).1,
                    none.clone(),
                ),
                "no recipients",
            ),
        ] {
            match from_sns_envelope(&body) {
                Inbound::Poison { error, raw } => {
                    assert!(error.contains(reason), "{body}: {error}");
                    assert_eq!(raw, body.as_bytes());
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        match from_pubsub(&[0xff; 3], &HashMap::new()) {
            Inbound::Poison { error, raw } => {
                assert!(error.contains("\"key\""), "{error}");
                assert_eq!(raw, vec![0xff; 3]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn more_recipients_than_any_emailer_takes_is_poison() {
        let mut m = message();
        m.recipients_email = vec!["a@example.com".into(); MAX_RECIPIENTS + 1];
        let (data, attributes) = to_pubsub_email(&m);
        match from_pubsub(&data, &attributes) {
            Inbound::Poison { error, .. } => assert!(error.contains("1001 recipients"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_huge_poison_message_keeps_only_its_first_bytes() {
        let body = "x".repeat(MAX_POISON_BYTES * 4);
        match from_sns_envelope(&body) {
            Inbound::Poison { raw, .. } => assert_eq!(raw.len(), MAX_POISON_BYTES),
            other => panic!("{other:?}"),
        }
    }
}
