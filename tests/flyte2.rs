//! Flyte 2 runs against the real binary: `flyte.notify` rules (flyteidl2's InlineRuleList, or a
//! rule set's name) delivered to a real SMTP server (aiosmtpd) and a real HTTP receiver, named
//! delivery configs and rule sets resolved for the run's project and domain, paused actions, and
//! every bad input refused with its field.

mod common;

use std::time::Duration;

use common::http_sink::WebhookSink;
use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flyteidl2::common::{ActionIdentifier, ActionPhase, RunIdentifier};
use flyte_notify::proto::flyteidl2::notification::{
    DeliveryConfigTemplate, EmailDeliveryTemplate, EmailRecipient, HttpMethod, InlineEmailTemplate,
    WebhookDeliveryTemplate, email_delivery_template,
};
use flyte_notify::proto::flyteidl2::task::{InlineRule, InlineRuleList, inline_rule::Delivery};
use flyte_notify::proto::flytenotify::v1::{
    CreateSilenceRequest, DeliveryState, EnqueueActionPausedRequest, EnqueueRunEventRequest,
    Flyte2Rules, GetDeliveryRequest, ListDeliveryConfigsRequest, ListRulesRequest, PreviewRequest,
    Silence, flyte2_rules::Rules,
};

fn config(smtp: u16, ops_url_file: &std::path::Path, services: (u16, u16), extra: &str) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: {smtp}
flyteNotify:
  retry: {{ baseDelay: 100ms, maxDelay: 1s, maxAttempts: 3 }}
  webhooks:
    allowedHosts: ["127.0.0.1"]
    # The sinks standing in for Slack's and Teams' webhooks, told apart by port.
    slackHosts: ["127.0.0.1:{slack}"]
    teamsHosts: ["127.0.0.1:{teams}"]
    destinations:
      - name: ops-hook
        urlFile: {ops}
  flyte2:
    runUrl: "https://flyte.example.com/v2/{{project}}/{{domain}}/{{name}}"
  deliveryConfigs:
    - name: oncall
      email:
        to: [oncall@example.com]
        subject: "[{{{{.Run.Project}}}}] {{{{.Run.Name}}}} {{{{.Phase}}}}"
        text: "Run {{{{.Run.Name}}}} ended {{{{.Phase}}}}: {{{{.Error}}}} {{{{.Run.URL}}}}"
    - name: oncall
      project: flytesnacks
      domain: production
      email:
        to: [prod-oncall@example.com]
        subject: "PROD {{{{.Run.Name}}}} {{{{.Phase}}}}"
        text: "Production run {{{{.Run.Name}}}}: {{{{.Error}}}}"
    - name: ops
      project: flytesnacks
      webhook:
        destination: ops-hook
        body: '{{"run": "{{{{.Run.Name}}}}", "phase": "{{{{.Phase}}}}"}}'
    - name: secret-team
      project: other
      email:
        to: [other@example.com]
        subject: "s"
        text: "t"
  rules:
    - name: oncall-alerts
      project: flytesnacks
      rules:
        - onPhases: [FAILED, TIMED_OUT]
          deliveryConfig: oncall
        - onPhases: [failed]
          deliveryConfig: ops
    - name: others
      project: other
      rules:
        - onPhases: [FAILED]
          deliveryConfig: secret-team
{extra}"#,
        ops = ops_url_file.display(),
        slack = services.0,
        teams = services.1,
    )
}

struct Setup {
    server: Server,
    sink: std::path::PathBuf,
    hook: WebhookSink,
    slack: WebhookSink,
    teams: WebhookSink,
    _smtp: SmtpSink,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    start_with("")
}

/// With `extra` appended to the flyteNotify section.
fn start_with(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let smtp = SmtpSink::start(port, &sink);
    let hook = WebhookSink::start("", None);
    let slack = WebhookSink::start("", None);
    let teams = WebhookSink::start("", None);
    let ops = dir.path().join("ops-url");
    std::fs::write(&ops, hook.url("/ops")).unwrap();
    let server = Server::start(
        dir.path(),
        Some(&config(port, &ops, (slack.port, teams.port), extra)),
    );
    Setup {
        server,
        sink,
        hook,
        slack,
        teams,
        _smtp: smtp,
        _dir: dir,
    }
}

fn run(project: &str, domain: &str, name: &str) -> RunIdentifier {
    RunIdentifier {
        org: String::new(),
        project: project.into(),
        domain: domain.into(),
        name: name.into(),
    }
}

fn inline(rules: Vec<InlineRule>) -> Option<Flyte2Rules> {
    Some(Flyte2Rules {
        rules: Some(Rules::NotificationRules(InlineRuleList { rules })),
    })
}

