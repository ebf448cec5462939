//! Pub/Sub, as FlyteAdmin uses it on GCP: Enqueue publishes to `publisher.topicName`, the
//! processor reads the subscription `processor.queueName`, both in project `gcp.projectId`.
//!
//! The official client streams messages with its own lease management (it keeps extending the
//! ack deadline of a message it holds). This broker keeps each received message's handler until
//! the processor settles it, under a receipt of our own. The client does not read
//! `PUBSUB_EMULATOR_HOST`; we do, and then talk to the emulator with anonymous credentials.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_pubsub::client::{Publisher, Subscriber};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use tokio::sync::mpsc;

use super::QueueError;
use super::broker::{Broker, Outgoing, Received};
use super::wire::{self, DELIVERY_ID_ATTRIBUTE, DELIVERY_KIND, PUBSUB_KIND_ATTRIBUTE};

/// What the config names.
pub struct PubSubSettings {
    pub project_id: String,
    pub topic: String,
    pub subscription: String,
    /// e.g. `http://127.0.0.1:8085`: the emulator (anonymous), or a private endpoint.
    pub endpoint: Option<String>,
}

pub struct PubSubBroker {
    publisher: Publisher,
    messages: tokio::sync::Mutex<mpsc::Receiver<Result<(Message, Handler), String>>>,
    held: Mutex<HashMap<String, Handler>>,
    next_receipt: std::sync::atomic::AtomicU64,
}

fn full_name(project: &str, kind: &str, name: &str) -> String {
    // FlyteAdmin's config names them short; a full name is taken as it is.
    if name.starts_with("projects/") {
        name.to_string()
    } else {
        format!("projects/{project}/{kind}/{name}")
    }
}

impl PubSubBroker {
    pub async fn connect(settings: PubSubSettings) -> Result<Self, QueueError> {
        let topic = full_name(&settings.project_id, "topics", &settings.topic);
        let subscription = full_name(
            &settings.project_id,
            "subscriptions",
            &settings.subscription,
        );
        let endpoint = settings.endpoint.or_else(|| {
            std::env::var("PUBSUB_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .map(|h| format!("http://{h}"))
        });
        let anonymous = || google_cloud_auth::credentials::anonymous::Builder::new().build();
        let mut publisher = Publisher::builder(topic.clone());
        let mut subscriber = Subscriber::builder();
        if let Some(endpoint) = &endpoint {
            publisher = publisher
                .with_endpoint(endpoint.clone())
                .with_credentials(anonymous());
            subscriber = subscriber
                .with_endpoint(endpoint.clone())
                .with_credentials(anonymous());
        }
        let publisher = publisher
            .build()
            .await
            .map_err(|e| QueueError::Broker(format!("Pub/Sub publisher for {topic}: {e}")))?;
        let subscriber = subscriber
            .build()
            .await
            .map_err(|e| QueueError::Broker(format!("Pub/Sub subscriber: {e}")))?;
        // The stream runs for the life of the process; a bounded channel is its backpressure.
        let (tx, rx) = mpsc::channel(64);
        let mut stream = subscriber.subscribe(subscription.clone()).build();
        tokio::spawn(async move {
            let _subscriber = subscriber;
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| format!("Pub/Sub subscription {subscription}: {e}"));
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            publisher,
            messages: tokio::sync::Mutex::new(rx),
            held: Mutex::new(HashMap::new()),
            next_receipt: Default::default(),
        })
    }

    fn hold(&self, handler: Handler) -> String {
        let receipt = self
            .next_receipt
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string();
        self.held
            .lock()
            .expect("held lock poisoned")
            .insert(receipt.clone(), handler);
        receipt
    }

    fn take(&self, receipt: &str) -> Result<Handler, QueueError> {
        self.held
            .lock()
            .expect("held lock poisoned")
            .remove(receipt)
            .ok_or_else(|| QueueError::Broker(format!("no message held under receipt {receipt}")))
    }
}

#[async_trait]
impl Broker for PubSubBroker {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    async fn publish(&self, message: Outgoing) -> Result<(), QueueError> {
        let (data, mut attributes, delivery_id) = match &message {
            Outgoing::Email {
                delivery_id,
                message,
            } => {
                let (data, attributes) = wire::to_pubsub_email(message);
                (data, attributes, delivery_id)
            }
            Outgoing::Delivery { delivery_id } => (
                Vec::new(),
                HashMap::from([(PUBSUB_KIND_ATTRIBUTE.to_string(), DELIVERY_KIND.to_string())]),
                delivery_id,
            ),
        };
        if !delivery_id.is_empty() {
            attributes.insert(DELIVERY_ID_ATTRIBUTE.to_string(), delivery_id.clone());
        }
        let message = Message::new().set_data(data).set_attributes(attributes);
        self.publisher
            .publish(message)
            .await
            .map_err(|e| QueueError::Broker(format!("Pub/Sub publish: {e}")))?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let mut messages = self.messages.lock().await;
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, messages.recv()).await {
            Err(_) => return Ok(out),
            Ok(None) => return Err(QueueError::Broker("the Pub/Sub stream ended".into())),
            Ok(Some(item)) => item,
        };
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let (message, handler) = item.map_err(QueueError::Broker)?;
            let inbound = wire::from_pubsub(&message.data, &message.attributes);
            out.push(Received {
                message_id: message.message_id.clone(),
                receipt: self.hold(handler),
                inbound,
            });
            if out.len() < max {
                next = messages.try_recv().ok();
            }
        }
        Ok(out)
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.take(receipt)?.ack();
        Ok(())
    }

    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        // Pub/Sub redelivers a nacked message at once. Holding it (the client keeps its lease)
        // until the delay has passed gives the delay without a deadline of our own.
        let handler = self.take(receipt)?;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            handler.nack();
        });
        Ok(())
    }
}
