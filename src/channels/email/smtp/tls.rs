//! How the connection to the SMTP server is encrypted: the operator's choice, and what it means
//! for one port.

use std::fmt;
use std::str::FromStr;

/// The TLS mode of the SMTP connection (`flyteNotify.smtp.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// FlyteAdmin's behaviour, extended to SMTPS: implicit TLS on port 465, else STARTTLS when
    /// the server offers it and plain text when it does not.
    #[default]
    Auto,
    /// TLS from the first byte (SMTPS, RFC 8314), on any port.
    Implicit,
    /// STARTTLS, required: a server that does not offer it gets neither the password nor the
    /// message, since a missing STARTTLS is also what an attacker who strips it looks like.
    StartTls,
    /// Never encrypt: for a relay on this machine or a network that is trusted as it is.
    None,
}

/// What a connection does about TLS, once the mode is applied to the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upgrade {
    Implicit,
    StartTlsIfOffered,
    StartTlsRequired,
    Never,
}

/// The port reserved for SMTP submission over implicit TLS (RFC 8314).
const SMTPS_PORT: u16 = 465;

impl SmtpTls {
    pub(super) fn upgrade(self, port: u16) -> Upgrade {
        match self {
            // Port 465 speaks TLS first; sending EHLO in clear there only hangs until a timeout.
            SmtpTls::Auto if port == SMTPS_PORT => Upgrade::Implicit,
            SmtpTls::Auto => Upgrade::StartTlsIfOffered,
            SmtpTls::Implicit => Upgrade::Implicit,
            SmtpTls::StartTls => Upgrade::StartTlsRequired,
            SmtpTls::None => Upgrade::Never,
        }
    }
}

impl FromStr for SmtpTls {
    type Err = String;

    /// `auto`, `implicit`, `starttls` or `none`, in any case.
    fn from_str(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "auto" => Ok(SmtpTls::Auto),
            "implicit" => Ok(SmtpTls::Implicit),
            "starttls" => Ok(SmtpTls::StartTls),
            "none" => Ok(SmtpTls::None),
            _ => Err(format!(
                "{value:?} is not an SMTP TLS mode: use auto, implicit, starttls or none"
            )),
        }
    }
}

impl fmt::Display for SmtpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpTls::Auto => "auto",
            SmtpTls::Implicit => "implicit",
            SmtpTls::StartTls => "starttls",
            SmtpTls::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_implicit_on_465_only() {
        assert_eq!(SmtpTls::Auto.upgrade(465), Upgrade::Implicit);
        assert_eq!(SmtpTls::Auto.upgrade(587), Upgrade::StartTlsIfOffered);
        assert_eq!(SmtpTls::Auto.upgrade(25), Upgrade::StartTlsIfOffered);
        assert_eq!(SmtpTls::Implicit.upgrade(2525), Upgrade::Implicit);
        assert_eq!(SmtpTls::StartTls.upgrade(465), Upgrade::StartTlsRequired);
        assert_eq!(SmtpTls::None.upgrade(465), Upgrade::Never);
    }

    #[test]
    fn modes_parse_in_any_case_and_print_back() {
        for mode in [
            SmtpTls::Auto,
            SmtpTls::Implicit,
            SmtpTls::StartTls,
            SmtpTls::None,
        ] {
            assert_eq!(mode.to_string().parse::<SmtpTls>(), Ok(mode));
        }
        assert_eq!("STARTTLS".parse::<SmtpTls>(), Ok(SmtpTls::StartTls));
        let e = "ssl".parse::<SmtpTls>().unwrap_err();
        assert!(e.contains("\"ssl\"") && e.contains("implicit"), "{e}");
    }
}
