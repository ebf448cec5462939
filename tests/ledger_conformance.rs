//! The behaviour every ledger store must have. Each test runs against every backend in
//! `backends()`; a new store (PostgreSQL, ...) joins by adding one line there.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flyte_notify::ledger::sqlite::SqliteLedger;
use flyte_notify::ledger::{
    AcceptOutcome, Channel, ExecutionKey, Filter, FilterField, FilterOp, Ledger, NewDelivery,
    NewRequest, Outcome, Payload, PendingQuery, State,
};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
}

fn backends() -> Vec<Backend> {
    vec![Backend::Sqlite]
}

/// Opens the backend's store in `dir`; opening again in the same dir sees the same data.
async fn open(backend: Backend, dir: &Path) -> Arc<dyn Ledger> {
    match backend {
        Backend::Sqlite => Arc::new(
            SqliteLedger::open(&dir.join("ledger.sqlite"))
                .await
                .unwrap(),
        ),
    }
}

/// An empty store of `backend`; the directory lives as long as the returned guard.
async fn fresh(backend: Backend) -> (tempfile::TempDir, Arc<dyn Ledger>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(backend, dir.path()).await;
    (dir, ledger)
}

fn delivery(id: &str, index: u32, project: &str, channel: Channel) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        notification_index: index,
        execution: ExecutionKey {
            project: project.into(),
            domain: "development".into(),
            name: format!("exec-{id}"),
            org: String::new(),
        },
        phase: 6,
        payload: Payload::V1 {
            channel,
            recipients: vec!["a@example.com".into()],
            template: format!("template {id}"),
            execution: "CgA=".into(),
        },
    }
}

fn request(
    request_id: &str,
    fingerprint: &str,
    deliveries: Vec<NewDelivery>,
    now: i64,
) -> NewRequest {
    NewRequest {
        request_id: request_id.into(),
        fingerprint: fingerprint.into(),
        unmatched: 1,
        deliveries,
        created_at: now,
    }
}

