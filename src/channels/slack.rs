//! Slack, natively: a `SlackNotification`'s recipients are mapped by the configured routes to an
//! incoming webhook, or to a bot token and a channel for `chat.postMessage`, and the rendered
//! Block Kit message is posted there.
//!
//! Slack's answers, and what they mean for the delivery:
//! - posted: an incoming webhook answers 200 `ok`; `chat.postMessage` 200 `{"ok": true, ...}`;
//! - 429 (both): retried, no sooner than its Retry-After says;
//! - Slack's own transient errors (`internal_error`, `fatal_error`, `service_unavailable`,
//!   `request_timeout`, `ratelimited`, a webhook's `rollup_error`), any 5xx, 408, no answer, no
//!   connection: retried;
//! - `{"ok": false, "error": ...}`, and a webhook's 4xx (400 `invalid_payload`, 403
//!   `invalid_token`/`action_prohibited`, 404 `channel_not_found`/`no_service`, 410
//!   `channel_is_archived`): permanent, with Slack's error code, since the same message to the
//!   same place will be refused again until someone changes the route.
//!
//! The webhook URL and the token are credentials: neither is in any error, and what Slack (or a
//! proxy) echoes back is scrubbed of both.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};

use super::routes::RouteTable;
use super::secret::Secret;
use super::{Destination, RateLimit, SendError, Sender, rest};
use crate::delivery::{Channel, DeliveryRef, Rendered, SlackMessage};

/// Slack's Web API.
pub const DEFAULT_API_BASE_URL: &str = "https://slack.com/api";

/// Slack allows about one message per second per channel (bursts are tolerated briefly).
pub const DEFAULT_PER_CHANNEL: RateLimit = RateLimit {
    events: 1,
    per: Duration::from_secs(1),
};

/// Everything the Slack sender needs; the lead's config builds it.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// Slack's Web API (`DEFAULT_API_BASE_URL`), where `chat.postMessage` routes post; a local
    /// stand-in in tests.
    pub api_base_url: String,
    pub routes: Vec<SlackRoute>,
    /// Per request, connecting included.
    pub timeout: Duration,
    /// Per destination (a webhook, or a token and channel): `Sender::destination`.
    pub per_channel: RateLimit,
}

/// Recipients of `SlackNotification`s (addresses such as `ml-alerts@acme.slack.com` or names
/// such as `#ml-alerts`, compared in any case) and where their messages go.
#[derive(Debug, Clone)]
pub struct SlackRoute {
    pub recipients: Vec<String>,
    pub destination: SlackDestination,
}

#[derive(Debug, Clone)]
pub enum SlackDestination {
    /// An incoming webhook: its URL is its credential.
    IncomingWebhook { url: Secret },
    /// `chat.postMessage` with a bot token, in `channel` (`#ml-alerts` or its id `C0123...`).
    PostMessage { token: Secret, channel: String },
}

pub struct SlackSender {
    routes: RouteTable<Route>,
    client: reqwest::Client,
    timeout: Duration,
    per_channel: RateLimit,
}

/// A route ready to send on.
struct Route {
    /// Names it in errors without a secret: "incoming webhook for #ml-alerts",
    /// "chat.postMessage to #ml-alerts".
    label: String,
    target: Target,
    /// What must never appear in an error: the URL or token, and the parts of a webhook URL a
    /// peer might echo on their own.
    secrets: Vec<Secret>,
    /// The rate-limit key: a digest of the destination.
    key: String,
}

enum Target {
    Webhook {
        url: Secret,
    },
    PostMessage {
        url: String,
        authorization: HeaderValue,
        channel: String,
    },
}

/// chat.postMessage's answer, as much of it as matters here.
#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    response_metadata: Option<ResponseMetadata>,
}

#[derive(Deserialize)]
struct ResponseMetadata {
    /// For `invalid_blocks` and the like: which block broke which rule.
    #[serde(default)]
    messages: Vec<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    text: &'a str,
    #[serde(skip_serializing_if = "no_blocks")]
    blocks: &'a serde_json::Value,
}

