//! What every cloud queue must do for the processor to lose nothing and repeat nothing: deliver
//! what is published, bring back what was not acknowledged (a processor that died mid-message),
//! delay what was handed back, forget what was acknowledged, and pass poison on as poison. Each
//! test runs on every backend in `backends()`: SQS (on moto) and Pub/Sub (on the emulator).
//!
//! The embedded queue is not a broker: it is the ledger itself (see `queue::embedded`), so the
//! same properties are the ledger's lease operations, and tests/ledger_conformance.rs checks them
//! on SQLite and PostgreSQL: a leased delivery is hidden until its lease runs out and then comes
//! back (`leases_hide_a_delivery_until_they_run_out`), a released one returns after its delay
//! (`a_released_lease_makes_the_delivery_due_again_after_the_delay`), a recorded one is gone, a
//! dead process's leases end (`reopening_the_single_process_store_ends_the_leases_a_dead_process_left`),
//! and an unreadable row dies alone. Poison cannot reach it: Enqueue validates what it stores.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aws::{Aws, QUEUE, VISIBILITY_TIMEOUT};
use common::pubsub::{Emulator, PROJECT};
use common::*;
use flyte_notify::ledger::Ledger;
use flyte_notify::ledger::sqlite::SqliteLedger;
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::queue::broker::{Broker, Outgoing, Received};
use flyte_notify::queue::ingest::{Ingested, ingest};
use flyte_notify::queue::pubsub::{PubSubBroker, PubSubSettings};
use flyte_notify::queue::sqs::{SqsBroker, SqsSettings};
use flyte_notify::queue::wire::Inbound;

/// The Pub/Sub subscription's ack deadline (the service's minimum).
const ACK_DEADLINE: Duration = Duration::from_secs(10);

/// A running backend: its broker, a way to put a raw (non-FlyteAdmin) message on it, and the
/// peer process, kept alive as long as this is.
struct Backend {
    broker: Arc<dyn Broker>,
    /// Another broker on the same queue: a second process, or the one after a crash.
    connect: Box<dyn Fn() -> futures::future::BoxFuture<'static, Arc<dyn Broker>> + Send + Sync>,
    publish_raw: Box<dyn Fn(&'static str) -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
    _peer: Box<dyn std::any::Any + Send>,
    /// How long an unacknowledged message stays away before it is delivered again.
    redelivery_after: Duration,
    /// Whether a second processor reliably gets what a dead one held. Known defect, Pub/Sub:
    /// the dead broker's stream lives on in the client and may keep the message leased for
    /// longer than this test waits (it passed about half the time); issue #9's note has it.
    hands_over_after_a_crash: bool,
}

async fn sqs() -> Backend {
    // FlyteAdmin's layout in moto, the same one the end-to-end tests use.
    let aws = Aws::start().await;
    let topic_arn = aws.topic_arn.clone();
    let sns = aws.sns.clone();
    let moto_url = aws.moto.url();
    // The endpoint as an operator would set it in the config; credentials from moto's fixed ones.
    // SAFETY: set before any SDK config is loaded in this process, always to the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let url = moto_url;
    let topic = topic_arn.clone();
    let connect = move || {
        let settings = SqsSettings {
            region: Some(AWS_REGION.into()),
            endpoint_url: Some(url.clone()),
            topic_arn: topic.clone(),
            queue_name: QUEUE.into(),
            account_id: String::new(),
        };
        Box::pin(
            async move { Arc::new(SqsBroker::connect(settings).await.unwrap()) as Arc<dyn Broker> },
        ) as futures::future::BoxFuture<'static, Arc<dyn Broker>>
    };
    let broker = connect().await;
    let publish_raw = {
        let sns = sns.clone();
        let topic_arn = topic_arn.clone();
        Box::new(move |body: &'static str| {
            let sns = sns.clone();
            let topic_arn = topic_arn.clone();
            Box::pin(async move {
                sns.publish()
                    .topic_arn(topic_arn)
                    .subject("garbage")
                    .message(body)
                    .send()
                    .await
                    .unwrap();
            }) as futures::future::BoxFuture<'static, ()>
        })
    };
    Backend {
        broker,
        connect: Box::new(connect),
        publish_raw,
        _peer: Box::new(aws),
        redelivery_after: VISIBILITY_TIMEOUT,
        hands_over_after_a_crash: true,
    }
}

async fn pubsub() -> Option<Backend> {
    let emulator = Emulator::start_unless_skipped("broker_conformance: the Pub/Sub backend")?;
    emulator
        .create("topic-a", "sub-a", ACK_DEADLINE.as_secs() as u32)
        .await;
    let endpoint = emulator.url();
    let connect = move || {
        let settings = PubSubSettings {
            project_id: PROJECT.into(),
            topic: "topic-a".into(),
            subscription: "sub-a".into(),
            endpoint: Some(endpoint.clone()),
        };
        Box::pin(async move {
            Arc::new(PubSubBroker::connect(settings).await.unwrap()) as Arc<dyn Broker>
        }) as futures::future::BoxFuture<'static, Arc<dyn Broker>>
    };
    let broker = connect().await;
    let emulator = Arc::new(emulator);
    let publisher = emulator.clone();
    let publish_raw = Box::new(move |body: &'static str| {
        let emulator = publisher.clone();
        Box::pin(async move {
            emulator
                .publish(
                    "topic-a",
                    body.as_bytes(),
                    HashMap::from([("key".to_string(), "garbage".to_string())]),
                )
                .await;
        }) as futures::future::BoxFuture<'static, ()>
    });
    Some(Backend {
        broker,
        connect: Box::new(connect),
        publish_raw,
        _peer: Box::new(emulator),
        redelivery_after: ACK_DEADLINE,
        hands_over_after_a_crash: true,
    })
}

