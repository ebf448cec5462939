//! Request validation: FlyteAdmin's rules, flytekit's, and the bounds that keep one caller from
//! flooding the service. Every problem is reported, each with the path of its field, so a caller
//! can fix a request in one round trip.

use std::time::Duration;

use super::routes::Routes;
use super::template;
use super::webhook_body::webhook_spec;
use super::webhooks::WebhookTargets;
use crate::config::Limits;
use crate::delivery::Channel;
use crate::delivery::{WebhookSpec, WebhookTarget};
use crate::error::FieldViolation;
use crate::proto::flyteidl::admin::{Notification, notification::Type};
use crate::proto::flyteidl::core::WorkflowExecutionIdentifier;
use crate::proto::flyteidl::core::workflow_execution::Phase;
use crate::proto::flytenotify::v1::ExecutionContext;
use crate::proto::flytenotify::v1::WebhookNotification;

pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Project, domain, name, org and version of the execution, workflow and launch plan ids.
/// Flyte's own are far shorter; this only keeps a caller from filling every email with them.
pub const MAX_ID_FIELD_BYTES: usize = 512;
pub const MAX_ERROR_CODE_BYTES: usize = 1024;
pub const MAX_ERROR_MESSAGE_BYTES: usize = 256 * 1024;
pub const MAX_ERROR_URI_BYTES: usize = 4096;
pub const MAX_ERROR_WORKER_BYTES: usize = 1024;

fn at_most(field: String, value: &str, max: usize, out: &mut Vec<FieldViolation>) {
    if value.len() > max {
        out.push(FieldViolation::new(
            field,
            format!("{} bytes; at most {max}", value.len()),
        ));
    }
}

pub fn is_terminal(phase: i32) -> bool {
    matches!(
        Phase::try_from(phase),
        Ok(Phase::Succeeded | Phase::Failed | Phase::Aborted | Phase::TimedOut)
    )
}

/// A non-terminal phase that arms a stuck-run deadline (QUEUED, RUNNING, SUCCEEDING, FAILING,
/// ABORTING): the ledger's ARMING_PHASES.
pub fn arms_deadline(phase: i32) -> bool {
    matches!(
        Phase::try_from(phase),
        Ok(Phase::Queued | Phase::Running | Phase::Succeeding | Phase::Failing | Phase::Aborting)
    )
}

/// The bounds of EnqueueRequest.deadline.
pub const MIN_DEADLINE: Duration = Duration::from_secs(1);
pub const MAX_DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);

/// `deadline` as a Duration within its bounds; a problem goes to `out`.
pub fn deadline(
    deadline: &prost_types::Duration,
    out: &mut Vec<FieldViolation>,
) -> Option<Duration> {
    let within = u64::try_from(deadline.seconds)
        .ok()
        .zip(
            u32::try_from(deadline.nanos)
                .ok()
                .filter(|n| *n < 1_000_000_000),
        )
        .map(|(s, n)| Duration::new(s, n))
        .filter(|d| (MIN_DEADLINE..=MAX_DEADLINE).contains(d));
    if within.is_none() {
        out.push(FieldViolation::new(
            "deadline",
            format!(
                "must be from 1s to 30 days; got {}s {}ns",
                deadline.seconds, deadline.nanos
            ),
        ));
    }
    within
}

/// What one notification asks for, whatever its type: decided here, once, from the proto oneof.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub channel: Channel,
    /// The oneof member's field name, for error paths.
    pub field: &'static str,
    pub phases: &'a [i32],
    pub recipients: &'a [String],
    pub template: &'a str,
}

fn target(notification: &Notification) -> Option<Target<'_>> {
    let (channel, field, recipients, template) = match notification.r#type.as_ref()? {
        Type::Email(e) => (Channel::Email, "email", &e.recipients_email, &e.template),
        Type::PagerDuty(p) => (
            Channel::Pagerduty,
            "pager_duty",
            &p.recipients_email,
            &p.template,
        ),
        Type::Slack(s) => (Channel::Slack, "slack", &s.recipients_email, &s.template),
    };
    Some(Target {
        channel,
        field,
        phases: &notification.phases,
        recipients,
        template,
    })
}

pub fn request_id(request_id: &str, out: &mut Vec<FieldViolation>) {
    if request_id.chars().count() > MAX_REQUEST_ID_LEN {
        out.push(FieldViolation::new(
            "request_id",
            format!("at most {MAX_REQUEST_ID_LEN} characters"),
        ));
    }
    if request_id.chars().any(char::is_control) {
        out.push(FieldViolation::new(
            "request_id",
            "contains control characters",
        ));
    }
}

