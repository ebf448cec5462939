//! SMTP as FlyteAdmin does it (STARTTLS when the server offers it, PLAIN authentication when the
//! server offers it and a username is configured, one message to all recipients), with implicit
//! TLS as well, and connections kept open between messages.
//!
//! A send reuses an idle connection when there is one. A server may have dropped it meanwhile
//! (an idle timeout, a restart): when the connection turns out dead before any of the message
//! was written, the send opens a new connection and goes on, once, and the caller never hears of
//! it. A 5xx reply about the message and a refused login are permanent; everything else
//! (connection refused, 4xx, timeouts, TLS trouble an operator can fix) is retried.

mod connector;
mod errors;
mod password;
mod pool;
mod tls;
mod transaction;

use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;

use self::connector::{Connector, Login};
use self::errors::{Errors, is_connection_trouble};
use self::pool::{Pool, Pooled};
use self::transaction::{Failure, Step};
use super::{BccHeader, build_email, email_of, refuse_provider_template};
use crate::channels::secret::Secret;
use crate::channels::{SendError, Sender};
use crate::delivery::{Channel, DeliveryRef, Rendered};

pub use self::password::{read_password_file, read_secret, smtp_password};
pub use self::tls::SmtpTls;

/// Sends email to one SMTP server, keeping a few authenticated connections open between sends.
pub struct SmtpSender {
    connector: Connector,
    pool: Pool,
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
            pool: Pool::default(),
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
            if let Some(idle) = self.pool.take() {
                match self.send_on(idle, envelope, message).await {
                    Err(Failure::Smtp { step, error })
                        if step != Step::Message && is_connection_trouble(&error) =>
                    {
                        tracing::debug!(
                            "{}; the connection had been idle, sending on a new one",
                            self.errors.classify(step.name(), &error)
                        );
                        self.pool.clear();
                    }
                    done => return done.map_err(|failure| self.failed(failure)),
                }
            }
            let fresh = Pooled::new(self.connector.open(&self.errors).await?);
            self.send_on(fresh, envelope, message)
                .await
                .map_err(|failure| self.failed(failure))
        })
        .await;
        within.unwrap_or_else(|_| {
            Err(self.errors.retryable(format_args!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )))
        })
    }

    /// Sends over `conn`, then keeps it for the next message, or closes it after a failure:
    /// mid-transaction, it is in no state to be reused.
    async fn send_on(
        &self,
        mut conn: Pooled,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), Failure> {
        match transaction::send(&mut conn.conn, envelope, message).await {
            Ok(()) => {
                self.pool.put(conn);
                Ok(())
            }
            Err(failure) => {
                if !failure.is_connection_trouble() {
                    pool::retire(conn);
                }
                Err(failure)
            }
        }
    }

    fn failed(&self, failure: Failure) -> SendError {
        match failure {
            Failure::Smtp { step, error } => self.errors.classify(step.name(), &error),
            Failure::Unsupported(why) => self.errors.permanent(why),
        }
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
        let email = email_of(self.name(), message)?;
        refuse_provider_template(self.name(), email)?;
        // Bcc addresses get RCPT TO from the envelope; the data every recipient sees has no Bcc.
        let email = build_email(delivery, email, BccHeader::Drop)?;
        let envelope = email.envelope().clone();
        let bytes = email.formatted();
        self.deliver(&envelope, &bytes).await
    }
}
