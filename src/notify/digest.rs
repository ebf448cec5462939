//! A digest: one message for the members of a group (`groupWait` on a route), rendered when the
//! digest is sent from each member's stored execution context, with the same facts its own
//! message would show. Email gets one row per execution; PagerDuty one trigger with the count
//! and the executions in `custom_details`; Slack one Block Kit message, a section per execution
//! up to Slack's block limit and a line counting the rest; a webhook destination one request
//! whose built-in body holds the executions (`webhook_body::digest_body`).

use askama::Template;
use prost::Message as _;
use serde_json::{Value, json};

use super::native::{Mrkdwn, SLACK_ID_MAX, slack_icon, slack_plain, utf16_len};
use super::native::{SLACK_HEADER_MAX, SLACK_SECTION_MAX, SLACK_TEXT_MAX, SLACK_URL_MAX};
use super::render::{Renderer, identifier, phase_name};
use crate::delivery::{
    Channel, EmailMessage, PagerDutyAction, PagerDutyEvent, Payload, Rendered, SlackMessage,
    WebhookRequest, WebhookTarget,
};
use crate::ledger::DigestMember;
use crate::proto::flyteidl::core::WorkflowExecutionIdentifier;
use crate::proto::flyteidl::core::workflow_execution::Phase;
use crate::proto::flytenotify::v1::ExecutionContext;

/// How much of each member's error a digest shows: the row is a pointer to the execution, whose
/// page has the whole error.
const ROW_ERROR_CHARS: usize = 300;
/// The most executions listed in a PagerDuty event's details (PagerDuty caps an event at 512 KB).
const PAGERDUTY_LISTED: usize = 50;
/// Slack refuses a message of more than 50 blocks (invalid_blocks).
pub const SLACK_MAX_BLOCKS: usize = 50;
/// The executions a Slack digest lists, a section each: the header and the line counting the
/// rest take the other two blocks.
pub const SLACK_LISTED: usize = SLACK_MAX_BLOCKS - 2;

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
    /// The phase every member has, if they share one.
    phase: Option<i32>,
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

/// A member's execution context; one that cannot be read stands as its execution id and phase,
/// so that it is still counted and listed.
fn context(m: &DigestMember) -> ExecutionContext {
    let mut context = m
        .context
        .as_ref()
        .ok()
        .and_then(|bytes| ExecutionContext::decode(&bytes[..]).ok())
        .unwrap_or_default();
    if context.execution_id.is_none() {
        context.execution_id = Some(WorkflowExecutionIdentifier {
            project: m.execution.project.clone(),
            domain: m.execution.domain.clone(),
            name: m.execution.name.clone(),
            org: m.execution.org.clone(),
        });
        context.phase = m.phase;
    }
    context
}

