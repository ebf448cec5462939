//! PagerDuty, natively, through the Events API v2: a `PagerDutyNotification`'s recipients are
//! mapped by the configured routes to a service's routing key, and the rendered event is
//! enqueued there. A trigger carries the whole event; a resolve only its dedup_key, which PagerDuty
//! matches with the incident the triggers opened.
//!
//! PagerDuty's answers: 202 accepted; 400 the event is invalid (permanent, with PagerDuty's
//! `message` and `errors`); 429 too many events for the routing key, and 5xx: retried, honouring
//! Retry-After when there is one. The routing key is a credential: it is in no error, and what
//! PagerDuty (or a proxy) echoes back is scrubbed of it.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::routes::RouteTable;
use super::secret::Secret;
use super::{Destination, RateLimit, SendError, Sender, rest};
use crate::delivery::{Channel, DeliveryRef, PagerDutyAction, PagerDutyEvent, Rendered};

/// PagerDuty's Events API v2.
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty throttles above about 120 events a minute per routing key.
pub const DEFAULT_PER_ROUTING_KEY: RateLimit = RateLimit {
    events: 120,
    per: Duration::from_secs(60),
};

/// The longest summary PagerDuty takes, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;

/// The longest dedup_key PagerDuty takes, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;

/// Everything the PagerDuty sender needs; the lead's config builds it.
#[derive(Debug, Clone)]
pub struct PagerDutySettings {
    /// `DEFAULT_EVENTS_URL`; a local stand-in in tests.
    pub events_url: String,
    pub routes: Vec<PagerDutyRoute>,
    /// Per request, connecting included.
    pub timeout: Duration,
    /// Per routing key: `Sender::destination`.
    pub per_routing_key: RateLimit,
}

/// Recipients of `PagerDutyNotification`s (compared in any case) and the Events v2 routing key
/// (integration key) of the service their incidents go to.
#[derive(Debug, Clone)]
pub struct PagerDutyRoute {
    pub recipients: Vec<String>,
    pub routing_key: Secret,
}

pub struct PagerDutySender {
    url: String,
    routes: RouteTable<Route>,
    client: reqwest::Client,
    timeout: Duration,
    per_routing_key: RateLimit,
}

struct Route {
    routing_key: Secret,
    /// The rate-limit key: a digest of the routing key.
    key: String,
}

#[derive(Debug, Serialize, PartialEq)]
struct Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Link<'a>>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Payload<'a> {
    summary: &'a str,
    source: &'a str,
    severity: &'a str,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    custom_details: &'a serde_json::Value,
}

#[derive(Debug, Serialize, PartialEq)]
struct Link<'a> {
    href: &'a str,
    text: &'a str,
}

/// PagerDuty's error answer: `{"status", "message", "errors": [...]}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

/// `text` cut to its first `max` characters.
fn at_most(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        None => text,
        Some((cut, _)) => &text[..cut],
    }
}

/// The request body for one attempt. The dedup_key is the event's (the renderer derives it from
/// the launch plan, so that its failures share one incident); an event without one gets the
/// delivery's id, the same on every attempt, so that a retried trigger opens no second incident.
fn event<'a>(delivery: &'a DeliveryRef, routing_key: &'a str, e: &'a PagerDutyEvent) -> Event<'a> {
    let dedup_key = if e.dedup_key.is_empty() {
        delivery.id.as_str()
    } else {
        e.dedup_key.as_str()
    };
    // The renderer keeps within PagerDuty's limits; cutting here too means an event from
    // anywhere else is still sent rather than refused for its length.
    let dedup_key = at_most(dedup_key, MAX_DEDUP_KEY_CHARS);
    match e.action {
        PagerDutyAction::Resolve => Event {
            routing_key,
            event_action: "resolve",
            dedup_key,
            payload: None,
            links: Vec::new(),
        },
        PagerDutyAction::Trigger => Event {
            routing_key,
            event_action: "trigger",
            dedup_key,
            payload: Some(Payload {
                summary: at_most(&e.summary, MAX_SUMMARY_CHARS),
                // PagerDuty requires one.
                source: if e.source.is_empty() {
                    "flyte"
                } else {
                    &e.source
                },
                severity: &e.severity,
                custom_details: &e.custom_details,
            }),
            links: e
                .links
                .iter()
                .map(|(href, text)| Link { href, text })
                .collect(),
        },
    }
}

