//! The delivery model end to end on the real binary: a crash between send and record re-sends the
//! same message (same Message-ID), and a ledger written by the previous release is migrated and
//! what it holds is delivered.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{DeliveryState, EnqueueRequest};

/// tests/peers/smtp_hold.py: holds its DATA reply while `hold` exists.
fn start_holding_sink(port: u16, maildir: &Path, hold: &Path) -> Peer {
    let args = [port.to_string().into(), maildir.into(), hold.into()];
    start_python_peer("smtp_hold.py", &args, port)
}

fn message_id(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap();
    let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
    mail.message_id().expect("a Message-ID").to_string()
}

async fn wait_until_nothing_is_pending(server: &Server) {
    wait_for_pending(server, "", Duration::from_secs(30), <[_]>::is_empty).await;
}

#[tokio::test]
async fn a_crash_between_send_and_record_resends_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let hold = dir.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let _peer = start_holding_sink(port, &sink, &hold);
    let config = format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: "{port}" }}
flyteNotify:
  worker: {{ sendTimeout: 60s }}
"#
    );
    let mut server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    let accepted = client
        .enqueue(EnqueueRequest {
            request_id: "crash-mid-send".into(),
            execution: Some(failed_execution("exec-crash")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap()
        .into_inner();
    let delivery_id = &accepted.delivery_ids[0];

    // The message is on the peer's disk, but the peer has not said 250: the send is in flight,
    // and the ledger still has the delivery pending.
    let first = wait_for_messages(&sink, 1, Duration::from_secs(20));
    assert_eq!(
        first.len(),
        1,
        "the send never arrived; log:\n{}",
        server.log()
    );
    let pending = list_all(&mut client, "").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].state, DeliveryState::Pending as i32);
    drop(client);
    server.kill();

    // A new process sends it again, as the same message.
    std::fs::remove_file(&hold).unwrap();
    let server = server.restart();
    let both = wait_for_messages(&sink, 2, Duration::from_secs(20));
    assert_eq!(
        both.len(),
        2,
        "no re-send after restart; log:\n{}",
        server.log()
    );
    wait_until_nothing_is_pending(&server).await;
    let ids: Vec<String> = both.iter().map(|p| message_id(p)).collect();
    assert_eq!(ids[0], ids[1], "a re-send must carry the same Message-ID");
    assert!(
        ids[0].contains(delivery_id.as_str()),
        "the Message-ID {} is not derived from the delivery id {delivery_id}",
        ids[0]
    );
    // Recorded as delivered after the re-send: nothing more goes out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(maildir_messages(&sink).len(), 2);
}

/// tests/fixtures/ledger-0.1.0.sqlite was written by the 0.1.0 binary (see make_ledger_fixture.py):
/// one delivered, one dead, five retrying (two of them leased by a process that was SIGKILLed
/// mid-send) and one accepted but never tried.
#[tokio::test]
async fn a_ledger_from_the_previous_release_is_migrated_and_its_pending_deliveries_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ledger-0.1.0.sqlite"
        ),
        data.join("ledger.sqlite"),
    )
    .unwrap();
    let config = r#"
notifications:
  emailer:
    sender: flyte@example.com
    subject: "{{ name }} {{ phase }}"
"#;
    let server = Server::start(dir.path(), Some(config));
    assert_eq!(server.data_dir, data);

    let mails = wait_for_messages(&server.maildir(), 6, Duration::from_secs(30));
    assert_eq!(mails.len(), 6, "log:\n{}", server.log());
    let mails: Vec<ParsedMail> = mails.iter().map(|p| parse_mail(p)).collect();
    let subjects: BTreeSet<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        BTreeSet::from([
            "exec-email-default failed",
            "exec-email-template failed",
            "exec-slack failed",
            "exec-pagerduty failed",
            "exec-mixed failed",
            "exec-pending timed_out",
        ])
    );
    let by_subject = |s: &str| mails.iter().find(|m| m.subject == s).unwrap();
    // The execution context stored base64 inside each 0.1 payload renders as it did then.
    assert_eq!(
        by_subject("exec-email-default failed").to,
        vec!["oncall@example.com", "ml@example.com"]
    );
    assert_eq!(
        by_subject("exec-email-template failed").text,
        "Run exec-email-template has failed. The execution failed with error: [x < 0 & y > \"1\"]."
    );
    assert!(
        by_subject("exec-email-default failed")
            .text
            .contains("wf.train"),
        "{}",
        by_subject("exec-email-default failed").text
    );
    assert_eq!(
        by_subject("exec-slack failed").to,
        vec!["ml-alerts@acme.slack.com"]
    );

    // What is left is the dead one, as 0.1 recorded it.
    let left = wait_for_pending(&server, "", Duration::from_secs(10), |d| d.len() == 1).await;
    assert_eq!(left.len(), 1, "{left:?}");
    let mut client = server.client().await;
    assert_eq!(left[0].state, DeliveryState::Dead as i32);
    assert_eq!(left[0].request_id, "fixture-dead");
    assert!(
        left[0].last_error.contains("gave up after 1 attempts"),
        "{}",
        left[0].last_error
    );

    // The migrated requests still own their request_ids, and new work is stored the new way.
    let reused = client
        .enqueue(EnqueueRequest {
            request_id: "fixture-slack".into(),
            execution: Some(failed_execution("something-else")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), tonic::Code::AlreadyExists);
    client
        .enqueue(EnqueueRequest {
            request_id: "after-migration".into(),
            execution: Some(failed_execution("exec-new")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap();
    let mails = wait_for_messages(&server.maildir(), 7, Duration::from_secs(10));
    assert_eq!(mails.len(), 7);
    assert!(
        mails
            .iter()
            .any(|p| parse_mail(p).subject == "exec-new failed")
    );
}
