//! What an operator does once the cause of dead deliveries is fixed: redrive them (by filter, from
//! the command line) and see them delivered, discard the ones that can never go, and read both in
//! each delivery's history. Against the real binary and a real SMTP server that starts late.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::delivery_event::Kind;
use flyte_notify::proto::flytenotify::v1::{
    DeliveryState, DiscardRequest, EnqueueRequest, GetDeliveryRequest, RedriveRequest,
};

/// SMTP on `port` (nothing listening yet) and one attempt: every send dies at once.
fn config(port: u16) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: {port}
flyteNotify:
  retry: {{ baseDelay: 100ms, maxDelay: 1s, maxAttempts: 1 }}
"#
    )
}

fn cli(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--server", &server.url()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn redrive_delivers_dead_deliveries_once_the_sink_works_and_discard_sets_them_aside() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), Some(&config(port)));
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for name in ["exec-1", "exec-2"] {
        ids.extend(
            client
                .enqueue(failed_email_request(name))
                .await
                .unwrap()
                .into_inner()
                .delivery_ids,
        );
    }
    let mut other = failed_email_request("exec-other");
    other
        .execution
        .as_mut()
        .unwrap()
        .execution_id
        .as_mut()
        .unwrap()
        .project = "other".into();
    let other_id = client
        .enqueue(other)
        .await
        .unwrap()
        .into_inner()
        .delivery_ids[0]
        .clone();
    // A pending one that a redrive by id must leave alone.
    let pending = client
        .enqueue(EnqueueRequest {
            request_id: "not-matching".into(),
            execution: Some(failed_execution("exec-3")),
            notifications: vec![email(&[Phase::Succeeded], &["x@example.com"], "")],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pending.delivery_ids.is_empty());

    wait_for_pending(&server, "eq(state,dead)", Duration::from_secs(30), |d| {
        d.len() == 3
    })
    .await;

    // The relay is back. Redrive the flytesnacks ones from the command line, with a note.
    let sink = dir.path().join("sink");
    let _smtp = SmtpSink::start(port, &sink);
    let (ok, out, err) = cli(
        &server,
        &[
            "redrive",
            "--filter",
            "eq(project,flytesnacks)",
            "--note",
            "relay fixed, INC-1234",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("redrove 2 dead deliveries"), "{out}");
    for id in &ids {
        assert!(out.contains(id.as_str()), "{out}");
    }
    let files = wait_for_messages(&sink, 2, Duration::from_secs(20));
    assert_eq!(files.len(), 2, "log:\n{}", server.log());
    let mut subjects: Vec<String> = files.iter().map(|f| parse_mail(f).subject).collect();
    subjects.sort();
    assert!(
        subjects[0].contains("exec-1") && subjects[1].contains("exec-2"),
        "{subjects:?}"
    );

    // Only the other project's delivery is still listed; discard it, and the list is empty.
    let left = wait_for_pending(&server, "", Duration::from_secs(20), |d| d.len() == 1).await;
    assert_eq!(left[0].id, other_id);
    let discarded = client
        .discard(DiscardRequest {
            delivery_ids: vec![other_id.clone(), ids[0].clone()],
            note: "project retired".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(discarded.delivery_ids, vec![other_id.clone()]);
    assert_eq!(discarded.skipped.len(), 1);
    assert_eq!(discarded.skipped[0].reason, "not dead: it is delivered");
    assert!(list_all(&mut client, "").await.is_empty());

    // Both actions are in the histories, after the failed attempt they answer.
    let redriven = client
        .get_delivery(GetDeliveryRequest {
            delivery_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        redriven.delivery.unwrap().state,
        DeliveryState::Delivered as i32
    );
    let kinds: Vec<i32> = redriven.history.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::Dead as i32,
            Kind::Redriven as i32,
            Kind::Delivered as i32
        ]
    );
    assert!(
        redriven.history[0].detail.contains("127.0.0.1"),
        "{:?}",
        redriven.history
    );
    assert_eq!(redriven.history[1].detail, "relay fixed, INC-1234");
    assert_eq!(
        redriven.history[2].attempts, 1,
        "a fresh budget counts from one"
    );

    let (ok, out, err) = cli(&server, &["show", &other_id]);
    assert!(ok, "{err}");
    assert!(out.contains("state      discarded (attempts: 1)"), "{out}");
    assert!(
        out.contains("  dead at attempt 1: gave up after 1 attempts"),
        "{out}"
    );
    assert!(
        out.contains("  discarded after 1 attempt: project retired"),
        "{out}"
    );
}

#[tokio::test]
async fn bad_selections_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    for (request, field) in [
        (RedriveRequest::default(), "delivery_ids"),
        (
            RedriveRequest {
                delivery_ids: vec!["a".into()],
                filters: "eq(project,p)".into(),
                ..Default::default()
            },
            "filters",
        ),
        (
            RedriveRequest {
                filters: "eq(owner,me)".into(),
                ..Default::default()
            },
            "filters",
        ),
        (
            RedriveRequest {
                filters: "eq(project,p)".into(),
                limit: 10_001,
                ..Default::default()
            },
            "limit",
        ),
        (
            RedriveRequest {
                delivery_ids: vec!["a".into()],
                note: "x".repeat(1025),
                ..Default::default()
            },
            "note",
        ),
    ] {
        let status = client.redrive(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{request:?}");
        assert!(status.message().contains(field), "{request:?}: {status:?}");
    }
    let status = client
        .get_delivery(GetDeliveryRequest {
            delivery_id: "no-such-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    // The command line says what the service said.
    let (ok, _, err) = cli(&server, &["discard", "--filter", "eq(owner,me)"]);
    assert!(!ok);
    assert!(
        err.contains("InvalidArgument") && err.contains("unknown filter key"),
        "{err}"
    );
}
