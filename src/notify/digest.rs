//! A digest: one message for the members of a group (`groupWait` on a route), rendered when the
//! digest is sent from each member's stored execution context, with the same facts its own
//! message would show. Email gets one row per execution; PagerDuty one trigger with the count
//! and the executions in `custom_details`.

use askama::Template;
use prost::Message as _;
use serde_json::{Value, json};

use super::render::{Renderer, identifier, phase_name};
use crate::delivery::{Channel, EmailMessage, PagerDutyAction, PagerDutyEvent, Payload, Rendered};
use crate::ledger::DigestMember;
use crate::proto::flytenotify::v1::ExecutionContext;

/// How much of each member's error a digest shows: the row is a pointer to the execution, whose
/// page has the whole error.
const ROW_ERROR_CHARS: usize = 300;
/// The most executions listed in a PagerDuty event's details (PagerDuty caps an event at 512 KB).
const PAGERDUTY_LISTED: usize = 50;

/// One member as a digest shows it.
pub struct Row {
    pub execution: String,
    pub phase: String,
    pub launch_plan: String,
    pub error: String,
    pub link: Option<String>,
}

struct Digest {
    count: usize,
    /// "FAILED" when every member has that phase, else "ended".
    what: String,
    /// "project/domain" when every member shares them, else empty.
    scope: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "digest.txt")]
struct DigestText<'a> {
    d: &'a Digest,
}

#[derive(Template)]
#[template(path = "digest.html")]
struct DigestHtml<'a> {
    d: &'a Digest,
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// The rows of `members` whose context can be read, with `execution` decoded; a member whose
/// context cannot be read is still counted and listed by its execution id.
fn digest(renderer: &Renderer, members: &[DigestMember]) -> Digest {
    let mut rows = Vec::with_capacity(members.len());
    for m in members {
        let context = m
            .context
            .as_ref()
            .ok()
            .and_then(|bytes| ExecutionContext::decode(&bytes[..]).ok())
            .unwrap_or_default();
        let key = &m.execution;
        rows.push(Row {
            execution: format!("{}/{}/{}", key.project, key.domain, key.name),
            phase: phase_name(m.phase).to_ascii_uppercase(),
            launch_plan: identifier(context.launch_plan.as_ref()),
            error: context
                .error
                .as_ref()
                .map(|e| cut(e.message.trim(), ROW_ERROR_CHARS))
                .unwrap_or_default(),
            link: renderer.console_link(&key.project, &key.domain, &key.name),
        });
    }
    let same = |f: &dyn Fn(&DigestMember) -> String| {
        let first = members.first().map(f)?;
        members.iter().all(|m| f(m) == first).then_some(first)
    };
    let what =
        same(&|m| phase_name(m.phase).to_ascii_uppercase()).unwrap_or_else(|| "ended".into());
    let scope =
        same(&|m| format!("{}/{}", m.execution.project, m.execution.domain)).unwrap_or_default();
    Digest {
        count: members.len(),
        what,
        scope,
        rows,
    }
}

/// The digest's subject line: "Flyte: 50 executions FAILED in flytesnacks/development".
fn subject(d: &Digest) -> String {
    let scope = if d.scope.is_empty() {
        String::new()
    } else {
        format!(" in {}", d.scope)
    };
    format!("Flyte: {} executions {}{scope}", d.count, d.what)
}

/// What goes on the wire for a digest sent by a `wire` sender. A digest has no template of its
/// own: the members' templates are for one execution each.
pub fn render_digest(
    renderer: &Renderer,
    wire: Channel,
    payload: &Payload,
    digest_id: &str,
    members: &[DigestMember],
) -> Result<Rendered, String> {
    if members.is_empty() {
        return Err("the digest has no members".into());
    }
    let d = digest(renderer, members);
    match wire {
        Channel::Email => {
            let text_body = DigestText { d: &d }
                .render()
                .map_err(|e| format!("the digest cannot be rendered: {e}"))?;
            let html_body = DigestHtml { d: &d }
                .render()
                .map_err(|e| format!("the digest cannot be rendered: {e}"))?;
            let max = renderer.max_rendered_bytes;
            if html_body.len() > max {
                return Err(format!(
                    "the digest's HTML body is {} bytes, over limits.maxRenderedBytes ({max}); \
                     lower maxGroupSize",
                    html_body.len()
                ));
            }
            Ok(Rendered::Email(EmailMessage {
                recipients: payload.recipients.clone(),
                sender: renderer.sender().to_string(),
                subject: subject(&d),
                html_body: html_body.replace('\n', "\r\n"),
                text_body: text_body.replace('\n', "\r\n"),
            }))
        }
        Channel::Pagerduty => {
            let listed: Vec<Value> = d
                .rows
                .iter()
                .take(PAGERDUTY_LISTED)
                .map(|r| {
                    json!({
                        "execution": r.execution,
                        "phase": r.phase,
                        "launch_plan": r.launch_plan,
                        "error": r.error,
                    })
                })
                .collect();
            let mut details = json!({
                "count": d.count,
                "executions": listed,
            });
            if d.count > PAGERDUTY_LISTED {
                details["more"] = json!(d.count - PAGERDUTY_LISTED);
            }
            let links = d
                .rows
                .iter()
                .filter_map(|r| r.link.clone().map(|l| (l, r.execution.clone())))
                .take(5)
                .collect();
            Ok(Rendered::PagerDuty(PagerDutyEvent {
                recipients: payload.recipients.clone(),
                action: PagerDutyAction::Trigger,
                // One incident per digest: a later digest of the same group is news of its own.
                dedup_key: format!("flyte/digest/{digest_id}"),
                summary: subject(&d),
                severity: if d.what == "ABORTED" {
                    "warning".into()
                } else {
                    "error".into()
                },
                source: if d.scope.is_empty() {
                    "flyte".into()
                } else {
                    d.scope.clone()
                },
                custom_details: details,
                links,
            }))
        }
        other => Err(format!(
            "{other} digests are not built; only email and PagerDuty"
        )),
    }
}
