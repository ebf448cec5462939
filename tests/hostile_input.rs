//! What a hostile or careless caller can send: templates that would expand to megabytes, templates
//! that made the old scanner quadratic, and stored deliveries that render too large. Each is
//! refused or declared dead with its reason, and the server keeps serving and restarts cleanly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{DeliveryState, EnqueueRequest, PreviewRequest};
use tonic_types::StatusExt;

fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

async fn healthy(server: &Server) -> bool {
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status == 1)
        .unwrap_or(false)
}

#[tokio::test]
async fn amplifying_and_quadratic_templates_are_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;

    // 60 KB of template and a 512-byte name would render to 3 MB of HTML per message.
    let mut execution = failed_execution(&"n".repeat(512));
    execution.error = None;
    let amplifying = email(
        &[Phase::Failed],
        &["oncall@example.com"],
        &"{{ name }}".repeat(6000),
    );
    let status = client
        .enqueue(EnqueueRequest {
            request_id: "amplify".into(),
            execution: Some(execution.clone()),
            notifications: vec![amplifying.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let v = violations(&status);
    assert_eq!(v[0].0, "notifications[0]", "{v:?}");
    assert!(
        v[0].1.contains("would be") && v[0].1.contains("maxRenderedBytes"),
        "{v:?}"
    );
    let status = client
        .preview(PreviewRequest {
            execution: Some(execution.clone()),
            notifications: vec![amplifying],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&status)[0].0, "notifications[0]");

    // Fifteen templates of unclosed `{{`: about a megabyte the old scanner read once per `{{`.
    let quadratic = email(
        &[Phase::Failed],
        &["oncall@example.com"],
        &"{{ a ".repeat(12_000),
    );
    let status = client
        .preview(PreviewRequest {
            execution: Some(failed_execution("q")),
            notifications: vec![quadratic; 15],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let v = violations(&status);
    assert_eq!(v.len(), 15, "{v:?}");
    assert_eq!(v[14].0, "notifications[14].email.template");
    assert!(v[0].1.contains("never closed"), "{v:?}");

    // Still serving, and ordinary work still goes through.
    assert!(healthy(&server).await);
    client
        .enqueue(EnqueueRequest {
            request_id: "ordinary".into(),
            execution: Some(failed_execution("ordinary")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
        })
        .await
        .unwrap();
    let mails = wait_for_messages(&server.maildir(), 1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1);
}

#[tokio::test]
async fn a_stored_delivery_that_renders_too_large_dies_alone_and_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    // Accepted under today's limit, while the mail server is down...
    let before = format!(
        "notifications:\n  emailer:\n    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: \"{closed}\" }}\nflyteNotify:\n  retry: {{ baseDelay: 1s, maxDelay: 1s, maxAttempts: 100 }}\n"
    );
    let mut server = Server::start(dir.path(), Some(&before));
    let mut client = server.client().await;
    let mut big = failed_execution(&"n".repeat(256));
    big.error = None;
    client
        .enqueue(EnqueueRequest {
            request_id: "big".into(),
            execution: Some(big),
            notifications: vec![email(
                &[Phase::Failed],
                &["oncall@example.com"],
                &"{{ name }}".repeat(2000),
            )],
        })
        .await
        .unwrap();
    client
        .enqueue(EnqueueRequest {
            request_id: "small".into(),
            execution: Some(failed_execution("small")),
            notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while list_all(&mut client, "eq(state,retrying)").await.len() < 2 {
        assert!(Instant::now() < deadline, "log:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(client);
    server.kill();

    // ...then the operator lowers the limit and switches to the Maildir.
    let after = "flyteNotify:\n  limits: { maxRenderedBytes: 100000 }\n";
    std::fs::write(server.config.as_ref().unwrap(), after).unwrap();
    let mut server = server.restart();
    let mails = wait_for_messages(&server.maildir(), 1, Duration::from_secs(20));
    assert_eq!(mails.len(), 1, "log:\n{}", server.log());
    assert_eq!(parse_mail(&mails[0]).to, vec!["oncall@example.com"]);
    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let left = list_all(&mut client, "").await;
        if left.len() == 1 && left[0].state == DeliveryState::Dead as i32 {
            break left[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{left:?}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.request_id, "big");
    assert!(
        dead.last_error.contains("HTML body would be") && dead.last_error.contains("100000"),
        "{}",
        dead.last_error
    );
    drop(client);

    // Restarting does not crash, and what is dead stays dead.
    assert_eq!(server.terminate(), Some(0));
    let server = server.restart();
    assert!(healthy(&server).await);
    let mut client = server.client().await;
    let left = list_all(&mut client, "").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, DeliveryState::Dead as i32);
}
