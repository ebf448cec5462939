//! The Slack and PagerDuty senders against a local stand-in for both services
//! (tests/peers/slack_pagerduty_sink.py), which records every request and answers from a script:
//! what goes on the wire exactly, and what each answer means for the delivery.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use flyte_notify::channels::pagerduty::{
    DEFAULT_PER_ROUTING_KEY, PagerDutyRoute, PagerDutySender, PagerDutySettings,
};
use flyte_notify::channels::secret::Secret;
use flyte_notify::channels::slack::{
    DEFAULT_PER_CHANNEL, SlackDestination, SlackRoute, SlackSender, SlackSettings,
};
use flyte_notify::channels::{SendError, Sender};
use flyte_notify::delivery::{DeliveryRef, LeaseToken, Rendered};
use flyte_notify::notify::native::{pagerduty_event, slack_message};
use flyte_notify::notify::render::Renderer;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(10);
const HOOK_SECRET: &str = "Zq8vXk2mWp4rTt6yBn0cLd3s";
const TOKEN: &str = "xoxb-1111-2222-s3cr3tT0kenValue";
const ROUTING_KEY: &str = "R0UT1NGk3yS3cr3tR0UT1NGk3yS3cr3";

/// The stand-in on a free port answering `script`; its log is in `dir`.
fn sink(dir: &Path, script: &str) -> (Peer, u16) {
    let port = free_port();
    let log = dir.join("requests.jsonl");
    let peer = start_python_peer(
        "slack_pagerduty_sink.py",
        &[port.to_string().into(), log.into(), script.into()],
        port,
    );
    (peer, port)
}

fn requests(dir: &Path) -> Vec<serde_json::Value> {
    read_jsonl(&dir.join("requests.jsonl"))
}

fn delivery() -> DeliveryRef {
    DeliveryRef {
        id: "0194-delivery".into(),
        request_id: "r".into(),
        attempt: 1,
        lease: LeaseToken(1),
    }
}

fn renderer() -> Renderer {
    Renderer {
        subject: String::new(),
        body: String::new(),
        sender: String::new(),
        console_url: "https://flyte.example.com/console".into(),
        max_rendered_bytes: 1 << 20,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn hook_path() -> String {
    format!("/services/T0001/B0002/{HOOK_SECRET}")
}

/// A sender with an incoming webhook for #ml-alerts and a bot token for #infra, both on `port`.
fn slack(port: u16, timeout: Duration) -> SlackSender {
    SlackSender::new(SlackSettings {
        api_base_url: format!("http://127.0.0.1:{port}/api/"),
        routes: vec![
            SlackRoute {
                recipients: strings(&["ml-alerts@acme.slack.com", "#ml-alerts"]),
                destination: SlackDestination::IncomingWebhook {
                    url: Secret::new(format!("http://127.0.0.1:{port}{}", hook_path())),
                },
            },
            SlackRoute {
                recipients: strings(&["#infra"]),
                destination: SlackDestination::PostMessage {
                    token: Secret::new(TOKEN),
                    channel: "#infra".into(),
                },
            },
        ],
        timeout,
        per_channel: DEFAULT_PER_CHANNEL,
    })
    .unwrap()
}

fn pagerduty(port: u16, timeout: Duration) -> PagerDutySender {
    PagerDutySender::new(PagerDutySettings {
        events_url: format!("http://127.0.0.1:{port}/v2/enqueue"),
        routes: vec![PagerDutyRoute {
            recipients: strings(&["oncall@acme.pagerduty.com"]),
            routing_key: Secret::new(ROUTING_KEY),
        }],
        timeout,
        per_routing_key: DEFAULT_PER_ROUTING_KEY,
    })
    .unwrap()
}

fn slack_to(recipient: &str) -> Rendered {
    Rendered::Slack(slack_message(
        &renderer(),
        &failed_execution("exec-1"),
        &strings(&[recipient]),
    ))
}

fn pagerduty_for(phase: Phase) -> Rendered {
    let mut execution = failed_execution("exec-1");
    execution.phase = phase as i32;
    Rendered::PagerDuty(pagerduty_event(
        &renderer(),
        &execution,
        &strings(&["oncall@acme.pagerduty.com"]),
    ))
}

fn no_secret(e: &SendError) {
    let text = format!("{e} {e:?}");
    for secret in [HOOK_SECRET, TOKEN, ROUTING_KEY] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn an_incoming_webhook_gets_the_text_and_blocks_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "");
    let message = slack_to("ML-Alerts@acme.slack.com");
    slack(port, TIMEOUT)
        .send(&delivery(), &message)
        .await
        .unwrap();
    let seen = requests(dir.path());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let r = &seen[0];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], hook_path());
    assert_eq!(
        r["headers"]["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(r["headers"].get("authorization"), None);
    let Rendered::Slack(m) = &message else {
        unreachable!()
    };
    assert_eq!(r["body"], json!({"text": m.text, "blocks": m.blocks}));
    assert_eq!(
        r["body"]["text"],
        "Flyte execution flytesnacks/development/exec-1 failed: x &lt; 0 &amp; y &gt; \"1\""
    );
}

#[tokio::test]
async fn chat_post_message_carries_the_bot_token_and_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "");
    let message = slack_to("#infra");
    slack(port, TIMEOUT)
        .send(&delivery(), &message)
        .await
        .unwrap();
    let seen = requests(dir.path());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let r = &seen[0];
    assert_eq!(r["path"], "/api/chat.postMessage");
    assert_eq!(r["headers"]["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(
        r["headers"]["content-type"],
        "application/json; charset=utf-8"
    );
    let Rendered::Slack(m) = &message else {
        unreachable!()
    };
    assert_eq!(
        r["body"],
        json!({"channel": "#infra", "text": m.text, "blocks": m.blocks})
    );
}

