//! Native channels through the real binary and its gRPC API: flytekit's Slack and PagerDuty
//! notifications reach their routes (and only those), PagerDuty incidents open and resolve on one
//! key, webhooks are signed and retried, refused when the SSRF guard says no, rate limits space
//! the sends, SendTest goes through a route, and no secret shows up anywhere an operator looks.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::http_sink::WebhookSink;
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{
    EnqueueRequest, GetDeliveryRequest, PreviewRequest, SendTestRequest, WebhookNotification,
    send_test_request::Target,
};

const HOOK_SECRET: &str = "T0001/B0002/hK3ySecretPathValue9";
const TOKEN: &str = "xoxb-1111-2222-t0kenS3cretValue";
const ROUTING_KEY: &str = "R0ut1ngK3yS3cr3tR0ut1ngK3yS3cr3t";
const SIGNING_SECRET: &str = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLWZseXRlLW5vdGlmeQ==";
const OPS_PATH_SECRET: &str = "ops-path-s3cret-8841";
const CONSOLE: &str = "https://flyte.example.com/console";

const SLACK_ROUTED: &str = "ml-alerts@acme.slack.com";
const PAGERDUTY_ROUTED: &str = "oncall@acme.pagerduty.com";

/// The Slack and PagerDuty stand-in on a free port answering `script`; its log is in `dir`.
fn slack_pagerduty_sink(dir: &Path, script: &str) -> (Peer, u16) {
    let port = free_port();
    let peer = start_python_peer(
        "slack_pagerduty_sink.py",
        &[
            port.to_string().into(),
            dir.join("requests.jsonl").into(),
            script.into(),
        ],
        port,
    );
    (peer, port)
}

fn sink_requests(dir: &Path) -> Vec<serde_json::Value> {
    read_jsonl(&dir.join("requests.jsonl"))
}

/// A server with a Slack route (incoming webhook, its URL in a file), a bot-token route, a
/// PagerDuty route, and a webhook destination `ops`, all pointing at local sinks.
fn server(dir: &Path, sink: u16, webhooks: Option<&WebhookSink>, extra: &str) -> Server {
    let slack_url = dir.join("slack-url");
    std::fs::write(
        &slack_url,
        format!("http://127.0.0.1:{sink}/services/{HOOK_SECRET}\n"),
    )
    .unwrap();
    let ops_url = dir.join("ops-url");
    let ops = webhooks
        .map(|w| w.url(&format!("/hooks/{OPS_PATH_SECRET}")))
        .unwrap_or_else(|| "http://127.0.0.1:9/unused".into());
    std::fs::write(&ops_url, ops).unwrap();
    let config = format!(
        r##"
notifications:
  emailer: {{ sender: flyte@example.com }}
flyteNotify:
  consoleUrl: {CONSOLE}
  retry: {{ baseDelay: 200ms, maxDelay: 1s, maxAttempts: 10 }}
  slack:
    apiBaseUrl: http://127.0.0.1:{sink}/api
    rateLimit: 5/s
    routes:
      - recipients: ["{SLACK_ROUTED}", "#ml-alerts"]
        webhookUrlFile: {slack_url}
      - recipients: ["#infra"]
        tokenEnvVar: FN_TEST_SLACK_TOKEN
        channel: "#infra"
  pagerduty:
    eventsUrl: http://127.0.0.1:{sink}/v2/enqueue
    resolveOnSuccess: true
    routes:
      - recipients: ["{PAGERDUTY_ROUTED}"]
        routingKeyEnvVar: FN_TEST_PD_KEY
  webhooks:
    allowedHosts: ["hooks.example.com"]
    destinations:
      - name: ops
        urlFile: {ops_url}
        signingSecretEnvVar: FN_TEST_SIGNING_SECRET
        headers: {{ X-Team: ml-platform }}
{extra}"##,
        slack_url = slack_url.display(),
        ops_url = ops_url.display(),
    );
    Server::start_env(
        dir,
        &config,
        &[
            ("FN_TEST_SLACK_TOKEN", TOKEN),
            ("FN_TEST_PD_KEY", ROUTING_KEY),
            ("FN_TEST_SIGNING_SECRET", SIGNING_SECRET),
        ],
    )
}

fn request(
    id: &str,
    execution: &str,
    notifications: Vec<flyte_notify::proto::flyteidl::admin::Notification>,
) -> EnqueueRequest {
    EnqueueRequest {
        request_id: id.into(),
        execution: Some(failed_execution(execution)),
        notifications,
        webhooks: Vec::new(),
        deadline: None,
    }
}

