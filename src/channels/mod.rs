//! Senders: one per way of putting a rendered message on the wire, and the router that picks one
//! for a delivery. Each sender says whether a failure is worth retrying; the worker owns the retry
//! schedule. Channels speak only the delivery vocabulary: they never see the ledger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::delivery::{Channel, DeliveryRef, Rendered};

pub mod email;
pub mod health;
pub mod net_guard;
pub mod pagerduty;
pub mod rate_limit;
mod rest;
mod routes;
pub mod secret;
pub mod slack;
pub mod teams;
pub mod webhook;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Might work later: the peer is down, busy, or said "try again".
    #[error("{message}")]
    Retryable {
        message: String,
        /// The peer's own hint (Retry-After, SMTP 4xx with a delay), honoured over the backoff.
        retry_after: Option<Duration>,
    },
    /// Will never work as it is: a rejected address, a malformed message, bad credentials.
    #[error("{message}")]
    Permanent { message: String },
    /// Not tried: the destination's rate limit has no slot before `retry_after`. Not a failure:
    /// it uses up no attempt budget and says nothing about the sender's health.
    #[error("waiting {} for the destination's rate limit", humantime::format_duration(*.retry_after))]
    Deferred { retry_after: Duration },
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SendError::Permanent {
            message: message.into(),
        }
    }

    /// A message of another channel than the sender's: a routing bug, which no retry mends.
    pub fn wrong_channel(sender: &str, message: &Rendered) -> Self {
        SendError::permanent(format!(
            "{sender} cannot send a {} message",
            message.channel()
        ))
    }
}

/// `e` and its causes, each once: client libraries' own texts often say only which step failed
/// ("dispatch failure", "error sending request") and leave the why to their sources.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// A short name for logs, metrics and ListPending errors: "maildir", "smtp", ...
    fn name(&self) -> &'static str;

    /// The channel whose `Rendered` variant this sender puts on the wire.
    fn channel(&self) -> Channel;

    /// Sends one attempt of `delivery`. Ids the peer sees (Message-ID, dedup keys) are derived
    /// from `delivery.id`, so that a re-send after a crash is recognisable as the same message.
    async fn send(&self, delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError>;

    /// Whether this sender has somewhere to send a message for `recipients`. A native channel
    /// has routes for some recipients only; the router emails the others, as FlyteAdmin does.
    fn handles(&self, _recipients: &[String]) -> bool {
        true
    }

    /// The destination `message` goes to and its rate limit, for per-destination token buckets
    /// (a Slack channel, a PagerDuty routing key, a webhook URL). The key is opaque and must not
    /// hold a secret in clear (hash it, or use the route's name). None: no limit.
    fn destination(&self, _message: &Rendered) -> Option<Destination> {
        None
    }

    /// Whether this sender can send an email whose content is a template kept at the provider
    /// (`EmailMessage::provider_template`): SendGrid and SES can; the others refuse it.
    fn provider_templates(&self) -> bool {
        false
    }
}

/// A destination for rate limiting: see `Sender::destination`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub key: String,
    pub limit: RateLimit,
}

/// At most `events` sends per `per`, with bursts of up to `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub events: u32,
    pub per: Duration,
}

/// Picks the sender for a delivery's channel: its own when one is configured, else email for
/// Slack and PagerDuty (FlyteAdmin mails those to the services' email-ingest addresses).
#[derive(Clone)]
pub struct Router {
    senders: HashMap<Channel, Arc<dyn Sender>>,
}

impl Router {
    pub fn new(email: Arc<dyn Sender>) -> Self {
        let mut senders = HashMap::new();
        senders.insert(Channel::Email, email);
        Self { senders }
    }

    /// Adds a native sender for its channel, replacing the email fallback for it.
    pub fn with(mut self, sender: Arc<dyn Sender>) -> Self {
        self.senders.insert(sender.channel(), sender);
        self
    }

    /// The sender for a delivery of `channel` to `recipients`: the channel's own when it has a
    /// route for them, else email for Slack and PagerDuty. None when nothing can send it (a
    /// webhook with no webhook sender).
    pub fn route(&self, channel: Channel, recipients: &[String]) -> Option<&Arc<dyn Sender>> {
        let native = self
            .senders
            .get(&channel)
            .filter(|s| channel == Channel::Email || s.handles(recipients));
        native.or(match channel {
            Channel::Slack | Channel::Pagerduty => self.senders.get(&Channel::Email),
            // Teams has no email-ingest address; a webhook has no email form.
            Channel::Email | Channel::Webhook | Channel::Teams => None,
        })
    }

    /// Whether a native sender has a route for `recipients` of `channel`.
    pub fn is_native(&self, channel: Channel, recipients: &[String]) -> bool {
        channel != Channel::Email
            && self
                .senders
                .get(&channel)
                .is_some_and(|s| s.handles(recipients))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Channel, &'static str);

    #[async_trait]
    impl Sender for Fake {
        fn name(&self) -> &'static str {
            self.1
        }
        fn channel(&self) -> Channel {
            self.0
        }
        async fn send(&self, _: &DeliveryRef, _: &Rendered) -> Result<(), SendError> {
            Ok(())
        }
    }

    #[test]
    fn native_senders_win_and_email_is_the_fallback_for_slack_and_pagerduty() {
        let router = Router::new(Arc::new(Fake(Channel::Email, "mail")));
        let name = |r: &Router, c| r.route(c, &[]).map(|s| s.name());
        assert_eq!(name(&router, Channel::Email), Some("mail"));
        assert_eq!(name(&router, Channel::Slack), Some("mail"));
        assert_eq!(name(&router, Channel::Pagerduty), Some("mail"));
        assert_eq!(name(&router, Channel::Webhook), None);
        let router = router.with(Arc::new(Fake(Channel::Slack, "slack")));
        assert_eq!(name(&router, Channel::Slack), Some("slack"));
        assert_eq!(name(&router, Channel::Pagerduty), Some("mail"));
    }
}
