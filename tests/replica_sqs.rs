//! Issue #11: two replicas with `notifications.type: aws` on one SQS queue (moto) and one
//! PostgreSQL ledger, sending by SES (moto, read back from its state). Nothing is killed, so every
//! notification goes out exactly once: the Enqueue calls spread over both replicas, and
//! FlyteAdmin's own messages, which both replicas' processors compete for on the queue.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aws::*;
use common::postgres::TestDatabase;
use common::replicas::{Endpoints, delivery_id_of};
use common::*;
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;
use futures::StreamExt;

const REPLICAS: usize = 2;
const ENQUEUED: usize = 1000;
/// Published to the topic as FlyteAdmin publishes, besides: the queue's own way in.
const FROM_FLYTEADMIN: usize = 100;

fn flyteadmin_email(i: usize) -> EmailMessage {
    EmailMessage {
        recipients_email: vec!["oncall@example.com".into()],
        sender_email: SENDER.into(),
        subject_line: format!("flyteadmin-{i:03} has failed"),
        body: format!("<p>flyteadmin-{i:03}</p>"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_sqs_queue_and_one_postgres_ledger_send_each_notification_once() {
    let aws = Aws::start().await;
    let database = TestDatabase::create().await;
    let mut db = database.session().await;
    let base = aws.config();
    let retry = "flyteNotify:\n  retry: { baseDelay: 100ms, maxDelay: 500ms, maxAttempts: 3 }\n";
    assert!(
        base.contains(retry),
        "the Aws helper's config changed:\n{base}"
    );
    // Many quick retries: a busy moto must not make a delivery die.
    let config = base.replace(
        retry,
        &format!(
            "flyteNotify:\n  store: postgres\n  postgres: {{ dsn: \"{}\" }}\n  \
             retry: {{ baseDelay: 100ms, maxDelay: 1s, maxAttempts: 100 }}\n",
            database.dsn()
        ),
    );
    let env = aws.moto.server_env("AWS_ENDPOINT_URL");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Server> = (0..REPLICAS)
        .map(|i| {
            let home = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start_env(&home, &config, &env)
        })
        .collect();
    let endpoints = Arc::new(Endpoints::new(REPLICAS));
    for (i, replica) in replicas.iter().enumerate() {
        endpoints.set(i, Some(replica.url()));
    }

    let started = Instant::now();
    let enqueue = futures::stream::iter(0..ENQUEUED)
        .map(|i| {
            let endpoints = endpoints.clone();
            async move {
                let name = format!("sqs-{i:04}");
                let request = EnqueueRequest {
                    request_id: name.clone(),
                    execution: Some(failed_execution(&name)),
                    notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
                    webhooks: Vec::new(),
                };
                let placed = endpoints
                    .enqueue(request, i % REPLICAS, Duration::from_secs(60))
                    .await
                    .unwrap();
                // Nothing is down: every call is answered by the replica it went to.
                assert!(placed.failures.is_empty(), "{name}: {placed:?}");
                (placed.response.delivery_ids[0].clone(), name)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let publish = async {
        for i in 0..FROM_FLYTEADMIN {
            aws.publish_like_flyteadmin(&flyteadmin_email(i)).await;
        }
    };
    let (accepted, ()) = tokio::join!(enqueue, publish);
    let accepted: BTreeMap<String, String> = accepted.into_iter().collect();
    assert_eq!(accepted.len(), ENQUEUED);
    let enqueued_in = started.elapsed();

    let total = ENQUEUED + FROM_FLYTEADMIN;
    let deadline = Instant::now() + Duration::from_secs(300);
    let sent = loop {
        let sent = aws.moto.sent_raw_messages().await;
        if sent.len() >= total {
            let mut client = replicas[0].client().await;
            if list_all(&mut client, "").await.is_empty() {
                break sent;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} sent; logs:\n{}\n----\n{}",
            sent.len(),
            replicas[0].log(),
            replicas[1].log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let all_sent_in = started.elapsed();
    // Every message on the queue was recorded and deleted; a second send would show by now.
    aws.wait_for_empty_queue().await;
    let sent = {
        let again = aws.moto.sent_raw_messages().await;
        assert!(again.len() >= sent.len());
        again
    };

    let mut by_delivery: HashMap<String, usize> = HashMap::new();
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    for (_, _, raw) in &sent {
        let id = delivery_id_of(raw.as_bytes()).expect("a Message-ID of ours");
        *by_delivery.entry(id).or_insert(0) += 1;
        *by_subject
            .entry(parse_mail_bytes(raw.as_bytes()).subject)
            .or_insert(0) += 1;
    }
    let lost: Vec<&String> = accepted
        .keys()
        .filter(|id| !by_delivery.contains_key(*id))
        .collect();
    let duplicates: Vec<(&String, &usize)> = by_delivery.iter().filter(|(_, n)| **n > 1).collect();
    let flyteadmin_sent: Vec<usize> = (0..FROM_FLYTEADMIN)
        .map(|i| {
            by_subject
                .get(&flyteadmin_email(i).subject_line)
                .copied()
                .unwrap_or(0)
        })
        .collect();
    let recorded_from_queue: i64 =
        sqlx::query_scalar("SELECT count(*) FROM requests WHERE request_id LIKE 'sqs:%'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    eprintln!(
        "two replicas, one SQS queue, one PostgreSQL ledger: {ENQUEUED} enqueued in \
         {enqueued_in:.1?} and {FROM_FLYTEADMIN} published as FlyteAdmin does; {} sent by SES, \
         all by {all_sent_in:.1?}; lost {}, duplicates {}; {recorded_from_queue} recorded from \
         the queue",
        sent.len(),
        lost.len(),
        duplicates.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(duplicates.is_empty(), "sent twice: {duplicates:?}");
    assert!(
        flyteadmin_sent.iter().all(|n| *n == 1),
        "FlyteAdmin's messages, sends each: {flyteadmin_sent:?}"
    );
    assert_eq!(recorded_from_queue, FROM_FLYTEADMIN as i64);
    assert_eq!(sent.len(), total);
}
