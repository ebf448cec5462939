//! SMTP as FlyteAdmin does it: STARTTLS when the server offers it, PLAIN authentication when the
//! server offers it and a username is configured, then one message to all recipients.
//!
//! We drive lettre's connection directly rather than its pooled transport because the transport
//! insists on authenticating whenever credentials are set, and FlyteAdmin's behaviour is "when
//! offered". A 5xx reply about the message is permanent; everything else (connection refused, 4xx,
//! timeouts, TLS and authentication trouble an operator can fix) is retried.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::{build_email, email_of};
use crate::channels::{SendError, Sender};
use crate::delivery::{Channel, DeliveryRef, Rendered};

pub struct SmtpSender {
    host: String,
    port: u16,
    skip_tls_verify: bool,
    credentials: Option<Credentials>,
    /// Every form in which the password could come back in a server's reply (plain, and as the
    /// base64 of a PLAIN or LOGIN exchange), to scrub from errors before they are stored.
    secrets: Vec<String>,
    timeout: Duration,
    /// Whether the operator has been told that the server offers no AUTH although a username is
    /// configured: once per process is enough to act on, and every send would flood the log.
    warned_no_auth: std::sync::atomic::AtomicBool,
}

/// FlyteAdmin's secret convention: env `FLYTE_SECRET_<name>`, else the file `<dir>/<name>`,
/// trailing whitespace trimmed.
pub fn read_secret(name: &str, dir: &Path) -> Result<String, String> {
    if let Ok(value) = std::env::var(format!("FLYTE_SECRET_{name}")) {
        return Ok(value.trim_end().to_string());
    }
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map(|s| s.trim_end().to_string())
        .map_err(|e| {
            format!(
                "secret {name:?}: FLYTE_SECRET_{name} is not set and {} cannot be read: {e}",
                path.display()
            )
        })
}

impl SmtpSender {
    pub fn new(
        host: String,
        port: u16,
        skip_tls_verify: bool,
        credentials: Option<(String, String)>,
        timeout: Duration,
    ) -> Self {
        Self {
            host,
            port,
            skip_tls_verify,
            secrets: credentials
                .as_ref()
                .map(|(user, pass)| secret_forms(user, pass))
                .unwrap_or_default(),
            credentials: credentials.map(|(user, pass)| Credentials::new(user, pass)),
            timeout,
            warned_no_auth: Default::default(),
        }
    }

    async fn deliver(
        &self,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let hello = ClientId::default();
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &hello,
            None,
            None,
        )
        .await
        .map_err(|e| classify(&self.host, self.port, "connect", e, &self.secrets))?;
        if conn.can_starttls() {
            let tls = TlsParameters::builder(self.host.clone())
                .dangerous_accept_invalid_certs(self.skip_tls_verify)
                .dangerous_accept_invalid_hostnames(self.skip_tls_verify)
                .build()
                .map_err(|e| SendError::retryable(format!("smtp TLS setup: {e}")))?;
            conn.starttls(tls, &hello)
                .await
                .map_err(|e| classify(&self.host, self.port, "STARTTLS", e, &self.secrets))?;
        }
        let offers_plain = conn.server_info().supports_auth_mechanism(Mechanism::Plain);
        if self.credentials.is_some()
            && !offers_plain
            && !self
                .warned_no_auth
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // FlyteAdmin sends unauthenticated here too; an operator who set a username expects
            // otherwise, and a relay that accepts the mail anyway may not deliver it onwards.
            tracing::warn!(
                "smtp {}:{} offers no AUTH PLAIN{}: sending without authenticating although \
                 smtpUsername is set",
                self.host,
                self.port,
                if conn.is_encrypted() {
                    ""
                } else {
                    " (nor STARTTLS, after which servers often offer it)"
                }
            );
        }
        if let Some(credentials) = &self.credentials
            && offers_plain
        {
            if !may_send_password(conn.is_encrypted(), &self.host) {
                conn.abort().await;
                return Err(SendError::retryable(format!(
                    "smtp {}:{}: refusing to send the password unencrypted: the server offers AUTH \
                     but not STARTTLS",
                    self.host, self.port
                )));
            }
            conn.auth(&[Mechanism::Plain], credentials)
                .await
                .map_err(|e| classify(&self.host, self.port, "AUTH", e, &self.secrets))?;
        }
        conn.send(envelope, bytes)
            .await
            .map_err(|e| classify(&self.host, self.port, "send", e, &self.secrets))?;
        // The message is accepted once DATA is answered with 250; QUIT failing changes nothing.
        let _ = conn.quit().await;
        Ok(())
    }
}

/// PLAIN sends the password in the clear: only over TLS, or to this machine (a local relay), as
/// Go's smtp.PlainAuth (and so FlyteAdmin) allows.
fn may_send_password(encrypted: bool, host: &str) -> bool {
    encrypted
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

/// `text` with every secret form replaced: a server that echoes the AUTH line in its reply must
/// not put the password into ListPending's last_error and the log.
fn scrub(text: String, secrets: &[String]) -> String {
    secrets.iter().fold(text, |text, secret| {
        text.replace(secret.as_str(), "<redacted>")
    })
}

fn classify(
    host: &str,
    port: u16,
    step: &str,
    e: lettre::transport::smtp::Error,
    secrets: &[String],
) -> SendError {
    let message = scrub(format!("smtp {host}:{port} {step}: {e}"), secrets);
    let auth_trouble = matches!(
        e.status().map(|c| c.to_string()).as_deref(),
        Some("530" | "534" | "535" | "538")
    );
    // A client error is lettre refusing the message itself (an address the server cannot take,
    // say): sending it again cannot help. Timeouts are not client errors.
    if (e.is_permanent() && !auth_trouble) || e.is_client() {
        SendError::permanent(message)
    } else {
        SendError::retryable(message)
    }
}

#[async_trait]
impl Sender for SmtpSender {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let email = build_email(delivery, email_of(self.name(), message)?)?;
        let envelope = email.envelope().clone();
        let bytes = email.formatted();
        self.deliver(&envelope, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::may_send_password;

    #[test]
    fn echoed_credentials_are_scrubbed_from_errors() {
        let secrets = super::secret_forms("flyte", "s3cr3t pass");
        // What a server echoing the PLAIN initial response would send back.
        let reply = "535 5.7.8 AUTH PLAIN AGZseXRlAHMzY3IzdCBwYXNz rejected (s3cr3t pass)";
        let scrubbed = super::scrub(reply.to_string(), &secrets);
        assert_eq!(
            scrubbed,
            "535 5.7.8 AUTH PLAIN <redacted> rejected (<redacted>)"
        );
    }

    #[test]
    fn the_password_goes_only_over_tls_or_to_this_machine() {
        assert!(may_send_password(true, "smtp.example.com"));
        assert!(!may_send_password(false, "smtp.example.com"));
        assert!(!may_send_password(false, "10.0.0.5"));
        assert!(may_send_password(false, "localhost"));
        assert!(may_send_password(false, "127.0.0.1"));
        assert!(may_send_password(false, "::1"));
    }
}
