//! The webhook sender against a real receiver on 127.0.0.1 (tests/peers/webhook_sink.py), which
//! records each request exactly and checks its signature with the official Standard Webhooks
//! library, so the signature is verified by code that is not ours. Bodies are rendered by
//! `webhook_body::webhook_request`, as the worker will.

mod common;

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http_sink::WebhookSink;
use common::*;
use flyte_notify::channels::net_guard::{GuardError, Lookup, WebhookPolicy};
use flyte_notify::channels::secret::Secret;
use flyte_notify::channels::webhook::{
    DEFAULT_RATE_LIMIT, WebhookDestination, WebhookSender, WebhookSettings,
};
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{
    DeliveryRef, LeaseToken, Rendered, WebhookRequest, WebhookSpec, WebhookTarget,
};
use flyte_notify::notify::webhook_body::webhook_request;
use futures::future::BoxFuture;

/// A Standard Webhooks secret, as `whsec_` + base64 of its key.
const SECRET: &str = "whsec_dGhpcy1pcy1hLXRlc3Qta2V5LW9mLTMyLWJ5dGVzISE=";

fn settings(policy: WebhookPolicy, secret: Option<&str>) -> WebhookSettings {
    WebhookSettings {
        policy: Arc::new(policy),
        destinations: Vec::new(),
        default_signing_secret: secret.map(Secret::new),
        timeout: Duration::from_secs(10),
        per_url: DEFAULT_RATE_LIMIT,
        slack_per_url: flyte_notify::channels::slack::DEFAULT_PER_CHANNEL,
    }
}

/// Admits the sinks, which listen on 127.0.0.1.
fn loopback() -> WebhookPolicy {
    WebhookPolicy::new(&["127.0.0.1".into()], false).unwrap()
}

fn sender(settings: WebhookSettings) -> WebhookSender {
    WebhookSender::new(settings).unwrap()
}

fn delivery(id: &str) -> DeliveryRef {
    DeliveryRef {
        id: id.into(),
        request_id: "req-1".into(),
        attempt: 1,
        lease: LeaseToken(1),
    }
}

/// A FAILED execution's webhook to `target`, rendered as the worker will.
fn webhook(target: WebhookTarget, template: &str, headers: &[(&str, &str)]) -> Rendered {
    let spec = WebhookSpec {
        target,
        method: "POST".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body_template: template.into(),
        timeout_ms: None,
    };
    let request = webhook_request(&failed_execution("exec-wh"), &spec, &[], None, 1 << 20)
        .expect("the webhook renders");
    Rendered::Webhook(request)
}

fn to(url: String) -> Rendered {
    webhook(
        WebhookTarget::Url(url),
        r#"{"text": "{{ name }} has {{ phase }}.{{ error }}"}"#,
        &[],
    )
}

fn with_timeout(message: Rendered, timeout: Duration) -> Rendered {
    let Rendered::Webhook(request) = message else {
        unreachable!()
    };
    Rendered::Webhook(WebhookRequest {
        timeout: Some(timeout),
        ..request
    })
}

