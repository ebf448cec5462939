//! Webhooks: one HTTP request per delivery, to a URL the notification names (held to the SSRF
//! guard, `net_guard`) or to a destination the operator configured (whose URL, signing secret
//! and headers stay in the config and may change without touching the ledger).
//!
//! The request carries the rendered method and body; `Content-Type: application/json` unless the
//! notification sets another (the body was escaped for it); the notification's headers, then
//! the destination's, which replace any of the same name (but never Content-Type);
//! `Idempotency-Key: <delivery id>`, the same on every attempt, so that a receiver can drop a
//! repeat; and, when a signing secret applies, the Standard Webhooks headers (`webhook-id` = the
//! delivery id, `webhook-timestamp`, `webhook-signature`; see `signing`). Inline URLs are signed
//! with the default secret (`flyteNotify.webhooks.signingSecretEnvVar`), destinations with their
//! own, when set; a destination without one is not signed.
//!
//! Configured destinations are not held to the allow-list: the operator wrote them, and listing
//! an internal host there would open it to every caller's inline URLs too. Inline URLs go
//! through a client whose resolver is the guard and which uses no proxy (through a proxy, the
//! guard would only ever see the proxy's address). Neither client follows redirects.
//!
//! Secrets: a destination's URL is one (chat services put their tokens in the path), so errors
//! name the destination and never its URL, and whatever a receiver echoes back is scrubbed of
//! the URL, its path and query, and the signing secret. An inline URL is the caller's own and is
//! shown without its query string (where tokens go), which is scrubbed too.
//!
//! A URL of Slack's flavor (`flavor_of`: a Slack incoming webhook, as Flyte 2 sends Slack
//! notifications) is sent as Slack expects: unsigned (Slack ignores the headers, and a signature
//! made with our secret would only travel to a third party), rate limited per URL at the Slack
//! rate (`flyteNotify.slack.rateLimit`, sharing the bucket of a Slack route to the same URL), and
//! its answers read as Slack's (`slack::judge_incoming_webhook`).

mod flavor;
mod reply;
pub mod rules;
pub mod signing;

pub use flavor::{WebhookFlavor, flavor_of};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use url::Url;

use crate::channels::net_guard::{self, WebhookPolicy};
use crate::channels::secret::Secret;
use crate::channels::{Destination, RateLimit, SendError, Sender, error_chain, rest, slack};
use crate::delivery::{Channel, DeliveryRef, Rendered, WebhookRequest, WebhookTarget};
use signing::SigningKey;

/// The config key of the destinations, for errors.
const DESTINATIONS_KEY: &str = "flyteNotify.webhooks.destinations";

/// Ten requests a second per URL: far above what notifications of workflow executions need,
/// low enough that a burst of failures cannot hammer a receiver.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    events: 10,
    per: Duration::from_secs(1),
};

/// A destination from `flyteNotify.webhooks.destinations`, with its secrets read.
#[derive(Debug, Clone)]
pub struct WebhookDestination {
    pub name: String,
    pub url: Secret,
    pub signing_secret: Option<Secret>,
    /// Sent with every request to it, replacing a notification's header of the same name.
    pub headers: Vec<(String, String)>,
}

/// Everything the webhook sender is built from.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Shared with Enqueue's checks.
    pub policy: Arc<WebhookPolicy>,
    pub destinations: Vec<WebhookDestination>,
    /// Signs requests to inline URLs; None sends them unsigned.
    pub default_signing_secret: Option<Secret>,
    /// Per attempt, when the webhook sets none (the worker's sendTimeout).
    pub timeout: Duration,
    /// Per URL (per destination for configured ones).
    pub per_url: RateLimit,
    /// Per URL of Slack's flavor: the Slack rate (`slack::DEFAULT_PER_CHANNEL`).
    pub slack_per_url: RateLimit,
}

/// A destination, read once.
struct Configured {
    url: Url,
    key: Option<SigningKey>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The texts no error may show: the URL, its path and query, the signing secret.
    secrets: Vec<String>,
}

