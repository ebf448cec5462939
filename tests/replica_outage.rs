//! Issue #11: two replicas cut off from their PostgreSQL database for about ten seconds, mid-run.
//! A TCP proxy between the replicas and the server stops passing anything, as a partition would
//! (the server itself, which other tests share, keeps running). Meanwhile the replicas stay up,
//! answer Enqueue with UNAVAILABLE within seconds instead of hanging, and report NOT_SERVING;
//! afterwards they report SERVING again, and everything accepted before and after is delivered.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::{Proxy, TestDatabase};
use common::replicas::{Endpoints, Receipts, smtp_replica_config};
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;
use futures::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;

const REPLICAS: usize = 2;
/// The load runs this long, at RATE Enqueue calls a second; the cut starts CUT_AT into it.
const LOAD: Duration = Duration::from_secs(30);
const RATE: f64 = 20.0;
const CUT_AT: Duration = Duration::from_secs(5);
/// How long the database stays cut off, at least.
const OUTAGE: Duration = Duration::from_secs(10);
/// How long a refused Enqueue may take: the ledger's statement budget (6 s) is the longest a
/// call can wait before the replica knows the database is gone; after that it refuses at once.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn request(id: &str) -> EnqueueRequest {
    EnqueueRequest {
        request_id: id.into(),
        execution: Some(failed_execution(id)),
        notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
        webhooks: Vec::new(),
        deadline: None,
    }
}

