//! The checks the fuzz targets run, one function per target. Shared by the libFuzzer targets in
//! `fuzz_targets/` and by `tests/fuzz_corpus.rs`, which replays the corpus and every minimized
//! crash under plain `cargo test`. Each function panics when a property is broken; errors that
//! the code under test returns are fine.

#![allow(dead_code)]

use std::borrow::Cow;

use flyte_notify::config::{Config, Limits};
use flyte_notify::delivery::{Payload, email_address};
use flyte_notify::ledger::filters::{self, FilterField, FilterOp};
use flyte_notify::notify::flyte2::template::{self as gotmpl, Escape, TemplateError};
use flyte_notify::notify::render::{Expanded, Renderer, escape_html, html_escaped_len};
use flyte_notify::notify::template::{self, Values, Variable};
use flyte_notify::notify::validate;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;

/// The names of the targets, which are also the corpus directories.
pub const TARGETS: [&str; 5] = ["template", "filters", "config", "payload", "enqueue"];

/// Runs the check of `target` on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "template" => template(data),
        "filters" => filters(data),
        "config" => config(data),
        "payload" => payload(data),
        "enqueue" => enqueue(data),
        other => panic!("no check named {other}"),
    }
}

/// Input: the template, then the values separated by NUL bytes (assigned to the 13 variables in
/// turn, repeating; without any, each variable gets `<name>` with characters HTML escapes).
/// The same template and values also go through the Flyte 2 engine (`go_template`).
pub fn template(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0);
    let t = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let given: Vec<String> = parts
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let mut values = Values::default();
    for (i, var) in Variable::ALL.into_iter().enumerate() {
        let value = if given.is_empty() {
            format!("<{}>&\"'", var.name())
        } else {
            given[i % given.len()].clone()
        };
        values.set(var, value);
    }

    go_template(&t, &given);

    let _ = template::problems(&t);
    let raw = template::render(&t, &values, |s| s.to_string());
    assert_eq!(
        template::rendered_len(&t, &values, str::len),
        raw.len(),
        "rendered_len disagrees with render for template {t:?}"
    );
    let escaped = template::render(&t, &values, escape_html);
    assert_eq!(
        template::rendered_len(&t, &values, html_escaped_len),
        escaped.len(),
        "rendered_len with html_escaped_len disagrees with render with escape_html for {t:?}"
    );
    let texts = Variable::ALL.map(|var| values.get(var));
    for v in texts.into_iter().chain([t.as_str()]) {
        assert_eq!(
            html_escaped_len(v),
            escape_html(v).len(),
            "html_escaped_len disagrees with escape_html for {v:?}"
        );
    }
}

/// The variables the Flyte 2 check offers the template.
const GO_KNOWN: [&str; 5] = ["Run.Name", "Run.Project", "Run.Domain", "Phase", "Error"];

