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

/// Builds the multipart/alternative (plain text first, HTML preferred) email for `message`.
/// An address that does not parse here can never be sent, so it is a permanent error.
pub fn build_email(
    delivery: &DeliveryRef,
    message: &EmailMessage,
) -> Result<lettre::Message, SendError> {
    let from =
        email_address(&message.sender).map_err(|e| SendError::permanent(format!("sender: {e}")))?;
    let mut to = Mailboxes::new();
    for r in &message.recipients {
        to.push(email_address(r).map_err(|e| SendError::permanent(format!("recipient: {e}")))?);
    }
    lettre::Message::builder()
        .message_id(Some(message_id(delivery, &from)))
        .from(from)
        .mailbox(header::To::from(to))
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
    use crate::delivery::LeaseToken;

    #[test]
    fn every_attempt_of_a_delivery_has_the_same_message_id() {
        let email = EmailMessage {
            recipients: vec!["a@example.com".into()],
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
        let first = build_email(&attempt(1, 7), &email).unwrap().formatted();
        let again = build_email(&attempt(2, -3), &email).unwrap().formatted();
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
