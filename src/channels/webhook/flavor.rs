//! Which service a webhook URL belongs to. Flyte 2 serializes Slack, Teams and generic webhooks
//! alike (a URL, a method, headers, a body); the URL's host tells them apart, by the lists in
//! `flyteNotify.webhooks.slackHosts` and `teamsHosts`.
//!
//! An entry is a host (`hooks.slack.com`) or `*.` and a domain (`*.webhook.office.com`: any host
//! below it on a dot boundary, as in `allowedHosts`, not the domain itself), in any case, with an
//! optional port (`127.0.0.1:8080`) that must then match the URL's (its scheme's default when it
//! names none). Without a port, any port matches.

use url::Url;

use crate::config::channels::{WebhooksConfig, host_entry};
pub use crate::delivery::WebhookFlavor;

/// The flavor of `url`: Slack if a `slackHosts` entry matches its host, else Teams if a
/// `teamsHosts` entry does, else Generic (also for a URL that does not parse: the sender refuses
/// it with the reason).
pub fn flavor_of(url: &str, config: &WebhooksConfig) -> WebhookFlavor {
    let Ok(parsed) = Url::parse(url) else {
        return WebhookFlavor::Generic;
    };
    let Some(host) = parsed.host_str() else {
        return WebhookFlavor::Generic;
    };
    let host = host.to_ascii_lowercase();
    let port = parsed.port_or_known_default();
    let listed = |entries: &[String]| entries.iter().any(|e| matches(e, &host, port));
    if listed(&config.slack_hosts) {
        WebhookFlavor::Slack
    } else if listed(&config.teams_hosts) {
        WebhookFlavor::Teams
    } else {
        WebhookFlavor::Generic
    }
}

/// Whether `entry` covers `host` (lower case) on `port`. The config check refused entries that
/// do not read; one that slipped past (a config built in code) matches nothing.
fn matches(entry: &str, host: &str, port: Option<u16>) -> bool {
    let Ok((pattern, want_port)) = host_entry(entry) else {
        return false;
    };
    if want_port.is_some() && want_port != port {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|below| below.len() > 1 && below.ends_with('.')),
        None => host == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WebhooksConfig {
        WebhooksConfig::default()
    }

    #[test]
    fn the_default_hosts_recognise_slack_and_teams() {
        let c = config();
        let f = |url| flavor_of(url, &c);
        assert_eq!(
            f("https://hooks.slack.com/services/T0/B0/xyz"),
            WebhookFlavor::Slack
        );
        assert_eq!(
            f("https://HOOKS.Slack.com:443/services/T0/B0/xyz"),
            WebhookFlavor::Slack
        );
        for teams in [
            "https://acme.webhook.office.com/webhookb2/x@y/IncomingWebhook/z/w",
            "https://prod-12.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=s",
            "https://default1.environment.api.powerplatform.com/powerautomate/automations/direct/x",
            "https://eu.Flow.PowerAutomate.com/hook",
        ] {
            assert_eq!(f(teams), WebhookFlavor::Teams, "{teams}");
        }
        for generic in [
            "https://hooks.example.com/x",
            // Not on a dot boundary, or the domain itself.
            "https://evilwebhook.office.com/x",
            "https://webhook.office.com/x",
            "https://hooks.slack.com.evil.example/x",
            "not a url",
        ] {
            assert_eq!(f(generic), WebhookFlavor::Generic, "{generic}");
        }
    }

    #[test]
    fn an_entry_with_a_port_matches_only_that_port() {
        let mut c = config();
        c.slack_hosts = vec!["127.0.0.1:8080".into()];
        c.teams_hosts = vec!["127.0.0.1".into(), "*.Teams.Example:8443".into()];
        let f = |url| flavor_of(url, &c);
        assert_eq!(f("http://127.0.0.1:8080/hook"), WebhookFlavor::Slack);
        assert_eq!(f("http://127.0.0.1:9090/hook"), WebhookFlavor::Teams);
        assert_eq!(f("https://a.teams.example:8443/h"), WebhookFlavor::Teams);
        // https's default port is 443.
        assert_eq!(f("https://a.teams.example/h"), WebhookFlavor::Generic);
        c.slack_hosts = vec!["[::1]:8080".into()];
        assert_eq!(flavor_of("http://[::1]:8080/h", &c), WebhookFlavor::Slack);
    }

    #[test]
    fn bad_entries_are_refused_by_the_config_check_and_match_nothing() {
        for bad in [
            "",
            "*.",
            "a.*.example",
            "host:port",
            "https://hooks.slack.com/x",
            ".x",
        ] {
            assert!(host_entry(bad).is_err(), "{bad}");
            let mut c = config();
            c.slack_hosts = vec![bad.into()];
            assert!(
                crate::config::channels::validate(&Default::default(), &Default::default(), &c)
                    .is_err_and(|(key, _)| key == "flyteNotify.webhooks.slackHosts[0]"),
                "{bad}"
            );
            assert_eq!(
                flavor_of("https://hooks.slack.com/x", &c),
                WebhookFlavor::Generic
            );
        }
        for good in [
            "hooks.slack.com",
            "*.webhook.office.com",
            "127.0.0.1:8080",
            "[::1]:80",
        ] {
            assert!(host_entry(good).is_ok(), "{good}");
        }
    }
}
