//! The behaviour every ledger store must have. Each test runs against every backend in
//! `backends()`; a new store joins by adding one line there.
//!
//! PostgreSQL: the server FLYTE_NOTIFY_TEST_POSTGRES names (by default
//! postgres://postgres@127.0.0.1:5432/postgres); each test creates a database of its own there and
//! drops it afterwards, so tests run in parallel (tests/common/postgres.rs).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::{Proxy, TestDatabase, postgres_server};
use flyte_notify::delivery::{Channel, Content, DeliveryRef, Outcome, Payload};
use flyte_notify::ledger::postgres::{PostgresLedger, PostgresOptions};
use flyte_notify::ledger::sqlite::SqliteLedger;
use flyte_notify::ledger::{
    AcceptOutcome, Acted, EventKind, ExecutionKey, Filter, FilterField, FilterOp, Grouping,
    LeasedDelivery, Ledger, LedgerError, LedgerStats, NewDelivery, NewRequest, OperatorAction,
    PageToken, PendingQuery, RecentPage, RecentQuery, Selection, Skip, State,
};
use flyte_notify::ledger::{CreatedSilence, NewSilence, SilenceState, filters};
use sqlx::{Connection, PgConnection};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

fn backends() -> Vec<Backend> {
    vec![Backend::Sqlite, Backend::Postgres]
}

/// Where one test's store lives, for as long as this lives: a temporary directory, or a database
/// of its own on the test server.
struct Store {
    backend: Backend,
    dir: tempfile::TempDir,
    database: Option<TestDatabase>,
}

impl Store {
    async fn new(backend: Backend) -> Self {
        Self {
            backend,
            dir: tempfile::tempdir().unwrap(),
            database: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(TestDatabase::create().await),
            },
        }
    }

    /// Opens the store; opening it again (a restart, or another replica) sees the same data.
    async fn open(&self) -> Arc<dyn Ledger> {
        match self.backend {
            Backend::Sqlite => Arc::new(
                SqliteLedger::open(&self.dir.path().join("ledger.sqlite"))
                    .await
                    .unwrap(),
            ),
            Backend::Postgres => Arc::new(self.replica().await),
        }
    }

    /// Another process on the same PostgreSQL database.
    async fn replica(&self) -> PostgresLedger {
        PostgresLedger::connect(&self.db().dsn(), PostgresOptions::default())
            .await
            .unwrap()
    }

    fn db(&self) -> &TestDatabase {
        self.database.as_ref().expect("a PostgreSQL store")
    }
}

/// An empty store of `backend`, and the place it lives.
async fn fresh(backend: Backend) -> (Store, Arc<dyn Ledger>) {
    let store = Store::new(backend).await;
    let ledger = store.open().await;
    (store, ledger)
}

fn delivery(id: &str, index: u32, channel: Channel) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        notification_index: index,
        phase: 6,
        payload: Payload {
            channel,
            recipients: vec!["a@example.com".into()],
            content: Content::Template(format!("template {id}")),
        },
        group: None,
    }
}

/// A request whose deliveries all belong to execution `name` of `project`.
fn request_for(
    request_id: &str,
    fingerprint: &str,
    project: &str,
    name: &str,
    deliveries: Vec<NewDelivery>,
) -> NewRequest {
    NewRequest {
        request_id: request_id.into(),
        fingerprint: fingerprint.into(),
        unmatched: 1,
        execution_key: ExecutionKey {
            project: project.into(),
            domain: "development".into(),
            name: name.into(),
            org: String::new(),
        },
        execution: format!("context of {request_id}").into_bytes(),
        deliveries,
        due_in: Duration::ZERO,
        disarms_deadlines: false,
    }
}

fn request(request_id: &str, fingerprint: &str, deliveries: Vec<NewDelivery>) -> NewRequest {
    request_for(
        request_id,
        fingerprint,
        "p",
        &format!("exec-{request_id}"),
        deliveries,
    )
}

async fn pending_ids(ledger: &dyn Ledger, filters: Vec<Filter>) -> Vec<String> {
    ledger
        .list_pending(PendingQuery {
            limit: 1000,
            after: None,
            filters,
        })
        .await
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| d.id)
        .collect()
}

/// The ids ListPending lists from `after` on, `limit` a page, following each page's token to the
/// last page.
async fn follow_pages(
    ledger: &dyn Ledger,
    mut after: Option<PageToken>,
    limit: u32,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let page = ledger
            .list_pending(PendingQuery {
                limit,
                after,
                filters: vec![],
            })
            .await
            .unwrap();
        seen.extend(page.deliveries.into_iter().map(|d| d.id));
        match page.next {
            Some(token) => after = Some(token),
            None => return seen,
        }
    }
}

fn ids(leased: &[LeasedDelivery]) -> Vec<&str> {
    leased.iter().map(|d| d.delivery.id.as_str()).collect()
}

fn refs(leased: &[LeasedDelivery]) -> Vec<DeliveryRef> {
    leased.iter().map(|d| d.delivery.clone()).collect()
}

const LEASE: Duration = Duration::from_secs(60);
/// Short enough to wait out in a test.
const SHORT_LEASE: Duration = Duration::from_millis(300);

#[tokio::test]
async fn accept_is_idempotent_per_request_id_and_refuses_other_content() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        let new = || {
            request(
                "r1",
                "fp1",
                vec![
                    delivery("d1", 0, Channel::Email),
                    delivery("d2", 2, Channel::Slack),
                ],
            )
        };
        assert_eq!(
            ledger.accept(new()).await.unwrap(),
            AcceptOutcome::Accepted {
                delivery_ids: vec!["d1".into(), "d2".into()]
            }
        );
        // A retry carries new delivery ids (the caller cannot know ours): the old ones come back.
        let mut retry = new();
        retry.deliveries[0].id = "other1".into();
        retry.deliveries[1].id = "other2".into();
        assert_eq!(
            ledger.accept(retry).await.unwrap(),
            AcceptOutcome::Duplicate {
                delivery_ids: vec!["d1".into(), "d2".into()],
                unmatched: 1
            },
            "{backend:?}"
        );
        let conflicting = request("r1", "fp2", vec![]);
        assert_eq!(
            ledger.accept(conflicting).await.unwrap(),
            AcceptOutcome::Conflict
        );
        assert_eq!(pending_ids(&*ledger, vec![]).await, vec!["d1", "d2"]);
        ledger.close().await;
    }
}

#[tokio::test]
async fn concurrent_accepts_are_all_recorded_and_survive_reopening() {
    for backend in backends() {
        let (store, ledger) = fresh(backend).await;
        let mut tasks = Vec::new();
        for i in 0..300 {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                ledger
                    .accept(request(
                        &format!("r{i}"),
                        "fp",
                        vec![delivery(&format!("d{i:03}"), 0, Channel::Email)],
                    ))
                    .await
                    .unwrap()
            }));
        }
        // The same request_id twice inside one batch is still one request.
        let a = ledger.clone();
        let b = ledger.clone();
        let (x, y) = tokio::join!(
            a.accept(request(
                "same",
                "fp",
                vec![delivery("s1", 0, Channel::Email)]
            )),
            b.accept(request(
                "same",
                "fp",
                vec![delivery("s2", 0, Channel::Email)]
            )),
        );
        let outcomes = [x.unwrap(), y.unwrap()];
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, AcceptOutcome::Accepted { .. }))
        );
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, AcceptOutcome::Duplicate { .. }))
        );
        for t in tasks {
            assert!(matches!(t.await.unwrap(), AcceptOutcome::Accepted { .. }));
        }
        ledger.close().await;
        assert!(ledger.accept(request("late", "fp", vec![])).await.is_err());

        let reopened = store.open().await;
        assert_eq!(
            pending_ids(&*reopened, vec![]).await.len(),
            301,
            "{backend:?}"
        );
        reopened.close().await;
    }
}

#[tokio::test]
async fn leases_hide_a_delivery_until_they_run_out() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger
            .accept(request(
                "r",
                "fp",
                vec![
                    delivery("d1", 0, Channel::Email),
                    delivery("d2", 1, Channel::Email),
                ],
            ))
            .await
            .unwrap();
        let leased = ledger.lease_due(1, LEASE).await.unwrap();
        assert_eq!(ids(&leased), vec!["d1"]);
        // What the worker needs comes with the lease: the payload and the request's context.
        let (payload, context) = leased[0].content.as_ref().unwrap();
        assert_eq!(payload.content, Content::Template("template d1".into()));
        assert_eq!(payload.channel, Channel::Email);
        assert_eq!(&context[..], b"context of r");
        assert_eq!(leased[0].execution.name, "exec-r");
        assert_eq!(leased[0].delivery.request_id, "r");
        let leased = ledger.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&leased), vec!["d2"]);
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        // Leased deliveries are still pending to the outside world.
        assert_eq!(pending_ids(&*ledger, vec![]).await.len(), 2);
        ledger.close().await;
    }
}

#[tokio::test]
async fn a_lease_is_not_handed_to_another_caller_until_it_expires_and_each_lease_counts() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger
            .accept(request("r", "fp", vec![delivery("d", 0, Channel::Email)]))
            .await
            .unwrap();
        let first = ledger.lease_due(10, SHORT_LEASE).await.unwrap();
        assert_eq!(ids(&first), vec!["d"]);
        assert_eq!(first[0].delivery.attempt, 1);
        // Another caller (a second worker, a second replica) asks while the lease is live.
        let other = ledger.clone();
        assert!(other.lease_due(10, SHORT_LEASE).await.unwrap().is_empty());
        // The first caller died: its lease runs out and the delivery is handed out again, as
        // the next attempt, under a new token.
        tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
        let second = other.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&second), vec!["d"], "{backend:?}");
        assert_eq!(second[0].delivery.attempt, 2);
        assert_ne!(second[0].delivery.lease, first[0].delivery.lease);
        // Nobody gets it while the second lease is live.
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        ledger.close().await;
    }
}

