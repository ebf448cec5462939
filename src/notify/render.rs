//! Turns an execution and one matching notification into the message that will be sent.
//!
//! Subject: config `emailer.subject`, else our default. Body: the notification's own `template`,
//! else config `emailer.body`, else our default HTML and text bodies. Configured and per-notification
//! templates use FlyteAdmin's `{{ var }}` substitution; values are HTML-escaped in the HTML body and
//! left as they are in the text body and subject. When the body template is HTML, the text body is
//! made from the rendered HTML (`html_text`), so that the text part never shows markup.

use std::collections::HashMap;

use askama::Template;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::html_text;
use super::template::{self, Values, Variable};
use crate::delivery::{Channel, EmailMessage, RenderedEmail};
use crate::proto::flyteidl::core::{ExecutionError, workflow_execution::Phase};
use crate::proto::flytenotify::v1::ExecutionContext;

/// What may not stand raw in a URL path segment (RFC 3986): everything but unreserved characters
/// and the few sub-delimiters that are harmless there.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Used when `emailer.sender` is empty.
pub const DEFAULT_SENDER: &str = "flyte-notify@localhost";

#[derive(Debug, Clone)]
pub struct Renderer {
    pub subject: String,
    pub body: String,
    pub sender: String,
    pub console_url: String,
    /// The largest subject or body sent (`limits.maxRenderedBytes`).
    pub max_rendered_bytes: usize,
}

/// One delivery a matching notification asks for: all its recipients, or (for Slack and
/// PagerDuty with routes) the ones on one route, or the ones on none.
#[derive(Debug, Clone)]
pub struct Expanded<'a> {
    pub index: u32,
    pub channel: Channel,
    pub recipients: std::borrow::Cow<'a, [String]>,
    pub template: &'a str,
    /// Sent by the channel's native sender (a routed Slack or PagerDuty group); otherwise it is
    /// an email, also for Slack and PagerDuty, as FlyteAdmin sends them.
    pub native: bool,
    /// The route of a native group (its index among the channel's routes).
    pub route: Option<usize>,
}

#[derive(Template)]
#[template(path = "subject.txt")]
struct DefaultSubject<'a> {
    project: &'a str,
    domain: &'a str,
    name: &'a str,
    phase: &'a str,
}

#[derive(Template)]
#[template(path = "email.txt")]
struct DefaultText<'a> {
    d: &'a DefaultBody<'a>,
}

#[derive(Template)]
#[template(path = "email.html")]
struct DefaultHtml<'a> {
    d: &'a DefaultBody<'a>,
}

/// The fields both default bodies show. The templates reach them through `d`; askama's
/// derive cannot share one struct between two templates otherwise.
struct DefaultBody<'a> {
    project: &'a str,
    domain: &'a str,
    name: &'a str,
    phase: &'a str,
    workflow: String,
    launch_plan: String,
    occurred_at: Option<String>,
    error: Option<&'a ExecutionError>,
    console_link: Option<String>,
    /// A deadline's alert: how long the execution had been in its phase ("2h").
    still_running_after: Option<String>,
}

/// What a missed-schedule alert, or its recovery, shows.
pub(crate) struct ExpectationFacts {
    /// `project/domain/name`
    pub launch_plan: String,
    pub project: String,
    pub domain: String,
    pub name: String,
    pub every: String,
    pub grace: String,
    pub last_success: Option<String>,
    pub watched_since: String,
    pub recovered: bool,
    /// The launch plan's page in the Flyte console, when `consoleUrl` is set.
    pub link: Option<String>,
}

impl ExpectationFacts {
    /// "Flyte launch plan p/d/n missed its schedule (a success every 24h)", or "... succeeded
    /// again".
    pub fn headline(&self) -> String {
        if self.recovered {
            format!("Flyte launch plan {} succeeded again", self.launch_plan)
        } else {
            format!(
                "Flyte launch plan {} missed its schedule (a success every {})",
                self.launch_plan, self.every
            )
        }
    }
}