/// The Flyte 2 engine on the template input: `check` and `render` agree (what `check` passes
/// renders, what it refuses `render` refuses with the same error), the bound holds exactly
/// (a bounded render is the unbounded one when that fits, else TooLarge), and each value
/// escaped for JSON reads back inside quotes, escaped for HTML carries no markup.
fn go_template(t: &str, given: &[String]) {
    let values: Vec<String> = (0..GO_KNOWN.len())
        .map(|i| {
            if given.is_empty() {
                format!("<{}>&\"'\\\n\u{1}{{{{.Phase}}}}", GO_KNOWN[i])
            } else {
                given[i % given.len()].clone()
            }
        })
        .collect();
    let lookup = |name: &str| {
        GO_KNOWN
            .iter()
            .position(|k| *k == name)
            .map(|i| Cow::Borrowed(values[i].as_str()))
    };
    // A bound that the input moves around: sometimes above, sometimes below the output.
    let bound = given.first().map_or(t.len(), |g| g.len() * 4);

    let checked = gotmpl::check(t, &GO_KNOWN);
    let nothing_known = gotmpl::check(t, &[]);
    for escape in [Escape::Text, Escape::Html, Escape::Json] {
        let full = gotmpl::render_with(t, lookup, escape, usize::MAX);
        match (&checked, &full) {
            (Ok(()), Ok(_)) => {}
            (
                Err(TemplateError::Unknown { name: a, .. }),
                Err(TemplateError::Unknown { name: b, .. }),
            ) => {
                assert_eq!(a, b, "check and render name different unknowns in {t:?}")
            }
            (Err(e @ TemplateError::Syntax { .. }), Err(f)) => {
                assert_eq!(e, f, "check and render disagree on the syntax of {t:?}")
            }
            (c, r) => panic!("check says {c:?} but render ({escape:?}) says {r:?} for {t:?}"),
        }
        // `render`, whose lookup owns its values, renders what `render_with` renders.
        let owned = gotmpl::render(
            t,
            &|name| lookup(name).map(|v| Cow::Owned(v.into_owned())),
            escape,
            usize::MAX,
        );
        assert_eq!(owned, full, "render and render_with differ on {t:?}");

        let bounded = gotmpl::render_with(t, lookup, escape, bound);
        let too_large = Err(TemplateError::TooLarge { max_bytes: bound });
        match &full {
            Ok(out) if out.len() <= bound => assert_eq!(bounded.as_ref(), Ok(out), "{t:?}"),
            Ok(_) => assert_eq!(bounded, too_large, "{t:?} within {bound}"),
            Err(e) => assert!(
                bounded == too_large || bounded.as_ref() == Err(e),
                "{t:?} within {bound}: {bounded:?}, unbounded {e:?}"
            ),
        }

        // A lookup that knows nothing refuses exactly what a check against no names refuses.
        let blind = gotmpl::render_with(t, |_| None::<Cow<str>>, escape, usize::MAX);
        assert_eq!(
            nothing_known.is_ok(),
            blind.is_ok(),
            "check against no names says {nothing_known:?}, render without values {blind:?}: {t:?}"
        );
    }

    for (name, value) in GO_KNOWN.iter().zip(&values) {
        let variable = format!("{{{{.{name}}}}}");
        let json = gotmpl::render_with(&variable, lookup, Escape::Json, usize::MAX).unwrap();
        let read: String = serde_json::from_str(&format!("\"{json}\"")).unwrap_or_else(|e| {
            panic!("{value:?} escaped for JSON as {json:?} does not parse: {e}")
        });
        assert_eq!(
            &read, value,
            "JSON escaping of {value:?} reads back as {read:?}"
        );
        let html = gotmpl::render_with(&variable, lookup, Escape::Html, usize::MAX).unwrap();
        assert!(
            !html.contains(['<', '>', '"', '\'']),
            "{value:?} escaped for HTML as {html:?}"
        );
    }
}

/// Input: a ListPending `filters` string.
pub fn filters(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let Ok(parsed) = filters::parse(&s) else {
        return;
    };
    assert!(parsed.len() <= filters::MAX_TERMS, "{s:?}: {parsed:?}");
    for f in &parsed {
        assert!(
            !f.values.is_empty() && f.values.len() <= filters::MAX_VALUES,
            "{s:?}: {f:?}"
        );
        assert!(
            f.op == FilterOp::ValueIn || f.values.len() == 1,
            "{s:?}: {f:?}"
        );
        for v in &f.values {
            assert!(!v.is_empty() && v.trim() == v, "{s:?}: value {v:?}");
        }
        assert!(
            !(f.op == FilterOp::Contains
                && matches!(f.field, FilterField::State | FilterField::Channel)),
            "{s:?}: {f:?}"
        );
        if f.field == FilterField::State {
            for v in &f.values {
                assert!(
                    matches!(v.as_str(), "pending" | "retrying" | "dead"),
                    "{s:?}: {v:?}"
                );
            }
        }
    }
}

/// Input: a YAML config file.
pub fn config(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let Ok(config) = Config::from_yaml(&s) else {
        return;
    };
    let _ = flyte_notify::notify::template_warnings(&config.notifications.emailer);
    let _ = config.smtp_port();
    let _ = config.redacted_yaml();
}

/// Input: a stored delivery payload (JSON).
pub fn payload(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let Ok((payload, _execution)) = Payload::decode(&s) else {
        return;
    };
    let stored = payload.encode();
    let (again, execution) = Payload::decode(&stored)
        .unwrap_or_else(|e| panic!("{stored:?}, encoded from {s:?}, does not decode: {e}"));
    assert_eq!(again, payload, "{s:?} re-encoded as {stored:?}");
    assert_eq!(execution, None, "{stored:?}");
    assert_eq!(again.encode(), stored, "{s:?}");
}