/// What a non-2xx answer means for the delivery.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendError {
    let detail = match serde_json::from_str::<ErrorAnswer>(body) {
        Ok(answer) => {
            let mut parts: Vec<String> = answer.message.into_iter().collect();
            parts.extend(answer.errors);
            rest::excerpt(&parts.join(": "), 1000)
        }
        Err(_) => rest::excerpt(body, 200),
    };
    let mut message = format!("pagerduty: HTTP {status}");
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(&detail);
    }
    let retryable = |message: String| SendError::Retryable {
        message,
        retry_after,
    };
    match status.as_u16() {
        404 | 405 => retryable(format!("{message}; is the events URL right? retrying")),
        408 | 425 | 429 => retryable(message),
        // 400: the event itself is invalid (a bad routing key is one too); 413: too large.
        400..=499 => SendError::permanent(message),
        // 5xx, and 1xx/3xx that PagerDuty never answers.
        _ => retryable(message),
    }
}

impl PagerDutySender {
    pub fn new(settings: PagerDutySettings) -> Result<Self, String> {
        if settings.timeout.is_zero() {
            return Err("pagerduty: the send timeout must be more than zero".into());
        }
        if settings.per_routing_key.events == 0 || settings.per_routing_key.per.is_zero() {
            return Err(
                "pagerduty: the rate limit must allow at least one send per a non-zero time".into(),
            );
        }
        let url = settings.events_url.trim().to_string();
        rest::check_url(&url)
            .map_err(|e| format!("pagerduty: the events URL {url:?} is not usable: {e}"))?;
        let mut routes = Vec::with_capacity(settings.routes.len());
        for (i, route) in settings.routes.into_iter().enumerate() {
            if route.routing_key.expose().trim().is_empty() {
                return Err(format!("pagerduty route {i}: the routing key is empty"));
            }
            let key = rest::destination_key("pagerduty", &[&url, route.routing_key.expose()]);
            routes.push((
                route.recipients,
                Route {
                    routing_key: route.routing_key,
                    key,
                },
            ));
        }
        Ok(Self {
            routes: RouteTable::new("pagerduty", routes)?,
            client: rest::client("PagerDuty", settings.timeout)?,
            url,
            timeout: settings.timeout,
            per_routing_key: settings.per_routing_key,
        })
    }
}

#[async_trait]
impl Sender for PagerDutySender {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn channel(&self) -> Channel {
        Channel::Pagerduty
    }

    fn handles(&self, recipients: &[String]) -> bool {
        self.routes.handles(recipients)
    }

    fn destination(&self, message: &Rendered) -> Option<Destination> {
        let Rendered::PagerDuty(event) = message else {
            return None;
        };
        let route = self.routes.route(&event.recipients).ok()?;
        Some(Destination {
            key: route.key.clone(),
            limit: self.per_routing_key,
        })
    }