#[tokio::test]
async fn slack_server_errors_are_retryable_and_the_same_message_goes_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "500,503:service_unavailable,ok");
    let sender = slack(port, TIMEOUT);
    let message = slack_to("#infra");
    let e = sender.send(&delivery(), &message).await.unwrap_err();
    assert_eq!(
        e,
        SendError::retryable(
            "slack chat.postMessage to #infra: HTTP 500 Internal Server Error: internal_error"
        )
    );
    let e = sender.send(&delivery(), &message).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    sender.send(&delivery(), &message).await.unwrap();
    let seen = requests(dir.path());
    let statuses: Vec<i64> = seen.iter().map(|r| r["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [500, 503, 200]);
    assert!(seen.iter().all(|r| r["body"] == seen[0]["body"]));
}

#[tokio::test]
async fn slack_rate_limits_are_retried_after_their_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "429@2,429@3");
    let sender = slack(port, TIMEOUT);
    for (recipient, seconds) in [("#ml-alerts", 2), ("#infra", 3)] {
        match sender.send(&delivery(), &slack_to(recipient)).await {
            Err(SendError::Retryable { retry_after, .. }) => {
                assert_eq!(
                    retry_after,
                    Some(Duration::from_secs(seconds)),
                    "{recipient}"
                )
            }
            other => panic!("{recipient}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_gone_or_refused_slack_destination_is_permanent_with_slacks_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(
        dir.path(),
        "404:channel_not_found,410:channel_is_archived,403:invalid_token,\
         200:channel_not_found,200:not_in_channel",
    );
    let sender = slack(port, TIMEOUT);
    let webhook = "slack incoming webhook for ml-alerts@acme.slack.com: HTTP";
    for expected in [
        format!("{webhook} 404 Not Found: channel_not_found"),
        format!("{webhook} 410 Gone: channel_is_archived"),
        format!("{webhook} 403 Forbidden: invalid_token"),
    ] {
        let e = sender
            .send(&delivery(), &slack_to("#ml-alerts"))
            .await
            .unwrap_err();
        assert_eq!(e, SendError::permanent(expected));
    }
    for code in ["channel_not_found", "not_in_channel"] {
        let e = sender
            .send(&delivery(), &slack_to("#infra"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SendError::permanent(format!("slack chat.postMessage to #infra: {code}"))
        );
    }
    // A recipient without a route never reaches Slack.
    let e = sender
        .send(&delivery(), &slack_to("#nowhere"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        SendError::permanent(
            "slack: no route names the recipient \"#nowhere\" (flyteNotify.slack.routes)"
        )
    );
    assert_eq!(requests(dir.path()).len(), 5);
}

#[tokio::test]
async fn slack_credentials_echoed_back_are_scrubbed() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(
        dir.path(),
        "404:no_service for {path},200:invalid_auth {auth},502:bad gateway to {path}",
    );
    let sender = slack(port, TIMEOUT);
    let e = sender
        .send(&delivery(), &slack_to("#ml-alerts"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        SendError::permanent(
            "slack incoming webhook for ml-alerts@acme.slack.com: HTTP 404 Not Found: \
             no_service for [secret]"
        )
    );
    let e = sender
        .send(&delivery(), &slack_to("#infra"))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    no_secret(&e);
    assert!(
        e.to_string().contains("invalid_auth Bearer [secret]"),
        "{e}"
    );
    let e = sender
        .send(&delivery(), &slack_to("#ml-alerts"))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    no_secret(&e);
}

#[tokio::test]
async fn a_slack_that_never_answers_or_is_down_is_retryable_without_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "hang,hang");
    let sender = slack(port, Duration::from_millis(500));
    for recipient in ["#ml-alerts", "#infra"] {
        let e = sender
            .send(&delivery(), &slack_to(recipient))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
        assert!(e.to_string().ends_with("no answer within 500ms"), "{e}");
        no_secret(&e);
    }
    let down = slack(free_port(), TIMEOUT);
    let e = down
        .send(&delivery(), &slack_to("#ml-alerts"))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    no_secret(&e);
    assert!(!e.to_string().contains("/services/"), "{e}");
}

#[tokio::test]
async fn a_pagerduty_trigger_is_an_events_v2_event_with_the_launch_plans_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "");
    pagerduty(port, TIMEOUT)
        .send(&delivery(), &pagerduty_for(Phase::Failed))
        .await
        .unwrap();
    let seen = requests(dir.path());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let r = &seen[0];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/v2/enqueue");
    assert_eq!(r["headers"]["content-type"], "application/json");
    assert_eq!(r["headers"].get("authorization"), None);
    assert_eq!(r["status"], 202);
    assert_eq!(
        r["body"],
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "flyte/launch_plan/flytesnacks/development/lp.daily",
            "payload": {
                "summary": "Flyte execution flytesnacks/development/exec-1 FAILED: x < 0 & y > \"1\"",
                "source": "flytesnacks/development/wf.train",
                "severity": "error",
                "custom_details": {
                    "execution": "flytesnacks/development/exec-1",
                    "phase": "FAILED",
                    "workflow": "flytesnacks/development/wf.train@v3",
                    "launch_plan": "flytesnacks/development/lp.daily@v7",
                    "error_code": "USER:ValueError",
                    "error_message": "x < 0 & y > \"1\"",
                },
            },
            "links": [{
                "href": "https://flyte.example.com/console/projects/flytesnacks/domains/development/executions/exec-1",
                "text": "View in the Flyte console",
            }],
        })
    );
}

