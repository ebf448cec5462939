//! A rolling restart, as `kubectl rollout restart` does it (issue #18): three replicas on one
//! PostgreSQL database, all sending by SMTP to one sink, while a load generator enqueues through
//! whichever replica is up. One replica at a time gets SIGTERM, is taken out of the callers'
//! rotation (the Service dropping a pod that turned NOT_SERVING), exits, and is started again on
//! the same database before the next one goes. With a clean drain nothing may be lost and nothing
//! sent twice: unlike a SIGKILL (tests/replica_crash.rs), a SIGTERM leaves no send in flight.
//!
//! Sizes from the environment: FLYTE_NOTIFY_ROLLING_NOTIFICATIONS (default 3000),
//! FLYTE_NOTIFY_ROLLING_ROUNDS (restarts of every replica, default 2), FLYTE_NOTIFY_ROLLING_REPORT
//! (a file the report is also written to).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::postgres::TestDatabase;
use common::replicas::{Endpoints, Receipts, smtp_replica_config};
use common::*;
use futures::StreamExt;

const REPLICAS: usize = 3;
const CALLERS: usize = 32;
const DRAIN_DELAY: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_secs(10);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

/// One replica's turn: SIGTERM to exit, then the new one serving.
struct Turn {
    replica: usize,
    exit_code: Option<i32>,
    to_exit: Duration,
    to_ready: Duration,
}

/// The leases the database holds right now: (delivery id, lease token).
async fn held_leases(db: &mut sqlx::PgConnection) -> HashSet<(String, i64)> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT id, lease_token FROM deliveries \
         WHERE lease_until > ledger_now() AND lease_token IS NOT NULL",
    )
    .fetch_all(db)
    .await
    .expect("read the leases")
    .into_iter()
    .collect()
}

