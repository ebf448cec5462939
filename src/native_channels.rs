//! Builds the native senders (Slack, PagerDuty, webhooks, Teams) and Enqueue's route and webhook checks
//! from the config: part of the wiring in `lib`, kept apart because each channel reads its own
//! section and loads its own secrets. A secret that cannot be read stops the start, naming the
//! config key that points at it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::channels::net_guard::{GuardError, WebhookPolicy};
use crate::channels::pagerduty::{PagerDutyRoute, PagerDutySender, PagerDutySettings};
use crate::channels::secret::Secret;
use crate::channels::slack::{SlackDestination, SlackRoute, SlackSender, SlackSettings};
use crate::channels::teams::{TeamsSender, TeamsSettings};
use crate::channels::webhook::{WebhookDestination, WebhookSender, WebhookSettings};
use crate::channels::{RateLimit, Sender};
use crate::config::Config;
use crate::config::channels::{Rate, SecretRef};
use crate::notify::routes::Routes;
use crate::notify::webhooks::{UrlGuard, WebhookTargets};
use crate::proto::flyteidl::core::workflow_execution::Phase;

fn secret(r: SecretRef<'_>) -> anyhow::Result<Secret> {
    Secret::load(&r.key, r.env_var, r.file).map_err(anyhow::Error::msg)
}

fn optional_secret(r: SecretRef<'_>) -> anyhow::Result<Option<Secret>> {
    if r.is_set() {
        secret(r).map(Some)
    } else {
        Ok(None)
    }
}

fn limit(r: Rate) -> RateLimit {
    RateLimit {
        events: r.events,
        per: r.per,
    }
}

/// The native senders the config sets up, and what Enqueue needs to accept their deliveries.
pub struct Native {
    pub senders: Vec<Arc<dyn Sender>>,
    pub routes: Routes,
    pub webhook_targets: WebhookTargets,
    /// Which service each configured webhook destination's URL belongs to (its URL is a secret
    /// and stays with the sender; this is all Flyte 2's rules need of it).
    pub destination_flavors: std::collections::HashMap<String, crate::delivery::WebhookFlavor>,
}

pub fn build(config: &Config) -> anyhow::Result<Native> {
    let svc = &config.flyte_notify;
    let timeout = svc.worker.send_timeout;
    let mut senders: Vec<Arc<dyn Sender>> = Vec::new();
    let (webhook_sender, webhook_targets, destination_flavors) = webhooks(config, timeout)?;
    // Always there, as the webhook sender is: Teams messages go to URLs that requests name.
    let teams = TeamsSender::new(
        &webhook_sender,
        TeamsSettings {
            timeout,
            per_url: limit(svc.teams.rate_limit),
        },
    )
    .map_err(|e| anyhow::anyhow!("flyteNotify.teams: {e}"))?;
    senders.push(Arc::new(webhook_sender));
    senders.push(Arc::new(teams));
    if let Some(slack) = slack(config, timeout)? {
        senders.push(Arc::new(slack));
    }
    if let Some(pagerduty) = pagerduty(config, timeout)? {
        senders.push(Arc::new(pagerduty));
    }
    Ok(Native {
        senders,
        routes: routes(config),
        webhook_targets,
        destination_flavors,
    })
}

/// Which Slack and PagerDuty recipients are routed natively, and when PagerDuty is told.
fn routes(config: &Config) -> Routes {
    let svc = &config.flyte_notify;
    let trigger_on = svc
        .pagerduty
        .trigger_on
        .iter()
        .filter_map(|name| Phase::from_str_name(&name.to_ascii_uppercase()))
        .map(|p| p as i32)
        .collect();
    let slack: Vec<Vec<String>> = svc
        .slack
        .routes
        .iter()
        .map(|r| r.recipients.clone())
        .collect();
    let pagerduty: Vec<Vec<String>> = svc
        .pagerduty
        .routes
        .iter()
        .map(|r| r.recipients.clone())
        .collect();
    let slack_grouping: Vec<_> = svc
        .slack
        .routes
        .iter()
        .map(|r| r.grouping.clone())
        .collect();
    let pagerduty_grouping: Vec<_> = svc
        .pagerduty
        .routes
        .iter()
        .map(|r| r.grouping.clone())
        .collect();
    Routes::new(
        &slack,
        &pagerduty,
        trigger_on,
        svc.pagerduty.resolve_on_success,
    )
    .with_grouping(&svc.grouping.email, &slack_grouping, &pagerduty_grouping)
    .with_webhook_grouping(
        svc.webhooks
            .destinations
            .iter()
            .map(|d| (d.name.clone(), d.grouping.clone())),
    )
}

/// The native Slack sender, when any recipient has a route.
fn slack(config: &Config, timeout: Duration) -> anyhow::Result<Option<SlackSender>> {
    let c = &config.flyte_notify.slack;
    if c.routes.is_empty() {
        return Ok(None);
    }
    let mut routes = Vec::with_capacity(c.routes.len());
    for (i, r) in c.routes.iter().enumerate() {
        let key = format!("flyteNotify.slack.routes[{i}]");
        let webhook = r.webhook_url(&key);
        let destination = if webhook.is_set() {
            SlackDestination::IncomingWebhook {
                url: secret(webhook)?,
            }
        } else {
            SlackDestination::PostMessage {
                token: secret(r.token(&key))?,
                channel: r.channel.clone(),
            }
        };
        routes.push(SlackRoute {
            recipients: r.recipients.clone(),
            destination,
        });
    }
    let sender = SlackSender::new(SlackSettings {
        api_base_url: c.api_base_url.clone(),
        routes,
        timeout,
        per_channel: limit(c.rate_limit),
    })
    .map_err(|e| anyhow::anyhow!("flyteNotify.slack: {e}"))?;
    Ok(Some(sender))
}