/// Input: a protobuf-encoded EnqueueRequest.
pub fn enqueue(data: &[u8]) {
    let Ok(request) = <EnqueueRequest as prost::Message>::decode(data) else {
        return;
    };
    let limits = Limits::default();
    let mut v = Vec::new();
    validate::request_id(&request.request_id, &mut v);
    validate::request_size(prost::Message::encoded_len(&request), &limits, &mut v);
    let deadline = request
        .deadline
        .as_ref()
        .map(|d| validate::deadline(d, &mut v).unwrap_or_default());
    let execution = validate::execution(request.execution.as_ref(), deadline, &mut v);
    let targets = validate::notifications(
        &request.notifications,
        request.webhooks.len(),
        &limits,
        &Default::default(),
        &mut v,
    );

    for n in &request.notifications {
        use flyte_notify::proto::flyteidl::admin::notification::Type;
        let recipients = match &n.r#type {
            Some(Type::Email(e)) => &e.recipients_email,
            Some(Type::PagerDuty(p)) => &p.recipients_email,
            Some(Type::Slack(s)) => &s.recipients_email,
            None => continue,
        };
        for r in recipients {
            if let Ok(mailbox) = email_address(r) {
                // What is accepted goes out as `mailbox.to_string()`: that must read the same.
                let shown = mailbox.to_string();
                assert_eq!(
                    email_address(&shown).as_ref(),
                    Ok(&mailbox),
                    "{r:?} is accepted, but its formatted form {shown:?} is not the same address"
                );
            }
        }
    }

    // A valid request is accepted only if each matching notification can be rendered: what
    // `Renderer::check` passes, `Renderer::render` must render within the limit.
    let Some((execution, _)) = execution else {
        return;
    };
    if !v.is_empty() {
        return;
    }
    let renderers = [
        Renderer {
            subject: String::new(),
            body: String::new(),
            sender: String::new(),
            console_url: "https://flyte.example.com/console".into(),
            max_rendered_bytes: limits.max_rendered_bytes,
        },
        Renderer {
            subject: "Notice: Execution \"{{ name }}\" has {{ phase }} in \"{{ domain }}\".".into(),
            body: "Execution {{ name }} has {{ phase }}.{{ error }}".into(),
            sender: "Flyte <flyte@example.com>".into(),
            console_url: String::new(),
            max_rendered_bytes: 1024,
        },
        // An HTML body: its text part is made by html2text and measured exactly.
        Renderer {
            subject: String::new(),
            body: "<html><body>Execution <a href=\"https://console.example.com/{{ project }}/\
                   {{ domain }}/{{ name }}\">{{ name }}</a> has {{ phase }}.{{ error }}</body></html>"
                .into(),
            sender: String::new(),
            console_url: String::new(),
            max_rendered_bytes: 2048,
        },
    ];
    for (index, t) in targets.iter().enumerate() {
        if !t.phases.contains(&execution.phase) {
            continue;
        }
        let expanded = Expanded {
            index: index as u32,
            channel: t.channel,
            recipients: std::borrow::Cow::Borrowed(t.recipients),
            template: t.template,
            native: false,
            route: None,
        };
        for renderer in &renderers {
            let checked = renderer.check(execution, &expanded);
            let rendered = renderer.render(execution, &expanded);
            assert_eq!(
                checked.is_ok(),
                rendered.is_ok(),
                "check says {checked:?} but render says {:?}",
                rendered.as_ref().map(|_| ())
            );
            if let Ok(message) = rendered {
                let max = renderer.max_rendered_bytes;
                assert!(
                    message.html_body.len() <= max,
                    "HTML body {} > {max}",
                    message.html_body.len()
                );
                assert!(
                    message.text_body.len() <= max,
                    "text body {} > {max}",
                    message.text_body.len()
                );
                if !renderer.subject.is_empty() {
                    assert!(
                        message.subject.len() <= max,
                        "subject {} > {max}",
                        message.subject.len()
                    );
                }
            }
        }
    }
}