pub fn request_size(size: usize, limits: &Limits, out: &mut Vec<FieldViolation>) {
    if size > limits.max_request_bytes {
        out.push(FieldViolation::new(
            "request",
            format!(
                "the request is {size} bytes; at most {} are accepted",
                limits.max_request_bytes
            ),
        ));
    }
}

/// The execution and its id, when both are there; every problem found goes to `out`.
pub fn execution<'a>(
    execution: Option<&'a ExecutionContext>,
    deadline: Option<Duration>,
    out: &mut Vec<FieldViolation>,
) -> Option<(&'a ExecutionContext, &'a WorkflowExecutionIdentifier)> {
    let Some(execution) = execution else {
        out.push(FieldViolation::new("execution", "required"));
        return None;
    };
    match &execution.execution_id {
        None => out.push(FieldViolation::new("execution.execution_id", "required")),
        Some(id) => {
            for (field, value) in [
                ("project", &id.project),
                ("domain", &id.domain),
                ("name", &id.name),
            ] {
                if value.trim().is_empty() {
                    out.push(FieldViolation::new(
                        format!("execution.execution_id.{field}"),
                        "must not be empty",
                    ));
                }
            }
        }
    }
    let name = Phase::try_from(execution.phase)
        .map(|p| p.as_str_name().to_string())
        .unwrap_or_else(|_| format!("unknown value {}", execution.phase));
    match (
        is_terminal(execution.phase),
        arms_deadline(execution.phase),
        deadline,
    ) {
        (true, _, None) | (false, true, Some(_)) => {}
        (true, _, Some(_)) => out.push(FieldViolation::new(
            "deadline",
            format!(
                "only a non-terminal phase (QUEUED, RUNNING, SUCCEEDING, FAILING, ABORTING) arms a \
                 deadline; execution.phase is {name}"
            ),
        )),
        (false, true, None) => out.push(FieldViolation::new(
            "execution.phase",
            format!(
                "{name} is not terminal: it only arms a stuck-run deadline, so set deadline (or \
                 send a terminal phase: SUCCEEDED, FAILED, ABORTED, TIMED_OUT)"
            ),
        )),
        (false, false, _) => out.push(FieldViolation::new(
            "execution.phase",
            format!("must be a terminal phase (SUCCEEDED, FAILED, ABORTED, TIMED_OUT); got {name}"),
        )),
    }
    if execution.expectation.is_some() {
        out.push(FieldViolation::new(
            "execution.expectation",
            "is set by the server on a missed-schedule alert; leave it unset",
        ));
    }
    if execution.still_running_after.is_some() {
        out.push(FieldViolation::new(
            "execution.still_running_after",
            "is set by the server on a deadline's alert; leave it unset",
        ));
    }
    if let Some(id) = &execution.execution_id {
        for (field, value) in [
            ("project", &id.project),
            ("domain", &id.domain),
            ("name", &id.name),
            ("org", &id.org),
        ] {
            at_most(
                format!("execution.execution_id.{field}"),
                value,
                MAX_ID_FIELD_BYTES,
                out,
            );
        }
    }
    for (path, id) in [
        ("execution.workflow", &execution.workflow),
        ("execution.launch_plan", &execution.launch_plan),
    ] {
        if let Some(id) = id {
            for (field, value) in [
                ("project", &id.project),
                ("domain", &id.domain),
                ("name", &id.name),
                ("version", &id.version),
                ("org", &id.org),
            ] {
                at_most(format!("{path}.{field}"), value, MAX_ID_FIELD_BYTES, out);
            }
        }
    }
    if let Some(error) = &execution.error {
        for (field, value, max) in [
            ("code", &error.code, MAX_ERROR_CODE_BYTES),
            ("message", &error.message, MAX_ERROR_MESSAGE_BYTES),
            ("error_uri", &error.error_uri, MAX_ERROR_URI_BYTES),
            ("worker", &error.worker, MAX_ERROR_WORKER_BYTES),
        ] {
            at_most(format!("execution.error.{field}"), value, max, out);
        }
    }
    Some((execution, execution.execution_id.as_ref()?))
}