#[tokio::test]
async fn a_pagerduty_resolve_carries_only_the_key_and_the_same_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "");
    let sender = pagerduty(port, TIMEOUT);
    sender
        .send(&delivery(), &pagerduty_for(Phase::Failed))
        .await
        .unwrap();
    sender
        .send(&delivery(), &pagerduty_for(Phase::Succeeded))
        .await
        .unwrap();
    let seen = requests(dir.path());
    assert_eq!(
        seen[1]["body"],
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": seen[0]["body"]["dedup_key"],
        })
    );
}

#[tokio::test]
async fn pagerduty_answers_decide_retry_or_death() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(
        dir.path(),
        "500,429@2,400:'payload.summary' is missing,400:Invalid routing key {routing_key},ok",
    );
    let sender = pagerduty(port, TIMEOUT);
    let (d, trigger) = (delivery(), pagerduty_for(Phase::Failed));
    let send = || sender.send(&d, &trigger);
    let e = send().await.unwrap_err();
    assert_eq!(
        e,
        SendError::retryable("pagerduty: HTTP 500 Internal Server Error: Internal Server Error")
    );
    let e = send().await.unwrap_err();
    assert_eq!(
        e,
        SendError::Retryable {
            message: "pagerduty: HTTP 429 Too Many Requests: Requests for this service are \
                      arriving too quickly."
                .into(),
            retry_after: Some(Duration::from_secs(2)),
        }
    );
    let e = send().await.unwrap_err();
    assert_eq!(
        e,
        SendError::permanent(
            "pagerduty: HTTP 400 Bad Request: Event object is invalid: 'payload.summary' is \
             missing"
        )
    );
    let e = send().await.unwrap_err();
    assert_eq!(
        e,
        SendError::permanent(
            "pagerduty: HTTP 400 Bad Request: Event object is invalid: Invalid routing key \
             [secret]"
        )
    );
    send().await.unwrap();
    let statuses: Vec<i64> = requests(dir.path())
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 429, 400, 400, 202]);
}

#[tokio::test]
async fn a_pagerduty_that_never_answers_or_is_down_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(dir.path(), "hang");
    let e = pagerduty(port, Duration::from_millis(500))
        .send(&delivery(), &pagerduty_for(Phase::Failed))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().ends_with("no answer within 500ms"), "{e}");
    let e = pagerduty(free_port(), TIMEOUT)
        .send(&delivery(), &pagerduty_for(Phase::Failed))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    no_secret(&e);
}