fn no_blocks(blocks: &&serde_json::Value) -> bool {
    match blocks {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Slack's error codes that say "try again"; any other error code is about the message or the
/// route.
const TRANSIENT: [&str; 7] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
    "rate_limited",
    "rollup_error",
];

/// Error codes that end a delivery whatever the HTTP status they come with: a webhook might send
/// them with a 200 or a 5xx through some proxies, and the destination is gone all the same.
const GONE: [&str; 5] = [
    "channel_not_found",
    "is_archived",
    "channel_is_archived",
    "no_service",
    "no_active_hooks",
];

impl SlackSender {
    pub fn new(settings: SlackSettings) -> Result<Self, String> {
        if settings.timeout.is_zero() {
            return Err("slack: the send timeout must be more than zero".into());
        }
        if settings.per_channel.events == 0 || settings.per_channel.per.is_zero() {
            return Err(
                "slack: the rate limit must allow at least one send per a non-zero time".into(),
            );
        }
        let base = settings.api_base_url.trim().trim_end_matches('/');
        rest::check_url(base)
            .map_err(|e| format!("slack: the API base URL {base:?} is not usable: {e}"))?;
        let post_message_url = format!("{base}/chat.postMessage");
        let mut routes = Vec::with_capacity(settings.routes.len());
        for (i, route) in settings.routes.into_iter().enumerate() {
            let name = route.recipients.first().cloned().unwrap_or_default();
            let ready = match route.destination {
                SlackDestination::IncomingWebhook { url } => {
                    let parsed = rest::check_url(url.expose()).map_err(|e| {
                        format!(
                            "slack route {i} ({name}): the incoming webhook URL is not usable: {e}"
                        )
                    })?;
                    Route {
                        label: format!("incoming webhook for {name}"),
                        secrets: webhook_secrets(&url, &parsed),
                        key: incoming_webhook_key(url.expose()),
                        target: Target::Webhook { url },
                    }
                }
                SlackDestination::PostMessage { token, channel } => {
                    let channel = channel.trim().to_string();
                    if channel.is_empty() {
                        return Err(format!(
                            "slack route {i} ({name}): a bot token needs the channel to post in"
                        ));
                    }
                    let authorization = bearer(&token)
                        .map_err(|e| format!("slack route {i} ({name}): the bot token {e}"))?;
                    Route {
                        label: format!("chat.postMessage to {channel}"),
                        key: rest::destination_key(
                            "slack",
                            &[
                                "chat.postMessage",
                                &post_message_url,
                                token.expose(),
                                &channel.to_lowercase(),
                            ],
                        ),
                        secrets: vec![token],
                        target: Target::PostMessage {
                            url: post_message_url.clone(),
                            authorization,
                            channel,
                        },
                    }
                }
            };
            routes.push((route.recipients, ready));
        }
        Ok(Self {
            routes: RouteTable::new("slack", routes)?,
            client: rest::client("Slack", settings.timeout)?,
            timeout: settings.timeout,
            per_channel: settings.per_channel,
        })
    }

    fn message<'a>(&self, message: &'a Rendered) -> Result<&'a SlackMessage, SendError> {
        match message {
            Rendered::Slack(m) => Ok(m),
            other => Err(SendError::wrong_channel(self.name(), other)),
        }
    }
}

/// A webhook URL, and the parts of it a peer could quote on their own: its path (everything
/// after the host is the credential) and its long segments (the token at its end).
pub(crate) fn webhook_secrets(url: &Secret, parsed: &reqwest::Url) -> Vec<Secret> {
    let mut secrets = vec![url.clone()];
    let mut path = parsed.path().to_string();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    if path.len() >= 8 {
        secrets.push(Secret::new(path));
    }
    secrets.extend(
        parsed
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= 16)
            .map(Secret::new),
    );
    secrets
}

fn bearer(token: &Secret) -> Result<HeaderValue, String> {
    if token.expose().trim().is_empty() {
        return Err("is empty".into());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| "has characters that cannot go in an HTTP header".to_string())?;
    // Keeps it out of reqwest's and hyper's debug output.
    value.set_sensitive(true);
    Ok(value)
}

impl Route {
    fn scrub(&self, text: String) -> String {
        // Longest first: the whole URL before the path that is part of it.
        let mut secrets: Vec<&Secret> = self.secrets.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        secrets.iter().fold(text, |text, s| s.scrub(&text))
    }
}