pub struct WebhookSender {
    policy: Arc<WebhookPolicy>,
    /// For inline URLs: resolves through the guard, no proxy.
    guarded: reqwest::Client,
    /// For configured destinations.
    trusted: reqwest::Client,
    destinations: HashMap<String, Configured>,
    default_key: Option<SigningKey>,
    default_secret: Option<Secret>,
    timeout: Duration,
    per_url: RateLimit,
    slack_per_url: RateLimit,
}

/// Where one request goes, as `send` needs it.
struct Target<'a> {
    client: &'a reqwest::Client,
    url: Url,
    key: Option<&'a SigningKey>,
    headers: &'a [(HeaderName, HeaderValue)],
    /// For errors: the URL without its query, or the destination's name.
    shown: String,
    secrets: Vec<String>,
}

/// How a target is named in errors and in Preview: an inline URL without its query string or
/// fragment (where tokens go); a destination by its name, never its URL.
pub fn describe_target(target: &WebhookTarget) -> String {
    match target {
        WebhookTarget::Url(url) => match Url::parse(url) {
            Ok(parsed) => parsed[..url::Position::AfterPath].to_string(),
            Err(_) => "an invalid URL".to_string(),
        },
        WebhookTarget::Destination(name) => {
            format!("destination {}", crate::delivery::quoted(name))
        }
    }
}

fn http_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        // A redirect is a failure: following it would take the request, and its signature,
        // somewhere nobody checked.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("flyte-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client for webhooks: {e}"))
}

/// `text` with every non-empty secret piece replaced, longest first (a URL before its path).
fn scrub(text: String, secrets: &[String]) -> String {
    let mut pieces: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    pieces.sort_by_key(|s| std::cmp::Reverse(s.len()));
    pieces
        .into_iter()
        .fold(text, |text, piece| Secret::new(piece.as_str()).scrub(&text))
}

impl WebhookSender {
    /// Reads the destinations (URL, signing secret, headers) and builds the HTTP clients. An
    /// error is `(config key, why)` and never holds a secret.
    pub fn new(settings: WebhookSettings) -> Result<Self, (String, String)> {
        let mut destinations = HashMap::new();
        for (i, d) in settings.destinations.iter().enumerate() {
            let key = format!("{DESTINATIONS_KEY}[{i}]");
            let configured = configure(&key, d)?;
            if destinations.insert(d.name.clone(), configured).is_some() {
                return Err((
                    format!("{key}.name"),
                    format!("{} is named twice", crate::delivery::quoted(&d.name)),
                ));
            }
        }
        let default_key = settings
            .default_signing_secret
            .as_ref()
            .map(SigningKey::from_secret)
            .transpose()
            .map_err(|e| ("flyteNotify.webhooks.signingSecretEnvVar".to_string(), e))?;
        let no_key = |e| ("flyteNotify.webhooks".to_string(), e);
        let guarded = http_client(
            reqwest::Client::builder()
                .dns_resolver(settings.policy.resolver())
                .no_proxy(),
        )
        .map_err(no_key)?;
        let trusted = http_client(reqwest::Client::builder()).map_err(no_key)?;
        Ok(Self {
            policy: settings.policy,
            guarded,
            trusted,
            destinations,
            default_key,
            default_secret: settings.default_signing_secret,
            timeout: settings.timeout,
            per_url: settings.per_url,
            slack_per_url: settings.slack_per_url,
        })
    }

    /// The client for inline URLs, whose resolver is the SSRF guard: for the Teams sender, which
    /// calls URLs that requests name too, and so must be held to the same guard.
    pub fn guarded_client(&self) -> reqwest::Client {
        self.guarded.clone()
    }

    /// Whether `name` is a configured destination: what Enqueue checks a notification's
    /// `destination` against.
    pub fn has_destination(&self, name: &str) -> bool {
        self.destinations.contains_key(name)
    }