async fn pending_ids(ledger: &dyn Ledger, filters: Vec<Filter>) -> Vec<String> {
    ledger
        .list_pending(PendingQuery {
            limit: 1000,
            after_seq: None,
            filters,
        })
        .await
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| d.id)
        .collect()
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn accept_is_idempotent_per_request_id_and_refuses_other_content() {
    for backend in backends() {
        let (_dir, ledger) = fresh(backend).await;
        let new = || {
            request(
                "r1",
                "fp1",
                vec![
                    delivery("d1", 0, "p", Channel::Email),
                    delivery("d2", 2, "p", Channel::Slack),
                ],
                1000,
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
        let conflicting = request("r1", "fp2", vec![], 1000);
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
        let (dir, ledger) = fresh(backend).await;
        let mut tasks = Vec::new();
        for i in 0..300 {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                ledger
                    .accept(request(
                        &format!("r{i}"),
                        "fp",
                        vec![delivery(&format!("d{i:03}"), 0, "p", Channel::Email)],
                        i,
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
                vec![delivery("s1", 0, "p", Channel::Email)],
                1
            )),
            b.accept(request(
                "same",
                "fp",
                vec![delivery("s2", 0, "p", Channel::Email)],
                1
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
        assert!(
            ledger
                .accept(request("late", "fp", vec![], 1))
                .await
                .is_err()
        );

        let reopened = open(backend, dir.path()).await;
        assert_eq!(
            pending_ids(&*reopened, vec![]).await.len(),
            301,
            "{backend:?}"
        );
        reopened.close().await;
    }
}

#[tokio::test]
async fn leases_hide_a_delivery_until_they_run_out_or_are_released() {
    for backend in backends() {
        let (_dir, ledger) = fresh(backend).await;
        ledger
            .accept(request(
                "r",
                "fp",
                vec![
                    delivery("d1", 0, "p", Channel::Email),
                    delivery("d2", 1, "p", Channel::Email),
                ],
                1000,
            ))
            .await
            .unwrap();
        // Not due before it was created.
        assert!(ledger.lease_due(999, 10, LEASE).await.unwrap().is_empty());
        let leased = ledger.lease_due(1000, 1, LEASE).await.unwrap();
        assert_eq!(
            leased.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["d1"]
        );
        let Payload::V1 { template, .. } = leased[0].payload.as_ref().unwrap();
        assert_eq!(template, "template d1");
        let leased = ledger.lease_due(1000, 10, LEASE).await.unwrap();
        assert_eq!(
            leased.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["d2"]
        );
        assert!(ledger.lease_due(2000, 10, LEASE).await.unwrap().is_empty());
        // A worker that died: its lease runs out and the delivery is due again.
        assert_eq!(
            ledger
                .lease_due(1000 + 60_000, 10, LEASE)
                .await
                .unwrap()
                .len(),
            2
        );
        // Or the single-process store releases them at start-up.
        assert_eq!(ledger.release_all_leases().await.unwrap(), 2);
        assert_eq!(ledger.lease_due(1000, 10, LEASE).await.unwrap().len(), 2);
        // Leased deliveries are still pending to the outside world.
        assert_eq!(pending_ids(&*ledger, vec![]).await.len(), 2);
        ledger.close().await;
    }
}

#[tokio::test]
async fn outcomes_move_deliveries_between_states() {
    for backend in backends() {
        let (_dir, ledger) = fresh(backend).await;
        let now = flyte_notify::ledger::now_millis();
        ledger
            .accept(request(
                "r",
                "fp",
                vec![
                    delivery("ok", 0, "p", Channel::Email),
                    delivery("again", 1, "p", Channel::Email),
                    delivery("dead", 2, "p", Channel::Email),
                ],
                now,
            ))
            .await
            .unwrap();
        assert_eq!(ledger.lease_due(now, 10, LEASE).await.unwrap().len(), 3);
        ledger
            .record(vec![
                Outcome::Delivered { id: "ok".into() },
                Outcome::Retry {
                    id: "again".into(),
                    at: now + 5_000,
                    error: "attempt 1: refused".into(),
                },
                Outcome::Dead {
                    id: "dead".into(),
                    error: "permanent failure on attempt 1: 550".into(),
                },
            ])
            .await
            .unwrap();
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
        assert_eq!(again.next_attempt_at, Some(now + 5_000));
        assert_eq!(again.last_error, "attempt 1: refused");
        let dead = by_id("dead").unwrap();
        assert_eq!((dead.state, dead.attempts), (State::Dead, 1));
        assert!(dead.last_error.contains("550"));

        assert_eq!(ledger.next_due().await.unwrap(), Some(now + 5_000));
        assert!(
            ledger
                .lease_due(now + 4_999, 10, LEASE)
                .await
                .unwrap()
                .is_empty()
        );
        let due = ledger.lease_due(now + 5_000, 10, LEASE).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, "again");
        ledger.close().await;
    }
}

#[tokio::test]
async fn pages_are_oldest_first_and_stable_while_rows_arrive_and_leave() {
    for backend in backends() {
        let (_dir, ledger) = fresh(backend).await;
        for i in 0..10 {
            ledger
                .accept(request(
                    &format!("r{i}"),
                    "fp",
                    vec![delivery(&format!("d{i}"), 0, "p", Channel::Email)],
                    1000,
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
                    after_seq: after,
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
                    vec![delivery(&format!("n{round}"), 0, "p", Channel::Email)],
                    1000,
                ))
                .await
                .unwrap();
            ledger
                .record(vec![Outcome::Delivered {
                    id: seen[0].clone(),
                }])
                .await
                .unwrap();
            match page.next_after_seq {
                Some(s) => after = Some(s),
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
        let (_dir, ledger) = fresh(backend).await;
        ledger
            .accept(request(
                "r",
                "fp",
                vec![
                    delivery("a", 0, "flytesnacks", Channel::Email),
                    delivery("b", 1, "flytesnacks", Channel::Slack),
                    delivery("c", 2, "other_100%", Channel::Pagerduty),
                ],
                1000,
            ))
            .await
            .unwrap();
        ledger.lease_due(1000, 10, LEASE).await.unwrap();
        ledger
            .record(vec![Outcome::Dead {
                id: "b".into(),
                error: "x".into(),
            }])
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
                vec![f(FilterField::Name, FilterOp::Eq, &["exec-a"])]
            )
            .await,
            vec!["a"]
        );
        ledger.close().await;
    }
}