/// SQS always; Pub/Sub unless this machine has no emulator (then it is named as skipped).
async fn backends() -> Vec<Backend> {
    let mut backends = vec![sqs().await];
    backends.extend(pubsub().await);
    backends
}

fn email(id: &str) -> Outgoing {
    Outgoing::Email {
        delivery_id: id.into(),
        message: EmailMessage {
            recipients_email: vec!["a@example.com".into()],
            sender_email: "flyte@example.com".into(),
            subject_line: format!("subject {id}"),
            body: "<p>b</p>".into(),
        },
    }
}

/// Receives until `count` messages arrived or `within` passed.
async fn receive(broker: &dyn Broker, count: usize, within: Duration) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while all.len() < count && Instant::now() < deadline {
        all.extend(broker.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_arrive_with_their_delivery_id_and_acked_ones_are_gone() {
    for backend in backends().await {
        let broker = backend.broker.as_ref();
        broker.publish(email("d1")).await.unwrap();
        broker
            .publish(Outgoing::Delivery {
                delivery_id: "d2".into(),
            })
            .await
            .unwrap();
        let got = receive(broker, 2, Duration::from_secs(10)).await;
        let mut ids: Vec<_> = got
            .iter()
            .map(|r| match &r.inbound {
                Inbound::Announced { delivery_id } => delivery_id.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["d1", "d2"]);
        for r in &got {
            broker.ack(&r.receipt).await.unwrap();
        }
        // Well past the visibility timeout: acknowledged means gone.
        tokio::time::sleep(backend.redelivery_after + Duration::from_secs(1)).await;
        assert!(receive(broker, 1, Duration::from_secs(2)).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_message_comes_back_and_is_recorded_once() {
    for backend in backends().await {
        if !backend.hands_over_after_a_crash {
            eprintln!(
                "skipped for {}: the known hand-over defect",
                backend.broker.name()
            );
            continue;
        }
        let Backend {
            broker: first_broker,
            connect,
            _peer,
            ..
        } = backend;
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.sqlite"))
            .await
            .unwrap();
        // FlyteAdmin's own message: no delivery id, so it becomes a delivery when received.
        first_broker
            .publish(Outgoing::Email {
                delivery_id: String::new(),
                message: EmailMessage {
                    recipients_email: vec!["a@example.com".into()],
                    sender_email: "flyte@example.com".into(),
                    subject_line: "s".into(),
                    body: "b".into(),
                },
            })
            .await
            .unwrap();
        let first = receive(first_broker.as_ref(), 1, Duration::from_secs(10)).await;
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            matches!(first[0].inbound, Inbound::FlyteAdminEmail(_)),
            "{first:?}"
        );
        let name = first_broker.name();
        let message_id = first[0].message_id.clone();
        let Ingested::Recorded { delivery_id } =
            ingest(&ledger, name, &message_id, first[0].inbound.clone())
                .await
                .unwrap()
        else {
            panic!("not recorded");
        };
        // The processor dies here, without an ack; another one takes over and gets the message
        // again, with the same id, once the first one's hold is gone.
        drop(first);
        drop(first_broker);
        let second = connect().await;
        let handed_over = Instant::now();
        // Measured: SQS after its 5 s visibility timeout; Pub/Sub (the emulator) after one ack
        // deadline of 10 s, sometimes three (30 s) when it hands the message to the dead
        // broker's closing stream again, and once, on a loaded CI machine, after more than 60 s.
        // The nack the dropped broker's handlers send does not reach the emulator before its
        // stream is gone (issue #9's note); the window is generous so that the property tested
        // is the hand-over, not the emulator's timing.
        let again = receive(second.as_ref(), 1, Duration::from_secs(150)).await;
        assert_eq!(again.len(), 1, "{again:?}");
        eprintln!("{name}: handed over after {:?}", handed_over.elapsed());
        assert_eq!(again[0].message_id, message_id);
        assert_eq!(
            ingest(
                &ledger,
                name,
                &again[0].message_id,
                again[0].inbound.clone()
            )
            .await
            .unwrap(),
            Ingested::AlreadyRecorded { delivery_id }
        );
        second.ack(&again[0].receipt).await.unwrap();
        ledger.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_back_message_returns_after_its_delay_and_poison_arrives_as_poison() {
    for backend in backends().await {
        let broker = backend.broker.as_ref();
        (backend.publish_raw)("definitely not an EmailMessage").await;
        let got = receive(broker, 1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1);
        match &got[0].inbound {
            Inbound::Poison { error, raw } => {
                assert!(error.contains("\"garbage\""), "{error}");
                assert!(!raw.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let handed_back = Instant::now();
        broker
            .nack(&got[0].receipt, Duration::from_secs(3))
            .await
            .unwrap();
        let back = receive(broker, 1, Duration::from_secs(10)).await;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].message_id, got[0].message_id);
        assert!(
            handed_back.elapsed() >= Duration::from_secs(2),
            "came back after {:?}",
            handed_back.elapsed()
        );
        broker.ack(&back[0].receipt).await.unwrap();
    }
}
