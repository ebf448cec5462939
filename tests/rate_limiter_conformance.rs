//! The behaviour every rate limiter must have. Each test runs against every limiter in
//! `limiters()`; a new one joins by adding one line there. After them, what only the shared
//! (PostgreSQL) limiter does: replicas share one budget, and it falls back to limiting alone when
//! its database cannot be reached.
//!
//! The limits are per minute, so that a slot is tens of seconds away from the next: the few
//! milliseconds between two calls, or the database's clock ticking on, cannot blur which slot a
//! reservation got, and no test waits for time to pass.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::free_port;
use common::postgres::TestDatabase;
use flyte_notify::channels::rate_limit::{LocalRateLimiter, PostgresRateLimiter, RateLimiter};
use flyte_notify::channels::{Destination, RateLimit};
use flyte_notify::ledger::Ledger;
use flyte_notify::ledger::postgres::{PostgresLedger, PostgresOptions};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Local,
    Postgres,
}

fn limiters() -> Vec<Kind> {
    vec![Kind::Local, Kind::Postgres]
}

/// A limiter of `kind`, with whatever it needs kept alive beside it.
struct Limiter {
    limiter: Arc<dyn RateLimiter>,
    _database: Option<TestDatabase>,
}

/// A database of its own with the ledger's schema (which holds the limiter's table).
async fn database() -> TestDatabase {
    let database = TestDatabase::create().await;
    PostgresLedger::connect(&database.dsn(), PostgresOptions::default())
        .await
        .unwrap()
        .close()
        .await;
    database
}

async fn limiter(kind: Kind) -> Limiter {
    match kind {
        Kind::Local => Limiter {
            limiter: Arc::new(LocalRateLimiter::default()),
            _database: None,
        },
        Kind::Postgres => {
            let database = database().await;
            Limiter {
                limiter: Arc::new(PostgresRateLimiter::new(&database.dsn()).unwrap()),
                _database: Some(database),
            }
        }
    }
}

/// `events` sends per minute.
fn per_minute(key: &str, events: u32) -> Destination {
    Destination {
        key: key.into(),
        limit: RateLimit {
            events,
            per: Duration::from_secs(60),
        },
    }
}

/// Whole seconds, rounded to the nearest: what a wait comes to at the tests' scale.
fn secs(d: Duration) -> u64 {
    d.as_secs_f64().round() as u64
}

