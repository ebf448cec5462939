//! Opens a connection ready for MAIL FROM, as FlyteAdmin does: TLS as the mode says (STARTTLS
//! when the server offers it, by default), then PLAIN authentication when the server offers it
//! and a username is configured.
//!
//! We drive lettre's connection directly rather than its pooled transport because the transport
//! insists on authenticating whenever credentials are set, and FlyteAdmin's behaviour is "when
//! offered".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::errors::Errors;
use super::tls::Upgrade;
use crate::channels::SendError;
use crate::channels::secret::Secret;

pub(super) struct Login {
    pub(super) user: String,
    pub(super) password: Secret,
}

pub(super) struct Connector {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) upgrade: Upgrade,
    pub(super) skip_tls_verify: bool,
    pub(super) login: Option<Login>,
    pub(super) connect_timeout: Duration,
    /// Whether the operator has been told that the server offers no AUTH although a username is
    /// configured: once per process is enough to act on, and every send would flood the log.
    warned_no_auth: AtomicBool,
}

impl Connector {
    pub(super) fn new(
        host: String,
        port: u16,
        upgrade: Upgrade,
        skip_tls_verify: bool,
        login: Option<Login>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            host,
            port,
            upgrade,
            skip_tls_verify,
            login,
            connect_timeout,
            warned_no_auth: AtomicBool::new(false),
        }
    }

    pub(super) async fn open(&self, errors: &Errors) -> Result<AsyncSmtpConnection, SendError> {
        let hello = ClientId::default();
        let implicit = self.upgrade == Upgrade::Implicit;
        let tls = if implicit {
            Some(self.tls_parameters(errors)?)
        } else {
            None
        };
        let connected = match tls {
            Some(tls) => {
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.connect_timeout),
                    &hello,
                    Some(tls),
                    None,
                )
                .await
            }
            None => {
                // Our own socket, so that it can have TCP_NODELAY: the end of a message's data
                // (".") is a small write right after the body, and with Nagle on it waited for the
                // server's delayed ACK, about 40 ms per message, which capped SMTP at ~350
                // messages/s (see docs/benchmarks.md). lettre's own connect leaves Nagle on.
                // Implicit TLS has to go through lettre's connect, which does the handshake first.
                let stream = tokio::time::timeout(
                    self.connect_timeout,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| {
                    errors.retryable(format!(
                        "connect: no connection within {}",
                        humantime::format_duration(self.connect_timeout)
                    ))
                })?
                .map_err(|e| errors.retryable(format!("connect: {e}")))?;
                let _ = stream.set_nodelay(true);
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await
            }
        };
        let mut conn = connected.map_err(|e| {
            errors.classify(
                if implicit {
                    "connect (implicit TLS)"
                } else {
                    "connect"
                },
                &e,
            )
        })?;
        let starttls = match self.upgrade {
            Upgrade::Implicit | Upgrade::Never => false,
            Upgrade::StartTlsIfOffered => conn.can_starttls(),
            Upgrade::StartTlsRequired if conn.can_starttls() => true,
            Upgrade::StartTlsRequired => {
                conn.abort().await;
                return Err(errors.retryable(
                    "the server does not offer STARTTLS and flyteNotify.smtp.tls is starttls: \
                     refusing to send in clear",
                ));
            }
        };
        if starttls {
            conn.starttls(self.tls_parameters(errors)?, &hello)
                .await
                .map_err(|e| errors.classify("STARTTLS", &e))?;
        }
        self.authenticate(&mut conn, errors).await?;
        Ok(conn)
    }

    fn tls_parameters(&self, errors: &Errors) -> Result<TlsParameters, SendError> {
        TlsParameters::builder(self.host.clone())
            .dangerous_accept_invalid_certs(self.skip_tls_verify)
            .dangerous_accept_invalid_hostnames(self.skip_tls_verify)
            .build()
            .map_err(|e| errors.retryable(format_args!("TLS setup: {e}")))
    }

    async fn authenticate(
        &self,
        conn: &mut AsyncSmtpConnection,
        errors: &Errors,
    ) -> Result<(), SendError> {
        let Some(login) = &self.login else {
            return Ok(());
        };
        let offers_plain = conn.server_info().supports_auth_mechanism(Mechanism::Plain);
        if !offers_plain {
            if !self.warned_no_auth.swap(true, Ordering::Relaxed) {
                // FlyteAdmin sends unauthenticated here too; an operator who set a username
                // expects otherwise, and a relay that accepts the mail anyway may not deliver it
                // onwards.
                tracing::warn!(
                    "smtp {}:{} offers no AUTH PLAIN{}: sending without authenticating although \
                     smtpUsername is set",
                    self.host,
                    self.port,
                    self.why_no_auth(conn.is_encrypted())
                );
            }
            return Ok(());
        }
        if !may_send_password(conn.is_encrypted(), &self.host) {
            conn.abort().await;
            return Err(errors.retryable(format_args!(
                "refusing to send the password unencrypted: the server offers AUTH but {}",
                if self.upgrade == Upgrade::Never {
                    "flyteNotify.smtp.tls is none"
                } else {
                    "not STARTTLS"
                }
            )));
        }
        let credentials = Credentials::new(login.user.clone(), login.password.expose().into());
        conn.auth(&[Mechanism::Plain], &credentials)
            .await
            .map_err(|e| errors.login_refused(&login.user, &e))?;
        Ok(())
    }

    fn why_no_auth(&self, encrypted: bool) -> &'static str {
        match (encrypted, self.upgrade) {
            (true, _) => "",
            (false, Upgrade::Never) => {
                " (flyteNotify.smtp.tls is none, and servers often offer AUTH only over TLS)"
            }
            (false, _) => " (nor STARTTLS, after which servers often offer it)",
        }
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

#[cfg(test)]
mod tests {
    use super::may_send_password;

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
