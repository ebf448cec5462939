//! SQS fed by an SNS topic, as FlyteAdmin uses them on AWS: Enqueue publishes to the topic
//! (`publisher.topicName`, the topic's ARN); the processor reads the queue subscribed to it
//! (`processor.queueName`, owned by `processor.accountId`). The subscription delivers SNS's JSON
//! envelope (not raw delivery), which is what FlyteAdmin's processor expects too.
//!
//! The endpoint, region and credentials come from the AWS SDK's own conventions
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SNS`, `AWS_ENDPOINT_URL_SQS`, `AWS_REGION`, the default
//! credentials chain), with `aws.region` (or FlyteAdmin's older `region`) from the config first.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sqs::error::ProvideErrorMetadata;

use super::QueueError;
use super::broker::{Broker, Outgoing, Received};
use super::wire::{self, DELIVERY_ID_ATTRIBUTE, DELIVERY_KIND};

pub struct SqsBroker {
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    topic_arn: String,
    queue_url: String,
}

/// What the config names, resolved to what the SDK calls take.
pub struct SqsSettings {
    pub region: Option<String>,
    /// `flyteNotify.aws.endpointUrl`: wins over the SDK's AWS_ENDPOINT_URL variables.
    pub endpoint_url: Option<String>,
    pub topic_arn: String,
    pub queue_name: String,
    pub account_id: String,
}

fn broker_error(
    action: &str,
    e: impl ProvideErrorMetadata + std::error::Error + 'static,
) -> QueueError {
    // The SDK's Display says only "service error"; the code and message say what happened.
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => QueueError::Broker(format!("{action}: {code}: {message}")),
        (Some(code), None) => QueueError::Broker(format!("{action}: {code}")),
        _ => QueueError::Broker(format!("{action}: {}", aws_error_chain(&e))),
    }
}

/// The SDK's errors keep the useful part (connection refused, timeout) in their sources.
fn aws_error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl SqsBroker {
    /// Connects and looks up the queue's URL; fails when the queue does not exist or cannot be
    /// reached (the caller retries with `reconnectAttempts`).
    pub async fn connect(settings: SqsSettings) -> Result<Self, QueueError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = settings.region.filter(|r| !r.is_empty()) {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(url) = settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        // Bounded calls: a broker that stops answering must surface as an error (and in health),
        // not as a processor stuck on one call. The processor long-polls for 5 s.
        let timeouts = |operation: u64| {
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(operation))
                .build()
        };
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(&shared)
                .timeout_config(timeouts(10))
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&shared)
                .timeout_config(timeouts(8))
                .build(),
        );
        let mut lookup = sqs.get_queue_url().queue_name(&settings.queue_name);
        if !settings.account_id.is_empty() {
            lookup = lookup.queue_owner_aws_account_id(&settings.account_id);
        }
        let queue_url = lookup
            .send()
            .await
            .map_err(|e| broker_error(&format!("SQS queue {:?}", settings.queue_name), e))?
            .queue_url
            .ok_or_else(|| QueueError::Broker("SQS answered without a queue URL".into()))?;
        Ok(Self {
            sns,
            sqs,
            topic_arn: settings.topic_arn,
            queue_url,
        })
    }
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

#[async_trait]
impl Broker for SqsBroker {
    fn name(&self) -> &'static str {
        "sqs"
    }

    async fn publish(&self, message: Outgoing) -> Result<(), QueueError> {
        let (subject, body, delivery_id) = match &message {
            Outgoing::Email {
                delivery_id,
                message,
            } => {
                let (subject, body) = wire::to_sns_email(message);
                (subject, body, delivery_id)
            }
            Outgoing::Delivery { delivery_id } => (DELIVERY_KIND, delivery_id.clone(), delivery_id),
        };
        let mut publish = self
            .sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body);
        // Without an id the message is exactly FlyteAdmin's (SNS refuses an empty attribute).
        if !delivery_id.is_empty() {
            publish =
                publish.message_attributes(DELIVERY_ID_ATTRIBUTE, string_attribute(delivery_id));
        }
        publish
            .send()
            .await
            .map_err(|e| broker_error("SNS Publish", e))?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await
            .map_err(|e| broker_error("SQS ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                // Without a receipt handle a message can be neither deleted nor delayed; SQS
                // always sends one, and a message without can only be left to come back.
                let receipt = m.receipt_handle?;
                let message_id = m.message_id.unwrap_or_default();
                let inbound = wire::from_sns_envelope(m.body.as_deref().unwrap_or(""));
                Some(Received {
                    message_id,
                    receipt,
                    inbound,
                })
            })
            .collect())
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| broker_error("SQS DeleteMessage", e))?;
        Ok(())
    }

    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        // SQS's visibility timeout is at most 12 hours.
        let seconds = delay.as_secs().min(12 * 3600) as i32;
        self.sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| broker_error("SQS ChangeMessageVisibility", e))?;
        Ok(())
    }
}
