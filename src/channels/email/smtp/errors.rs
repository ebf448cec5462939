//! What an SMTP failure means for the delivery (retry, or give up) and how it reads: every error
//! names the server and the step, and never holds the password in any form the server might
//! echo.

use std::fmt::Display;

use lettre::transport::smtp::Error;

use crate::channels::SendError;

/// The operator's two ways to set the password, for the hint of a refused login.
const PASSWORD_KEYS: &str = "notifications.emailer.emailServerConfig.smtpPasswordSecretName \
                             (env FLYTE_SECRET_<name>, else <secretsDir>/<name>) or \
                             flyteNotify.smtp.passwordFile";

/// Builds the errors of one server.
pub(super) struct Errors {
    /// `smtp host:port`, the start of every message.
    label: String,
    /// Every form in which the password could come back in a server's reply (plain, and as the
    /// base64 of a PLAIN exchange), longest first.
    secrets: Vec<String>,
}

impl Errors {
    pub(super) fn new(host: &str, port: u16, credentials: Option<(&str, &str)>) -> Self {
        Self {
            label: format!("smtp {host}:{port}"),
            secrets: credentials
                .map(|(user, password)| secret_forms(user, password))
                .unwrap_or_default(),
        }
    }

    pub(super) fn retryable(&self, why: impl Display) -> SendError {
        SendError::retryable(self.scrub(format!("{}: {why}", self.label)))
    }

    pub(super) fn permanent(&self, why: impl Display) -> SendError {
        SendError::permanent(self.scrub(format!("{}: {why}", self.label)))
    }

    /// The failure of `step` (connect, STARTTLS, MAIL FROM, ...). A 5xx reply about the message
    /// is permanent; everything else (connection trouble, 4xx, timeouts, TLS) is retried.
    pub(super) fn classify(&self, step: &str, e: &Error) -> SendError {
        let message = self.scrub(format!("{} {step}: {e}", self.label));
        // At MAIL FROM these mean "authenticate first": the server wanted AUTH that it did not
        // offer before STARTTLS, or that no username was configured for. The operator fixes the
        // config and restarts; deliveries that were retrying then go out without a redrive.
        let wants_auth = matches!(
            e.status().map(|c| c.to_string()).as_deref(),
            Some("530" | "534" | "535" | "538")
        );
        // A client error is lettre refusing the message itself (an address the server cannot
        // take, say): sending it again cannot help. Timeouts are not client errors.
        if (e.is_permanent() && !wants_auth) || e.is_client() {
            SendError::permanent(message)
        } else {
            SendError::retryable(message)
        }
    }

    /// The server's answer to AUTH. A 5xx (535 bad credentials, 534 mechanism too weak, 530,
    /// 538) cannot change until the operator changes the password, so it is permanent, and says
    /// whose login it was and where the password comes from. A 4xx (454, a temporary failure of
    /// the server's own user database) is retried.
    pub(super) fn login_refused(&self, user: &str, e: &Error) -> SendError {
        if !e.is_permanent() {
            return self.classify("AUTH", e);
        }
        self.permanent(format_args!(
            "AUTH: the server refused the login of user {user:?} ({e}); check the password set \
             by {PASSWORD_KEYS}"
        ))
    }

    /// `text` with every secret form replaced: a server that echoes the AUTH line in its reply
    /// must not put the password into ListPending's last_error and the log.
    fn scrub(&self, text: String) -> String {
        self.secrets.iter().fold(text, |text, secret| {
            text.replace(secret.as_str(), "<redacted>")
        })
    }
}

/// Whether `e` says the connection itself is gone (the peer closed it, reset it, or answered
/// 421 "closing"), as opposed to an answer about the message: on a connection that sat idle,
/// that is a server that dropped it, and a new connection may well succeed.
pub(super) fn is_connection_trouble(e: &Error) -> bool {
    match e.status() {
        Some(code) => code.to_string() == "421",
        None => !e.is_client(),
    }
}

fn secret_forms(user: &str, password: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    if password.is_empty() {
        return Vec::new();
    }
    let mut forms = vec![
        STANDARD.encode(format!("\0{user}\0{password}")),
        STANDARD.encode(password),
        password.to_string(),
    ];
    // Longest first, so that a form containing another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_credentials_are_scrubbed_from_errors() {
        let errors = Errors::new("h", 25, Some(("flyte", "s3cr3t pass")));
        // What a server echoing the PLAIN initial response would send back.
        let reply = "535 5.7.8 AUTH PLAIN AGZseXRlAHMzY3IzdCBwYXNz rejected (s3cr3t pass)";
        let e = errors.retryable(reply);
        assert_eq!(
            e.to_string(),
            "smtp h:25: 535 5.7.8 AUTH PLAIN <redacted> rejected (<redacted>)"
        );
    }
}