#[tokio::test]
async fn a_burst_goes_at_once_then_sends_are_spaced_by_the_rate() {
    for kind in limiters() {
        // The database, if any, lives as long as `held`.
        let held = limiter(kind).await;
        let limiter = held.limiter.clone();
        // Two a minute: two at once, then one every 30 s.
        let d = per_minute("webhook:destination:ops", 2);
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(secs(limiter.reserve(&d).await));
        }
        assert_eq!(waits, vec![0, 0, 30, 60, 90], "{kind:?}");
        // Another destination has a bucket of its own.
        assert_eq!(
            secs(limiter.reserve(&per_minute("slack:C1", 2)).await),
            0,
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn a_released_slot_is_the_next_one_handed_out() {
    for kind in limiters() {
        // The database, if any, lives as long as `held`.
        let held = limiter(kind).await;
        let limiter = held.limiter.clone();
        let d = per_minute("pagerduty:R1", 1);
        assert_eq!(secs(limiter.reserve(&d).await), 0, "{kind:?}");
        assert_eq!(secs(limiter.reserve(&d).await), 60, "{kind:?}");
        assert_eq!(secs(limiter.reserve(&d).await), 120, "{kind:?}");
        // The last send was put off: its slot goes to the next one.
        limiter.release(&d).await;
        assert_eq!(secs(limiter.reserve(&d).await), 120, "{kind:?}");
    }
}

#[tokio::test]
async fn a_pause_holds_every_send_to_the_destination_until_it_is_over() {
    for kind in limiters() {
        // The database, if any, lives as long as `held`.
        let held = limiter(kind).await;
        let limiter = held.limiter.clone();
        let d = per_minute("webhook:url:abc", 60);
        assert_eq!(secs(limiter.reserve(&d).await), 0, "{kind:?}");
        // It answered 429 with Retry-After: 120.
        limiter.pause(&d, Duration::from_secs(120)).await;
        let wait = secs(limiter.reserve(&d).await);
        assert!((120..=121).contains(&wait), "{kind:?}: {wait}");
        // A shorter pause later does not shorten it.
        limiter.pause(&d, Duration::from_secs(5)).await;
        let wait = secs(limiter.reserve(&d).await);
        assert!((120..=122).contains(&wait), "{kind:?}: {wait}");
        // Other destinations go on.
        assert_eq!(
            secs(limiter.reserve(&per_minute("webhook:url:def", 60)).await),
            0,
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_each_get_a_slot_of_their_own() {
    for kind in limiters() {
        // The database, if any, lives as long as `held`.
        let held = limiter(kind).await;
        let limiter = held.limiter.clone();
        let d = per_minute("slack:C2", 2);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                let d = d.clone();
                tokio::spawn(async move { secs(limiter.reserve(&d).await) })
            })
            .collect();
        let mut waits = Vec::new();
        for task in tasks {
            waits.push(task.await.unwrap());
        }
        waits.sort();
        // The burst of two, then one slot every 30 s: none handed out twice, none skipped.
        let expected: Vec<u64> = [0, 0].into_iter().chain((1..19).map(|n| n * 30)).collect();
        assert_eq!(waits, expected, "{kind:?}");
    }
}

/// What sharing is for: a second replica's limiter (another process on the same database) finds
/// the burst the first one took gone and queues behind it.
#[tokio::test]
async fn replicas_on_one_database_share_each_destinations_budget() {
    let database = database().await;
    let a = PostgresRateLimiter::new(&database.dsn()).unwrap();
    let b = PostgresRateLimiter::new(&database.dsn()).unwrap();
    let d = per_minute("webhook:destination:ops", 2);
    assert_eq!(secs(a.reserve(&d).await), 0);
    assert_eq!(secs(a.reserve(&d).await), 0);
    assert_eq!(secs(b.reserve(&d).await), 30);
    assert_eq!(secs(a.reserve(&d).await), 60);
    // A pause one replica was told of holds the others too.
    b.pause(&d, Duration::from_secs(300)).await;
    let wait = secs(a.reserve(&d).await);
    assert!((300..=301).contains(&wait), "{wait}");
}

/// A database that cannot be reached is no reason to stop sending, nor to send without limit:
/// the replica limits on its own.
#[tokio::test]
async fn without_its_database_the_shared_limiter_limits_alone() {
    // Nothing listens there.
    let dsn = format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port());
    let limiter = PostgresRateLimiter::new(&dsn).unwrap();
    let d = per_minute("slack:C3", 2);
    let mut waits = Vec::new();
    for _ in 0..4 {
        waits.push(secs(limiter.reserve(&d).await));
    }
    assert_eq!(waits, vec![0, 0, 30, 60]);
    limiter.release(&d).await;
    assert_eq!(secs(limiter.reserve(&d).await), 60);
}

/// A destination faster than the row's millisecond clock (10,000 a second): each replica takes
/// its slots a chunk at a time, and together they still keep to the limit, with every slot at or
/// after its time, while 30,000 sends from two replicas are spread over the 2 s the limit gives
/// them rather than held to one a millisecond (20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_a_destination_faster_than_a_millisecond_to_its_limit() {
    const PER_SECOND: u32 = 10_000;
    const SENDS: usize = 30_000;
    let database = database().await;
    let d = Destination {
        key: "webhook:destination:fast".into(),
        limit: RateLimit {
            events: PER_SECOND,
            per: Duration::from_secs(1),
        },
    };
    let start = std::time::Instant::now();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let limiter = PostgresRateLimiter::new(&database.dsn()).unwrap();
        let d = d.clone();
        replicas.push(tokio::spawn(async move {
            let mut slots = Vec::with_capacity(SENDS / 2);
            for _ in 0..SENDS / 2 {
                let wait = limiter.reserve(&d).await;
                // When this send may go, on the test's clock.
                slots.push(start.elapsed() + wait);
            }
            slots
        }));
    }
    let mut slots = Vec::new();
    for replica in replicas {
        slots.extend(replica.await.unwrap());
    }
    slots.sort();
    // By any time T at most the burst (one second's worth) plus T's worth have gone, give or take
    // a millisecond of the database's rounding per reservation's start.
    for (i, at) in slots.iter().enumerate() {
        let allowed = f64::from(PER_SECOND) * (1.0 + at.as_secs_f64()) + 100.0;
        assert!(
            (i + 1) as f64 <= allowed,
            "{} sends by {at:?}, over the limit's {allowed}",
            i + 1
        );
    }
    let last = *slots.last().unwrap();
    assert!(
        last < Duration::from_secs(6),
        "the last of {SENDS} sends waits until {last:?}: the limit allows them all within about 2 s"
    );
}