#[tokio::test]
async fn a_record_with_a_stale_lease_token_is_refused_and_changes_nothing() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger
            .accept(request("r", "fp", vec![delivery("d", 0, Channel::Email)]))
            .await
            .unwrap();
        let lost = refs(&ledger.lease_due(10, SHORT_LEASE).await.unwrap());
        tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
        let current = refs(&ledger.lease_due(10, LEASE).await.unwrap());
        assert_eq!(current.len(), 1);

        // The worker that lost its lease reports late: refused, whatever it says.
        let late = ledger
            .record(vec![(lost[0].clone(), Outcome::Delivered)])
            .await
            .unwrap();
        assert_eq!(late.stale, vec!["d".to_string()], "{backend:?}");
        let page = ledger.list_pending(PendingQuery::default()).await.unwrap();
        assert_eq!(page.deliveries.len(), 1, "a stale Delivered was applied");
        assert_eq!(
            (page.deliveries[0].state, page.deliveries[0].attempts),
            (State::Pending, 0)
        );

        // The current holder's outcome counts.
        let now = ledger
            .record(vec![(
                current[0].clone(),
                Outcome::Dead {
                    error: "550".into(),
                },
            )])
            .await
            .unwrap();
        assert!(now.stale.is_empty());
        // Once recorded, the lease is over: the same token is stale too.
        let again = ledger
            .record(vec![(current[0].clone(), Outcome::Delivered)])
            .await
            .unwrap();
        assert_eq!(again.stale, vec!["d".to_string()]);
        let page = ledger.list_pending(PendingQuery::default()).await.unwrap();
        assert_eq!(page.deliveries[0].state, State::Dead);
        assert_eq!(page.deliveries[0].last_error, "550");
        ledger.close().await;
    }
}

#[tokio::test]
async fn a_released_lease_makes_the_delivery_due_again_after_the_delay() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger
            .accept(request("r", "fp", vec![delivery("d", 0, Channel::Email)]))
            .await
            .unwrap();
        let leased = refs(&ledger.lease_due(10, LEASE).await.unwrap());
        ledger
            .release(&leased[0], Duration::from_millis(300))
            .await
            .unwrap();
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        let until = ledger.next_due().await.unwrap().expect("due later");
        assert!(until <= Duration::from_millis(300), "{until:?}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let again = ledger.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&again), vec!["d"], "{backend:?}");
        // A release is not a failed attempt.
        let page = ledger.list_pending(PendingQuery::default()).await.unwrap();
        assert_eq!(page.deliveries[0].attempts, 0);
        ledger.close().await;
    }
}

/// A stuck-run deadline: its alert (a RUNNING delivery) waits in the ledger until due; a terminal
/// phase of the same execution disarms it, recorded and in its history, and leaves another
/// execution's alert, an alert already tried, and the terminal request's own deliveries alone.
#[tokio::test]
async fn a_deadline_waits_until_due_and_a_terminal_phase_of_its_execution_disarms_it() {
    const RUNNING: i32 = 2;
    let alert = |id: &str| NewDelivery {
        phase: RUNNING,
        ..delivery(id, 0, Channel::Email)
    };
    for backend in backends() {
        let (store, ledger) = fresh(backend).await;
        for (request_id, name, after) in [
            ("arm-a", "exec-a", Duration::from_millis(400)),
            ("arm-b", "exec-b", Duration::from_millis(400)),
            ("arm-c", "exec-c", Duration::from_secs(3600)),
        ] {
            let mut r = request_for(request_id, "fp", "p", name, vec![alert(request_id)]);
            r.due_in = after;
            assert!(matches!(
                ledger.accept(r).await.unwrap(),
                AcceptOutcome::Accepted { .. }
            ));
        }
        // Armed: listed, but not due.
        let mut listed = pending_ids(&*ledger, Vec::new()).await;
        listed.sort();
        assert_eq!(listed, vec!["arm-a", "arm-b", "arm-c"], "{backend:?}");
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        let until = ledger.next_due().await.unwrap().expect("due later");
        assert!(until <= Duration::from_millis(400), "{until:?}");

        // exec-c ends in time: its alert is disarmed; the terminal request's own delivery is
        // recorded as usual.
        let mut ended = request_for(
            "end-c",
            "fp",
            "p",
            "exec-c",
            vec![delivery("failed-c", 0, Channel::Email)],
        );
        ended.disarms_deadlines = true;
        ledger.accept(ended).await.unwrap();
        let (d, history) = ledger.get("arm-c").await.unwrap().unwrap();
        assert_eq!(d.state, State::Disarmed, "{backend:?}");
        assert_eq!(
            history.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![EventKind::Disarmed]
        );
        assert!(history[0].detail.contains("end-c"), "{:?}", history[0]);

        // exec-a and exec-b come due; exec-b's alert is tried (and fails) before exec-b ends,
        // so its end disarms nothing: the alert is on its way.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let due = ledger.lease_due(10, LEASE).await.unwrap();
        let mut due_ids: Vec<&str> = ids(&due);
        due_ids.sort();
        assert_eq!(due_ids, vec!["arm-a", "arm-b", "failed-c"], "{backend:?}");
        let b = due.iter().find(|l| l.delivery.id == "arm-b").unwrap();
        ledger
            .record(vec![(
                b.delivery.clone(),
                Outcome::Retry {
                    delay: Duration::ZERO,
                    error: "refused".into(),
                },
            )])
            .await
            .unwrap();
        let mut ended = request_for("end-b", "fp", "p", "exec-b", Vec::new());
        ended.disarms_deadlines = true;
        ledger.accept(ended).await.unwrap();
        let (d, _) = ledger.get("arm-b").await.unwrap().unwrap();
        assert_eq!(d.state, State::Retrying, "{backend:?}");
        // exec-a's alert is leased (being sent): a late end leaves it to go.
        let mut ended = request_for("end-a", "fp", "p", "exec-a", Vec::new());
        ended.disarms_deadlines = true;
        ledger.accept(ended).await.unwrap();
        let (d, _) = ledger.get("arm-a").await.unwrap().unwrap();
        assert_eq!(d.state, State::Pending, "{backend:?}");
        ledger.close().await;

        // Disarmed stays disarmed, and out of ListPending.
        let ledger = store.open().await;
        assert_eq!(
            ledger.get("arm-c").await.unwrap().unwrap().0.state,
            State::Disarmed
        );
        assert!(
            !pending_ids(&*ledger, Vec::new())
                .await
                .contains(&"arm-c".to_string())
        );
        ledger.close().await;
    }
}

/// Expectations: watching starts once (a second Watch keeps the first time), a success is
/// recorded, an alerted miss recovers with the next success, and a transition is made by one
/// caller only, as two replicas racing would find.
#[tokio::test]
async fn expectations_are_watched_once_and_each_transition_is_made_once() {
    use flyte_notify::ledger::{ExpectationState as S, ExpectationWrite as W};
    for backend in backends() {
        let (store, ledger) = fresh(backend).await;
        let lp = "p/d/daily".to_string();
        assert!(
            ledger
                .write_expectation(W::Watch(vec![lp.clone()]))
                .await
                .unwrap()
        );
        let first = ledger.expectations().await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].state, first[0].last_success_at), (S::Ok, None));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !ledger
                .write_expectation(W::Watch(vec![lp.clone()]))
                .await
                .unwrap()
        );
        assert_eq!(
            ledger.expectations().await.unwrap()[0].watched_since,
            first[0].watched_since,
            "{backend:?}"
        );
        // A success of a launch plan nobody watches changes nothing.
        assert!(
            !ledger
                .write_expectation(W::Success("p/d/other".into()))
                .await
                .unwrap()
        );

        let miss = |from, to| W::Transition {
            launch_plan: lp.clone(),
            from,
            to,
            missed_deadline: Some(1234),
        };
        assert!(
            ledger
                .write_expectation(miss(S::Ok, S::Missed))
                .await
                .unwrap()
        );
        // The second replica to try finds it done.
        assert!(
            !ledger
                .write_expectation(miss(S::Ok, S::Missed))
                .await
                .unwrap()
        );
        assert!(
            ledger
                .write_expectation(W::Success(lp.clone()))
                .await
                .unwrap()
        );
        let row = &ledger.expectations().await.unwrap()[0];
        assert_eq!(row.state, S::Recovering, "{backend:?}");
        assert_eq!(row.missed_deadline, Some(1234));
        assert!(row.last_success_at.is_some());
        let recover = W::Transition {
            launch_plan: lp.clone(),
            from: S::Recovering,
            to: S::Ok,
            missed_deadline: None,
        };
        assert!(ledger.write_expectation(recover.clone()).await.unwrap());
        assert!(!ledger.write_expectation(recover).await.unwrap());
        ledger.close().await;
        // Kept.
        let ledger = store.open().await;
        let row = &ledger.expectations().await.unwrap()[0];
        assert_eq!((row.state, row.missed_deadline), (S::Ok, Some(1234)));
        ledger.close().await;
    }
}

fn member(id: &str, key: &str, wait: Duration, max_members: u32) -> NewDelivery {
    NewDelivery {
        group: Some(Grouping {
            key: key.into(),
            wait,
            interval: Duration::from_secs(3600),
            max_members,
        }),
        ..delivery(id, 0, Channel::Email)
    }
}

