//! Which webhooks Enqueue accepts, and what it stores for them. A webhook names a URL (which must
//! pass the SSRF guard, also after DNS resolution) or a destination configured on the server;
//! what is stored is the request's own description of the call, rendered at send time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::template;
use crate::delivery::{WebhookSpec, WebhookTarget};
use crate::proto::flytenotify::v1::{HttpMethod, WebhookNotification};

/// The longest a webhook may ask one attempt to take.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// The SSRF guard as the core needs it: the channels module implements it.
#[async_trait]
pub trait UrlGuard: Send + Sync {
    /// Scheme, syntax and the allow-list, without DNS.
    fn check_url(&self, url: &str) -> Result<(), String>;
    /// The same after resolving the host: every address it resolves to must be allowed.
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
    /// Problems of one webhook's target, method and timeout, as (field, problem).
    pub fn check(&self, w: &WebhookNotification) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match (w.url.is_empty(), w.destination.is_empty()) {
            (true, true) => out.push(("url".into(), "set url or destination".into())),
            (false, false) => out.push((
                "destination".into(),
                "set either url or destination, not both".into(),
            )),
            (false, true) => match &self.guard {
                None => out.push((
                    "url".into(),
                    "this server calls no webhook URLs: flyteNotify.webhooks.allowedHosts is empty"
                        .into(),
                )),
                Some(guard) => {
                    if let Err(problem) = guard.check_url(&w.url) {
                        out.push(("url".into(), problem));
                    }
                }
            },
            (true, false) => {
                if !self.destinations.contains(&w.destination) {
                    out.push((
                        "destination".into(),
                        format!(
                            "{} is not a destination in flyteNotify.webhooks.destinations",
                            crate::delivery::quoted(&w.destination)
                        ),
                    ));
                }
            }
        }
        if HttpMethod::try_from(w.method).is_err() {
            out.push(("method".into(), format!("unknown value {}", w.method)));
        } else if matches!(
            HttpMethod::try_from(w.method),
            Ok(HttpMethod::Connect | HttpMethod::Trace)
        ) {
            out.push((
                "method".into(),
                "CONNECT and TRACE are not for webhooks".into(),
            ));
        }
        if let Some(t) = &w.timeout {
            let ok = t.seconds >= 0
                && t.nanos >= 0
                && Duration::new(t.seconds as u64, t.nanos as u32) <= MAX_WEBHOOK_TIMEOUT;
            if !ok {
                out.push((
                    "timeout".into(),
                    format!("between 0 and {}s", MAX_WEBHOOK_TIMEOUT.as_secs()),
                ));
            }
        }
        out
    }

    /// The DNS half of the guard, for the webhooks that passed `check`.
    pub async fn check_resolved(&self, webhooks: &[WebhookNotification]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let Some(guard) = &self.guard else {
            return out;
        };
        for (i, w) in webhooks.iter().enumerate() {
            if !w.url.is_empty()
                && let Err(problem) = guard.check_resolved(&w.url).await
            {
                out.push((i, problem));
            }
        }
        out
    }
}

/// What is stored for a webhook delivery.
pub fn spec(w: &WebhookNotification) -> WebhookSpec {
    let method = match HttpMethod::try_from(w.method).unwrap_or(HttpMethod::Unspecified) {
        HttpMethod::Unspecified => "POST".to_string(),
        m => m
            .as_str_name()
            .trim_start_matches("HTTP_METHOD_")
            .to_string(),
    };
    let mut headers: Vec<(String, String)> = w
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.sort();
    WebhookSpec {
        target: if w.url.is_empty() {
            WebhookTarget::Destination(w.destination.clone())
        } else {
            WebhookTarget::Url(w.url.clone())
        },
        method,
        headers,
        body_template: w.body_template.clone(),
        timeout_ms: w
            .timeout
            .as_ref()
            .map(|t| t.seconds.max(0) as u64 * 1000 + t.nanos.max(0) as u64 / 1_000_000)
            .filter(|ms| *ms > 0),
    }
}

