//! One message over an open connection: MAIL FROM, RCPT TO for each recipient, DATA, the
//! message. We issue the commands ourselves (lettre's `send` does the same in one call) to know
//! how far a failure got: until the message itself is written, nothing can have been delivered,
//! so a connection found dead on the way may be replaced and the message sent on the new one
//! without risk of a duplicate.

use lettre::address::Envelope;
use lettre::transport::smtp::Error;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Mail,
    Rcpt,
    Data,
    /// Writing the message and waiting for the server's verdict on it.
    Message,
}

impl Step {
    pub(super) fn name(self) -> &'static str {
        match self {
            Step::Mail => "MAIL FROM",
            Step::Rcpt => "RCPT TO",
            Step::Data => "DATA",
            Step::Message => "send",
        }
    }
}

#[derive(Debug)]
pub(super) enum Failure {
    /// The server's answer (or the connection's end) at `step`.
    Smtp { step: Step, error: Error },
    /// The message needs an SMTP extension that the server does not offer; no retry adds it.
    Unsupported(&'static str),
}

impl Failure {
    /// Whether the connection is gone, rather than answering: then saying QUIT only waits.
    pub(super) fn is_connection_trouble(&self) -> bool {
        match self {
            Failure::Smtp { error, .. } => super::errors::is_connection_trouble(error),
            Failure::Unsupported(_) => false,
        }
    }
}

/// Sends `message` to `envelope`'s recipients. After an error the connection is in an unknown
/// state (mid-transaction, or closed) and must not be used again.
pub(super) async fn send(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<(), Failure> {
    let mut parameters = Vec::new();
    let addresses_ascii = envelope
        .to()
        .iter()
        .chain(envelope.from())
        .all(|a| AsRef::<str>::as_ref(a).is_ascii());
    if !addresses_ascii {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Unsupported(
                "an address is not ASCII and the server does not offer SMTPUTF8",
            ));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    // build_email encodes every part to 7-bit; this only guards against a future change there.
    if !message.is_ascii() {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(Failure::Unsupported(
                "the message is not 7-bit and the server does not offer 8BITMIME",
            ));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let at = |step| move |error| Failure::Smtp { step, error };
    conn.command(Mail::new(envelope.from().cloned(), parameters))
        .await
        .map_err(at(Step::Mail))?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), Vec::new()))
            .await
            .map_err(at(Step::Rcpt))?;
    }
    conn.command(Data).await.map_err(at(Step::Data))?;
    conn.message(message).await.map_err(at(Step::Message))?;
    Ok(())
}