/// Members of one group join one digest (until it holds max_members), listed as grouped with
/// its id; the digest is leased when due with its members, and its outcome is theirs.
#[tokio::test]
async fn group_members_wait_in_one_digest_and_go_out_with_it() {
    let wait = Duration::from_millis(400);
    for backend in backends() {
        let (store, ledger) = fresh(backend).await;
        for (i, key) in ["k", "k", "k", "other"].iter().enumerate() {
            let id = format!("m{i}");
            let accepted = ledger
                .accept(request(&id, "fp", vec![member(&id, key, wait, 2)]))
                .await
                .unwrap();
            assert_eq!(
                accepted,
                AcceptOutcome::Accepted {
                    delivery_ids: vec![id.clone()]
                }
            );
        }
        // A retried request answers with its member, never its digest.
        assert!(matches!(
            ledger.accept(request("m0", "fp", vec![member("m0", "k", wait, 2)])).await.unwrap(),
            AcceptOutcome::Duplicate { delivery_ids, .. } if delivery_ids == vec!["m0".to_string()]
        ));
        let listed = ledger
            .list_pending(PendingQuery {
                limit: 100,
                after: None,
                filters: Vec::new(),
            })
            .await
            .unwrap()
            .deliveries;
        let digest_of = |id: &str| {
            let d = listed.iter().find(|d| d.id == id).unwrap();
            assert_eq!(d.state, State::Grouped, "{backend:?} {d:?}");
            d.digest_id.clone().unwrap()
        };
        // m0 and m1 fill the first digest (max 2); m2 opens the next; "other" is its own group.
        let (first, second, other) = (digest_of("m0"), digest_of("m2"), digest_of("m3"));
        assert_eq!(digest_of("m1"), first);
        assert_ne!(first, second);
        assert_ne!(second, other);
        assert_eq!(
            listed.len(),
            7,
            "four members and three digests: {listed:?}"
        );
        // Not due before groupWait; members are never leased on their own.
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        ledger.close().await;

        let ledger = store.open().await;
        tokio::time::sleep(wait + Duration::from_millis(200)).await;
        let leased = ledger.lease_due(10, LEASE).await.unwrap();
        let mut due: Vec<&str> = ids(&leased);
        due.sort();
        let mut expected = vec![first.as_str(), other.as_str()];
        expected.sort();
        // The second digest opened after the first: it waits groupInterval past it.
        assert_eq!(due, expected, "{backend:?}");
        let digest = leased.iter().find(|l| l.delivery.id == first).unwrap();
        let members: Vec<&str> = digest.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(members, vec!["m0", "m1"]);
        assert!(matches!(
            &digest.content,
            Ok((
                Payload {
                    content: Content::Digest,
                    ..
                },
                _
            ))
        ));
        // A member arriving after the lease does not join the digest being sent.
        ledger
            .accept(request("m4", "fp", vec![member("m4", "other", wait, 2)]))
            .await
            .unwrap();
        let (m4, _) = ledger.get("m4").await.unwrap().unwrap();
        assert_ne!(m4.digest_id.as_deref(), Some(other.as_str()));

        let other_digest = leased.iter().find(|l| l.delivery.id == other).unwrap();
        ledger
            .record(vec![
                (digest.delivery.clone(), Outcome::Delivered),
                (
                    other_digest.delivery.clone(),
                    Outcome::Dead {
                        error: "refused".into(),
                    },
                ),
            ])
            .await
            .unwrap();
        for id in ["m0", "m1"] {
            let (d, history) = ledger.get(id).await.unwrap().unwrap();
            assert_eq!(d.state, State::Delivered, "{backend:?}");
            assert_eq!(d.digest_id.as_deref(), Some(first.as_str()));
            assert_eq!(history.last().unwrap().kind, EventKind::Delivered);
            assert_eq!(
                history.last().unwrap().detail,
                format!("sent in digest {first}")
            );
        }
        // A dead digest keeps its members grouped; discarding it discards them.
        assert_eq!(
            ledger.get("m3").await.unwrap().unwrap().0.state,
            State::Grouped
        );
        ledger
            .act(
                OperatorAction::Discard,
                Selection::Ids(vec![other.clone()]),
                "gone".into(),
            )
            .await
            .unwrap();
        let (d, history) = ledger.get("m3").await.unwrap().unwrap();
        assert_eq!(d.state, State::Discarded, "{backend:?}");
        assert_eq!(
            history.last().unwrap().detail,
            format!("with digest {other}")
        );
        ledger.close().await;
    }
}

/// A request with three email deliveries, "ok", "again" and "dead", named for what
/// `ok_again_dead_outcomes` makes of them.
fn ok_again_dead(request_id: &str) -> NewRequest {
    request(
        request_id,
        "fp",
        vec![
            delivery("ok", 0, Channel::Email),
            delivery("again", 1, Channel::Email),
            delivery("dead", 2, Channel::Email),
        ],
    )
}

/// Delivered, a retry after `retry_in`, and a permanent failure, for the leases of
/// `ok_again_dead`'s deliveries.
fn ok_again_dead_outcomes(
    leased: &[DeliveryRef],
    retry_in: Duration,
) -> Vec<(DeliveryRef, Outcome)> {
    let by = |id: &str| leased.iter().find(|d| d.id == id).unwrap().clone();
    vec![
        (by("ok"), Outcome::Delivered),
        (
            by("again"),
            Outcome::Retry {
                delay: retry_in,
                error: "attempt 1: refused".into(),
            },
        ),
        (
            by("dead"),
            Outcome::Dead {
                error: "permanent failure on attempt 1: 550".into(),
            },
        ),
    ]
}

#[tokio::test]
async fn outcomes_move_deliveries_between_states() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger.accept(ok_again_dead("r")).await.unwrap();
        let leased = refs(&ledger.lease_due(10, LEASE).await.unwrap());
        assert_eq!(leased.len(), 3);
        let recorded = ledger
            .record(ok_again_dead_outcomes(&leased, Duration::from_millis(500)))
            .await
            .unwrap();
        assert!(recorded.stale.is_empty());
        let page = ledger
            .list_pending(PendingQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let by_id = |id: &str| page.deliveries.iter().find(|d| d.id == id).cloned();
        assert!(by_id("ok").is_none(), "delivered is not pending");
        let again = by_id("again").unwrap();
        assert_eq!((again.state, again.attempts), (State::Retrying, 1));
        let at = again.next_attempt_at.expect("a retry has a time");
        // Counted from when the outcome was recorded, which is after the delivery was created.
        assert!(at >= again.created_at + 500, "{at} vs {}", again.created_at);
        assert_eq!(again.last_error, "attempt 1: refused");
        let dead = by_id("dead").unwrap();
        assert_eq!((dead.state, dead.attempts), (State::Dead, 1));
        assert!(dead.last_error.contains("550"));

        // The retry is due after its delay, by the ledger's clock, and not before.
        let until = ledger
            .next_due()
            .await
            .unwrap()
            .expect("a retry is waiting");
        assert!(until <= Duration::from_millis(500), "{until:?}");
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(600)).await;
        let due = ledger.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&due), vec!["again"]);
        assert_eq!(due[0].delivery.attempt, 2);
        ledger.close().await;
    }
}

#[tokio::test]
async fn activity_counts_deliveries_and_failed_attempts_per_bucket_from_the_history() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        let before = now_millis();
        ledger.accept(ok_again_dead("r")).await.unwrap();
        let leased = refs(&ledger.lease_due(10, LEASE).await.unwrap());
        ledger
            .record(ok_again_dead_outcomes(&leased, Duration::ZERO))
            .await
            .unwrap();
        // The retry's second attempt fails too, later: a second failure in the same hour.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let again = ledger.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&again), vec!["again"], "{backend:?}");
        ledger
            .record(vec![(
                again[0].delivery.clone(),
                Outcome::Retry {
                    delay: Duration::from_secs(60),
                    error: "attempt 2: refused".into(),
                },
            )])
            .await
            .unwrap();
        let hour = Duration::from_secs(3600);
        let since = before - 1000;
        let buckets = ledger.activity(since, hour).await.unwrap();
        assert_eq!(
            buckets,
            vec![flyte_notify::ledger::ActivityBucket {
                start: since,
                delivered: 1,
                failed: 3,
            }],
            "{backend:?}: one delivered, a retry twice and a dead one"
        );
        // Buckets start at `since` plus whole widths: an hour-wide bucket that began 59 minutes
        // before `since` still holds the events, and nothing is counted before `since`.
        let earlier = since - 59 * 60 * 1000;
        let shifted = ledger.activity(earlier, hour).await.unwrap();
        assert_eq!(shifted.len(), 1, "{backend:?}");
        assert_eq!(shifted[0].start, earlier, "{backend:?}");
        let later = ledger.activity(now_millis() + 60_000, hour).await.unwrap();
        assert!(later.is_empty(), "{backend:?}: {later:?}");
        // Operator actions are not outcomes: a redrive adds nothing.
        ledger
            .act(
                OperatorAction::Redrive,
                Selection::Ids(vec!["dead".into()]),
                "fixed".into(),
            )
            .await
            .unwrap();
        assert_eq!(ledger.activity(since, hour).await.unwrap(), buckets);

        assert_eq!(
            ledger.request_context("r").await.unwrap().as_deref(),
            Some(&b"context of r"[..]),
            "{backend:?}"
        );
        assert_eq!(ledger.request_context("nope").await.unwrap(), None);
        ledger.close().await;
    }
}

#[tokio::test]
async fn stats_count_the_open_deliveries_by_state_and_age_the_oldest_pending_one() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        assert_eq!(ledger.stats().await.unwrap(), LedgerStats::default());
        ledger.accept(ok_again_dead("first")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let leased = ledger.lease_due(10, LEASE).await.unwrap();
        // Its age by the ledger's clock, carried onto this process's clock.
        for d in &leased {
            let age = d.accepted_at.elapsed();
            assert!(age >= Duration::from_millis(250), "{age:?}");
            assert!(age < Duration::from_secs(30), "{age:?}");
        }
        ledger
            .record(ok_again_dead_outcomes(
                &refs(&leased),
                Duration::from_secs(3600),
            ))
            .await
            .unwrap();
        ledger
            .accept(request(
                "second",
                "fp2",
                vec![delivery("new", 0, Channel::Webhook)],
            ))
            .await
            .unwrap();
        let stats = ledger.stats().await.unwrap();
        assert_eq!(
            (stats.pending, stats.retrying, stats.dead),
            (1, 1, 1),
            "{stats:?}"
        );
        // The oldest pending one is "again", accepted before the 300 ms sleep, not "new".
        let age = stats.oldest_pending_age.expect("two are pending");
        assert!(age >= Duration::from_millis(250), "{age:?}");

        // Delivered and discarded deliveries leave the figures.
        let new = ledger.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&new), vec!["new"]);
        ledger
            .record(vec![(refs(&new)[0].clone(), Outcome::Delivered)])
            .await
            .unwrap();
        ledger
            .act(
                OperatorAction::Discard,
                Selection::Ids(vec!["dead".into()]),
                String::new(),
            )
            .await
            .unwrap();
        let stats = ledger.stats().await.unwrap();
        assert_eq!((stats.pending, stats.retrying, stats.dead), (0, 1, 0));
        ledger.close().await;
    }
}

#[tokio::test]
async fn pages_are_oldest_first_and_stable_while_rows_arrive_and_leave() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        for i in 0..10 {
            ledger
                .accept(request(
                    &format!("r{i}"),
                    "fp",
                    vec![delivery(&format!("d{i}"), 0, Channel::Email)],
                ))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        let mut round = 0;
        loop {
            let page = ledger
                .list_pending(PendingQuery {
                    limit: 4,
                    after,
                    filters: vec![],
                })
                .await
                .unwrap();
            seen.extend(page.deliveries.iter().map(|d| d.id.clone()));
            // Between pages: a new row arrives and an already-listed one is delivered.
            round += 1;
            ledger
                .accept(request(
                    &format!("new{round}"),
                    "fp",
                    vec![delivery(&format!("n{round}"), 0, Channel::Email)],
                ))
                .await
                .unwrap();
            let leased = ledger.lease_due(1, LEASE).await.unwrap();
            ledger
                .record(vec![(leased[0].delivery.clone(), Outcome::Delivered)])
                .await
                .unwrap();
            match page.next {
                Some(token) => after = Some(token),
                None => break,
            }
        }
        // Every original row exactly once, in order; new rows follow at the end.
        let originals: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        assert_eq!(&seen[..10], &originals[..], "{backend:?}: {seen:?}");
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len());
        ledger.close().await;
    }
}