/// The rows of `members`.
fn digest(renderer: &Renderer, members: &[DigestMember]) -> Digest {
    let mut rows = Vec::with_capacity(members.len());
    for m in members {
        let context = context(m);
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
    let phase = members
        .first()
        .map(|m| m.phase)
        .filter(|p| members.iter().all(|m| m.phase == *p));
    let what =
        same(&|m| phase_name(m.phase).to_ascii_uppercase()).unwrap_or_else(|| "ended".into());
    let scope =
        same(&|m| format!("{}/{}", m.execution.project, m.execution.domain)).unwrap_or_default();
    Digest {
        count: members.len(),
        phase,
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
                cc: Vec::new(),
                bcc: Vec::new(),
                provider_template: None,
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
        Channel::Slack => Ok(Rendered::Slack(slack_digest(
            &d,
            &payload.recipients,
            renderer.max_rendered_bytes,
        ))),
        // Teams deliveries are never grouped: no Teams route has a grouping setting.
        Channel::Teams => Err("Teams deliveries are not grouped into digests".into()),
        Channel::Webhook => {
            // Only webhooks to a destination are grouped; the digest's recipient is its name.
            let [name] = &payload.recipients[..] else {
                return Err("a webhook digest names one destination".into());
            };
            let executions: Vec<_> = members
                .iter()
                .map(|m| {
                    let context = context(m);
                    let link = renderer.console_link_for(&context);
                    (context, link)
                })
                .collect();
            // The members' own method, headers and body template are for one execution each:
            // a digest is a POST of the built-in body, with the destination's headers.
            let body = super::webhook_body::digest_body(&executions, renderer.max_rendered_bytes)?;
            Ok(Rendered::Webhook(WebhookRequest {
                recipients: payload.recipients.clone(),
                target: WebhookTarget::Destination(name.clone()),
                method: "POST".into(),
                headers: Vec::new(),
                body,
                timeout: None,
                flavor: crate::delivery::WebhookFlavor::Generic,
            }))
        }
    }
}

/// One execution's section: its id and phase, its launch plan and its error, with a button to
/// its page; every text escaped and within Slack's section limit.
fn slack_row(r: &Row) -> Value {
    let mut text = format!(
        "`{}` {}",
        Mrkdwn::line(&r.execution, SLACK_ID_MAX),
        Mrkdwn::line(&r.phase, 64)
    );
    if !r.launch_plan.is_empty() {
        text.push_str(&format!(
            "\n*Launch plan:* `{}`",
            Mrkdwn::line(&r.launch_plan, SLACK_ID_MAX)
        ));
    }
    if !r.error.is_empty() {
        // What the error may take: the section's limit less the text around it.
        let frame = utf16_len(&text) + utf16_len("\n``````");
        let budget = SLACK_SECTION_MAX.saturating_sub(frame);
        text.push_str(&format!("\n```{}```", Mrkdwn::new(&r.error, budget)));
    }
    let mut section = json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
    // A longer URL would make Slack refuse the whole message; the text names the execution.
    if let Some(link) = r.link.as_deref().filter(|l| utf16_len(l) <= SLACK_URL_MAX) {
        section["accessory"] = json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "View"},
            "url": link,
        });
    }
    section
}

/// The line that counts what the sections leave out.
fn slack_more(left_out: usize, count: usize) -> Value {
    json!({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": format!("…and {left_out} more ({count} executions in this digest)"),
    }]})
}