async fn wait_serving(server: &Server) {
    let started = Instant::now();
    let channel = connect(server).await;
    while health_status(channel.clone()).await.ok() != Some(1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the restarted replica never became SERVING; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_sends_nothing_twice() {
    let notifications = env_or("FLYTE_NOTIFY_ROLLING_NOTIFICATIONS", 3000);
    let rounds = env_or("FLYTE_NOTIFY_ROLLING_ROUNDS", 2);
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let sink = SmtpSink::start(sink_port, &dir.path().join("sink"));
    let config = format!(
        "{}  shutdownDrainDelay: {}\n  shutdownGrace: {}\n",
        smtp_replica_config(sink_port, Some(&database.dsn())),
        humantime::format_duration(DRAIN_DELAY),
        humantime::format_duration(GRACE)
    );

    let endpoints = Arc::new(Endpoints::new(REPLICAS));
    let mut replicas: Vec<Server> = (0..REPLICAS)
        .map(|i| {
            let home = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start_env(&home, &config, &[])
        })
        .collect();
    for (i, replica) in replicas.iter().enumerate() {
        endpoints.set(i, Some(replica.url()));
    }

    // The load, paced to span the whole rollout (a replica's turn takes a few seconds).
    let started = Instant::now();
    let window = Duration::from_secs(4) * (REPLICAS * rounds) as u32;
    let gap = window.div_f64(notifications.max(1) as f64);
    let generating = Arc::new(AtomicBool::new(true));
    let load = {
        let endpoints = endpoints.clone();
        let generating = generating.clone();
        tokio::spawn(async move {
            let placed: Vec<_> = futures::stream::iter(0..notifications)
                .map(|i| {
                    let endpoints = endpoints.clone();
                    async move {
                        tokio::time::sleep_until((started + gap.mul_f64(i as f64)).into()).await;
                        let request = failed_email_request(&format!("rolling-{i:05}"));
                        endpoints
                            .enqueue(request, i % REPLICAS, Duration::from_secs(120))
                            .await
                    }
                })
                .buffer_unordered(CALLERS)
                .collect()
                .await;
            generating.store(false, Ordering::Release);
            (placed, started.elapsed())
        })
    };

    // The rollout: each replica in turn, `rounds` times, then keep the load company until it
    // is all in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut turns = Vec::new();
    let mut db = database.session().await;
    let mut left_behind: HashSet<(String, i64)> = HashSet::new();
    for _round in 0..rounds {
        for (replica, slot) in replicas.iter_mut().enumerate() {
            let pid = slot.child.id().to_string();
            let signalled = Instant::now();
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap();
            // The Service stops routing to a pod once it is NOT_SERVING: callers move on.
            endpoints.set(replica, None);
            let status = tokio::task::block_in_place(|| slot.child.wait().unwrap());
            let to_exit = signalled.elapsed();
            let exited = Instant::now();
            let first_look = held_leases(&mut db).await;
            let starting = Instant::now();
            let next = tokio::task::block_in_place(|| slot.restart());
            wait_serving(&next).await;
            let to_ready = starting.elapsed();
            endpoints.set(replica, Some(next.url()));
            let old = std::mem::replace(slot, next);
            assert_eq!(
                status.code(),
                Some(0),
                "replica {replica}; log:\n{}",
                old.log()
            );
            turns.push(Turn {
                replica,
                exit_code: status.code(),
                to_exit,
                to_ready,
            });
            // Settle a moment, as a rollout waits for the new pod to be ready; then look again.
            // A live replica's lease ends within milliseconds (a send to the local sink); one
            // held at both looks, 1.5 s apart, was left behind by the replica that stopped.
            tokio::time::sleep_until((exited + Duration::from_millis(1500)).into()).await;
            let second_look = held_leases(&mut db).await;
            left_behind.extend(first_look.intersection(&second_look).cloned());
        }
    }
    let rollout_done = started.elapsed();
    let (placed, enqueue_time) = load.await.unwrap();
    assert!(!generating.load(Ordering::Acquire));

    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut failed_calls: BTreeMap<String, usize> = BTreeMap::new();
    let mut retried = 0;
    for (i, result) in placed.into_iter().enumerate() {
        match result {
            Ok(p) => {
                assert_eq!(p.response.delivery_ids.len(), 1, "{p:?}");
                if !p.failures.is_empty() {
                    retried += 1;
                }
                for code in &p.failures {
                    *failed_calls.entry(format!("{code:?}")).or_insert(0) += 1;
                }
                accepted.insert(p.response.delivery_ids[0].clone(), i);
            }
            Err(e) => refused.push(e),
        }
    }

    let mut receipts = Receipts::new(&sink.maildir);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        receipts.refresh();
        let missing = receipts.missing(accepted.keys());
        if missing.is_empty() {
            let mut client = replicas[0].client().await;
            if list_all(&mut client, "").await.is_empty() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted never arrived (e.g. {:?})",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_delivered = started.elapsed();
    // A late second send would still show here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    receipts.refresh();
    let (rows, delivered_rows, handed_back): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state = 'delivered'), \
         count(*) FILTER (WHERE leases > attempts) FROM deliveries",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();

    let lost = receipts.missing(accepted.keys());
    let duplicates = receipts.duplicates();
    let unexpected: HashSet<&String> = receipts
        .by_delivery
        .keys()
        .filter(|id| !accepted.contains_key(*id))
        .collect();
    let exits: Vec<f64> = turns.iter().map(|t| t.to_exit.as_secs_f64()).collect();
    let readies: Vec<f64> = turns.iter().map(|t| t.to_ready.as_secs_f64()).collect();
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;

    let mut report = String::new();
    let w = &mut report;
    let _ = writeln!(
        w,
        "\nrolling restart: {REPLICAS} replicas on one PostgreSQL database, SMTP to one sink; \
         shutdownDrainDelay {DRAIN_DELAY:?}, shutdownGrace {GRACE:?}"
    );
    let _ = writeln!(
        w,
        "  accepted        {} of {notifications} ({retried} needed another call: their replica \
         was draining or down)",
        accepted.len()
    );
    let _ = writeln!(w, "  failed calls    {failed_calls:?}");
    let _ = writeln!(
        w,
        "  delivered       {} (ledger: {delivered_rows} of {rows} rows delivered)",
        accepted.len() - lost.len()
    );
    let _ = writeln!(w, "  lost            {}", lost.len());
    let _ = writeln!(
        w,
        "  duplicates      {} ({} messages received)",
        duplicates.len(),
        receipts.messages()
    );
    let _ = writeln!(
        w,
        "  leases          {} left behind by a stopping replica; {handed_back} deliveries had a \
         lease that ended with no outcome (handed back unsent at a shutdown)",
        left_behind.len()
    );
    let _ = writeln!(
        w,
        "  restarts        {} (SIGTERM to exit: mean {:.2} s, max {:.2} s; start to SERVING: mean \
         {:.2} s, max {:.2} s)",
        turns.len(),
        mean(&exits),
        max(&exits),
        mean(&readies),
        max(&readies)
    );
    let _ = writeln!(
        w,
        "  duration        rollout {:.1} s, enqueueing {:.1} s, all delivered at {:.1} s",
        rollout_done.as_secs_f64(),
        enqueue_time.as_secs_f64(),
        all_delivered.as_secs_f64()
    );
    for (k, t) in turns.iter().enumerate() {
        let _ = writeln!(
            w,
            "    #{:<2} replica {}  exit {:?} after {:.2} s, SERVING again {:.2} s later",
            k + 1,
            t.replica,
            t.exit_code,
            t.to_exit.as_secs_f64(),
            t.to_ready.as_secs_f64()
        );
    }
    let _ = std::io::stderr().write_all(report.as_bytes());
    if let Some(path) = std::env::var_os("FLYTE_NOTIFY_ROLLING_REPORT") {
        std::fs::write(path, &report).unwrap();
    }

    assert!(refused.is_empty(), "not accepted: {refused:?}");
    assert_eq!(accepted.len(), notifications);
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(duplicates, Vec::new(), "sent twice");
    assert!(
        unexpected.is_empty(),
        "sent but never accepted: {unexpected:?}"
    );
    assert!(receipts.foreign.is_empty());
    assert!(
        left_behind.is_empty(),
        "leases left behind to run out: {left_behind:?}"
    );
    assert_eq!((rows, delivered_rows), (notifications as i64, rows));
    for t in &turns {
        assert!(
            t.to_exit < DRAIN_DELAY + GRACE,
            "replica {} took {:?} to exit, over shutdownDrainDelay + shutdownGrace",
            t.replica,
            t.to_exit
        );
    }
}
