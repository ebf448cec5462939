//! Native Slack and PagerDuty messages for an execution: what their senders put on the wire,
//! rendered at send time from the stored execution context, as emails are.
//!
//! Slack: a Block Kit message (a header with the phase; a section with the execution, workflow,
//! launch plan and time; a section with the error; a button to the Flyte console) and the plain
//! `text` that notifications and clients without blocks show. The texts come from askama
//! templates (`templates/slack_*.md`) that insert nothing but `Mrkdwn` values: escaped, so that
//! no value can add a link, a mention or an `@channel`, and cut to Slack's limits. The JSON around
//! them is built by serde_json, so that no value can break it.
//!
//! PagerDuty: an Events v2 event whose dedup_key names the launch plan, so that the failures of
//! one launch plan land on one incident and a later success can resolve it.

use std::fmt;

use askama::Template;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::render::{Renderer, identifier, occurred_at};
use crate::delivery::{PagerDutyAction, PagerDutyEvent, SlackMessage};
use crate::proto::flyteidl::core::workflow_execution::Phase;
use crate::proto::flyteidl::core::{ExecutionError, Identifier};
use crate::proto::flytenotify::v1::ExecutionContext;

/// Slack's limits, in characters: a section's text, a header's, a button's URL. Lengths here are
/// counted in UTF-16 units, which is never less than characters, whichever Slack counts.
pub const SLACK_SECTION_MAX: usize = 3000;
pub const SLACK_HEADER_MAX: usize = 150;
pub const SLACK_URL_MAX: usize = 3000;
/// Ours: the fallback `text` is what a phone notification shows; Slack would take 40,000.
pub const SLACK_TEXT_MAX: usize = 3000;

/// One identifier in the details section: three of them and their labels stay within
/// `SLACK_SECTION_MAX` (a test holds this).
pub(super) const SLACK_ID_MAX: usize = 900;
const SLACK_CODE_MAX: usize = 200;
/// The error excerpt in the fallback text.
const SLACK_TEXT_ERROR_MAX: usize = 500;

/// PagerDuty's limits, in characters.
pub const PAGERDUTY_SUMMARY_MAX: usize = 1024;
pub const PAGERDUTY_DEDUP_KEY_MAX: usize = 255;
/// Ours: enough of the error for the incident page; PagerDuty takes up to 512 KB per event.
const PAGERDUTY_ERROR_MAX: usize = 4096;
const PAGERDUTY_FIELD_MAX: usize = 1024;

const CONSOLE_LINK_TEXT: &str = "View in the Flyte console";

/// Text escaped for Slack's mrkdwn (`&`, `<` and `>` as entities, which is all Slack asks for)
/// and held to a length. The Slack templates insert nothing else.
#[derive(Clone)]
pub(super) struct Mrkdwn(String);

impl Mrkdwn {
    /// `text` escaped, at most `max` UTF-16 units long.
    pub(super) fn new(text: &str, max: usize) -> Self {
        Mrkdwn(bounded(text, max, char::len_utf16, true, false))
    }

    /// As `new`, on one line: a line break in a value would end a code span and the field.
    pub(super) fn line(text: &str, max: usize) -> Self {
        Mrkdwn(bounded(text, max, char::len_utf16, true, true))
    }
}

impl fmt::Display for Mrkdwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a character counts: Slack's limits are counted here in UTF-16 units (never fewer
/// than characters, whichever Slack counts); PagerDuty's in characters.
type Measure = fn(char) -> usize;

fn one_char(_: char) -> usize {
    1
}

/// `text` (escaped for mrkdwn when `escape`; line breaks as spaces when `one_line`) in at most
/// `max` units of `measure`. When it does not fit it is cut between characters, never inside an
/// entity, and ends with "…". Reads no more of `text` than fits.
fn bounded(text: &str, max: usize, measure: Measure, escape: bool, one_line: bool) -> String {
    let mut out = String::new();
    let mut used = 0;
    // The longest prefix that leaves room for the "…".
    let mut room_for_ellipsis = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let piece: &str = match c {
            '&' if escape => "&amp;",
            '<' if escape => "&lt;",
            '>' if escape => "&gt;",
            '\r' | '\n' if one_line => " ",
            c => c.encode_utf8(&mut buf),
        };
        let units: usize = piece.chars().map(measure).sum();
        if used + units > max {
            out.truncate(room_for_ellipsis);
            out.push('…');
            return out;
        }
        out.push_str(piece);
        used += units;
        if used < max {
            room_for_ellipsis = out.len();
        }
    }
    out
}