/// Whether a body with these headers is JSON, whose substituted values must be JSON-escaped:
/// when no Content-Type is given (JSON is the default) or the given one says json.
pub fn is_json(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .is_none_or(|(_, v)| v.to_ascii_lowercase().contains("json"))
}

/// `s`'s length inside a JSON string, as serde_json writes it.
pub fn json_escaped_len(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// The rendered body's size, measured without building it. The built-in body is a fixed JSON
/// object of the values, each at most once, so its bound is the sum of the escaped values and a
/// little structure.
pub fn body_len(spec: &WebhookSpec, values: &template::Values) -> usize {
    const BUILT_IN_STRUCTURE: usize = 1024;
    let escaped = |s: &str| {
        if is_json(&spec.headers) {
            json_escaped_len(s)
        } else {
            s.len()
        }
    };
    if spec.body_template.is_empty() {
        template::Variable::ALL
            .iter()
            .map(|v| json_escaped_len(values.get(*v)))
            .sum::<usize>()
            + BUILT_IN_STRUCTURE
    } else {
        template::rendered_len(&spec.body_template, values, escaped)
    }
}

/// How a webhook delivery is listed (ListPending's recipients): the destination's name, or the
/// URL without user info, query or fragment, which may carry tokens.
pub fn shown_as(target: &WebhookTarget) -> String {
    match target {
        WebhookTarget::Destination(name) => format!("destination:{name}"),
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
    fn a_stored_webhook_keeps_what_was_asked_and_shows_no_query() {
        let w = WebhookNotification {
            url: "https://user:pw@hooks.example.com:8443/a/b?token=s3cret#x".into(),
            method: HttpMethod::Put as i32,
            headers: [
                ("X-B".to_string(), "2".to_string()),
                ("X-A".into(), "1".into()),
            ]
            .into(),
            timeout: Some(prost_types::Duration {
                seconds: 2,
                nanos: 500_000_000,
            }),
            ..Default::default()
        };
        let s = spec(&w);
        assert_eq!(s.method, "PUT");
        assert_eq!(s.headers[0].0, "X-A");
        assert_eq!(s.timeout_ms, Some(2500));
        assert_eq!(shown_as(&s.target), "https://hooks.example.com:8443/a/b");
        assert_eq!(spec(&WebhookNotification::default()).method, "POST");
    }

    #[test]
    fn escaped_lengths_match_serde_json() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n\t\r",
            "\u{1}\u{1f}",
            "é中😀",
            "</script>",
        ] {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json_escaped_len(s), json.len() - 2, "{s:?}");
        }
        assert!(is_json(&[]));
        assert!(is_json(&[(
            "content-type".into(),
            "application/cloudevents+json".into()
        )]));
        assert!(!is_json(&[("Content-Type".into(), "text/plain".into())]));
    }

    #[test]
    fn a_target_is_a_url_or_a_known_destination() {
        let targets = WebhookTargets {
            guard: None,
            destinations: ["ops".to_string()].into(),
        };
        let fields = |w: WebhookNotification| -> Vec<String> {
            targets.check(&w).into_iter().map(|(f, _)| f).collect()
        };
        assert_eq!(fields(WebhookNotification::default()), ["url"]);
        let named = |d: &str| WebhookNotification {
            destination: d.into(),
            ..Default::default()
        };
        assert!(fields(named("ops")).is_empty());
        assert_eq!(fields(named("nope")), ["destination"]);
        // No allow-list: no URL is called.
        let url = WebhookNotification {
            url: "https://a.example.com".into(),
            ..Default::default()
        };
        assert_eq!(fields(url), ["url"]);
        let slow = WebhookNotification {
            timeout: Some(prost_types::Duration {
                seconds: 61,
                nanos: 0,
            }),
            ..named("ops")
        };
        assert_eq!(fields(slow), ["timeout"]);
    }
}
