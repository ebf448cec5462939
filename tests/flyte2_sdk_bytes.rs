//! The bytes the `flyte` SDK's own serializer makes (tests/fixtures/flyte2/, written by
//! make_fixtures.py with flyte 2.12 and checked against it by the Python suite), decoded here and
//! delivered to real peers: every notifier type, with the variables substituted and each value
//! escaped for where it lands.

mod common;

use std::time::Duration;

use common::http_sink::WebhookSink;
use common::*;
use flyte_notify::proto::flyteidl2::common::{ActionPhase, RunIdentifier};
use flyte_notify::proto::flyteidl2::task::{InlineRuleList, inline_rule};
use flyte_notify::proto::flytenotify::v1::{
    EnqueueRunEventRequest, Flyte2Rules, flyte2_rules::Rules,
};
use prost::Message;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/flyte2");

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/manifest.json")).unwrap())
        .unwrap()
}

/// Every string in a JSON document.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

struct Peers {
    slack: WebhookSink,
    teams: WebhookSink,
    hooks: WebhookSink,
}

impl Peers {
    /// The fixture's placeholder URL on the peer that stands in for its service.
    fn repoint(&self, url: &str) -> String {
        let path = url.strip_prefix("http://127.0.0.1:9").expect(url);
        let sink = if path.starts_with("/slack/") {
            &self.slack
        } else if path.starts_with("/teams/") {
            &self.teams
        } else {
            &self.hooks
        };
        sink.url(path)
    }
}

fn config(smtp: u16, peers: &Peers) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: {smtp} }}
flyteNotify:
  retry: {{ baseDelay: 100ms, maxDelay: 1s, maxAttempts: 3 }}
  webhooks:
    allowedHosts: ["127.0.0.1"]
    slackHosts: ["127.0.0.1:{slack}"]
    teamsHosts: ["127.0.0.1:{teams}"]
  deliveryConfigs:
    - name: oncall
      email:
        to: [named-oncall@example.com]
        subject: "named {{{{.Run.Name}}}} {{{{.Phase}}}}"
        text: "{{{{.Error}}}}"
  rules:
    - name: oncall-alerts
      rules: [{{ onPhases: [FAILED], deliveryConfig: oncall }}]
"#,
        slack = peers.slack.port,
        teams = peers.teams.port,
    )
}

async fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_notifier_the_sdk_serializes_decodes_and_delivers_substituted_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let maildir = dir.path().join("sink");
    let _smtp = SmtpSink::start(port, &maildir);
    let peers = Peers {
        slack: WebhookSink::start("", None),
        teams: WebhookSink::start("", None),
        hooks: WebhookSink::start("", None),
    };
    let server = Server::start(dir.path(), Some(&config(port, &peers)));
    let mut client = server.client().await;
    let manifest = manifest();
    let sample = &manifest["sample_event"];
    let error = sample["error"].as_str().unwrap().to_string();
    // The sample error needs every kind of escaping: quotes, <, &, a backslash, a newline, and
    // characters beyond ASCII.
    for c in ['"', '<', '&', '\\', '\n', 'ü'] {
        assert!(error.contains(c), "{error:?} lacks {c:?}");
    }

    let mut covered = Vec::new();
    for case in manifest["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let run_name = format!("fx-{}", name.replace('_', "-"));
        let rules = if case["field"] == "notification_rule_name" {
            let rule_name = std::fs::read_to_string(format!("{FIXTURES}/{name}.txt")).unwrap();
            (
                Rules::NotificationRuleName(rule_name.trim().to_string()),
                ActionPhase::Failed,
            )
        } else {
            let bytes =
                std::fs::read(format!("{FIXTURES}/{}", case["file"].as_str().unwrap())).unwrap();
            let mut list = InlineRuleList::decode(bytes.as_slice()).unwrap();
            // What the SDK made, read back: the phases and the shape the notifier asked for.
            assert!(!list.rules.is_empty(), "{name}");
            let phase = ActionPhase::try_from(list.rules[0].on_phases[0]).unwrap();
            for rule in &mut list.rules {
                if let Some(inline_rule::Delivery::DeliveryTemplate(t)) = &mut rule.delivery
                    && let Some(w) = &mut t.webhook
                {
                    w.url = peers.repoint(&w.url);
                }
            }
            (Rules::NotificationRules(list), phase)
        };
        let response = client
            .enqueue_run_event(EnqueueRunEventRequest {
                request_id: run_name.clone(),
                run: Some(RunIdentifier {
                    org: String::new(),
                    project: "flytesnacks".into(),
                    domain: "development".into(),
                    name: run_name.clone(),
                }),
                phase: rules.1 as i32,
                error: error.clone(),
                rules: Some(Flyte2Rules {
                    rules: Some(rules.0),
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("{name}: {s:?}"))
            .into_inner();
        assert!(!response.delivery_ids.is_empty(), "{name}: {response:?}");
        covered.push((name.to_string(), run_name, rules.1));
    }

    let phase_name = |p: ActionPhase| {
        p.as_str_name()
            .trim_start_matches("ACTION_PHASE_")
            .to_string()
    };
    for (case, run_name, phase) in &covered {
        let phase = phase_name(*phase);
        if case.starts_with("email") || case.starts_with("named") {
            let mail = wait_until(&format!("{case}: a mail for {run_name}"), || {
                maildir_messages(&maildir).into_iter().find_map(|p| {
                    let raw = std::fs::read_to_string(&p).unwrap();
                    let m = parse_mail(&p);
                    m.subject.contains(run_name.as_str()).then_some((raw, m))
                })
            })
            .await;
            let (raw, mail) = mail;
            assert!(
                mail.subject.ends_with(&format!("{run_name} {phase}")),
                "{case}: {}",
                mail.subject
            );
            assert!(
                mail.text.contains(&error),
                "{case}: the error, as it is, in\n{}",
                mail.text
            );
            // In HTML the error is escaped: none of its markup survives raw.
            assert!(!mail.html.contains("\"a\" < b"), "{case}: {}", mail.html);
            assert!(
                mail.html.contains("&#34;a&#34; &#60; b &#38; c"),
                "{case}: {}",
                mail.html
            );
            if case.starts_with("email") {
                assert!(
                    mail.html.contains(run_name.as_str()),
                    "{case}: {}",
                    mail.html
                );
                assert!(raw.contains("Cc: lead@example.com"), "{case}: {raw}");
                let rcpt = raw.lines().find(|l| l.starts_with("X-RcptTo:")).unwrap();
                assert!(rcpt.contains("audit@example.com"), "{case}: {rcpt}");
                assert!(!raw.contains("No HTML body"), "{case}: {raw}");
            } else {
                assert_eq!(mail.to, vec!["named-oncall@example.com"], "{case}");
            }
        }
        let sink = match case.as_str() {
            c if c.starts_with("slack") => Some(&peers.slack),
            c if c.starts_with("teams") => Some(&peers.teams),
            "webhook_put" | "email_and_webhook" => Some(&peers.hooks),
            _ => None,
        };
        if let Some(sink) = sink {
            let request = wait_until(&format!("{case}: a request for {run_name}"), || {
                sink.requests().into_iter().find(|r| {
                    r["body"]
                        .as_str()
                        .is_some_and(|b| b.contains(run_name.as_str()))
                })
            })
            .await;
            // It is JSON because every value was escaped for JSON, and reads back exactly.
            assert!(request["json"].is_object(), "{case}: {request}");
            let mut values = Vec::new();
            strings(&request["json"], &mut values);
            assert!(
                values.iter().any(|v| v.contains(run_name.as_str()))
                    && values.iter().any(|v| v.contains(&phase)),
                "{case}: the run and phase in {values:?}"
            );
            assert!(
                values.iter().any(|v| v.contains(&error)),
                "{case}: the error, exactly, in {values:?}"
            );
            if case.starts_with("slack") || case.starts_with("teams") {
                assert!(
                    request["headers"].get("webhook-signature").is_none(),
                    "{case}: Slack and Teams get no Standard Webhooks signature"
                );
            }
            if case == "webhook_put" {
                assert_eq!(request["method"], "PUT");
                assert_eq!(request["headers"]["x-flyte-team"], "ml-platform");
            }
        }
    }
    let kinds: Vec<&str> = covered.iter().map(|(c, _, _)| c.as_str()).collect();
    for needed in [
        "email_cc_bcc_html",
        "slack_blocks",
        "teams_card",
        "webhook_put",
        "named_delivery",
        "named_rule",
    ] {
        assert!(
            kinds.contains(&needed),
            "the fixtures lack {needed}: {kinds:?}"
        );
    }
}