/// The rate-limit key of an incoming webhook: the same for a Slack route and for a webhook of
/// Slack's flavor to that URL, so that both share Slack's per-channel limit.
pub(crate) fn incoming_webhook_key(url: &str) -> String {
    rest::destination_key("slack", &["webhook", url])
}

/// What an incoming webhook's answer means: None when the message was posted, else the error
/// (without the URL, which the caller names without its secret part).
pub(crate) fn judge_incoming_webhook(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> Option<SendError> {
    judge(false, status, retry_after, body)
}

/// What Slack's answer means: None when the message was posted, else the error without the
/// route's label (which the caller puts first). `api` is true for `chat.postMessage`, false for
/// an incoming webhook.
fn judge(
    api: bool,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> Option<SendError> {
    let retryable = |message: String| SendError::Retryable {
        message,
        retry_after,
    };
    // chat.postMessage answers in JSON, an incoming webhook with a bare error code.
    let (code, detail) = if api {
        match serde_json::from_str::<ApiAnswer>(body) {
            Ok(answer) if answer.ok && status.is_success() => return None,
            Ok(answer) => {
                let code = answer.error.unwrap_or_default();
                let mut detail = code.clone();
                let notes = answer
                    .response_metadata
                    .map(|m| m.messages)
                    .unwrap_or_default();
                if !notes.is_empty() {
                    detail.push_str(&format!(" ({})", rest::excerpt(&notes.join("; "), 500)));
                }
                (code, detail)
            }
            Err(_) if status.is_success() => {
                return Some(retryable(format!(
                    "HTTP {status} without Slack's JSON answer ({:?}); is the API base URL \
                     right? retrying",
                    rest::excerpt(body, 200)
                )));
            }
            Err(_) => (String::new(), rest::excerpt(body, 200)),
        }
    } else {
        let text = body.trim();
        let is_code = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let code = if is_code {
            text.to_string()
        } else {
            String::new()
        };
        (code, rest::excerpt(text, 200))
    };
    let code = code.as_str();
    let with_status = if status.is_success() && api {
        // ok:false comes with a 200: the code says it all.
        detail.clone()
    } else if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    if status == StatusCode::TOO_MANY_REQUESTS || TRANSIENT.contains(&code) {
        return Some(retryable(with_status));
    }
    if GONE.contains(&code) {
        return Some(SendError::permanent(with_status));
    }
    if status.is_success() {
        return if api {
            Some(SendError::permanent(with_status))
        } else {
            // An incoming webhook's 200 means posted, whatever it says (Slack says "ok";
            // Slack-compatible services say other things).
            None
        };
    }
    match status.as_u16() {
        408 | 425 => Some(retryable(with_status)),
        400..=499 => Some(SendError::permanent(with_status)),
        // 5xx, and 1xx/3xx that Slack never answers: a proxy in trouble.
        _ => Some(retryable(with_status)),
    }
}

#[async_trait]
impl Sender for SlackSender {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn channel(&self) -> Channel {
        Channel::Slack
    }

    fn handles(&self, recipients: &[String]) -> bool {
        self.routes.handles(recipients)
    }

    fn destination(&self, message: &Rendered) -> Option<Destination> {
        let Rendered::Slack(slack) = message else {
            return None;
        };
        let route = self.routes.route(&slack.recipients).ok()?;
        Some(Destination {
            key: route.key.clone(),
            limit: self.per_channel,
        })
    }

    async fn send(&self, _delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let slack = self.message(message)?;
        let route = self
            .routes
            .route(&slack.recipients)
            .map_err(|e| SendError::permanent(format!("slack: {e}")))?;
        let (request, api) = match &route.target {
            Target::Webhook { url } => {
                let body = Body {
                    channel: None,
                    text: &slack.text,
                    blocks: &slack.blocks,
                };
                (self.client.post(url.expose()).json_utf8(&body), false)
            }
            Target::PostMessage {
                url,
                authorization,
                channel,
            } => {
                let body = Body {
                    channel: Some(channel),
                    text: &slack.text,
                    blocks: &slack.blocks,
                };
                let request = self
                    .client
                    .post(url)
                    .header(AUTHORIZATION, authorization.clone())
                    .json_utf8(&body);
                (request, true)
            }
        };
        let fail = |e: SendError| {
            rest::map_message(e, |message| {
                route.scrub(format!("slack {}: {message}", route.label))
            })
        };
        let response = request
            .send()
            .await
            .map_err(|e| fail(SendError::retryable(rest::transport_error(e, self.timeout))))?;
        let status = response.status();
        let retry_after = rest::retry_after(response.headers());
        let body = rest::read_bounded(response).await;
        match judge(api, status, retry_after, &body) {
            None => Ok(()),
            Some(e) => Err(fail(e)),
        }
    }
}

/// Slack asks for the charset on JSON posts (and warns `missing_charset` without it).
trait JsonUtf8 {
    fn json_utf8<T: Serialize>(self, body: &T) -> Self;
}

impl JsonUtf8 for reqwest::RequestBuilder {
    fn json_utf8<T: Serialize>(self, body: &T) -> Self {
        let bytes = serde_json::to_vec(body).expect("a Slack message always serializes");
        self.header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )
        .body(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permanent(e: &Option<SendError>) -> bool {
        matches!(e, Some(SendError::Permanent { .. }))
    }

    fn retryable(e: &Option<SendError>) -> bool {
        matches!(e, Some(SendError::Retryable { .. }))
    }

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn webhook_answers_are_classified() {
        assert_eq!(judge(false, status(200), None, "ok"), None);
        for (code, body) in [
            (400, "invalid_payload"),
            (403, "invalid_token"),
            (403, "action_prohibited"),
            (404, "channel_not_found"),
            (404, "no_service"),
            (410, "channel_is_archived"),
            (200, "channel_not_found"),
            (500, "no_service"),
        ] {
            let e = judge(false, status(code), None, body);
            assert!(permanent(&e), "{code} {body}: {e:?}");
            assert!(e.unwrap().to_string().ends_with(body));
        }
        for (code, body) in [(500, "rollup_error"), (503, ""), (502, "<html>"), (408, "")] {
            assert!(retryable(&judge(false, status(code), None, body)), "{code}");
        }
        assert_eq!(
            judge(false, status(404), None, "channel_not_found"),
            Some(SendError::permanent(
                "HTTP 404 Not Found: channel_not_found"
            ))
        );
    }

    #[test]
    fn api_answers_are_classified() {
        assert_eq!(
            judge(
                true,
                status(200),
                None,
                r#"{"ok":true,"channel":"C1","ts":"1.2"}"#
            ),
            None
        );
        assert_eq!(
            judge(
                true,
                status(200),
                None,
                r#"{"ok":false,"error":"channel_not_found"}"#
            ),
            Some(SendError::permanent("channel_not_found"))
        );
        let e = judge(
            true,
            status(200),
            None,
            r#"{"ok":false,"error":"invalid_blocks","response_metadata":{"messages":["[ERROR] must be less than 3001 characters [json-pointer:/blocks/2/text/text]"]}}"#,
        );
        assert_eq!(
            e.unwrap().to_string(),
            "invalid_blocks ([ERROR] must be less than 3001 characters \
             [json-pointer:/blocks/2/text/text])"
        );
        assert!(retryable(&judge(
            true,
            status(200),
            None,
            r#"{"ok":false,"error":"internal_error"}"#
        )));
        assert!(retryable(&judge(
            true,
            status(502),
            None,
            "<html>bad gateway</html>"
        )));
        // A 200 that is not Slack's JSON: a wrong base URL, which an operator can fix.
        let e = judge(true, status(200), None, "<html>welcome</html>");
        assert!(retryable(&e) && e.unwrap().to_string().contains("API base URL"));
    }

    #[test]
    fn a_429_is_retried_after_its_delay() {
        for api in [false, true] {
            let body = if api {
                r#"{"ok":false,"error":"ratelimited"}"#
            } else {
                "rate_limited"
            };
            assert_eq!(
                judge(api, status(429), Some(Duration::from_secs(2)), body).and_then(|e| match e {
                    SendError::Retryable { retry_after, .. } => retry_after,
                    _ => None,
                }),
                Some(Duration::from_secs(2))
            );
        }
    }

    fn settings(routes: Vec<SlackRoute>) -> SlackSettings {
        SlackSettings {
            api_base_url: DEFAULT_API_BASE_URL.into(),
            routes,
            timeout: Duration::from_secs(5),
            per_channel: DEFAULT_PER_CHANNEL,
        }
    }

    const HOOK: &str = "https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx";

    fn webhook(recipients: &[&str], url: &str) -> SlackRoute {
        SlackRoute {
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
            destination: SlackDestination::IncomingWebhook {
                url: Secret::new(url),
            },
        }
    }

    fn bot(recipients: &[&str], token: &str, channel: &str) -> SlackRoute {
        SlackRoute {
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
            destination: SlackDestination::PostMessage {
                token: Secret::new(token),
                channel: channel.into(),
            },
        }
    }

    fn slack(recipients: &[&str]) -> Rendered {
        Rendered::Slack(SlackMessage {
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
            text: "t".into(),
            blocks: serde_json::Value::Null,
        })
    }

    #[test]
    fn destinations_are_per_route_and_hold_no_secret() {
        let sender = SlackSender::new(settings(vec![
            webhook(&["#a", "a@acme.slack.com"], HOOK),
            bot(&["#b"], "xoxb-1-secret", "#b"),
            bot(&["#c"], "xoxb-1-secret", "#C"),
            bot(&["#c2"], "xoxb-1-secret", "#c"),
        ]))
        .unwrap();
        let key = |r: &str| sender.destination(&slack(&[r])).unwrap().key;
        assert_eq!(key("#a"), key("A@acme.slack.com"));
        assert_ne!(key("#a"), key("#b"));
        // One channel, whatever case the config wrote it in, is one bucket.
        assert_eq!(key("#c"), key("#c2"));
        for r in ["#a", "#b"] {
            let d = sender.destination(&slack(&[r])).unwrap();
            assert!(
                !d.key.contains("secret") && !d.key.contains("abcdefgh"),
                "{d:?}"
            );
            assert_eq!(d.limit, DEFAULT_PER_CHANNEL);
        }
        assert_eq!(sender.destination(&slack(&["#nowhere"])), None);
        assert!(sender.handles(&["#A".to_string()]));
        assert!(!sender.handles(&["oncall@example.com".to_string()]));
    }

    #[test]
    fn bad_routes_are_refused_without_their_secrets() {
        let refuse = |route| SlackSender::new(settings(vec![route])).err().unwrap();
        let e = refuse(webhook(
            &["#a"],
            "hooks.slack.com/services/T/B/abcdefghijklmnopq",
        ));
        assert!(
            e.contains("slack route 0 (#a)") && !e.contains("abcdefgh"),
            "{e}"
        );
        let e = refuse(bot(&["#a"], "xoxb-bad\ntoken", "#a"));
        assert!(
            e.contains("cannot go in an HTTP header") && !e.contains("xoxb"),
            "{e}"
        );
        let e = refuse(bot(&["#a"], "xoxb-1", " "));
        assert!(e.contains("channel"), "{e}");
        let e = refuse(bot(&["#a"], "", "#a"));
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn every_part_of_a_webhook_url_is_scrubbed() {
        let sender = SlackSender::new(settings(vec![webhook(&["#a"], HOOK)])).unwrap();
        let route = sender.routes.route(&["#a".to_string()]).unwrap();
        let path = "/services/T0001/B0002/abcdefghijklmnopqrstuvwx";
        let text = format!("{HOOK} | {path} | abcdefghijklmnopqrstuvwx");
        let scrubbed = route.scrub(text);
        assert_eq!(scrubbed, "[secret] | [secret] | [secret]");
    }

    #[tokio::test]
    async fn a_message_without_a_route_fails_permanently_and_says_why() {
        let sender = SlackSender::new(settings(vec![webhook(&["#a"], HOOK)])).unwrap();
        let d = DeliveryRef {
            id: "d".into(),
            request_id: "r".into(),
            attempt: 1,
            lease: crate::delivery::LeaseToken(1),
        };
        let e = sender.send(&d, &slack(&["#elsewhere"])).await.unwrap_err();
        assert_eq!(
            e,
            SendError::permanent(
                "slack: no route names the recipient \"#elsewhere\" (flyteNotify.slack.routes)"
            )
        );
    }
}
