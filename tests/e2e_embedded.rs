//! End to end on the embedded default: the real binary, a real Maildir, grpcurl.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{
    DeliveryState, EnqueueRequest, ListPendingRequest, PreviewRequest,
};

const TEMPLATED: &str = r#"
notifications:
  type: local
  emailer:
    sender: "flyte@example.com"
    subject: "[{{ project }}/{{domain}}] {{ name }} {{ phase }}"
    body: "<p>Execution {{ name }} of {{ workflow.name }}@{{ workflow.version }} has {{ phase }}.{{ error }}</p>"
"#;

#[tokio::test]
async fn the_readme_run_command_serves_reflection_and_health_with_no_config() {
    // `flyte-notify serve` as the README runs it: no flags, no config. Only the address comes
    // from FLYTE_NOTIFY_LISTEN, so that this test never meets a server the user left running on
    // the default 127.0.0.1:8091 (tests/cli.rs checks that default).
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("serve.log");
    let mut child = std::process::Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("FLYTE_NOTIFY_LISTEN", &addr)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (ok, out, err) = grpcurl(&["-plaintext", &addr, "list"]);
        if ok {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "grpcurl list never succeeded: {err}\nserver log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        listed
            .lines()
            .any(|l| l == "flytenotify.v1.NotificationService"),
        "{listed}"
    );
    for service in ["", "flytenotify.v1.NotificationService"] {
        let body = format!(r#"{{"service":"{service}"}}"#);
        let (ok, out, err) = grpcurl(&[
            "-plaintext",
            "-d",
            &body,
            &addr,
            "grpc.health.v1.Health/Check",
        ]);
        assert!(ok, "{err}\nserver log:\n{}", log());
        assert!(out.contains(r#""status": "SERVING""#), "{out}");
    }
    // The default data dir is created where the service was started.
    assert!(dir.path().join("flyte-notify-data/ledger.sqlite").exists());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_failed_execution_is_mailed_substituted_and_leaves_the_pending_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(TEMPLATED));
    let mut client = server.client().await;
    let response = client
        .enqueue(EnqueueRequest {
            request_id: "acceptance-2".into(),
            execution: Some(failed_execution("exec-a2")),
            notifications: vec![email(
                &[Phase::Failed],
                &["oncall@example.com", "ml@example.com"],
                "",
            )],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap()
        .into_inner();
    let accepted = Instant::now();
    assert_eq!(response.delivery_ids.len(), 1);
    assert_eq!(response.unmatched_notifications, 0);

    let files = wait_for_messages(&server.maildir(), 1, Duration::from_secs(1));
    assert_eq!(
        files.len(),
        1,
        "no mail within 1 s of the answer; log:\n{}",
        server.log()
    );
    eprintln!(
        "mail in place {:?} after Enqueue answered",
        accepted.elapsed()
    );
    let mail = parse_mail(&files[0]);
    assert_eq!(mail.from, "flyte@example.com");
    assert_eq!(mail.to, vec!["oncall@example.com", "ml@example.com"]);
    assert_eq!(mail.subject, "[flytesnacks/development] exec-a2 failed");
    // HTML escapes the values it inserts; the text part, made from the HTML, has them raw and
    // no markup.
    assert_eq!(
        mail.html,
        "<p>Execution exec-a2 of wf.train@v3 has failed. The execution failed with error: \
         [x &#60; 0 &#38; y &#62; &#34;1&#34;].</p>"
    );
    assert_eq!(
        mail.text,
        "Execution exec-a2 of wf.train@v3 has failed. The execution failed with error: \
         [x < 0 & y > \"1\"]."
    );

    // Delivered means gone from the pending list (the ledger records it right after the send).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = list_all(&mut client, "").await;
        if pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {pending:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_phase_no_notification_names_queues_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let mut execution = failed_execution("exec-a3");
    execution.phase = Phase::Succeeded as i32;
    execution.error = None;
    let response = client
        .enqueue(EnqueueRequest {
            request_id: "acceptance-3".into(),
            execution: Some(execution),
            notifications: vec![
                email(&[Phase::Failed], &["a@example.com"], ""),
                slack(&[Phase::Failed, Phase::TimedOut], &["c@x.slack.com"]),
            ],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.delivery_ids.is_empty());
    assert_eq!(response.unmatched_notifications, 2);
    assert!(list_all(&mut client, "").await.is_empty());
    // Give the worker ample time to (wrongly) send something.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(maildir_messages(&server.maildir()).is_empty());
}

#[tokio::test]
async fn preview_shows_byte_for_byte_what_the_maildir_receives() {
    let dir = tempfile::tempdir().unwrap();
    let config = "flyteNotify:\n  consoleUrl: https://flyte.example.com/console/\n";
    let server = Server::start(dir.path(), Some(config));
    let mut client = server.client().await;
    let mut execution = failed_execution("exec-a4");
    execution.occurred_at = Some(prost_types::Timestamp {
        seconds: 1_790_000_000,
        nanos: 0,
    });
    let notifications = vec![
        // Default askama bodies.
        email(&[Phase::Failed], &["a@example.com"], ""),
        // A per-notification template, which FlyteAdmin ignores and we honour.
        pager_duty(&[Phase::Failed], &["pd@example.pagerduty.com"]),
        email(
            &[Phase::Failed],
            &["b@example.com"],
            "<b>{{ launch_plan.name }}</b> {{error}} — ünïcødé",
        ),
        email(&[Phase::Succeeded], &["never@example.com"], ""),
    ];
    let preview = client
        .preview(PreviewRequest {
            execution: Some(execution.clone()),
            notifications: notifications.clone(),
            webhooks: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.messages.len(), 3);
    assert_eq!(preview.unmatched_notifications, 1);
    assert_eq!(preview.messages[1].channel, "pagerduty");
    assert!(
        preview.messages[0]
            .html_body
            .contains("https://flyte.example.com/console/projects/flytesnacks/domains/development/executions/exec-a4"),
        "{}",
        preview.messages[0].html_body
    );
    assert!(preview.messages[0].text_body.contains("x < 0 & y > \"1\""));
    assert!(
        preview.messages[0]
            .html_body
            .contains("x &#60; 0 &#38; y &#62; &#34;1&#34;")
    );
    // Preview recorded nothing.
    assert!(list_all(&mut client, "").await.is_empty());

    client
        .enqueue(EnqueueRequest {
            request_id: "acceptance-4".into(),
            execution: Some(execution),
            notifications,
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap();
    let files = wait_for_messages(&server.maildir(), 3, Duration::from_secs(10));
    assert_eq!(files.len(), 3);
    let mut mails: Vec<ParsedMail> = files.iter().map(|f| parse_mail(f)).collect();
    mails.sort_by_key(|m| m.to.clone());
    let mut expected = preview.messages.clone();
    expected.sort_by_key(|m| m.recipients.clone());
    for (mail, want) in mails.iter().zip(&expected) {
        assert_eq!(mail.to, want.recipients);
        assert_eq!(mail.from, want.sender);
        assert_eq!(mail.subject, want.subject);
        assert_eq!(mail.html, want.html_body);
        assert_eq!(mail.text, want.text_body);
    }
}

#[tokio::test]
async fn config_templates_substitute_all_thirteen_variables_and_leave_the_rest_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        "project",
        "domain",
        "name",
        "phase",
        "error",
        "workflow.project",
        "workflow.domain",
        "workflow.name",
        "workflow.version",
        "launch_plan.project",
        "launch_plan.domain",
        "launch_plan.name",
        "launch_plan.version",
    ];
    let spaced: Vec<String> = vars.iter().map(|v| format!("{v}={{{{ {v} }}}}")).collect();
    let tight: Vec<String> = vars.iter().map(|v| format!("{v}={{{{{v}}}}}")).collect();
    let body = format!(
        "{}|{}|{{{{  name }}}}|{{{{name }}}}|{{{{ owner }}}}|{{{{ Project }}}}",
        spaced.join(";"),
        tight.join(";")
    );
    let config = format!(
        "notifications:\n  emailer:\n    subject: {subject:?}\n    body: {body:?}\n",
        subject = "{{ phase }}:{{phase}}:{{ nope }}",
    );
    let server = Server::start(dir.path(), Some(&config));
    // The start-up log warns about every name FlyteAdmin would leave verbatim.
    let log = server.log();
    for verbatim in [
        "{{ nope }}",
        "{{  name }}",
        "{{name }}",
        "{{ owner }}",
        "{{ Project }}",
    ] {
        assert!(log.contains(verbatim), "no warning for {verbatim}:\n{log}");
    }
    let mut client = server.client().await;
    let preview = client
        .preview(PreviewRequest {
            execution: Some(failed_execution("exec-a5")),
            notifications: vec![email(&[Phase::Failed], &["a@example.com"], "")],
            webhooks: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let m = &preview.messages[0];
    assert_eq!(m.subject, "failed:failed:{{ nope }}");
    let values = [
        "flytesnacks",
        "development",
        "exec-a5",
        "failed",
        " The execution failed with error: [x < 0 & y > \"1\"].",
        "flytesnacks",
        "development",
        "wf.train",
        "v3",
        "flytesnacks",
        "development",
        "lp.daily",
        "v7",
    ];
    let assigned: Vec<String> = vars
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let want = format!(
        "{0}|{0}|{{{{  name }}}}|{{{{name }}}}|{{{{ owner }}}}|{{{{ Project }}}}",
        assigned.join(";")
    );
    assert_eq!(m.text_body, want);
    assert_eq!(
        m.html_body,
        want.replace("x < 0 & y > \"1\"", "x &#60; 0 &#38; y &#62; &#34;1&#34;")
    );

    // No error on the execution: {{ error }} is empty, exactly as FlyteAdmin leaves it.
    let mut execution = failed_execution("exec-a5b");
    execution.error = None;
    let preview = client
        .preview(PreviewRequest {
            execution: Some(execution),
            notifications: vec![email(&[Phase::Failed], &["a@example.com"], "[{{ error }}]")],
            webhooks: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.messages[0].text_body, "[]");
}

#[tokio::test]
async fn the_same_request_id_twice_gives_the_same_ids_and_one_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let request = EnqueueRequest {
        request_id: "retry-me".into(),
        execution: Some(failed_execution("exec-a7")),
        notifications: vec![
            email(&[Phase::Failed], &["a@example.com"], ""),
            slack(&[Phase::Failed], &["c@x.slack.com"]),
        ],
        webhooks: Vec::new(),
        deadline: None,
    };
    let first = client.enqueue(request.clone()).await.unwrap().into_inner();
    let second = client.enqueue(request.clone()).await.unwrap().into_inner();
    assert_eq!(first.delivery_ids.len(), 2);
    assert_eq!(first.delivery_ids, second.delivery_ids);
    assert!(!first.duplicate);
    assert!(second.duplicate);

    let files = wait_for_messages(&server.maildir(), 2, Duration::from_secs(10));
    assert_eq!(files.len(), 2);
    // A third try after delivery still sends nothing new.
    let third = client.enqueue(request.clone()).await.unwrap().into_inner();
    assert_eq!(third.delivery_ids, first.delivery_ids);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(maildir_messages(&server.maildir()).len(), 2);

    // The same id with other content is refused rather than silently ignored.
    let mut other = request;
    other.notifications.pop();
    let err = client.enqueue(other).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(err.message().contains("retry-me"), "{}", err.message());
}

#[tokio::test]
async fn list_pending_filters_and_pages_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    // SMTP to a closed port: nothing is delivered, everything stays listed.
    let port = free_port();
    let config = format!(
        "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: smtp\n      smtpServer: 127.0.0.1\n      smtpPort: \"{port}\"\nflyteNotify:\n  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }}\n"
    );
    let server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut execution = failed_execution(&format!("exec-{i}"));
        if i % 2 == 1 {
            execution.execution_id.as_mut().unwrap().project = "other".into();
        }
        let r = client
            .enqueue(EnqueueRequest {
                request_id: format!("page-{i}"),
                execution: Some(execution),
                notifications: vec![if i == 6 {
                    slack(&[Phase::Failed], &["c@x.slack.com"])
                } else {
                    email(&[Phase::Failed], &["a@example.com"], "")
                }],
                webhooks: Vec::new(),
                deadline: None,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(r.delivery_ids);
    }
    // Pages of 3, oldest first, each id once.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_pending(ListPendingRequest {
                limit: 3,
                token: token.clone(),
                filters: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.deliveries.len() <= 3);
        seen.extend(page.deliveries.iter().map(|d| d.id.clone()));
        if page.token.is_empty() {
            break;
        }
        token = page.token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let flytesnacks = list_all(&mut client, "eq(project,flytesnacks)").await;
    assert_eq!(flytesnacks.len(), 4);
    assert!(
        flytesnacks
            .iter()
            .all(|d| d.execution_id.as_ref().unwrap().project == "flytesnacks")
    );
    let slack_only = list_all(&mut client, "eq(channel,slack)").await;
    assert_eq!(slack_only.len(), 1);
    assert_eq!(slack_only[0].recipients, vec!["c@x.slack.com"]);
    let named = list_all(
        &mut client,
        "value_in(name,exec-1;exec-2)+ne(project,other)",
    )
    .await;
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].execution_id.as_ref().unwrap().name, "exec-2");

    // The first attempts fail against the closed port and the deliveries move to retrying.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let retrying = list_all(&mut client, "eq(project,flytesnacks)+eq(state,retrying)").await;
        if retrying.len() == 4 {
            let d = &retrying[0];
            assert_eq!(d.attempts, 1);
            assert!(d.last_error.contains("connect"), "{}", d.last_error);
            assert!(d.next_attempt_at.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "not retrying yet: {retrying:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly_keeping_what_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: smtp\n      smtpServer: 127.0.0.1\n      smtpPort: \"{port}\"\nflyteNotify:\n  shutdownDeadline: 2s\n  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }}\n"
    );
    let mut server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    let r = client
        .enqueue(EnqueueRequest {
            request_id: "drain".into(),
            execution: Some(failed_execution("exec-term")),
            notifications: vec![email(&[Phase::Failed], &["a@example.com"], "")],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.terminate(), Some(0), "log:\n{}", server.log());
    assert!(
        server.log().contains("shut down cleanly"),
        "{}",
        server.log()
    );

    let server = server.restart();
    let mut client = server.client().await;
    let pending = list_all(&mut client, "").await;
    assert_eq!(
        pending.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        r.delivery_ids
    );
}

/// GET /metrics over a plain socket: the body of the answer.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

fn metric(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lbl| l.contains(lbl)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn prometheus_metrics_count_accepted_sent_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        dir.path(),
        Some(&format!("flyteNotify:\n  metricsListen: {metrics_addr}\n")),
    );
    let mut client = server.client().await;
    client
        .enqueue(EnqueueRequest {
            request_id: "metrics".into(),
            execution: Some(failed_execution("exec-m")),
            notifications: vec![
                email(&[Phase::Failed], &["a@example.com"], ""),
                slack(&[Phase::Failed], &["c@x.slack.com"]),
            ],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap();
    let _ = client
        .enqueue(EnqueueRequest {
            request_id: "metrics-bad".into(),
            execution: None,
            notifications: vec![],
            webhooks: Vec::new(),
            deadline: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        wait_for_messages(&server.maildir(), 2, Duration::from_secs(10)).len(),
        2
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = scrape(&metrics_addr);
        let delivered = metric(
            &body,
            "flyte_notify_send_attempts_total",
            &[r#"sender="maildir""#, r#"outcome="delivered""#],
        );
        if delivered == Some(2.0) {
            assert_eq!(
                metric(
                    &body,
                    "flyte_notify_deliveries_accepted_total",
                    &[r#"channel="email""#]
                ),
                Some(1.0),
                "{body}"
            );
            assert_eq!(
                metric(
                    &body,
                    "flyte_notify_deliveries_accepted_total",
                    &[r#"channel="slack""#]
                ),
                Some(1.0),
                "{body}"
            );
            assert_eq!(
                metric(&body, "flyte_notify_invalid_requests_total", &[]),
                Some(1.0),
                "{body}"
            );
            assert!(
                body.contains("flyte_notify_send_duration_seconds"),
                "{body}"
            );
            assert!(body.contains("flyte_notify_ledger_batch_size"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another flyte-notify is running on the data dir"),
        "{stderr}"
    );
    // The first one is unaffected.
    let mut client = server.client().await;
    assert!(list_all(&mut client, "").await.is_empty());
}

#[tokio::test]
async fn an_unreadable_ledger_row_dies_alone_and_the_rest_are_delivered() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: smtp\n      smtpServer: 127.0.0.1\n      smtpPort: \"{port}\"\nflyteNotify:\n  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }}\n"
    );
    let mut server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for name in ["exec-bad-row", "exec-good-row"] {
        let r = client
            .enqueue(EnqueueRequest {
                request_id: name.into(),
                execution: Some(failed_execution(name)),
                notifications: vec![email(&[Phase::Failed], &["a@example.com"], "")],
                webhooks: Vec::new(),
                deadline: None,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(r.delivery_ids);
    }
    drop(client);
    assert_eq!(server.terminate(), Some(0));

    // As if a newer version had written the first row: a payload this one cannot read.
    let url = format!(
        "sqlite://{}",
        server.data_dir.join("ledger.sqlite").display()
    );
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE deliveries SET payload = '{\"version\":\"99\"}', next_attempt_at = 0 WHERE id = ?",
    )
    .bind(&ids[0])
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("UPDATE deliveries SET next_attempt_at = 0")
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();

    // Back on the Maildir: the readable one goes out, the unreadable one is dead with the reason.
    let server = Server::start(dir.path(), None);
    let files = wait_for_messages(&server.maildir(), 1, Duration::from_secs(10));
    assert_eq!(files.len(), 1, "log:\n{}", server.log());
    assert_eq!(
        parse_mail(&files[0]).subject,
        "Flyte execution flytesnacks/development/exec-good-row failed"
    );
    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = list_all(&mut client, "").await;
        if pending.len() == 1 && pending[0].state == DeliveryState::Dead as i32 {
            assert_eq!(pending[0].id, ids[0]);
            assert!(
                pending[0].last_error.contains("cannot be read"),
                "{}",
                pending[0].last_error
            );
            break;
        }
        assert!(Instant::now() < deadline, "{pending:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_retried_enqueue_with_a_webhook_of_several_headers_is_the_same_request() {
    use flyte_notify::proto::flytenotify::v1::WebhookNotification;
    let dir = tempfile::tempdir().unwrap();
    // A closed port: what is sent does not matter here, only what is recorded.
    let config = "flyteNotify:\n  webhooks:\n    allowedHosts: [\"127.0.0.1\"]\n";
    let server = Server::start(dir.path(), Some(config));
    let mut client = server.client().await;
    // Built anew for every try, as a caller's retry is: each map is a new instance.
    let request = || EnqueueRequest {
        request_id: "retry-with-headers".into(),
        execution: Some(failed_execution("exec-h1")),
        notifications: Vec::new(),
        webhooks: vec![WebhookNotification {
            url: "http://127.0.0.1:9/hook".into(),
            headers: (0..8)
                .map(|i| (format!("X-Header-{i}"), format!("value-{i}")))
                .collect(),
            phases: vec![Phase::Failed as i32],
            ..Default::default()
        }],
        deadline: None,
    };
    let first = client.enqueue(request()).await.unwrap().into_inner();
    for _ in 0..5 {
        let again = client.enqueue(request()).await.unwrap().into_inner();
        assert!(again.duplicate, "{again:?}");
        assert_eq!(again.delivery_ids, first.delivery_ids);
    }
}
