//! Issue #11's crash harness: three replicas on one PostgreSQL database, all sending by SMTP to one
//! sink, while a load generator enqueues through whichever replica is up and a random replica is
//! SIGKILLed and restarted every few seconds. At the end nothing accepted is lost, and every
//! duplicate is a send that was in flight when its replica was killed.
//!
//! Sizes come from the environment; scripts/crash-harness.sh runs the full size:
//! FLYTE_NOTIFY_CRASH_NOTIFICATIONS (default 10000, the size),
//! FLYTE_NOTIFY_CRASH_KILLS (at least that many, default 10), FLYTE_NOTIFY_CRASH_KILL_EVERY (the mean time between kills, default 3s; each gap is
//! drawn between half and one and a half times it), FLYTE_NOTIFY_CRASH_SEED (random by default;
//! the report names it), FLYTE_NOTIFY_CRASH_REPORT (a file the report is also written to).
//!
//! What was in flight at a kill is measured from outside the replicas: the database is asked which
//! leases are held (id and lease token) just after each kill and again OBSERVE later. A live
//! replica's lease ends within milliseconds (a send to the local sink, then its outcome clears
//! it); a dead replica's stays until it runs out (90 s). The leases held with the same token in
//! both looks are the killed replica's: its sends in flight. Those the ledger's own count
//! confirms at the end (a lease handed out with no outcome recorded for it) are the sends in
//! flight; the rest are reported (a live replica's send that was still running, on a busy
//! machine, or the dead replica's last statement, which PostgreSQL ran after the kill). A
//! delivery's history (GetDelivery) cannot tell: it has one event per recorded outcome, and a
//! lease that died with its replica records none.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::postgres::TestDatabase;
use common::replicas::{Endpoints, Receipts, smtp_replica_config};
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{EnqueueRequest, GetDeliveryRequest, delivery_event};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgConnection;

const REPLICAS: usize = 3;
/// How long after a kill the second look at the leases is taken.
const OBSERVE: Duration = Duration::from_millis(1500);
/// Enqueue calls in flight at once.
const CALLERS: usize = 64;
/// `flyteNotify.worker.concurrency`'s default: a replica never holds more leases than this (the
/// worker leases no more than it has free slots), so no kill can leave more sends in flight.
const WORKER_CONCURRENCY: usize = 16;

struct Params {
    notifications: usize,
    kills: usize,
    kill_every: Duration,
    seed: u64,
    report: Option<std::path::PathBuf>,
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} does not parse")),
        Err(_) => default,
    }
}

impl Params {
    fn from_env() -> Self {
        let kill_every = std::env::var("FLYTE_NOTIFY_CRASH_KILL_EVERY")
            .map(|v| humantime::parse_duration(&v).expect("FLYTE_NOTIFY_CRASH_KILL_EVERY, e.g. 3s"))
            .unwrap_or(Duration::from_secs(3));
        Self {
            notifications: env_or("FLYTE_NOTIFY_CRASH_NOTIFICATIONS", 10_000),
            kills: env_or("FLYTE_NOTIFY_CRASH_KILLS", 10),
            kill_every,
            seed: env_or("FLYTE_NOTIFY_CRASH_SEED", rand::random::<u64>() % 1_000_000),
            report: std::env::var_os("FLYTE_NOTIFY_CRASH_REPORT").map(Into::into),
        }
    }
}

/// One SIGKILL, and the leases the killed replica left behind: (delivery id, lease token).
struct Kill {
    at: Duration,
    replica: usize,
    stuck: HashSet<(String, i64)>,
    /// The database's clock (ms) at the second look.
    second_look_at: i64,
}