#[derive(Template)]
#[template(path = "expectation.txt")]
struct ExpectationText<'a> {
    e: &'a ExpectationFacts,
}

#[derive(Template)]
#[template(path = "expectation.html")]
struct ExpectationHtml<'a> {
    e: &'a ExpectationFacts,
}

fn show_time(t: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn show_duration(d: Option<&prost_types::Duration>) -> String {
    d.and_then(|d| std::time::Duration::try_from(*d).ok())
        .map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_else(|| "0s".into())
}

/// On a missed-schedule alert (ExecutionContext.expectation), what it is about.
pub(crate) fn expectation_facts(
    renderer: &Renderer,
    execution: &ExecutionContext,
) -> Option<ExpectationFacts> {
    let alert = execution.expectation.as_ref()?;
    let mut parts = alert.launch_plan.splitn(3, '/');
    let (project, domain, name) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let link = (!renderer.console_url.is_empty()).then(|| {
        let segment = |s: &str| utf8_percent_encode(s, PATH_SEGMENT).to_string();
        format!(
            "{}/projects/{}/domains/{}/launchPlans/{}",
            renderer.console_url.trim_end_matches('/'),
            segment(&project),
            segment(&domain),
            segment(&name),
        )
    });
    Some(ExpectationFacts {
        launch_plan: alert.launch_plan.clone(),
        project,
        domain,
        name,
        every: show_duration(alert.every.as_ref()),
        grace: show_duration(alert.grace.as_ref()),
        last_success: alert.last_success_at.as_ref().map(show_time),
        watched_since: alert
            .watched_since
            .as_ref()
            .map(show_time)
            .unwrap_or_default(),
        recovered: alert.recovered,
        link,
    })
}

/// On a deadline's alert (ExecutionContext.still_running_after), how long the execution had been
/// in its phase, as people write it: "2h", "1h 30m", "3s".
pub fn still_running_after(execution: &ExecutionContext) -> Option<String> {
    let after = execution.still_running_after.as_ref()?;
    let after = std::time::Duration::try_from(*after).ok()?;
    Some(humantime::format_duration(after).to_string())
}

/// FlyteAdmin's phase names: the enum's name in lower case.
pub fn phase_name(phase: i32) -> String {
    Phase::try_from(phase)
        .map(|p| p.as_str_name().to_ascii_lowercase())
        .unwrap_or_else(|_| format!("phase_{phase}"))
}

/// The 13 variables for `execution`, exactly as FlyteAdmin fills them.
pub fn values(execution: &ExecutionContext) -> Values {
    let mut v = Values::default();
    if let Some(id) = &execution.execution_id {
        v.set(Variable::Project, &id.project);
        v.set(Variable::Domain, &id.domain);
        v.set(Variable::Name, &id.name);
    }
    v.set(Variable::Phase, phase_name(execution.phase));
    if let Some(error) = &execution.error {
        v.set(
            Variable::Error,
            format!(" The execution failed with error: [{}].", error.message),
        );
    }
    if let Some(wf) = &execution.workflow {
        v.set(Variable::WorkflowProject, &wf.project);
        v.set(Variable::WorkflowDomain, &wf.domain);
        v.set(Variable::WorkflowName, &wf.name);
        v.set(Variable::WorkflowVersion, &wf.version);
    }
    if let Some(lp) = &execution.launch_plan {
        v.set(Variable::LaunchPlanProject, &lp.project);
        v.set(Variable::LaunchPlanDomain, &lp.domain);
        v.set(Variable::LaunchPlanName, &lp.name);
        v.set(Variable::LaunchPlanVersion, &lp.version);
    }
    v
}

/// Askama's own HTML escaping, so values in configured templates are escaped exactly like the
/// values in our default template.
pub fn escape_html(s: &str) -> String {
    match askama::filters::escape(s, askama::filters::Html) {
        Ok(safe) => safe.to_string(),
        Err(never) => match never {},
    }
}

/// Email bodies travel with CRLF line ends (RFC 5322), and mail encoders convert bare LF on the
/// way out. Rendering CRLF here keeps what Preview shows and what the mailbox holds identical.
fn crlf(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 32);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                out.push_str("\r\n");
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// When the execution reached its phase, as messages show it.
pub(crate) fn occurred_at(execution: &ExecutionContext) -> Option<String> {
    let t = execution.occurred_at.as_ref()?;
    chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// `project/domain/name@version`, or empty when there is no name: how messages show a workflow
/// or launch plan.
pub(crate) fn identifier(id: Option<&crate::proto::flyteidl::core::Identifier>) -> String {
    match id {
        Some(id) if !id.name.is_empty() => {
            let mut s = format!("{}/{}/{}", id.project, id.domain, id.name);
            if !id.version.is_empty() {
                s.push('@');
                s.push_str(&id.version);
            }
            s
        }
        _ => String::new(),
    }
}

impl Renderer {
    pub fn sender(&self) -> &str {
        if self.sender.is_empty() {
            DEFAULT_SENDER
        } else {
            &self.sender
        }
    }

    /// The console link of `execution`, when `consoleUrl` is set.
    pub fn console_link_for(&self, execution: &ExecutionContext) -> Option<String> {
        let id = execution.execution_id.as_ref()?;
        self.console_link(&id.project, &id.domain, &id.name)
    }

    /// The execution's page in the Flyte console, when `console_url` is set.
    pub(crate) fn console_link(&self, project: &str, domain: &str, name: &str) -> Option<String> {
        if self.console_url.is_empty() {
            return None;
        }
        // Execution fields are caller input: each goes in as one encoded path segment, so a
        // name with `/`, `?` or `#` cannot point the link somewhere else.
        let segment = |s| utf8_percent_encode(s, PATH_SEGMENT).to_string();
        Some(format!(
            "{}/projects/{}/domains/{}/executions/{}",
            self.console_url.trim_end_matches('/'),
            segment(project),
            segment(domain),
            segment(name),
        ))
    }

    /// The email for one matching notification: what Preview shows and what an email sender
    /// sends. Refused when a part would exceed `max_rendered_bytes`; measured before it is built,
    /// so a template that would expand to gigabytes costs no more than reading it.
    pub fn render(
        &self,
        execution: &ExecutionContext,
        notification: &Expanded<'_>,
    ) -> Result<EmailMessage, TooLarge> {
        // A missed schedule is about a launch plan, not an execution: its own built-in message.
        if let Some(facts) = expectation_facts(self, execution) {
            let html = crlf(
                &ExpectationHtml { e: &facts }
                    .render()
                    .expect("the expectation HTML template renders"),
            );
            let text = crlf(
                &ExpectationText { e: &facts }
                    .render()
                    .expect("the expectation text template renders"),
            );
            return Ok(EmailMessage {
                html_body: html,
                text_body: text,
                recipients: notification.recipients.to_vec(),
                cc: Vec::new(),
                bcc: Vec::new(),
                provider_template: None,
                sender: self.sender().to_string(),
                subject: one_line(&facts.headline()),
            });
        }
        let values = values(execution);
        // A deadline's alert is not the phase notification the configured subject and body (or
        // the notification's template) were written for: it always has the built-in ones.
        let stuck = still_running_after(execution);
        let (subject, (html_body, text_body)) = match &stuck {
            Some(after) => (
                self.default_subject(&values, Some(after)),
                self.default_bodies(execution, &values)?,
            ),
            None => {
                self.check_subject(&values)?;
                let subject = self.subject(&values);
                let bodies = match self.custom_body(notification) {
                    Some(t) => self.custom_bodies(t, &values)?,
                    None => self.default_bodies(execution, &values)?,
                };
                (subject, bodies)
            }
        };
        Ok(EmailMessage {
            html_body,
            text_body,
            recipients: notification.recipients.to_vec(),
            cc: Vec::new(),
            bcc: Vec::new(),
            provider_template: None,
            sender: self.sender().to_string(),
            subject,
        })
    }

    /// An email that arrived rendered (FlyteAdmin's, from a cloud queue) as it goes out. Its body
    /// is sent as the HTML part, as FlyteAdmin does; the text part is made from it, which
    /// FlyteAdmin leaves out. An empty sender falls back to the configured one.
    pub fn as_sent(
        &self,
        email: &RenderedEmail,
        recipients: &[String],
    ) -> Result<EmailMessage, TooLarge> {
        let max = self.max_rendered_bytes;
        // Check the input before converting it: html2text's work grows with its input.
        for (part, size) in [
            ("subject", email.subject.len()),
            ("HTML body", email.body.len()),
        ] {
            if size > max {
                return Err(TooLarge { part, size, max });
            }
        }
        let text_body = if html_text::is_html(&email.body) {
            html_text::to_text(&email.body)
        } else {
            email.body.clone()
        };
        if text_body.len() > max {
            return Err(TooLarge {
                part: "text body",
                size: text_body.len(),
                max,
            });
        }
        let sender = if email.sender.trim().is_empty() {
            self.sender().to_string()
        } else {
            email.sender.clone()
        };
        Ok(EmailMessage {
            html_body: crlf(&email.body),
            text_body: crlf(&text_body),
            recipients: recipients.to_vec(),
            cc: Vec::new(),
            bcc: Vec::new(),
            provider_template: None,
            sender,
            subject: email.subject.trim().replace(['\r', '\n'], " "),
        })
    }

    /// Whether `render` would succeed: what Enqueue checks before it accepts a notification.
    /// Nothing is rendered but a built-in body that could be too large and an HTML body template,
    /// whose text part can only be measured by making it.
    pub fn check(
        &self,
        execution: &ExecutionContext,
        notification: &Expanded<'_>,
    ) -> Result<(), TooLarge> {
        match self
            .check_all(execution, std::slice::from_ref(notification))
            .pop()
        {
            Some((_, too_large)) => Err(too_large),
            None => Ok(()),
        }
    }

    /// `check` for every notification of one request: the template values are built, the
    /// subject and built-in bodies measured, and each distinct body template measured, once for
    /// all of them (an HTML one is rendered to measure its text part; most notifications share
    /// the configured body). Returns the index and problem of each notification that would
    /// render too large.
    pub fn check_all(
        &self,
        execution: &ExecutionContext,
        notifications: &[Expanded<'_>],
    ) -> Vec<(u32, TooLarge)> {
        let values = values(execution);
        let subject = self.check_subject(&values);
        let mut default_bodies: Option<Result<(), TooLarge>> = None;
        let mut custom_bodies: HashMap<&str, Result<(), TooLarge>> = HashMap::new();
        let mut too_large = Vec::new();
        for notification in notifications {
            if notification.native {
                // Slack and PagerDuty messages are cut to their services' limits, never refused.
                continue;
            }
            let checked = subject
                .clone()
                .and_then(|()| match self.custom_body(notification) {
                    Some(t) => custom_bodies
                        .entry(t)
                        .or_insert_with(|| self.check_custom_body(t, &values))
                        .clone(),
                    None => default_bodies
                        .get_or_insert_with(|| self.check_default_bodies(execution, &values))
                        .clone(),
                });
            if let Err(e) = checked {
                too_large.push((notification.index, e));
            }
        }
        too_large
    }

    fn check_default_bodies(
        &self,
        execution: &ExecutionContext,
        values: &Values,
    ) -> Result<(), TooLarge> {
        // The built-in bodies use each value at most twice, escaped at most five-fold, plus a few
        // KiB of markup: only when that bound is over the limit are they rendered to measure them.
        let inputs: usize = Variable::ALL
            .iter()
            .map(|v| values.get(*v).len())
            .sum::<usize>()
            + execution
                .error
                .as_ref()
                .map_or(0, |e| e.code.len() + e.message.len())
            + self.console_url.len();
        if DEFAULT_BODY_MARKUP + 2 * 6 * inputs > self.max_rendered_bytes {
            self.default_bodies(execution, values)?;
        }
        Ok(())
    }

    fn custom_body<'a>(&'a self, notification: &Expanded<'a>) -> Option<&'a str> {
        [notification.template, self.body.as_str()]
            .into_iter()
            .find(|t| !t.is_empty())
    }

    fn fits(&self, part: &'static str, size: usize) -> Result<(), TooLarge> {
        let max = self.max_rendered_bytes;
        if size > max {
            Err(TooLarge { part, size, max })
        } else {
            Ok(())
        }
    }

    /// Measures the configured subject without rendering it.
    fn check_subject(&self, values: &Values) -> Result<(), TooLarge> {
        if self.subject.is_empty() {
            return Ok(());
        }
        self.fits(
            "subject",
            template::rendered_len(&self.subject, values, str::len),
        )
    }

    /// Whether `custom_bodies` would succeed: upper bounds for a plain-text template; an HTML
    /// one is rendered, since how long html2text makes the text part is not bounded by the
    /// HTML's length (table cells are padded to their column, nested lists indent every line).
    fn check_custom_body(&self, t: &str, values: &Values) -> Result<(), TooLarge> {
        if html_text::is_html(t) {
            return self.custom_bodies(t, values).map(drop);
        }
        self.fits("HTML body", html_body_bound(t, values))?;
        self.fits("text body", text_body_bound(t, values))
    }

    /// The HTML and text bodies for a custom template. Each is refused by its upper bound before
    /// it is rendered, so a template that would expand to gigabytes costs no more than reading
    /// it; the text part made from HTML is measured exactly, from an HTML body within the limit.
    fn custom_bodies(&self, t: &str, values: &Values) -> Result<(String, String), TooLarge> {
        let is_html = html_text::is_html(t);
        self.fits("HTML body", html_body_bound(t, values))?;
        if !is_html {
            self.fits("text body", text_body_bound(t, values))?;
        }
        let html = crlf(&template::render(t, values, escape_html));
        let text = if is_html {
            let text = crlf(&html_text::to_text(&html));
            self.fits("text body", text.len())?;
            text
        } else {
            crlf(&template::render(t, values, str::to_string))
        };
        Ok((html, text))
    }

    fn subject(&self, values: &Values) -> String {
        if self.subject.is_empty() {
            return self.default_subject(values, None);
        }
        one_line(&template::render(&self.subject, values, str::to_string))
    }

    /// The built-in subject: "Flyte execution p/d/n failed", or on a deadline's alert "... still
    /// running after 2h".
    fn default_subject(&self, values: &Values, still_running_after: Option<&str>) -> String {
        let phase = match still_running_after {
            Some(after) => format!("still {} after {after}", values.get(Variable::Phase)),
            None => values.get(Variable::Phase).to_string(),
        };
        one_line(
            &DefaultSubject {
                project: values.get(Variable::Project),
                domain: values.get(Variable::Domain),
                name: values.get(Variable::Name),
                phase: &phase,
            }
            .render()
            .expect("the default subject template renders"),
        )
    }

    fn default_bodies(
        &self,
        execution: &ExecutionContext,
        values: &Values,
    ) -> Result<(String, String), TooLarge> {
        let project = values.get(Variable::Project);
        let domain = values.get(Variable::Domain);
        let name = values.get(Variable::Name);
        let body = DefaultBody {
            project,
            domain,
            name,
            phase: values.get(Variable::Phase),
            workflow: identifier(execution.workflow.as_ref()),
            launch_plan: identifier(execution.launch_plan.as_ref()),
            occurred_at: occurred_at(execution),
            error: execution.error.as_ref(),
            console_link: self.console_link(project, domain, name),
            still_running_after: still_running_after(execution),
        };
        let html = crlf(
            &DefaultHtml { d: &body }
                .render()
                .expect("the default HTML template renders"),
        );
        let text = crlf(
            &DefaultText { d: &body }
                .render()
                .expect("the default text template renders"),
        );
        let max = self.max_rendered_bytes;
        for (part, size) in [("HTML body", html.len()), ("text body", text.len())] {
            if size > max {
                return Err(TooLarge { part, size, max });
            }
        }
        Ok((html, text))
    }
}

/// A header is one line: a newline from a value (an error message, say) would end it early.
fn one_line(subject: &str) -> String {
    subject.trim().replace(['\r', '\n'], " ")
}

/// At least the length of `crlf(template::render(t, values, escape_html))`: CRLF conversion adds
/// at most one byte per line end.
fn html_body_bound(t: &str, values: &Values) -> usize {
    template::rendered_len(t, values, |v| html_escaped_len(v) + line_ends(v)) + line_ends(t)
}

/// At least the length of `crlf(template::render(t, values, str::to_string))`.
fn text_body_bound(t: &str, values: &Values) -> usize {
    template::rendered_len(t, values, |v| v.len() + line_ends(v)) + line_ends(t)
}

/// Markup of the built-in bodies beyond the values they show: a generous bound.
const DEFAULT_BODY_MARKUP: usize = 8 * 1024;

/// A part of a message would be larger than the configured maximum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its {part} would be {size} bytes; at most {max} are sent (limits.maxRenderedBytes)")]
pub struct TooLarge {
    pub part: &'static str,
    pub size: usize,
    pub max: usize,
}

/// The length of `escape_html(s)`: askama writes each of `<>&"'` as a five-byte `&#NN;`.
pub fn html_escaped_len(s: &str) -> usize {
    s.len()
        + 4 * s
            .bytes()
            .filter(|b| matches!(b, b'<' | b'>' | b'&' | b'"' | b'\''))
            .count()
}

fn line_ends(s: &str) -> usize {
    s.bytes().filter(|b| matches!(b, b'\n' | b'\r')).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::flyteidl::core::WorkflowExecutionIdentifier;

    /// FlyteAdmin's usual `notifications.emailer.body`: an HTML page linking the console.
    const FLYTEADMIN_BODY: &str = "<html><body>Execution <a href=\"https://console.example.com/\
        {{ project }}/{{ domain }}/{{ name }}\">{{ name }}</a> has {{ phase }}.{{ error }}\
        </body></html>";

    fn renderer(body: &str, max_rendered_bytes: usize) -> Renderer {
        Renderer {
            subject: String::new(),
            body: body.into(),
            sender: String::new(),
            console_url: String::new(),
            max_rendered_bytes,
        }
    }

    fn execution() -> ExecutionContext {
        ExecutionContext {
            execution_id: Some(WorkflowExecutionIdentifier {
                project: "p".into(),
                domain: "d".into(),
                name: "exec-1".into(),
                org: String::new(),
            }),
            phase: Phase::Failed as i32,
            error: Some(ExecutionError {
                message: "x < 0 & y > \"1\"".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn email(template: &str) -> Expanded<'_> {
        Expanded {
            index: 0,
            channel: Channel::Email,
            recipients: std::borrow::Cow::Borrowed(&[]),
            template,
            native: false,
            route: None,
        }
    }

    /// Whether `text` has anything that reads as markup: `<` before a name, `/` or `!`.
    fn has_tag(text: &str) -> bool {
        text.as_bytes()
            .windows(2)
            .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || matches!(w[1], b'/' | b'!')))
    }

    #[test]
    fn an_html_body_gives_a_text_part_with_the_links_url_and_no_markup() {
        let message = renderer(FLYTEADMIN_BODY, 1 << 20)
            .render(&execution(), &email(""))
            .unwrap();
        assert_eq!(
            message.text_body,
            "Execution exec-1 (https://console.example.com/p/d/exec-1) has failed. \
             The execution failed with error: [x < 0 & y > \"1\"]."
        );
        assert!(!has_tag(&message.text_body), "{}", message.text_body);
        assert_eq!(
            message.html_body,
            "<html><body>Execution <a href=\"https://console.example.com/p/d/exec-1\">exec-1</a> \
             has failed. The execution failed with error: [x &#60; 0 &#38; y &#62; &#34;1&#34;].\
             </body></html>"
        );
        // A notification's own template is made into text the same way.
        let message = renderer("", 1 << 20)
            .render(
                &execution(),
                &email(
                    "<p>{{ name }}</p><p><a href=\"https://c.example/{{ name }}\">console</a></p>",
                ),
            )
            .unwrap();
        assert_eq!(
            message.text_body,
            "exec-1\r\n\r\nconsole (https://c.example/exec-1)"
        );
    }

    #[test]
    fn a_plain_text_body_is_sent_as_written() {
        let body = "Execution {{ name }} has {{ phase }}.{{ error }}\nSee <https://c.example/>.";
        let message = renderer(body, 1 << 20)
            .render(&execution(), &email(""))
            .unwrap();
        assert_eq!(
            message.text_body,
            "Execution exec-1 has failed. The execution failed with error: [x < 0 & y > \"1\"].\
             \r\nSee <https://c.example/>."
        );
    }

    #[test]
    fn the_text_part_made_from_html_is_held_to_the_limit() {
        // Quoted lines grow in text ("> > > x" per `x<br>`), so the text part outgrows the HTML.
        let body = format!(
            "{}{}{}",
            "<blockquote>".repeat(3),
            "x<br>".repeat(100),
            "</blockquote>".repeat(3)
        );
        let full = renderer(&body, 1 << 20)
            .render(&execution(), &email(""))
            .unwrap();
        assert!(full.text_body.len() > full.html_body.len());
        assert!(full.text_body.starts_with("> > > x\r\n> > > x\r\n"));

        let limited = renderer(&body, full.html_body.len());
        let too_large = TooLarge {
            part: "text body",
            size: full.text_body.len(),
            max: full.html_body.len(),
        };
        assert_eq!(
            limited.check(&execution(), &email("")),
            Err(too_large.clone())
        );
        assert_eq!(
            limited.render(&execution(), &email("")).err(),
            Some(too_large)
        );
        let exact = renderer(&body, full.text_body.len());
        assert_eq!(exact.check(&execution(), &email("")), Ok(()));
        assert!(exact.render(&execution(), &email("")).is_ok());
    }

    #[test]
    fn the_built_in_email_has_no_empty_table_and_shows_when_the_phase_was_reached() {
        let bare = renderer("", 1 << 20)
            .render(&execution(), &email(""))
            .unwrap();
        assert!(!bare.html_body.contains("<table"), "{}", bare.html_body);
        assert!(!bare.html_body.contains("<tr"), "{}", bare.html_body);
        assert!(!bare.text_body.contains("Reached at"), "{}", bare.text_body);

        let mut at = execution();
        at.occurred_at = Some(prost_types::Timestamp {
            seconds: 1_795_755_600,
            nanos: 0,
        });
        let message = renderer("", 1 << 20).render(&at, &email("")).unwrap();
        assert!(
            message
                .html_body
                .contains("<td style=\"padding-right: 1em; color: #666;\">Reached at</td><td>2026-11-27 05:00:00 UTC</td>"),
            "{}",
            message.html_body
        );
        assert!(
            message
                .text_body
                .contains("\r\n\r\nReached at:  2026-11-27 05:00:00 UTC\r\n"),
            "{}",
            message.text_body
        );
    }
}