    async fn send(&self, delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let Rendered::PagerDuty(pd) = message else {
            return Err(SendError::wrong_channel(self.name(), message));
        };
        let route = self
            .routes
            .route(&pd.recipients)
            .map_err(|e| SendError::permanent(format!("pagerduty: {e}")))?;
        let key = &route.routing_key;
        let body = event(delivery, key.expose(), pd);
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let why = rest::transport_error(e, self.timeout);
                SendError::retryable(key.scrub(&format!("pagerduty POST {}: {why}", self.url)))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = rest::retry_after(response.headers());
        let text = rest::read_bounded(response).await;
        Err(rest::map_message(
            classify(status, retry_after, &text),
            |message| key.scrub(&message),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::LeaseToken;

    fn delivery() -> DeliveryRef {
        DeliveryRef {
            id: "0194-abc".into(),
            request_id: "r".into(),
            attempt: 1,
            lease: LeaseToken(1),
        }
    }

    fn trigger() -> PagerDutyEvent {
        PagerDutyEvent {
            recipients: vec!["oncall@acme.pagerduty.com".into()],
            action: PagerDutyAction::Trigger,
            dedup_key: "flyte/launch_plan/p/d/lp".into(),
            summary: "Flyte execution p/d/e FAILED".into(),
            severity: "error".into(),
            source: "p/d/wf".into(),
            custom_details: serde_json::json!({"phase": "FAILED"}),
            links: vec![("https://console/e".into(), "Flyte console".into())],
        }
    }

    #[test]
    fn a_trigger_carries_the_event_and_a_resolve_only_its_key() {
        let d = delivery();
        let t = trigger();
        assert_eq!(
            serde_json::to_value(event(&d, "R0UTING", &t)).unwrap(),
            serde_json::json!({
                "routing_key": "R0UTING",
                "event_action": "trigger",
                "dedup_key": "flyte/launch_plan/p/d/lp",
                "payload": {
                    "summary": "Flyte execution p/d/e FAILED",
                    "source": "p/d/wf",
                    "severity": "error",
                    "custom_details": {"phase": "FAILED"},
                },
                "links": [{"href": "https://console/e", "text": "Flyte console"}],
            })
        );
        let r = PagerDutyEvent {
            action: PagerDutyAction::Resolve,
            ..trigger()
        };
        assert_eq!(
            serde_json::to_value(event(&d, "R0UTING", &r)).unwrap(),
            serde_json::json!({
                "routing_key": "R0UTING",
                "event_action": "resolve",
                "dedup_key": "flyte/launch_plan/p/d/lp",
            })
        );
    }

    #[test]
    fn limits_are_kept_and_a_missing_key_is_the_delivery_id() {
        let d = delivery();
        let long = PagerDutyEvent {
            summary: "é".repeat(2000),
            dedup_key: String::new(),
            ..trigger()
        };
        let e = event(&d, "k", &long);
        assert_eq!(
            e.payload.unwrap().summary.chars().count(),
            MAX_SUMMARY_CHARS
        );
        assert_eq!(e.dedup_key, "0194-abc");
    }

    #[test]
    fn answers_are_classified() {
        let body = r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"]}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, None, body),
            SendError::permanent(
                "pagerduty: HTTP 400 Bad Request: Event object is invalid: 'payload.severity' is \
                 invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"
            )
        );
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(2)),
                ""
            ),
            SendError::Retryable {
                message: "pagerduty: HTTP 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(2)),
            }
        );
        for code in [500, 502, 503, 404, 408] {
            let e = classify(StatusCode::from_u16(code).unwrap(), None, "x");
            assert!(matches!(e, SendError::Retryable { .. }), "{code}: {e:?}");
        }
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, None, ""),
            SendError::Permanent { .. }
        ));
    }

    fn settings(routes: Vec<PagerDutyRoute>) -> PagerDutySettings {
        PagerDutySettings {
            events_url: DEFAULT_EVENTS_URL.into(),
            routes,
            timeout: Duration::from_secs(5),
            per_routing_key: DEFAULT_PER_ROUTING_KEY,
        }
    }

    fn route(recipients: &[&str], key: &str) -> PagerDutyRoute {
        PagerDutyRoute {
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
            routing_key: Secret::new(key),
        }
    }

    #[test]
    fn destinations_are_per_routing_key_and_hide_it() {
        let sender = PagerDutySender::new(settings(vec![
            route(&["a@acme.pagerduty.com"], "R0UTINGKEYA"),
            route(&["b@acme.pagerduty.com"], "R0UTINGKEYB"),
            route(&["a2@acme.pagerduty.com"], "R0UTINGKEYA"),
        ]))
        .unwrap();
        let key = |r: &str| {
            let event = PagerDutyEvent {
                recipients: vec![r.into()],
                ..trigger()
            };
            sender.destination(&Rendered::PagerDuty(event)).unwrap()
        };
        let a = key("A@acme.pagerduty.com");
        assert!(!a.key.contains("R0UTING"), "{a:?}");
        assert_eq!(a.limit, DEFAULT_PER_ROUTING_KEY);
        assert_ne!(a, key("b@acme.pagerduty.com"));
        assert_eq!(a, key("a2@acme.pagerduty.com"));
        let e = PagerDutySender::new(settings(vec![route(&["a@x"], " ")]))
            .err()
            .unwrap();
        assert!(e.contains("routing key is empty"), "{e}");
    }
}
