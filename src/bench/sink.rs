//! Local sinks for the bench, in-process so that a receipt time and an enqueue time come from one
//! clock: an HTTP sink (webhooks, and Alertmanager's webhook receiver), an SMTP responder, and a
//! "blackhole" that accepts connections and never answers (a sender that never succeeds).
//!
//! They cost no fsync: what they measure is our side. They are deliberately minimal (HTTP/1.1
//! with Content-Length, plain SMTP without extensions) and only good for this.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// When each key was first received.
#[derive(Default)]
pub struct Receipts {
    seen: Mutex<HashMap<String, Instant>>,
}

impl Receipts {
    pub fn record(&self, key: &str, at: Instant) {
        self.seen
            .lock()
            .expect("receipts lock poisoned")
            .entry(key.to_string())
            .or_insert(at);
    }

    pub fn get(&self, key: &str) -> Option<Instant> {
        self.seen
            .lock()
            .expect("receipts lock poisoned")
            .get(key)
            .copied()
    }
}

/// An HTTP/1.1 sink on 127.0.0.1 answering 200 to everything. A request's key is its
/// `Idempotency-Key` header (our webhook: the delivery id), else each `labels.bench_id` in an
/// Alertmanager webhook body.
pub async fn http_sink(receipts: Arc<Receipts>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let receipts = receipts.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    // Headers.
                    let end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_string())
                        })
                    };
                    let length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let at = Instant::now();
                    match header("idempotency-key") {
                        Some(key) => receipts.record(&key, at),
                        None => {
                            for key in alert_ids(&buf[end..end + length]) {
                                receipts.record(&key, at);
                            }
                        }
                    }
                    buf.drain(..end + length);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `labels.bench_id` of each alert in an Alertmanager webhook body.
fn alert_ids(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    value["alerts"]
        .as_array()
        .map(|alerts| {
            alerts
                .iter()
                .filter_map(|a| a["labels"]["bench_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The delivery id in our Message-ID header, `<{id}.flyte-notify@host>`.
fn message_id_key(line: &str) -> Option<String> {
    let (name, value) = line.split_once(':')?;
    if !name.trim().eq_ignore_ascii_case("message-id") {
        return None;
    }
    let value = value.trim().strip_prefix('<')?;
    Some(value.split(".flyte-notify@").next()?.to_string())
}

/// A plain SMTP responder on 127.0.0.1 that accepts every message; a message's key is the
/// delivery id in its Message-ID.
pub async fn smtp_sink(receipts: Arc<Receipts>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let receipts = receipts.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut line = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            if write.write_all(b"354 go on\r\n").await.is_err() {
                                return;
                            }
                            let mut key = None;
                            loop {
                                line.clear();
                                match lines.read_line(&mut line).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(_) => {}
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                if key.is_none() {
                                    key = message_id_key(&line);
                                }
                            }
                            if let Some(key) = key {
                                receipts.record(&key, Instant::now());
                            }
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Accepts connections and never answers: a mail server every send waits on until its timeout,
/// so that deliveries stay pending without the worker churning through them.
pub async fn blackhole() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_message_ids_and_alertmanager_bodies() {
        assert_eq!(
            message_id_key("Message-ID: <0190-ab.flyte-notify@example.com>\r\n").as_deref(),
            Some("0190-ab")
        );
        assert_eq!(message_id_key("Subject: <x.flyte-notify@y>"), None);
        let body = br#"{"alerts":[{"labels":{"bench_id":"a1"}},{"labels":{"x":"y"}}]}"#;
        assert_eq!(alert_ids(body), vec!["a1".to_string()]);
        assert!(alert_ids(b"not json").is_empty());
    }
}
