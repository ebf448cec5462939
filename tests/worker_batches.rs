//! The worker's batching on the real binary: sends that finish together have their outcomes
//! written to the ledger together, and deliveries due together are leased together, which
//! `/metrics` shows in `flyte_notify_worker_batch_size`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{EnqueueRequest, WebhookNotification};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

/// An HTTP/1.1 receiver that holds each request until `together` requests are waiting, then
/// answers them all 200 at once: sends that finish at the same instant.
async fn barrier_sink(together: usize, received: Arc<AtomicUsize>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let barrier = Arc::new(Barrier::new(together));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (barrier, received) = (barrier.clone(), received.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + length);
                    received.fetch_add(1, Ordering::SeqCst);
                    barrier.wait().await;
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The `_sum` and `_count` of the histogram `name` for `op`.
fn histogram(body: &str, name: &str, op: &str) -> (f64, f64) {
    let value = |suffix: &str| {
        body.lines()
            .find(|l| {
                l.starts_with(&format!("{name}_{suffix}{{")) && l.contains(&format!("op=\"{op}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count"))
}

#[tokio::test]
async fn sends_that_finish_together_are_recorded_together_and_due_work_is_leased_together() {
    const SLOTS: usize = 8;
    const DELIVERIES: usize = 64;
    let received = Arc::new(AtomicUsize::new(0));
    let sink = barrier_sink(SLOTS, received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("sink-url");
    std::fs::write(&url_file, format!("http://127.0.0.1:{sink}/hook")).unwrap();
    let metrics_port = free_port();
    let config = format!(
        r#"
flyteNotify:
  metricsListen: 127.0.0.1:{metrics_port}
  worker: {{ concurrency: {SLOTS} }}
  webhooks:
    allowedHosts: ["127.0.0.1"]
    rateLimit: 1000000/s
    destinations: [{{ name: sink, urlFile: "{}" }}]
"#,
        url_file.display()
    );
    let server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    for n in 0..DELIVERIES {
        client
            .enqueue(EnqueueRequest {
                request_id: format!("batch-{n}"),
                execution: Some(failed_execution(&format!("exec-batch-{n}"))),
                notifications: Vec::new(),
                webhooks: vec![WebhookNotification {
                    phases: vec![Phase::Failed as i32],
                    destination: "sink".into(),
                    ..Default::default()
                }],
                deadline: None,
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (recorded, _) = histogram(&body, "flyte_notify_worker_batch_size", "record");
        if recorded as usize >= DELIVERIES {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {DELIVERIES} received; metrics:\n{body}",
            received.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every delivery went out once and had its outcome written once.
    assert_eq!(received.load(Ordering::SeqCst), DELIVERIES);
    let (recorded, records) = histogram(&body, "flyte_notify_worker_batch_size", "record");
    let (leased, leases) = histogram(&body, "flyte_notify_worker_batch_size", "lease");
    assert_eq!(recorded as usize, DELIVERIES, "{body}");
    assert_eq!(leased as usize, DELIVERIES, "{body}");
    // Eight sends at a time finished at the same instant, eight rounds of them: with one write
    // per outcome there would be 64 writes.
    assert!(
        records < DELIVERIES as f64,
        "{records} ledger writes recorded {DELIVERIES} outcomes: none shared a write\n{body}"
    );
    assert!(
        leases < DELIVERIES as f64,
        "{leases} leases for {DELIVERIES} deliveries: none shared a lease\n{body}"
    );
}
