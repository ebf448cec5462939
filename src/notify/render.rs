//! Turns an execution and one matching notification into the message that will be sent.
//!
//! Subject: config `emailer.subject`, else our default. Body: the notification's own `template`,
//! else config `emailer.body`, else our default HTML and text bodies. Configured and per-notification
//! templates use FlyteAdmin's `{{ var }}` substitution; values are HTML-escaped in the HTML body and
//! left as they are in the text body and subject.

use askama::Template;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::template::{self, Values, Variable};
use crate::delivery::{Channel, EmailMessage};
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

/// What one matching notification asks for.
#[derive(Debug, Clone)]
pub struct Expanded<'a> {
    pub index: u32,
    pub channel: Channel,
    pub recipients: &'a [String],
    pub template: &'a str,
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

fn identifier(id: Option<&crate::proto::flyteidl::core::Identifier>) -> String {
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

    fn console_link(&self, project: &str, domain: &str, name: &str) -> Option<String> {
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
        let values = values(execution);
        self.check_custom(&values, notification)?;
        let subject = self.subject(&values);
        let (html_body, text_body) = match self.custom_body(notification) {
            Some(t) => (
                crlf(&template::render(t, &values, escape_html)),
                crlf(&template::render(t, &values, str::to_string)),
            ),
            None => self.default_bodies(execution, &values)?,
        };
        Ok(EmailMessage {
            html_body,
            text_body,
            recipients: notification.recipients.to_vec(),
            sender: self.sender().to_string(),
            subject,
        })
    }

    /// Whether `render` would succeed, without rendering unless a body could be too large: what
    /// Enqueue checks before it accepts a notification.
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

    /// `check` for every notification of one request: the template values are built, and the
    /// built-in bodies measured, once for all of them. Returns the index and problem of each
    /// notification that would render too large.
    pub fn check_all(
        &self,
        execution: &ExecutionContext,
        notifications: &[Expanded<'_>],
    ) -> Vec<(u32, TooLarge)> {
        let values = values(execution);
        let mut default_bodies: Option<Result<(), TooLarge>> = None;
        let mut too_large = Vec::new();
        for notification in notifications {
            let checked = self.check_custom(&values, notification).and_then(|()| {
                if self.custom_body(notification).is_some() {
                    return Ok(());
                }
                default_bodies
                    .get_or_insert_with(|| self.check_default_bodies(execution, &values))
                    .clone()
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

    /// Measures the configured subject and a custom body in every form they are sent in.
    fn check_custom(&self, values: &Values, notification: &Expanded<'_>) -> Result<(), TooLarge> {
        let max = self.max_rendered_bytes;
        let fits = |part, size: usize| {
            if size > max {
                Err(TooLarge { part, size, max })
            } else {
                Ok(())
            }
        };
        if !self.subject.is_empty() {
            fits(
                "subject",
                template::rendered_len(&self.subject, values, str::len),
            )?;
        }
        if let Some(t) = self.custom_body(notification) {
            // Upper bounds: CRLF conversion adds at most one byte per line end.
            fits(
                "HTML body",
                template::rendered_len(t, values, |v| html_escaped_len(v) + line_ends(v))
                    + line_ends(t),
            )?;
            fits(
                "text body",
                template::rendered_len(t, values, |v| v.len() + line_ends(v)) + line_ends(t),
            )?;
        }
        Ok(())
    }

    fn subject(&self, values: &Values) -> String {
        let subject = if self.subject.is_empty() {
            DefaultSubject {
                project: values.get(Variable::Project),
                domain: values.get(Variable::Domain),
                name: values.get(Variable::Name),
                phase: values.get(Variable::Phase),
            }
            .render()
            .expect("the default subject template renders")
        } else {
            template::render(&self.subject, values, str::to_string)
        };
        // A header is one line: a newline from a value (an error message, say) would end it early.
        subject.trim().replace(['\r', '\n'], " ")
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
            occurred_at: execution.occurred_at.as_ref().and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            }),
            error: execution.error.as_ref(),
            console_link: self.console_link(project, domain, name),
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
