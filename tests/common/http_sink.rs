//! tests/peers/webhook_sink.py: an HTTP receiver on 127.0.0.1 that records every request exactly
//! (method, path, headers, body, and the official Standard Webhooks library's verdict on its
//! signature) and answers from a script, such as "500,200", "429@2" or "404=channel_not_found".

use std::path::PathBuf;

use super::{Peer, free_port, read_jsonl, start_python_peer};

/// A running sink, stopped when dropped, with its own log in a temporary directory.
pub struct WebhookSink {
    pub port: u16,
    pub log: PathBuf,
    _peer: Peer,
    _dir: tempfile::TempDir,
}

impl WebhookSink {
    /// A sink answering `script` (see the peer), checking signatures against `secret` if given.
    pub fn start(script: &str, secret: Option<&str>) -> WebhookSink {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let port = free_port();
        let mut args = vec![port.to_string().into(), log.clone().into(), script.into()];
        args.extend(secret.map(Into::into));
        let peer = start_python_peer("webhook_sink.py", &args, port);
        WebhookSink {
            port,
            log,
            _peer: peer,
            _dir: dir,
        }
    }

    /// `path` (with any query) on this sink.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.log)
    }
}