/// The whole-server health of `server`, asked on a connection of its own; None when the call
/// itself fails or does not answer in time.
async fn health(server: &Server) -> Option<i32> {
    let ask = async { health_status(connect(server).await).await.ok() };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_cut_off_from_postgres_refuse_fast_report_it_and_deliver_everything_after() {
    let database = TestDatabase::create().await;
    let mut db = database.session().await;
    let proxy = Proxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let sink = SmtpSink::start(sink_port, &dir.path().join("sink"));
    // The DSN from the environment this time, as a deployment with a password would pass it.
    let config = smtp_replica_config(sink_port, None);
    let dsn = database.dsn_via(proxy.port);
    let mut replicas: Vec<Server> = (0..REPLICAS)
        .map(|i| {
            let home = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start_env(&home, &config, &[("FLYTE_NOTIFY_POSTGRES_DSN", &dsn)])
        })
        .collect();
    let endpoints = Arc::new(Endpoints::new(REPLICAS));
    for (i, replica) in replicas.iter().enumerate() {
        endpoints.set(i, Some(replica.url()));
        assert_eq!(health(replica).await, Some(ServingStatus::Serving as i32));
    }

    // A steady load through the whole test. A caller refused during the outage tries again (the
    // same request_id) until a replica accepts it.
    let started = Instant::now();
    let count = (LOAD.as_secs_f64() * RATE) as usize;
    let load = {
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..count)
                .map(|i| {
                    let endpoints = endpoints.clone();
                    async move {
                        let at = started + Duration::from_secs_f64(i as f64 / RATE);
                        tokio::time::sleep_until(at.into()).await;
                        let placed = endpoints
                            .enqueue(request(&format!("load-{i:04}")), i % REPLICAS, LOAD * 4)
                            .await;
                        (i, at - started, placed)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };

    tokio::time::sleep_until((started + CUT_AT).into()).await;
    proxy.cut();
    let cut = Instant::now();
    // Whatever was leased when the cut came may have been sent without its outcome reaching the
    // database: those, and only those, may go out twice.
    let leased_at_cut: HashSet<String> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE lease_until > ledger_now() AND lease_token IS NOT NULL",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
    .into_iter()
    .collect();

    // During the outage: every Enqueue is refused with UNAVAILABLE, soon; health turns
    // NOT_SERVING; the processes stay up.
    let mut refused: Vec<(String, Duration)> = Vec::new();
    let mut not_serving_after: Vec<Option<Duration>> = vec![None; REPLICAS];
    let mut probe = 0;
    while cut.elapsed() < OUTAGE || not_serving_after.iter().any(Option::is_none) {
        assert!(
            cut.elapsed() < Duration::from_secs(60),
            "health never turned NOT_SERVING on every replica: {not_serving_after:?}"
        );
        for (i, replica) in replicas.iter_mut().enumerate() {
            assert!(replica.is_running(), "replica {i} exited during the outage");
            let id = format!("outage-{probe:03}");
            probe += 1;
            let mut client = endpoints.client(i).unwrap();
            let mut call = tonic::Request::new(request(&id));
            call.set_timeout(Duration::from_secs(60));
            let asked = Instant::now();
            let answer = client.enqueue(call).await;
            let took = asked.elapsed();
            match answer {
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    assert!(
                        status.message().contains("database"),
                        "the refusal says why: {status:?}"
                    );
                    refused.push((id, took));
                }
                other => panic!("Enqueue on replica {i} during the outage: {other:?}"),
            }
            assert!(
                took < ANSWER_WITHIN,
                "replica {i} took {took:?} to refuse an Enqueue during the outage"
            );
            if not_serving_after[i].is_none()
                && health(replica).await == Some(ServingStatus::NotServing as i32)
            {
                not_serving_after[i] = Some(cut.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    proxy.restore();
    let restored = Instant::now();
    let outage = restored - cut;

    // Back: SERVING again, in the same processes.
    let mut serving_after = Vec::new();
    for (i, replica) in replicas.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while health(replica).await != Some(ServingStatus::Serving as i32) {
            assert!(
                Instant::now() < deadline,
                "replica {i} never reported SERVING again; log:\n{}",
                replica.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        serving_after.push(restored.elapsed());
        assert!(replica.is_running());
    }
    // What was refused was not recorded: asked again now, it is accepted as new.
    let mut accepted: BTreeMap<String, String> = BTreeMap::new();
    for (n, (id, _)) in refused.iter().enumerate() {
        let placed = endpoints
            .enqueue(request(id), n % REPLICAS, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(!placed.response.duplicate, "{id} was refused, yet recorded");
        accepted.insert(placed.response.delivery_ids[0].clone(), id.clone());
    }

    let mut refused_load: BTreeMap<String, usize> = BTreeMap::new();
    for (i, _, placed) in load.await.unwrap() {
        let placed = placed.unwrap_or_else(|e| panic!("load-{i:04} never accepted: {e}"));
        for code in &placed.failures {
            *refused_load.entry(format!("{code:?}")).or_insert(0) += 1;
        }
        accepted.insert(
            placed.response.delivery_ids[0].clone(),
            format!("load-{i:04}"),
        );
    }
    // Callers saw the outage as UNAVAILABLE, never as a call left hanging (DEADLINE_EXCEEDED).
    assert!(
        refused_load.keys().all(|code| code == "Unavailable"),
        "{refused_load:?}"
    );
    assert!(!refused_load.is_empty(), "the load never met the outage");

    // Every one arrives. What was in flight at the cut waits for its lease to run out (90 s).
    let mut receipts = Receipts::new(&sink.maildir);
    let deadline = Instant::now() + Duration::from_secs(240);
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
            "{} of {} never arrived: {:?}\nlogs:\n{}\n----\n{}",
            missing.len(),
            accepted.len(),
            &missing[..missing.len().min(10)],
            replicas[0].log(),
            replicas[1].log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let delivered_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    receipts.refresh();
    let duplicates = receipts.duplicates();

    let slowest = refused.iter().map(|(_, t)| *t).max().unwrap_or_default();
    let first = refused
        .iter()
        .take(REPLICAS)
        .map(|(_, t)| *t)
        .collect::<Vec<_>>();
    eprintln!(
        "outage of {outage:.1?}: {} Enqueue calls refused (UNAVAILABLE) in at most {slowest:.1?}, \
         the first ones in {first:.1?}; NOT_SERVING after {not_serving_after:.1?}; SERVING again \
         {serving_after:.1?} after the restore; the load's failed calls {refused_load:?}; \
         {} accepted, all delivered {delivered_after:.0?} into the test; {} leased at the cut, \
         {} sent twice {duplicates:?}",
        refused.len(),
        accepted.len(),
        leased_at_cut.len(),
        duplicates.len(),
    );
    assert_eq!(accepted.len(), count + refused.len());
    assert!(receipts.foreign.is_empty(), "{:?}", receipts.foreign);
    let unexpected: Vec<&String> = receipts
        .by_delivery
        .keys()
        .filter(|id| !accepted.contains_key(*id))
        .collect();
    assert!(
        unexpected.is_empty(),
        "sent, never accepted: {unexpected:?}"
    );
    let unexplained: Vec<_> = duplicates
        .iter()
        .filter(|(id, _)| !leased_at_cut.contains(id))
        .collect();
    assert!(
        unexplained.is_empty(),
        "sent twice, yet not in flight at the cut: {unexplained:?}"
    );
    for (i, replica) in replicas.iter_mut().enumerate() {
        assert!(replica.is_running(), "replica {i} exited");
    }
}