#[tokio::test]
async fn filters_select_by_execution_channel_and_state() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger
            .accept(request_for(
                "r1",
                "fp",
                "flytesnacks",
                "exec-a",
                vec![
                    delivery("a", 0, Channel::Email),
                    delivery("b", 1, Channel::Slack),
                ],
            ))
            .await
            .unwrap();
        ledger
            .accept(request_for(
                "r2",
                "fp",
                "other_100%",
                "exec-c",
                vec![delivery("c", 0, Channel::Pagerduty)],
            ))
            .await
            .unwrap();
        let leased = ledger.lease_due(10, LEASE).await.unwrap();
        let b = leased.iter().find(|d| d.delivery.id == "b").unwrap();
        ledger
            .record(vec![(
                b.delivery.clone(),
                Outcome::Dead { error: "x".into() },
            )])
            .await
            .unwrap();
        let f = |field, op, values: &[&str]| Filter {
            field,
            op,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![f(FilterField::Project, FilterOp::Eq, &["flytesnacks"])]
            )
            .await,
            vec!["a", "b"]
        );
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![f(FilterField::Project, FilterOp::Ne, &["flytesnacks"])]
            )
            .await,
            vec!["c"]
        );
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![f(
                    FilterField::Channel,
                    FilterOp::ValueIn,
                    &["slack", "pagerduty"]
                )]
            )
            .await,
            vec!["b", "c"]
        );
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![f(FilterField::State, FilterOp::Eq, &["dead"])]
            )
            .await,
            vec!["b"]
        );
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![
                    f(FilterField::State, FilterOp::Eq, &["pending"]),
                    f(FilterField::Project, FilterOp::Eq, &["flytesnacks"])
                ]
            )
            .await,
            vec!["a"]
        );
        // contains takes its value literally: % is not a wildcard.
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![f(FilterField::Project, FilterOp::Contains, &["100%"])]
            )
            .await,
            vec!["c"]
        );
        assert!(
            pending_ids(
                &*ledger,
                vec![f(FilterField::Project, FilterOp::Contains, &["%snacks"])]
            )
            .await
            .is_empty()
        );
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![f(FilterField::Name, FilterOp::Eq, &["exec-c"])]
            )
            .await,
            vec!["c"]
        );
        // A caller's permitted projects (OR of project/domain pairs, `*` for any part), ANDed
        // with the request's own filters; no pairs at all is nothing.
        let scope = |pairs: &[(&str, &str)]| {
            flyte_notify::ledger::filters::in_scope(
                pairs
                    .iter()
                    .map(|(p, d)| (p.to_string(), d.to_string()))
                    .collect(),
            )
        };
        assert_eq!(
            pending_ids(&*ledger, vec![scope(&[("flytesnacks", "*")])]).await,
            vec!["a", "b"]
        );
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![scope(&[
                    ("flytesnacks", "production"),
                    ("other_100%", "development")
                ])]
            )
            .await,
            vec!["c"]
        );
        assert_eq!(
            pending_ids(&*ledger, vec![scope(&[("*", "development")])]).await,
            vec!["a", "b", "c"]
        );
        assert!(pending_ids(&*ledger, vec![scope(&[])]).await.is_empty());
        assert_eq!(
            pending_ids(
                &*ledger,
                vec![
                    f(FilterField::State, FilterOp::Eq, &["dead"]),
                    scope(&[("*", "development")])
                ]
            )
            .await,
            vec!["b"]
        );
        ledger.close().await;
    }
}

/// The single-process store owns every lease in it: reopening it (a restart after a crash) ends
/// them all, so nothing waits out a dead process's lease. A shared store (PostgreSQL) must not:
/// its other replicas' leases are alive (`a_replica_starting_leaves_the_others_leases_alone`), and
/// a dead replica's run out by themselves (`a_late_record_from_a_replica_whose_lease_ran_out_...`).
#[tokio::test]
async fn reopening_the_single_process_store_ends_the_leases_a_dead_process_left() {
    let backend = Backend::Sqlite;
    let (store, ledger) = fresh(backend).await;
    ledger
        .accept(request(
            "r",
            "fp",
            vec![
                delivery("d1", 0, Channel::Email),
                delivery("d2", 1, Channel::Email),
            ],
        ))
        .await
        .unwrap();
    let lost = refs(&ledger.lease_due(10, LEASE).await.unwrap());
    assert_eq!(lost.len(), 2);
    ledger.close().await;
    let reopened = store.open().await;
    let leased = reopened.lease_due(10, LEASE).await.unwrap();
    assert_eq!(ids(&leased), vec!["d1", "d2"]);
    assert!(leased.iter().all(|d| d.delivery.attempt == 2));
    // The dead process's outcome, should it ever arrive, is refused.
    let late = reopened
        .record(vec![(lost[0].clone(), Outcome::Delivered)])
        .await
        .unwrap();
    assert_eq!(late.stale, vec!["d1".to_string()]);
    reopened.close().await;
}

/// The single-process store refuses a second opener while the first holds it. Not PostgreSQL:
/// several replicas on one database is what that store is for (the tests at the end).
#[tokio::test]
async fn the_single_process_store_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let first = SqliteLedger::open(&path).await.unwrap();
    let Err(second) = SqliteLedger::open(&path).await else {
        panic!("a second open of a held store succeeded");
    };
    assert!(
        second
            .to_string()
            .contains("another flyte-notify is running on the data dir"),
        "{second}"
    );
    first.close().await;
    SqliteLedger::open(&path).await.unwrap().close().await;
}

#[tokio::test]
async fn one_failing_call_in_a_shared_commit_fails_only_its_own_caller() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger
            .accept(request(
                "first",
                "fp",
                vec![delivery("taken", 0, Channel::Email)],
            ))
            .await
            .unwrap();
        // Many calls at once share commits; one of them reuses a delivery id, which the store
        // refuses. Only that one may fail.
        let mut tasks = Vec::new();
        for i in 0..50 {
            let ledger = ledger.clone();
            let id = if i == 25 {
                "taken".to_string()
            } else {
                format!("d{i}")
            };
            tasks.push(tokio::spawn(async move {
                ledger
                    .accept(request(
                        &format!("r{i}"),
                        "fp",
                        vec![delivery(&id, 0, Channel::Email)],
                    ))
                    .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let result = t.await.unwrap();
            if i == 25 {
                assert!(result.is_err(), "{backend:?}: the colliding call succeeded");
            } else {
                assert!(
                    matches!(result, Ok(AcceptOutcome::Accepted { .. })),
                    "{backend:?}: call {i}: {result:?}"
                );
            }
        }
        assert_eq!(pending_ids(&*ledger, vec![]).await.len(), 50);
        assert_eq!(
            ledger.trouble(),
            None,
            "one bad call is not the store's trouble"
        );
        ledger.close().await;
    }
}

/// Leases everything due and records each id's outcome: `dead:` ids die, `retry:` ids fail
/// retryably, the rest are delivered.
async fn settle(ledger: &dyn Ledger) {
    let leased = refs(&ledger.lease_due(100, LEASE).await.unwrap());
    let outcomes = leased
        .into_iter()
        .map(|d| {
            let outcome = if d.id.starts_with("dead") {
                Outcome::Dead {
                    error: format!("550 no such user ({})", d.id),
                }
            } else if d.id.starts_with("retry") {
                Outcome::Retry {
                    delay: Duration::from_secs(3600),
                    error: "421 try later".into(),
                }
            } else {
                Outcome::Delivered
            };
            (d, outcome)
        })
        .collect();
    ledger.record(outcomes).await.unwrap();
}

fn project_is(project: &str) -> Vec<Filter> {
    vec![Filter {
        field: FilterField::Project,
        op: FilterOp::Eq,
        values: vec![project.into()],
    }]
}

#[tokio::test]
async fn redrive_gives_dead_deliveries_a_fresh_budget_and_leaves_the_rest_alone() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        ledger
            .accept(request_for(
                "r1",
                "fp",
                "alpha",
                "e1",
                vec![
                    delivery("dead-a", 0, Channel::Email),
                    delivery("retry-a", 1, Channel::Email),
                    delivery("sent-a", 2, Channel::Email),
                ],
            ))
            .await
            .unwrap();
        ledger
            .accept(request_for(
                "r2",
                "fp",
                "beta",
                "e2",
                vec![delivery("dead-b", 0, Channel::Email)],
            ))
            .await
            .unwrap();
        settle(&*ledger).await;

        let acted = ledger
            .act(
                OperatorAction::Redrive,
                Selection::Ids(vec![
                    "dead-a".into(),
                    "retry-a".into(),
                    "sent-a".into(),
                    "nope".into(),
                    "dead-a".into(),
                ]),
                "relay fixed".into(),
            )
            .await
            .unwrap();
        assert_eq!(
            acted,
            Acted {
                changed: vec!["dead-a".into()],
                skipped: vec![
                    ("retry-a".into(), Skip::NotDead(State::Retrying)),
                    ("sent-a".into(), Skip::NotDead(State::Delivered)),
                    ("nope".into(), Skip::NotFound),
                ],
                more: false,
            }
        );
        // Pending, due now, attempts from zero; the lease is attempt 1 again.
        let (d, history) = ledger.get("dead-a").await.unwrap().unwrap();
        assert_eq!(
            (d.state, d.attempts, d.last_error.as_str()),
            (State::Pending, 0, "")
        );
        let kinds: Vec<(EventKind, u32, &str)> = history
            .iter()
            .map(|e| (e.kind, e.attempts, e.detail.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (EventKind::Dead, 1, "550 no such user (dead-a)"),
                (EventKind::Redriven, 1, "relay fixed"),
            ]
        );
        let due = ledger.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&due), vec!["dead-a"]);
        assert_eq!(due[0].delivery.attempt, 1);
        ledger
            .record(vec![(refs(&due)[0].clone(), Outcome::Delivered)])
            .await
            .unwrap();
        let (d, history) = ledger.get("dead-a").await.unwrap().unwrap();
        assert_eq!(d.state, State::Delivered);
        assert_eq!(history.last().unwrap().kind, EventKind::Delivered);

        // A caller's scope in the filter keeps the action within it: beta's dead one stays.
        let acted = ledger
            .act(
                OperatorAction::Redrive,
                Selection::Filter {
                    filters: vec![flyte_notify::ledger::filters::in_scope(vec![(
                        "alpha".into(),
                        "*".into(),
                    )])],
                    limit: 10,
                },
                String::new(),
            )
            .await
            .unwrap();
        assert!(acted.changed.is_empty(), "{acted:?}");
        // A filter selects only dead deliveries, and only those it matches.
        let acted = ledger
            .act(
                OperatorAction::Redrive,
                Selection::Filter {
                    filters: project_is("beta"),
                    limit: 10,
                },
                String::new(),
            )
            .await
            .unwrap();
        assert_eq!(acted.changed, vec!["dead-b".to_string()]);
        assert!(acted.skipped.is_empty() && !acted.more);
        assert!(ledger.get("nope").await.unwrap().is_none());
        ledger.close().await;
    }
}

