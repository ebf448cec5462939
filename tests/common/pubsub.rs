//! The Google Pub/Sub emulator that ships with gcloud, for the tests of `notifications.type: gcp`.
//! Started on a free port in its own process group (the script starts a JVM), stopped with it.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::free_port;

pub const PROJECT: &str = "flyte-test";

pub struct Emulator {
    child: Child,
    pub port: u16,
}

/// The variable `.ci/run` sets when this machine has no Pub/Sub emulator (and CI is unset): the
/// tests that need one say so and pass without running.
pub const SKIP_VARIABLE: &str = "FLYTE_NOTIFY_SKIP_PUBSUB";

impl Emulator {
    /// The emulator, or None when `.ci/run` found none (FLYTE_NOTIFY_SKIP_PUBSUB): then `what`
    /// is named as skipped, loudly, on stderr.
    pub fn start_unless_skipped(what: &str) -> Option<Emulator> {
        if std::env::var_os(SKIP_VARIABLE).is_some() {
            eprintln!(
                "SKIPPED {what}: no Pub/Sub emulator on this machine ({SKIP_VARIABLE} is set; \
                 gcloud components install pubsub-emulator, or apt-get install \
                 google-cloud-cli-pubsub-emulator)"
            );
            return None;
        }
        Some(Self::start())
    }

    pub fn start() -> Emulator {
        let out = Command::new("gcloud")
            .args(["info", "--format=value(installation.sdk_root)"])
            .output()
            .expect("gcloud (the Pub/Sub emulator ships with it)");
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let script = format!("{root}/platform/pubsub-emulator/bin/cloud-pubsub-emulator");
        let port = free_port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&script)
                .args(["--host=127.0.0.1", &format!("--port={port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("start {script}: {e}"))
        };
        let emulator = Emulator { child, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        // Listening is not ready: wait until its REST API answers.
        while !answers_http(port, &format!("/v1/projects/{PROJECT}/topics")) {
            assert!(
                Instant::now() < deadline,
                "the Pub/Sub emulator did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        emulator
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// A topic and a subscription to it (FlyteAdmin's GCP layout), by the emulator's REST API.
    pub async fn create(&self, topic: &str, subscription: &str, ack_deadline_seconds: u32) {
        let client = reqwest::Client::new();
        let topic_path = format!("projects/{PROJECT}/topics/{topic}");
        let r = client
            .put(format!("{}/v1/{topic_path}", self.url()))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create topic: {}",
            r.text().await.unwrap()
        );
        let r = client
            .put(format!(
                "{}/v1/projects/{PROJECT}/subscriptions/{subscription}",
                self.url()
            ))
            .json(&serde_json::json!({
                "topic": topic_path,
                "ackDeadlineSeconds": ack_deadline_seconds,
            }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create subscription: {}",
            r.text().await.unwrap()
        );
    }

    /// Another subscription on `topic`.
    pub async fn create_subscription(&self, topic: &str, subscription: &str) {
        let r = reqwest::Client::new()
            .put(format!(
                "{}/v1/projects/{PROJECT}/subscriptions/{subscription}",
                self.url()
            ))
            .json(&serde_json::json!({"topic": format!("projects/{PROJECT}/topics/{topic}")}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create subscription: {}",
            r.text().await.unwrap()
        );
    }

    /// Pulls (and acks) what `subscription` holds now: (data, attributes) of each message.
    pub async fn pull(&self, subscription: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
        let client = reqwest::Client::new();
        let url = format!(
            "{}/v1/projects/{PROJECT}/subscriptions/{subscription}",
            self.url()
        );
        let r: serde_json::Value = client
            .post(format!("{url}:pull"))
            .json(&serde_json::json!({"maxMessages": 100, "returnImmediately": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let received = r["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ack_ids: Vec<String> = received
            .iter()
            .map(|m| m["ackId"].as_str().unwrap().to_string())
            .collect();
        if !ack_ids.is_empty() {
            client
                .post(format!("{url}:acknowledge"))
                .json(&serde_json::json!({"ackIds": ack_ids}))
                .send()
                .await
                .unwrap();
        }
        received
            .iter()
            .map(|m| {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(m["message"]["data"].as_str().unwrap_or(""))
                    .unwrap();
                let attributes = m["message"]["attributes"]
                    .as_object()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                (data, attributes)
            })
            .collect()
    }

    /// Publishes as FlyteAdmin (or anyone) would: raw data and attributes.
    pub async fn publish(&self, topic: &str, data: &[u8], attributes: HashMap<String, String>) {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/v1/projects/{PROJECT}/topics/{topic}:publish",
                self.url()
            ))
            .json(&serde_json::json!({"messages": [{
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "attributes": attributes,
            }]}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "publish: {}",
            r.text().await.unwrap()
        );
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Whether a GET of `path` is answered with 200 (a plain HTTP/1.0 request: enough to see whether
/// the emulator is ready, without an HTTP client that blocks).
fn answers_http(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}