/// What each notification asks for (one per notification that has a type); every problem found
/// goes to `out`.
pub fn notifications<'a>(
    notifications: &'a [Notification],
    webhooks: usize,
    limits: &Limits,
    routes: &Routes,
    out: &mut Vec<FieldViolation>,
) -> Vec<Target<'a>> {
    if notifications.is_empty() && webhooks == 0 {
        out.push(FieldViolation::new(
            "notifications",
            "at least one notification (or webhook) is required",
        ));
    }
    if notifications.len() > limits.max_notifications {
        out.push(FieldViolation::new(
            "notifications",
            format!(
                "{} notifications; at most {} per request",
                notifications.len(),
                limits.max_notifications
            ),
        ));
        return Vec::new();
    }
    let mut targets = Vec::with_capacity(notifications.len());
    for (i, n) in notifications.iter().enumerate() {
        let path = format!("notifications[{i}]");
        if n.phases.is_empty() {
            out.push(FieldViolation::new(
                format!("{path}.phases"),
                "at least one phase is required",
            ));
        }
        for (j, phase) in n.phases.iter().enumerate() {
            if !is_terminal(*phase) {
                out.push(FieldViolation::new(
                    format!("{path}.phases[{j}]"),
                    "invalid value for phase: only SUCCEEDED, FAILED, ABORTED and TIMED_OUT trigger notifications",
                ));
            }
        }
        let Some(t) = target(n) else {
            out.push(FieldViolation::new(
                format!("{path}.type"),
                "invalid value for notification type: set one of email, pager_duty, slack",
            ));
            continue;
        };
        let path = format!("{path}.{}", t.field);
        recipients(&path, t.channel, t.recipients, limits, routes, out);
        if t.template.len() > limits.max_template_bytes {
            out.push(FieldViolation::new(
                format!("{path}.template"),
                format!(
                    "{} bytes; at most {}",
                    t.template.len(),
                    limits.max_template_bytes
                ),
            ));
        } else {
            for problem in template::problems(t.template) {
                out.push(FieldViolation::new(format!("{path}.template"), problem));
            }
        }
        targets.push(t);
    }
    targets
}

/// A recipient with a native route may be any name the route lists (`#ml-alerts`); every other
/// one is emailed, so it must be an address that can be sent to.
fn recipients(
    path: &str,
    channel: Channel,
    recipients: &[String],
    limits: &Limits,
    routes: &Routes,
    out: &mut Vec<FieldViolation>,
) {
    let field = format!("{path}.recipients_email");
    if recipients.is_empty() {
        out.push(FieldViolation::new(field, "missing recipients"));
        return;
    }
    if recipients.len() > limits.max_recipients {
        out.push(FieldViolation::new(
            field,
            format!(
                "{} recipients; at most {}",
                recipients.len(),
                limits.max_recipients
            ),
        ));
        return;
    }
    for (k, r) in recipients.iter().enumerate() {
        let field = format!("{field}[{k}]");
        if r.trim().is_empty() {
            out.push(FieldViolation::new(field, "missing recipient"));
        } else if routes.is_routed(channel, r) {
            // The route says where it goes.
        } else if let Err(problem) = crate::delivery::email_address(r) {
            out.push(FieldViolation::new(field, problem));
        }
    }
}

/// Every problem of each webhook but the DNS check (Enqueue's, afterwards), and what is stored
/// for each one that has none.
pub fn webhooks(
    webhooks: &[WebhookNotification],
    notifications: usize,
    limits: &Limits,
    targets: &WebhookTargets,
    out: &mut Vec<FieldViolation>,
) -> Vec<WebhookSpec> {
    if notifications + webhooks.len() > limits.max_notifications {
        out.push(FieldViolation::new(
            "webhooks",
            format!(
                "{} notifications and webhooks; at most {} per request",
                notifications + webhooks.len(),
                limits.max_notifications
            ),
        ));
        return Vec::new();
    }
    let mut specs = Vec::with_capacity(webhooks.len());
    for (i, w) in webhooks.iter().enumerate() {
        let path = format!("webhooks[{i}]");
        if w.phases.is_empty() {
            out.push(FieldViolation::new(
                format!("{path}.phases"),
                "at least one phase is required",
            ));
        }
        for (j, phase) in w.phases.iter().enumerate() {
            if !is_terminal(*phase) {
                out.push(FieldViolation::new(
                    format!("{path}.phases[{j}]"),
                    "invalid value for phase: only SUCCEEDED, FAILED, ABORTED and TIMED_OUT trigger webhooks",
                ));
            }
        }
        // Whether the target may be called is said even when the rest is wrong, so that a caller
        // learns everything in one round trip.
        let target = match (w.url.is_empty(), w.destination.is_empty()) {
            (false, true) => Some(WebhookTarget::Url(w.url.clone())),
            (true, false) => Some(WebhookTarget::Destination(w.destination.clone())),
            _ => None,
        };
        if let Some((field, problem)) = target.and_then(|t| targets.check(&t)) {
            out.push(FieldViolation::new(format!("{path}.{field}"), problem));
        }
        match webhook_spec(w, limits.max_template_bytes) {
            Ok(spec) => specs.push(spec),
            Err(problems) => {
                for (field, problem) in problems {
                    out.push(FieldViolation::new(format!("{path}.{field}"), problem));
                }
            }
        }
    }
    specs
}
