//! Every grpcurl command in README.md, run exactly as written except for the server address.

mod common;

use std::process::Command;

use common::*;

/// The ```sh blocks of the README that call grpcurl, in order.
fn readme_grpcurl_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                if block.starts_with("grpcurl ") {
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

fn run(block: &str, addr: &str) -> (bool, String, String) {
    let script = block.replace("127.0.0.1:8091", addr);
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_readme_grpcurl_command_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let blocks = readme_grpcurl_blocks();
    assert_eq!(
        blocks.len(),
        19,
        "the README's grpcurl examples changed: {blocks:#?}"
    );
    for block in &blocks {
        let mails_before = maildir_messages(&server.maildir()).len();
        let (ok, out, err) = run(block, &server.addr);
        let first = block.lines().next().unwrap();
        if first.contains(" list") {
            assert!(ok, "{err}");
            assert!(
                out.lines()
                    .any(|l| l == "flytenotify.v1.NotificationService"),
                "{out}"
            );
            assert!(out.lines().any(|l| l == "grpc.health.v1.Health"), "{out}");
        } else if first.contains("describe flytenotify.v1.NotificationService") {
            assert!(ok, "{err}");
            for rpc in [
                "rpc Enqueue",
                "rpc ListPending",
                "rpc Preview",
                "rpc Redrive",
                "rpc Discard",
                "rpc GetDelivery",
                "rpc SendTest",
                "rpc CreateSilence",
                "rpc ListSilences",
                "rpc ExpireSilence",
                "rpc ListExpectations",
                "rpc PreviewDigest",
            ] {
                assert!(out.contains(rpc), "{out}");
            }
        } else if first.contains("describe flyteidl.admin.Notification") {
            assert!(ok, "{err}");
            assert!(
                out.contains(".flyteidl.admin.PagerDutyNotification pager_duty = 3;"),
                "{out}"
            );
        } else if first.contains("Health/Check") {
            assert!(ok, "{err}");
            assert!(out.contains(r#""status": "SERVING""#), "{out}");
        } else if block.contains("/PreviewDigest") {
            // One email digest of both executions; nothing sent or recorded.
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let messages = v["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 1, "{out}");
            assert_eq!(
                messages[0]["subject"],
                "Flyte: 2 executions FAILED in flytesnacks/development"
            );
            assert!(
                messages[0]["textBody"]
                    .as_str()
                    .unwrap()
                    .contains("learning rate must be positive"),
                "{out}"
            );
            assert_eq!(maildir_messages(&server.maildir()).len(), mails_before);
        } else if block.contains(r#""run_event""#) {
            assert!(ok, "{err}");
            assert!(out.contains(r#""subject": "Run r8x2k FAILED""#), "{out}");
            assert!(
                out.contains(
                    r#""textBody": "Error: ValueError: learning rate must be positive\nSee https://flyte.example.com/v2/runs/r8x2k""#
                ),
                "{out}"
            );
            assert_eq!(maildir_messages(&server.maildir()).len(), mails_before);
        } else if first.contains("/Preview") {
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let messages = v["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 2, "{out}");
            assert_eq!(messages[1]["channel"], "slack");
            assert_eq!(
                messages[1]["textBody"],
                "f8a3c2e1 has failed. The execution failed with error: [learning rate must be positive]."
            );
            assert!(
                maildir_messages(&server.maildir()).is_empty(),
                "Preview sent something"
            );
        } else if first.contains("/Enqueue") && block.contains("<<'EOF'") {
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["deliveryIds"].as_array().unwrap().len(), 1, "{out}");
            assert_eq!(v["requestId"], "f8a3c2e1-FAILED");
            let files = wait_for_messages(&server.maildir(), 1, std::time::Duration::from_secs(10));
            assert_eq!(files.len(), 1);
            assert_eq!(parse_mail(&files[0]).to, vec!["oncall@example.com"]);
        } else if first.contains("/Redrive") {
            // Nothing died on this server: an empty answer. The test below shows it at work.
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(v.get("deliveryIds").is_none(), "{out}");
        } else if first.contains("/CreateSilence") {
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["silence"]["state"], "STATE_ACTIVE", "{out}");
            assert_eq!(
                v["silence"]["matcher"],
                "eq(project,flytesnacks)+eq(domain,development)"
            );
        } else if first.contains("/ListExpectations") {
            // This server watches nothing: an empty list.
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(v.get("expectations").is_none(), "{out}");
        } else if first.contains("/ListSilences") {
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["silences"].as_array().unwrap().len(), 1, "{out}");
        } else if first.contains("/ListPending") && block.contains("eq(state,grouped)") {
            // Members waiting in their groups; this server groups nothing, so none.
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(v.get("deliveries").is_none(), "{out}");
        } else if first.contains("/ListPending") {
            assert!(ok, "{err}");
            let _: serde_json::Value = serde_json::from_str(&out).unwrap();
        } else if first.contains("/Enqueue") && block.contains(r#""deadline""#) {
            // A stuck-run deadline: armed, listed as pending, due in two hours, nothing sent.
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["requestId"], "train-42-running", "{out}");
            assert_eq!(v["deliveryIds"].as_array().unwrap().len(), 1, "{out}");
            let mut client = server.client().await;
            let armed: Vec<_> = list_all(&mut client, "eq(name,train-42)").await;
            assert_eq!(armed.len(), 1);
            let due =
                armed[0].next_attempt_at.unwrap().seconds - armed[0].created_at.unwrap().seconds;
            assert!((7199..=7201).contains(&due), "due {due} s after accept");
            assert_eq!(maildir_messages(&server.maildir()).len(), mails_before);
        } else if first.contains("/Enqueue") {
            // The error example: refused, with the fields named in the details.
            assert!(!ok, "{out}");
            assert!(err.contains("Code: InvalidArgument"), "{err}");
            assert!(err.contains(r#""field":"execution.phase""#), "{err}");
            assert!(
                err.contains(r#""field":"notifications[0].email.recipients_email[0]""#),
                "{err}"
            );
        } else if block.contains("/SendTest") {
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(v["deliveryId"].is_string(), "{out}");
            let files = wait_for_messages(
                &server.maildir(),
                mails_before + 1,
                std::time::Duration::from_secs(10),
            );
            assert!(
                files
                    .iter()
                    .any(|f| parse_mail(f).text.contains("This is a test message")),
                "no test message in the Maildir"
            );
        } else {
            panic!("no check for README block {block}");
        }
    }
}

/// The README's Enqueue against a mail server that is down (one attempt, so it dies at once), then
/// the README's Redrive once the mail server is up: the notification is delivered.
#[tokio::test]
async fn the_readme_redrive_delivers_what_died_once_the_mail_server_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "notifications:\n  emailer:\n    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: {port} }}\nflyteNotify:\n  retry: {{ maxAttempts: 1 }}\n"
    );
    let server = Server::start(dir.path(), Some(&config));
    let blocks = readme_grpcurl_blocks();
    let enqueue = blocks
        .iter()
        .find(|b| b.contains("/Enqueue") && b.contains("<<'EOF'"))
        .unwrap();
    let redrive = blocks.iter().find(|b| b.contains("/Redrive")).unwrap();
    let (ok, _, err) = run(enqueue, &server.addr);
    assert!(ok, "{err}");
    let dead = wait_for_pending(
        &server,
        "eq(state,dead)",
        std::time::Duration::from_secs(30),
        |d| d.len() == 1,
    )
    .await;

    let sink = dir.path().join("sink");
    let _smtp = SmtpSink::start(port, &sink);
    let (ok, out, err) = run(redrive, &server.addr);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deliveryIds"], serde_json::json!([dead[0].id]), "{out}");
    let files = wait_for_messages(&sink, 1, std::time::Duration::from_secs(20));
    assert_eq!(files.len(), 1, "log:\n{}", server.log());
    assert_eq!(parse_mail(&files[0]).to, vec!["oncall@example.com"]);
}