/// Waits until the sink has `count` requests.
async fn wait_for_requests(dir: &Path, count: usize, server: &Server) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = sink_requests(dir);
        if seen.len() >= count {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} requests arrived: {seen:#?}\nlog:\n{}",
            seen.len(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_delivered(server: &Server, id: &str) -> Vec<i32> {
    let got = wait_for_delivered(server, id).await;
    got.history.iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_slack_notification_goes_to_its_route_as_block_kit_and_nothing_is_emailed() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = slack_pagerduty_sink(dir.path(), "");
    let server = server(dir.path(), port, None, "");
    let mut client = server.client().await;
    let r = client
        .enqueue(request(
            "slack-1",
            "exec-slack",
            vec![slack(&[Phase::Failed], &[SLACK_ROUTED])],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.delivery_ids.len(), 1);
    wait_delivered(&server, &r.delivery_ids[0]).await;
    let seen = sink_requests(dir.path());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["path"], format!("/services/{HOOK_SECRET}"));
    let body = &seen[0]["body"];
    assert!(
        body["text"].as_str().unwrap().contains("exec-slack"),
        "{body}"
    );
    let blocks = body["blocks"].to_string();
    // The error excerpt (escaped for Slack's mrkdwn) and the console link, in Block Kit.
    assert!(blocks.contains("USER:ValueError"), "{blocks}");
    assert!(blocks.contains("x &lt; 0 &amp; y &gt;"), "{blocks}");
    assert!(
        blocks.contains(&format!(
            "{CONSOLE}/projects/flytesnacks/domains/development/executions/exec-slack"
        )),
        "{blocks}"
    );
    assert!(
        maildir_messages(&server.maildir()).is_empty(),
        "an email was sent too"
    );

    // The bot-token route posts with chat.postMessage; a recipient with no route is emailed.
    let r = client
        .enqueue(request(
            "slack-2",
            "exec-mixed",
            vec![slack(&[Phase::Failed], &["#infra", "team@example.com"])],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.delivery_ids.len(),
        2,
        "one delivery per route, one for the rest"
    );
    for id in &r.delivery_ids {
        wait_delivered(&server, id).await;
    }
    let posted = &sink_requests(dir.path())[1];
    assert_eq!(posted["path"], "/api/chat.postMessage");
    assert_eq!(
        posted["headers"]["authorization"],
        format!("Bearer {TOKEN}")
    );
    assert_eq!(posted["body"]["channel"], "#infra");
    let mails = maildir_messages(&server.maildir());
    assert_eq!(mails.len(), 1);
    assert_eq!(
        parse_mail(&mails[0]).to,
        vec!["team@example.com".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_triggers_twice_on_one_key_and_resolves_when_the_launch_plan_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = slack_pagerduty_sink(dir.path(), "");
    let server = server(dir.path(), port, None, "");
    let mut client = server.client().await;
    let pd = || vec![pager_duty(&[Phase::Failed], &[PAGERDUTY_ROUTED])];
    for (i, name) in ["exec-pd-1", "exec-pd-2"].iter().enumerate() {
        let r = client
            .enqueue(request(&format!("pd-{i}"), name, pd()))
            .await
            .unwrap()
            .into_inner();
        wait_delivered(&server, &r.delivery_ids[0]).await;
    }
    // The launch plan's next run succeeds. The notification names FAILED only; the resolve is
    // the route's (resolveOnSuccess).
    let mut succeeded = request("pd-ok", "exec-pd-3", pd());
    succeeded.execution.as_mut().unwrap().phase = Phase::Succeeded as i32;
    succeeded.execution.as_mut().unwrap().error = None;
    let r = client.enqueue(succeeded).await.unwrap().into_inner();
    assert_eq!(r.delivery_ids.len(), 1, "{r:?}");
    wait_delivered(&server, &r.delivery_ids[0]).await;

    let events = sink_requests(dir.path());
    assert_eq!(events.len(), 3, "{events:#?}");
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["body"]["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "trigger", "resolve"]);
    let key = &events[0]["body"]["dedup_key"];
    assert!(key.as_str().unwrap().contains("lp.daily"), "{key}");
    assert!(events.iter().all(|e| &e["body"]["dedup_key"] == key));
    assert!(
        events
            .iter()
            .all(|e| e["body"]["routing_key"] == ROUTING_KEY)
    );
    assert_eq!(events[0]["path"], "/v2/enqueue");
    let summary = events[0]["body"]["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("exec-pd-1") && summary.len() <= 1024,
        "{summary}"
    );

    // With resolveOnSuccess off, or no route, a success sends nothing to PagerDuty: here a
    // recipient without a route is emailed only in the phases its notification names.
    let mut other = request(
        "pd-unrouted",
        "exec-pd-4",
        vec![pager_duty(&[Phase::Failed], &["someone@example.com"])],
    );
    other.execution.as_mut().unwrap().phase = Phase::Succeeded as i32;
    let r = client.enqueue(other).await.unwrap().into_inner();
    assert!(r.delivery_ids.is_empty());
    assert_eq!(r.unmatched_notifications, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_signed_carries_its_idempotency_key_and_a_500_is_retried_to_one_success() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = slack_pagerduty_sink(dir.path(), "");
    let hooks = WebhookSink::start("500,200", Some(SIGNING_SECRET));
    let server = server(dir.path(), port, Some(&hooks), "");
    let mut client = server.client().await;
    let mut r = request("hook-1", "exec-hook", Vec::new());
    r.webhooks.push(WebhookNotification {
        destination: "ops".into(),
        phases: vec![Phase::Failed as i32],
        body_template: r#"{"run": "{{ name }}", "why": "{{ error }}"}"#.into(),
        ..Default::default()
    });
    let r = client.enqueue(r).await.unwrap().into_inner();
    let id = &r.delivery_ids[0];
    let history = wait_delivered(&server, id).await;
    // One failure, then one success: recorded once.
    assert_eq!(history.len(), 2, "{history:?}");
    let seen = hooks.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for request in &seen {
        // Verified by the Standard Webhooks library itself, in the sink.
        assert_eq!(request["signature"], "valid", "{request:#}");
        assert_eq!(request["headers"]["idempotency-key"], id.as_str());
        assert_eq!(request["headers"]["webhook-id"], id.as_str());
        assert_eq!(request["headers"]["x-team"], "ml-platform");
        assert_eq!(request["path"], format!("/hooks/{OPS_PATH_SECRET}"));
    }
    let body = &seen[1]["json"];
    assert_eq!(body["run"], "exec-hook");
    // A value with quotes and angle brackets stays inside its JSON string, as it was.
    assert!(
        body["why"]
            .as_str()
            .unwrap()
            .contains(r#"[x < 0 & y > "1"]"#),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_outside_the_allow_list_or_resolving_to_loopback_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = slack_pagerduty_sink(dir.path(), "");
    let server = server(dir.path(), port, None, "");
    let webhook = |url: &str| {
        let mut r = request("ssrf", "exec-ssrf", Vec::new());
        r.request_id = format!("ssrf-{url}");
        r.webhooks.push(WebhookNotification {
            url: url.into(),
            phases: vec![Phase::Failed as i32],
            ..Default::default()
        });
        r
    };
    let mut client = server.client().await;
    for url in [
        "https://evil.example.org/collect",
        "http://127.0.0.1:8091/",
        "http://169.254.169.254/latest/meta-data/",
    ] {
        let status = client.enqueue(webhook(url)).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{url}: {status:?}"
        );
        assert!(
            status.message().contains("webhooks[0].url"),
            "{url}: {status:?}"
        );
    }

    assert!(list_all(&mut client, "").await.is_empty());

    // A host the allow-list admits by wildcard, which resolves to 127.0.0.1, is refused too.
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
flyteNotify:
  webhooks:
    allowedHosts: ["*"]
"#;
    let server = Server::start(dir.path(), Some(config));
    let mut client = server.client().await;
    let status = client
        .enqueue(webhook("http://localhost:9/hook"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("webhooks[0].url") && status.message().contains("loopback"),
        "{status:?}"
    );
    assert!(list_all(&mut client, "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_messages_to_one_slack_route_are_spaced_by_its_rate_limit_and_a_429_holds_the_route()
{
    let dir = tempfile::tempdir().unwrap();
    // The first answer is a 429 asking for 2 s.
    let (_sink, port) = slack_pagerduty_sink(dir.path(), "429@2");
    let server = server(dir.path(), port, None, "");
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = client
            .enqueue(request(
                &format!("rate-{i}"),
                &format!("exec-rate-{i:02}"),
                vec![slack(&[Phase::Failed], &["#ml-alerts"])],
            ))
            .await
            .unwrap()
            .into_inner();
        ids.extend(r.delivery_ids);
    }
    for id in &ids {
        wait_delivered(&server, id).await;
    }
    let seen = wait_for_requests(dir.path(), 21, &server).await;
    assert_eq!(seen.len(), 21, "20 messages and the one the 429 refused");
    let at: Vec<f64> = seen.iter().map(|r| r["at"].as_f64().unwrap()).collect();
    // The message the 429 refused was tried again only after its Retry-After. (Sends that had
    // their slots before the 429 came may still go out meanwhile.)
    let refused = &seen[0]["body"]["text"];
    let again = seen[1..]
        .iter()
        .find(|r| &r["body"]["text"] == refused)
        .expect("the refused message was sent again");
    let waited = again["at"].as_f64().unwrap() - at[0];
    assert!(waited >= 1.9, "tried again {waited:.3}s after the 429");
    // 5/s: after the burst of 5, one every 200 ms. Over the 20 accepted sends that is at least
    // (20 - 5) * 200 ms, whatever the timing of the worker.
    let span = at[20] - at[0];
    assert!(span >= 2.9, "20 sends within {span:.3}s");
    // None lost, none twice.
    let mut names: Vec<String> = seen[1..]
        .iter()
        .map(|r| r["body"]["text"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_reaches_a_slack_route_and_an_email_recipient_marked_as_a_test() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, port) = slack_pagerduty_sink(dir.path(), "");
    let server = server(dir.path(), port, None, "");
    let mut client = server.client().await;
    for notification in [
        slack(&[], &["#ml-alerts"]),
        email(&[], &["oncall@example.com"], ""),
    ] {
        let r = client
            .send_test(SendTestRequest {
                target: Some(Target::Notification(notification)),
                run: None,
            })
            .await
            .unwrap()
            .into_inner();
        wait_delivered(&server, &r.delivery_id).await;
    }
    let posted = sink_requests(dir.path());
    assert_eq!(posted.len(), 1);
    let slack_text = posted[0]["body"].to_string();
    assert!(slack_text.contains("send-test"), "{slack_text}");
    assert!(
        slack_text.contains("This is a test message"),
        "{slack_text}"
    );
    let mails = maildir_messages(&server.maildir());
    assert_eq!(mails.len(), 1);
    let mail = parse_mail(&mails[0]);
    assert!(mail.subject.contains("send-test"), "{}", mail.subject);
    assert!(
        mail.text.contains("This is a test message"),
        "{}",
        mail.text
    );

    // The command-line form waits for the outcome and says so.
    let out = std::process::Command::new(BIN)
        .args(["send-test", "--slack", "#infra", "--server", &server.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("delivered"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_metrics_list_pending_or_preview() {
    let dir = tempfile::tempdir().unwrap();
    // Every service keeps failing, quoting the request back (its URL path, its Authorization
    // header, its routing key) as a careless proxy would, so the deliveries stay listed with
    // those echoes as their last errors while the test looks.
    let echo = vec!["500:echo {path} {auth} {routing_key}"; 30].join(",");
    let (_sink, port) = slack_pagerduty_sink(dir.path(), &echo);
    let hooks = WebhookSink::start(&vec!["500"; 30].join(","), Some(SIGNING_SECRET));
    let metrics_port = free_port();
    let server = server(
        dir.path(),
        port,
        Some(&hooks),
        &format!("  metricsListen: 127.0.0.1:{metrics_port}\n"),
    );
    let mut client = server.client().await;
    let mut r = request(
        "leak",
        "exec-leak",
        vec![
            slack(&[Phase::Failed], &[SLACK_ROUTED]),
            slack(&[Phase::Failed], &["#infra"]),
            pager_duty(&[Phase::Failed], &[PAGERDUTY_ROUTED]),
        ],
    );
    r.webhooks.push(WebhookNotification {
        destination: "ops".into(),
        phases: vec![Phase::Failed as i32],
        ..Default::default()
    });
    let accepted = client.enqueue(r.clone()).await.unwrap().into_inner();
    assert_eq!(accepted.delivery_ids.len(), 4);
    // Wait until every one has failed at least once, with the peers' echoes as their errors.
    let failed = wait_for_pending(&server, "", Duration::from_secs(30), |d| {
        d.len() == 4 && d.iter().all(|d| !d.last_error.is_empty())
    })
    .await;
    let preview = client
        .preview(PreviewRequest {
            execution: r.execution.clone(),
            notifications: r.notifications.clone(),
            webhooks: r.webhooks.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut shown = vec![
        ("ListPending", format!("{failed:?}")),
        ("Preview", format!("{preview:?}")),
        ("metrics", metrics),
    ];
    for id in &accepted.delivery_ids {
        let got = client
            .get_delivery(GetDeliveryRequest {
                delivery_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        shown.push(("GetDelivery", format!("{got:?}")));
    }
    shown.push(("the log", server.log()));
    let secrets = [
        HOOK_SECRET,
        "hK3ySecretPathValue9",
        TOKEN,
        ROUTING_KEY,
        SIGNING_SECRET,
        OPS_PATH_SECRET,
    ];
    for (where_, text) in &shown {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {where_}:\n{text}");
        }
    }
    // The errors are there, only scrubbed: the test looked at real failures.
    assert!(
        failed.iter().any(|d| d.last_error.contains("500")),
        "{failed:?}"
    );
}
