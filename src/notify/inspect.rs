//! One stored delivery as an operator looks at it (the console's delivery page): its message
//! rendered exactly as Preview renders one, from what the ledger holds, and where to see its
//! execution in Flyte. Read-only: nothing here touches the delivery.

use super::{Notifier, preview_message, render_payload, stored_context};
use crate::delivery::{Channel, Content, Payload};
use crate::error::Error;
use crate::ledger::{ActivityBucket, StoredDelivery};
use crate::proto::flytenotify::v1 as api;

/// What the console shows of a delivery besides its row and history.
pub struct Inspected {
    /// The message as it would go out now, or why it cannot be shown.
    pub message: Result<api::RenderedMessage, String>,
    /// The execution's page in the Flyte console (`consoleUrl`), or a Flyte 2 run's URL.
    pub execution_link: Option<String>,
}

impl Notifier {
    /// Renders `delivery` from its stored payload and its request's execution context. Secrets
    /// stay out for the reason they stay out of Preview: routing keys and signatures are added
    /// by the senders, after rendering, and the same `preview_message` builds both answers.
    /// None when the ledger holds no such delivery.
    pub async fn inspect(&self, delivery_id: &str) -> Result<Option<Inspected>, Error> {
        let Some((delivery, _)) = self.ledger.get(delivery_id).await? else {
            return Ok(None);
        };
        self.inspect_stored(&delivery).await.map(Some)
    }

    async fn inspect_stored(&self, delivery: &StoredDelivery) -> Result<Inspected, Error> {
        let payload = match &delivery.payload {
            Ok(p) => p,
            Err(e) => {
                return Ok(Inspected {
                    message: Err(format!("the stored payload cannot be read: {e}")),
                    execution_link: None,
                });
            }
        };
        let bytes = self
            .ledger
            .request_context(&delivery.request_id)
            .await?
            .unwrap_or_default();
        let execution = match stored_context(payload, &bytes) {
            Ok(execution) => execution,
            Err(e) => {
                return Ok(Inspected {
                    message: Err(e),
                    execution_link: None,
                });
            }
        };
        let execution_link = match &payload.content {
            Content::Flyte2(spec) if !spec.event.run_url.is_empty() => {
                Some(spec.event.run_url.clone())
            }
            _ => self.renderer.console_link(
                &delivery.execution.project,
                &delivery.execution.domain,
                &delivery.execution.name,
            ),
        };
        let message = match payload.content {
            // A digest's text depends on the members it goes out with, fixed at its first lease.
            Content::Digest => Err("a digest is rendered from its members when it is sent".into()),
            _ => render_payload(&self.renderer, self.wire(payload), payload, &execution)
                .map(|rendered| preview_message(payload.channel, 0, rendered)),
        };
        Ok(Inspected {
            message,
            execution_link,
        })
    }

    /// Delivered and failed outcomes per `bucket` over the `span` up to now, every bucket
    /// present (empty ones as zeros), oldest first: the console's chart.
    pub async fn activity(
        &self,
        span: std::time::Duration,
        bucket: std::time::Duration,
    ) -> Result<Vec<ActivityBucket>, Error> {
        let width = (bucket.as_millis() as i64).max(1);
        let count = (span.as_millis() as i64 / width).max(1);
        // Buckets aligned to whole multiples of the width (whole hours for an hour), so that the
        // chart's columns do not shift with every page load.
        let now = chrono::Utc::now().timestamp_millis();
        let since = (now.div_euclid(width) - count + 1) * width;
        let found = self.ledger.activity(since, bucket).await?;
        Ok((0..count)
            .map(|i| {
                let start = since + i * width;
                found
                    .iter()
                    .find(|b| b.start == start)
                    .copied()
                    .unwrap_or(ActivityBucket {
                        start,
                        ..ActivityBucket::default()
                    })
            })
            .collect())
    }

    /// The sender kind a stored payload goes out by, as Enqueue chose it: a Slack or PagerDuty
    /// recipient with a configured route is sent natively, any other one is emailed.
    fn wire(&self, payload: &Payload) -> Channel {
        match payload.channel {
            Channel::Email | Channel::Webhook | Channel::Teams => payload.channel,
            native => {
                let routed = payload
                    .recipients
                    .first()
                    .is_some_and(|r| self.routes.is_routed(native, r));
                if routed { native } else { Channel::Email }
            }
        }
    }
}