fn named(name: &str) -> Option<Flyte2Rules> {
    Some(Flyte2Rules {
        rules: Some(Rules::NotificationRuleName(name.into())),
    })
}

fn address(a: &str) -> EmailRecipient {
    EmailRecipient {
        name: String::new(),
        address: a.into(),
    }
}

fn email_rule(
    phases: &[ActionPhase],
    to: &[&str],
    subject: &str,
    text: &str,
    html: &str,
) -> InlineRule {
    InlineRule {
        on_phases: phases.iter().map(|p| *p as i32).collect(),
        delivery: Some(Delivery::DeliveryTemplate(DeliveryConfigTemplate {
            webhook: None,
            email: Some(EmailDeliveryTemplate {
                to: to.iter().map(|a| address(a)).collect(),
                cc: Vec::new(),
                bcc: Vec::new(),
                content: Some(email_delivery_template::Content::Inline(
                    InlineEmailTemplate {
                        subject: subject.into(),
                        html_template: html.into(),
                        text_template: text.into(),
                    },
                )),
            }),
        })),
    }
}

fn webhook_rule(phases: &[ActionPhase], url: &str, body: &str) -> InlineRule {
    InlineRule {
        on_phases: phases.iter().map(|p| *p as i32).collect(),
        delivery: Some(Delivery::DeliveryTemplate(DeliveryConfigTemplate {
            webhook: Some(WebhookDeliveryTemplate {
                url: url.into(),
                method: HttpMethod::Post as i32,
                headers: [("Content-Type".to_string(), "application/json".to_string())].into(),
                body_template: body.into(),
            }),
            email: None,
        })),
    }
}

