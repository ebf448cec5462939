//! Pub/Sub, as FlyteAdmin uses it on GCP: Enqueue publishes to `publisher.topicName`, the
//! processor reads the subscription `processor.queueName`, both in project `gcp.projectId`.
//!
//! The official client streams messages with its own lease management (it keeps extending the
//! ack deadline of a message it holds). This broker keeps each received message's handler until
//! the processor settles it, under a receipt of our own. The client does not read
//! `PUBSUB_EMULATOR_HOST`; we do, and then talk to the emulator with anonymous credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    messages: tokio::sync::Mutex<mpsc::Receiver<(Message, Handler)>>,
    held: Mutex<HashMap<String, Handler>>,
    next_receipt: std::sync::atomic::AtomicU64,
    stream_task: tokio::task::AbortHandle,
    /// Why the subscription cannot be read, while its stream is down.
    down: Arc<Mutex<Option<String>>>,
}

/// How long the client asks Pub/Sub to hold a message it has received, renewing it while the
/// message is held here. The client's default is 60 s; when a replica dies, that is how long the
/// messages it held stay away from the others, so it is kept at Pub/Sub's minimum.
const LEASE_EXTENSION: Duration = Duration::from_secs(10);

/// How many unsettled messages one replica takes at a time (the client's default is 1,000). What
/// one replica holds, the others cannot have, and a replica that dies holds it for a lease; the
/// processor settles a message in milliseconds, so a small window costs no throughput.
const MAX_OUTSTANDING: i64 = 64;

/// Pause before reopening a stream that ended: the client retries transient errors itself and
/// ends the stream only on one it deems permanent (a missing subscription, a refused credential),
/// which an operator may yet fix.
const REOPEN_DELAY: Duration = Duration::from_secs(5);

/// Forwards the subscription's messages to the broker, reopening the stream whenever it ends; each
/// end is passed on as an error so that health and logs show it. Returns when the broker is gone.
async fn run_stream(
    subscriber: Subscriber,
    subscription: String,
    tx: mpsc::Sender<(Message, Handler)>,
    down: Arc<Mutex<Option<String>>>,
) {
    let set_down = |why: Option<String>| *down.lock().expect("down lock poisoned") = why;
    loop {
        let mut stream = subscriber
            .subscribe(subscription.clone())
            .set_max_lease_extension(LEASE_EXTENSION)
            .set_max_outstanding_messages(MAX_OUTSTANDING)
            .build();
        // A reopened stream counts as up once it delivers, or once it has stayed open a while.
        let up_after = tokio::time::sleep(REOPEN_DELAY * 2);
        tokio::pin!(up_after);
        let mut failure = None;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = &mut up_after, if down.lock().expect("down lock poisoned").is_some() => {
                    set_down(None);
                    continue;
                }
            };
            let Some(item) = item else { break };
            match &item {
                Ok(_) => set_down(None),
                Err(e) => failure = Some(format!("Pub/Sub subscription {subscription}: {e}")),
            }
            let Ok(item) = item else { continue };
            if tx.send(item).await.is_err() {
                return;
            }
        }
        let why = failure.unwrap_or_else(|| format!("the stream of {subscription} ended"));
        tracing::warn!("{why}; reopening it in {REOPEN_DELAY:?}");
        set_down(Some(why));
        tokio::time::sleep(REOPEN_DELAY).await;
    }
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
        // The stream runs for the life of the broker; a bounded channel is its backpressure.
        let (tx, rx) = mpsc::channel(MAX_OUTSTANDING as usize);
        let down = Arc::new(Mutex::new(None));
        let stream_task = tokio::spawn(run_stream(subscriber, subscription, tx, down.clone()));
        Ok(Self {
            publisher,
            messages: tokio::sync::Mutex::new(rx),
            held: Mutex::new(HashMap::new()),
            next_receipt: Default::default(),
            stream_task: stream_task.abort_handle(),
            down,
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

/// A broker that is dropped (a processor stopping, or a test's stand-in for a crash) closes its
/// stream, so that what it was sent but never handed out goes back to Pub/Sub at once; messages
/// it still held are nacked as their handlers drop with it.
impl Drop for PubSubBroker {
    fn drop(&mut self) {
        self.stream_task.abort();
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
            // Nothing came: say why when the stream is down, so that health shows it.
            Err(_) => {
                return match self.down.lock().expect("down lock poisoned").clone() {
                    Some(why) => Err(QueueError::Broker(why)),
                    None => Ok(out),
                };
            }
            Ok(None) => return Err(QueueError::Broker("the Pub/Sub stream task stopped".into())),
            Ok(Some(item)) => item,
        };
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let (message, handler) = item;
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
