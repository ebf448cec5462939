//! A webhook notification as it is accepted (`webhook_spec`, `validate_spec`) and as it goes out
//! (`webhook_request`): its method, headers and body, rendered from the execution.
//!
//! The body is the notification's `body_template` with FlyteAdmin's `{{ var }}` variables. The
//! template is the author's; the values are the execution's, which anyone who can name an
//! execution or raise an error controls. So each value is escaped for the body's type: in a
//! JSON body (no Content-Type, or a JSON one) it is escaped as JSON string content, including
//! `<`, `>`, `&` and the two line separators JavaScript chokes on, so that a quote, a backslash,
//! a newline or `</script>` in an error message can neither end the string nor the page the
//! JSON may be embedded in; in a form body it is percent-encoded. The template must therefore
//! put each variable inside a JSON string, and one that does not render to JSON is refused.
//!
//! An empty template gives the built-in body, shaped as Standard Webhooks suggests:
//! `{"type": "flyte.execution.<phase>", "timestamp": <occurred_at>, "data": {execution_id,
//! phase, workflow, launch_plan, error, occurred_at, console_link}}`, fields left out when the
//! execution has none. GET and HEAD have no built-in body.
//!
//! A digest (a destination's `grouping`) is one POST whose built-in body lists its members:
//! `{"type": "flyte.executions.digest", "data": {"count", "executions": [data, ...], "more"}}`.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::render;
use super::template::{self, Values, Variable};
use crate::channels::webhook::rules;
use crate::delivery::{WebhookRequest, WebhookSpec, WebhookTarget};
use crate::proto::flyteidl::core::Identifier;
use crate::proto::flyteidl::core::workflow_execution::Phase;
use crate::proto::flytenotify::v1::{ExecutionContext, HttpMethod, WebhookNotification};

/// The longest a webhook may take per attempt.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// What is wrong with a webhook, field by field: `(path relative to the webhook, why)`, e.g.
/// `("headers[\"X-A\"]", "...")`. The caller prefixes its own path (`webhooks[0].`).
pub type Violations = Vec<(String, String)>;

/// How values are escaped, from the body's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Other,
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl BodyKind {
    fn of(headers: &[(String, String)]) -> Self {
        let content_type = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        let Some((_, value)) = content_type else {
            return BodyKind::Json;
        };
        let media = value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media == "application/json" || media.ends_with("+json") {
            BodyKind::Json
        } else if media == "application/x-www-form-urlencoded" {
            BodyKind::Form
        } else {
            BodyKind::Other
        }
    }

    fn escape(self, value: &str) -> String {
        match self {
            BodyKind::Json => json_escape(value),
            BodyKind::Form => utf8_percent_encode(value, FORM_VALUE).to_string(),
            BodyKind::Other => value.to_string(),
        }
    }

    fn escaped_len(self, value: &str) -> usize {
        match self {
            BodyKind::Json => value.chars().map(json_escaped_char_len).sum(),
            BodyKind::Form => value
                .bytes()
                .map(|b| {
                    // What FORM_VALUE leaves as it is.
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        1
                    } else {
                        3
                    }
                })
                .sum(),
            BodyKind::Other => value.len(),
        }
    }
}

/// Whether a webhook with these headers has a JSON body (the default).
pub fn is_json(headers: &[(String, String)]) -> bool {
    BodyKind::of(headers) == BodyKind::Json
}