pub(super) fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Plain text for Slack (a header) in at most `max` UTF-16 units, on one line.
pub(super) fn slack_plain(text: &str, max: usize) -> String {
    bounded(text, max, char::len_utf16, false, true)
}

/// `text` cut to at most `max` characters, with "…" when cut; on one line when `one_line`.
fn cut_chars(text: &str, max: usize, one_line: bool) -> String {
    bounded(text, max, one_char, false, one_line)
}

#[derive(Template)]
#[template(path = "slack_details.md")]
struct SlackDetails {
    execution: Mrkdwn,
    workflow: Option<Mrkdwn>,
    launch_plan: Option<Mrkdwn>,
    occurred_at: Option<Mrkdwn>,
}

#[derive(Template)]
#[template(path = "slack_error.md")]
struct SlackError {
    code: Option<Mrkdwn>,
    message: Option<Mrkdwn>,
}

#[derive(Template)]
#[template(path = "slack_text.md")]
struct SlackText {
    execution: Mrkdwn,
    phase: Mrkdwn,
    error: Option<Mrkdwn>,
}

/// What both renderers read from an execution.
struct Facts<'a> {
    /// `project/domain/name`
    execution: String,
    /// The execution's name alone.
    name: &'a str,
    phase: Option<Phase>,
    workflow: String,
    launch_plan: String,
    occurred_at: Option<String>,
    error: Option<&'a ExecutionError>,
    console_link: Option<String>,
    /// A deadline's alert: how long the execution had been in its phase ("2h").
    still_running_after: Option<String>,
}

impl<'a> Facts<'a> {
    fn of(renderer: &Renderer, execution: &'a ExecutionContext) -> Self {
        let (project, domain, name) = execution
            .execution_id
            .as_ref()
            .map(|id| (id.project.as_str(), id.domain.as_str(), id.name.as_str()))
            .unwrap_or_default();
        Facts {
            execution: format!("{project}/{domain}/{name}"),
            name,
            phase: Phase::try_from(execution.phase).ok(),
            workflow: identifier(execution.workflow.as_ref()),
            launch_plan: identifier(execution.launch_plan.as_ref()),
            occurred_at: occurred_at(execution),
            error: execution.error.as_ref(),
            console_link: renderer.console_link(project, domain, name),
            still_running_after: super::render::still_running_after(execution),
        }
    }

    /// "FAILED", or on a deadline's alert "still RUNNING after 2h": as PagerDuty's summary says.
    fn status_name(&self) -> String {
        match &self.still_running_after {
            Some(after) => format!("still {} after {after}", self.phase_name()),
            None => self.phase_name(),
        }
    }

    /// "failed", or "still running after 2h": as a sentence says it.
    fn status_words(&self) -> String {
        match &self.still_running_after {
            Some(after) => format!("still {} after {after}", self.phase_words()),
            None => self.phase_words(),
        }
    }

    /// "FAILED", "TIMED_OUT": as PagerDuty's summary and details show it.
    fn phase_name(&self) -> String {
        match self.phase {
            Some(p) => p.as_str_name().to_string(),
            None => "UNKNOWN_PHASE".into(),
        }
    }

    /// "failed", "timed out": as a sentence says it.
    fn phase_words(&self) -> String {
        self.phase_name().to_lowercase().replace('_', " ")
    }

    fn error_message(&self) -> Option<&'a str> {
        self.error
            .map(|e| e.message.as_str())
            .filter(|m| !m.trim().is_empty())
    }
}

fn non_empty(text: &str, f: impl FnOnce(&str) -> Mrkdwn) -> Option<Mrkdwn> {
    (!text.is_empty()).then(|| f(text))
}

pub(super) fn slack_icon(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Succeeded) => ":white_check_mark:",
        Some(Phase::Failed) => ":x:",
        Some(Phase::TimedOut) => ":hourglass:",
        Some(Phase::Aborted) => ":no_entry_sign:",
        // A deadline's alert: still going.
        Some(
            Phase::Queued | Phase::Running | Phase::Succeeding | Phase::Failing | Phase::Aborting,
        ) => ":hourglass_flowing_sand:",
        _ => ":grey_question:",
    }
}

