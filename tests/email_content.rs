//! What a person reads in the emails: the real binary, a real Maildir, the parsed message.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use flyte_notify::proto::flytenotify::v1::PreviewRequest;

/// FlyteAdmin's usual `notifications.emailer.body`: a small HTML page linking the console.
const FLYTEADMIN_HTML: &str = r#"
notifications:
  type: local
  emailer:
    sender: "flyte@example.com"
    body: '<html><body>Execution <a href="https://console.example.com/{{ project }}/{{ domain }}/{{ name }}">{{ name }}</a> has {{ phase }}.{{ error }}</body></html>'
"#;

/// Whether `text` has anything that reads as markup: `<` before a name, `/` or `!`. A bare `<`
/// (as in the error message `x < 0`) is text.
fn has_tag(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || matches!(w[1], b'/' | b'!')))
}

#[tokio::test]
async fn a_flyteadmin_style_html_body_gives_a_text_part_with_no_tags_and_the_links_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FLYTEADMIN_HTML));
    let mut client = server.client().await;
    let request = failed_email_request("exec-html");
    let preview = client
        .preview(PreviewRequest {
            execution: request.execution.clone(),
            notifications: request.notifications.clone(),
            webhooks: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    client.enqueue(request).await.unwrap();

    let files = wait_for_messages(&server.maildir(), 1, Duration::from_secs(10));
    assert_eq!(files.len(), 1, "no mail; log:\n{}", server.log());
    let mail = parse_mail(&files[0]);
    let url = "https://console.example.com/flytesnacks/development/exec-html";
    assert!(!has_tag(&mail.text), "{}", mail.text);
    assert!(mail.text.contains(url), "{}", mail.text);
    assert_eq!(
        mail.text,
        format!(
            "Execution exec-html ({url}) has failed. The execution failed with error: \
             [x < 0 & y > \"1\"]."
        )
    );
    assert_eq!(
        mail.html,
        format!(
            "<html><body>Execution <a href=\"{url}\">exec-html</a> has failed. The execution \
             failed with error: [x &#60; 0 &#38; y &#62; &#34;1&#34;].</body></html>"
        )
    );
    // Preview showed the parts that were sent.
    assert_eq!(preview.messages.len(), 1);
    assert_eq!(preview.messages[0].text_body, mail.text);
    assert_eq!(preview.messages[0].html_body, mail.html);
}

/// The `Reached at` time in a built-in text body, as seconds since the epoch.
fn reached_at(text: &str) -> i64 {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Reached at:"))
        .unwrap_or_else(|| panic!("no Reached at line in {text:?}"));
    chrono::NaiveDateTime::parse_from_str(line.trim(), "%Y-%m-%d %H:%M:%S UTC")
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        .and_utc()
        .timestamp()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn the_built_in_email_shows_the_servers_time_when_the_request_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let mut request = failed_email_request("exec-time");
    assert_eq!(request.execution.as_ref().unwrap().occurred_at, None);
    request.execution.as_mut().unwrap().workflow = None;
    request.execution.as_mut().unwrap().launch_plan = None;

    let before = now();
    let preview = client
        .preview(PreviewRequest {
            execution: request.execution.clone(),
            notifications: request.notifications.clone(),
            webhooks: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = client.enqueue(request.clone()).await.unwrap().into_inner();
    let after = now();
    assert!((before..=after).contains(&reached_at(&preview.messages[0].text_body)));

    // The same request again is still the same request: the time the server filled in is not
    // part of what the request id is compared with.
    let again = client.enqueue(request).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(again.delivery_ids, first.delivery_ids);

    let files = wait_for_messages(&server.maildir(), 1, Duration::from_secs(10));
    assert_eq!(files.len(), 1, "no mail; log:\n{}", server.log());
    let mail = parse_mail(&files[0]);
    let at = reached_at(&mail.text);
    assert!(
        (before..=after).contains(&at),
        "{at} not in {before}..={after}"
    );
    assert!(mail.html.contains(">Reached at</td>"), "{}", mail.html);
    // Only the time is known besides the execution: the table holds that one row.
    assert_eq!(mail.html.matches("<tr>").count(), 1, "{}", mail.html);
    assert!(!has_tag(&mail.text), "{}", mail.text);

    // Nothing else was sent for the duplicate.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(maildir_messages(&server.maildir()).len(), 1);
}
