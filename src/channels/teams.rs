//! Microsoft Teams, natively: a Flyte 2 Teams notification is a webhook request (its body a
//! message card or an Adaptive Card) to a Teams incoming webhook or a Workflows URL, POSTed with
//! its own headers through the webhook sender's SSRF-guarded client, so that a URL a request
//! names reaches only what `flyteNotify.webhooks.allowedHosts` allows. Not signed: Teams checks
//! no signature, and ours would only tell a third party about our secret.
//!
//! Teams' answers, and what they mean for the delivery:
//! - 2xx: posted (the legacy Office 365 connector answers 200 `1`; Workflows 202, empty);
//! - except a 200 whose body is not `1` and reads like an error: the legacy connector reports a
//!   failure of its own backend that way ("Microsoft Teams endpoint returned HTTP error 429 with
//!   ContextId ..."), and the status it quotes decides, as if it had been the answer's;
//! - 400 and 413: permanent, with Teams' reason (a card it cannot read, a message too large);
//! - 401, 403, 404, 410: permanent: the webhook URL was removed or disabled;
//! - 408, 429, 5xx, no answer: retried, no sooner than a Retry-After says.
//!
//! The URL is the credential (Workflows URLs carry a `sig` in their query): errors name only its
//! host, and what Teams echoes back is scrubbed of the URL and its parts. The rate limit is per
//! URL, keyed by a digest of it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::net_guard::{self, WebhookPolicy};
use super::secret::Secret;
use super::webhook::{WebhookSender, rules};
use super::{Destination, RateLimit, SendError, Sender, error_chain, rest};
use crate::delivery::{Channel, DeliveryRef, Rendered, WebhookRequest, WebhookTarget};

/// Teams' incoming webhooks take about four requests a second before they answer 429.
pub const DEFAULT_PER_URL: RateLimit = RateLimit {
    events: 4,
    per: Duration::from_secs(1),
};

/// What the Teams sender is built from, beside the webhook sender whose guard it shares.
#[derive(Debug, Clone)]
pub struct TeamsSettings {
    /// Per attempt, when the request sets none (the worker's sendTimeout).
    pub timeout: Duration,
    /// Per webhook URL (`flyteNotify.teams.rateLimit`).
    pub per_url: RateLimit,
}

pub struct TeamsSender {
    policy: Arc<WebhookPolicy>,
    client: reqwest::Client,
    timeout: Duration,
    per_url: RateLimit,
}

impl TeamsSender {
    /// A sender on `webhooks`' guarded client and policy: one SSRF guard for every URL a
    /// request names, whichever sender calls it.
    pub fn new(webhooks: &WebhookSender, settings: TeamsSettings) -> Result<Self, String> {
        if settings.per_url.events == 0 || settings.per_url.per.is_zero() {
            return Err(
                "teams: the rate limit must allow at least one send per a non-zero time".into(),
            );
        }
        Ok(Self {
            policy: webhooks.policy().clone(),
            client: webhooks.guarded_client(),
            timeout: settings.timeout,
            per_url: settings.per_url,
        })
    }

    fn request<'a>(
        &self,
        message: &'a Rendered,
    ) -> Result<(&'a WebhookRequest, &'a str), SendError> {
        let Rendered::Webhook(request) = message else {
            return Err(SendError::wrong_channel(self.name(), message));
        };
        match &request.target {
            WebhookTarget::Url(url) => Ok((request, url)),
            WebhookTarget::Destination(name) => Err(SendError::permanent(format!(
                "teams: a Teams message goes to a webhook URL, not to the destination {} \
                 (destinations are the webhook sender's)",
                crate::delivery::quoted(name)
            ))),
        }
    }
}

/// The notification's headers, and JSON unless it says otherwise.
fn headers(request: &WebhookRequest) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let (name, value) =
            rules::header(name, value).map_err(|e| format!("header {name}: {e}"))?;
        headers.append(name, value);
    }
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(headers)
}

