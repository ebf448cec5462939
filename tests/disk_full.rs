//! The ledger's disk fills up while Enqueue calls keep coming: callers hear UNAVAILABLE (which
//! gRPC clients retry), health says NOT_SERVING, reads go on, nothing acknowledged is lost, the
//! service starts on the full disk, and everything recovers when space returns.
//!
//! Needs root to mount a small tmpfs (CI runs as root).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;

/// A 3 MiB tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }

    /// Sets 1 MiB aside, to give back later as the space that returns.
    fn reserve(&self) {
        std::fs::write(self.0.join("ballast"), vec![1u8; 1024 * 1024]).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("ballast")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn health(server: &Server) -> i32 {
    health_status(connect(server).await).await.unwrap()
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

async fn wait_for_health(server: &Server, want: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(server).await != want {
        assert!(
            Instant::now() < deadline,
            "health never became {want}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn request(i: usize) -> EnqueueRequest {
    let mut execution = failed_execution(&format!("exec-{i:04}"));
    // 64 KiB per request: the disk fills in a few dozen calls.
    execution.error.as_mut().unwrap().message = "x".repeat(64 * 1024);
    EnqueueRequest {
        request_id: format!("full-{i:04}"),
        execution: Some(execution),
        notifications: vec![email(
            &[Phase::Failed],
            &["oncall@example.com"],
            "{{ name }}",
        )],
        webhooks: Vec::new(),
        deadline: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_unavailable_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"));
    disk.reserve();
    let smtp_port = free_port();
    let sink = dir.path().join("sink");
    let config_path = dir.path().join("config.yaml");
    // Mail goes to an SMTP sink on the big disk, so that only the ledger uses the small one; the
    // sink is down at first so that what is accepted stays in the ledger.
    std::fs::write(
        &config_path,
        format!(
            "notifications:\n  emailer:\n    sender: flyte@example.com\n    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: \"{smtp_port}\" }}\nflyteNotify:\n  dataDir: {}\n  retry: {{ baseDelay: 200ms, maxDelay: 500ms, maxAttempts: 100000 }}\n  worker: {{ sendTimeout: 2s }}\n",
            disk.0.join("data").display()
        ),
    )
    .unwrap();
    let mut server = Server::spawn_with(disk.0.join("data"), Some(config_path.clone()));
    let mut client = server.client().await;

    // Enqueue until the disk is full.
    let mut acknowledged = BTreeSet::new();
    let mut refusal = None;
    for i in 0..1000 {
        match client.enqueue(request(i)).await {
            Ok(_) => {
                acknowledged.insert(format!("exec-{i:04}"));
            }
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk never filled up");
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    assert!(
        refusal.message().contains("disk is full"),
        "{}",
        refusal.message()
    );
    assert!(
        acknowledged.len() > 5,
        "{} acknowledged",
        acknowledged.len()
    );

    // Refused, not crashed: writes say UNAVAILABLE, health says NOT_SERVING, reads work.
    let again = client.enqueue(request(5000)).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::Unavailable);
    wait_for_health(&server, NOT_SERVING).await;
    let listed = list_all(&mut client, "").await;
    assert_eq!(listed.len(), acknowledged.len());
    let log = server.log();
    assert_eq!(
        log.matches("the ledger cannot write").count(),
        1,
        "the cause is logged once:\n{log}"
    );

    // It starts on the full disk: reads are served, writes refused.
    drop(client);
    assert_eq!(server.terminate(), Some(0));
    let server = server.restart();
    let mut client = server.client().await;
    assert_eq!(list_all(&mut client, "").await.len(), acknowledged.len());
    let refused = client.enqueue(request(5001)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);

    // Space returns and the mail server comes up: it recovers, and every acknowledged
    // notification arrives (those whose lease could not be given back on the full disk once
    // their lease runs out: sendTimeout + 30 s).
    disk.free();
    let _sink = SmtpSink::start(smtp_port, &sink);
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        match client.enqueue(request(6000)).await {
            Ok(_) => break "exec-6000".to_string(),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert!(
                    Instant::now() < deadline,
                    "never recovered: {status:?}; log:\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    acknowledged.insert(last);
    wait_for_health(&server, SERVING).await;
    // A send whose outcome could not be recorded while the disk was full goes again when its
    // lease runs out: sendTimeout (or the 60 s a webhook may take, if longer) plus 30 s.
    let mails = wait_for_messages(&sink, acknowledged.len(), Duration::from_secs(150));
    let received: BTreeSet<String> = mails.iter().map(|m| parse_mail(m).subject).collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|name| !received.iter().any(|s| s.contains(name.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
}
