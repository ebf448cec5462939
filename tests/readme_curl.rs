//! Every curl command of the README's HTTP/JSON section, run exactly as written except for the
//! server address, each with a check of what it printed.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

/// The ```sh blocks of the README that start with `curl `, in order.
fn readme_curl_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                if block.starts_with("curl ") {
                    blocks.push(block.clone());
                }
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Runs `block` against `addr` with `env`; returns (success, stdout, stderr).
fn run(block: &str, addr: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let script = block.replace("127.0.0.1:8091", addr);
    let out = Command::new("bash")
        .args(["-c", &script])
        .env_remove("FLYTE_NOTIFY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON documents curl printed, one per command of the block.
fn documents(out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("{e}: {out}")))
        .collect()
}

fn one(out: &str) -> Value {
    let docs = documents(out);
    assert_eq!(docs.len(), 1, "{out}");
    docs.into_iter().next().unwrap()
}

#[tokio::test]
async fn every_readme_curl_command_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let token = "readme-curl-token";
    let auth_dir = tempfile::tempdir().unwrap();
    let with_auth = Server::start_env(
        auth_dir.path(),
        "flyteNotify:\n  auth:\n    tokensEnvVar: NOTIFY_TOKENS\n",
        &[("NOTIFY_TOKENS", token)],
    );

    let blocks = readme_curl_blocks();
    assert_eq!(
        blocks.len(),
        11,
        "the README's curl examples changed: {blocks:#?}"
    );
    let mut checked = 0;
    for block in &blocks {
        let first = block.lines().next().unwrap();
        let mails_before = maildir_messages(&server.maildir()).len();
        if block.contains("$FLYTE_NOTIFY_TOKEN") {
            let (ok, out, err) = run(block, &with_auth.addr, &[("FLYTE_NOTIFY_TOKEN", token)]);
            assert!(ok, "{err}");
            let v = one(&out);
            assert!(v.get("code").is_none(), "{out}");
            // Without the token the same command is refused, and the answer does not echo it.
            let (_, out, _) = run(block, &with_auth.addr, &[]);
            assert_eq!(one(&out)["code"], "UNAUTHENTICATED", "{out}");
            assert!(!with_auth.log().contains(token));
            checked += 1;
            continue;
        }
        let (ok, out, err) = run(block, &server.addr, &[]);
        assert!(ok, "{first}: {err}");
        if first.contains("/api/v1/enqueue -d @-") {
            let v = one(&out);
            assert_eq!(v["deliveryIds"].as_array().unwrap().len(), 1, "{out}");
            assert_eq!(v["requestId"], "c9d1e7f0-FAILED");
            let files = wait_for_messages(&server.maildir(), 1, Duration::from_secs(10));
            assert_eq!(parse_mail(&files[0]).to, vec!["oncall@example.com"]);
        } else if first.contains("/api/v1/deliveries?") {
            // Nothing is retrying or dead on this server: an empty page.
            assert_eq!(one(&out), serde_json::json!({}), "{out}");
        } else if first.contains("/api/v1/deliveries/019ac6e1") {
            let v = one(&out);
            assert_eq!(v["code"], "NOT_FOUND", "{out}");
            assert!(
                v["message"]
                    .as_str()
                    .unwrap()
                    .contains("019ac6e1-6f0e-7c52-9d1a-3f0b2c1d4e5f"),
                "{out}"
            );
        } else if first.contains("deliveries:redrive") {
            let v = one(&out);
            assert!(
                v.get("code").is_none() && v.get("deliveryIds").is_none(),
                "{out}"
            );
        } else if first.contains("/api/v1/preview") {
            let v = one(&out);
            assert_eq!(v["messages"][0]["channel"], "slack", "{out}");
            assert_eq!(
                v["messages"][0]["textBody"], "c9d1e7f0 has failed.",
                "{out}"
            );
            assert_eq!(maildir_messages(&server.maildir()).len(), mails_before);
        } else if first.contains("/api/v1/send-test") {
            let v = one(&out);
            assert!(
                v["deliveryId"].as_str().is_some_and(|id| !id.is_empty()),
                "{out}"
            );
            wait_for_messages(&server.maildir(), mails_before + 1, Duration::from_secs(10));
        } else if first.contains("/api/v1/silences") {
            let docs = documents(&out);
            assert_eq!(docs.len(), 2, "{out}");
            let id = docs[0]["silence"]["id"].as_str().unwrap();
            let listed = docs[1]["silences"].as_array().unwrap();
            assert!(
                listed
                    .iter()
                    .any(|s| s["id"] == id && s["comment"] == "warehouse maintenance, INC-1234"),
                "{out}"
            );
        } else if first.contains("--http2-prior-knowledge") {
            // No expectations or rules are configured here: two empty answers, over HTTP/2.
            assert_eq!(
                documents(&out),
                vec![serde_json::json!({}), serde_json::json!({})],
                "{out}"
            );
        } else if first.contains("/api/v1/run-events") {
            let v = one(&out);
            assert_eq!(v["deliveryIds"].as_array().unwrap().len(), 1, "{out}");
            let files =
                wait_for_messages(&server.maildir(), mails_before + 1, Duration::from_secs(10));
            let subjects: Vec<String> = files.iter().map(|f| parse_mail(f).subject).collect();
            assert!(
                subjects.iter().any(|s| s == "Run r8x2k FAILED"),
                "{subjects:?}"
            );
        } else if first.contains("%{http_code}") {
            let (json, status) = out.trim_end().rsplit_once('}').unwrap();
            assert_eq!(status, "400", "{out}");
            let v: Value = serde_json::from_str(&format!("{json}}}")).unwrap();
            assert_eq!(v["code"], "INVALID_ARGUMENT");
            let fields: Vec<&str> = v["details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["field"].as_str().unwrap())
                .collect();
            assert_eq!(
                fields,
                vec![
                    "execution.phase",
                    "notifications[0].email.recipients_email[0]"
                ],
                "{out}"
            );
        } else {
            panic!("no check for this README block: {block}");
        }
        checked += 1;
    }
    assert_eq!(checked, blocks.len());
}
