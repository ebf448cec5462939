//! Issue 22, replicas that scale: real `flyte-notify serve` replicas on one PostgreSQL database,
//! sending webhooks to a local HTTP sink.
//!
//! - Wake-ups: work accepted on one replica is picked up by an idle other one at once, not at its
//!   next poll, also after its listening connection was cut and came back.
//! - Shared rate limits: three replicas together keep to a destination's rateLimit, and every
//!   delivery still arrives.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http_sink::WebhookSink;
use common::postgres::TestDatabase;
use common::replicas::Endpoints;
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{EnqueueRequest, WebhookNotification};
use futures::StreamExt;

/// A replica on `dsn` whose webhooks to the destination `ops` (its URL in FN_TEST_OPS_URL) are
/// limited to `rate`, with `worker` as its worker section.
fn replica_config(dsn: &str, rate: &str, worker: &str) -> String {
    format!(
        r#"
notifications:
  emailer: {{ sender: flyte@example.com }}
flyteNotify:
  store: postgres
  postgres: {{ dsn: "{dsn}" }}
  retry: {{ baseDelay: 200ms, maxDelay: 2s, maxAttempts: 100 }}
  worker: {worker}
  webhooks:
    rateLimit: {rate}
    destinations:
      - name: ops
        urlEnvVar: FN_TEST_OPS_URL
"#
    )
}

fn start(dir: &std::path::Path, name: &str, config: &str, sink: &WebhookSink) -> Server {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    Server::start_env(&home, config, &[("FN_TEST_OPS_URL", &sink.url("/ops"))])
}

/// One webhook to the destination `ops` for a failed execution.
fn request(id: &str) -> EnqueueRequest {
    EnqueueRequest {
        request_id: id.into(),
        execution: Some(failed_execution(id)),
        notifications: Vec::new(),
        webhooks: vec![WebhookNotification {
            destination: "ops".into(),
            phases: vec![Phase::Failed as i32],
            ..Default::default()
        }],
        deadline: None,
    }
}