    /// The policy inline URLs are held to.
    pub fn policy(&self) -> &Arc<WebhookPolicy> {
        &self.policy
    }

    fn target(&self, request: &WebhookRequest) -> Result<Target<'_>, SendError> {
        match &request.target {
            WebhookTarget::Url(url) => {
                let slack = request.flavor == WebhookFlavor::Slack;
                // A Slack incoming webhook's path is its credential: only its host is shown.
                let shown_before_check = if slack {
                    "to a Slack incoming webhook".to_string()
                } else {
                    describe_target(&request.target)
                };
                let what = format!("webhook {} {shown_before_check}", request.method);
                // Checked again here: the allow-list may have changed since Enqueue, and an
                // address literal never reaches the guarded resolver.
                let parsed = self
                    .policy
                    .check_url(url)
                    .map_err(|e| SendError::permanent(format!("{what}: refused: {e}")))?;
                let mut secrets: Vec<String> =
                    parsed.query().map(str::to_string).into_iter().collect();
                secrets.extend(self.default_secret.iter().map(|s| s.expose().to_string()));
                let shown = if slack {
                    secrets.extend(
                        slack::webhook_secrets(&Secret::new(url.as_str()), &parsed)
                            .iter()
                            .map(|s| s.expose().to_string()),
                    );
                    format!(
                        "to the Slack incoming webhook at {}",
                        parsed.host_str().unwrap_or("an unnamed host")
                    )
                } else {
                    parsed[..url::Position::AfterPath].to_string()
                };
                Ok(Target {
                    client: &self.guarded,
                    shown,
                    url: parsed,
                    key: self.default_key.as_ref(),
                    headers: &[],
                    secrets,
                })
            }
            WebhookTarget::Destination(name) => {
                let d = self.destinations.get(name).ok_or_else(|| {
                    SendError::permanent(format!(
                        "webhook: no destination named {} is configured ({DESTINATIONS_KEY})",
                        crate::delivery::quoted(name)
                    ))
                })?;
                Ok(Target {
                    client: &self.trusted,
                    url: d.url.clone(),
                    key: d.key.as_ref(),
                    headers: &d.headers,
                    shown: format!("to {}", describe_target(&request.target)),
                    secrets: d.secrets.clone(),
                })
            }
        }
    }

    /// Every header of the request, the server's last so that nothing replaces them.
    fn headers(
        &self,
        delivery: &DeliveryRef,
        request: &WebhookRequest,
        target: &Target<'_>,
        what: &str,
    ) -> Result<HeaderMap, SendError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let (name, value) = rules::header(name, value)
                .map_err(|e| SendError::permanent(format!("{what}: header {name}: {e}")))?;
            headers.append(name, value);
        }
        for (name, _) in target.headers {
            headers.remove(name);
        }
        for (name, value) in target.headers {
            headers.append(name.clone(), value.clone());
        }
        if !request.body.is_empty() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let id = HeaderValue::from_str(&delivery.id).map_err(|_| {
            SendError::permanent(format!("{what}: the delivery id cannot go in a header"))
        })?;
        headers.insert(rules::IDEMPOTENCY_KEY, id.clone());
        // Slack and Teams check no signature: one made with our secret would only travel to a
        // third party. (Teams requests normally go by the Teams sender; this covers one routed
        // here as a plain webhook.)
        let signed = match request.flavor {
            WebhookFlavor::Generic => target.key,
            WebhookFlavor::Slack | WebhookFlavor::Teams => None,
        };
        if let Some(key) = signed {
            let timestamp = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let signature = key.sign(&delivery.id, timestamp, request.body.as_bytes());
            headers.insert(rules::WEBHOOK_ID, id);
            headers.insert(rules::WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
            headers.insert(
                rules::WEBHOOK_SIGNATURE,
                HeaderValue::from_str(&signature).expect("base64 is a valid header value"),
            );
        }
        Ok(headers)
    }

    /// A request that got no answer: refused by the guard (permanent), timed out or failed to
    /// connect (retryable).
    fn no_answer(
        &self,
        what: &str,
        e: reqwest::Error,
        request: &WebhookRequest,
        timeout: Duration,
    ) -> SendError {
        if let Some(refused) = net_guard::refusal_in(&e) {
            return SendError::permanent(format!("{what}: refused: {refused}"));
        }
        let why = if e.is_timeout() {
            let whose = if request.timeout.is_some() {
                "the webhook's timeout"
            } else {
                "flyteNotify.worker.sendTimeout"
            };
            format!(
                "no answer within {} ({whose})",
                humantime::format_duration(timeout)
            )
        } else {
            // The URL is said once, in `what`, and may hold a secret.
            error_chain(&e.without_url())
        };
        SendError::retryable(format!("{what}: {why}"))
    }
}

