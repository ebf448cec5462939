//! A stored Flyte 2 delivery as it goes on the wire: its templates rendered with the event's
//! variables, each value escaped for where it lands (text, HTML, JSON), every output bounded.
//! The one rendering path of the worker, Preview and Enqueue's size check.

use std::borrow::Cow;

use serde_json::json;

use crate::delivery::{
    Channel, EmailMessage, Flyte2EmailContent, Flyte2Event, Flyte2Message, Flyte2Spec,
    ProviderTemplate, Rendered, WebhookRequest,
};

use super::super::html_text;
use super::super::render::{Renderer, escape_html};
use super::event::{Flyte2EventExt, VariablesOf, phase_name};
use super::rules::body_escape;
use super::template::{self, Escape};

/// What the SDK puts in the HTML template of an `Email` that has no HTML body: not a body to
/// send, but the absence of one.
pub const SDK_NO_HTML_BODY: &str = "No HTML body";

fn fill(event: &Flyte2Event, text: &str, escape: Escape, max: usize) -> Result<String, String> {
    template::render_with(text, |name| event.lookup(name), escape, max).map_err(|e| match e {
        template::TemplateError::TooLarge { max_bytes } => {
            format!("the rendered text would exceed {max_bytes} bytes (limits.maxRenderedBytes)")
        }
        other => other.to_string(),
    })
}

/// A subject is one header line: line breaks from a value or the template become spaces.
fn one_line(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace("\r\n", " ").replace(['\r', '\n'], " ")
    } else {
        text
    }
}

/// The JSON body a webhook without a body template gets: every variable of the event.
pub fn built_in_body(event: &Flyte2Event) -> serde_json::Value {
    let mut body = json!({
        "event": if event.paused.is_some() { "action_paused" } else { "run_completed" },
        "run": {
            "org": event.org,
            "project": event.project,
            "domain": event.domain,
            "name": event.name,
            "url": event.run_url,
        },
        "phase": phase_name(event.phase),
        "timestamp": event.lookup("Run.Timestamp").unwrap_or(Cow::Borrowed("")),
    });
    if !event.error.is_empty() {
        body["error"] = json!(event.error);
    }
    if let Some(ms) = event.duration_ms {
        body["duration_ms"] = json!(ms);
    }
    if !event.task_name.is_empty() {
        body["task"] = json!(event.task_name);
    }
    if event.still_running_after_ms.is_some() {
        body["still_running_after"] = json!(event.deadline_text());
    }
    if let Some(p) = &event.paused {
        body["action"] = json!(p.action);
        body["prompt"] = json!(p.prompt);
        body["description"] = json!(p.description);
        body["prompt_type"] = json!(p.prompt_type);
    }
    body
}

/// What `spec` sends by a `wire` sender.
pub fn render(
    renderer: &Renderer,
    wire: Channel,
    spec: &Flyte2Spec,
    recipients: &[String],
) -> Result<Rendered, String> {
    let max = renderer.max_rendered_bytes;
    let event = &spec.event;
    match &spec.message {
        Flyte2Message::Email {
            to,
            cc,
            bcc,
            content,
        } => {
            if wire != Channel::Email {
                return Err(format!("a Flyte 2 email cannot go as {wire}"));
            }
            match content {
                Flyte2EmailContent::Inline {
                    subject,
                    text,
                    html,
                } => {
                    let mut subject = one_line(
                        fill(event, subject, Escape::Text, max)
                            .map_err(|e| format!("subject: {e}"))?,
                    );
                    // A deadline's alert says so first, whatever the rule's own subject says.
                    if event.still_running_after_ms.is_some() {
                        subject =
                            format!("Still running after {}: {subject}", event.deadline_text());
                    }
                    let html = if html == SDK_NO_HTML_BODY {
                        ""
                    } else {
                        html.as_str()
                    };
                    let text_body = if text.is_empty() {
                        String::new()
                    } else {
                        fill(event, text, Escape::Text, max).map_err(|e| format!("text: {e}"))?
                    };
                    let html_body = if html.is_empty() {
                        // A text-only email still gets an HTML part: the same text, escaped,
                        // its line breaks kept.
                        let escaped = escape_html(&text_body);
                        if escaped.len() + 64 > max {
                            return Err(format!(
                                "html: the rendered text would exceed {max} bytes"
                            ));
                        }
                        format!(
                            "<pre style=\"font-family: inherit; white-space: pre-wrap\">{escaped}</pre>"
                        )
                    } else {
                        fill(event, html, Escape::Html, max).map_err(|e| format!("html: {e}"))?
                    };
                    let text_body = if text_body.is_empty() {
                        html_text::to_text(&html_body)
                    } else {
                        text_body
                    };
                    Ok(Rendered::Email(EmailMessage {
                        recipients: to.clone(),
                        cc: cc.clone(),
                        bcc: bcc.clone(),
                        sender: renderer.sender().to_string(),
                        subject,
                        html_body,
                        text_body,
                        provider_template: None,
                    }))
                }
                Flyte2EmailContent::Provider { template_id, data } => {
                    // The provider fills its own template: each value is text (the provider
                    // escapes it for its HTML), bounded like any rendered part.
                    // Together, not each: the values share one maxRenderedBytes.
                    let mut values = std::collections::BTreeMap::new();
                    let mut left = max;
                    for (key, value) in data {
                        let filled = fill(event, value, Escape::Text, left)
                            .map_err(|e| format!("template_data[{key:?}]: {e}"))?;
                        left = left.saturating_sub(filled.len() + key.len());
                        values.insert(key.clone(), filled);
                    }
                    Ok(Rendered::Email(EmailMessage {
                        recipients: to.clone(),
                        cc: cc.clone(),
                        bcc: bcc.clone(),
                        sender: renderer.sender().to_string(),
                        subject: String::new(),
                        html_body: String::new(),
                        text_body: String::new(),
                        provider_template: Some(ProviderTemplate {
                            template_id: template_id.clone(),
                            data: values,
                        }),
                    }))
                }
            }
        }
        Flyte2Message::Webhook {
            target,
            method,
            headers,
            body_template,
            flavor,
        } => {
            if !matches!(wire, Channel::Webhook | Channel::Teams) {
                return Err(format!("a Flyte 2 webhook cannot go as {wire}"));
            }
            let body = if body_template.is_empty() {
                built_in_body(event).to_string()
            } else {
                let escape = body_escape(headers)?;
                fill(event, body_template, escape, max)
                    .map_err(|e| format!("body_template: {e}"))?
            };
            if body.len() > max {
                return Err(format!("the body would exceed {max} bytes"));
            }
            let mut headers = headers.clone();
            if body_template.is_empty()
                && !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
            Ok(Rendered::Webhook(WebhookRequest {
                recipients: recipients.to_vec(),
                target: target.clone(),
                method: method.clone(),
                headers,
                body,
                timeout: None,
                flavor: *flavor,
            }))
        }
    }
}