/// A digest as one Slack message: a header with the count, a section per execution for at most
/// `SLACK_LISTED` of them (fewer when the message would exceed `max_bytes` as JSON), and a
/// line counting the rest; never more than `SLACK_MAX_BLOCKS` blocks. The fallback `text`, which
/// a phone notification shows, is the headline with the count.
fn slack_digest(d: &Digest, recipients: &[String], max_bytes: usize) -> SlackMessage {
    let headline = subject(d);
    let icon = match d.phase {
        Some(p) => slack_icon(Phase::try_from(p).ok()),
        None => ":grey_question:",
    };
    let header = json!({"type": "header", "text": {
        "type": "plain_text",
        "text": slack_plain(&format!("{icon} {headline}"), SLACK_HEADER_MAX),
        "emoji": true,
    }});
    let text = Mrkdwn::line(&headline, SLACK_TEXT_MAX).to_string();
    // What the header, the text and the longest line counting the rest take, and a little for
    // the JSON around them.
    let mut used =
        header.to_string().len() + text.len() + slack_more(d.count, d.count).to_string().len() + 64;
    let mut blocks = vec![header];
    for r in d.rows.iter().take(SLACK_LISTED) {
        let section = slack_row(r);
        let size = section.to_string().len() + 1;
        if used + size > max_bytes {
            break;
        }
        used += size;
        blocks.push(section);
    }
    let listed = blocks.len() - 1;
    if listed < d.count {
        blocks.push(slack_more(d.count - listed, d.count));
    }
    SlackMessage {
        recipients: recipients.to_vec(),
        text,
        blocks: Value::Array(blocks),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message as _;

    use super::*;
    use crate::delivery::Content;
    use crate::ledger::ExecutionKey;
    use crate::proto::flyteidl::core::{ExecutionError, WorkflowExecutionIdentifier};

    fn renderer(max_rendered_bytes: usize) -> Renderer {
        Renderer {
            subject: String::new(),
            body: String::new(),
            sender: String::new(),
            console_url: "https://flyte.example.com/console".into(),
            max_rendered_bytes,
        }
    }

    fn member(i: usize, error: &str) -> DigestMember {
        let name = format!("run-{i}");
        let context = ExecutionContext {
            execution_id: Some(WorkflowExecutionIdentifier {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: name.clone(),
                org: String::new(),
            }),
            phase: Phase::Failed as i32,
            error: Some(ExecutionError {
                code: "USER:ValueError".into(),
                message: error.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        DigestMember {
            id: format!("member-{i}"),
            execution: ExecutionKey {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name,
                org: String::new(),
            },
            phase: Phase::Failed as i32,
            context: Ok(Arc::from(context.encode_to_vec())),
        }
    }

    fn slack(members: &[DigestMember], max_bytes: usize) -> SlackMessage {
        let payload = Payload {
            channel: Channel::Slack,
            recipients: vec!["#ml-alerts".into()],
            content: Content::Digest,
        };
        match render_digest(&renderer(max_bytes), Channel::Slack, &payload, "d", members) {
            Ok(Rendered::Slack(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn section_texts(m: &SlackMessage) -> Vec<String> {
        m.blocks
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_slack_digest_of_sixty_is_fifty_blocks_listing_the_first_and_counting_the_rest() {
        let members: Vec<_> = (0..60).map(|i| member(i, "x < 0 & y > \"1\"")).collect();
        let m = slack(&members, 1 << 20);
        let blocks = m.blocks.as_array().unwrap();
        assert_eq!(blocks.len(), SLACK_MAX_BLOCKS);
        assert_eq!(
            blocks[0]["text"]["text"],
            ":x: Flyte: 60 executions FAILED in flytesnacks/development"
        );
        assert_eq!(
            m.text,
            "Flyte: 60 executions FAILED in flytesnacks/development"
        );
        let sections = section_texts(&m);
        assert_eq!(sections.len(), SLACK_LISTED);
        assert_eq!(
            sections[0],
            "`flytesnacks/development/run-0` FAILED\n```x &lt; 0 &amp; y &gt; \"1\"```"
        );
        assert_eq!(
            blocks[1]["accessory"]["url"],
            "https://flyte.example.com/console/projects/flytesnacks/domains/development/\
             executions/run-0"
        );
        assert!(sections[SLACK_LISTED - 1].contains("run-47"));
        let last = blocks.last().unwrap();
        assert_eq!(last["type"], "context");
        assert_eq!(
            last["elements"][0]["text"],
            "…and 12 more (60 executions in this digest)"
        );
    }

    #[test]
    fn a_small_slack_digest_lists_everyone_and_counts_nothing_more() {
        let members: Vec<_> = (0..3).map(|i| member(i, "boom")).collect();
        let m = slack(&members, 1 << 20);
        let blocks = m.blocks.as_array().unwrap();
        assert_eq!(blocks.len(), 4);
        assert!(blocks.iter().all(|b| b["type"] != "context"));
    }

    #[test]
    fn every_section_stays_within_slack_limits_and_the_message_within_max_rendered_bytes() {
        let long = "<!channel> & ".repeat(1000);
        let members: Vec<_> = (0..SLACK_LISTED + 5).map(|i| member(i, &long)).collect();
        let max = 20_000;
        let m = slack(&members, max);
        let blocks = m.blocks.as_array().unwrap();
        assert!(blocks.len() <= SLACK_MAX_BLOCKS);
        assert!(m.blocks.to_string().len() + m.text.len() <= max);
        let sections = section_texts(&m);
        assert!(!sections.is_empty() && sections.len() < SLACK_LISTED);
        for text in &sections {
            assert!(utf16_len(text) <= SLACK_SECTION_MAX, "{}", utf16_len(text));
            assert!(!text.contains(['<', '>']), "{text}");
        }
        let more = members.len() - sections.len();
        assert_eq!(
            blocks.last().unwrap()["elements"][0]["text"],
            format!(
                "…and {more} more ({} executions in this digest)",
                members.len()
            )
        );
    }
}