/// The leases the database holds right now.
async fn held_leases(db: &mut PgConnection) -> HashSet<(String, i64)> {
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

async fn database_now(db: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT ledger_now()")
        .fetch_one(db)
        .await
        .expect("read the database's clock")
}

fn request(i: usize) -> EnqueueRequest {
    let name = format!("crash-{i:05}");
    EnqueueRequest {
        request_id: name.clone(),
        execution: Some(failed_execution(&name)),
        notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
        webhooks: Vec::new(),
        deadline: None,
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Written where the test runner cannot swallow it, so that a passing run shows it too.
fn show(text: &str, params: &Params) {
    let _ = std::io::stderr().write_all(text.as_bytes());
    if let Some(path) = &params.report {
        std::fs::write(path, text).expect("write the report");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_at_random_lose_nothing_and_duplicate_only_what_was_in_flight() {
    let params = Params::from_env();
    let mut rng = StdRng::seed_from_u64(params.seed);
    let database = TestDatabase::create().await;
    let mut db = database.session().await;
    let dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let sink = SmtpSink::start(sink_port, &dir.path().join("sink"));
    let config = smtp_replica_config(sink_port, Some(&database.dsn()));

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

    // The load: paced so that enqueueing spans the kills.
    let started = Instant::now();
    let window = params.kill_every.mul_f64(params.kills as f64);
    let gap = window.div_f64(params.notifications.max(1) as f64);
    let generating = Arc::new(AtomicBool::new(true));
    let load = {
        let endpoints = endpoints.clone();
        let generating = generating.clone();
        let count = params.notifications;
        tokio::spawn(async move {
            let placed: Vec<_> = futures::stream::iter(0..count)
                .map(|i| {
                    let endpoints = endpoints.clone();
                    async move {
                        tokio::time::sleep_until((started + gap.mul_f64(i as f64)).into()).await;
                        let placed = endpoints
                            .enqueue(request(i), i % REPLICAS, Duration::from_secs(300))
                            .await;
                        (i, placed)
                    }
                })
                .buffer_unordered(CALLERS)
                .collect()
                .await;
            generating.store(false, Ordering::Release);
            (placed, started.elapsed())
        })
    };

    // The kills: a random replica, at random gaps, until there were enough and the load is in.
    let mut kills: Vec<Kill> = Vec::new();
    // Leases already put down to an earlier kill: a dead replica's leases are still held at the
    // next kills, until they run out.
    let mut attributed: HashSet<(String, i64)> = HashSet::new();
    let mut next_kill = started + params.kill_every.mul_f64(rng.random_range(0.5..1.5));
    while kills.len() < params.kills || generating.load(Ordering::Acquire) {
        tokio::time::sleep_until(next_kill.into()).await;
        let replica = rng.random_range(0..REPLICAS);
        endpoints.set(replica, None);
        replicas[replica].kill();
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let first_look = held_leases(&mut db).await;
        // Down for a moment, as a crashed pod is, then back on the same database.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
        let restarted = tokio::task::block_in_place(|| replicas[replica].restart());
        replicas[replica] = restarted;
        endpoints.set(replica, Some(replicas[replica].url()));
        tokio::time::sleep_until((killed + OBSERVE).into()).await;
        let second_look = held_leases(&mut db).await;
        let second_look_at = database_now(&mut db).await;
        let stuck: HashSet<(String, i64)> = first_look
            .intersection(&second_look)
            .filter(|lease| !attributed.contains(*lease))
            .cloned()
            .collect();
        attributed.extend(stuck.iter().cloned());
        kills.push(Kill {
            at: killed - started,
            replica,
            stuck,
            second_look_at,
        });
        next_kill =
            (killed + params.kill_every.mul_f64(rng.random_range(0.5..1.5))).max(Instant::now());
    }
    let last_kill = Instant::now();
    for replica in &mut replicas {
        assert!(replica.is_running(), "a replica died on its own");
    }

    let (placed, enqueue_time) = load.await.unwrap();
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut failed_calls: BTreeMap<String, usize> = BTreeMap::new();
    let mut retried = 0;
    let mut retried_duplicate = 0;
    for (i, result) in placed {
        match result {
            Ok(placed) => {
                assert_eq!(placed.response.delivery_ids.len(), 1, "{i}: {placed:?}");
                if !placed.failures.is_empty() {
                    retried += 1;
                    retried_duplicate += usize::from(placed.response.duplicate);
                }
                for code in &placed.failures {
                    *failed_calls.entry(format!("{code:?}")).or_insert(0) += 1;
                }
                accepted.insert(placed.response.delivery_ids[0].clone(), i);
            }
            Err(e) => refused.push(e),
        }
    }

    // Everything accepted arrives, and nothing is left pending. A lease that died with a replica
    // runs out 90 s after it was taken; then another replica sends it.
    let mut receipts = Receipts::new(&sink.maildir);
    let deadline = last_kill
        + Duration::from_secs(240)
        + Duration::from_millis(20 * params.notifications as u64);
    let mut pending = Vec::new();
    loop {
        receipts.refresh();
        let missing = receipts.missing(accepted.keys());
        if missing.is_empty() {
            let mut client = replicas[0].client().await;
            pending = list_all(&mut client, "").await;
            if pending.is_empty() {
                break;
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas.iter().map(|r| tail(&r.log(), 40)).collect();
            panic!(
                "{} of {} accepted never arrived (e.g. {:?}); pending: {:?}\nlogs:\n{}",
                missing.len(),
                accepted.len(),
                &missing[..missing.len().min(10)],
                &pending[..pending.len().min(10)],
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = Instant::now();
    // Nothing is due anywhere now; a late second send would still show here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    receipts.refresh();

    // What the ledger says about itself: every delivery delivered, and which had a lease handed
    // out that never got an outcome.
    let (rows, delivered_rows): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state = 'delivered') FROM deliveries",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let unsettled: HashMap<String, (i64, i64)> = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT id, leases, attempts FROM deliveries WHERE leases > attempts",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, leases, attempts)| (id, (leases, attempts)))
    .collect();

    // The sends in flight at the kills: leases the killed replicas held, by delivery.
    let mut stuck_at: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (k, kill) in kills.iter().enumerate() {
        for (id, _) in &kill.stuck {
            stuck_at.entry(id.clone()).or_default().push(k);
        }
    }
    let not_confirmed: Vec<String> = stuck_at
        .keys()
        .filter(|id| !unsettled.contains_key(*id))
        .cloned()
        .collect();
    // When those were recorded, after the second look of the kill they were seen at.
    let recorded_at: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT id, updated_at FROM deliveries WHERE id = ANY($1)",
    )
    .bind(&not_confirmed)
    .fetch_all(&mut db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let in_flight: BTreeSet<&String> = stuck_at
        .keys()
        .filter(|id| unsettled.contains_key(*id))
        .collect();
    let in_flight_at: Vec<usize> = kills
        .iter()
        .map(|kill| {
            kill.stuck
                .iter()
                .filter(|(id, _)| unsettled.contains_key(id))
                .count()
        })
        .collect();

    let delivered = accepted
        .keys()
        .filter(|id| receipts.by_delivery.contains_key(*id))
        .count();
    let lost = receipts.missing(accepted.keys());
    let unexpected: Vec<&String> = receipts
        .by_delivery
        .keys()
        .filter(|id| !accepted.contains_key(*id))
        .collect();
    let duplicates = receipts.duplicates();
    let extra: usize = duplicates.iter().map(|(_, n)| n - 1).sum();
    let unexplained: Vec<&(String, usize)> = duplicates
        .iter()
        .filter(|(id, n)| !in_flight.contains(id) || *n > 1 + stuck_at[id].len())
        .collect();

    let total = started.elapsed();
    let mut report = String::new();
    let w = &mut report;
    let _ = writeln!(
        w,
        "\ncrash harness: {REPLICAS} replicas on one PostgreSQL database, SMTP to one sink (seed {})",
        params.seed
    );
    let _ = writeln!(
        w,
        "  accepted            {} of {} enqueued ({retried} needed another call after a replica \
         died or was down; {retried_duplicate} of those had been recorded before it died and \
         were answered as duplicates)",
        accepted.len(),
        params.notifications
    );
    let _ = writeln!(w, "  failed calls        {failed_calls:?}");
    let _ = writeln!(
        w,
        "  delivered           {delivered} (ledger: {delivered_rows} of {rows} rows delivered)"
    );
    let _ = writeln!(w, "  lost                {}", lost.len());
    let _ = writeln!(
        w,
        "  duplicates          {} deliveries ({extra} extra receipts; {} messages received)",
        duplicates.len(),
        receipts.messages()
    );
    let _ = writeln!(
        w,
        "  in flight at kills  {} sends (leases the killed replicas held): {} reached the sink \
         before the kill and were sent again (the duplicates), {} had not",
        in_flight.len(),
        duplicates.len() - unexplained.len(),
        in_flight.len() - (duplicates.len() - unexplained.len())
    );
    let _ = writeln!(
        w,
        "  kills               {} SIGKILLs, one every {:.1} s on average",
        kills.len(),
        kills.last().map_or(0.0, |k| k.at.as_secs_f64()) / kills.len().max(1) as f64
    );
    let _ = writeln!(
        w,
        "  duration            {:.0} s: enqueueing {:.0} s, last kill to all delivered {:.0} s \
         (a dead replica's lease runs out after 90 s)",
        total.as_secs_f64(),
        enqueue_time.as_secs_f64(),
        (settled - last_kill).as_secs_f64()
    );
    let _ = writeln!(
        w,
        "  ledger              {} deliveries had a lease with no outcome recorded",
        unsettled.len()
    );
    let _ = writeln!(
        w,
        "  seen, then settled  {} leases held at both looks after a kill whose outcome was \
         recorded after all (a live replica's slow send, or the dead one's last statement run \
         late); not counted as in flight",
        not_confirmed.len()
    );
    for id in &not_confirmed {
        let kill = &kills[stuck_at[id][0]];
        let _ = writeln!(
            w,
            "    {id}: seen at kill #{}, recorded {} ms after the second look",
            stuck_at[id][0] + 1,
            recorded_at.get(id).map_or(-1, |t| t - kill.second_look_at)
        );
    }
    let _ = writeln!(w, "kills:");
    for (k, kill) in kills.iter().enumerate() {
        let _ = writeln!(
            w,
            "  #{:<3} at {:>6.1} s  replica {}  sends in flight: {}{}",
            k + 1,
            kill.at.as_secs_f64(),
            kill.replica,
            in_flight_at[k],
            if kill.stuck.len() > in_flight_at[k] {
                format!(" (leases seen held: {})", kill.stuck.len())
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(w, "duplicates:");
    let mut client = replicas[0].client().await;
    for (id, n) in &duplicates {
        let history = client
            .get_delivery(GetDeliveryRequest {
                delivery_id: id.clone(),
            })
            .await
            .map(|r| {
                r.into_inner()
                    .history
                    .iter()
                    .map(|e| {
                        let kind = delivery_event::Kind::try_from(e.kind)
                            .map_or("?".to_string(), |k| format!("{k:?}"));
                        format!("{kind} at attempt {}", e.attempts)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|e| format!("GetDelivery failed: {e}"));
        let kills_of: Vec<String> = stuck_at
            .get(id)
            .map(|ks| ks.iter().map(|k| format!("#{}", k + 1)).collect())
            .unwrap_or_default();
        let (leases, attempts) = unsettled.get(id).copied().unwrap_or_default();
        let _ = writeln!(
            w,
            "  {id} ({}): received {n} times; in flight at kill {}; ledger: {leases} leases, \
             {attempts} outcomes; history: {history}",
            accepted
                .get(id)
                .map_or("?".into(), |i| request(*i).request_id),
            if kills_of.is_empty() {
                "none".to_string()
            } else {
                kills_of.join(" ")
            },
        );
    }
    if duplicates.is_empty() {
        let _ = writeln!(w, "  none");
    }
    show(&report, &params);

    assert!(refused.is_empty(), "not accepted: {refused:?}");
    assert_eq!(accepted.len(), params.notifications);
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        unexpected.is_empty(),
        "sent but never accepted: {unexpected:?}"
    );
    assert!(
        receipts.foreign.is_empty(),
        "received without our Message-ID: {:?}",
        receipts.foreign
    );
    assert_eq!((rows, delivered_rows), (accepted.len() as i64, rows));
    assert!(
        unexplained.is_empty(),
        "duplicates that no kill explains: {unexplained:?}"
    );
    assert!(kills.len() >= params.kills);
    for (k, n) in in_flight_at.iter().enumerate() {
        assert!(
            *n <= WORKER_CONCURRENCY,
            "kill #{} left {n} sends in flight, more than one replica holds at once",
            k + 1
        );
    }
}
