//! Grouping into digests (issue #19): deliveries of a route with `groupWait` wait in the ledger
//! as members of their group, and one digest goes out for all of them: one email listing every
//! execution, one PagerDuty event with the count, one Slack message within Slack's block limit.
//! Durable across a SIGKILL, one digest across PostgreSQL replicas, and bad settings are refused
//! naming their key.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::postgres::TestDatabase;
use common::*;
use flyte_notify::proto::flyteidl::admin::{PagerDutyNotification, notification};
use flyte_notify::proto::flyteidl::core::Identifier;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{
    DeliveryState, EnqueueRequest, GetDeliveryRequest, PreviewDigestRequest, WebhookNotification,
    delivery_event,
};

const ROUTING_KEY: &str = "R0UT1NGk3yS3cr3tR0UT1NGk3yS3cr3";
const MEMBERS: usize = 50;

fn config(smtp_port: u16, pd_port: u16, dsn: Option<&str>) -> String {
    let store = match dsn {
        Some(dsn) => format!("  store: postgres\n  postgres: {{ dsn: \"{dsn}\" }}\n"),
        None => String::new(),
    };
    format!(
        "notifications:\n  emailer:\n    sender: flyte@example.com\n    emailServerConfig:\n      \
         serviceName: smtp\n      smtpServer: 127.0.0.1\n      smtpPort: \"{smtp_port}\"\n\
         flyteNotify:\n{store}  consoleUrl: https://flyte.example.com/console\n  \
         retry: {{ baseDelay: 200ms, maxDelay: 1s, maxAttempts: 20 }}\n  \
         grouping:\n    email: {{ groupBy: [project, domain], groupWait: 5s }}\n  \
         pagerduty:\n    eventsUrl: http://127.0.0.1:{pd_port}/v2/enqueue\n    routes:\n      \
         - recipients: [oncall@acme.pagerduty.com]\n        routingKeyEnvVar: PD_KEY\n        \
         grouping: {{ groupBy: [project, domain], groupWait: 5s }}\n"
    )
}

/// Execution `i` failed, in its own launch plan, with an email and a PagerDuty notification.
fn failure(i: usize) -> EnqueueRequest {
    let mut execution = failed_execution(&format!("run-{i}"));
    execution.launch_plan = Some(Identifier {
        project: "flytesnacks".into(),
        domain: "development".into(),
        name: format!("lp.{i}"),
        version: "v1".into(),
        ..Default::default()
    });
    let pagerduty = flyte_notify::proto::flyteidl::admin::Notification {
        phases: vec![Phase::Failed as i32],
        r#type: Some(notification::Type::PagerDuty(PagerDutyNotification {
            recipients_email: vec!["oncall@acme.pagerduty.com".into()],
            template: String::new(),
        })),
    };
    EnqueueRequest {
        request_id: format!("run-{i}-failed"),
        execution: Some(execution),
        notifications: vec![
            email(&[Phase::Failed], &["oncall@example.com"], ""),
            pagerduty,
        ],
        webhooks: Vec::new(),
        deadline: None,
    }
}

fn pagerduty_sink(dir: &Path) -> (Peer, u16) {
    let port = free_port();
    let peer = start_python_peer(
        "slack_pagerduty_sink.py",
        &[
            port.to_string().into(),
            dir.join("pd.jsonl").into(),
            "".into(),
        ],
        port,
    );
    (peer, port)
}

fn pagerduty_events(dir: &Path) -> Vec<serde_json::Value> {
    let path = dir.join("pd.jsonl");
    if !path.exists() {
        return Vec::new();
    }
    read_jsonl(&path)
}

