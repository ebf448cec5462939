//! Email senders and the one place that turns a rendered email into RFC 5322 bytes.

pub mod maildir;
pub mod sendgrid;
pub mod ses;
pub mod smtp;

use lettre::message::{Mailbox, Mailboxes, MultiPart, header};

use super::SendError;
use crate::delivery::{DeliveryRef, EmailMessage, Rendered, email_address};

/// The email in `message`, or the error a non-email sender would give.
pub fn email_of<'a>(sender: &str, message: &'a Rendered) -> Result<&'a EmailMessage, SendError> {
    match message {
        Rendered::Email(email) => Ok(email),
        other => Err(SendError::wrong_channel(sender, other)),
    }
}

/// The Message-ID of every attempt of `delivery`: the same on a re-send after a crash, so that
/// mail clients and archives see one message, not two.
pub fn message_id(delivery: &DeliveryRef, sender: &Mailbox) -> String {
    format!("<{}.flyte-notify@{}>", delivery.id, sender.email.domain())
}

/// What to do with the Bcc header once the envelope has its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BccHeader {
    /// Left out: the message goes to other people, who must not learn of each other.
    Drop,
    /// Kept: the message is the sender's own copy (a Maildir), where the Bcc line is the only
    /// record of who else got it, as a mail client's Sent folder keeps it.
    Keep,
}

/// `list` read as mailboxes; `field` ("recipient", "cc", "bcc") names the list in the error.
pub fn mailboxes(field: &str, list: &[String]) -> Result<Mailboxes, SendError> {
    let mut boxes = Mailboxes::new();
    for r in list {
        boxes.push(email_address(r).map_err(|e| SendError::permanent(format!("{field}: {e}")))?);
    }
    Ok(boxes)
}

/// The refusal of a sender that can only send the subject and bodies we render: a provider
/// template lives at SendGrid or SES, and nothing here can fill it in.
pub fn refuse_provider_template(sender: &str, email: &EmailMessage) -> Result<(), SendError> {
    match &email.provider_template {
        None => Ok(()),
        Some(t) => Err(SendError::permanent(format!(
            "the configured emailer ({sender}) has no provider templates, so the email's \
             template {} cannot be sent; configure SendGrid or SES, or give the email an inline \
             subject and body",
            crate::delivery::quoted(&t.template_id)
        ))),
    }
}

/// Builds the multipart/alternative (plain text first, HTML preferred) email for `message`, with
/// its Cc header, and its Bcc addresses in the envelope (and in a Bcc header only with
/// `BccHeader::Keep`). An address that does not parse here can never be sent, so it is a
/// permanent error.
pub fn build_email(
    delivery: &DeliveryRef,
    message: &EmailMessage,
    bcc_header: BccHeader,
) -> Result<lettre::Message, SendError> {
    let from =
        email_address(&message.sender).map_err(|e| SendError::permanent(format!("sender: {e}")))?;
    let mut builder = lettre::Message::builder()
        .message_id(Some(message_id(delivery, &from)))
        .from(from)
        .mailbox(header::To::from(mailboxes(
            "recipient",
            &message.recipients,
        )?));
    if !message.cc.is_empty() {
        builder = builder.mailbox(header::Cc::from(mailboxes("cc", &message.cc)?));
    }
    if !message.bcc.is_empty() {
        builder = builder.mailbox(header::Bcc::from(mailboxes("bcc", &message.bcc)?));
    }
    if bcc_header == BccHeader::Keep {
        builder = builder.keep_bcc();
    }
    builder
        .subject(message.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            message.text_body.clone(),
            message.html_body.clone(),
        ))
        .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{LeaseToken, ProviderTemplate};

    fn copied() -> EmailMessage {
        EmailMessage {
            recipients: vec!["a@example.com".into()],
            cc: vec!["C <c@example.com>".into()],
            bcc: vec!["b@example.com".into()],
            sender: "flyte@example.org".into(),
            subject: "s".into(),
            html_body: "<p>h</p>".into(),
            text_body: "t".into(),
            provider_template: None,
        }
    }

    fn delivery() -> DeliveryRef {
        DeliveryRef {
            id: "d".into(),
            request_id: "r".into(),
            attempt: 1,
            lease: LeaseToken(1),
        }
    }

    #[test]
    fn cc_is_a_header_and_bcc_is_only_in_the_envelope_unless_kept() {
        let sent = build_email(&delivery(), &copied(), BccHeader::Drop).unwrap();
        let envelope: Vec<String> = sent.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            envelope,
            ["a@example.com", "c@example.com", "b@example.com"]
        );
        let text = String::from_utf8(sent.formatted()).unwrap();
        assert!(text.contains("\r\nCc: C <c@example.com>\r\n"), "{text}");
        assert!(!text.contains("b@example.com"), "{text}");
        let kept = build_email(&delivery(), &copied(), BccHeader::Keep).unwrap();
        let text = String::from_utf8(kept.formatted()).unwrap();
        assert!(text.contains("\r\nBcc: b@example.com\r\n"), "{text}");
        let mut bad = copied();
        bad.bcc = vec!["not an address".into()];
        let e = build_email(&delivery(), &bad, BccHeader::Drop).unwrap_err();
        assert!(e.to_string().starts_with("bcc: "), "{e}");
    }

    #[test]
    fn a_provider_template_is_refused_by_name() {
        assert_eq!(refuse_provider_template("smtp", &copied()), Ok(()));
        let mut templated = copied();
        templated.provider_template = Some(ProviderTemplate {
            template_id: "d-123".into(),
            data: Default::default(),
        });
        let e = refuse_provider_template("smtp", &templated).unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("the configured emailer (smtp) has no provider templates"),
            "{e}"
        );
        assert!(e.to_string().contains("\"d-123\""), "{e}");
    }

    #[test]
    fn every_attempt_of_a_delivery_has_the_same_message_id() {
        let email = EmailMessage {
            recipients: vec!["a@example.com".into()],
            cc: Vec::new(),
            bcc: Vec::new(),
            provider_template: None,
            sender: "Flyte <flyte@example.org>".into(),
            subject: "s".into(),
            html_body: "<p>h</p>".into(),
            text_body: "t".into(),
        };
        let attempt = |n, token| DeliveryRef {
            id: "0194-abc".into(),
            request_id: "r".into(),
            attempt: n,
            lease: LeaseToken(token),
        };
        let first = build_email(&attempt(1, 7), &email, BccHeader::Drop)
            .unwrap()
            .formatted();
        let again = build_email(&attempt(2, -3), &email, BccHeader::Drop)
            .unwrap()
            .formatted();
        let header = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            header(&first),
            "Message-ID: <0194-abc.flyte-notify@example.org>"
        );
        assert_eq!(header(&first), header(&again));
    }
}
