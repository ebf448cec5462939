//! The processor: takes messages off a cloud queue and records them in the ledger, then deletes
//! them. It never sends: the worker sends from the ledger, so a message is settled as soon as the
//! ledger holds it, and a send that fails is retried on the ledger's schedule (see `ingest`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::broker::Broker;
use super::ingest::{Ingested, ingest};
use crate::ledger::Ledger;

/// Messages one receive asks for (SQS's maximum per call).
const BATCH: usize = 10;
/// How long one receive waits for messages. Short enough that a broker which stops answering
/// mid-poll is noticed (the SQS call's own timeout is a few seconds longer) within seconds, long
/// enough that an idle processor costs a request every few seconds.
const WAIT: Duration = Duration::from_secs(5);
/// Backoff while the broker cannot be reached.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);
/// When recording fails (the ledger is full, say), the message comes back after this long.
const LEDGER_RETRY: Duration = Duration::from_secs(5);

/// Whether the processor can reach its queue: None when it can, else why not. Health reports
/// NOT_SERVING for the processing side meanwhile.
pub type Reachable = watch::Sender<Option<String>>;

pub struct Processor {
    pub broker: Arc<dyn Broker>,
    pub ledger: Arc<dyn Ledger>,
    /// Called after new deliveries are recorded, so that the worker sends them at once.
    pub wake: Arc<dyn Fn() + Send + Sync>,
    pub trouble: Arc<Reachable>,
}

impl Processor {
    pub async fn run(self, mut stopping: watch::Receiver<bool>) {
        let mut retry = FIRST_RETRY;
        loop {
            if *stopping.borrow() {
                return;
            }
            let received = tokio::select! {
                r = self.broker.receive(BATCH, WAIT) => r,
                _ = stopping.changed() => return,
            };
            let messages = match received {
                Ok(messages) => {
                    if self.trouble.borrow().is_some() {
                        tracing::warn!(queue = self.broker.name(), "the queue is reachable again");
                        self.trouble.send_replace(None);
                    }
                    retry = FIRST_RETRY;
                    messages
                }
                Err(e) => {
                    let reason = format!("{} cannot be read: {e}", self.broker.name());
                    if self.trouble.borrow().is_none() {
                        tracing::error!("{reason}; retrying with backoff");
                    }
                    self.trouble.send_replace(Some(reason));
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stopping.changed() => return,
                    }
                    retry = (retry * 2).min(LAST_RETRY);
                    continue;
                }
            };
            let mut recorded = false;
            for message in messages {
                match ingest(
                    self.ledger.as_ref(),
                    self.broker.name(),
                    &message.message_id,
                    message.inbound,
                )
                .await
                {
                    Ok(ingested) => {
                        recorded |= matches!(ingested, Ingested::Recorded { .. });
                        // A failed delete only means the message comes back, and is then a
                        // duplicate of what is recorded.
                        if let Err(e) = self.broker.ack(&message.receipt).await {
                            tracing::warn!(
                                queue = self.broker.name(),
                                message_id = %message.message_id,
                                "recorded, but the message could not be removed: {e}; it will be \
                                 received again and found recorded"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            queue = self.broker.name(),
                            message_id = %message.message_id,
                            "cannot record the message, leaving it on the queue: {e}"
                        );
                        let _ = self.broker.nack(&message.receipt, LEDGER_RETRY).await;
                    }
                }
            }
            if recorded {
                (self.wake)();
            }
        }
    }
}
