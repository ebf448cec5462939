//! Our settings for the native channels: which Slack and PagerDuty recipients go where, which
//! webhook hosts may be called, and how fast each destination may be sent to. Secrets are named
//! (an environment variable or a file), never written here; they are read at start-up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// "1/s", "120/m", "10/h", or "5/30s": at most that many sends per that long, per destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rate {
    pub events: u32,
    pub per: Duration,
}

impl TryFrom<String> for Rate {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a rate; write it like 1/s, 120/m or 5/30s");
        let (events, per) = text.split_once('/').ok_or_else(bad)?;
        let events: u32 = events.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if events == 0 || per.is_zero() {
            return Err(format!(
                "{text:?}: a rate must allow at least one send per a non-zero time"
            ));
        }
        Ok(Rate { events, per })
    }
}

impl From<Rate> for String {
    fn from(r: Rate) -> String {
        format!("{}/{}", r.events, humantime::format_duration(r.per))
    }
}

fn rate(text: &str) -> Rate {
    Rate::try_from(text.to_string()).expect("a valid built-in rate")
}

/// Where a secret is: an environment variable (wins) or a file. Both empty means "none".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRef<'a> {
    pub key: String,
    pub env_var: &'a str,
    pub file: &'a str,
}

impl SecretRef<'_> {
    pub fn is_set(&self) -> bool {
        !self.env_var.is_empty() || !self.file.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackConfig {
    /// Slack's Web API, for chat.postMessage routes; a local stand-in in tests.
    #[serde(default = "slack_api")]
    pub api_base_url: String,
    /// Per channel (or incoming webhook). Slack allows about one message per second per channel.
    #[serde(default = "slack_rate")]
    pub rate_limit: Rate,
    #[serde(default)]
    pub routes: Vec<SlackRouteConfig>,
}

fn slack_api() -> String {
    "https://slack.com/api".into()
}
fn slack_rate() -> Rate {
    rate("1/s")
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            api_base_url: slack_api(),
            rate_limit: slack_rate(),
            routes: Vec::new(),
        }
    }
}

/// Recipients of `SlackNotification`s (addresses such as `ml-alerts@acme.slack.com`, or names
/// such as `#ml-alerts`) and where their messages go: an incoming webhook, or a bot token and a
/// channel for chat.postMessage.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackRouteConfig {
    pub recipients: Vec<String>,
    #[serde(default)]
    pub webhook_url_env_var: String,
    #[serde(default)]
    pub webhook_url_file: String,
    #[serde(default)]
    pub token_env_var: String,
    #[serde(default)]
    pub token_file: String,
    /// With a token: the channel to post in (`#ml-alerts` or its id).
    #[serde(default)]
    pub channel: String,
    /// Messages of this route grouped into digests: one Slack message per group.
    #[serde(default)]
    pub grouping: super::grouping::GroupingConfig,
}

impl SlackRouteConfig {
    pub fn webhook_url(&self, key: &str) -> SecretRef<'_> {
        SecretRef {
            key: format!("{key}.webhookUrlEnvVar"),
            env_var: &self.webhook_url_env_var,
            file: &self.webhook_url_file,
        }
    }
    pub fn token(&self, key: &str) -> SecretRef<'_> {
        SecretRef {
            key: format!("{key}.tokenEnvVar"),
            env_var: &self.token_env_var,
            file: &self.token_file,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagerDutyConfig {
    #[serde(default = "pagerduty_events_url")]
    pub events_url: String,
    /// Per routing key. PagerDuty accepts about 120 events a minute per key.
    #[serde(default = "pagerduty_rate")]
    pub rate_limit: Rate,
    /// The phases that open (trigger) an incident, when the notification names them too.
    #[serde(default = "trigger_on")]
    pub trigger_on: Vec<String>,
    /// Resolve the launch plan's incident when a later execution of it SUCCEEDS.
    #[serde(default)]
    pub resolve_on_success: bool,
    #[serde(default)]
    pub routes: Vec<PagerDutyRouteConfig>,
}

fn pagerduty_events_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}
fn pagerduty_rate() -> Rate {
    rate("120/m")
}
fn trigger_on() -> Vec<String> {
    vec!["FAILED".into(), "TIMED_OUT".into(), "ABORTED".into()]
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            events_url: pagerduty_events_url(),
            rate_limit: pagerduty_rate(),
            trigger_on: trigger_on(),
            resolve_on_success: false,
            routes: Vec::new(),
        }
    }
}

/// Recipients of `PagerDutyNotification`s and the Events v2 routing key of their service.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagerDutyRouteConfig {
    pub recipients: Vec<String>,
    #[serde(default)]
    pub routing_key_env_var: String,
    #[serde(default)]
    pub routing_key_file: String,
    /// Triggers of this route grouped into digests: one event per group.
    #[serde(default)]
    pub grouping: super::grouping::GroupingConfig,
}