/// The digest email: one message, subject with the count, a row (with its link and error) per
/// execution.
fn assert_one_digest_of_all(maildir: &Path) {
    let messages = wait_for_messages(maildir, 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let messages_now = maildir_messages(maildir);
    assert_eq!(messages_now.len(), 1, "{messages:?}");
    let mail = parse_mail(&messages_now[0]);
    assert_eq!(
        mail.subject,
        format!("Flyte: {MEMBERS} executions FAILED in flytesnacks/development")
    );
    for i in 0..MEMBERS {
        let row = format!("- flytesnacks/development/run-{i} FAILED (launch plan ");
        assert!(mail.text.contains(&row), "{row} not in\n{}", mail.text);
        let link = format!(
            "https://flyte.example.com/console/projects/flytesnacks/domains/development/executions/run-{i}"
        );
        assert!(mail.text.contains(&link), "{link}");
    }
    assert_eq!(
        mail.text.matches("Error: x < 0 & y > \"1\"").count(),
        MEMBERS
    );
}

fn assert_one_pagerduty_event(dir: &Path) {
    let events = pagerduty_events(dir);
    assert_eq!(events.len(), 1, "{events:#?}");
    let body = &events[0]["body"];
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["payload"]["custom_details"]["count"], MEMBERS);
    assert_eq!(
        body["payload"]["summary"],
        format!("Flyte: {MEMBERS} executions FAILED in flytesnacks/development")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_failures_are_one_digest_email_and_one_page_also_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port();
    let sink = SmtpSink::start(smtp_port, &dir.path().join("sink"));
    let (_pd, pd_port) = pagerduty_sink(dir.path());
    let yaml = config(smtp_port, pd_port, None);
    let mut server = Server::start_env(dir.path(), &yaml, &[("PD_KEY", ROUTING_KEY)]);
    let mut client = server.client().await;
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let ids = client.enqueue(failure(i)).await.unwrap().into_inner();
        assert_eq!(ids.delivery_ids.len(), 2);
        members.extend(ids.delivery_ids);
    }
    // Waiting in their groups: every member listed as grouped under one of two digests.
    let listed = list_all(&mut client, "").await;
    let grouped: Vec<_> = listed
        .iter()
        .filter(|d| d.state == DeliveryState::Grouped as i32)
        .collect();
    assert_eq!(grouped.len(), 2 * MEMBERS);
    let mut digests: Vec<&str> = grouped.iter().map(|d| d.digest_id.as_str()).collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 2, "{digests:?}");
    assert_eq!(
        listed.len(),
        2 * MEMBERS + 2,
        "the members and their two digests"
    );

    // SIGKILL while the group waits: nothing is lost, and the digest still goes once.
    server.kill();
    let restarted = server.restart();
    assert_one_digest_of_all(&sink.maildir);
    assert_one_pagerduty_event(dir.path());

    // Each member: delivered, by its digest.
    let mut client = restarted.client().await;
    for id in [&members[0], &members[1], &members[2 * MEMBERS - 1]] {
        let got = client
            .get_delivery(GetDeliveryRequest {
                delivery_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let d = got.delivery.unwrap();
        assert_eq!(d.state, DeliveryState::Delivered as i32, "{d:?}");
        assert!(digests.contains(&d.digest_id.as_str()), "{d:?}");
        let last = got.history.last().unwrap();
        assert_eq!(last.kind, delivery_event::Kind::Delivered as i32);
        assert_eq!(last.detail, format!("sent in digest {}", d.digest_id));
    }
    assert!(list_all(&mut client, "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_arriving_at_two_replicas_are_one_digest() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port();
    let sink = SmtpSink::start(smtp_port, &dir.path().join("sink"));
    let (_pd, pd_port) = pagerduty_sink(dir.path());
    let yaml = config(smtp_port, pd_port, Some(&database.dsn()));
    let replicas: Vec<Server> = (0..2)
        .map(|i| {
            let home = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start_env(&home, &yaml, &[("PD_KEY", ROUTING_KEY)])
        })
        .collect();
    let mut clients = [replicas[0].client().await, replicas[1].client().await];
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..MEMBERS {
        let mut client = clients[i % 2].clone();
        sends.spawn(async move { client.enqueue(failure(i)).await.unwrap() });
    }
    while let Some(done) = sends.join_next().await {
        done.unwrap();
    }
    assert_one_digest_of_all(&sink.maildir);
    assert_one_pagerduty_event(dir.path());
    assert!(list_all(&mut clients[0], "").await.is_empty());
}

/// Sixty failures routed to one Slack channel with `groupWait`: one message, the header and the
/// fallback text counting sixty, a section for each of the first ones (with its error and a
/// button to it), and one line counting the rest, within Slack's fifty blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_slack_failures_are_one_message_within_fifty_blocks() {
    const SIXTY: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _sink = start_python_peer(
        "slack_pagerduty_sink.py",
        &[
            port.to_string().into(),
            dir.path().join("slack.jsonl").into(),
            "".into(),
        ],
        port,
    );
    let hook = dir.path().join("slack-url");
    std::fs::write(
        &hook,
        format!("http://127.0.0.1:{port}/services/T1/B2/hook\n"),
    )
    .unwrap();
    let yaml = format!(
        "flyteNotify:\n  consoleUrl: https://flyte.example.com/console\n  \
         retry: {{ baseDelay: 200ms, maxDelay: 1s, maxAttempts: 20 }}\n  \
         slack:\n    routes:\n      - recipients: [\"#ml-alerts\"]\n        \
         webhookUrlFile: {}\n        grouping: {{ groupBy: [project, domain], groupWait: 3s }}\n",
        hook.display()
    );
    let server = Server::start_env(dir.path(), &yaml, &[]);
    let mut client = server.client().await;
    let mut executions = Vec::new();
    for i in 0..SIXTY {
        let mut request = failure(i);
        request.notifications = vec![slack(&[Phase::Failed], &["#ml-alerts"])];
        executions.extend(request.execution.clone());
        client.enqueue(request).await.unwrap();
    }
    // PreviewDigest renders what the worker will send, to the byte.
    let preview = client
        .preview_digest(PreviewDigestRequest {
            executions,
            notification: Some(slack(&[Phase::Failed], &["#ml-alerts"])),
            webhook: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.messages.len(), 1, "{preview:#?}");
    assert_eq!(preview.messages[0].channel, "slack");
    let log = dir.path().join("slack.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Anything that would follow the digest has had time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posted = read_jsonl(&log);
    assert_eq!(posted.len(), 1, "{posted:#?}");
    let body = &posted[0]["body"];
    let previewed: serde_json::Value = serde_json::from_str(&preview.messages[0].body).unwrap();
    assert_eq!(&previewed, body);
    let headline = format!("Flyte: {SIXTY} executions FAILED in flytesnacks/development");
    assert_eq!(body["text"], headline);
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50, "{} blocks", blocks.len());
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], format!(":x: {headline}"));
    let sections: Vec<_> = blocks.iter().filter(|b| b["type"] == "section").collect();
    assert!(!sections.is_empty());
    for (i, section) in sections.iter().enumerate() {
        let text = section["text"]["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("`flytesnacks/development/run-{i}` FAILED")),
            "{text}"
        );
        assert!(text.contains("x &lt; 0 &amp; y &gt; \"1\""), "{text}");
        assert_eq!(
            section["accessory"]["url"],
            format!(
                "https://flyte.example.com/console/projects/flytesnacks/domains/development/\
                 executions/run-{i}"
            )
        );
    }
    let more = blocks.last().unwrap();
    assert_eq!(more["type"], "context");
    assert_eq!(
        more["elements"][0]["text"],
        format!(
            "…and {} more ({SIXTY} executions in this digest)",
            SIXTY - sections.len()
        )
    );
    assert!(list_all(&mut client, "").await.is_empty());
}

/// PreviewDigest refuses what no digest could be, naming the field, and records nothing.
#[tokio::test]
async fn preview_digest_names_the_field_it_refuses() {
    use tonic_types::StatusExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let notification = || Some(email(&[Phase::Failed], &["oncall@example.com"], ""));
    let mut unnamed = failed_execution("run-1");
    unnamed.execution_id.as_mut().unwrap().name.clear();
    for (request, field) in [
        (
            PreviewDigestRequest {
                executions: Vec::new(),
                notification: notification(),
                webhook: None,
            },
            "executions",
        ),
        (
            PreviewDigestRequest {
                executions: vec![failed_execution("run-0"); 501],
                notification: notification(),
                webhook: None,
            },
            "executions",
        ),
        (
            PreviewDigestRequest {
                executions: vec![failed_execution("run-0"), unnamed],
                notification: notification(),
                webhook: None,
            },
            "executions[1].execution_id.name",
        ),
        (
            PreviewDigestRequest {
                executions: vec![failed_execution("run-0")],
                notification: None,
                webhook: None,
            },
            "notification",
        ),
        (
            PreviewDigestRequest {
                executions: vec![failed_execution("run-0")],
                notification: None,
                webhook: Some(WebhookNotification {
                    url: "https://hooks.example.com/x".into(),
                    phases: vec![Phase::Failed as i32],
                    ..Default::default()
                }),
            },
            "webhook.url",
        ),
    ] {
        let status = client.preview_digest(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let fields: Vec<String> = status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert!(
            fields.iter().any(|f| f == field),
            "{field} not in {fields:?}"
        );
    }
    // A good one: the email digest, with the count.
    let ok = client
        .preview_digest(PreviewDigestRequest {
            executions: (0..3)
                .map(|i| failed_execution(&format!("run-{i}")))
                .collect(),
            notification: notification(),
            webhook: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.messages.len(), 1);
    assert_eq!(
        ok.messages[0].subject,
        "Flyte: 3 executions FAILED in flytesnacks/development"
    );
    assert!(list_all(&mut client, "").await.is_empty());
}

#[test]
fn bad_grouping_settings_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (grouping, key) in [
        (
            "grouping: { email: { groupBy: [owner], groupWait: 5s } }",
            "flyteNotify.grouping.email.groupBy[0]",
        ),
        (
            "grouping: { email: { groupWait: 2h } }",
            "flyteNotify.grouping.email.groupWait",
        ),
        (
            "grouping: { email: { groupWait: 5s, maxGroupSize: 100000 } }",
            "flyteNotify.grouping.email.maxGroupSize",
        ),
        (
            "pagerduty: { routes: [{ recipients: [a@acme.pagerduty.com], routingKeyEnvVar: K, \
             grouping: { groupInterval: 30d } }] }",
            "flyteNotify.pagerduty.routes[0].grouping.groupInterval",
        ),
        (
            "slack: { routes: [{ recipients: [\"#a\"], webhookUrlEnvVar: U, \
             grouping: { groupBy: [team] } }] }",
            "flyteNotify.slack.routes[0].grouping.groupBy[0]",
        ),
        (
            "webhooks: { destinations: [{ name: ops, urlEnvVar: U, \
             grouping: { groupWait: 5s, maxGroupSize: 1 } }] }",
            "flyteNotify.webhooks.destinations[0].grouping.maxGroupSize",
        ),
    ] {
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, format!("flyteNotify:\n  {grouping}\n")).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{grouping}: {stderr}");
        assert!(stderr.contains(key), "{key} not in {stderr}");
    }
}