#[tokio::test]
async fn a_signed_delivery_passes_the_standard_webhooks_library_and_carries_the_delivery_id() {
    let sink = WebhookSink::start("", Some(SECRET));
    let sender = sender(settings(loopback(), Some(SECRET)));
    let message = webhook(
        WebhookTarget::Url(sink.url("/hooks/flyte?team=ml")),
        r#"{"text": "{{ name }} has {{ phase }}.{{ error }}", "workflow": "{{ workflow.name }}"}"#,
        &[("X-Team", "ml")],
    );
    sender
        .send(&delivery("0194-signed"), &message)
        .await
        .unwrap();

    let seen = sink.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let r = &seen[0];
    assert_eq!(r["signature"], "valid", "{r:#}");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/hooks/flyte?team=ml");
    let headers = &r["headers"];
    assert_eq!(headers["idempotency-key"], "0194-signed");
    assert_eq!(headers["webhook-id"], "0194-signed");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-team"], "ml");
    assert!(
        headers["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("flyte-notify/"),
        "{headers:#}"
    );
    let Rendered::Webhook(request) = &message else {
        unreachable!()
    };
    assert_eq!(r["body"], request.body, "the body goes out as rendered");
    assert_eq!(
        r["json"],
        serde_json::json!({
            "text": "exec-wh has failed. The execution failed with error: [x < 0 & y > \"1\"].",
            "workflow": "wf.train",
        })
    );
}

#[tokio::test]
async fn a_secret_without_the_prefix_signs_with_its_bytes() {
    let raw = "a plain shared secret";
    let sink = WebhookSink::start("", Some(raw));
    let sender = sender(settings(loopback(), Some(raw)));
    sender
        .send(&delivery("0194-raw"), &to(sink.url("/hook")))
        .await
        .unwrap();
    assert_eq!(sink.requests()[0]["signature"], "valid");
}

#[tokio::test]
async fn a_wrong_secret_fails_the_receivers_check() {
    // The check must be able to fail: signed with another key, the library refuses it.
    let sink = WebhookSink::start("", Some(SECRET));
    let sender = sender(settings(loopback(), Some("whsec_b3RoZXIta2V5")));
    sender
        .send(&delivery("0194-wrong"), &to(sink.url("/hook")))
        .await
        .unwrap();
    let verdict = sink.requests()[0]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(verdict.starts_with("invalid"), "{verdict}");
    // And without a secret nothing is signed.
    let unsigned = WebhookSink::start("", Some(SECRET));
    self::sender(settings(loopback(), None))
        .send(&delivery("0194-unsigned"), &to(unsigned.url("/hook")))
        .await
        .unwrap();
    let r = &unsigned.requests()[0];
    assert_eq!(r["signature"], "absent");
    assert_eq!(r["headers"]["idempotency-key"], "0194-unsigned");
}

#[tokio::test]
async fn a_server_error_is_retried_as_the_same_request() {
    let sink = WebhookSink::start("500,200", Some(SECRET));
    let sender = sender(settings(loopback(), Some(SECRET)));
    let message = to(sink.url("/hook?token=t0k3n"));
    let d = delivery("0194-retry");
    let e = sender.send(&d, &message).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "webhook POST http://127.0.0.1:{}/hook: HTTP 500 Internal Server Error: POST /hook?",
            sink.port
        )),
        "{text}"
    );
    // The sink echoed the query; it is the caller's token, and is scrubbed.
    assert!(!text.contains("t0k3n"), "{text}");

    // The worker's retry: the same message again.
    sender.send(&d, &message).await.unwrap();
    let seen = sink.requests();
    let statuses: Vec<i64> = seen.iter().map(|r| r["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [500, 200]);
    for r in &seen {
        assert_eq!(r["signature"], "valid");
        assert_eq!(r["headers"]["idempotency-key"], "0194-retry");
        assert_eq!(r["headers"]["webhook-id"], "0194-retry");
        assert_eq!(r["body"], seen[0]["body"]);
    }
}

#[tokio::test]
async fn retry_after_is_passed_to_the_worker() {
    let sink = WebhookSink::start("429@2", None);
    let sender = sender(settings(loopback(), None));
    let e = sender
        .send(&delivery("0194-429"), &to(sink.url("/hook")))
        .await
        .unwrap_err();
    match e {
        SendError::Retryable {
            retry_after,
            message,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
            assert!(message.contains("HTTP 429 Too Many Requests"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_404_is_permanent_with_the_receivers_reason() {
    let sink = WebhookSink::start("404=channel_not_found", None);
    let sender = sender(settings(loopback(), None));
    let e = sender
        .send(&delivery("0194-404"), &to(sink.url("/hook")))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        SendError::permanent(format!(
            "webhook POST http://127.0.0.1:{}/hook: HTTP 404 Not Found: channel_not_found",
            sink.port
        ))
    );
}

#[tokio::test]
async fn a_redirect_is_a_permanent_failure_and_is_not_followed() {
    let sink = WebhookSink::start("302", None);
    let sender = sender(settings(loopback(), None));
    let e = sender
        .send(&delivery("0194-302"), &to(sink.url("/hook")))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("HTTP 302 Found: redirects are not followed"),
        "{e}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let paths: Vec<String> = sink
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/hook"], "the Location was never asked for");
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_times_out_retryably() {
    let sink = WebhookSink::start("sleep", None);
    let sender = sender(settings(loopback(), None));
    let message = with_timeout(to(sink.url("/slow")), Duration::from_millis(500));
    let e = sender
        .send(&delivery("0194-slow"), &message)
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("/slow: no answer within 500ms (the webhook's timeout)"),
        "{e}"
    );
}

#[tokio::test]
async fn a_destinations_url_and_secret_stay_out_of_errors_and_its_headers_win() {
    let secret = "whsec_ZGVzdGluYXRpb24tc2VjcmV0LWtleQ==";
    let sink = WebhookSink::start("401,500,200", Some(secret));
    let destination = WebhookDestination {
        name: "ops".into(),
        url: Secret::new(sink.url("/services/T0001/s3cr3t-path?key=k3y-value")),
        signing_secret: Some(Secret::new(secret)),
        headers: vec![("X-Api".into(), "from-config".into())],
    };
    // Nothing in the allow-list: a configured destination is the operator's own.
    let mut settings = settings(WebhookPolicy::new(&[], false).unwrap(), Some(SECRET));
    settings.destinations = vec![destination];
    let sender = sender(settings);
    let message = webhook(
        WebhookTarget::Destination("ops".into()),
        "",
        &[("X-Api", "from-request"), ("X-Team", "ml")],
    );
    for status in ["401 Unauthorized", "500 Internal Server Error"] {
        let e = sender
            .send(&delivery("0194-dest"), &message)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "webhook POST to destination \"ops\": HTTP {status}: POST [secret]"
            )),
            "{text}"
        );
        for leaked in ["s3cr3t", "k3y-value", "T0001", "whsec_"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }
    sender.send(&delivery("0194-dest"), &message).await.unwrap();
    let seen = sink.requests();
    let r = &seen[2];
    assert_eq!(r["path"], "/services/T0001/s3cr3t-path?key=k3y-value");
    assert_eq!(
        r["signature"], "valid",
        "signed with the destination's secret"
    );
    assert_eq!(r["headers"]["x-api"], "from-config");
    assert_eq!(r["headers"]["x-team"], "ml");
    assert_eq!(r["json"]["type"], "flyte.execution.failed");
    assert_eq!(r["json"]["data"]["execution_id"]["name"], "exec-wh");

    // Down, the error names the destination and still not its URL.
    let port = free_port();
    let mut down = self::settings(loopback(), None);
    down.destinations = vec![WebhookDestination {
        name: "ops".into(),
        url: Secret::new(format!("http://127.0.0.1:{port}/services/s3cr3t-path")),
        signing_secret: None,
        headers: Vec::new(),
    }];
    let e = self::sender(down)
        .send(&delivery("0194-down"), &message)
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("webhook POST to destination \"ops\": "),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

/// DNS as a test wants it: each name answers from its own list of answers, one per lookup, the
/// last one again once they run out.
struct Scripted(Mutex<Vec<(&'static str, VecDeque<IpAddr>)>>);

impl Scripted {
    fn new(answers: &[(&'static str, &[&str])]) -> Arc<Self> {
        Arc::new(Scripted(Mutex::new(
            answers
                .iter()
                .map(|(name, ips)| (*name, ips.iter().map(|ip| ip.parse().unwrap()).collect()))
                .collect(),
        )))
    }
}

impl Lookup for Scripted {
    fn lookup(&self, host: String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let mut names = self.0.lock().unwrap();
        let answer = names
            .iter_mut()
            .find(|(name, _)| *name == host)
            .map(|(_, answers)| {
                let next = if answers.len() > 1 {
                    answers.pop_front()
                } else {
                    answers.front().copied()
                };
                next.into_iter().collect()
            });
        Box::pin(async move {
            answer.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        })
    }
}

#[tokio::test]
async fn a_name_rebound_to_loopback_after_enqueue_is_refused_at_send_time() {
    let sink = WebhookSink::start("", None);
    // Public when Enqueue looks, loopback when the webhook is sent.
    let dns = Scripted::new(&[("rebind.example.test", &["93.184.216.34", "127.0.0.1"])]);
    let policy = WebhookPolicy::new(&["*.example.test".into()], false)
        .unwrap()
        .with_lookup(dns);
    let url = format!("http://rebind.example.test:{}/hook", sink.port);
    policy
        .check_resolved(&url)
        .await
        .expect("public at Enqueue");
    let sender = sender(settings(policy, None));
    let e = sender
        .send(&delivery("0194-rebind"), &to(url.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        SendError::permanent(format!(
            "webhook POST {url}: refused: host rebind.example.test resolves to 127.0.0.1, a \
             loopback address; add the host or the address to flyteNotify.webhooks.allowedHosts \
             to allow it"
        ))
    );
    // And Enqueue, asking now, is refused too.
    match sender.policy().check_resolved(&url).await {
        Err(GuardError::Refused(e)) => assert!(e.contains("resolves to 127.0.0.1"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(sink.requests().is_empty(), "nothing reached the sink");
}

#[tokio::test]
async fn an_allowed_name_is_connected_through_the_guarded_resolver() {
    // The name exists only in the test's DNS, so the request can only arrive if the client
    // resolved it through the guard; an exact entry admits its loopback address.
    let sink = WebhookSink::start("", None);
    let dns = Scripted::new(&[("hooks.example.test", &["127.0.0.1"])]);
    let policy = WebhookPolicy::new(&["hooks.example.test".into()], false)
        .unwrap()
        .with_lookup(dns);
    let url = format!("http://hooks.example.test:{}/hook", sink.port);
    policy.check_resolved(&url).await.unwrap();
    sender(settings(policy, None))
        .send(&delivery("0194-named"), &to(url))
        .await
        .unwrap();
    let seen = sink.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["headers"]["host"],
        format!("hooks.example.test:{}", sink.port)
    );
}

#[tokio::test]
async fn loopback_and_private_literals_are_refused_without_an_entry() {
    let sink = WebhookSink::start("", None);
    let sender = sender(settings(
        WebhookPolicy::new(&["*".into()], false).unwrap(),
        None,
    ));
    for host in ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost", "2130706433"] {
        let url = format!("http://{host}:{}/hook", sink.port);
        let e = sender
            .send(&delivery("0194-literal"), &to(url.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{url}: {e:?}");
        assert!(e.to_string().contains("loopback"), "{url}: {e}");
    }
    assert!(sink.requests().is_empty());
}

/// A destination with `grouping`: twelve failures within its groupWait are one signed request to
/// the sink, whose built-in body lists every execution as its own webhook's `data` would, with
/// the count. A member's own body template is for one execution and does not shape the digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_executions_to_a_destination_is_one_signed_request_with_the_array() {
    use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
    use flyte_notify::proto::flytenotify::v1::{EnqueueRequest, WebhookNotification};

    const MEMBERS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start("", Some(SECRET));
    let config = r#"
notifications:
  emailer: { sender: flyte@example.com }
flyteNotify:
  consoleUrl: https://flyte.example.com/console
  retry: { baseDelay: 200ms, maxDelay: 1s, maxAttempts: 20 }
  webhooks:
    destinations:
      - name: ops
        urlEnvVar: FN_TEST_OPS_URL
        signingSecretEnvVar: FN_TEST_OPS_SECRET
        grouping: { groupBy: [project, domain], groupWait: 2s }
"#;
    let server = Server::start_env(
        dir.path(),
        config,
        &[
            ("FN_TEST_OPS_URL", &sink.url("/hooks/ops")),
            ("FN_TEST_OPS_SECRET", SECRET),
        ],
    );
    let mut client = server.client().await;
    for i in 0..MEMBERS {
        let body_template = if i == 0 {
            r#"{"only": "{{ name }}"}"#.to_string()
        } else {
            String::new()
        };
        client
            .enqueue(EnqueueRequest {
                request_id: format!("run-{i}"),
                execution: Some(failed_execution(&format!("run-{i}"))),
                notifications: Vec::new(),
                webhooks: vec![WebhookNotification {
                    destination: "ops".into(),
                    phases: vec![Phase::Failed as i32],
                    body_template,
                    ..Default::default()
                }],
                deadline: None,
            })
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.requests().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Anything that would follow the digest has had time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = sink.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}\nlog:\n{}", server.log());
    let r = &seen[0];
    assert_eq!(r["signature"], "valid", "{r:#}");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/hooks/ops");
    let body = &r["json"];
    assert_eq!(body["type"], "flyte.executions.digest");
    assert_eq!(body["data"]["count"], MEMBERS);
    assert_eq!(body["data"].get("more"), None);
    let executions = body["data"]["executions"].as_array().unwrap();
    assert_eq!(executions.len(), MEMBERS);
    for (i, e) in executions.iter().enumerate() {
        assert_eq!(e["execution_id"]["name"], format!("run-{i}"));
        assert_eq!(e["phase"], "FAILED");
        assert_eq!(e["error"]["message"], "x < 0 & y > \"1\"");
        assert_eq!(
            e["console_link"],
            format!(
                "https://flyte.example.com/console/projects/flytesnacks/domains/development/\
                 executions/run-{i}"
            )
        );
    }
    assert!(list_all(&mut client, "").await.is_empty());
}

/// `message` as a webhook of Slack's flavor (a Flyte 2 Slack notification's incoming webhook).
fn as_slack(message: Rendered) -> Rendered {
    let Rendered::Webhook(request) = message else {
        unreachable!()
    };
    Rendered::Webhook(WebhookRequest {
        flavor: flyte_notify::delivery::WebhookFlavor::Slack,
        ..request
    })
}

#[tokio::test]
async fn a_slack_webhook_is_not_signed_and_slacks_answers_are_understood() {
    let script = "200=ok,400=invalid_payload,400=no_text,403=action_prohibited,403=invalid_token,\
                  404=channel_not_found,404=no_service,410=channel_is_archived,429@3=rate_limited,\
                  500,503";
    let answers = script.split(',').count();
    let sink = WebhookSink::start(script, Some(SECRET));
    let sender = sender(settings(loopback(), Some(SECRET)));
    let url = sink.url("/services/T0001/B0002/abcdefghijklmnopqrstuvwx");
    let mut got = Vec::new();
    for i in 0..answers {
        got.push(
            sender
                .send(
                    &delivery(&format!("d-slack-{i}")),
                    &as_slack(to(url.clone())),
                )
                .await,
        );
    }
    let seen = sink.requests();
    assert_eq!(seen.len(), answers);
    for r in &seen {
        assert_eq!(r["signature"], "absent", "{r:#}");
    }
    assert_eq!(got[0], Ok(()));
    for (i, code) in [
        (1, "invalid_payload"),
        (2, "no_text"),
        (3, "action_prohibited"),
        (4, "invalid_token"),
        (5, "channel_not_found"),
        (6, "no_service"),
        (7, "channel_is_archived"),
    ] {
        let e = got[i].clone().unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{code}: {e:?}");
        assert!(e.to_string().ends_with(code), "{e}");
        assert!(
            e.to_string()
                .starts_with("webhook POST to the Slack incoming webhook at 127.0.0.1: HTTP"),
            "{e}"
        );
    }
    assert_eq!(
        got[8],
        Err(SendError::Retryable {
            message: "webhook POST to the Slack incoming webhook at 127.0.0.1: HTTP 429 Too Many \
                      Requests: rate_limited"
                .into(),
            retry_after: Some(Duration::from_secs(3)),
        })
    );
    for i in [9, 10] {
        assert!(
            matches!(got[i], Err(SendError::Retryable { .. })),
            "{:?}",
            got[i]
        );
    }
    // The URL's path is the credential; the sink echoes it into the bodiless 5xx answers.
    for e in got.iter().filter_map(|r| r.as_ref().err()) {
        assert!(!e.to_string().contains("abcdefghijklmnop"), "{e}");
    }
    // The same URL as a generic webhook is signed, as before.
    sender
        .send(&delivery("d-generic"), &to(url.clone()))
        .await
        .unwrap();
    assert_eq!(sink.requests().last().unwrap()["signature"], "valid");
}

#[test]
fn a_slack_webhook_shares_the_rate_limit_of_a_slack_route_to_its_url() {
    use flyte_notify::channels::slack::{
        DEFAULT_PER_CHANNEL, SlackDestination, SlackRoute, SlackSender, SlackSettings,
    };
    let url = "https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx";
    let slack = SlackSender::new(SlackSettings {
        api_base_url: "https://slack.com/api".into(),
        routes: vec![SlackRoute {
            recipients: vec!["#ml".into()],
            destination: SlackDestination::IncomingWebhook {
                url: Secret::new(url),
            },
        }],
        timeout: Duration::from_secs(5),
        per_channel: DEFAULT_PER_CHANNEL,
    })
    .unwrap();
    let route = slack
        .destination(&Rendered::Slack(flyte_notify::delivery::SlackMessage {
            recipients: vec!["#ml".into()],
            text: "t".into(),
            blocks: serde_json::Value::Null,
        }))
        .unwrap();
    let webhooks = sender(settings(loopback(), None));
    let flyte2 = webhooks
        .destination(&as_slack(to(url.to_string())))
        .unwrap();
    assert_eq!(flyte2, route);
    assert_eq!(flyte2.limit, DEFAULT_PER_CHANNEL);
    // The generic webhook to that URL keeps the webhook rate and a bucket of its own.
    let generic = webhooks.destination(&to(url.to_string())).unwrap();
    assert_ne!(generic.key, route.key);
    assert_eq!(generic.limit, DEFAULT_RATE_LIMIT);
}
