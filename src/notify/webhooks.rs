//! Which webhook targets Enqueue accepts. A webhook names a URL, which the SSRF guard must admit
//! (also after DNS resolution), or a destination configured on the server. What is stored and how
//! it renders is `webhook_body`'s.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::delivery::{WebhookSpec, WebhookTarget};

/// The SSRF guard as the core needs it; `channels::net_guard` provides it.
#[async_trait]
pub trait UrlGuard: Send + Sync {
    /// Scheme, syntax and the allow-list, without DNS.
    fn check_url(&self, url: &str) -> Result<(), String>;
    /// The same after resolving the host: every address it resolves to must be allowed. A name
    /// that does not resolve right now passes (the sender checks again when it connects).
    async fn check_resolved(&self, url: &str) -> Result<(), String>;
}

/// What Enqueue knows about webhook targets.
#[derive(Clone, Default)]
pub struct WebhookTargets {
    /// None: webhooks to URLs are refused (no allow-list configured).
    pub guard: Option<Arc<dyn UrlGuard>>,
    pub destinations: HashSet<String>,
}

impl WebhookTargets {
    /// Whether `target` may be called, as (field, problem); DNS is `check_resolved`'s.
    pub fn check(&self, target: &WebhookTarget) -> Option<(&'static str, String)> {
        match target {
            WebhookTarget::Url(url) => match &self.guard {
                None => Some((
                    "url",
                    "this server calls no webhook URLs: flyteNotify.webhooks.allowedHosts is empty"
                        .into(),
                )),
                Some(guard) => guard.check_url(url).err().map(|e| ("url", e)),
            },
            WebhookTarget::Destination(name) => (!self.destinations.contains(name)).then(|| {
                (
                    "destination",
                    format!(
                        "{} is not a destination in flyteNotify.webhooks.destinations",
                        crate::delivery::quoted(name)
                    ),
                )
            }),
        }
    }

    /// The DNS half of the guard: (index, problem) for each URL that resolves to a refused
    /// address.
    pub async fn check_resolved(&self, specs: &[WebhookSpec]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let Some(guard) = &self.guard else {
            return out;
        };
        for (i, spec) in specs.iter().enumerate() {
            if let WebhookTarget::Url(url) = &spec.target
                && let Err(problem) = guard.check_resolved(url).await
            {
                out.push((i, problem));
            }
        }
        out
    }
}

/// How a webhook delivery is listed (ListPending's recipients), and what the webhook sender
/// routes by: a destination's name, or the URL without user info, query or fragment, which may
/// carry tokens.
pub fn shown_as(target: &WebhookTarget) -> String {
    match target {
        WebhookTarget::Destination(name) => name.clone(),
        WebhookTarget::Url(url) => match url::Url::parse(url) {
            Ok(u) => format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                u.path()
            ),
            Err(_) => "(an invalid URL)".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_credentials_or_query() {
        let url =
            WebhookTarget::Url("https://user:pw@hooks.example.com:8443/a/b?token=s3cret#x".into());
        assert_eq!(shown_as(&url), "https://hooks.example.com:8443/a/b");
        assert_eq!(shown_as(&WebhookTarget::Destination("ops".into())), "ops");
    }

    #[test]
    fn a_target_is_an_admitted_url_or_a_known_destination() {
        let targets = WebhookTargets {
            guard: None,
            destinations: ["ops".to_string()].into(),
        };
        let field = |t| targets.check(&t).map(|(f, _)| f);
        assert_eq!(field(WebhookTarget::Destination("ops".into())), None);
        assert_eq!(
            field(WebhookTarget::Destination("nope".into())),
            Some("destination")
        );
        // No allow-list: no URL is called.
        assert_eq!(
            field(WebhookTarget::Url("https://a.example.com".into())),
            Some("url")
        );
    }
}
