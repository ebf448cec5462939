//! SIGTERM, as Kubernetes sends it in a rollout (issue #18): health turns NOT_SERVING, nothing new
//! is leased, sends in flight finish within `shutdownGrace`, a send that outlasts it is cut off
//! and its delivery handed back (lease released, no attempt counted), and the process exits 0.
//! Nothing accepted is lost, nothing is sent twice (but a send cut off mid-way, which may have
//! arrived), and no lease is left behind for the next replica to wait out.
//!
//! The mail server is tests/peers/smtp_hold.py: it stores each message on DATA, then answers
//! after a delay (a slow server, so that a burst has sends in flight), or not at all while its
//! HOLD file exists (a send that outlasts the grace).

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::TestDatabase;
use common::replicas::{Endpoints, Placed, Receipts};
use common::*;
use futures::StreamExt;

const GRACE: Duration = Duration::from_secs(15);
const BURST: usize = 150;

struct SlowSink {
    _peer: Peer,
    port: u16,
    maildir: PathBuf,
    hold: PathBuf,
}

/// A mail server that answers each message after `delay`, and holds every answer while `hold`
/// is true (until `release`).
fn slow_sink(dir: &Path, delay: Duration, hold: bool) -> SlowSink {
    let port = free_port();
    let maildir = dir.join("sink");
    let hold_file = dir.join("HOLD");
    if hold {
        std::fs::write(&hold_file, b"").unwrap();
    }
    let args: Vec<OsString> = vec![
        port.to_string().into(),
        maildir.clone().into(),
        hold_file.clone().into(),
        delay.as_secs_f64().to_string().into(),
    ];
    SlowSink {
        _peer: start_python_peer("smtp_hold.py", &args, port),
        port,
        maildir,
        hold: hold_file,
    }
}

impl SlowSink {
    fn release(&self) {
        let _ = std::fs::remove_file(&self.hold);
    }
}

/// SQLite when `dsn` is None, else the shared ledger on PostgreSQL at `dsn`.
fn config(sink: &SlowSink, dsn: Option<&str>, grace: Duration) -> String {
    let store = match dsn {
        Some(dsn) => format!("  store: postgres\n  postgres: {{ dsn: \"{dsn}\" }}\n"),
        None => String::new(),
    };
    format!(
        "notifications:\n  emailer:\n    sender: flyte@example.com\n    emailServerConfig:\n      \
         serviceName: smtp\n      smtpServer: 127.0.0.1\n      smtpPort: \"{}\"\nflyteNotify:\n{store}  \
         shutdownGrace: {}\n  retry: {{ baseDelay: 200ms, maxDelay: 1s, maxAttempts: 50 }}\n",
        sink.port,
        humantime::format_duration(grace)
    )
}

