//! SMTP as FlyteAdmin does it (STARTTLS when the server offers it, PLAIN authentication when the
//! server offers it and a username is configured, one message to all recipients), with implicit
//! TLS as well. A 5xx reply about the message and a refused login are permanent; everything else
//! (connection refused, 4xx, timeouts, TLS trouble an operator can fix) is retried.

mod connector;
mod errors;
mod password;
mod tls;

use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;

use self::connector::{Connector, Login};
use self::errors::Errors;
use super::{build_email, email_of};
use crate::channels::secret::Secret;
use crate::channels::{SendError, Sender};
use crate::delivery::{Channel, DeliveryRef, Rendered};

pub use self::password::{read_password_file, read_secret, smtp_password};
pub use self::tls::SmtpTls;

pub struct SmtpSender {
    connector: Connector,
    errors: Errors,
    /// The bound on one whole send, reconnecting included: lettre bounds only the TCP connect,
    /// and a server that accepts and then says nothing would otherwise hold the send forever.
    timeout: Duration,
}

impl SmtpSender {
    /// A sender to `host:port` in `SmtpTls::Auto` mode (FlyteAdmin's behaviour; see
    /// `with_tls`). `credentials` are a username and password for PLAIN, used when the server
    /// offers it; `timeout` bounds each send.
    pub fn new(
        host: String,
        port: u16,
        skip_tls_verify: bool,
        credentials: Option<(String, String)>,
        timeout: Duration,
    ) -> Self {
        let errors = Errors::new(
            &host,
            port,
            credentials
                .as_ref()
                .map(|(user, password)| (user.as_str(), password.as_str())),
        );
        let login = credentials.map(|(user, password)| Login {
            user,
            password: Secret::new(password),
        });
        Self {
            connector: Connector::new(
                host,
                port,
                SmtpTls::Auto.upgrade(port),
                skip_tls_verify,
                login,
                timeout,
            ),
            errors,
            timeout,
        }
    }

    /// The same sender with TLS as `tls` says (`flyteNotify.smtp.tls`).
    pub fn with_tls(mut self, tls: SmtpTls) -> Self {
        self.connector.upgrade = tls.upgrade(self.connector.port);
        self
    }

    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        let within = tokio::time::timeout(self.timeout, async {
            let mut conn = self.connector.open(&self.errors).await?;
            conn.send(envelope, message)
                .await
                .map_err(|e| self.errors.classify("send", &e))?;
            // The message is accepted once DATA is answered with 250; QUIT failing changes
            // nothing, and must not turn a delivered message into a timeout.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
            });
            Ok(())
        })
        .await;
        within.unwrap_or_else(|_| {
            Err(self.errors.retryable(format_args!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )))
        })
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
