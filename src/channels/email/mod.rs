//! Email senders and the one place that turns a rendered message into RFC 5322 bytes.

pub mod maildir;
pub mod smtp;

use lettre::message::{Mailbox, Mailboxes, MultiPart, header};

use super::SendError;
use crate::ledger::Message;

/// Builds the multipart/alternative (plain text first, HTML preferred) email for `message`.
/// An address that does not parse here can never be sent, so it is a permanent error.
pub fn build_email(message: &Message) -> Result<lettre::Message, SendError> {
    let from: Mailbox = message
        .sender
        .parse()
        .map_err(|e| SendError::permanent(format!("sender {:?}: {e}", message.sender)))?;
    let mut to = Mailboxes::new();
    for r in &message.recipients {
        let mailbox: Mailbox = r
            .parse()
            .map_err(|e| SendError::permanent(format!("recipient {r:?}: {e}")))?;
        to.push(mailbox);
    }
    lettre::Message::builder()
        .from(from)
        .mailbox(header::To::from(to))
        .subject(message.subject.clone())
        // Mail clients thread and de-duplicate by Message-ID; lettre derives it from the hostname.
        .message_id(None)
        .multipart(MultiPart::alternative_plain_html(
            message.text_body.clone(),
            message.html_body.clone(),
        ))
        .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))
}
