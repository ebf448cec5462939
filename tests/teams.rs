//! The Teams sender against a real HTTP receiver on 127.0.0.1 (tests/peers/webhook_sink.py),
//! which records each request exactly and answers as Teams' incoming webhooks and Workflows do:
//! the exact request, every class of answer, the SSRF guard it shares with the webhook sender,
//! and the per-URL rate limit (counted in requests, not timed).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::http_sink::WebhookSink;
use flyte_notify::channels::net_guard::WebhookPolicy;
use flyte_notify::channels::rate_limit::{LocalRateLimiter, RateLimiter};
use flyte_notify::channels::secret::Secret;
use flyte_notify::channels::teams::{DEFAULT_PER_URL, TeamsSender, TeamsSettings};
use flyte_notify::channels::webhook::{DEFAULT_RATE_LIMIT, WebhookSender, WebhookSettings};
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{
    Channel, DeliveryRef, LeaseToken, Rendered, WebhookFlavor, WebhookRequest, WebhookTarget,
};

/// The webhook sender signs inline URLs with this; Teams messages must not carry it.
const SIGNING_SECRET: &str = "whsec_dGhpcy1pcy1hLXRlc3Qta2V5LW9mLTMyLWJ5dGVzISE=";

/// Where a Workflows URL keeps its credentials: the path and the `sig` in the query.
const PATH: &str = "/workflows/0123456789abcdef0123/triggers/manual/paths/invoke?api-version=1&sig=s3cr3tSignature";

fn teams(allowed: &[&str]) -> TeamsSender {
    let policy = WebhookPolicy::new(
        &allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        false,
    )
    .unwrap();
    let webhooks = WebhookSender::new(WebhookSettings {
        policy: Arc::new(policy),
        destinations: Vec::new(),
        default_signing_secret: Some(Secret::new(SIGNING_SECRET)),
        timeout: Duration::from_secs(10),
        per_url: DEFAULT_RATE_LIMIT,
        slack_per_url: flyte_notify::channels::slack::DEFAULT_PER_CHANNEL,
    })
    .unwrap();
    TeamsSender::new(
        &webhooks,
        TeamsSettings {
            timeout: Duration::from_secs(10),
            per_url: DEFAULT_PER_URL,
        },
    )
    .unwrap()
}

fn delivery(id: &str) -> DeliveryRef {
    DeliveryRef {
        id: id.into(),
        request_id: "req-1".into(),
        attempt: 1,
        lease: LeaseToken(1),
    }
}

const CARD: &str = r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"run r-1 failed"}]}}]}"#;

fn card(url: String) -> Rendered {
    Rendered::Webhook(WebhookRequest {
        recipients: Vec::new(),
        target: WebhookTarget::Url(url),
        method: "POST".into(),
        headers: vec![("X-Team".into(), "ml".into())],
        body: CARD.into(),
        timeout: None,
        flavor: WebhookFlavor::Teams,
    })
}

#[tokio::test]
async fn a_card_is_posted_as_it_is_with_its_headers_and_no_signature() {
    let sink = WebhookSink::start("200=1", None);
    let sender = teams(&["127.0.0.1"]);
    assert_eq!(sender.name(), "teams");
    assert_eq!(sender.channel(), Channel::Teams);
    sender
        .send(&delivery("d-card"), &card(sink.url(PATH)))
        .await
        .unwrap();
    let seen = sink.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let r = &seen[0];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], PATH);
    assert_eq!(r["body"], CARD);
    assert_eq!(r["signature"], "absent");
    let headers = r["headers"].as_object().unwrap();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-team"], "ml");
    for signed in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(!headers.contains_key(signed), "{headers:#?}");
    }
}

#[tokio::test]
async fn a_notification_content_type_is_kept() {
    let sink = WebhookSink::start("202", None);
    let Rendered::Webhook(mut request) = card(sink.url("/hook")) else {
        unreachable!()
    };
    request.headers = vec![(
        "Content-Type".into(),
        "application/json; charset=utf-8".into(),
    )];
    teams(&["127.0.0.1"])
        .send(&delivery("d-ct"), &Rendered::Webhook(request))
        .await
        .unwrap();
    let seen = sink.requests();
    assert_eq!(
        seen[0]["headers"]["content-type"],
        "application/json; charset=utf-8"
    );
}

/// How the sender took each answer of `script`, one send per answer.
async fn outcomes(script: &str) -> Vec<Result<(), SendError>> {
    let answers = script.split(',').count();
    let sink = WebhookSink::start(script, None);
    let sender = teams(&["127.0.0.1"]);
    let mut out = Vec::new();
    for i in 0..answers {
        out.push(
            sender
                .send(&delivery(&format!("d-{i}")), &card(sink.url(PATH)))
                .await,
        );
    }
    assert_eq!(sink.requests().len(), answers);
    out
}

