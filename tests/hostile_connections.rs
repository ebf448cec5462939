//! A hostile client's connections: hundreds that never speak, dozens that half-send a message and
//! stall, more than the configured maximum. Memory stays bounded, the silent ones are closed by
//! the handshake deadline, the extra ones are refused, and a normal client's health checks and
//! Enqueue calls succeed throughout.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// An HTTP/2 connection with an Enqueue whose gRPC message announces `announced` bytes and
/// sends only `sent` of them, then stalls. The returned handles keep it that way.
async fn half_send(
    addr: &str,
    announced: u32,
    sent: usize,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::SendStream<bytes::Bytes>,
    h2::client::ResponseFuture,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!(
        "http://{addr}/flytenotify.v1.NotificationService/Enqueue"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let mut frame = vec![0u8];
    frame.extend(announced.to_be_bytes());
    frame.extend(std::iter::repeat_n(0x0a_u8, sent));
    body.send_data(bytes::Bytes::from(frame), false).unwrap();
    (client, body, response)
}

async fn health_ok(server: &Server) -> bool {
    let Ok(channel) = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    health_status(channel).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_bounded_and_a_normal_client_is_served_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let config = "flyteNotify:\n  transport: { maxConnections: 300, handshakeTimeout: 4s, requestTimeout: 3s, keepaliveInterval: 2s, keepaliveTimeout: 1s }\n";
    let server = Server::start(dir.path(), Some(config));
    let pid = server.child.id();
    let mut client = server.client().await;
    let baseline = rss_kib(pid);

    // 200 connections that never send a byte.
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    // 40 that half-send a 900 KB message (under the 1 MiB limit, so the server reads it), and
    // 40 that announce 16 MB (over it: refused from the length prefix, nothing buffered).
    let mut stalled = Vec::new();
    for _ in 0..40 {
        stalled.push(half_send(&server.addr, 900_000, 64 * 1024).await);
        stalled.push(half_send(&server.addr, 16 * 1024 * 1024, 64 * 1024).await);
    }

    // A normal client meanwhile: every call succeeds.
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(5) {
        assert!(
            health_ok(&server).await,
            "health failed; log:\n{}",
            server.log()
        );
        client
            .enqueue(EnqueueRequest {
                request_id: format!("normal-{calls}"),
                execution: Some(failed_execution(&format!("normal-{calls}"))),
                notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
                webhooks: Vec::new(),
                deadline: None,
            })
            .await
            .unwrap_or_else(|e| panic!("Enqueue {calls} failed: {e:?}"));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = rss_kib(pid);
    assert!(
        held < baseline + 128 * 1024,
        "RSS grew from {baseline} KiB to {held} KiB"
    );

    // The silent ones were closed by the handshake deadline (4 s): after the server's own
    // SETTINGS frame, a read sees the end.
    for (i, mut socket) in silent.into_iter().enumerate() {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut seen = Vec::new();
        match socket.read_to_end(&mut seen) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("silent connection {i} still open after the deadline: {other:?}"),
        }
    }
    // The half-sent calls were ended by the call timeout (3 s) or refused outright.
    for (_, _, response) in stalled.drain(..) {
        let ended = tokio::time::timeout(Duration::from_secs(10), response).await;
        assert!(ended.is_ok(), "a half-sent call was never ended");
    }

    // Past maxConnections, new connections are closed as they arrive, and the log says why. (Far
    // past it: on a busy machine the first of them may meet their handshake deadline before the
    // last are accepted, freeing their places.)
    let flood: Vec<TcpStream> = (0..450)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("connection limit reached") {
        assert!(
            Instant::now() < deadline,
            "no log line; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(flood);
    // Once they are gone, clients are served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health_ok(&server).await {
        assert!(Instant::now() < deadline, "not served after the flood");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = wait_for_messages(&server.maildir(), calls, Duration::from_secs(10));
    assert_eq!(mails.len(), calls);
}