/// The Slack message for `execution`: Block Kit blocks and the fallback text, each within
/// Slack's limits whatever the execution holds.
pub fn slack_message(
    renderer: &Renderer,
    execution: &ExecutionContext,
    recipients: &[String],
) -> SlackMessage {
    if let Some(e) = super::render::expectation_facts(renderer, execution) {
        return expectation_slack(&e, recipients);
    }
    let facts = Facts::of(renderer, execution);
    // plain_text: shown as written, so only its length and line breaks matter.
    let header = slack_plain(
        &format!(
            "{} Flyte execution {} {}",
            slack_icon(facts.phase),
            facts.name,
            facts.status_words()
        ),
        SLACK_HEADER_MAX,
    );
    let details = SlackDetails {
        execution: Mrkdwn::line(&facts.execution, SLACK_ID_MAX),
        workflow: non_empty(&facts.workflow, |w| Mrkdwn::line(w, SLACK_ID_MAX)),
        launch_plan: non_empty(&facts.launch_plan, |l| Mrkdwn::line(l, SLACK_ID_MAX)),
        occurred_at: facts
            .occurred_at
            .as_deref()
            .and_then(|at| non_empty(at, |at| Mrkdwn::line(at, 64))),
    }
    .render()
    .expect("the Slack details template renders");
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": details.trim()}}),
    ];
    if let Some(error) = slack_error(&facts) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": error}}));
    }
    // A longer URL would make Slack refuse the whole message (invalid_blocks); the details
    // still name the execution.
    if let Some(link) = facts
        .console_link
        .as_deref()
        .filter(|l| utf16_len(l) <= SLACK_URL_MAX)
    {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": CONSOLE_LINK_TEXT},
                "url": link,
            }],
        }));
    }
    let text = SlackText {
        execution: Mrkdwn::line(&facts.execution, SLACK_TEXT_MAX / 3),
        phase: Mrkdwn::line(&facts.status_words(), 64),
        error: facts
            .error_message()
            .map(|m| Mrkdwn::line(m.trim(), SLACK_TEXT_ERROR_MAX)),
    }
    .render()
    .expect("the Slack text template renders");
    SlackMessage {
        recipients: recipients.to_vec(),
        text: text.trim().to_string(),
        blocks: Value::Array(blocks),
    }
}

/// A missed schedule, or its recovery, as one Slack message.
fn expectation_slack(e: &super::render::ExpectationFacts, recipients: &[String]) -> SlackMessage {
    let icon = if e.recovered {
        ":white_check_mark:"
    } else {
        ":calendar:"
    };
    let headline = e.headline();
    let header = slack_plain(&format!("{icon} {headline}"), SLACK_HEADER_MAX);
    let last = match &e.last_success {
        Some(at) => format!("*Last success:* {}", Mrkdwn::line(at, 64)),
        None => format!(
            "*Last success:* none since {}",
            Mrkdwn::line(&e.watched_since, 64)
        ),
    };
    let details = format!(
        "*Launch plan:* {}\n*Expected:* a success every {} (grace {})\n{last}",
        Mrkdwn::line(&e.launch_plan, SLACK_ID_MAX),
        Mrkdwn::line(&e.every, 64),
        Mrkdwn::line(&e.grace, 64),
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": details}}),
    ];
    if let Some(link) = e.link.as_deref().filter(|l| utf16_len(l) <= SLACK_URL_MAX) {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "View the launch plan"},
                "url": link,
            }],
        }));
    }
    SlackMessage {
        recipients: recipients.to_vec(),
        text: Mrkdwn::line(&headline, SLACK_TEXT_MAX).to_string(),
        blocks: Value::Array(blocks),
    }
}

/// The error section: the code, and as much of the message as fits in one section.
fn slack_error(facts: &Facts<'_>) -> Option<String> {
    let error = facts.error?;
    let code = non_empty(error.code.trim(), |c| Mrkdwn::line(c, SLACK_CODE_MAX));
    let message = facts.error_message();
    if code.is_none() && message.is_none() {
        return None;
    }
    let render = |message: Option<Mrkdwn>| {
        SlackError {
            code: code.clone(),
            message,
        }
        .render()
        .expect("the Slack error template renders")
    };
    // The template around an empty message is what the message must leave room for.
    let frame = utf16_len(render(message.map(|_| Mrkdwn(String::new()))).trim());
    let budget = SLACK_SECTION_MAX.saturating_sub(frame);
    let text = render(message.map(|m| Mrkdwn::new(m.trim_end(), budget)));
    Some(text.trim().to_string())
}

/// Path segments of a dedup_key: a `/` or `%` inside a name is encoded, so that two different
/// launch plans can never make the same key.
const KEY_SEGMENT: &AsciiSet = &CONTROLS.add(b'/').add(b'%');