/// The native PagerDuty sender, when any recipient has a route.
fn pagerduty(config: &Config, timeout: Duration) -> anyhow::Result<Option<PagerDutySender>> {
    let c = &config.flyte_notify.pagerduty;
    if c.routes.is_empty() {
        return Ok(None);
    }
    let mut routes = Vec::with_capacity(c.routes.len());
    for (i, r) in c.routes.iter().enumerate() {
        let key = format!("flyteNotify.pagerduty.routes[{i}]");
        routes.push(PagerDutyRoute {
            recipients: r.recipients.clone(),
            routing_key: secret(r.routing_key(&key))?,
        });
    }
    let sender = PagerDutySender::new(PagerDutySettings {
        events_url: c.events_url.clone(),
        routes,
        timeout,
        per_routing_key: limit(c.rate_limit),
    })
    .map_err(|e| anyhow::anyhow!("flyteNotify.pagerduty: {e}"))?;
    Ok(Some(sender))
}

/// The SSRF guard, as Enqueue asks it.
struct Guard(Arc<WebhookPolicy>);

#[async_trait]
impl UrlGuard for Guard {
    fn check_url(&self, url: &str) -> Result<(), String> {
        self.0.check_url(url).map(|_| ())
    }

    async fn check_resolved(&self, url: &str) -> Result<(), String> {
        match self.0.check_resolved(url).await {
            Ok(_) => Ok(()),
            Err(GuardError::Refused(why)) => Err(why),
            // DNS did not answer now: the guarded resolver checks again when the send connects.
            Err(GuardError::Lookup(why)) => {
                tracing::debug!("accepting a webhook URL whose host does not resolve now: {why}");
                Ok(())
            }
        }
    }
}

/// The webhook sender (always there: a configured destination, or an allowed URL, may be named by
/// any request) and the targets Enqueue accepts.
#[allow(clippy::type_complexity)]
fn webhooks(
    config: &Config,
    timeout: Duration,
) -> anyhow::Result<(
    WebhookSender,
    WebhookTargets,
    std::collections::HashMap<String, crate::delivery::WebhookFlavor>,
)> {
    let c = &config.flyte_notify.webhooks;
    let policy = Arc::new(
        WebhookPolicy::new(&c.allowed_hosts, c.allow_private)
            .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?,
    );
    let mut destinations = Vec::with_capacity(c.destinations.len());
    let mut flavors = std::collections::HashMap::new();
    for (i, d) in c.destinations.iter().enumerate() {
        let key = format!("flyteNotify.webhooks.destinations[{i}]");
        let url = secret(d.url(&key))?;
        flavors.insert(
            d.name.clone(),
            crate::channels::webhook::flavor_of(url.expose(), c),
        );
        destinations.push(WebhookDestination {
            name: d.name.clone(),
            url,
            signing_secret: optional_secret(d.signing_secret(&key))?,
            headers: d
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
    }
    let sender = WebhookSender::new(WebhookSettings {
        policy: policy.clone(),
        destinations,
        default_signing_secret: optional_secret(c.signing_secret())?,
        timeout,
        per_url: limit(c.rate_limit),
        slack_per_url: limit(config.flyte_notify.slack.rate_limit),
    })
    .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?;
    let targets = WebhookTargets {
        guard: (!c.allowed_hosts.is_empty() || c.allow_private)
            .then(|| Arc::new(Guard(policy)) as Arc<dyn UrlGuard>),
        destinations: c.destinations.iter().map(|d| d.name.clone()).collect(),
    };
    Ok((sender, targets, flavors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Router;
    use crate::delivery::{Channel, Rendered, WebhookFlavor, WebhookRequest, WebhookTarget};

    fn teams_message() -> Rendered {
        Rendered::Webhook(WebhookRequest {
            recipients: Vec::new(),
            target: WebhookTarget::Url("https://acme.webhook.office.com/webhookb2/x".into()),
            method: "POST".into(),
            headers: Vec::new(),
            body: "{}".into(),
            timeout: None,
            flavor: WebhookFlavor::Teams,
        })
    }

    fn teams_limit(yaml: &str) -> RateLimit {
        let config = Config::from_yaml(yaml).unwrap();
        let native = build(&config).unwrap();
        let router = native
            .senders
            .into_iter()
            .fold(Router::new(Arc::new(NoEmail)), Router::with);
        let teams = router
            .route(Channel::Teams, &[])
            .expect("the router sends Channel::Teams natively");
        assert_eq!(teams.name(), "teams");
        teams.destination(&teams_message()).unwrap().limit
    }

    struct NoEmail;

    #[async_trait]
    impl Sender for NoEmail {
        fn name(&self) -> &'static str {
            "none"
        }
        fn channel(&self) -> Channel {
            Channel::Email
        }
        async fn send(
            &self,
            _: &crate::delivery::DeliveryRef,
            _: &Rendered,
        ) -> Result<(), crate::channels::SendError> {
            unreachable!("no email is sent here")
        }
    }

    #[test]
    fn the_teams_sender_is_always_registered_with_its_configured_rate() {
        assert_eq!(
            teams_limit("{}"),
            crate::channels::teams::DEFAULT_PER_URL,
            "4/s by default"
        );
        let two = RateLimit {
            events: 2,
            per: Duration::from_secs(1),
        };
        assert_eq!(
            teams_limit("flyteNotify:\n  teams:\n    rateLimit: 2/s\n"),
            two
        );
        assert_eq!(teams_limit("flyteNotify:\n  teams:\n    rate: 2/s\n"), two);
    }
}
