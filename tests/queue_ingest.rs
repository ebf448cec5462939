//! What a cloud queue hands the processor becomes ledger state first: FlyteAdmin's rendered email
//! a delivery of its own (once, however often the message is redelivered), an unreadable message
//! a dead entry with its reason. The real binary then sends from the ledger.

mod common;

use std::time::Duration;

use common::*;
use flyte_notify::ledger::Ledger;
use flyte_notify::ledger::sqlite::SqliteLedger;
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::proto::flytenotify::v1::DeliveryState;
use flyte_notify::queue::ingest::{Ingested, ingest};
use flyte_notify::queue::wire::{self, Inbound};

fn flyteadmin_email() -> EmailMessage {
    EmailMessage {
        recipients_email: vec!["oncall@example.com".into(), "lead@example.com".into()],
        sender_email: "flyte@example.com".into(),
        subject_line: "Notice: Execution \"f8a3c2e1\" has failed in \"development\".".into(),
        body: "<html><body>Execution <a href=\"https://flyte.example.com/console/projects/flytesnacks/domains/development/executions/f8a3c2e1\">f8a3c2e1</a> has failed.</body></html>".into(),
    }
}

#[tokio::test]
async fn a_flyteadmin_email_is_recorded_once_and_sent_with_a_text_part() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ledger = SqliteLedger::open(&data.join("ledger.sqlite"))
        .await
        .unwrap();
    // The message exactly as an SQS subscriber of FlyteAdmin's SNS topic receives it.
    let (subject, message) = wire::to_sns_email(&flyteadmin_email());
    let body = serde_json::json!({"Type": "Notification", "Subject": subject, "Message": message})
        .to_string();
    let first = ingest(&ledger, "sqs", "m-1", wire::from_sns_envelope(&body))
        .await
        .unwrap();
    let Ingested::Recorded { delivery_id } = first else {
        panic!("{first:?}");
    };
    // Delivered again (its visibility timeout ran out before it was deleted): nothing new.
    let again = ingest(&ledger, "sqs", "m-1", wire::from_sns_envelope(&body))
        .await
        .unwrap();
    assert_eq!(
        again,
        Ingested::AlreadyRecorded {
            delivery_id: delivery_id.clone()
        }
    );
    // A message nobody can read becomes a dead entry with the reason, and the rest goes on.
    let poison = ingest(
        &ledger,
        "sqs",
        "m-2",
        Inbound::Poison {
            error: "not an SNS envelope (JSON): expected value".into(),
            raw: b"garbage".to_vec(),
        },
    )
    .await
    .unwrap();
    let Ingested::Recorded {
        delivery_id: poison_id,
    } = poison
    else {
        panic!("{poison:?}");
    };
    ledger.close().await;

    let server = Server::spawn_with(data, None);
    let files = wait_for_messages(&server.maildir(), 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1, "log:\n{}", server.log());
    let mail = parse_mail(&files[0]);
    assert_eq!(mail.to, vec!["oncall@example.com", "lead@example.com"]);
    assert_eq!(mail.subject, flyteadmin_email().subject_line);
    assert_eq!(mail.html.trim_end(), flyteadmin_email().body);
    assert!(!mail.text.contains('<'), "{}", mail.text);
    assert!(
        mail.text
            .contains("https://flyte.example.com/console/projects/flytesnacks/domains/development/executions/f8a3c2e1"),
        "{}",
        mail.text
    );

    let listed = wait_for_pending(&server, "", Duration::from_secs(20), |d| {
        d.len() == 1 && d[0].state == DeliveryState::Dead as i32
    })
    .await;
    assert_eq!(listed[0].id, poison_id);
    assert!(
        listed[0]
            .last_error
            .contains("the queue message cannot be read: not an SNS envelope"),
        "{:?}",
        listed[0]
    );
    assert_eq!(listed[0].request_id, "sqs:m-2");
    assert_eq!(maildir_messages(&server.maildir()).len(), 1);
}
