//! Issue #11: two replicas with `notifications.type: aws` on one SQS queue (moto) and one
//! PostgreSQL ledger, sending by SES (moto, read back from its state). Nothing is killed, so every
//! notification goes out exactly once: the Enqueue calls spread over both replicas, and
//! FlyteAdmin's own messages, which both replicas' processors compete for on the queue. The one
//! exception is the one at-least-once allows: a send whose SES call timed out (moto, busy, may
//! still take it) is sent again by the retry; the report lists such sends.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aws::*;
use common::postgres::TestDatabase;
use common::replicas::{Endpoints, delivery_id_of};
use common::*;
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{EnqueueRequest, GetDeliveryRequest, delivery_event};
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
                    deadline: None,
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
    let enqueue = async {
        let accepted = enqueue.await;
        (accepted, started.elapsed())
    };
    let publish = async {
        for i in 0..FROM_FLYTEADMIN {
            aws.publish_like_flyteadmin(&flyteadmin_email(i)).await;
        }
        started.elapsed()
    };
    let ((accepted, enqueued_in), published_in) = tokio::join!(enqueue, publish);
    let accepted: BTreeMap<String, String> = accepted.into_iter().collect();
    assert_eq!(accepted.len(), ENQUEUED);

    // Done when the queue is drained and nothing is pending. Asked of the replicas and of SQS
    // first: moto's whole-state dump, which lists what SES sent, is costly to make, and a moto
    // kept busy answers SES slowly.
    let total = ENQUEUED + FROM_FLYTEADMIN;
    let deadline = Instant::now() + Duration::from_secs(300);
    let sent = loop {
        let mut client = replicas[0].client().await;
        if aws.messages_in_queue().await == (0, 0) && list_all(&mut client, "").await.is_empty() {
            let sent = aws.moto.sent_raw_messages().await;
            if sent.len() >= total {
                break sent;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not all sent; logs:\n{}\n----\n{}",
            replicas[0].log(),
            replicas[1].log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let all_sent_in = started.elapsed();

    let mut by_delivery: HashMap<String, usize> = HashMap::new();
    // FlyteAdmin's messages are known by their subjects: each must be one delivery.
    let mut by_subject: HashMap<String, HashSet<String>> = HashMap::new();
    for (_, _, raw) in &sent {
        let id = delivery_id_of(raw.as_bytes()).expect("a Message-ID of ours");
        *by_delivery.entry(id.clone()).or_insert(0) += 1;
        by_subject
            .entry(parse_mail_bytes(raw.as_bytes()).subject)
            .or_default()
            .insert(id);
    }
    let lost: Vec<&String> = accepted
        .keys()
        .filter(|id| !by_delivery.contains_key(*id))
        .collect();
    // A send whose SES call timed out may have been taken by SES all the same, and the retry
    // sends it again: at least once, which a timeout allows. Any other second send is a fault
    // (two replicas sending one delivery, a message processed twice).
    let duplicates: Vec<(&String, &usize)> = by_delivery.iter().filter(|(_, n)| **n > 1).collect();
    let mut client = replicas[0].client().await;
    let mut after_timeouts = Vec::new();
    let mut unexplained = Vec::new();
    for (id, n) in &duplicates {
        let history = client
            .get_delivery(GetDeliveryRequest {
                delivery_id: (*id).clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .history;
        let timeouts = history
            .iter()
            .filter(|e| e.kind == delivery_event::Kind::Failed as i32)
            // The SES sender's own timeout, or the worker's (sendTimeout) around it.
            .filter(|e| e.detail.contains("no answer within") || e.detail.contains("timed out"))
            .count();
        let line = format!("{id} sent {n} times: {history:?}");
        if **n <= 1 + timeouts {
            after_timeouts.push(line);
        } else {
            unexplained.push(line);
        }
    }
    let flyteadmin_deliveries: Vec<usize> = (0..FROM_FLYTEADMIN)
        .map(|i| {
            by_subject
                .get(&flyteadmin_email(i).subject_line)
                .map_or(0, HashSet::len)
        })
        .collect();
    let recorded_from_queue: i64 =
        sqlx::query_scalar("SELECT count(*) FROM requests WHERE request_id LIKE 'sqs:%'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    eprintln!(
        "two replicas, one SQS queue, one PostgreSQL ledger: {ENQUEUED} enqueued in \
         {enqueued_in:.1?} and {FROM_FLYTEADMIN} published as FlyteAdmin does in \
         {published_in:.1?}; {} sent by SES, all by {all_sent_in:.1?}; lost {}, sent twice {} \
         (after a timed-out SES call: {:?}); {recorded_from_queue} recorded from the queue",
        sent.len(),
        lost.len(),
        duplicates.len(),
        after_timeouts
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        unexplained.is_empty(),
        "sent twice, and not after a timeout:\n{}\nlogs:\n{}\n----\n{}",
        unexplained.join("\n"),
        replicas[0].log(),
        replicas[1].log()
    );
    assert!(
        flyteadmin_deliveries.iter().all(|n| *n == 1),
        "FlyteAdmin's messages, deliveries sent of each: {flyteadmin_deliveries:?}"
    );
    assert_eq!(recorded_from_queue, FROM_FLYTEADMIN as i64);
    assert_eq!(by_delivery.len(), total, "deliveries sent");
}
