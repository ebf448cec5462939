//! What a hostile or careless caller can send: templates that would expand to megabytes, templates
//! that made the old scanner quadratic, and stored deliveries that render too large. Each is
//! refused or declared dead with its reason, and the server keeps serving and restarts cleanly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{DeliveryState, EnqueueRequest, PreviewRequest};

fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    field_violations(status)
}

async fn healthy(server: &Server) -> bool {
    health_status(connect(server).await)
        .await
        .is_ok_and(|s| s == 1)
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
            webhooks: Vec::new(),
            deadline: None,
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
            webhooks: Vec::new(),
            ..Default::default()
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
            webhooks: Vec::new(),
            ..Default::default()
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
        .enqueue(failed_email_request("ordinary"))
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
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap();
    client.enqueue(failed_email_request("small")).await.unwrap();
    wait_for_pending(
        &server,
        "eq(state,retrying)",
        Duration::from_secs(20),
        |d| d.len() >= 2,
    )
    .await;
    drop(client);
    server.kill();

    // ...then the operator lowers the limit and switches to the Maildir.
    let after = "flyteNotify:\n  limits: { maxRenderedBytes: 100000 }\n";
    std::fs::write(server.config.as_ref().unwrap(), after).unwrap();
    let mut server = server.restart();
    let mails = wait_for_messages(&server.maildir(), 1, Duration::from_secs(20));
    assert_eq!(mails.len(), 1, "log:\n{}", server.log());
    assert_eq!(parse_mail(&mails[0]).to, vec!["oncall@example.com"]);
    let left = wait_for_pending(&server, "", Duration::from_secs(20), |d| {
        d.len() == 1 && d[0].state == DeliveryState::Dead as i32
    })
    .await;
    let dead = &left[0];
    assert_eq!(dead.request_id, "big");
    assert!(
        dead.last_error.contains("HTML body would be") && dead.last_error.contains("100000"),
        "{}",
        dead.last_error
    );

    // Restarting does not crash, and what is dead stays dead.
    assert_eq!(server.terminate(), Some(0));
    let server = server.restart();
    assert!(healthy(&server).await);
    let mut client = server.client().await;
    let left = list_all(&mut client, "").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, DeliveryState::Dead as i32);
}

#[tokio::test]
async fn damaged_ledger_rows_die_alone_while_everything_else_goes_on() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    // Accepted while the mail server is down, so that every row is still in the ledger.
    let config = format!(
        "notifications:\n  emailer:\n    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: \"{closed}\" }}\nflyteNotify:\n  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }}\n"
    );
    let mut server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    let names = [
        "bad-id",
        "bad-name",
        "bad-payload-type",
        "bad-version",
        "good-1",
        "good-2",
    ];
    for name in names {
        client
            .enqueue(EnqueueRequest {
                request_id: name.into(),
                execution: Some(failed_execution(name)),
                notifications: vec![email(&[Phase::Failed], &["a@example.com"], "")],
                webhooks: Vec::new(),
                deadline: None,
            })
            .await
            .unwrap();
    }
    drop(client);
    assert_eq!(server.terminate(), Some(0));

    let url = format!(
        "sqlite://{}",
        server.data_dir.join("ledger.sqlite").display()
    );
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for damage in [
        // An id that is not UTF-8: no outcome could ever be recorded against it.
        "UPDATE deliveries SET id = CAST(X'ff' || id AS TEXT) WHERE request_id = 'bad-id'",
        // An execution name that is not UTF-8.
        "UPDATE deliveries SET name = CAST(X'c3' AS TEXT) WHERE request_id = 'bad-name'",
        // A payload of the wrong type.
        "UPDATE deliveries SET payload = X'00ff' WHERE request_id = 'bad-payload-type'",
        // A payload from a version this one does not know.
        "UPDATE deliveries SET payload = '{\"version\":\"99\"}' WHERE request_id = 'bad-version'",
        "UPDATE deliveries SET next_attempt_at = 0",
    ] {
        sqlx::query(damage).execute(&mut db).await.unwrap();
    }
    db.close().await.unwrap();

    // Back on the Maildir: it starts, the good rows go out, and Enqueue works meanwhile.
    let server = Server::start(dir.path(), None);
    let client = server.client().await;
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .enqueue(EnqueueRequest {
                        request_id: format!("meanwhile-{i}"),
                        execution: Some(failed_execution(&format!("meanwhile-{i}"))),
                        notifications: vec![email(&[Phase::Failed], &["a@example.com"], "")],
                        webhooks: Vec::new(),
                        deadline: None,
                    })
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await
            .unwrap()
            .expect("an Enqueue beside the damaged rows failed");
    }
    let mails = wait_for_messages(&server.maildir(), 22, Duration::from_secs(20));
    assert_eq!(mails.len(), 22, "log:\n{}", server.log());
    let dead = wait_for_pending(&server, "", Duration::from_secs(20), |d| {
        d.len() == 4 && d.iter().all(|d| d.state == DeliveryState::Dead as i32)
    })
    .await;
    let reason = |request_id: &str| {
        dead.iter()
            .find(|d| d.request_id == request_id)
            .unwrap_or_else(|| panic!("{request_id} not listed: {dead:?}"))
            .last_error
            .clone()
    };
    assert!(
        reason("bad-id").contains("id is not UTF-8"),
        "{}",
        reason("bad-id")
    );
    assert!(
        reason("bad-name").contains("name is not UTF-8"),
        "{}",
        reason("bad-name")
    );
    assert!(
        reason("bad-payload-type").contains("cannot be read"),
        "{}",
        reason("bad-payload-type")
    );
    assert!(
        reason("bad-version").contains("cannot be read by this version"),
        "{}",
        reason("bad-version")
    );
    assert!(healthy(&server).await);
}

#[tokio::test]
async fn a_ledger_file_deleted_while_running_stops_acknowledgements_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let ordinary = |id: &str| EnqueueRequest {
        request_id: id.into(),
        execution: Some(failed_execution(id)),
        notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
        webhooks: Vec::new(),
        deadline: None,
    };
    client.enqueue(ordinary("before")).await.unwrap();
    std::fs::remove_file(server.data_dir.join("ledger.sqlite")).unwrap();

    // Acknowledging into the unlinked file would lose it all at the next restart.
    let status = client.enqueue(ordinary("after")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("is gone"), "{}", status.message());
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthy(&server).await {
        assert!(Instant::now() < deadline, "health still SERVING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.log().contains("ledger.sqlite is gone"),
        "{}",
        server.log()
    );
}

/// Sends raw bytes as a request body, whatever they decode to.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[tokio::test]
async fn a_request_that_is_not_protobuf_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    // Field 1 (request_id) as a length-delimited string that claims more bytes than follow.
    let status = grpc
        .unary(
            tonic::Request::new(vec![0x0a, 0x7f, b'x']),
            http::uri::PathAndQuery::from_static("/flytenotify.v1.NotificationService/Enqueue"),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not a valid protobuf"),
        "{status:?}"
    );
    assert!(healthy(&server).await);
}