/// The incident an execution belongs to: its launch plan's, else its workflow's, else its own.
/// Versions are left out, so a new version's failures land on the same incident. Keys longer
/// than PagerDuty takes become a digest of the same text.
fn dedup_key(execution: &ExecutionContext) -> String {
    let named = |id: &Option<Identifier>| {
        id.as_ref().filter(|id| !id.name.is_empty()).map(|id| {
            (
                id.org.clone(),
                [id.project.clone(), id.domain.clone(), id.name.clone()],
            )
        })
    };
    let (kind, (org, parts)) = if let Some(lp) = named(&execution.launch_plan) {
        ("launch_plan", lp)
    } else if let Some(wf) = named(&execution.workflow) {
        ("workflow", wf)
    } else {
        let id = execution.execution_id.clone().unwrap_or_default();
        ("execution", (id.org, [id.project, id.domain, id.name]))
    };
    let mut key = String::from("flyte/");
    if !org.is_empty() {
        key.push_str("org/");
        key.extend(utf8_percent_encode(&org, KEY_SEGMENT));
        key.push('/');
    }
    key.push_str(kind);
    for part in &parts {
        key.push('/');
        key.extend(utf8_percent_encode(part, KEY_SEGMENT));
    }
    if key.chars().count() <= PAGERDUTY_DEDUP_KEY_MAX {
        return key;
    }
    let digest: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("flyte/{kind}/sha256:{digest}")
}

/// FAILED is an error. TIMED_OUT is one too: the run produced nothing, like a failure, and a
/// stuck run needs someone as much as a crashed one. ABORTED is a warning: usually someone
/// stopped it on purpose.
fn severity(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Aborted) => "warning",
        Some(Phase::Succeeded) => "info",
        _ => "error",
    }
}