#[tokio::test]
async fn a_filtered_action_takes_at_most_its_limit_oldest_first_and_says_there_is_more() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        for i in 0..5 {
            ledger
                .accept(request(
                    &format!("r{i}"),
                    "fp",
                    vec![delivery(&format!("dead-{i}"), 0, Channel::Email)],
                ))
                .await
                .unwrap();
        }
        settle(&*ledger).await;
        let select = || Selection::Filter {
            filters: Vec::new(),
            limit: 3,
        };
        let first = ledger
            .act(OperatorAction::Discard, select(), "noise".into())
            .await
            .unwrap();
        assert_eq!(first.changed, vec!["dead-0", "dead-1", "dead-2"]);
        assert!(first.more);
        let second = ledger
            .act(OperatorAction::Discard, select(), "noise".into())
            .await
            .unwrap();
        assert_eq!(second.changed, vec!["dead-3", "dead-4"]);
        assert!(!second.more);
        ledger.close().await;
    }
}

#[tokio::test]
async fn discard_takes_a_dead_delivery_out_of_the_pending_list_and_keeps_it() {
    for backend in backends() {
        let (store, ledger) = fresh(backend).await;
        ledger
            .accept(request(
                "r",
                "fp",
                vec![
                    delivery("dead-x", 0, Channel::Email),
                    delivery("dead-y", 1, Channel::Email),
                ],
            ))
            .await
            .unwrap();
        settle(&*ledger).await;
        let acted = ledger
            .act(
                OperatorAction::Discard,
                Selection::Ids(vec!["dead-x".into()]),
                "left the company".into(),
            )
            .await
            .unwrap();
        assert_eq!(acted.changed, vec!["dead-x".to_string()]);
        assert_eq!(pending_ids(&*ledger, Vec::new()).await, vec!["dead-y"]);
        // Not leased, and not redriven: discarded is not dead.
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        let again = ledger
            .act(
                OperatorAction::Redrive,
                Selection::Ids(vec!["dead-x".into()]),
                String::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            again.skipped,
            vec![("dead-x".to_string(), Skip::NotDead(State::Discarded))]
        );
        ledger.close().await;

        // All of it survives a restart.
        let ledger = store.open().await;
        let (d, history) = ledger.get("dead-x").await.unwrap().unwrap();
        assert_eq!(d.state, State::Discarded);
        assert_eq!(
            history.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![EventKind::Dead, EventKind::Discarded]
        );
        assert_eq!(history[1].detail, "left the company");
        assert_eq!(pending_ids(&*ledger, Vec::new()).await, vec!["dead-y"]);
        ledger.close().await;
    }
}

/// Records `outcome` for the leased deliveries `ids` in one call (so in one transaction, at one
/// time by the ledger's clock), then waits long enough that the next call is at a later time.
async fn record_as(ledger: &dyn Ledger, leased: &[DeliveryRef], ids: &[&str], outcome: Outcome) {
    let outcomes = ids
        .iter()
        .map(|id| {
            let d = leased.iter().find(|d| d.id == *id).unwrap().clone();
            (d, outcome.clone())
        })
        .collect();
    let recorded = ledger.record(outcomes).await.unwrap();
    assert!(recorded.stale.is_empty(), "{recorded:?}");
    tokio::time::sleep(Duration::from_millis(5)).await;
}

async fn recent(ledger: &dyn Ledger, since: i64, limit: u32, filters: Vec<Filter>) -> RecentPage {
    ledger
        .recently_delivered(RecentQuery {
            limit,
            since,
            before: None,
            filters,
        })
        .await
        .unwrap()
}

fn recent_ids(page: &RecentPage) -> Vec<&str> {
    page.deliveries
        .iter()
        .map(|d| d.delivery.id.as_str())
        .collect()
}

