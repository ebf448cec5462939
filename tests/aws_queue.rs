//! `notifications.type: aws` against moto: Enqueue publishes to SNS in FlyteAdmin's format, the
//! processor reads the SQS queue subscribed to the topic, records what arrives in the ledger and
//! only then deletes it, and SES sends. FlyteAdmin's own messages are a second way in.

mod common;

use std::time::Duration;

use common::aws::*;
use common::*;
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::proto::flytenotify::v1::RedriveRequest;

fn subject_of(raw: &str) -> String {
    parse_mail_bytes(raw.as_bytes()).subject
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcurl_enqueue_on_aws_is_sent_by_ses_once_and_its_message_deleted() {
    let aws = Aws::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = aws.server(dir.path());
    let (ok, out, err) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"request_id": "r1", "execution": {"execution_id": {"project": "flytesnacks", "domain": "development", "name": "f8a3c2e1"}, "phase": "FAILED"}, "notifications": [{"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}]}"#,
        &server.addr,
        "flytenotify.v1.NotificationService/Enqueue",
    ]);
    assert!(ok, "{out}{err}");
    let sent = aws.wait_for_sent(1).await;
    assert_eq!(sent.len(), 1, "log:\n{}", server.log());
    assert_eq!(
        subject_of(&sent[0].2),
        "Notice: Execution \"f8a3c2e1\" has failed in \"development\"."
    );
    // What Enqueue published is what FlyteAdmin publishes: its Subject, and the rendered
    // EmailMessage in base64; the delivery id rides in an attribute FlyteAdmin ignores.
    let observed = aws
        .sqs
        .receive_message()
        .queue_url(&aws.observer_url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(observed.len(), 1);
    let envelope: serde_json::Value =
        serde_json::from_str(observed[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(envelope["Subject"], "flyteidl.admin.EmailNotification");
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        envelope["Message"].as_str().unwrap(),
    )
    .unwrap();
    let published = <EmailMessage as prost::Message>::decode(bytes.as_slice()).unwrap();
    assert_eq!(published.recipients_email, vec!["oncall@example.com"]);
    assert_eq!(published.sender_email, SENDER);
    assert_eq!(
        published.subject_line,
        "Notice: Execution \"f8a3c2e1\" has failed in \"development\"."
    );
    assert!(published.body.contains("f8a3c2e1"), "{}", published.body);
    assert!(
        envelope["MessageAttributes"]["flyte-notify-delivery-id"]["Value"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{envelope}"
    );
    // Our own announcement came back through the processor's queue, was found in the ledger,
    // and deleted.
    aws.wait_for_empty_queue().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(aws.moto.sent_raw_messages().await.len(), 1, "sent twice");
    let mut client = server.client().await;
    assert!(list_all(&mut client, "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flyteadmins_own_message_becomes_a_delivery_and_poison_a_dead_entry() {
    let aws = Aws::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = aws.server(dir.path());
    // Poison first: it must not hold up what follows.
    aws.sns
        .publish()
        .topic_arn(&aws.topic_arn)
        .subject("something.else")
        .message("not an email")
        .send()
        .await
        .unwrap();
    // FlyteAdmin's message, from a sender SES refuses (unverified): the delivery dies, visibly.
    let unverified = EmailMessage {
        recipients_email: vec!["oncall@example.com".into()],
        sender_email: "unverified@example.org".into(),
        subject_line: "Notice: Execution \"e1\" has failed in \"development\".".into(),
        body: "<html><body>Execution e1 has failed.</body></html>".into(),
    };
    aws.publish_like_flyteadmin(&unverified).await;
    let dead = wait_for_pending(&server, "eq(state,dead)", Duration::from_secs(30), |d| {
        d.len() == 2
    })
    .await;
    aws.wait_for_empty_queue().await;
    let (poison, refused): (Vec<_>, Vec<_>) = dead
        .into_iter()
        .partition(|d| d.last_error.contains("cannot be read"));
    assert_eq!(poison.len(), 1, "{poison:?} {refused:?}");
    assert!(
        poison[0]
            .last_error
            .contains("SNS Subject \"something.else\""),
        "{:?}",
        poison[0]
    );
    assert!(poison[0].request_id.starts_with("sqs:"), "{:?}", poison[0]);
    assert!(
        refused[0].last_error.contains("MessageRejected"),
        "{:?}",
        refused[0]
    );
    assert_eq!(refused[0].recipients, vec!["oncall@example.com"]);

    // The identity is verified now: a redrive sends it, once, and the ledger says delivered.
    aws.moto.verify_sender("unverified@example.org").await;
    let mut client = server.client().await;
    let redriven = client
        .redrive(RedriveRequest {
            delivery_ids: vec![refused[0].id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redriven.delivery_ids, vec![refused[0].id.clone()]);
    let sent = aws.wait_for_sent(1).await;
    assert_eq!(sent.len(), 1, "log:\n{}", server.log());
    assert_eq!(sent[0].0, "unverified@example.org");
    let mail = parse_mail_bytes(sent[0].2.as_bytes());
    assert_eq!(mail.subject, unverified.subject_line);
    assert!(!mail.text.contains('<'), "{}", mail.text);
    // The ledger says delivered (it records the outcome just after the send).
    wait_for_delivered(&server, &refused[0].id).await;
    aws.wait_for_empty_queue().await;
}