/// The PagerDuty event for `execution`: a resolve when it SUCCEEDED (the core sends one only when
/// `resolveOnSuccess` is set), else a trigger; both with the launch plan's dedup_key.
pub fn pagerduty_event(
    renderer: &Renderer,
    execution: &ExecutionContext,
    recipients: &[String],
) -> PagerDutyEvent {
    let facts = Facts::of(renderer, execution);
    let phase = facts.phase_name();
    let expectation = super::render::expectation_facts(renderer, execution);
    let mut summary = match &expectation {
        Some(e) => e.headline(),
        None => format!(
            "Flyte execution {} {}",
            facts.execution,
            facts.status_name()
        ),
    };
    if let Some(message) = facts.error_message() {
        summary.push_str(": ");
        summary.push_str(message.trim());
    }
    let summary = cut_chars(&summary, PAGERDUTY_SUMMARY_MAX, true);

    let mut details = serde_json::Map::new();
    let mut detail = |key: &str, value: &str, max: usize| {
        if !value.is_empty() {
            details.insert(key.into(), Value::String(cut_chars(value, max, false)));
        }
    };
    if let Some(e) = &expectation {
        // About a launch plan: no execution, no phase.
        detail("launch_plan", &e.launch_plan, PAGERDUTY_FIELD_MAX);
        detail("expected_every", &e.every, PAGERDUTY_FIELD_MAX);
        detail("grace", &e.grace, PAGERDUTY_FIELD_MAX);
        detail(
            "last_success_at",
            e.last_success.as_deref().unwrap_or(""),
            PAGERDUTY_FIELD_MAX,
        );
        detail("watched_since", &e.watched_since, PAGERDUTY_FIELD_MAX);
    } else {
        detail("execution", &facts.execution, PAGERDUTY_FIELD_MAX);
        detail("phase", &phase, PAGERDUTY_FIELD_MAX);
    }
    detail(
        "still_running_after",
        facts.still_running_after.as_deref().unwrap_or(""),
        PAGERDUTY_FIELD_MAX,
    );
    detail("workflow", &facts.workflow, PAGERDUTY_FIELD_MAX);
    detail("launch_plan", &facts.launch_plan, PAGERDUTY_FIELD_MAX);
    detail(
        "occurred_at",
        facts.occurred_at.as_deref().unwrap_or(""),
        PAGERDUTY_FIELD_MAX,
    );
    if let Some(error) = facts.error {
        detail("error_code", &error.code, PAGERDUTY_FIELD_MAX);
        detail("error_message", &error.message, PAGERDUTY_ERROR_MAX);
        detail("error_uri", &error.error_uri, PAGERDUTY_ERROR_MAX);
    }

    // The affected system, in Flyte's terms: the workflow that failed, else the project and
    // domain it ran in.
    let source = match (&execution.workflow, &execution.execution_id) {
        (Some(w), _) if !w.name.is_empty() => format!("{}/{}/{}", w.project, w.domain, w.name),
        (_, Some(id)) => format!("{}/{}", id.project, id.domain),
        (_, None) => String::new(),
    };

    PagerDutyEvent {
        recipients: recipients.to_vec(),
        action: if facts.phase == Some(Phase::Succeeded) {
            PagerDutyAction::Resolve
        } else {
            PagerDutyAction::Trigger
        },
        dedup_key: dedup_key(execution),
        summary,
        severity: severity(facts.phase).into(),
        source: cut_chars(&source, PAGERDUTY_FIELD_MAX, true),
        custom_details: Value::Object(details),
        links: facts
            .console_link
            .into_iter()
            .map(|href| (href, CONSOLE_LINK_TEXT.to_string()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::flyteidl::core::{ResourceType, WorkflowExecutionIdentifier};

    fn renderer(console_url: &str) -> Renderer {
        Renderer {
            subject: String::new(),
            body: String::new(),
            sender: String::new(),
            console_url: console_url.into(),
            max_rendered_bytes: 1 << 20,
        }
    }

    fn id(kind: ResourceType, name: &str, version: &str) -> Option<Identifier> {
        Some(Identifier {
            resource_type: kind as i32,
            project: "flytesnacks".into(),
            domain: "development".into(),
            name: name.into(),
            version: version.into(),
            org: String::new(),
        })
    }

    fn execution(name: &str, phase: Phase) -> ExecutionContext {
        ExecutionContext {
            execution_id: Some(WorkflowExecutionIdentifier {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: name.into(),
                org: String::new(),
            }),
            launch_plan: id(ResourceType::LaunchPlan, "lp.daily", "v7"),
            workflow: id(ResourceType::Workflow, "wf.train", "v3"),
            phase: phase as i32,
            error: Some(ExecutionError {
                code: "USER:ValueError".into(),
                message: "x < 0 & y > \"1\"".into(),
                ..Default::default()
            }),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_795_755_600,
                nanos: 0,
            }),
            still_running_after: None,
            expectation: None,
        }
    }

    fn recipients() -> Vec<String> {
        vec!["#ml-alerts".into()]
    }

    /// Every mrkdwn text of a message: the fallback and the sections.
    fn mrkdwn_texts(m: &SlackMessage) -> Vec<String> {
        let mut texts = vec![m.text.clone()];
        for block in m.blocks.as_array().unwrap() {
            if block["text"]["type"] == "mrkdwn" {
                texts.push(block["text"]["text"].as_str().unwrap().to_string());
            }
        }
        texts
    }

    /// No markup but ours: no `<` or `>` at all (links, mentions and `<!channel>` all need
    /// them), and every `&` starts one of the three entities.
    fn assert_inert(text: &str) {
        assert!(!text.contains(['<', '>']), "{text}");
        for (i, _) in text.match_indices('&') {
            let rest = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "a broken entity at {i}: {text}"
            );
        }
    }

    #[test]
    fn the_slack_message_shows_the_execution_its_error_and_the_console() {
        let m = slack_message(
            &renderer("https://flyte.example.com/console"),
            &execution("exec-1", Phase::Failed),
            &recipients(),
        );
        assert_eq!(m.recipients, recipients());
        assert_eq!(
            m.text,
            "Flyte execution flytesnacks/development/exec-1 failed: x &lt; 0 &amp; y &gt; \"1\""
        );
        assert_eq!(
            m.blocks,
            json!([
                {"type": "header", "text": {
                    "type": "plain_text",
                    "text": ":x: Flyte execution exec-1 failed",
                    "emoji": true,
                }},
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*Execution:* `flytesnacks/development/exec-1`\n\
                     *Workflow:* `flytesnacks/development/wf.train@v3`\n\
                     *Launch plan:* `flytesnacks/development/lp.daily@v7`\n\
                     *Reached at:* 2026-11-27 05:00:00 UTC"}},
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*Error* `USER:ValueError`\n```x &lt; 0 &amp; y &gt; \"1\"```"}},
                {"type": "actions", "elements": [{
                    "type": "button",
                    "text": {"type": "plain_text", "text": "View in the Flyte console"},
                    "url": "https://flyte.example.com/console/projects/flytesnacks/domains/\
                            development/executions/exec-1",
                }]},
            ])
        );
    }

    #[test]
    fn a_success_without_error_workflow_or_console_is_short() {
        let mut e = execution("exec-2", Phase::Succeeded);
        e.error = None;
        e.workflow = None;
        e.launch_plan = None;
        e.occurred_at = None;
        let m = slack_message(&renderer(""), &e, &recipients());
        assert_eq!(
            m.text,
            "Flyte execution flytesnacks/development/exec-2 succeeded"
        );
        assert_eq!(
            m.blocks,
            json!([
                {"type": "header", "text": {
                    "type": "plain_text",
                    "text": ":white_check_mark: Flyte execution exec-2 succeeded",
                    "emoji": true,
                }},
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*Execution:* `flytesnacks/development/exec-2`"}},
            ])
        );
    }

    #[test]
    fn values_can_neither_break_the_json_nor_add_markup() {
        let mut e = execution("run<https://evil.example|click>&\"\nnext", Phase::TimedOut);
        e.error = Some(ExecutionError {
            code: "USER:<b>".into(),
            message: "boom <!channel> & <@U123> \"quoted\"\nline 2 &amp;".into(),
            ..Default::default()
        });
        e.workflow = id(ResourceType::Workflow, "wf<x>", "v\n1");
        let m = slack_message(&renderer("https://c.example"), &e, &recipients());
        let wire = serde_json::to_string(&json!({"text": m.text, "blocks": m.blocks})).unwrap();
        let back: Value = serde_json::from_str(&wire).unwrap();
        assert_eq!(back["blocks"], m.blocks);
        for text in mrkdwn_texts(&m) {
            assert_inert(&text);
        }
        let details = mrkdwn_texts(&m)[1].clone();
        assert!(
            details.contains(
                "`flytesnacks/development/run&lt;https://evil.example|click&gt;&amp;\" next`"
            ),
            "{details}"
        );
        // A value's line break would end its code span early; the error keeps its lines.
        assert!(
            details.contains("`flytesnacks/development/wf&lt;x&gt;@v 1`"),
            "{details}"
        );
        let error = mrkdwn_texts(&m)[2].clone();
        assert_eq!(
            error,
            "*Error* `USER:&lt;b&gt;`\n```boom &lt;!channel&gt; &amp; &lt;@U123&gt; \"quoted\"\n\
             line 2 &amp;amp;```"
        );
        // A header is plain text: shown as written, on one line.
        assert_eq!(m.blocks[0]["text"]["type"], "plain_text");
        assert!(!m.blocks[0]["text"]["text"].as_str().unwrap().contains('\n'));
        // The console link is percent-encoded by the renderer: it cannot leave the console.
        assert!(
            m.blocks[3]["elements"][0]["url"]
                .as_str()
                .unwrap()
                .starts_with("https://c.example/projects/flytesnacks/domains/development/executions/run%3Chttps:%2F%2F"),
            "{}",
            m.blocks[3]
        );
    }

    #[test]
    fn the_largest_values_stay_within_slacks_limits() {
        // `<` is escaped the longest in the URL (%3C), `&` in mrkdwn (&amp;).
        let lt = "<".repeat(512);
        let big = "&".repeat(512);
        let mut e = execution(&lt, Phase::Failed);
        e.execution_id.as_mut().unwrap().project = lt.clone();
        e.execution_id.as_mut().unwrap().domain = lt.clone();
        for id in [
            e.workflow.as_mut().unwrap(),
            e.launch_plan.as_mut().unwrap(),
        ] {
            id.project = big.clone();
            id.domain = big.clone();
            id.name = big.clone();
            id.version = big.clone();
        }
        e.error = Some(ExecutionError {
            code: "<".repeat(1024),
            // 256 KiB, multi-byte and astral characters among the escapes.
            message: "é<😀&".repeat(256 * 1024 / 8),
            ..Default::default()
        });
        let m = slack_message(&renderer("https://c.example"), &e, &recipients());
        let blocks = m.blocks.as_array().unwrap();
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(
            utf16_len(header) <= SLACK_HEADER_MAX,
            "{}",
            utf16_len(header)
        );
        assert!(header.ends_with('…'));
        for text in mrkdwn_texts(&m) {
            assert!(
                utf16_len(&text) <= SLACK_SECTION_MAX,
                "{}",
                utf16_len(&text)
            );
            assert_inert(&text);
        }
        assert!(utf16_len(&m.text) <= SLACK_TEXT_MAX);
        // The error fills its section to the limit, and still closes its code block.
        let error = blocks[2]["text"]["text"].as_str().unwrap();
        assert!(
            utf16_len(error) > SLACK_SECTION_MAX - 10,
            "{}",
            utf16_len(error)
        );
        assert!(error.ends_with("…```"), "{}", &error[error.len() - 20..]);
        // Over 3000 characters of URL: no button rather than a message Slack refuses.
        assert_eq!(blocks.len(), 3, "{:?}", blocks.last());
    }

    #[test]
    fn bounded_cuts_between_characters_and_never_inside_an_entity() {
        assert_eq!(Mrkdwn::new("a<b", 10).0, "a&lt;b");
        assert_eq!(Mrkdwn::new("a<b", 6).0, "a&lt;b");
        assert_eq!(Mrkdwn::new("a<b", 5).0, "a…");
        assert_eq!(Mrkdwn::new("a\nb", 5).0, "a\nb");
        assert_eq!(Mrkdwn::line("a\r\nb", 5).0, "a  b");
        assert_eq!(Mrkdwn::line("", 3).0, "");
        assert_eq!(slack_plain("abcdef", 4), "abc…");
        // An astral character is two UTF-16 units to Slack, one character to PagerDuty.
        assert_eq!(slack_plain("😀😀😀", 4), "😀…");
        assert_eq!(cut_chars("😀😀😀", 2, false), "😀…");
        assert_eq!(cut_chars("😀😀", 2, false), "😀😀");
    }

    #[test]
    fn one_launch_plan_is_one_incident_whatever_the_execution_or_version() {
        let key = dedup_key(&execution("exec-1", Phase::Failed));
        assert_eq!(key, "flyte/launch_plan/flytesnacks/development/lp.daily");
        let mut later = execution("exec-2", Phase::TimedOut);
        later.launch_plan.as_mut().unwrap().version = "v8".into();
        later.workflow.as_mut().unwrap().name = "wf.other".into();
        assert_eq!(dedup_key(&later), key);
        let resolve = pagerduty_event(
            &renderer(""),
            &execution("exec-3", Phase::Succeeded),
            &recipients(),
        );
        assert_eq!(resolve.dedup_key, key);
        assert_eq!(resolve.action, PagerDutyAction::Resolve);

        let mut other = execution("exec-1", Phase::Failed);
        other.launch_plan.as_mut().unwrap().name = "lp.hourly".into();
        assert_ne!(dedup_key(&other), key);
        let mut org = execution("exec-1", Phase::Failed);
        org.launch_plan.as_mut().unwrap().org = "acme".into();
        assert_eq!(
            dedup_key(&org),
            "flyte/org/acme/launch_plan/flytesnacks/development/lp.daily"
        );
    }

    #[test]
    fn without_a_launch_plan_the_workflow_then_the_execution_names_the_incident() {
        let mut e = execution("exec-1", Phase::Failed);
        e.launch_plan = None;
        assert_eq!(
            dedup_key(&e),
            "flyte/workflow/flytesnacks/development/wf.train"
        );
        e.workflow.as_mut().unwrap().name.clear();
        assert_eq!(
            dedup_key(&e),
            "flyte/execution/flytesnacks/development/exec-1"
        );
        // A `/` in a name cannot make two ids one key.
        e.execution_id.as_mut().unwrap().name = "a/b%".into();
        assert_eq!(
            dedup_key(&e),
            "flyte/execution/flytesnacks/development/a%2Fb%25"
        );
        e.execution_id.as_mut().unwrap().name = "n".repeat(512);
        let long = dedup_key(&e);
        assert!(long.starts_with("flyte/execution/sha256:"), "{long}");
        assert!(long.len() <= PAGERDUTY_DEDUP_KEY_MAX);
        assert_eq!(long, dedup_key(&e));
    }

    #[test]
    fn the_pagerduty_event_summarizes_and_details_the_failure() {
        let e = pagerduty_event(
            &renderer("https://flyte.example.com/console/"),
            &execution("exec-1", Phase::Failed),
            &recipients(),
        );
        assert_eq!(
            e,
            PagerDutyEvent {
                recipients: recipients(),
                action: PagerDutyAction::Trigger,
                dedup_key: "flyte/launch_plan/flytesnacks/development/lp.daily".into(),
                summary: "Flyte execution flytesnacks/development/exec-1 FAILED: x < 0 & y > \"1\""
                    .into(),
                severity: "error".into(),
                source: "flytesnacks/development/wf.train".into(),
                custom_details: json!({
                    "execution": "flytesnacks/development/exec-1",
                    "phase": "FAILED",
                    "workflow": "flytesnacks/development/wf.train@v3",
                    "launch_plan": "flytesnacks/development/lp.daily@v7",
                    "occurred_at": "2026-11-27 05:00:00 UTC",
                    "error_code": "USER:ValueError",
                    "error_message": "x < 0 & y > \"1\"",
                }),
                links: vec![(
                    "https://flyte.example.com/console/projects/flytesnacks/domains/development/\
                     executions/exec-1"
                        .into(),
                    "View in the Flyte console".into()
                )],
            }
        );
        let severity = |p| pagerduty_event(&renderer(""), &execution("e", p), &[]).severity;
        assert_eq!(severity(Phase::TimedOut), "error");
        assert_eq!(severity(Phase::Aborted), "warning");
    }

    #[test]
    fn the_summary_is_one_line_within_pagerdutys_limit() {
        let mut e = execution("exec-1", Phase::Failed);
        e.error.as_mut().unwrap().message = "Traceback:\n".to_string() + &"é😀".repeat(3000);
        let event = pagerduty_event(&renderer(""), &e, &recipients());
        assert_eq!(event.summary.chars().count(), PAGERDUTY_SUMMARY_MAX);
        assert!(event.summary.ends_with('…'));
        assert!(
            event.summary.starts_with(
                "Flyte execution flytesnacks/development/exec-1 FAILED: Traceback: é😀"
            ),
            "{}",
            event.summary
        );
        let message = event.custom_details["error_message"].as_str().unwrap();
        assert_eq!(message.chars().count(), PAGERDUTY_ERROR_MAX);
        assert!(message.starts_with("Traceback:\n"));
    }

    #[test]
    fn a_deadline_alert_says_how_long_the_run_has_been_going() {
        let mut stuck = execution("train-42", Phase::Running);
        stuck.error = None;
        stuck.still_running_after = Some(prost_types::Duration {
            seconds: 7200,
            nanos: 0,
        });
        let slack = slack_message(&renderer(""), &stuck, &recipients());
        assert_eq!(
            slack.text,
            "Flyte execution flytesnacks/development/train-42 still running after 2h"
        );
        let header = slack.blocks[0]["text"]["text"].as_str().unwrap();
        assert_eq!(
            header,
            ":hourglass_flowing_sand: Flyte execution train-42 still running after 2h"
        );
        let event = pagerduty_event(&renderer(""), &stuck, &["oncall@acme.pagerduty.com".into()]);
        assert_eq!(
            event.summary,
            "Flyte execution flytesnacks/development/train-42 still RUNNING after 2h"
        );
        assert_eq!(event.action, PagerDutyAction::Trigger);
        assert_eq!(event.custom_details["still_running_after"], "2h");
        assert_eq!(event.custom_details["phase"], "RUNNING");
        // The same incident as the run's failure would open: one page, not two.
        let failed = pagerduty_event(
            &renderer(""),
            &execution("train-42", Phase::Failed),
            &["oncall@acme.pagerduty.com".into()],
        );
        assert_eq!(event.dedup_key, failed.dedup_key);
    }

    #[test]
    fn a_missed_schedule_is_about_the_launch_plan() {
        let alert = |recovered| ExecutionContext {
            execution_id: None,
            launch_plan: id(ResourceType::LaunchPlan, "lp.daily", ""),
            phase: if recovered {
                Phase::Succeeded as i32
            } else {
                Phase::Failed as i32
            },
            expectation: Some(crate::proto::flytenotify::v1::ExpectationAlert {
                launch_plan: "flytesnacks/development/lp.daily".into(),
                every: Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                grace: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                last_success_at: Some(prost_types::Timestamp {
                    seconds: 1_795_755_600,
                    nanos: 0,
                }),
                watched_since: Some(prost_types::Timestamp {
                    seconds: 1_795_000_000,
                    nanos: 0,
                }),
                recovered,
            }),
            ..Default::default()
        };
        let slack = slack_message(
            &renderer("https://flyte.example.com/console"),
            &alert(false),
            &recipients(),
        );
        assert_eq!(
            slack.text,
            "Flyte launch plan flytesnacks/development/lp.daily missed its schedule (a success every 1day)"
        );
        let details = slack.blocks[1]["text"]["text"].as_str().unwrap();
        assert!(
            details.contains("*Expected:* a success every 1day (grace 1h)"),
            "{details}"
        );
        assert!(
            details.contains("*Last success:* 2026-11-27 05:00:00 UTC"),
            "{details}"
        );
        assert_eq!(
            slack.blocks[2]["elements"][0]["url"],
            "https://flyte.example.com/console/projects/flytesnacks/domains/development/launchPlans/lp.daily"
        );
        let missed = pagerduty_event(
            &renderer(""),
            &alert(false),
            &["pd@acme.pagerduty.com".into()],
        );
        let recovered = pagerduty_event(
            &renderer(""),
            &alert(true),
            &["pd@acme.pagerduty.com".into()],
        );
        assert_eq!(missed.action, PagerDutyAction::Trigger);
        assert_eq!(recovered.action, PagerDutyAction::Resolve);
        assert_eq!(missed.dedup_key, recovered.dedup_key);
        assert_eq!(
            missed.custom_details["launch_plan"],
            "flytesnacks/development/lp.daily"
        );
        assert!(missed.custom_details.get("execution").is_none());
        assert_eq!(
            recovered.summary,
            "Flyte launch plan flytesnacks/development/lp.daily succeeded again"
        );
    }
}
