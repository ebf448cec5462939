//! FlyteAdmin's AWS layout in moto, for the tests of `notifications.type: aws`.

use std::time::{Duration, Instant};

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use flyte_notify::proto::flyteidl::admin::EmailMessage;
use flyte_notify::queue::wire;

use super::*;

pub const SENDER: &str = "flyte@example.com";
pub const QUEUE: &str = "flyte-notify";
/// The queues' visibility timeout: a message a killed processor held comes back within the
/// tests' patience (SQS's default is 30 s).
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Aws {
    pub moto: Moto,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub topic_arn: String,
    pub queue_url: String,
    /// A second queue on the same topic: what a FlyteAdmin processor there would receive.
    pub observer_url: String,
}

impl Aws {
    /// moto with FlyteAdmin's AWS layout: a topic, and a queue subscribed to it (not raw
    /// delivery, so the queue receives SNS's envelope).
    pub async fn start() -> Aws {
        Self::on(Moto::start()).await
    }

    /// The topology on `moto`: after a restart of moto, the same names give the same ARN and URLs.
    pub async fn on(moto: Moto) -> Aws {
        let credentials = Credentials::new("testing", "testing", None, None, "tests");
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .endpoint_url(moto.url())
                .region(Region::new(AWS_REGION))
                .credentials_provider(credentials.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .endpoint_url(moto.url())
                .region(Region::new(AWS_REGION))
                .credentials_provider(credentials)
                .build(),
        );
        let topic_arn = sns
            .create_topic()
            .name("flyte-notifications")
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let mut urls = Vec::new();
        for name in [QUEUE, "observer"] {
            let url = sqs
                .create_queue()
                .queue_name(name)
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                    VISIBILITY_TIMEOUT.as_secs().to_string(),
                )
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
                .clone();
            sns.subscribe()
                .topic_arn(&topic_arn)
                .protocol("sqs")
                .endpoint(arn)
                .send()
                .await
                .unwrap();
            urls.push(url);
        }
        let observer_url = urls.pop().unwrap();
        let queue_url = urls.pop().unwrap();
        moto.verify_sender(SENDER).await;
        Aws {
            moto,
            sns,
            sqs,
            topic_arn,
            queue_url,
            observer_url,
        }
    }

    pub fn config(&self) -> String {
        format!(
            r#"
notifications:
  type: aws
  aws: {{ region: {AWS_REGION} }}
  publisher: {{ topicName: "{topic}" }}
  processor: {{ queueName: {QUEUE}, accountId: "123456789012" }}
  emailer:
    sender: {SENDER}
    subject: "Notice: Execution \"{{{{ name }}}}\" has {{{{ phase }}}} in \"{{{{ domain }}}}\"."
flyteNotify:
  retry: {{ baseDelay: 100ms, maxDelay: 500ms, maxAttempts: 3 }}
"#,
            topic = self.topic_arn
        )
    }

    pub fn server(&self, dir: &std::path::Path) -> Server {
        let env = self.moto.server_env("AWS_ENDPOINT_URL");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::start_env(dir, &self.config(), &env)
    }

    /// Publishes to the topic exactly as FlyteAdmin does.
    pub async fn publish_like_flyteadmin(&self, message: &EmailMessage) {
        let (subject, body) = wire::to_sns_email(message);
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body)
            .send()
            .await
            .unwrap();
    }

    pub async fn messages_in_queue(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let n = |a: &A| attributes[a].parse::<u64>().unwrap();
        (
            n(&A::ApproximateNumberOfMessages),
            n(&A::ApproximateNumberOfMessagesNotVisible),
        )
    }

    pub async fn wait_for_sent(&self, count: usize) -> Vec<(String, Vec<String>, String)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = self.moto.sent_raw_messages().await;
            if sent.len() >= count || Instant::now() > deadline {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_empty_queue(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.messages_in_queue().await != (0, 0) {
            assert!(Instant::now() < deadline, "the queue never emptied");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