#[tokio::test]
async fn every_class_of_answer_is_classified_and_no_error_shows_the_url() {
    let got = outcomes(
        "200=1,202,200@4=Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0,\
         200=Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP \
         error 413 with ContextId tcid=1,400=Summary or Text is required.,413,401,403,404,410,\
         408,429@7,500,503",
    )
    .await;
    assert_eq!(got[0], Ok(()));
    assert_eq!(got[1], Ok(()));
    // The legacy connector's 200 that quotes a 429: retried, after the answer's Retry-After.
    assert_eq!(
        got[2],
        Err(SendError::Retryable {
            message: "teams webhook at 127.0.0.1: HTTP 200 OK, but Teams said: Microsoft Teams \
                      endpoint returned HTTP error 429 with ContextId tcid=0"
                .into(),
            retry_after: Some(Duration::from_secs(4)),
        })
    );
    assert!(
        matches!(&got[3], Err(SendError::Permanent { message }) if message.contains("HTTP error 413")),
        "{:?}",
        got[3]
    );
    assert_eq!(
        got[4],
        Err(SendError::permanent(
            "teams webhook at 127.0.0.1: HTTP 400 Bad Request: Summary or Text is required."
        ))
    );
    let permanent = |r: &Result<(), SendError>| matches!(r, Err(SendError::Permanent { .. }));
    assert!(permanent(&got[5]), "413: {:?}", got[5]);
    for (i, status) in [(6, 401), (7, 403), (8, 404), (9, 410)] {
        let e = got[i].clone().unwrap_err();
        assert!(permanent(&got[i]), "{status}: {e:?}");
        assert!(
            e.to_string().contains(&format!(
                "the webhook URL was removed or disabled (HTTP {status}"
            )),
            "{e}"
        );
    }
    for (i, status) in [(10, 408), (11, 429), (12, 500), (13, 503)] {
        assert!(
            matches!(got[i], Err(SendError::Retryable { .. })),
            "{status}: {:?}",
            got[i]
        );
    }
    let Err(SendError::Retryable { retry_after, .. }) = &got[11] else {
        unreachable!()
    };
    assert_eq!(*retry_after, Some(Duration::from_secs(7)));
    // The sink echoes the request line (path and query) into error answers without a body.
    for e in got.iter().filter_map(|r| r.as_ref().err()) {
        let text = e.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("0123456789abcdef0123"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_url_the_guard_does_not_allow_is_refused_and_never_called() {
    let sink = WebhookSink::start("", None);
    // Only the real Teams hosts are allowed: the loopback sink is not.
    let sender = teams(&["*.webhook.office.com"]);
    let e = sender
        .send(&delivery("d-ssrf"), &card(sink.url(PATH)))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(
        e.to_string().contains("is a loopback address") && !e.to_string().contains("s3cr3t"),
        "{e}"
    );
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn a_destination_or_another_method_is_refused() {
    let sink = WebhookSink::start("", None);
    let sender = teams(&["127.0.0.1"]);
    let Rendered::Webhook(mut request) = card(sink.url(PATH)) else {
        unreachable!()
    };
    request.method = "PUT".into();
    let e = sender
        .send(&delivery("d-put"), &Rendered::Webhook(request.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        SendError::permanent("teams webhook at 127.0.0.1: Teams webhooks take POST, not \"PUT\"")
    );
    request.target = WebhookTarget::Destination("ops".into());
    let e = sender
        .send(&delivery("d-dest"), &Rendered::Webhook(request))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not to the destination \"ops\""),
        "{e}"
    );
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn each_url_gets_four_sends_a_second_in_a_burst() {
    let sink = WebhookSink::start("", None);
    let sender = teams(&["127.0.0.1"]);
    let limiter = LocalRateLimiter::default();
    let a = card(sink.url("/a?sig=s3cr3tA"));
    let b = card(sink.url("/b?sig=s3cr3tB"));
    let key_a = sender.destination(&a).unwrap();
    let key_b = sender.destination(&b).unwrap();
    assert_ne!(key_a.key, key_b.key);
    assert!(!key_a.key.contains("s3cr3t"), "{key_a:?}");
    assert_eq!(key_a.limit, DEFAULT_PER_URL);
    // A burst of twelve, reserved as the worker reserves each send's slot; those with a slot now
    // go now (the worker would hold the others for theirs).
    let mut now: Vec<&Rendered> = Vec::new();
    for m in std::iter::repeat_n(&a, 10).chain(std::iter::repeat_n(&b, 2)) {
        if limiter
            .reserve(&sender.destination(m).unwrap())
            .await
            .is_zero()
        {
            now.push(m);
        }
    }
    let mut sent = 0;
    for (i, message) in now.into_iter().enumerate() {
        sender
            .send(&delivery(&format!("d-rate-{i}")), message)
            .await
            .unwrap();
        sent += 1;
    }
    let paths: Vec<String> = sink
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, paths.len());
    assert_eq!(paths.iter().filter(|p| p.starts_with("/a")).count(), 4);
    assert_eq!(paths.iter().filter(|p| p.starts_with("/b")).count(), 2);
}
