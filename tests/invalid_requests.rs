//! Every bad request is refused with InvalidArgument, google.rpc.BadRequest details naming the
//! field, and the service keeps serving (and keeps what it had accepted).

mod common;

use common::*;
use flyte_notify::proto::flyteidl::admin::Notification;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::{
    EnqueueRequest, ExecutionContext, ListPendingRequest, PreviewRequest,
};
use tonic_types::StatusExt;

fn valid() -> EnqueueRequest {
    EnqueueRequest {
        request_id: "ok".into(),
        execution: Some(failed_execution("exec-bad")),
        notifications: vec![email(&[Phase::Failed], &["a@example.com"], "")],
        webhooks: Vec::new(),
        deadline: None,
    }
}

fn with_execution(f: impl FnOnce(&mut ExecutionContext)) -> EnqueueRequest {
    let mut r = valid();
    f(r.execution.as_mut().unwrap());
    r
}

fn with_notification(f: impl FnOnce(&mut Notification)) -> EnqueueRequest {
    let mut r = valid();
    f(&mut r.notifications[0]);
    r
}

fn recipients(list: Vec<String>) -> EnqueueRequest {
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let mut r = valid();
    r.notifications[0] = email(&[Phase::Failed], &list, "");
    r
}

/// (what is wrong, the request, the field the error must name, words the description must hold)
fn cases() -> Vec<(&'static str, EnqueueRequest, &'static str, &'static str)> {
    let mut cases = vec![
        (
            "no execution",
            EnqueueRequest {
                execution: None,
                ..valid()
            },
            "execution",
            "required",
        ),
        (
            "no execution id",
            with_execution(|e| e.execution_id = None),
            "execution.execution_id",
            "required",
        ),
        (
            "empty project",
            with_execution(|e| e.execution_id.as_mut().unwrap().project.clear()),
            "execution.execution_id.project",
            "empty",
        ),
        (
            "empty domain",
            with_execution(|e| e.execution_id.as_mut().unwrap().domain.clear()),
            "execution.execution_id.domain",
            "empty",
        ),
        (
            "empty name",
            with_execution(|e| e.execution_id.as_mut().unwrap().name = "  ".into()),
            "execution.execution_id.name",
            "empty",
        ),
        (
            "undefined phase",
            with_execution(|e| e.phase = Phase::Undefined as i32),
            "execution.phase",
            "terminal",
        ),
        (
            "running is not terminal",
            with_execution(|e| e.phase = Phase::Running as i32),
            "execution.phase",
            "RUNNING",
        ),
        (
            "phase out of the enum",
            with_execution(|e| e.phase = 42),
            "execution.phase",
            "unknown value 42",
        ),
        (
            "no notifications",
            EnqueueRequest {
                notifications: vec![],
                ..valid()
            },
            "notifications",
            "at least one",
        ),
        (
            "notification without a type",
            with_notification(|n| n.r#type = None),
            "notifications[0].type",
            "invalid value for notification type",
        ),
        (
            "no phases",
            with_notification(|n| n.phases.clear()),
            "notifications[0].phases",
            "at least one phase",
        ),
        (
            "a non-terminal phase in phases",
            with_notification(|n| n.phases = vec![Phase::Failed as i32, Phase::Queued as i32]),
            "notifications[0].phases[1]",
            "invalid value for phase",
        ),
        (
            "no recipients",
            recipients(vec![]),
            "notifications[0].email.recipients_email",
            "missing recipients",
        ),
        (
            "an empty recipient",
            recipients(vec!["a@example.com".into(), "".into()]),
            "notifications[0].email.recipients_email[1]",
            "missing recipient",
        ),
        (
            "not an email address",
            recipients(vec!["oncall at example.com".into()]),
            "notifications[0].email.recipients_email[0]",
            "not an email address",
        ),
        (
            "too many recipients",
            recipients((0..101).map(|i| format!("u{i}@example.com")).collect()),
            "notifications[0].email.recipients_email",
            "at most 100",
        ),
        (
            "unknown template variable",
            with_notification(|n| *n = email(&[Phase::Failed], &["a@example.com"], "{{ owner }}")),
            "notifications[0].email.template",
            "names no known variable",
        ),
        (
            "mis-spaced template variable",
            with_notification(|n| *n = email(&[Phase::Failed], &["a@example.com"], "{{  name }}")),
            "notifications[0].email.template",
            "not substituted",
        ),
        (
            "template too large",
            with_notification(|n| {
                *n = email(&[Phase::Failed], &["a@example.com"], &"x".repeat(70_000))
            }),
            "notifications[0].email.template",
            "at most 65536",
        ),
        (
            "request_id too long",
            EnqueueRequest {
                request_id: "r".repeat(129),
                ..valid()
            },
            "request_id",
            "at most 128",
        ),
        (
            "too many notifications",
            EnqueueRequest {
                notifications: vec![email(&[Phase::Failed], &["a@example.com"], ""); 101],
                ..valid()
            },
            "notifications",
            "at most 100",
        ),
        (
            "request too large",
            with_execution(|e| e.error.as_mut().unwrap().message = "e".repeat(2 * 1024 * 1024)),
            "request",
            "bytes",
        ),
    ];
    // Slack and PagerDuty entries are checked the same way, under their own field names.
    let mut r = valid();
    r.notifications
        .push(slack(&[Phase::Failed], &["not-an-address"]));
    cases.push((
        "bad slack recipient",
        r,
        "notifications[1].slack.recipients_email[0]",
        "not an email address",
    ));
    let mut r = valid();
    r.notifications.push(pager_duty(&[Phase::Failed], &[]));
    cases.push((
        "pagerduty without recipients",
        r,
        "notifications[1].pager_duty.recipients_email",
        "missing recipients",
    ));
    cases
}

#[tokio::test]
async fn each_invalid_request_names_its_field_and_the_service_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let accepted = client.enqueue(valid()).await.unwrap().into_inner();

    let cases = cases();
    assert!(cases.len() >= 15);
    for (what, request, field, words) in cases {
        for preview in [false, true] {
            if preview && field == "request_id" {
                // Preview has no request_id: that request is valid there.
                continue;
            }
            let status = if preview {
                client
                    .preview(PreviewRequest {
                        execution: request.execution.clone(),
                        notifications: request.notifications.clone(),
                        webhooks: Vec::new(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .unwrap_err()
            } else {
                client
                    .enqueue(request.clone())
                    .await
                    .map(|_| ())
                    .unwrap_err()
            };
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{what}: {status:?}"
            );
            let bad = status
                .get_details_bad_request()
                .unwrap_or_else(|| panic!("{what}: no BadRequest details in {status:?}"));
            let violation = bad
                .field_violations
                .iter()
                .find(|v| v.field == field)
                .unwrap_or_else(|| panic!("{what}: no violation for {field}: {bad:?}"));
            assert!(
                violation.description.contains(words),
                "{what}: {:?} lacks {words:?}",
                violation.description
            );
            assert!(
                status.message().contains(field),
                "{what}: {}",
                status.message()
            );
        }
    }

    // ListPending's own inputs.
    for (request, field) in [
        (
            ListPendingRequest {
                limit: 5000,
                ..Default::default()
            },
            "limit",
        ),
        (
            ListPendingRequest {
                token: "not-a-token".into(),
                ..Default::default()
            },
            "token",
        ),
        (
            ListPendingRequest {
                filters: "eq(owner,me)".into(),
                ..Default::default()
            },
            "filters",
        ),
    ] {
        let status = client.list_pending(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, field);
    }

    // Still serving, and the delivery accepted before all of that was sent.
    assert!(server.is_running());
    let again = client.enqueue(valid()).await.unwrap().into_inner();
    assert_eq!(again.delivery_ids, accepted.delivery_ids);
    let files = wait_for_messages(&server.maildir(), 1, std::time::Duration::from_secs(10));
    assert_eq!(files.len(), 1);
}

#[tokio::test]
async fn all_problems_of_one_request_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut client = server.client().await;
    let mut request = with_execution(|e| e.execution_id.as_mut().unwrap().project.clear());
    request
        .notifications
        .push(email(&[Phase::Running], &["x"], ""));
    let status = client.enqueue(request).await.unwrap_err();
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        vec![
            "execution.execution_id.project",
            "notifications[1].phases[0]",
            "notifications[1].email.recipients_email[0]",
        ]
    );
}
