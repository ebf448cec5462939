//! Amazon SES end to end: the real binary, configured only through the AWS SDK's own environment
//! variables, against moto's server standing in for SES.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;

fn config(sender: &str) -> String {
    format!(
        r#"
notifications:
  aws:
    region: {AWS_REGION}
  emailer:
    sender: {sender}
    subject: "{{{{ project }}}}/{{{{ name }}}} has {{{{ phase }}}}"
    emailServerConfig:
      serviceName: SES
flyteNotify:
  retry: {{ baseDelay: 1h, maxDelay: 2h }}
"#
    )
}

fn start(dir: &Path, sender: &str, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_env(dir, &config(sender), &env)
}

fn request(name: &str) -> EnqueueRequest {
    EnqueueRequest {
        request_id: name.into(),
        execution: Some(failed_execution(name)),
        notifications: vec![email(
            &[Phase::Failed],
            &["oncall@example.com", "team@example.com"],
            "",
        )],
        webhooks: Vec::new(),
        deadline: None,
    }
}

#[tokio::test]
async fn a_failed_execution_goes_out_through_ses_as_one_multipart_message() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.verify_sender("flyte@example.com").await;
    let server = start(
        dir.path(),
        "Flyte <flyte@example.com>",
        &moto.server_env("AWS_ENDPOINT_URL"),
    );
    let mut client = server.client().await;
    client.enqueue(request("exec-ses")).await.unwrap();
    wait_for_pending(&server, "", Duration::from_secs(30), |d| d.is_empty()).await;

    let sent = moto.sent_raw_messages().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (source, destinations, raw) = &sent[0];
    assert_eq!(source, "flyte@example.com");
    // moto lists the Destination addresses and again those of the To: header.
    let destinations: BTreeSet<&str> = destinations.iter().map(String::as_str).collect();
    assert_eq!(
        destinations,
        BTreeSet::from(["oncall@example.com", "team@example.com"])
    );
    let mail = parse_mail_bytes(raw.as_bytes());
    assert_eq!(mail.from, "flyte@example.com");
    assert_eq!(mail.to, ["oncall@example.com", "team@example.com"]);
    assert_eq!(mail.subject, "flytesnacks/exec-ses has failed");
    assert!(mail.text.contains("x < 0 & y > \"1\""), "{mail:?}");
    assert!(mail.html.contains("x &#60; 0 &#38; y &#62;"), "{mail:?}");
    assert!(raw.contains(".flyte-notify@example.com>"), "{raw}");
    let log = server.log();
    assert!(log.contains("email goes out through Amazon SES"), "{log}");
}

#[tokio::test]
async fn an_unverified_sender_is_dead_with_ses_reason() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    // The service's own variable wins over the general one, which points nowhere.
    let mut env = moto.server_env("AWS_ENDPOINT_URL_SESV2");
    env.push((
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", free_port()),
    ));
    let server = start(dir.path(), "unverified@example.org", &env);
    let mut client = server.client().await;
    client.enqueue(request("exec-unverified")).await.unwrap();
    let dead = wait_for_pending(&server, "eq(state,dead)", Duration::from_secs(30), |d| {
        !d.is_empty()
    })
    .await;
    assert_eq!(
        dead[0].last_error,
        "permanent failure on attempt 1: ses: MessageRejected: Did not have authority to send \
         from email unverified@example.org"
    );
    assert!(moto.sent_raw_messages().await.is_empty());
}