fn json_escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => 6,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `value` as the content of a JSON string (without the quotes around it).
pub fn json_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// serde_json's output with `<`, `>`, `&` and the line separators escaped as well: they only
/// ever stand inside strings in JSON, so replacing them everywhere changes no value.
fn harden(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

fn id_json(id: &Identifier) -> Value {
    let mut v = json!({
        "project": id.project,
        "domain": id.domain,
        "name": id.name,
        "version": id.version,
    });
    if !id.org.is_empty() {
        v["org"] = json!(id.org);
    }
    v
}

/// A missed schedule's built-in body: `flyte.launch_plan.missed` (or `.recovered`), about the
/// launch plan rather than an execution.
fn expectation_body(alert: &crate::proto::flytenotify::v1::ExpectationAlert) -> String {
    let time = |t: &prost_types::Timestamp| {
        chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    };
    let seconds = |d: Option<&prost_types::Duration>| d.map_or(0, |d| d.seconds);
    let mut data = Map::new();
    data.insert("launch_plan".into(), json!(alert.launch_plan));
    data.insert("every_seconds".into(), json!(seconds(alert.every.as_ref())));
    data.insert("grace_seconds".into(), json!(seconds(alert.grace.as_ref())));
    if let Some(at) = alert.last_success_at.as_ref().and_then(time) {
        data.insert("last_success_at".into(), json!(at));
    }
    if let Some(at) = alert.watched_since.as_ref().and_then(time) {
        data.insert("watched_since".into(), json!(at));
    }
    let kind = if alert.recovered {
        "recovered"
    } else {
        "missed"
    };
    harden(json!({"type": format!("flyte.launch_plan.{kind}"), "data": data}).to_string())
}

/// When the execution reached its phase, in RFC 3339.
fn occurred_at(execution: &ExecutionContext) -> Option<String> {
    execution.occurred_at.as_ref().and_then(|t| {
        chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    })
}

/// The built-in body's `data`: what one execution's webhook says about it, and what each
/// entry of a digest's `executions` says.
fn built_in_data(execution: &ExecutionContext, console_link: Option<String>) -> Map<String, Value> {
    let phase = Phase::try_from(execution.phase)
        .map(|p| p.as_str_name().to_string())
        .unwrap_or_else(|_| format!("PHASE_{}", execution.phase));
    let occurred_at = occurred_at(execution);
    let mut data = Map::new();
    if let Some(id) = &execution.execution_id {
        let mut v = json!({"project": id.project, "domain": id.domain, "name": id.name});
        if !id.org.is_empty() {
            v["org"] = json!(id.org);
        }
        data.insert("execution_id".into(), v);
    }
    data.insert("phase".into(), json!(phase));
    if let Some(wf) = &execution.workflow {
        data.insert("workflow".into(), id_json(wf));
    }
    if let Some(lp) = &execution.launch_plan {
        data.insert("launch_plan".into(), id_json(lp));
    }
    if let Some(error) = &execution.error {
        data.insert(
            "error".into(),
            json!({"code": error.code, "message": error.message}),
        );
    }
    if let Some(at) = &occurred_at {
        data.insert("occurred_at".into(), json!(at));
    }
    if let Some(link) = console_link {
        data.insert("console_link".into(), json!(link));
    }
    // A deadline's alert is its own event type, flyte.execution.stuck, saying how long.
    if let Some(after) = render::still_running_after(execution) {
        data.insert("still_running_after".into(), json!(after));
    }
    data
}

/// The built-in body (see the module doc).
fn built_in_body(execution: &ExecutionContext, console_link: Option<String>) -> String {
    if let Some(alert) = &execution.expectation {
        return expectation_body(alert);
    }
    let occurred_at = occurred_at(execution);
    let data = built_in_data(execution, console_link);
    let stuck = render::still_running_after(execution);
    let kind = match stuck {
        Some(_) => "stuck".to_string(),
        None => render::phase_name(execution.phase),
    };
    let mut body = Map::new();
    body.insert("type".into(), json!(format!("flyte.execution.{kind}")));
    if let Some(at) = occurred_at {
        body.insert("timestamp".into(), json!(at));
    }
    body.insert("data".into(), Value::Object(data));
    harden(Value::Object(body).to_string())
}

/// The event type of a digest's built-in body.
pub const DIGEST_TYPE: &str = "flyte.executions.digest";

/// A digest's body: `{"type": "flyte.executions.digest", "data": {"count": N, "executions":
/// [...], "more": K}}`, each entry the `data` of that execution's own built-in body, in the
/// members' order. Entries that would take the body over `max_bytes` are left out, and `more`
/// (present only then) says how many.
pub fn digest_body(
    executions: &[(ExecutionContext, Option<String>)],
    max_bytes: usize,
) -> Result<String, String> {
    let count = executions.len();
    let head = format!(r#"{{"type":"{DIGEST_TYPE}","data":{{"count":{count},"executions":["#);
    let tail = |more: usize| {
        if more == 0 {
            "]}}".to_string()
        } else {
            format!(r#"],"more":{more}}}}}"#)
        }
    };
    // Room for the longest tail, whatever is left out.
    let frame = head.len() + tail(count).len();
    if frame > max_bytes {
        return Err(too_large(frame, max_bytes));
    }
    let mut body = head;
    let mut used = frame;
    let mut listed = 0;
    for (execution, link) in executions {
        let entry = harden(Value::Object(built_in_data(execution, link.clone())).to_string());
        let size = entry.len() + usize::from(listed > 0);
        if used + size > max_bytes {
            break;
        }
        if listed > 0 {
            body.push(',');
        }
        body.push_str(&entry);
        used += size;
        listed += 1;
    }
    body.push_str(&tail(count - listed));
    Ok(body)
}

fn too_large(size: usize, max: usize) -> String {
    format!("its body would be {size} bytes; at most {max} are sent (limits.maxRenderedBytes)")
}

fn not_json(e: &serde_json::Error) -> String {
    format!(
        "the body template does not render to JSON ({e}); put each {{{{ var }}}} inside a JSON \
         string, or set a Content-Type header that is not JSON"
    )
}

/// The template rendered with `values`, each escaped for the body's kind; refused when it would
/// exceed `max_bytes` (measured before it is made) or, for JSON, does not parse.
fn render_body(
    template: &str,
    values: &Values,
    kind: BodyKind,
    max_bytes: usize,
) -> Result<String, String> {
    let size = template::rendered_len(template, values, |v| kind.escaped_len(v));
    if size > max_bytes {
        return Err(too_large(size, max_bytes));
    }
    let body = template::render(template, values, |v| kind.escape(v));
    if kind == BodyKind::Json {
        serde_json::from_str::<serde::de::IgnoredAny>(&body).map_err(|e| not_json(&e))?;
    }
    Ok(body)
}

/// The request for one webhook delivery: what Preview shows and what the sender sends (it adds
/// the destination's URL, headers and signature). Refused when the body would exceed
/// `max_bytes` or a JSON body template does not render to JSON.
pub fn webhook_request(
    execution: &ExecutionContext,
    spec: &WebhookSpec,
    recipients: &[String],
    console_link: Option<String>,
    max_bytes: usize,
) -> Result<WebhookRequest, String> {
    let body = if spec.body_template.is_empty() {
        if matches!(spec.method.as_str(), "GET" | "HEAD") {
            String::new()
        } else {
            let body = built_in_body(execution, console_link);
            if body.len() > max_bytes {
                return Err(too_large(body.len(), max_bytes));
            }
            body
        }
    } else {
        render_body(
            &spec.body_template,
            &render::values(execution),
            BodyKind::of(&spec.headers),
            max_bytes,
        )?
    };
    Ok(WebhookRequest {
        recipients: recipients.to_vec(),
        target: spec.target.clone(),
        method: spec.method.clone(),
        headers: spec.headers.clone(),
        body,
        timeout: spec.timeout_ms.map(Duration::from_millis),
        flavor: crate::delivery::WebhookFlavor::Generic,
    })
}

/// A `WebhookNotification` as it is stored, or everything wrong with it. The URL is only checked
/// for presence here: whether it may be called is the SSRF policy's to say
/// (`WebhookPolicy::check_resolved`), and whether a destination exists the sender's
/// (`WebhookSender::has_destination`).
pub fn webhook_spec(
    webhook: &WebhookNotification,
    max_template_bytes: usize,
) -> Result<WebhookSpec, Violations> {
    let mut out = Violations::new();
    let target = match (webhook.url.is_empty(), webhook.destination.is_empty()) {
        (false, true) => Some(WebhookTarget::Url(webhook.url.clone())),
        (true, false) => Some(WebhookTarget::Destination(webhook.destination.clone())),
        (true, true) => {
            out.push((
                "url".into(),
                "required: a URL, or the name of a configured destination in `destination`".into(),
            ));
            None
        }
        (false, false) => {
            out.push((
                "destination".into(),
                "set either url or destination, not both".into(),
            ));
            None
        }
    };
    let method = match HttpMethod::try_from(webhook.method) {
        Ok(HttpMethod::Unspecified) => Some("POST".to_string()),
        Ok(m) => Some(
            m.as_str_name()
                .trim_start_matches("HTTP_METHOD_")
                .to_string(),
        ),
        Err(_) => {
            out.push((
                "method".into(),
                format!("{} is not an HttpMethod", webhook.method),
            ));
            None
        }
    };
    let timeout_ms = match webhook.timeout {
        None => None,
        Some(d) if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 => {
            out.push(("timeout".into(), "must be a positive duration".into()));
            None
        }
        Some(d) if d.seconds == 0 && d.nanos == 0 => None,
        Some(d) => {
            // Rounded up: a timeout of 1ns must not become none.
            let ms = (d.seconds as u64)
                .saturating_mul(1000)
                .saturating_add((d.nanos as u64).div_ceil(1_000_000));
            Some(ms)
        }
    };
    let mut headers: Vec<(String, String)> = webhook
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A proto map has no order; the stored spec (and what is sent) should not vary by run.
    headers.sort();
    // The rest is checked even when the target or method is wrong, so that a caller learns
    // everything in one round trip; the stand-ins are never returned.
    let spec = WebhookSpec {
        target: target.unwrap_or_else(|| WebhookTarget::Destination("-".into())),
        method: method.unwrap_or_else(|| "POST".into()),
        headers,
        body_template: webhook.body_template.clone(),
        timeout_ms,
    };
    out.extend(validate_spec(&spec, max_template_bytes));
    if out.is_empty() { Ok(spec) } else { Err(out) }
}

/// What Enqueue checks in a webhook besides its URL or destination: a method that delivers,
/// headers that are valid and not the server's own, a body template within
/// `max_template_bytes` whose placeholders are all substituted and which renders to JSON when
/// the body is JSON, and a timeout of at most a minute.
pub fn validate_spec(spec: &WebhookSpec, max_template_bytes: usize) -> Violations {
    let mut out = Violations::new();
    match &spec.target {
        WebhookTarget::Url(url) if url.is_empty() => out.push(("url".into(), "required".into())),
        WebhookTarget::Destination(name) if name.trim().is_empty() => {
            out.push(("destination".into(), "required".into()))
        }
        _ => {}
    }
    if let Err(e) = rules::method(&spec.method) {
        out.push(("method".into(), e));
    }
    if spec.headers.len() > rules::MAX_HEADERS {
        out.push((
            "headers".into(),
            format!(
                "{} headers; at most {}",
                spec.headers.len(),
                rules::MAX_HEADERS
            ),
        ));
    } else {
        let mut seen = std::collections::HashSet::new();
        for (name, value) in &spec.headers {
            let field = format!("headers[{name:?}]");
            if let Err(e) = rules::header(name, value) {
                out.push((field, e));
            } else if !seen.insert(name.to_ascii_lowercase()) {
                out.push((
                    field,
                    "named twice (header names are the same in any case)".into(),
                ));
            }
        }
    }
    let template = &spec.body_template;
    if template.len() > max_template_bytes {
        out.push((
            "body_template".into(),
            format!("{} bytes; at most {max_template_bytes}", template.len()),
        ));
    } else if !template.is_empty() {
        let problems = template::problems(template);
        let clean = problems.is_empty();
        out.extend(problems.into_iter().map(|p| ("body_template".into(), p)));
        if clean && is_json(&spec.headers) {
            // Any value stands for all: escaped, a value can only break the JSON where "x"
            // already does, outside a string.
            let mut sample = Values::default();
            for var in Variable::ALL {
                sample.set(var, "x");
            }
            if let Err(e) = render_body(template, &sample, BodyKind::Json, usize::MAX) {
                out.push(("body_template".into(), e));
            }
        }
    }
    if let Some(ms) = spec.timeout_ms
        && Duration::from_millis(ms) > MAX_TIMEOUT
    {
        out.push((
            "timeout".into(),
            format!(
                "{}; at most {}",
                humantime::format_duration(Duration::from_millis(ms)),
                humantime::format_duration(MAX_TIMEOUT)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::flyteidl::core::{ExecutionError, ResourceType, WorkflowExecutionIdentifier};

    /// Every value an attacker could choose holds what breaks JSON or the page around it.
    fn hostile() -> ExecutionContext {
        let evil = "a\"b\\c\nd</script><script>alert(1)</script>&\u{2028}\u{1}";
        ExecutionContext {
            execution_id: Some(WorkflowExecutionIdentifier {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: evil.into(),
                org: String::new(),
            }),
            workflow: Some(Identifier {
                resource_type: ResourceType::Workflow as i32,
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: "wf.train".into(),
                version: "v3".into(),
                org: String::new(),
            }),
            launch_plan: None,
            phase: Phase::Failed as i32,
            error: Some(ExecutionError {
                code: "USER:ValueError".into(),
                message: format!("\", \"admin\": true, \"x\": \"{evil}"),
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

    fn spec(template: &str, headers: &[(&str, &str)]) -> WebhookSpec {
        WebhookSpec {
            target: WebhookTarget::Url("https://hooks.example.com/x".into()),
            method: "POST".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body_template: template.into(),
            timeout_ms: None,
        }
    }

    fn render(template: &str, headers: &[(&str, &str)]) -> Result<String, String> {
        webhook_request(&hostile(), &spec(template, headers), &[], None, 1 << 20).map(|r| r.body)
    }

    #[test]
    fn values_cannot_break_out_of_a_json_string() {
        let body = render(
            r#"{"execution": "{{ name }}", "why": "{{ error }}", "n": 1}"#,
            &[],
        )
        .unwrap();
        let parsed: Value = serde_json::from_str(&body).unwrap();
        // Exactly the template's keys, each value exactly the execution's.
        assert_eq!(parsed.as_object().unwrap().len(), 3, "{body}");
        assert_eq!(
            parsed["execution"],
            "a\"b\\c\nd</script><script>alert(1)</script>&\u{2028}\u{1}"
        );
        assert!(parsed["why"].as_str().unwrap().contains("\"admin\": true"));
        for raw in ["</script>", "\n", "&", "\u{2028}"] {
            assert!(!body.contains(raw), "{raw:?} in {body}");
        }
    }

    #[test]
    fn a_json_template_with_a_bare_placeholder_is_refused() {
        let e = render(r#"{"n": {{ name }}}"#, &[]).unwrap_err();
        assert!(e.contains("does not render to JSON"), "{e}");
        let e = validate_spec(&spec(r#"{"n": {{ name }}}"#, &[]), 1 << 16);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "body_template");
        // With another Content-Type the template is the author's business.
        assert!(render("{{ name }}", &[("Content-Type", "text/plain")]).is_ok());
        assert!(
            validate_spec(
                &spec("{{ name }}", &[("content-type", "text/plain")]),
                1 << 16
            )
            .is_empty()
        );
    }

    #[test]
    fn other_body_types_escape_for_themselves() {
        let form = render(
            "execution={{ name }}&phase={{ phase }}",
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .unwrap();
        assert!(
            form.starts_with("execution=a%22b%5Cc%0Ad%3C%2Fscript%3E"),
            "{form}"
        );
        assert!(form.ends_with("&phase=failed"), "{form}");
        let text = render("{{ name }}", &[("Content-Type", "text/plain")]).unwrap();
        assert!(text.starts_with("a\"b\\c\nd</script>"), "{text}");
        // A JSON media type with parameters, or a +json one, is JSON.
        assert!(is_json(&[(
            "Content-Type".into(),
            "application/json; charset=utf-8".into()
        )]));
        assert!(is_json(&[(
            "content-type".into(),
            "application/cloudevents+json".into()
        )]));
        assert!(is_json(&[]));
    }

    #[test]
    fn measured_length_is_the_rendered_length() {
        let mut values = render::values(&hostile());
        values.set(Variable::Project, "\u{0}\u{1f}é漢\u{2029}<>&\"\\");
        for kind in [BodyKind::Json, BodyKind::Form, BodyKind::Other] {
            for var in Variable::ALL {
                let v = values.get(var);
                assert_eq!(kind.escaped_len(v), kind.escape(v).len(), "{kind:?} {v:?}");
            }
        }
        let e = webhook_request(
            &hostile(),
            &spec(r#"{"n": "{{ name }}{{ name }}"}"#, &[]),
            &[],
            None,
            40,
        )
        .unwrap_err();
        assert!(e.contains("at most 40 are sent"), "{e}");
    }

    #[test]
    fn the_built_in_body_is_json_with_everything_known() {
        let request = webhook_request(
            &hostile(),
            &spec("", &[]),
            &["r".into()],
            Some("https://console.example.com/x".into()),
            1 << 20,
        )
        .unwrap();
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "type": "flyte.execution.failed",
                "timestamp": "2026-11-27T05:00:00Z",
                "data": {
                    "execution_id": {
                        "project": "flytesnacks",
                        "domain": "development",
                        "name": "a\"b\\c\nd</script><script>alert(1)</script>&\u{2028}\u{1}",
                    },
                    "phase": "FAILED",
                    "workflow": {
                        "project": "flytesnacks",
                        "domain": "development",
                        "name": "wf.train",
                        "version": "v3",
                    },
                    "error": {
                        "code": "USER:ValueError",
                        "message": "\", \"admin\": true, \"x\": \"a\"b\\c\nd</script>\
                                    <script>alert(1)</script>&\u{2028}\u{1}",
                    },
                    "occurred_at": "2026-11-27T05:00:00Z",
                    "console_link": "https://console.example.com/x",
                }
            })
        );
        assert!(!request.body.contains("</script>"), "{}", request.body);
        assert_eq!(request.recipients, ["r"]);
        assert_eq!(request.method, "POST");
        // GET has no built-in body.
        let mut get = spec("", &[]);
        get.method = "GET".into();
        assert_eq!(
            webhook_request(&hostile(), &get, &[], None, 1 << 20)
                .unwrap()
                .body,
            ""
        );
        let e = webhook_request(&hostile(), &spec("", &[]), &[], None, 100).unwrap_err();
        assert!(e.contains("at most 100"), "{e}");
    }

    #[test]
    fn the_proto_becomes_a_spec_or_violations_with_paths() {
        let mut w = WebhookNotification {
            url: "https://hooks.example.com/x".into(),
            method: HttpMethod::Unspecified as i32,
            headers: [
                ("X-B".to_string(), "2".to_string()),
                ("X-A".to_string(), "1".to_string()),
            ]
            .into(),
            body_template: r#"{"n": "{{ name }}"}"#.into(),
            phases: vec![Phase::Failed as i32],
            destination: String::new(),
            timeout: Some(prost_types::Duration {
                seconds: 2,
                nanos: 500_000_001,
            }),
        };
        let s = webhook_spec(&w, 1 << 16).unwrap();
        assert_eq!(s.method, "POST");
        assert_eq!(
            s.headers,
            [
                ("X-A".to_string(), "1".to_string()),
                ("X-B".into(), "2".into())
            ]
        );
        assert_eq!(s.timeout_ms, Some(2501));
        w.method = HttpMethod::Patch as i32;
        assert_eq!(webhook_spec(&w, 1 << 16).unwrap().method, "PATCH");

        w.destination = "ops".into();
        w.method = HttpMethod::Trace as i32;
        w.headers.insert("Idempotency-Key".into(), "mine".into());
        w.headers.insert("X-Bad".into(), "a\nb".into());
        w.timeout = Some(prost_types::Duration {
            seconds: 61,
            nanos: 0,
        });
        let mut fields: Vec<String> = webhook_spec(&w, 1 << 16)
            .unwrap_err()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "destination",
                "headers[\"Idempotency-Key\"]",
                "headers[\"X-Bad\"]",
                "method",
                "timeout"
            ]
        );
        w.destination.clear();
        w.url.clear();
        let e = webhook_spec(&w, 1 << 16).unwrap_err();
        assert_eq!(e[0].0, "url");
        w.url = "https://h".into();
        w.method = 42;
        assert_eq!(webhook_spec(&w, 1 << 16).unwrap_err()[0].0, "method");
    }

    #[test]
    fn templates_are_bounded_and_their_placeholders_checked() {
        let e = validate_spec(&spec(&"x".repeat(101), &[]), 100);
        assert_eq!(
            e[0],
            ("body_template".into(), "101 bytes; at most 100".into())
        );
        let e = validate_spec(&spec(r#"{"n": "{{ nmae }}"}"#, &[]), 1 << 16);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].1.contains("names no known variable"), "{e:?}");
        let dup = spec("", &[("X-A", "1"), ("x-a", "2")]);
        let e = validate_spec(&dup, 1 << 16);
        assert_eq!(
            e,
            [(
                "headers[\"x-a\"]".to_string(),
                "named twice (header names are the same in any case)".to_string()
            )]
        );
        let many: Vec<(String, String)> = (0..33).map(|i| (format!("X-{i}"), "v".into())).collect();
        let mut s = spec("", &[]);
        s.headers = many;
        assert_eq!(validate_spec(&s, 1 << 16)[0].0, "headers");
        s.headers.clear();
        s.timeout_ms = Some(60_000);
        assert!(validate_spec(&s, 1 << 16).is_empty());
    }

    #[test]
    fn a_deadline_alert_is_its_own_event_type() {
        let mut stuck = hostile();
        stuck.phase = Phase::Running as i32;
        stuck.error = None;
        stuck.still_running_after = Some(prost_types::Duration {
            seconds: 5400,
            nanos: 0,
        });
        let body: Value = serde_json::from_str(&built_in_body(&stuck, None)).unwrap();
        assert_eq!(body["type"], "flyte.execution.stuck");
        assert_eq!(body["data"]["phase"], "RUNNING");
        assert_eq!(body["data"]["still_running_after"], "1h 30m");
    }

    #[test]
    fn a_missed_schedule_is_about_the_launch_plan() {
        let missed = ExecutionContext {
            expectation: Some(crate::proto::flytenotify::v1::ExpectationAlert {
                launch_plan: "flytesnacks/production/daily_report".into(),
                every: Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                grace: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                last_success_at: None,
                watched_since: Some(prost_types::Timestamp {
                    seconds: 1_795_000_000,
                    nanos: 0,
                }),
                recovered: false,
            }),
            ..Default::default()
        };
        let body: Value = serde_json::from_str(&built_in_body(&missed, None)).unwrap();
        assert_eq!(body["type"], "flyte.launch_plan.missed");
        assert_eq!(
            body["data"]["launch_plan"],
            "flytesnacks/production/daily_report"
        );
        assert_eq!(body["data"]["every_seconds"], 86_400);
        assert!(body["data"].get("last_success_at").is_none());
        assert!(
            body["data"]["watched_since"]
                .as_str()
                .unwrap()
                .starts_with("2026-")
        );
    }

    #[test]
    fn a_digest_body_lists_each_execution_as_its_own_body_does_and_counts_what_did_not_fit() {
        let link = Some("https://console.example.com/x".to_string());
        let executions = vec![(hostile(), link.clone()); 10];
        let one: Value = serde_json::from_str(&built_in_body(&hostile(), link)).unwrap();
        let all = digest_body(&executions, 1 << 20).unwrap();
        assert!(!all.contains("</script>"), "{all}");
        let body: Value = serde_json::from_str(&all).unwrap();
        assert_eq!(body["type"], "flyte.executions.digest");
        assert_eq!(body["data"]["count"], 10);
        assert_eq!(body["data"]["executions"].as_array().unwrap().len(), 10);
        assert_eq!(body["data"]["executions"][3], one["data"]);
        assert_eq!(body["data"].get("more"), None);

        // Room for about three and a half: three are listed, seven counted.
        let entry = all.len() / 10;
        let max = entry * 7 / 2;
        let cut = digest_body(&executions, max).unwrap();
        assert!(cut.len() <= max, "{} > {max}", cut.len());
        let body: Value = serde_json::from_str(&cut).unwrap();
        assert_eq!(body["data"]["count"], 10);
        let listed = body["data"]["executions"].as_array().unwrap().len();
        assert!((2..=3).contains(&listed), "{listed}");
        assert_eq!(body["data"]["more"], 10 - listed);

        // No room for even one: still the count, and why nothing is listed.
        let none: Value = serde_json::from_str(&digest_body(&executions, 100).unwrap()).unwrap();
        assert_eq!(none["data"]["executions"], json!([]));
        assert_eq!(none["data"]["more"], 10);
        let e = digest_body(&executions, 20).unwrap_err();
        assert!(e.contains("at most 20"), "{e}");
    }
}
