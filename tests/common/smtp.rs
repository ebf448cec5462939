//! aiosmtpd with TLS and AUTH (tests/peers/smtp_tls_auth.py): a self-signed certificate made for
//! the test, a Maildir of what arrived, and a log of every EHLO, AUTH and message by connection.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Peer, read_jsonl, start_python_peer};

/// The login the peer accepts.
pub const SMTP_USER: &str = "flyte";
pub const SMTP_PASSWORD: &str = "s3cr3t pass";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTls {
    /// Plain until STARTTLS; AUTH offered only after it.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// A running peer; killed when dropped. Its files live in the directory it was started with,
/// so a peer started again there (a server restart) appends to the same log and Maildir.
pub struct TlsSmtpPeer {
    _peer: Peer,
    pub maildir: PathBuf,
    pub events: PathBuf,
}

impl TlsSmtpPeer {
    pub fn start(dir: &Path, port: u16, tls: PeerTls) -> TlsSmtpPeer {
        Self::start_with_idle_timeout(dir, port, tls, None)
    }

    /// As `start`, with a server that closes a connection after `idle_secs` without a command.
    pub fn start_with_idle_timeout(
        dir: &Path,
        port: u16,
        tls: PeerTls,
        idle_secs: Option<f64>,
    ) -> TlsSmtpPeer {
        let (cert, key) = self_signed_cert(dir);
        let maildir = dir.join("sink");
        let events = dir.join("events.jsonl");
        let mut args: Vec<std::ffi::OsString> = vec![
            port.to_string().into(),
            maildir.clone().into(),
            events.clone().into(),
            cert.into(),
            key.into(),
            SMTP_USER.into(),
            SMTP_PASSWORD.into(),
            match tls {
                PeerTls::StartTls => "starttls",
                PeerTls::Implicit => "implicit",
            }
            .into(),
        ];
        if let Some(idle) = idle_secs {
            args.push(idle.to_string().into());
        }
        TlsSmtpPeer {
            _peer: start_python_peer("smtp_tls_auth.py", &args, port),
            maildir,
            events,
        }
    }

    /// The logged events named `event` ("ehlo", "auth", "message").
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        read_jsonl(&self.events)
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }

    /// How many connections said EHLO: one client port each.
    pub fn connections(&self) -> usize {
        let mut ports: Vec<u64> = self
            .events("ehlo")
            .iter()
            .map(|e| e["peer"].as_u64().expect("peer port"))
            .collect();
        ports.sort();
        ports.dedup();
        ports.len()
    }
}

/// A certificate for CN=localhost and its key in `dir`, made once.
fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return (cert, key);
    }
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl could not make a certificate");
    (cert, key)
}