/// The Idempotency-Key (the delivery id) of every request the sink received, with when it came.
fn received(sink: &WebhookSink) -> Vec<(String, f64)> {
    sink.requests()
        .iter()
        .map(|r| {
            (
                r["headers"]["idempotency-key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["at"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Waits up to `within` for the sink to hold `count` requests; how long it took, if it did.
async fn wait_for_requests(sink: &WebhookSink, count: usize, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if sink.requests().len() >= count {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn wait_for_log(server: &Server, text: &str, within: Duration) {
    let started = Instant::now();
    while !server.log().contains(text) {
        assert!(
            started.elapsed() < within,
            "no {text:?} within {within:?}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The poll interval of the replica that sends: far longer than the bound on picking work up, so
/// that only a wake-up can explain a delivery within it.
const POLL: &str = "60s";
const PICKED_UP_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_accepted_on_one_replica_is_sent_by_an_idle_other_one_at_once() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start("", None);
    // A only accepts; B sends, and polls once a minute.
    let a = start(
        dir.path(),
        "a",
        &replica_config(&database.dsn(), "10/s", "{ enabled: false }"),
        &sink,
    );
    let b = start(
        dir.path(),
        "b",
        &replica_config(
            &database.dsn(),
            "10/s",
            &format!("{{ pollInterval: {POLL} }}"),
        ),
        &sink,
    );
    assert!(a.log().contains("flyteNotify.worker.enabled is false"));
    // B was listening before its port opened; its first look at the ledger found nothing, so it
    // would next look a minute from now.
    assert!(
        b.log().contains("woken by other replicas' new work"),
        "{}",
        b.log()
    );

    let mut client = a.client().await;
    client.enqueue(request("wake-1")).await.unwrap();
    let took = wait_for_requests(&sink, 1, PICKED_UP_WITHIN).await;
    println!("B sent the delivery A accepted after {took:?} (its poll interval: {POLL})");
    assert!(
        took.is_some(),
        "B did not send within {PICKED_UP_WITHIN:?}; A:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );

    // B's listening connection is cut (as by a failover or a connection reaper): B says so, goes
    // on polling, listens again on a new connection, and is woken as before.
    let mut db = database.session().await;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(cut, vec![true], "one listening connection (B's)");
    wait_for_log(
        &b,
        "lost the connection that listens",
        Duration::from_secs(10),
    )
    .await;
    wait_for_log(
        &b,
        "listening for other replicas' new work again",
        Duration::from_secs(10),
    )
    .await;
    // The wake-up after reconnecting has come and gone by now: nothing was due.
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.enqueue(request("wake-2")).await.unwrap();
    let took = wait_for_requests(&sink, 2, PICKED_UP_WITHIN).await;
    println!("after reconnecting, B sent the next one after {took:?}");
    assert!(
        took.is_some(),
        "B did not send within {PICKED_UP_WITHIN:?} after reconnecting; B:\n{}",
        b.log()
    );
    let keys: Vec<String> = received(&sink).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 2, "each sent once: {keys:?}");
    assert_ne!(keys[0], keys[1]);
}

const REPLICAS: usize = 3;
const DELIVERIES: usize = 150;
/// The destination's limit, and the most any 10 s may then see: 5/s for 10 s plus the burst of 5
/// (55), and 5 more for how unevenly a loaded machine's sends reach the sink: a send goes when
/// its slot has come and a few round trips later, so the first request of a window may arrive
/// late and the next ones early. Replicas that each kept to the limit alone would send all 150
/// within about 10 s.
const RATE: &str = "5/s";
const WINDOW: f64 = 10.0;
const MOST_PER_WINDOW: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_together_keep_to_a_destinations_rate_limit_and_lose_nothing() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start("", None);
    let config = replica_config(&database.dsn(), RATE, "{}");
    let replicas: Vec<Server> = (0..REPLICAS)
        .map(|i| start(dir.path(), &format!("replica-{i}"), &config, &sink))
        .collect();
    let endpoints = Arc::new(Endpoints::new(REPLICAS));
    for (i, replica) in replicas.iter().enumerate() {
        endpoints.set(i, Some(replica.url()));
    }

    // Spread over the replicas, as fast as they take them.
    let placed: Vec<_> = futures::stream::iter(0..DELIVERIES)
        .map(|i| {
            let endpoints = endpoints.clone();
            async move {
                endpoints
                    .enqueue(
                        request(&format!("limit-{i:03}")),
                        i % REPLICAS,
                        Duration::from_secs(30),
                    )
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut ids: Vec<String> = Vec::new();
    for p in placed {
        ids.extend(p.unwrap().response.delivery_ids);
    }
    assert_eq!(ids.len(), DELIVERIES);

    // At 5/s the last one is due about 30 s after the first; everything arrives well within this.
    let all_in = wait_for_requests(&sink, DELIVERIES, Duration::from_secs(120)).await;
    let got = received(&sink);
    let mut times: Vec<f64> = got.iter().map(|(_, at)| *at).collect();
    times.sort_by(f64::total_cmp);
    // The most requests any 10 s saw (each window starting at a request).
    let busiest = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t < times[i] + WINDOW)
                .count()
        })
        .max()
        .unwrap_or(0);
    let first_window = times.iter().take_while(|t| **t < times[0] + WINDOW).count();
    println!(
        "{} requests; all in after {all_in:?}; {first_window} in the first {WINDOW} s, at most \
         {busiest} in any {WINDOW} s; the last came {:.1} s after the first",
        times.len(),
        times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0)
    );
    assert!(
        busiest <= MOST_PER_WINDOW,
        "{busiest} requests within {WINDOW} s; the replicas together may send {MOST_PER_WINDOW}"
    );
    // Nothing lost, nothing sent twice.
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for (key, _) in &got {
        *by_key.entry(key.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !by_key.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "never arrived: {missing:?}");
    assert!(
        by_key.values().all(|n| *n == 1),
        "sent twice: {:?}",
        by_key.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert_eq!(got.len(), DELIVERIES);
    for (i, replica) in replicas.iter().enumerate() {
        let sent = replica.log().matches(": delivered").count();
        println!("replica {i} sent {sent}");
    }
}