fn run_event(
    request_id: &str,
    run: RunIdentifier,
    phase: ActionPhase,
    error: &str,
    rules: Option<Flyte2Rules>,
) -> EnqueueRunEventRequest {
    EnqueueRunEventRequest {
        request_id: request_id.into(),
        run: Some(run),
        phase: phase as i32,
        error: error.into(),
        rules,
        duration: Some(prost_types::Duration {
            seconds: 95,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn delivery(
    client: &mut flyte_notify::proto::flytenotify::v1::notification_service_client::NotificationServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
) -> flyte_notify::proto::flytenotify::v1::Delivery {
    client
        .get_delivery(GetDeliveryRequest {
            delivery_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap()
}

async fn wait_for_requests(hook: &WebhookSink, count: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = hook.requests();
        if got.len() >= count {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn inline_rules_deliver_at_their_phases_with_variables_substituted_and_escaped() {
    let s = start();
    let mut client = s.server.client().await;
    // A value that breaks JSON and HTML unless escaped.
    let error = "ValueError: \"x\" < 0 & y\nsecond line";
    let rules = vec![
        email_rule(
            &[ActionPhase::Failed],
            &["team@example.com"],
            "Run {{.Run.Name}} {{.Phase}}",
            "Project/Domain: {{.Run.Project}}/{{.Run.Domain}}\nError: {{.Error}}\nTook {{.Run.Duration}}",
            "<p>Error: <b>{{.Error}}</b></p>",
        ),
        webhook_rule(
            &[ActionPhase::Failed, ActionPhase::TimedOut],
            &s.hook.url("/inline"),
            r#"{"text": "Run {{.Run.Name}} failed: {{.Error}}", "url": "{{.Run.URL}}"}"#,
        ),
        // Not at this phase.
        email_rule(
            &[ActionPhase::Succeeded],
            &["happy@example.com"],
            "ok",
            "ok",
            "",
        ),
    ];
    let response = client
        .enqueue_run_event(run_event(
            "r-fail-1",
            run("flytesnacks", "development", "r-fail-1"),
            ActionPhase::Failed,
            error,
            inline(rules.clone()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.delivery_ids.len(), 2, "{response:?}");
    assert_eq!(response.unmatched_notifications, 1);

    let mails = wait_for_messages(&s.sink, 1, Duration::from_secs(20));
    let mail = parse_mail(&mails[0]);
    assert_eq!(mail.to, vec!["team@example.com"]);
    assert_eq!(mail.subject, "Run r-fail-1 FAILED");
    assert!(
        mail.text
            .contains("Project/Domain: flytesnacks/development\nError: ValueError: \"x\" < 0 & y\nsecond line\nTook 1m 35s"),
        "{}",
        mail.text
    );
    assert!(
        mail.html
            .contains("<b>ValueError: &quot;x&quot; &lt; 0 &amp; y\nsecond line</b>")
            || mail
                .html
                .contains("<b>ValueError: &#34;x&#34; &#60; 0 &#38; y\nsecond line</b>"),
        "{}",
        mail.html
    );
    let requests = wait_for_requests(&s.hook, 1).await;
    assert_eq!(requests[0]["path"], "/inline");
    assert_eq!(requests[0]["method"], "POST");
    // The body is JSON because the value was escaped for it, and says exactly the value.
    let body = &requests[0]["json"];
    assert_eq!(
        body["text"],
        format!("Run r-fail-1 failed: {error}"),
        "{requests:?}"
    );
    assert_eq!(
        body["url"],
        "https://flyte.example.com/v2/flytesnacks/development/r-fail-1"
    );

    // The same request again is a duplicate and sends nothing new.
    let again = client
        .enqueue_run_event(run_event(
            "r-fail-1",
            run("flytesnacks", "development", "r-fail-1"),
            ActionPhase::Failed,
            error,
            inline(rules),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.delivery_ids, response.delivery_ids);
    // Both were recorded delivered, under the run's id, and nothing waits.
    wait_for_pending(&s.server, "", Duration::from_secs(10), |l| l.is_empty()).await;
    let mut channels = Vec::new();
    for id in &response.delivery_ids {
        let d = delivery(&mut client, id).await;
        assert_eq!(d.state, DeliveryState::Delivered as i32, "{d:?}");
        assert_eq!(d.execution_id.as_ref().unwrap().name, "r-fail-1");
        assert_eq!(d.phase, Phase::Failed as i32);
        channels.push(d.channel);
    }
    assert_eq!(channels, vec!["email", "webhook"]);
}

#[tokio::test]
async fn a_named_rule_resolves_for_its_project_and_domain_and_an_unknown_name_is_refused() {
    let s = start();
    let mut client = s.server.client().await;
    // flytesnacks/production: the production oncall config (most specific) and the ops webhook.
    let response = client
        .enqueue_run_event(run_event(
            "prod-1",
            run("flytesnacks", "production", "prod-1"),
            ActionPhase::Failed,
            "OOMKilled",
            named("oncall-alerts"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.delivery_ids.len(), 2, "{response:?}");
    // flytesnacks/development: the config for every project; TIMED_OUT matches the first rule only.
    let dev = client
        .enqueue_run_event(run_event(
            "dev-1",
            run("flytesnacks", "development", "dev-1"),
            ActionPhase::TimedOut,
            "",
            named("oncall-alerts"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dev.delivery_ids.len(), 1, "{dev:?}");
    assert_eq!(dev.unmatched_notifications, 1);

    let mails = wait_for_messages(&s.sink, 2, Duration::from_secs(20));
    let mut got: Vec<(Vec<String>, String, String)> = mails
        .iter()
        .map(|p| {
            let m = parse_mail(p);
            (m.to, m.subject, m.text)
        })
        .collect();
    got.sort();
    assert_eq!(got[0].0, vec!["oncall@example.com"]);
    assert_eq!(got[0].1, "[flytesnacks] dev-1 TIMED_OUT");
    assert!(
        got[0]
            .2
            .contains("https://flyte.example.com/v2/flytesnacks/development/dev-1"),
        "{got:?}"
    );
    assert_eq!(got[1].0, vec!["prod-oncall@example.com"]);
    assert_eq!(got[1].1, "PROD prod-1 FAILED");
    let requests = wait_for_requests(&s.hook, 1).await;
    assert_eq!(requests[0]["path"], "/ops");
    assert_eq!(
        requests[0]["json"],
        serde_json::json!({"run": "prod-1", "phase": "FAILED"})
    );

    // Unknown, and defined only for another project: both refused, naming the field and the name.
    for (project, name) in [("flytesnacks", "no-such-rule"), ("flytesnacks", "others")] {
        let status = client
            .enqueue_run_event(run_event(
                "x",
                run(project, "development", "x"),
                ActionPhase::Failed,
                "",
                named(name),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let v = field_violations(&status);
        assert_eq!(v[0].0, "rules.notification_rule_name", "{v:?}");
        assert!(v[0].1.contains(name), "{v:?}");
        assert!(v[0].1.contains("oncall-alerts"), "names what exists: {v:?}");
    }
    // The same for a NamedDelivery (an inline rule naming a delivery config).
    let status = client
        .enqueue_run_event(run_event(
            "y",
            run("flytesnacks", "development", "y"),
            ActionPhase::Failed,
            "",
            inline(vec![InlineRule {
                on_phases: vec![ActionPhase::Failed as i32],
                delivery: Some(Delivery::DeliveryConfigName("secret-team".into())),
            }]),
        ))
        .await
        .unwrap_err();
    let v = field_violations(&status);
    assert_eq!(
        v[0].0,
        "rules.notification_rules.rules[0].delivery_config_name"
    );
    assert!(v[0].1.contains("secret-team"), "{v:?}");

    // What exists, per project: the other project's names are not listed for flytesnacks.
    let configs = client
        .list_delivery_configs(ListDeliveryConfigsRequest {
            project: "flytesnacks".into(),
            domain: "production".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery_configs;
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["oncall", "oncall", "ops"]);
    let ops = configs.iter().find(|c| c.name == "ops").unwrap();
    assert_eq!(ops.destinations, vec!["ops-hook"]);
    // The destination's URL is a secret and never shown.
    assert!(!format!("{configs:?}").contains("127.0.0.1"));
    let rules = client
        .list_rules(ListRulesRequest {
            project: "other".into(),
            domain: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].name, "others");
    assert_eq!(
        rules[0].rules[0].on_phases,
        vec![ActionPhase::Failed as i32]
    );
}

#[tokio::test]
async fn a_paused_action_delivers_its_prompt_by_email_and_webhook_with_the_link() {
    let s = start();
    let mut client = s.server.client().await;
    let rules = vec![
        email_rule(
            &[ActionPhase::Paused],
            &["approver@example.com"],
            "{{.Run.Name}} waits: {{.Prompt}}",
            "{{.Action.Name}} asks ({{.PromptType}}): {{.Prompt}}\n{{.Description}}\nAnswer at {{.Run.URL}}",
            "",
        ),
        webhook_rule(&[ActionPhase::Paused], &s.hook.url("/paused"), ""),
        // A FAILED rule does not fire for a pause.
        email_rule(
            &[ActionPhase::Failed],
            &["nobody@example.com"],
            "x",
            "x",
            "",
        ),
    ];
    let response = client
        .enqueue_action_paused(EnqueueActionPausedRequest {
            request_id: "pause-1".into(),
            action: Some(ActionIdentifier {
                run: Some(run("flytesnacks", "development", "train-7")),
                name: "approve-deploy".into(),
            }),
            prompt: "Deploy model v7 to production?".into(),
            description: "Accuracy 0.93 (was 0.91)".into(),
            prompt_type: "approve".into(),
            rules: inline(rules),
            run_url: "https://flyte.example.com/v2/runs/train-7/approve-deploy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.delivery_ids.len(), 2, "{response:?}");
    let mails = wait_for_messages(&s.sink, 1, Duration::from_secs(20));
    let mail = parse_mail(&mails[0]);
    assert_eq!(
        mail.subject,
        "train-7 waits: Deploy model v7 to production?"
    );
    assert!(
        mail.text.contains(
            "approve-deploy asks (approve): Deploy model v7 to production?\nAccuracy 0.93 (was 0.91)\nAnswer at https://flyte.example.com/v2/runs/train-7/approve-deploy"
        ),
        "{}",
        mail.text
    );
    // A text-only rule still gets an HTML part, the same text escaped.
    assert!(
        mail.html.contains("Accuracy 0.93 (was 0.91)"),
        "{}",
        mail.html
    );
    let requests = wait_for_requests(&s.hook, 1).await;
    // No body template: the built-in JSON body with the whole event.
    let body = &requests[0]["json"];
    assert_eq!(body["event"], "action_paused");
    assert_eq!(body["phase"], "PAUSED");
    assert_eq!(body["action"], "approve-deploy");
    assert_eq!(body["prompt"], "Deploy model v7 to production?");
    assert_eq!(
        body["run"]["url"],
        "https://flyte.example.com/v2/runs/train-7/approve-deploy"
    );
    assert_eq!(body["run"]["name"], "train-7");
}

#[tokio::test]
async fn bad_events_and_templates_are_refused_naming_the_field() {
    let s = start();
    let mut client = s.server.client().await;
    let ok_run = || run("flytesnacks", "development", "bad-1");
    let cases: Vec<(EnqueueRunEventRequest, &str, &str)> = vec![
        (
            run_event(
                "a",
                ok_run(),
                ActionPhase::Failed,
                "",
                inline(vec![email_rule(
                    &[ActionPhase::Failed],
                    &["a@example.com"],
                    "Run {{.Run.Nmae}}",
                    "t",
                    "",
                )]),
            ),
            "rules.notification_rules.rules[0].delivery_template.email.inline.subject",
            "Run.Nmae",
        ),
        (
            run_event(
                "b",
                ok_run(),
                ActionPhase::Failed,
                "",
                inline(vec![webhook_rule(
                    &[ActionPhase::Failed],
                    &s.hook.url("/x"),
                    "{\"a\": \"{{if .Error}}x{{end}}\"}",
                )]),
            ),
            "rules.notification_rules.rules[0].delivery_template.webhook.body_template",
            "if",
        ),
        (
            // Each {{.Error}} is 200 KiB: the body would render far past maxRenderedBytes.
            run_event(
                "c",
                ok_run(),
                ActionPhase::Failed,
                &"e".repeat(200 * 1024),
                inline(vec![webhook_rule(
                    &[ActionPhase::Failed],
                    &s.hook.url("/x"),
                    &"{{.Error}}".repeat(20),
                )]),
            ),
            "rules.notification_rules.rules[0]",
            "exceed",
        ),
        (
            run_event(
                "d",
                ok_run(),
                ActionPhase::Unspecified,
                "",
                named("oncall-alerts"),
            ),
            "phase",
            "required",
        ),
        (
            run_event(
                "e",
                run("", "development", "x"),
                ActionPhase::Failed,
                "",
                None,
            ),
            "run.project",
            "empty",
        ),
        (
            run_event(
                "f",
                ok_run(),
                ActionPhase::Failed,
                "",
                inline(vec![email_rule(
                    &[ActionPhase::Failed],
                    &["not an address"],
                    "s",
                    "t",
                    "",
                )]),
            ),
            "rules.notification_rules.rules[0].delivery_template.email.to[0].address",
            "not an address",
        ),
        (
            run_event(
                "g",
                ok_run(),
                ActionPhase::Failed,
                "",
                inline(vec![webhook_rule(
                    &[ActionPhase::Failed],
                    "http://169.254.169.254/latest/meta-data",
                    "",
                )]),
            ),
            "rules.notification_rules.rules[0].delivery_template.webhook.url",
            "",
        ),
    ];
    // A provider template filled with more values than a rule may carry.
    let mut many = email_rule(&[ActionPhase::Failed], &["a@example.com"], "s", "t", "");
    if let Some(t) = many.delivery.as_mut().and_then(|d| match d {
        Delivery::DeliveryTemplate(t) => t.email.as_mut(),
        Delivery::DeliveryConfigName(_) => None,
    }) {
        t.content = Some(email_delivery_template::Content::ProviderTemplate(
            flyte_notify::proto::flyteidl2::notification::ProviderEmailTemplate {
                template_id: "d-1".into(),
                template_data: (0..33)
                    .map(|i| (format!("k{i}"), "{{.Error}}".into()))
                    .collect(),
            },
        ));
    }
    let mut cases = cases;
    cases.push((
        run_event("h", ok_run(), ActionPhase::Failed, "", inline(vec![many])),
        "rules.notification_rules.rules[0].delivery_template.email.provider_template.template_data",
        "at most 32",
    ));
    for (request, field, words) in cases {
        let status = client.enqueue_run_event(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let v = field_violations(&status);
        assert!(
            v.iter().any(|(f, d)| f == field && d.contains(words)),
            "{field}: {words:?} not in {v:?}"
        );
    }
    // A paused action needs its prompt.
    let status = client
        .enqueue_action_paused(EnqueueActionPausedRequest {
            action: Some(ActionIdentifier {
                run: Some(ok_run()),
                name: "gate".into(),
            }),
            rules: named("oncall-alerts"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        field_violations(&status).iter().any(|(f, _)| f == "prompt"),
        "{status:?}"
    );
    // Still serving, nothing recorded.
    assert!(list_all(&mut client, "").await.is_empty());
}

#[tokio::test]
async fn preview_renders_a_run_event_exactly_and_sends_nothing() {
    let s = start();
    let mut client = s.server.client().await;
    let preview = client
        .preview(PreviewRequest {
            run_event: Some(run_event(
                "",
                run("flytesnacks", "production", "p-1"),
                ActionPhase::Failed,
                "boom",
                named("oncall-alerts"),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.messages.len(), 2, "{preview:?}");
    let email = &preview.messages[0];
    assert_eq!(email.channel, "email");
    assert_eq!(email.recipients, vec!["prod-oncall@example.com"]);
    assert_eq!(email.subject, "PROD p-1 FAILED");
    assert_eq!(email.text_body, "Production run p-1: boom");
    let hook = &preview.messages[1];
    assert_eq!(hook.channel, "webhook");
    assert_eq!(hook.body, r#"{"run": "p-1", "phase": "FAILED"}"#);
    assert_eq!(hook.destination, "ops-hook");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(maildir_messages(&s.sink).is_empty());
    assert!(s.hook.requests().is_empty());
    assert!(list_all(&mut client, "").await.is_empty());
}

#[tokio::test]
async fn a_silence_holds_back_flyte2_deliveries_it_matches() {
    let s = start();
    let mut client = s.server.client().await;
    let ends_at = std::time::SystemTime::now() + Duration::from_secs(3600);
    let created = client
        .create_silence(CreateSilenceRequest {
            silence: Some(Silence {
                matcher: "eq(domain,production)+eq(channel,email)".into(),
                ends_at: Some(ends_at.into()),
                created_by: "oncall@example.com".into(),
                comment: "release freeze".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    // The email to production is held; the webhook (another channel) goes.
    let response = client
        .enqueue_run_event(run_event(
            "frozen-1",
            run("flytesnacks", "production", "frozen-1"),
            ActionPhase::Failed,
            "boom",
            named("oncall-alerts"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.delivery_ids.len(), 2);
    let silenced = wait_for_pending(
        &s.server,
        "eq(state,silenced)",
        Duration::from_secs(20),
        |l| !l.is_empty(),
    )
    .await;
    assert_eq!(silenced.len(), 1, "{silenced:?}");
    assert_eq!(silenced[0].channel, "email");
    assert_eq!(silenced[0].id, response.delivery_ids[0]);
    assert!(silenced[0].last_error.contains(&created.id), "{silenced:?}");
    wait_for_requests(&s.hook, 1).await;
    assert!(maildir_messages(&s.sink).is_empty());
}

#[tokio::test]
async fn a_stuck_run_gets_one_alert_and_a_run_that_ends_in_time_disarms_its_deadline() {
    let s = start();
    let mut client = s.server.client().await;
    let rules = || {
        inline(vec![email_rule(
            &[ActionPhase::Failed],
            &["oncall@example.com"],
            "Run {{.Run.Name}} {{.Phase}}",
            "{{.Run.Name}} has been {{.Phase}} for {{.Deadline}}",
            "",
        )])
    };
    let mut stuck = run_event(
        "stuck-1",
        run("flytesnacks", "development", "stuck-1"),
        ActionPhase::Running,
        "",
        rules(),
    );
    stuck.deadline = Some(prost_types::Duration {
        seconds: 2,
        nanos: 0,
    });
    let mut on_time = run_event(
        "on-time-1",
        run("flytesnacks", "development", "on-time-1"),
        ActionPhase::Running,
        "",
        rules(),
    );
    on_time.deadline = Some(prost_types::Duration {
        seconds: 4,
        nanos: 0,
    });
    let armed = client.enqueue_run_event(stuck).await.unwrap().into_inner();
    assert_eq!(armed.delivery_ids.len(), 1, "{armed:?}");
    let disarmed = client
        .enqueue_run_event(on_time)
        .await
        .unwrap()
        .into_inner();
    // The run ends well within its deadline; its SUCCEEDED matches no rule.
    let ended = client
        .enqueue_run_event(run_event(
            "on-time-1-done",
            run("flytesnacks", "development", "on-time-1"),
            ActionPhase::Succeeded,
            "",
            rules(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ended.delivery_ids.is_empty());
    let mails = wait_for_messages(&s.sink, 1, Duration::from_secs(20));
    let mail = parse_mail(&mails[0]);
    assert_eq!(mail.subject, "Still running after 2s: Run stuck-1 RUNNING");
    assert!(
        mail.text.contains("stuck-1 has been RUNNING for 2s"),
        "{}",
        mail.text
    );
    let got = delivery(&mut client, &disarmed.delivery_ids[0]).await;
    assert_eq!(got.state, DeliveryState::Disarmed as i32, "{got:?}");
    // Past the second deadline too: still the one alert.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(maildir_messages(&s.sink).len(), 1);

    // A deadline on a terminal phase is refused, naming it.
    let mut bad = run_event(
        "bad-deadline",
        run("flytesnacks", "development", "x"),
        ActionPhase::Failed,
        "",
        rules(),
    );
    bad.deadline = Some(prost_types::Duration {
        seconds: 60,
        nanos: 0,
    });
    let status = client.enqueue_run_event(bad).await.unwrap_err();
    assert!(
        field_violations(&status)
            .iter()
            .any(|(f, _)| f == "deadline"),
        "{status:?}"
    );
}

#[tokio::test]
async fn flyte2_emails_join_the_configured_email_groups() {
    let s = start_with("  grouping:\n    email: { groupBy: [project, domain], groupWait: 2s }\n");
    let mut client = s.server.client().await;
    let rules = || {
        inline(vec![email_rule(
            &[ActionPhase::Failed],
            &["team@example.com"],
            "Run {{.Run.Name}} {{.Phase}}",
            "{{.Error}}",
            "",
        )])
    };
    for i in 0..3 {
        let name = format!("batch-{i}");
        client
            .enqueue_run_event(run_event(
                &name,
                run("flytesnacks", "development", &name),
                ActionPhase::Failed,
                "OOMKilled",
                rules(),
            ))
            .await
            .unwrap();
    }
    let grouped = list_all(&mut client, "eq(state,grouped)").await;
    assert_eq!(grouped.len(), 3, "{grouped:?}");
    let mails = wait_for_messages(&s.sink, 1, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(maildir_messages(&s.sink).len(), 1, "{mails:?}");
    let mail = parse_mail(&mails[0]);
    assert_eq!(mail.to, vec!["team@example.com"]);
    assert_eq!(
        mail.subject,
        "Flyte: 3 executions FAILED in flytesnacks/development"
    );
    for i in 0..3 {
        assert!(
            mail.text
                .contains(&format!("flytesnacks/development/batch-{i} FAILED")),
            "{}",
            mail.text
        );
    }
}

#[tokio::test]
async fn send_test_of_a_rule_resolves_its_delivery_config_for_the_given_project() {
    use flyte_notify::proto::flytenotify::v1::{SendTestRequest, send_test_request::Target};
    let s = start();
    let mut client = s.server.client().await;
    let sent = client
        .send_test(SendTestRequest {
            target: Some(Target::Rule(InlineRule {
                // Its phases are ignored: a test is always sent.
                on_phases: vec![ActionPhase::Succeeded as i32],
                delivery: Some(Delivery::DeliveryConfigName("oncall".into())),
            })),
            run: Some(run("flytesnacks", "production", "")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!sent.delivery_id.is_empty());
    let mails = wait_for_messages(&s.sink, 1, Duration::from_secs(20));
    let mail = parse_mail(&mails[0]);
    assert_eq!(mail.to, vec!["prod-oncall@example.com"]);
    assert!(
        mail.subject.starts_with("PROD send-test-"),
        "{}",
        mail.subject
    );
    assert!(
        mail.text.contains("This is a test message"),
        "{}",
        mail.text
    );
    // A name the project cannot see is refused as the rule's.
    let status = client
        .send_test(SendTestRequest {
            target: Some(Target::Rule(InlineRule {
                on_phases: Vec::new(),
                delivery: Some(Delivery::DeliveryConfigName("secret-team".into())),
            })),
            run: Some(run("flytesnacks", "production", "")),
        })
        .await
        .unwrap_err();
    let v = field_violations(&status);
    assert_eq!(v[0].0, "rule.delivery_config_name", "{v:?}");
}

/// A webhook rule as the SDK makes Slack, Teams and Webhook notifiers: POST, JSON.
fn sdk_webhook_rule(phases: &[ActionPhase], url: &str, body: serde_json::Value) -> InlineRule {
    webhook_rule(phases, url, &body.to_string())
}

#[tokio::test]
async fn slack_and_teams_webhooks_go_by_their_own_senders_and_email_copies_by_cc_and_bcc() {
    let s = start();
    let mut client = s.server.client().await;
    let mut email = email_rule(
        &[ActionPhase::Failed],
        &["team@example.com"],
        "Run {{.Run.Name}} {{.Phase}}",
        "{{.Error}}",
        "No HTML body",
    );
    if let Some(t) = email.delivery.as_mut().and_then(|d| match d {
        Delivery::DeliveryTemplate(t) => t.email.as_mut(),
        Delivery::DeliveryConfigName(_) => None,
    }) {
        t.cc = vec![address("lead@example.com")];
        t.bcc = vec![address("audit@example.com")];
    }
    let rules = vec![
        email,
        sdk_webhook_rule(
            &[ActionPhase::Failed],
            &s.slack.url("/services/T0/B0/secret"),
            serde_json::json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn",
                "text": "*{{.Run.Name}}* failed: {{.Error}}"}}]}),
        ),
        sdk_webhook_rule(
            &[ActionPhase::Failed],
            &s.teams.url("/webhookb2/abc"),
            serde_json::json!({"type": "message", "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {"type": "AdaptiveCard", "version": "1.4",
                    "body": [{"type": "TextBlock", "text": "{{.Run.Name}}: {{.Error}}"}]}}]}),
        ),
    ];
    let response = client
        .enqueue_run_event(run_event(
            "copies-1",
            run("flytesnacks", "development", "copies-1"),
            ActionPhase::Failed,
            "bad \"quote\"",
            inline(rules),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.delivery_ids.len(), 3);

    let mails = wait_for_messages(&s.sink, 1, Duration::from_secs(20));
    let raw = String::from_utf8(std::fs::read(&mails[0]).unwrap()).unwrap();
    let mail = parse_mail(&mails[0]);
    assert_eq!(mail.to, vec!["team@example.com"]);
    assert!(raw.contains("Cc: lead@example.com"), "{raw}");
    // Bcc went in the envelope (aiosmtpd records it as X-RcptTo), never in the headers.
    let rcpt = raw
        .lines()
        .find(|l| l.starts_with("X-RcptTo:"))
        .unwrap_or_default();
    assert!(rcpt.contains("audit@example.com"), "{raw}");
    assert!(!raw.contains("Bcc:"), "{raw}");
    // The SDK's "No HTML body" is no HTML body: the text goes as both parts.
    assert!(!mail.html.contains("No HTML body"), "{}", mail.html);
    assert!(mail.html.contains("bad &"), "{}", mail.html);

    let slack = wait_for_requests(&s.slack, 1).await;
    assert_eq!(
        slack[0]["json"]["blocks"][0]["text"]["text"],
        "*copies-1* failed: bad \"quote\""
    );
    // Slack's webhooks are not Standard Webhooks: no signature headers.
    assert!(
        slack[0]["headers"].get("webhook-signature").is_none(),
        "{slack:?}"
    );
    let teams = wait_for_requests(&s.teams, 1).await;
    assert_eq!(
        teams[0]["json"]["attachments"][0]["content"]["body"][0]["text"],
        "copies-1: bad \"quote\""
    );
    let mut channels = Vec::new();
    for id in &response.delivery_ids {
        let d = delivery(&mut client, id).await;
        channels.push(d.channel);
    }
    assert_eq!(channels, vec!["email", "webhook", "teams"]);
}

#[tokio::test]
async fn a_provider_template_is_refused_when_the_emailer_has_none() {
    let s = start();
    let mut client = s.server.client().await;
    let mut rule = email_rule(&[ActionPhase::Failed], &["a@example.com"], "s", "t", "");
    if let Some(t) = rule.delivery.as_mut().and_then(|d| match d {
        Delivery::DeliveryTemplate(t) => t.email.as_mut(),
        Delivery::DeliveryConfigName(_) => None,
    }) {
        t.content = Some(email_delivery_template::Content::ProviderTemplate(
            flyte_notify::proto::flyteidl2::notification::ProviderEmailTemplate {
                template_id: "d-123".into(),
                template_data: [("run".to_string(), "{{.Run.Name}}".to_string())].into(),
            },
        ));
    }
    let status = client
        .enqueue_run_event(run_event(
            "prov-1",
            run("flytesnacks", "development", "prov-1"),
            ActionPhase::Failed,
            "",
            inline(vec![rule]),
        ))
        .await
        .unwrap_err();
    let v = field_violations(&status);
    assert_eq!(
        v[0].0, "rules.notification_rules.rules[0].delivery_template.email.provider_template",
        "{v:?}"
    );
    assert!(v[0].1.contains("smtp"), "{v:?}");
}

#[tokio::test]
async fn a_provider_template_goes_to_sendgrid_as_a_dynamic_template_with_the_filled_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("requests.jsonl");
    let _sink = start_sendgrid_sink(port, &log, "");
    let config = format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig: {{ serviceName: sendgrid, apiKeyEnvVar: FN_TEST_SG_KEY }}
flyteNotify:
  sendgrid: {{ baseUrl: "http://127.0.0.1:{port}/" }}
"#
    );
    let server = Server::start_env(dir.path(), &config, &[("FN_TEST_SG_KEY", "SG.k.s")]);
    let mut client = server.client().await;
    let mut rule = email_rule(&[ActionPhase::Failed], &["a@example.com"], "s", "t", "");
    if let Some(t) = rule.delivery.as_mut().and_then(|d| match d {
        Delivery::DeliveryTemplate(t) => t.email.as_mut(),
        Delivery::DeliveryConfigName(_) => None,
    }) {
        t.cc = vec![address("b@example.com")];
        t.content = Some(email_delivery_template::Content::ProviderTemplate(
            flyte_notify::proto::flyteidl2::notification::ProviderEmailTemplate {
                template_id: "d-0123456789abcdef".into(),
                template_data: [
                    ("run".to_string(), "{{.Run.Name}}".to_string()),
                    ("why".to_string(), "{{.Error}}".to_string()),
                ]
                .into(),
            },
        ));
    }
    client
        .enqueue_run_event(run_event(
            "prov-sg-1",
            run("flytesnacks", "development", "prov-sg-1"),
            ActionPhase::Failed,
            "<b>OOM</b>",
            inline(vec![rule]),
        ))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let requests = loop {
        let got = read_jsonl(&log);
        if !got.is_empty() {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = &requests[0]["body"];
    assert_eq!(body["template_id"], "d-0123456789abcdef", "{body}");
    let p = &body["personalizations"][0];
    assert_eq!(p["to"][0]["email"], "a@example.com");
    assert_eq!(p["cc"][0]["email"], "b@example.com");
    // Text for the provider to escape in its own template.
    assert_eq!(
        p["dynamic_template_data"],
        serde_json::json!({"run": "prov-sg-1", "why": "<b>OOM</b>"})
    );
    assert!(body.get("content").is_none(), "{body}");
}