/// What must not appear in an error: the URL, its path and query, and their long parts.
fn secrets(url: &str, parsed: &url::Url) -> Vec<Secret> {
    let mut secrets = vec![Secret::new(url), Secret::new(parsed.as_str())];
    let mut tail = parsed.path().to_string();
    if let Some(query) = parsed.query() {
        tail.push('?');
        tail.push_str(query);
        secrets.push(Secret::new(query));
        secrets.extend(
            parsed
                .query_pairs()
                .map(|(_, v)| v.into_owned())
                .filter(|v| v.len() >= 8)
                .map(Secret::new),
        );
    }
    if tail.len() >= 8 {
        secrets.push(Secret::new(tail));
    }
    secrets.extend(
        parsed
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= 16)
            .map(Secret::new),
    );
    secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
    secrets
}

fn scrub(text: String, secrets: &[Secret]) -> String {
    secrets
        .iter()
        .filter(|s| !s.expose().is_empty())
        .fold(text, |text, s| s.scrub(&text))
}

/// The status a legacy connector's 200 quotes: "... returned HTTP error 429 with ContextId ...".
fn embedded_status(body: &str) -> Option<StatusCode> {
    let lower = body.to_ascii_lowercase();
    let at = lower.find("http error ")? + "http error ".len();
    let digits = lower.get(at..at + 3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    StatusCode::from_u16(digits.parse().ok()?).ok()
}

/// Whether a 200's body, which is not the connector's `1`, says that the message failed.
fn reads_like_an_error(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    ["error", "failed", "exception"]
        .iter()
        .any(|w| lower.contains(w))
}

/// What Teams' answer means: None when the message was posted, else the error (without the
/// URL's name, which the caller puts first).
fn judge(status: StatusCode, retry_after: Option<Duration>, body: &str) -> Option<SendError> {
    let text = body.trim();
    if status.is_success() {
        if status != StatusCode::OK || text.is_empty() || text == "1" || !reads_like_an_error(text)
        {
            return None;
        }
        let said = format!(
            "HTTP {status}, but Teams said: {}",
            rest::excerpt(text, 300)
        );
        return match embedded_status(text) {
            Some(embedded) if embedded.is_success() => None,
            Some(embedded) => Some(by_status(embedded, retry_after, said)),
            None => Some(SendError::permanent(said)),
        };
    }
    let mut said = format!("HTTP {status}");
    if !text.is_empty() {
        said.push_str(": ");
        said.push_str(&rest::excerpt(text, 300));
    }
    Some(by_status(status, retry_after, said))
}

/// The error for a failure with `status` (the answer's, or the one a 200 quoted).
fn by_status(status: StatusCode, retry_after: Option<Duration>, said: String) -> SendError {
    match status.as_u16() {
        401 | 403 | 404 | 410 => SendError::permanent(format!(
            "the webhook URL was removed or disabled ({said}); create a new one in Teams and \
             update the notification"
        )),
        408 | 429 | 500..=599 => SendError::Retryable {
            message: said,
            retry_after,
        },
        300..=399 => SendError::permanent(format!(
            "{said}: redirects are not followed; use the URL Teams gives for the webhook"
        )),
        // 400 (a card Teams cannot read), 413 (too large), and any other refusal.
        400..=499 => SendError::permanent(said),
        _ => SendError::Retryable {
            message: said,
            retry_after,
        },
    }
}

#[async_trait]
impl Sender for TeamsSender {
    fn name(&self) -> &'static str {
        "teams"
    }

    fn channel(&self) -> Channel {
        Channel::Teams
    }

    /// One bucket per webhook URL, keyed by its digest (the URL is a credential).
    fn destination(&self, message: &Rendered) -> Option<Destination> {
        let (_, url) = self.request(message).ok()?;
        Some(Destination {
            key: rest::destination_key("teams", &[url]),
            limit: self.per_url,
        })
    }

    async fn send(&self, _delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let (request, url) = self.request(message)?;
        // Checked again at each send: the allow-list may have changed since the request came,
        // and an address literal never reaches the guarded resolver.
        let parsed = self
            .policy
            .check_url(url)
            .map_err(|e| SendError::permanent(format!("teams: the webhook URL is refused: {e}")))?;
        let what = format!(
            "teams webhook at {}",
            parsed.host_str().unwrap_or("an unnamed host")
        );
        let secrets = secrets(url, &parsed);
        let fail = |e: SendError| rest::map_message(e, |m| scrub(format!("{what}: {m}"), &secrets));
        if !request.method.eq_ignore_ascii_case("POST") {
            return Err(fail(SendError::permanent(format!(
                "Teams webhooks take POST, not {}",
                crate::delivery::quoted(&request.method)
            ))));
        }
        let headers = headers(request).map_err(|e| fail(SendError::permanent(e)))?;
        let timeout = request.timeout.unwrap_or(self.timeout);
        let response = self
            .client
            .post(parsed)
            .headers(headers)
            .timeout(timeout)
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| {
                fail(if let Some(refused) = net_guard::refusal_in(&e) {
                    SendError::permanent(format!("refused: {refused}"))
                } else if e.is_timeout() {
                    SendError::retryable(format!(
                        "no answer within {}",
                        humantime::format_duration(timeout)
                    ))
                } else {
                    SendError::retryable(error_chain(&e.without_url()))
                })
            })?;
        let status = response.status();
        let retry_after = rest::retry_after(response.headers());
        let body = rest::read_bounded(response).await;
        match judge(status, retry_after, &body) {
            None => Ok(()),
            Some(e) => Err(fail(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    fn kind(e: &Option<SendError>) -> &'static str {
        match e {
            None => "delivered",
            Some(SendError::Retryable { .. }) => "retryable",
            Some(SendError::Permanent { .. }) => "permanent",
            Some(SendError::Deferred { .. }) => "deferred",
        }
    }

    #[test]
    fn answers_are_classified() {
        for (code, body, expected) in [
            (200, "1", "delivered"),
            (202, "", "delivered"),
            (200, "", "delivered"),
            (200, r#"{"status":"queued"}"#, "delivered"),
            (
                200,
                "Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0",
                "retryable",
            ),
            (
                200,
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned \
                 HTTP error 413 with ContextId x",
                "permanent",
            ),
            (
                200,
                "Microsoft Teams endpoint returned HTTP error 502 with ContextId x",
                "retryable",
            ),
            (200, "Webhook message delivery failed", "permanent"),
            (400, "Summary or Text is required.", "permanent"),
            (413, "", "permanent"),
            (401, "", "permanent"),
            (403, "", "permanent"),
            (404, "", "permanent"),
            (410, "Connector configuration not found", "permanent"),
            (408, "", "retryable"),
            (429, "", "retryable"),
            (500, "", "retryable"),
            (503, "", "retryable"),
            (301, "", "permanent"),
        ] {
            assert_eq!(
                kind(&judge(status(code), None, body)),
                expected,
                "{code} {body}"
            );
        }
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(
            judge(status(400), None, "Summary or Text is required."),
            Some(SendError::permanent(
                "HTTP 400 Bad Request: Summary or Text is required."
            ))
        );
        let gone = judge(status(410), None, "").unwrap().to_string();
        assert!(
            gone.starts_with("the webhook URL was removed or disabled (HTTP 410 Gone)"),
            "{gone}"
        );
        // A 200 that quotes a 429 keeps the answer's Retry-After.
        assert_eq!(
            judge(
                status(200),
                Some(Duration::from_secs(3)),
                "Microsoft Teams endpoint returned HTTP error 429 with ContextId x"
            ),
            Some(SendError::Retryable {
                message: "HTTP 200 OK, but Teams said: Microsoft Teams endpoint returned HTTP \
                          error 429 with ContextId x"
                    .into(),
                retry_after: Some(Duration::from_secs(3)),
            })
        );
    }

    #[test]
    fn every_part_of_the_url_is_scrubbed() {
        let url = "https://prod-1.westus.logic.azure.com/workflows/0123456789abcdef0123/triggers/manual/paths/invoke?api-version=1&sig=s3cr3tS1gnature";
        let parsed = url::Url::parse(url).unwrap();
        let text = format!("{url} | sig=s3cr3tS1gnature | s3cr3tS1gnature | 0123456789abcdef0123");
        let scrubbed = scrub(text, &secrets(url, &parsed));
        assert!(!scrubbed.contains("s3cr3t"), "{scrubbed}");
        assert!(!scrubbed.contains("0123456789abcdef0123"), "{scrubbed}");
    }
}