/// A second delivered event for `id`, now: no path of the ledger writes one today (a delivered
/// delivery cannot be redriven), but the history may come to hold one (a manual resend, a newer
/// version), and the listing must not show the delivery twice when it does.
async fn delivered_again(store: &Store, id: &str) {
    match store.backend {
        Backend::Sqlite => {
            use sqlx::ConnectOptions as _;
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(store.dir.path().join("ledger.sqlite"))
                .connect()
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
                 VALUES (?1, ?2, 'delivered', 1, 'sent again')",
            )
            .bind(id)
            .bind(now_millis())
            .execute(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = store.db().session().await;
            sqlx::query(
                "INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
                 VALUES ($1, $2, 'delivered', 1, 'sent again')",
            )
            .bind(id)
            .bind(now_millis())
            .execute(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
    }
}

#[tokio::test]
async fn recently_delivered_lists_what_went_out_newest_first_within_scope_and_window() {
    for backend in backends() {
        let (store, ledger) = fresh(backend).await;
        let alpha = vec![
            delivery("a1", 0, Channel::Email),
            delivery("a2", 1, Channel::Email),
            delivery("a3", 2, Channel::Email),
            delivery("a4", 3, Channel::Email),
            delivery("a5", 4, Channel::Email),
            delivery("a-slack", 5, Channel::Slack),
            delivery("dead-redriven", 6, Channel::Email),
            delivery("dead-stays", 7, Channel::Email),
            delivery("dead-discarded", 8, Channel::Email),
        ];
        ledger
            .accept(request_for("ra", "fp", "alpha", "ea", alpha))
            .await
            .unwrap();
        ledger
            .accept(request_for(
                "rb",
                "fp",
                "beta",
                "eb",
                vec![delivery("b1", 0, Channel::Email)],
            ))
            .await
            .unwrap();
        let leased = refs(&ledger.lease_due(100, LEASE).await.unwrap());
        assert_eq!(leased.len(), 10);
        let started = now_millis() - 1000;

        record_as(&*ledger, &leased, &["a1"], Outcome::Delivered).await;
        // The window's edge: a1 went out before it, the rest after.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cut = now_millis();
        tokio::time::sleep(Duration::from_millis(20)).await;
        record_as(&*ledger, &leased, &["a2"], Outcome::Delivered).await;
        record_as(&*ledger, &leased, &["b1"], Outcome::Delivered).await;
        // Two at the same time: the event's seq orders them, and paging must not split them
        // wrongly.
        record_as(&*ledger, &leased, &["a3", "a4"], Outcome::Delivered).await;
        record_as(&*ledger, &leased, &["a-slack"], Outcome::Delivered).await;
        let dead = Outcome::Dead {
            error: "550 no such user".into(),
        };
        record_as(
            &*ledger,
            &leased,
            &["dead-redriven", "dead-stays", "dead-discarded"],
            dead,
        )
        .await;
        ledger
            .act(
                OperatorAction::Discard,
                Selection::Ids(vec!["dead-discarded".into()]),
                String::new(),
            )
            .await
            .unwrap();
        record_as(&*ledger, &leased, &["a5"], Outcome::Delivered).await;
        // Dead, redriven, then delivered: listed once, when it went out.
        ledger
            .act(
                OperatorAction::Redrive,
                Selection::Ids(vec!["dead-redriven".into()]),
                String::new(),
            )
            .await
            .unwrap();
        let again = refs(&ledger.lease_due(10, LEASE).await.unwrap());
        record_as(&*ledger, &again, &["dead-redriven"], Outcome::Delivered).await;
        // Accepted and never sent.
        ledger
            .accept(request_for(
                "rp",
                "fp",
                "alpha",
                "ep",
                vec![delivery("pending", 0, Channel::Email)],
            ))
            .await
            .unwrap();

        // Newest first; a1 went out before the window; nothing undelivered is listed.
        let page = recent(&*ledger, cut, 100, vec![]).await;
        let got = recent_ids(&page);
        assert_eq!(got.len(), 7, "{backend:?}: {got:?}");
        assert_eq!(&got[..3], ["dead-redriven", "a5", "a-slack"], "{backend:?}");
        let mut tied = got[3..5].to_vec();
        tied.sort();
        assert_eq!(tied, ["a3", "a4"], "{backend:?}: {got:?}");
        assert_eq!(&got[5..], ["b1", "a2"], "{backend:?}");
        assert!(page.next.is_none());
        let times: Vec<i64> = page.deliveries.iter().map(|d| d.delivered_at).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        assert_eq!(
            times[3], times[4],
            "{backend:?}: a3 and a4 went out together"
        );
        assert!(
            times[6] >= cut && times[0] <= now_millis(),
            "{times:?} vs {cut}"
        );
        assert!(
            page.deliveries
                .iter()
                .all(|d| d.delivery.state == State::Delivered),
            "{backend:?}"
        );
        // The row is ListPending's: the execution, the channel, the payload.
        let slack = &page.deliveries[2].delivery;
        assert_eq!(slack.execution.project, "alpha");
        assert_eq!(slack.channel, Some(Channel::Slack));
        assert_eq!(slack.payload.as_ref().unwrap().channel, Channel::Slack);
        assert_eq!(slack.attempts, 1);

        let all = recent_ids(&recent(&*ledger, started, 100, vec![]).await)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        assert_eq!(all.len(), 8, "{backend:?}: {all:?}");
        assert_eq!(all.last().unwrap(), "a1", "{backend:?}: the oldest last");

        // The limit holds, and says there is more.
        let three = recent(&*ledger, started, 3, vec![]).await;
        assert_eq!(recent_ids(&three), all[..3].to_vec());
        assert!(three.next.is_some());

        // A caller's scope, and ListPending's own filters, are terms of the query.
        let alpha_only = || filters::in_scope(vec![("alpha".into(), "*".into())]);
        let scoped = recent_ids(&recent(&*ledger, started, 100, vec![alpha_only()]).await)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        let expected: Vec<String> = all.iter().filter(|id| *id != "b1").cloned().collect();
        assert_eq!(scoped, expected, "{backend:?}");
        let beta = filters::in_scope(vec![("beta".into(), "development".into())]);
        assert_eq!(
            recent_ids(&recent(&*ledger, started, 100, vec![beta]).await),
            ["b1"]
        );
        let beta_prod = filters::in_scope(vec![("beta".into(), "production".into())]);
        assert!(
            recent(&*ledger, started, 100, vec![beta_prod])
                .await
                .deliveries
                .is_empty()
        );
        assert!(
            recent(&*ledger, started, 100, vec![filters::in_scope(vec![])])
                .await
                .deliveries
                .is_empty()
        );
        let slack_in_alpha = vec![
            Filter {
                field: FilterField::Channel,
                op: FilterOp::Eq,
                values: vec!["slack".into()],
            },
            alpha_only(),
        ];
        assert_eq!(
            recent_ids(&recent(&*ledger, started, 100, slack_in_alpha).await),
            ["a-slack"]
        );

        // Paging with the cursor: every row once, in order, in pages of at most two, while
        // another delivery goes out between pages (it is newer than any cursor, so it waits for
        // the next first page).
        let late = refs(&ledger.lease_due(10, LEASE).await.unwrap());
        assert_eq!(late.len(), 1, "{backend:?}: the pending one");
        let mut seen = Vec::new();
        let mut before = None;
        let mut pages = 0;
        loop {
            let page = ledger
                .recently_delivered(RecentQuery {
                    limit: 2,
                    since: started,
                    before,
                    filters: vec![alpha_only()],
                })
                .await
                .unwrap();
            assert!(page.deliveries.len() <= 2);
            seen.extend(page.deliveries.iter().map(|d| d.delivery.id.clone()));
            pages += 1;
            if pages == 1 {
                record_as(&*ledger, &late, &["pending"], Outcome::Delivered).await;
            }
            match page.next {
                Some(cursor) => before = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen, scoped, "{backend:?}");
        assert_eq!(pages, 4, "{backend:?}: 7 rows, 2 a page");
        assert_eq!(
            recent_ids(&recent(&*ledger, started, 1, vec![alpha_only()]).await),
            ["pending"]
        );

        // Went out twice: listed once, at the later time.
        delivered_again(&store, "a2").await;
        let twice = recent(&*ledger, started, 100, vec![]).await;
        let ids = recent_ids(&twice);
        assert_eq!(ids[0], "a2", "{backend:?}: {ids:?}");
        assert_eq!(
            ids.iter().filter(|id| **id == "a2").count(),
            1,
            "{backend:?}: {ids:?}"
        );
        assert_eq!(ids.len(), 9, "{backend:?}: {ids:?}");
        ledger.close().await;
    }
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn new_silence(id: &str, starts_in: i64, ends_in: i64, deliver_after: bool) -> NewSilence {
    let now = now_millis();
    NewSilence {
        id: id.into(),
        matcher: "eq(project,p)".into(),
        starts_at: now + starts_in,
        ends_at: now + ends_in,
        created_by: "oncall".into(),
        comment: format!("comment of {id}"),
        deliver_after,
    }
}

async fn create(ledger: &dyn Ledger, silence: NewSilence) {
    match ledger.create_silence(silence, 100).await.unwrap() {
        CreatedSilence::Created(_) => {}
        other => panic!("{other:?}"),
    }
}

fn silenced(id: &str) -> Outcome {
    Outcome::Silenced {
        silence_id: id.into(),
    }
}

fn silenced_filter() -> Vec<Filter> {
    vec![Filter {
        field: FilterField::State,
        op: FilterOp::Eq,
        values: vec!["silenced".into()],
    }]
}

#[tokio::test]
async fn silences_are_bounded_listed_expired_and_kept_until_pruned() {
    for backend in backends() {
        let (store, ledger) = fresh(backend).await;
        let created = ledger
            .create_silence(new_silence("s-active", -1000, 60_000, false), 2)
            .await
            .unwrap();
        let CreatedSilence::Created(active) = created else {
            panic!("{created:?}");
        };
        assert_eq!(active.state, SilenceState::Active);
        assert_eq!(active.comment, "comment of s-active");
        assert!(matches!(
            ledger
                .create_silence(new_silence("s-later", 60_000, 120_000, true), 2)
                .await
                .unwrap(),
            CreatedSilence::Created(_)
        ));
        // The bound counts the silences not yet ended, pending ones too.
        assert_eq!(
            ledger
                .create_silence(new_silence("s-third", 0, 60_000, false), 2)
                .await
                .unwrap(),
            CreatedSilence::TooMany(2)
        );
        let listed = ledger.list_silences(false).await.unwrap();
        let states: Vec<_> = listed.iter().map(|s| (s.id.as_str(), s.state)).collect();
        assert_eq!(
            states,
            vec![
                ("s-active", SilenceState::Active),
                ("s-later", SilenceState::Pending)
            ],
            "{backend:?}"
        );
        assert!(listed[1].deliver_after);

        let expired = ledger.expire_silence("s-active").await.unwrap().unwrap();
        assert_eq!(expired.state, SilenceState::Expired);
        assert!(ledger.expire_silence("no-such").await.unwrap().is_none());
        // Expiring again changes nothing.
        let again = ledger.expire_silence("s-active").await.unwrap().unwrap();
        assert_eq!(again.ends_at, expired.ends_at);
        let ids =
            |l: Vec<flyte_notify::ledger::Silence>| l.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(ledger.list_silences(false).await.unwrap()),
            vec!["s-later"]
        );
        assert_eq!(
            ids(ledger.list_silences(true).await.unwrap()),
            vec!["s-active", "s-later"]
        );
        // Kept for the retention period, then gone; a silence not ended is never pruned.
        let settled = ledger
            .settle_silences(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(settled.pruned, 0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let settled = ledger
            .settle_silences(Duration::from_millis(1))
            .await
            .unwrap();
        assert_eq!(settled.pruned, 1, "{backend:?}");
        ledger.close().await;
        let ledger = store.open().await;
        assert_eq!(
            ids(ledger.list_silences(true).await.unwrap()),
            vec!["s-later"]
        );
        ledger.close().await;
    }
}

#[tokio::test]
async fn silenced_deliveries_are_held_and_a_deliver_after_silence_releases_them_once() {
    for backend in backends() {
        let (_store, ledger) = fresh(backend).await;
        create(&*ledger, new_silence("drop", -1000, 60_000, false)).await;
        create(&*ledger, new_silence("hold", -1000, 60_000, true)).await;
        ledger
            .accept(request(
                "r",
                "fp",
                vec![
                    delivery("d-drop", 0, Channel::Email),
                    delivery("d-hold", 1, Channel::Email),
                    delivery("d-gone", 2, Channel::Email),
                ],
            ))
            .await
            .unwrap();
        let leased = refs(&ledger.lease_due(10, LEASE).await.unwrap());
        assert_eq!(leased.len(), 3);
        let recorded = ledger
            .record(vec![
                (leased[0].clone(), silenced("drop")),
                (leased[1].clone(), silenced("hold")),
                // No such silence (it ended, or was pruned, since the worker looked): not
                // silenced; the lease is given back and the delivery is due again shortly.
                (leased[2].clone(), silenced("no-such")),
            ])
            .await
            .unwrap();
        assert!(recorded.stale.is_empty());
        assert_eq!(recorded.unsilenced, vec!["d-gone".to_string()]);
        assert_eq!(pending_ids(&*ledger, Vec::new()).await, vec!["d-gone"]);
        assert_eq!(
            pending_ids(&*ledger, silenced_filter()).await,
            vec!["d-drop", "d-hold"],
            "{backend:?}"
        );
        let pending_or_silenced = vec![Filter {
            field: FilterField::State,
            op: FilterOp::ValueIn,
            values: vec!["pending".into(), "silenced".into()],
        }];
        assert_eq!(
            pending_ids(&*ledger, pending_or_silenced).await,
            vec!["d-drop", "d-hold", "d-gone"]
        );
        let (d, history) = ledger.get("d-hold").await.unwrap().unwrap();
        assert_eq!(d.state, State::Silenced);
        assert_eq!(d.attempts, 0);
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].kind, EventKind::Silenced);
        assert_eq!(history[0].detail, "hold");
        // Neither is due, nor counted as waiting.
        assert!(ledger.lease_due(10, LEASE).await.unwrap().is_empty());
        let stats = ledger.stats().await.unwrap();
        assert_eq!((stats.pending, stats.retrying, stats.dead), (1, 0, 0));

        // Ending the deliver_after silence makes what it held pending again, due now, with its
        // attempt count where it was; ending the other leaves its deliveries silenced.
        ledger.expire_silence("hold").await.unwrap().unwrap();
        ledger.expire_silence("drop").await.unwrap().unwrap();
        let again = ledger.lease_due(10, LEASE).await.unwrap();
        assert_eq!(ids(&again), vec!["d-hold"], "{backend:?}");
        assert_eq!(again[0].delivery.attempt, 1);
        let (_, history) = ledger.get("d-hold").await.unwrap().unwrap();
        assert_eq!(
            history.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![EventKind::Silenced, EventKind::Unsilenced]
        );
        ledger
            .record(vec![(again[0].delivery.clone(), Outcome::Delivered)])
            .await
            .unwrap();
        assert_eq!(
            pending_ids(&*ledger, silenced_filter()).await,
            vec!["d-drop"]
        );
        assert_eq!(
            ledger
                .settle_silences(Duration::from_secs(3600))
                .await
                .unwrap()
                .released,
            0
        );

        // A silence that ends by its clock is settled by whichever caller comes first, once.
        create(&*ledger, new_silence("short", -1000, 700, true)).await;
        ledger
            .accept(request(
                "r2",
                "fp",
                vec![delivery("d-short", 0, Channel::Email)],
            ))
            .await
            .unwrap();
        let leased = ledger.lease_due(10, LEASE).await.unwrap();
        let short = leased
            .iter()
            .find(|l| l.delivery.id == "d-short")
            .unwrap()
            .delivery
            .clone();
        let others = leased
            .iter()
            .filter(|l| l.delivery.id != "d-short")
            .map(|l| (l.delivery.clone(), Outcome::Delivered));
        let mut outcomes = vec![(short, silenced("short"))];
        outcomes.extend(others);
        let recorded = ledger.record(outcomes).await.unwrap();
        assert!(recorded.unsilenced.is_empty(), "{recorded:?}");
        tokio::time::sleep(Duration::from_millis(900)).await;
        let settled = ledger
            .settle_silences(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(settled.released, 1, "{backend:?}");
        assert_eq!(
            ledger
                .settle_silences(Duration::from_secs(3600))
                .await
                .unwrap()
                .released,
            0
        );
        let leased = ledger.lease_due(10, LEASE).await.unwrap();
        assert!(ids(&leased).contains(&"d-short"), "{:?}", ids(&leased));
        ledger.close().await;
    }
}

// PostgreSQL: several replicas (processes) share one database.

#[tokio::test]
async fn replicas_leasing_concurrently_never_get_the_same_delivery() {
    let store = Store::new(Backend::Postgres).await;
    let replicas = [
        Arc::new(store.replica().await),
        Arc::new(store.replica().await),
    ];
    for r in 0..20 {
        let deliveries = (0..10)
            .map(|i| delivery(&format!("d{r:02}-{i}"), i, Channel::Email))
            .collect();
        replicas[r % 2]
            .accept(request(&format!("r{r}"), "fp", deliveries))
            .await
            .unwrap();
    }
    // Four workers on each replica lease small batches as fast as they can until nothing is due.
    let mut workers = Vec::new();
    for replica in &replicas {
        for _ in 0..4 {
            let replica = replica.clone();
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let leased = replica.lease_due(7, LEASE).await.unwrap();
                    if leased.is_empty() {
                        return got;
                    }
                    got.extend(ids(&leased).iter().map(|id| id.to_string()));
                    let outcomes = refs(&leased)
                        .into_iter()
                        .map(|d| (d, Outcome::Delivered))
                        .collect();
                    assert!(replica.record(outcomes).await.unwrap().stale.is_empty());
                }
            }));
        }
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a delivery was leased twice");
    assert_eq!(all.len(), 200);
    assert!(pending_ids(&*replicas[0], vec![]).await.is_empty());
    for replica in replicas {
        replica.close().await;
    }
}

#[tokio::test]
async fn a_late_record_from_a_replica_whose_lease_ran_out_is_refused() {
    let store = Store::new(Backend::Postgres).await;
    let a = store.replica().await;
    let b = store.replica().await;
    a.accept(request("r", "fp", vec![delivery("d", 0, Channel::Email)]))
        .await
        .unwrap();
    let lost = refs(&a.lease_due(10, SHORT_LEASE).await.unwrap());
    assert_eq!(lost.len(), 1);
    // Replica A stalls (or dies) past its lease; replica B takes the delivery over.
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
    let taken = refs(&b.lease_due(10, LEASE).await.unwrap());
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].attempt, 2);
    assert!(a.lease_due(10, LEASE).await.unwrap().is_empty());

    let late = a
        .record(vec![(lost[0].clone(), Outcome::Delivered)])
        .await
        .unwrap();
    assert_eq!(late.stale, vec!["d".to_string()]);
    let (d, history) = b.get("d").await.unwrap().unwrap();
    assert_eq!((d.state, d.attempts), (State::Pending, 0));
    assert!(history.is_empty());

    let current = b
        .record(vec![(
            taken[0].clone(),
            Outcome::Retry {
                delay: Duration::from_secs(60),
                error: "421".into(),
            },
        )])
        .await
        .unwrap();
    assert!(current.stale.is_empty());
    let (d, history) = a.get("d").await.unwrap().unwrap();
    assert_eq!((d.state, d.attempts), (State::Retrying, 1));
    assert_eq!(history.len(), 1);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_replica_starting_leaves_the_others_leases_alone() {
    let store = Store::new(Backend::Postgres).await;
    let a = store.replica().await;
    a.accept(request("r", "fp", vec![delivery("d", 0, Channel::Email)]))
        .await
        .unwrap();
    let held = refs(&a.lease_due(10, LEASE).await.unwrap());
    // A second replica starts (its migrations find the schema up to date) while A sends.
    let b = store.replica().await;
    assert!(b.lease_due(10, LEASE).await.unwrap().is_empty());
    let recorded = a
        .record(vec![(held[0].clone(), Outcome::Delivered)])
        .await
        .unwrap();
    assert!(recorded.stale.is_empty());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn replicas_starting_together_share_one_schema_and_one_request_is_recorded_once() {
    let store = Store::new(Backend::Postgres).await;
    let dsn = store.db().dsn();
    // Four replicas migrate a fresh database at once: the migrator's lock lets one do it.
    let replicas = futures::future::join_all(
        (0..4).map(|_| PostgresLedger::connect(&dsn, PostgresOptions::default())),
    )
    .await
    .into_iter()
    .map(|r| Arc::new(r.unwrap()))
    .collect::<Vec<_>>();
    // The same request reaches every replica at once (a client retrying against each): one
    // records it, the others answer with its delivery ids.
    let outcomes = futures::future::join_all(replicas.iter().enumerate().map(|(i, replica)| {
        replica.accept(request(
            "same",
            "fp",
            vec![delivery(&format!("d-from-{i}"), 0, Channel::Email)],
        ))
    }))
    .await;
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    for outcome in outcomes {
        match outcome.unwrap() {
            AcceptOutcome::Accepted { delivery_ids } => accepted.push(delivery_ids),
            AcceptOutcome::Duplicate { delivery_ids, .. } => duplicates.push(delivery_ids),
            AcceptOutcome::Conflict => panic!("the same content is no conflict"),
        }
    }
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert!(duplicates.iter().all(|ids| *ids == accepted[0]));
    assert_eq!(pending_ids(&*replicas[3], vec![]).await, accepted[0]);
    // And other content under that id is a conflict on any replica.
    assert_eq!(
        replicas[1]
            .accept(request("same", "other", vec![]))
            .await
            .unwrap(),
        AcceptOutcome::Conflict
    );
    for replica in replicas {
        replica.close().await;
    }
}

/// Ungranted locks held by sessions on `database`: calls waiting for another transaction.
async fn lock_waits(admin: &mut PgConnection, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid \
         WHERE NOT l.granted AND a.datname = $1",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Sequence values are handed out before commit, so with a plain sequence a row can become visible
/// after rows with higher values: a page token taken from those would pass over it for good. Here
/// replica A's delivery takes its place, then waits (on a unique index, held by another session)
/// while replica B records two more; a page ending at B's first one is read, then A commits.
/// Following the token must still show A's delivery (or the first page must not have ended past
/// it).
#[tokio::test]
async fn a_delivery_that_commits_after_later_ones_is_not_skipped_by_paging() {
    let store = Store::new(Backend::Postgres).await;
    let a = Arc::new(store.replica().await);
    let b = Arc::new(store.replica().await);
    a.accept(request("r0", "fp", vec![delivery("d0", 0, Channel::Email)]))
        .await
        .unwrap();
    let mut admin = store.db().session().await;
    let mut blocker = store.db().session().await;
    let mut blocking = blocker.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO requests (request_id, fingerprint, unmatched, created_at, execution) \
         VALUES ('blocker', '', 0, 0, '')",
    )
    .execute(&mut *blocking)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, org, \
             channel, phase, state, created_at, updated_at, payload) \
         VALUES ('dX', 'blocker', 0, '', '', '', '', 'email', 0, 'pending', 0, 0, '')",
    )
    .execute(&mut *blocking)
    .await
    .unwrap();

    let late = {
        let a = a.clone();
        tokio::spawn(async move {
            a.accept(request("rX", "fp", vec![delivery("dX", 0, Channel::Email)]))
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock_waits(&mut admin, &store.db().name).await < 1 {
        assert!(Instant::now() < deadline, "replica A's accept never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let later = {
        let b = b.clone();
        tokio::spawn(async move {
            let (x, y) = tokio::join!(
                b.accept(request("rB", "fp", vec![delivery("dB", 0, Channel::Email)])),
                b.accept(request("rC", "fp", vec![delivery("dC", 0, Channel::Email)])),
            );
            (x.unwrap(), y.unwrap())
        })
    };
    // B's deliveries are recorded, or wait behind A's (as a store paging by commit order must
    // make them).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !later.is_finished() && lock_waits(&mut admin, &store.db().name).await < 2 {
        assert!(
            Instant::now() < deadline,
            "replica B's accepts neither finished nor waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = b
        .list_pending(PendingQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    // A's delivery commits now, after the page was read.
    blocking.rollback().await.unwrap();
    assert!(matches!(
        late.await.unwrap().unwrap(),
        AcceptOutcome::Accepted { .. }
    ));
    later.await.unwrap();

    let mut seen: Vec<String> = first.deliveries.iter().map(|d| d.id.clone()).collect();
    match first.next {
        Some(token) => seen.extend(follow_pages(&*a, Some(token), 2).await),
        // The first page was the last one: a caller lists again from the start.
        None => seen = pending_ids(&*a, vec![]).await,
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["d0", "dB", "dC", "dX"],
        "first page: {:?}",
        first.deliveries.iter().map(|d| &d.id).collect::<Vec<_>>()
    );
    a.close().await;
    b.close().await;
}

/// ListPending's pages stop below the oldest accept still in flight, and no lower: a long
/// transaction that is not an accept (an operator's psql session left open after a write, a
/// migration elsewhere in the cluster) must not hide what is accepted meanwhile, as a watermark at
/// the snapshot's xmin would.
#[tokio::test]
async fn a_long_transaction_that_is_not_an_accept_hides_no_new_delivery() {
    let store = Store::new(Backend::Postgres).await;
    let ledger = store.replica().await;
    let mut operator = store.db().session().await;
    let mut open = operator.begin().await.unwrap();
    // A write gives the transaction an id; it then stays open for the whole test.
    sqlx::query("CREATE TEMP TABLE operator_scratch (x int)")
        .execute(&mut *open)
        .await
        .unwrap();
    for (n, id) in ["d1", "d2", "d3"].iter().enumerate() {
        ledger
            .accept(request(
                &format!("r{n}"),
                "fp",
                vec![delivery(id, 0, Channel::Email)],
            ))
            .await
            .unwrap();
    }
    assert_eq!(pending_ids(&ledger, vec![]).await, vec!["d1", "d2", "d3"]);
    // Page by page as well, each token resuming after the last row shown.
    assert_eq!(follow_pages(&ledger, None, 2).await, vec!["d1", "d2", "d3"]);
    open.rollback().await.unwrap();
    ledger.close().await;
}

/// A replica's statements are prepared once per connection, and PostgreSQL may settle on one
/// generic plan for a prepared statement after five runs, planned for the table as it was then.
/// A ledger starts empty, so that plan was a sequential scan of `deliveries` (what a table of a
/// few rows costs least), kept as the table grew: with 27,000 rows in the bench, each batch of
/// outcomes read all of them (60 ms), and three replicas' delivery fell seconds behind. Here the
/// replica runs its whole cycle on a near-empty table, the table then grows by 50,000 rows
/// (autovacuum off, so no ANALYZE replans behind the test's back), and the same connections run
/// the cycle again: no statement may read the grown table through. PostgreSQL counts the tuples
/// sequential scans read per table, flushed when the replica's sessions end.
#[tokio::test]
async fn statements_keep_using_indexes_after_the_table_grows_under_them() {
    let store = Store::new(Backend::Postgres).await;
    let ledger = store.replica().await;
    let mut admin = store.db().session().await;
    sqlx::query("ALTER TABLE deliveries SET (autovacuum_enabled = false)")
        .execute(&mut admin)
        .await
        .unwrap();
    let cycle = |round: usize| {
        let ledger = &ledger;
        async move {
            let id = format!("d{round}");
            ledger
                .accept(request(
                    &format!("r{round}"),
                    "fp",
                    vec![delivery(&id, 0, Channel::Email)],
                ))
                .await
                .unwrap();
            let leased = refs(&ledger.lease_due(10, LEASE).await.unwrap());
            assert_eq!(leased.len(), 1, "round {round}");
            let recorded = ledger
                .record(vec![(leased[0].clone(), Outcome::Delivered)])
                .await
                .unwrap();
            assert!(recorded.stale.is_empty());
            pending_ids(ledger, vec![]).await;
        }
    };
    // More than five runs of each statement, on each of the pool's connections that gets one.
    for round in 0..40 {
        cycle(round).await;
    }
    const GROWN: i64 = 50_000;
    sqlx::raw_sql(
        "INSERT INTO requests (request_id, fingerprint, unmatched, created_at, execution) \
             VALUES ('bulk', 'fp', 0, 0, ''); \
         INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, org, \
             channel, phase, state, created_at, updated_at, payload) \
         SELECT 'bulk-' || n, 'bulk', n, 'p', 'd', 'e', '', 'email', 4, 'delivered', 0, 0, '' \
         FROM generate_series(1, 50000) AS n;",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    for round in 40..60 {
        cycle(round).await;
    }
    ledger.close().await;
    // A session's counts reach the shared statistics when it ends.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica's sessions did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read: i64 = sqlx::query_scalar(
        "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'deliveries'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        read < GROWN,
        "sequential scans read {read} rows of deliveries: a statement scanned the grown table"
    );
}

/// Migration 0008 moved PostgreSQL's ListPending from seq order to the accepting transaction's
/// order. A database that held deliveries before it keeps them listed first, in their old order,
/// and a token a caller took before the upgrade resumes where it was: nothing is skipped.
#[tokio::test]
async fn deliveries_and_tokens_from_before_accept_order_keep_their_places() {
    let store = Store::new(Backend::Postgres).await;
    let mut admin = store.db().session().await;
    let migrations =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ledger/migrations/postgres");
    sqlx::migrate::Migrator::new(migrations)
        .await
        .unwrap()
        .run_to(7, &mut admin)
        .await
        .unwrap();
    // Three deliveries as the previous version wrote them, in one request.
    sqlx::raw_sql(
        "INSERT INTO requests (request_id, fingerprint, unmatched, created_at, execution) \
             VALUES ('old', 'fp', 0, 0, ''); \
         INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, org, \
             channel, phase, state, created_at, updated_at, payload) \
         SELECT 'old-' || n, 'old', n, 'p', 'd', 'e', '', 'email', 4, 'pending', 0, 0, '' \
         FROM generate_series(1, 3) AS n;",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let old_seq = |n: i64| {
        sqlx::query_scalar::<_, i64>("SELECT seq FROM deliveries WHERE id = 'old-' || $1")
            .bind(n.to_string())
    };
    // A caller of the previous version had read the first one: its token says "after that seq".
    let token = PageToken::After {
        seq: old_seq(1).fetch_one(&mut admin).await.unwrap(),
    };

    let ledger = store.replica().await;
    ledger
        .accept(request(
            "new",
            "fp",
            vec![delivery("new-1", 0, Channel::Email)],
        ))
        .await
        .unwrap();
    assert_eq!(
        pending_ids(&ledger, vec![]).await,
        vec!["old-1", "old-2", "old-3", "new-1"]
    );
    let resumed = ledger
        .list_pending(PendingQuery {
            limit: 10,
            after: Some(token),
            filters: vec![],
        })
        .await
        .unwrap();
    let ids: Vec<&str> = resumed.deliveries.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec!["old-2", "old-3", "new-1"]);
    ledger.close().await;
}

/// Runs a ledger call that must come back on its own, cut off or not: it may fail, not hang.
async fn answers<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("a ledger call hung while the database was cut off")
}

fn unavailable<T: std::fmt::Debug>(result: Result<T, LedgerError>) -> String {
    match result {
        Err(LedgerError::Unavailable(reason)) => reason,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn cut_off_from_the_database_calls_fail_fast_and_all_resume_when_it_returns() {
    let store = Store::new(Backend::Postgres).await;
    let proxy = Proxy::start().await;
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(1),
        ..PostgresOptions::default()
    };
    let ledger = PostgresLedger::connect(&store.db().dsn_via(proxy.port), options)
        .await
        .unwrap();
    ledger
        .accept(request("r1", "fp", vec![delivery("d1", 0, Channel::Email)]))
        .await
        .unwrap();
    let held = refs(&ledger.lease_due(10, LEASE).await.unwrap());
    assert_eq!(ledger.trouble(), None);

    proxy.cut();
    let started = Instant::now();
    let reason = unavailable(
        answers(ledger.accept(request("r2", "fp", vec![delivery("d2", 0, Channel::Email)]))).await,
    );
    let first_failure = started.elapsed();
    assert!(
        reason.contains(&format!("127.0.0.1:{}", proxy.port)),
        "the reason names the database: {reason}"
    );
    let trouble = ledger.trouble().expect("health reports the outage");
    assert!(trouble.contains("ledger's database"), "{trouble}");
    // Known to be cut off, the other calls do not wait out a timeout each.
    let started = Instant::now();
    unavailable(answers(ledger.lease_due(10, LEASE)).await);
    unavailable(answers(ledger.list_pending(PendingQuery::default())).await);
    unavailable(answers(ledger.record(vec![(held[0].clone(), Outcome::Delivered)])).await);
    unavailable(answers(ledger.next_due()).await);
    unavailable(answers(ledger.get("d1")).await);
    let then_each = started.elapsed() / 5;
    eprintln!(
        "cut off: first call failed after {first_failure:?}, the next ones after {then_each:?} each"
    );
    // It stays reported while it lasts (the probe keeps checking).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ledger.trouble().is_some());

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ledger.trouble().is_some() {
        assert!(
            Instant::now() < deadline,
            "still in trouble after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything works again, in the same process. The request refused meanwhile was not
    // recorded; a retry is.
    assert!(matches!(
        ledger
            .accept(request("r2", "fp", vec![delivery("d2", 0, Channel::Email)]))
            .await
            .unwrap(),
        AcceptOutcome::Accepted { .. }
    ));
    let recorded = ledger
        .record(vec![(held[0].clone(), Outcome::Delivered)])
        .await
        .unwrap();
    assert!(recorded.stale.is_empty());
    assert_eq!(pending_ids(&ledger, vec![]).await, vec!["d2"]);
    assert_eq!(ids(&ledger.lease_due(10, LEASE).await.unwrap()), vec!["d2"]);
    ledger.close().await;
}

#[tokio::test]
async fn a_database_restart_is_survived_without_restarting_the_replica() {
    let (store, ledger) = fresh(Backend::Postgres).await;
    ledger
        .accept(request("r1", "fp", vec![delivery("d1", 0, Channel::Email)]))
        .await
        .unwrap();
    // Every session on the database ends, as at a server restart or failover.
    let mut admin = PgConnection::connect(postgres_server().as_str())
        .await
        .unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(&store.db().name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!ended.is_empty());
    // At most a call or two hears about it; then everything works on new connections.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match ledger
            .accept(request("r2", "fp", vec![delivery("d2", 0, Channel::Email)]))
            .await
        {
            Ok(_) => break,
            Err(LedgerError::Unavailable(reason)) => {
                assert!(Instant::now() < deadline, "not back: {reason}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(pending_ids(&*ledger, vec![]).await, vec!["d1", "d2"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while ledger.trouble().is_some() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ledger.close().await;
}

/// Three replicas accept at once, each with several calls in flight, while a fourth tails the
/// pending list: pages of one, each following the token of the one before, never starting over,
/// so that it reads right at the newest committed row the whole time. A trigger in the test's
/// database makes each insert of deliveries take 0-4 ms more before its transaction can commit
/// (as a slow link to the database would), so the three writers' commits land in every order
/// their batches can give. A store whose page order is not commit order would
/// now and then hand the tailer a token past a row still to commit, and that row would never be
/// listed to it: once the writers are done and the tailer has caught up, it must have seen every
/// delivery.
#[tokio::test]
async fn three_writers_at_once_never_make_a_reader_following_tokens_miss_a_delivery() {
    const WRITERS: usize = 3;
    const IN_FLIGHT: usize = 4;
    const EACH: usize = 300;
    let store = Store::new(Backend::Postgres).await;
    let reader = store.replica().await;
    let mut admin = store.db().session().await;
    sqlx::raw_sql(
        "CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(random() * 0.004); RETURN NULL; END $$; \
         CREATE TRIGGER test_slow_commit AFTER INSERT ON deliveries \
             FOR EACH STATEMENT EXECUTE FUNCTION test_slow_commit();",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let accepted: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let mut writers = Vec::new();
    let mut replicas = Vec::new();
    for w in 0..WRITERS {
        let replica = Arc::new(store.replica().await);
        replicas.push(replica.clone());
        for lane in 0..IN_FLIGHT {
            let (replica, accepted) = (replica.clone(), accepted.clone());
            writers.push(tokio::spawn(async move {
                for n in 0..EACH / IN_FLIGHT {
                    let id = format!("d-{w}-{lane}-{n}");
                    let request = request(
                        &format!("r-{w}-{lane}-{n}"),
                        "fp",
                        vec![delivery(&id, 0, Channel::Email)],
                    );
                    let outcome = replica.accept(request).await.unwrap();
                    assert!(matches!(outcome, AcceptOutcome::Accepted { .. }));
                    accepted.lock().unwrap().push(id);
                }
            }));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    let mut pages_while_writing = 0;
    loop {
        let writing = writers.iter().any(|w| !w.is_finished());
        let page = reader
            .list_pending(PendingQuery {
                limit: 1,
                after,
                filters: vec![],
            })
            .await
            .unwrap();
        pages_while_writing += usize::from(writing);
        seen.extend(page.deliveries.into_iter().map(|d| d.id));
        match page.next {
            Some(token) => after = Some(token),
            // Caught up with everything committed when the writers were already done.
            None if !writing => break,
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), WRITERS * EACH);
    let missed: Vec<&String> = accepted.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missed.is_empty(),
        "the reader never saw {} of {} deliveries: {missed:?}",
        missed.len(),
        accepted.len()
    );
    assert!(
        pages_while_writing > 100,
        "the reader read only {pages_while_writing} pages while the writers wrote"
    );
    reader.close().await;
    for replica in replicas {
        replica.close().await;
    }
}