impl PagerDutyRouteConfig {
    pub fn routing_key(&self, key: &str) -> SecretRef<'_> {
        SecretRef {
            key: format!("{key}.routingKeyEnvVar"),
            env_var: &self.routing_key_env_var,
            file: &self.routing_key_file,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Hosts a webhook URL may name: `hooks.example.com`, `*.example.com`, an address, or a CIDR
    /// such as `10.1.0.0/16`. Nothing else is called. Private, loopback and link-local addresses
    /// need an entry of their own (or `allowPrivate`), also when a name resolves to one.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub allow_private: bool,
    /// Signs requests to URLs given in notifications (Standard Webhooks); `whsec_...`.
    #[serde(default)]
    pub signing_secret_env_var: String,
    #[serde(default)]
    pub signing_secret_file: String,
    /// Per URL.
    #[serde(default = "webhook_rate")]
    pub rate_limit: Rate,
    /// Named destinations, which a WebhookNotification picks by `destination`: their URLs and
    /// secrets stay here.
    #[serde(default)]
    pub destinations: Vec<WebhookDestinationConfig>,
    /// Hosts whose webhook URLs are Slack incoming webhooks: rate limited as Slack
    /// (`flyteNotify.slack.rateLimit`), Slack's answers understood, not signed. A host,
    /// `*.domain`, either with an optional `:port`.
    #[serde(default = "slack_hosts")]
    pub slack_hosts: Vec<String>,
    /// Hosts whose webhook URLs are Microsoft Teams webhooks (incoming webhooks and Workflows),
    /// written as `slackHosts`.
    #[serde(default = "teams_hosts")]
    pub teams_hosts: Vec<String>,
}

fn webhook_rate() -> Rate {
    rate("10/s")
}
fn slack_hosts() -> Vec<String> {
    vec!["hooks.slack.com".into()]
}
fn teams_hosts() -> Vec<String> {
    [
        "*.webhook.office.com",
        "*.logic.azure.com",
        "*.api.powerplatform.com",
        "*.powerautomate.com",
    ]
    .map(String::from)
    .to_vec()
}

/// Microsoft Teams webhooks (`Channel::Teams`): how fast each may be sent to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamsConfig {
    /// Per webhook URL. Teams' incoming webhooks take about 4 requests a second before they
    /// answer 429.
    #[serde(default = "teams_rate", alias = "rate")]
    pub rate_limit: Rate,
}

fn teams_rate() -> Rate {
    rate("4/s")
}

impl Default for TeamsConfig {
    fn default() -> Self {
        Self {
            rate_limit: teams_rate(),
        }
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_private: false,
            signing_secret_env_var: String::new(),
            signing_secret_file: String::new(),
            rate_limit: webhook_rate(),
            destinations: Vec::new(),
            slack_hosts: slack_hosts(),
            teams_hosts: teams_hosts(),
        }
    }
}

impl WebhooksConfig {
    pub fn signing_secret(&self) -> SecretRef<'_> {
        SecretRef {
            key: "flyteNotify.webhooks.signingSecretEnvVar".into(),
            env_var: &self.signing_secret_env_var,
            file: &self.signing_secret_file,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDestinationConfig {
    pub name: String,
    #[serde(default)]
    pub url_env_var: String,
    #[serde(default)]
    pub url_file: String,
    #[serde(default)]
    pub signing_secret_env_var: String,
    #[serde(default)]
    pub signing_secret_file: String,
    /// Sent with every request to it (not secret: use the URL or the signature for that).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Webhooks to this destination grouped into digests: one request per group.
    #[serde(default)]
    pub grouping: super::grouping::GroupingConfig,
}

impl WebhookDestinationConfig {
    pub fn url(&self, key: &str) -> SecretRef<'_> {
        SecretRef {
            key: format!("{key}.urlEnvVar"),
            env_var: &self.url_env_var,
            file: &self.url_file,
        }
    }
    pub fn signing_secret(&self, key: &str) -> SecretRef<'_> {
        SecretRef {
            key: format!("{key}.signingSecretEnvVar"),
            env_var: &self.signing_secret_env_var,
            file: &self.signing_secret_file,
        }
    }
}

/// FlyteAdmin's phase names, as `triggerOn` takes them (any case).
pub const PHASE_NAMES: [&str; 4] = ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"];