fn configure(key: &str, d: &WebhookDestination) -> Result<Configured, (String, String)> {
    if d.name.trim().is_empty() {
        return Err((format!("{key}.name"), "required".into()));
    }
    let url_key = format!("{key}.urlEnvVar");
    // The parser's own message never quotes the URL; ours must not either.
    let url = Url::parse(d.url.expose()).map_err(|e| {
        (
            url_key.clone(),
            format!("the URL it names is not a URL: {e}"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err((
            url_key,
            "the URL it names must be an http or https URL with a host".into(),
        ));
    }
    let signing = d
        .signing_secret
        .as_ref()
        .map(SigningKey::from_secret)
        .transpose()
        .map_err(|e| (format!("{key}.signingSecretEnvVar"), e))?;
    if d.headers.len() > rules::MAX_HEADERS {
        return Err((
            format!("{key}.headers"),
            format!("at most {} headers", rules::MAX_HEADERS),
        ));
    }
    let headers = d
        .headers
        .iter()
        .map(|(name, value)| {
            let field = format!("{key}.headers[{name:?}]");
            // The body is escaped for the notification's Content-Type when it is rendered;
            // a destination relabelling it would make JSON-escaped text claim to be a form.
            if name.eq_ignore_ascii_case("content-type") {
                return Err((
                    field,
                    "Content-Type is the notification's to set: the body is rendered for it".into(),
                ));
            }
            rules::header(name, value).map_err(|e| (field, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut secrets = vec![d.url.expose().to_string()];
    if url.path().len() > 1 || url.query().is_some() {
        secrets.push(url[url::Position::BeforePath..].to_string());
    }
    secrets.extend(url.query().map(str::to_string));
    secrets.extend(d.signing_secret.iter().map(|s| s.expose().to_string()));
    Ok(Configured {
        url,
        key: signing,
        headers,
        secrets,
    })
}

#[async_trait]
impl Sender for WebhookSender {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    async fn send(&self, delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let Rendered::Webhook(request) = message else {
            return Err(SendError::wrong_channel(self.name(), message));
        };
        let target = self.target(request)?;
        let what = format!("webhook {} {}", request.method, target.shown);
        let result = async {
            let method = rules::method(&request.method)
                .map_err(|e| SendError::permanent(format!("{what}: {e}")))?;
            let headers = self.headers(delivery, request, &target, &what)?;
            let timeout = request.timeout.unwrap_or(self.timeout);
            let mut builder = target
                .client
                .request(method, target.url.clone())
                .headers(headers)
                .timeout(timeout);
            if !request.body.is_empty() {
                builder = builder.body(request.body.clone());
            }
            let response = builder
                .send()
                .await
                .map_err(|e| self.no_answer(&what, e, request, timeout))?;
            let status = response.status();
            if request.flavor == WebhookFlavor::Slack {
                // Slack's codes come in the body, with a 200 or an error status alike.
                let retry_after = rest::retry_after(response.headers());
                let body = rest::read_bounded(response).await;
                return match slack::judge_incoming_webhook(status, retry_after, &body) {
                    None => Ok(()),
                    Some(e) => Err(rest::map_message(e, |m| format!("{what}: {m}"))),
                };
            }
            if status.is_success() {
                return Ok(());
            }
            let retry_after = rest::retry_after(response.headers());
            let excerpt = reply::excerpt(response).await;
            Err(reply::classify(&what, status, retry_after, &excerpt))
        }
        .await;
        result.map_err(|e| match e {
            SendError::Retryable {
                message,
                retry_after,
            } => SendError::Retryable {
                message: scrub(message, &target.secrets),
                retry_after,
            },
            SendError::Permanent { message } => {
                SendError::permanent(scrub(message, &target.secrets))
            }
            deferred @ SendError::Deferred { .. } => deferred,
        })
    }

    /// A webhook delivery's recipients, if any, name its target (a destination or a URL);
    /// this sender can take it unless they name a destination it does not have.
    fn handles(&self, recipients: &[String]) -> bool {
        recipients.iter().all(|r| {
            self.destinations.contains_key(r)
                || r.starts_with("http://")
                || r.starts_with("https://")
        })
    }

    /// One bucket per destination, and per inline URL (hashed: its query may hold a token).
    fn destination(&self, message: &Rendered) -> Option<Destination> {
        let Rendered::Webhook(request) = message else {
            return None;
        };
        let key = match &request.target {
            WebhookTarget::Destination(name) => format!("webhook:destination:{name}"),
            // The key a Slack route to the same incoming webhook has: one bucket for both.
            WebhookTarget::Url(url) if request.flavor == WebhookFlavor::Slack => {
                return Some(Destination {
                    key: slack::incoming_webhook_key(url),
                    limit: self.slack_per_url,
                });
            }
            WebhookTarget::Url(url) => {
                let digest = Sha256::digest(url.as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("webhook:url:{hex}")
            }
        };
        Some(Destination {
            key,
            limit: self.per_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(destinations: Vec<WebhookDestination>) -> WebhookSettings {
        WebhookSettings {
            policy: Arc::new(WebhookPolicy::new(&["hooks.example.com".into()], false).unwrap()),
            destinations,
            default_signing_secret: None,
            timeout: Duration::from_secs(5),
            per_url: DEFAULT_RATE_LIMIT,
            slack_per_url: slack::DEFAULT_PER_CHANNEL,
        }
    }

    fn destination(name: &str, url: &str) -> WebhookDestination {
        WebhookDestination {
            name: name.into(),
            url: Secret::new(url),
            signing_secret: None,
            headers: Vec::new(),
        }
    }

    fn request(target: WebhookTarget) -> Rendered {
        Rendered::Webhook(WebhookRequest {
            recipients: Vec::new(),
            target,
            method: "POST".into(),
            headers: Vec::new(),
            body: "{}".into(),
            timeout: None,
            flavor: crate::delivery::WebhookFlavor::Generic,
        })
    }

    #[test]
    fn destinations_are_checked_at_start_and_errors_never_show_their_urls() {
        let secret_url = "https://hooks.example.com/T000/B000/s3cr3t";
        let mut bad = destination("ops", "hooks.example.com/T000/s3cr3t");
        let (key, why) = WebhookSender::new(settings(vec![bad.clone()]))
            .err()
            .unwrap();
        assert_eq!(key, "flyteNotify.webhooks.destinations[0].urlEnvVar");
        assert!(!why.contains("s3cr3t"), "{why}");
        bad.url = Secret::new("ftp://h/s3cr3t");
        let (_, why) = WebhookSender::new(settings(vec![bad])).err().unwrap();
        assert!(why.contains("http or https"), "{why}");
        assert!(!why.contains("s3cr3t"), "{why}");

        let twice = vec![
            destination("ops", secret_url),
            destination("ops", secret_url),
        ];
        let (key, _) = WebhookSender::new(settings(twice)).err().unwrap();
        assert_eq!(key, "flyteNotify.webhooks.destinations[1].name");

        for name in ["Idempotency-Key", "content-type"] {
            let mut reserved = destination("ops", secret_url);
            reserved.headers = vec![(name.into(), "x".into())];
            let (key, _) = WebhookSender::new(settings(vec![reserved])).err().unwrap();
            assert_eq!(
                key,
                format!("flyteNotify.webhooks.destinations[0].headers[{name:?}]")
            );
        }

        let mut unsigned = destination("ops", secret_url);
        unsigned.signing_secret = Some(Secret::new("whsec_!!"));
        let (key, _) = WebhookSender::new(settings(vec![unsigned])).err().unwrap();
        assert_eq!(
            key,
            "flyteNotify.webhooks.destinations[0].signingSecretEnvVar"
        );
    }

    #[test]
    fn rate_limit_keys_name_the_destination_or_hash_the_url() {
        let sender =
            WebhookSender::new(settings(vec![destination("ops", "https://h.example/x")])).unwrap();
        let key = |t| sender.destination(&request(t)).unwrap().key;
        assert_eq!(
            key(WebhookTarget::Destination("ops".into())),
            "webhook:destination:ops"
        );
        let url = key(WebhookTarget::Url(
            "https://h.example/x?token=s3cr3t".into(),
        ));
        assert!(
            url.starts_with("webhook:url:") && !url.contains("s3cr3t"),
            "{url}"
        );
        assert_ne!(url, key(WebhookTarget::Url("https://h.example/y".into())));
        assert_eq!(
            sender
                .destination(&request(WebhookTarget::Destination("ops".into())))
                .unwrap()
                .limit,
            DEFAULT_RATE_LIMIT
        );
    }

    #[test]
    fn handles_urls_and_known_destinations() {
        let sender =
            WebhookSender::new(settings(vec![destination("ops", "https://h.example/x")])).unwrap();
        assert!(sender.handles(&[]));
        assert!(sender.handles(&["ops".into()]));
        assert!(sender.handles(&["https://hooks.example.com/a".into()]));
        assert!(!sender.handles(&["nope".into()]));
        assert!(sender.has_destination("ops") && !sender.has_destination("nope"));
    }

    #[test]
    fn targets_are_described_without_secrets() {
        assert_eq!(
            describe_target(&WebhookTarget::Url(
                "https://hooks.example.com:8443/a/b?token=s3cr3t#frag".into()
            )),
            "https://hooks.example.com:8443/a/b"
        );
        assert_eq!(
            describe_target(&WebhookTarget::Destination("ops".into())),
            "destination \"ops\""
        );
    }

    #[tokio::test]
    async fn refusals_and_unknown_destinations_are_permanent_before_anything_is_sent() {
        let sender = WebhookSender::new(settings(Vec::new())).unwrap();
        let d = DeliveryRef {
            id: "d1".into(),
            request_id: "r".into(),
            attempt: 1,
            lease: crate::delivery::LeaseToken(1),
        };
        let e = sender
            .send(
                &d,
                &request(WebhookTarget::Url("http://127.0.0.1:9/x?k=s3cr3t".into())),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SendError::permanent(
                "webhook POST http://127.0.0.1:9/x: refused: host 127.0.0.1 is a loopback \
                 address; add it to flyteNotify.webhooks.allowedHosts to allow it"
            )
        );
        let e = sender
            .send(&d, &request(WebhookTarget::Destination("gone".into())))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert!(
            e.to_string().contains("no destination named \"gone\""),
            "{e}"
        );
    }

    #[test]
    fn scrubbing_takes_the_longest_piece_first() {
        let secrets = vec![
            "/hook/s3cr3t?k=v".to_string(),
            "https://h.example/hook/s3cr3t?k=v".to_string(),
            "k=v".to_string(),
            String::new(),
        ];
        assert_eq!(
            scrub(
                "at https://h.example/hook/s3cr3t?k=v: path /hook/s3cr3t?k=v, k=v".into(),
                &secrets
            ),
            "at [secret]: path [secret], [secret]"
        );
    }
}