/// `count` enqueues through `endpoints`, 16 at a time, each retried (same request_id) until a
/// replica accepts it: a caller that rides out a restart.
fn burst(
    endpoints: Arc<Endpoints>,
    prefix: &'static str,
    count: usize,
) -> tokio::task::JoinHandle<Vec<Result<Placed, String>>> {
    tokio::spawn(async move {
        futures::stream::iter(0..count)
            .map(|i| {
                let endpoints = endpoints.clone();
                async move {
                    let request = failed_email_request(&format!("{prefix}-{i:04}"));
                    endpoints
                        .enqueue(request, 0, Duration::from_secs(120))
                        .await
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    })
}

/// A replica with a home of its own under `dir`.
fn replica(dir: &Path, name: &str, yaml: &str) -> Server {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    Server::start_env(&home, yaml, &[])
}

/// SIGTERM, then the exit status and how long the process took to exit.
fn terminate(server: &mut Server) -> (Option<i32>, Duration) {
    let started = Instant::now();
    let code = server.terminate();
    (code, started.elapsed())
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The accepted delivery ids, failing on any enqueue that was never accepted.
fn accepted(placed: Vec<Result<Placed, String>>) -> Vec<String> {
    placed
        .into_iter()
        .map(|p| {
            let p = p.expect("every enqueue is accepted in the end");
            assert_eq!(p.response.delivery_ids.len(), 1, "{p:?}");
            p.response.delivery_ids[0].clone()
        })
        .collect()
}

/// Waits until every id in `ids` arrived, then a moment more for a late second copy, and returns
/// what arrived.
async fn receipts_for(sink: &SlowSink, ids: &[String], server: &Server) -> Receipts {
    let mut receipts = Receipts::new(&sink.maildir);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        receipts.refresh();
        let missing = receipts.missing(ids);
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} never arrived (e.g. {:?}); log:\n{}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(5)],
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    receipts.refresh();
    assert!(receipts.foreign.is_empty(), "{:?}", receipts.foreign);
    receipts
}

/// Leases SQLite holds after the process exited: rows whose lease token is still set.
fn sqlite_leases(server: &Server) -> i64 {
    let db = rusqlite::Connection::open(server.data_dir.join("ledger.sqlite")).unwrap();
    db.query_row(
        "SELECT count(*) FROM deliveries WHERE lease_token IS NOT NULL",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

async fn postgres_leases(database: &TestDatabase) -> i64 {
    let mut db = database.session().await;
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE lease_token IS NOT NULL")
        .fetch_one(&mut db)
        .await
        .unwrap()
}

/// The first phase of both burst tests: a burst into one replica, SIGTERM once sends are going
/// out, and the exit. Returns the stopped replica, the load (still running: what the replica did
/// not take waits for the next one) and what had arrived at the exit.
async fn sigterm_mid_burst(
    dir: &Path,
    sink: &SlowSink,
    yaml: &str,
) -> (
    Server,
    Arc<Endpoints>,
    tokio::task::JoinHandle<Vec<Result<Placed, String>>>,
) {
    let mut server = replica(dir, "first", yaml);
    let endpoints = Arc::new(Endpoints::new(2));
    endpoints.set(0, Some(server.url()));
    let load = burst(endpoints.clone(), "burst", BURST);
    // Mid-burst: some delivered, more in flight (16 sends at a time, each waiting for the slow
    // server), most still to come.
    let mut receipts = Receipts::new(&sink.maildir);
    wait_until("the first deliveries", Duration::from_secs(60), || {
        receipts.refresh();
        receipts.messages() >= 20
    })
    .await;
    endpoints.set(0, None);
    let (code, took) = terminate(&mut server);
    let log = server.log();
    assert_eq!(code, Some(0), "exit status after SIGTERM; log:\n{log}");
    assert!(
        took < GRACE,
        "SIGTERM to exit took {took:?}, over shutdownGrace {GRACE:?}; log:\n{log}"
    );
    assert!(
        log.contains("letting sends in flight finish"),
        "the worker drained; log:\n{log}"
    );
    assert!(
        !log.contains("cut off"),
        "every send finished within the grace; log:\n{log}"
    );
    receipts.refresh();
    assert!(
        receipts.messages() < BURST,
        "the SIGTERM came mid-burst ({} of {BURST} had arrived)",
        receipts.messages()
    );
    (server, endpoints, load)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_on_sqlite_loses_nothing_and_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sink = slow_sink(dir.path(), Duration::from_millis(150), false);
    let yaml = config(&sink, None, GRACE);
    let (stopped, endpoints, load) = sigterm_mid_burst(dir.path(), &sink, &yaml).await;
    assert_eq!(sqlite_leases(&stopped), 0, "a lease outlived the process");

    // The next start on the same ledger sends the rest, and the callers' retries land there.
    let next = stopped.restart();
    endpoints.set(0, Some(next.url()));
    let ids = accepted(load.await.unwrap());
    let receipts = receipts_for(&sink, &ids, &next).await;
    assert_eq!(receipts.duplicates(), Vec::new(), "sent twice");
    assert_eq!(receipts.messages(), BURST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_on_postgres_hands_everything_to_the_other_replica() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = slow_sink(dir.path(), Duration::from_millis(150), false);
    let yaml = config(&sink, Some(&database.dsn()), GRACE);
    let (_stopped, endpoints, load) = sigterm_mid_burst(dir.path(), &sink, &yaml).await;
    // No replica runs now: whatever lease is held is one the stopped replica left behind.
    assert_eq!(
        postgres_leases(&database).await,
        0,
        "a lease outlived its replica"
    );

    let other = replica(dir.path(), "second", &yaml);
    endpoints.set(1, Some(other.url()));
    let ids = accepted(load.await.unwrap());
    let receipts = receipts_for(&sink, &ids, &other).await;
    assert_eq!(receipts.duplicates(), Vec::new(), "sent twice");
    assert_eq!(receipts.messages(), BURST);
}

/// Sends that outlast the grace: the server has the messages but has not answered. The process
/// still exits 0 promptly, each delivery is handed back with no attempt counted, and the next
/// replica sends it at once rather than after the 90 s lease.
async fn sends_cut_off_at_the_grace_are_handed_back(dsn: Option<String>) {
    let grace = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let sink = slow_sink(dir.path(), Duration::ZERO, true);
    let yaml = config(&sink, dsn.as_deref(), grace);
    let mut first = replica(dir.path(), "first", &yaml);
    let mut client = first.client().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let response = client
            .enqueue(failed_email_request(&format!("held-{i}")))
            .await
            .unwrap()
            .into_inner();
        ids.extend(response.delivery_ids);
    }
    let mut receipts = Receipts::new(&sink.maildir);
    wait_until("the held sends", Duration::from_secs(30), || {
        receipts.refresh();
        receipts.messages() == 3
    })
    .await;

    let (code, took) = terminate(&mut first);
    let log = first.log();
    assert_eq!(code, Some(0), "log:\n{log}");
    // The grace, then one ledger write per send cut off.
    assert!(
        took < grace + Duration::from_secs(2),
        "took {took:?}; log:\n{log}"
    );
    assert!(
        log.matches("send cut off at shutdown; handed back").count() == 3,
        "log:\n{log}"
    );

    // Handed back: no lease, no attempt, due now.
    let rows: Vec<(String, String, i64, bool)> = match &dsn {
        None => {
            let db = rusqlite::Connection::open(first.data_dir.join("ledger.sqlite")).unwrap();
            let mut stmt = db
                .prepare(
                    "SELECT id, state, attempts, lease_token IS NOT NULL FROM deliveries ORDER BY id",
                )
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        Some(dsn) => {
            use sqlx::Connection;
            let mut db = sqlx::PgConnection::connect(dsn).await.unwrap();
            sqlx::query_as(
                "SELECT id, state, attempts, lease_token IS NOT NULL FROM deliveries ORDER BY id",
            )
            .fetch_all(&mut db)
            .await
            .unwrap()
        }
    };
    assert_eq!(rows.len(), 3);
    for (id, state, attempts, leased) in &rows {
        assert_eq!(
            (state.as_str(), *attempts, *leased),
            ("pending", 0, false),
            "{id}"
        );
    }

    // The next replica (or start) sends them, and they are delivered.
    sink.release();
    let next = match &dsn {
        None => first.restart(),
        Some(_) => replica(dir.path(), "second", &yaml),
    };
    wait_for_pending(&next, "", Duration::from_secs(30), |listed| {
        listed.is_empty()
    })
    .await;
    let receipts = receipts_for(&sink, &ids, &next).await;
    // Each was received when it was cut off and again from the next replica: the one case where
    // at-least-once shows (nobody knows whether a send that got no answer arrived).
    for id in &ids {
        assert_eq!(receipts.by_delivery.get(id), Some(&2), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_cut_off_at_the_grace_are_handed_back_on_sqlite() {
    sends_cut_off_at_the_grace_are_handed_back(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_cut_off_at_the_grace_are_handed_back_on_postgres() {
    let database = TestDatabase::create().await;
    sends_cut_off_at_the_grace_are_handed_back(Some(database.dsn())).await;
}

/// `shutdownDrainDelay`: after SIGTERM, health says NOT_SERVING while calls are still answered,
/// so that a Service stops routing here before the port closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_delay_reports_not_serving_while_still_answering() {
    let dir = tempfile::tempdir().unwrap();
    let sink = slow_sink(dir.path(), Duration::ZERO, false);
    let yaml = format!(
        "{}  shutdownDrainDelay: 3s\n",
        config(&sink, None, Duration::from_secs(5))
    );
    let mut server = Server::start(dir.path(), Some(&yaml));
    let channel = connect(&server).await;
    assert_eq!(health_status(channel.clone()).await.unwrap(), 1);
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let mut client =
        flyte_notify::proto::flytenotify::v1::notification_service_client::NotificationServiceClient::new(
            channel.clone(),
        );
    wait_until_async(Duration::from_secs(3), || {
        let channel = channel.clone();
        async move { health_status(channel).await.ok() == Some(2) }
    })
    .await;
    // NOT_SERVING, and still accepting.
    let accepted = client
        .enqueue(failed_email_request("during-drain"))
        .await
        .expect("an Enqueue during the drain delay is answered")
        .into_inner();
    assert_eq!(accepted.delivery_ids.len(), 1);
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    assert!(
        server.log().contains("shutdownDrainDelay"),
        "{}",
        server.log()
    );
}

async fn wait_until_async<F, Fut>(within: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "health never said NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