/// Checks the channel settings: every route names its recipients and exactly one destination,
/// no recipient has two routes, names are unique. Errors name the key.
pub fn validate(
    slack: &SlackConfig,
    pagerduty: &PagerDutyConfig,
    webhooks: &WebhooksConfig,
) -> Result<(), (String, String)> {
    let mut seen = std::collections::HashMap::new();
    for (i, route) in slack.routes.iter().enumerate() {
        let key = format!("flyteNotify.slack.routes[{i}]");
        recipients(&key, &route.recipients, &mut seen)?;
        let webhook = route.webhook_url(&key).is_set();
        let token = route.token(&key).is_set();
        match (webhook, token) {
            (true, true) | (false, false) => {
                return Err((
                    key,
                    "name either an incoming webhook (webhookUrlEnvVar or webhookUrlFile) or a \
                     bot token (tokenEnvVar or tokenFile) with a channel"
                        .into(),
                ));
            }
            (false, true) if route.channel.trim().is_empty() => {
                return Err((
                    format!("{key}.channel"),
                    "required with a bot token: the channel to post in".into(),
                ));
            }
            _ => {}
        }
        route.grouping.validate(&format!("{key}.grouping"))?;
    }
    seen.clear();
    for (i, route) in pagerduty.routes.iter().enumerate() {
        let key = format!("flyteNotify.pagerduty.routes[{i}]");
        recipients(&key, &route.recipients, &mut seen)?;
        if !route.routing_key(&key).is_set() {
            return Err((
                key,
                "name the routing key: routingKeyEnvVar or routingKeyFile".into(),
            ));
        }
        route.grouping.validate(&format!("{key}.grouping"))?;
    }
    for (i, phase) in pagerduty.trigger_on.iter().enumerate() {
        if !PHASE_NAMES.iter().any(|p| p.eq_ignore_ascii_case(phase)) {
            return Err((
                format!("flyteNotify.pagerduty.triggerOn[{i}]"),
                format!(
                    "{phase:?} is not a terminal phase; use FAILED, TIMED_OUT, ABORTED or SUCCEEDED"
                ),
            ));
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, d) in webhooks.destinations.iter().enumerate() {
        let key = format!("flyteNotify.webhooks.destinations[{i}]");
        if d.name.trim().is_empty() {
            return Err((format!("{key}.name"), "required".into()));
        }
        if !names.insert(d.name.as_str()) {
            return Err((
                format!("{key}.name"),
                format!("{:?} is named twice", d.name),
            ));
        }
        if !d.url(&key).is_set() {
            return Err((key, "name the URL: urlEnvVar or urlFile".into()));
        }
        d.grouping.validate(&format!("{key}.grouping"))?;
    }
    for (name, hosts) in [
        ("slackHosts", &webhooks.slack_hosts),
        ("teamsHosts", &webhooks.teams_hosts),
    ] {
        for (i, entry) in hosts.iter().enumerate() {
            host_entry(entry).map_err(|why| (format!("flyteNotify.webhooks.{name}[{i}]"), why))?;
        }
    }
    Ok(())
}

/// A `slackHosts` or `teamsHosts` entry read: its host pattern in lower case (a host, or `*.`
/// and a domain) and its port, if it names one. The one reading of these entries, for the
/// config check and for `channels::webhook::flavor_of`.
pub fn host_entry(entry: &str) -> Result<(String, Option<u16>), String> {
    let bad = || {
        format!(
            "{entry:?} is not a host entry; write a host (hooks.slack.com) or *. and a domain \
             (*.webhook.office.com), either with an optional :port"
        )
    };
    let lower = entry.trim().to_ascii_lowercase();
    // A port follows the last colon, unless that colon is inside an IPv6 literal ("[::1]").
    let (host, port) = match lower.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            (host, Some(port.parse::<u16>().map_err(|_| bad())?))
        }
        _ => (lower.as_str(), None),
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.contains(['*', '/']) || name.starts_with('.') || name.ends_with('.')
    {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn recipients(
    key: &str,
    list: &[String],
    seen: &mut std::collections::HashMap<String, String>,
) -> Result<(), (String, String)> {
    if list.is_empty() {
        return Err((format!("{key}.recipients"), "name at least one".into()));
    }
    for (j, r) in list.iter().enumerate() {
        let normal = normalize_recipient(r);
        if normal.is_empty() {
            return Err((format!("{key}.recipients[{j}]"), "must not be empty".into()));
        }
        if let Some(other) = seen.insert(normal, key.to_string()) {
            return Err((
                format!("{key}.recipients[{j}]"),
                format!("{r:?} is routed by {other} already"),
            ));
        }
    }
    Ok(())
}

/// How recipients are compared with routes: trimmed, any case.
pub fn normalize_recipient(r: &str) -> String {
    r.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_operators_write_them() {
        let r = |s: &str| Rate::try_from(s.to_string());
        assert_eq!(
            r("1/s").unwrap(),
            Rate {
                events: 1,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(r("120/m").unwrap().per, Duration::from_secs(60));
        assert_eq!(r("5/30s").unwrap().per, Duration::from_secs(30));
        for bad in ["", "1", "0/s", "x/s", "1/0s", "1/fortnight"] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }
}
