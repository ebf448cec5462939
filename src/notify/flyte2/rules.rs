//! From a run's rules to what each delivers: inline templates as they are, `NamedDelivery` and
//! `NamedRule` names resolved against the config for the run's project and domain, every
//! template checked against the event's variables. Nothing here sends or stores.

use std::collections::BTreeMap;

use crate::config::flyte2::{self as config, DeliveryConfigEntry, RuleSetEntry};
use crate::delivery::{
    Channel, Flyte2EmailContent, Flyte2Event, Flyte2Message, WebhookFlavor, WebhookTarget,
};
use crate::error::FieldViolation;
use crate::proto::flyteidl2::notification::{
    DeliveryConfigTemplate, EmailDeliveryTemplate, EmailRecipient, HttpMethod,
    WebhookDeliveryTemplate, email_delivery_template,
};
use crate::proto::flyteidl2::task::{InlineRule, inline_rule::Delivery};
use crate::proto::flytenotify::v1 as api;

use super::super::webhook_body;
use super::super::webhooks::{WebhookTargets, shown_as};
use super::event::VariablesOf;
use super::template::{self, Escape};

/// The most rules one event may carry (inline, or in a named rule set).
pub const MAX_RULES: usize = 50;
/// The most values one provider template may be filled with: each is rendered, so their number
/// bounds the work one rule asks for.
pub const MAX_TEMPLATE_DATA: usize = 32;
/// The most addresses one email rule may name across to, cc and bcc.
pub const MAX_EMAIL_RECIPIENTS: usize = 100;

/// What the server knows to resolve names and pick channels (with the webhook targets it admits).
pub struct Catalog {
    pub delivery_configs: Vec<DeliveryConfigEntry>,
    pub rule_sets: Vec<RuleSetEntry>,
    /// Which service a webhook target belongs to, by its URL (a destination's from the config).
    pub flavor_of: Box<dyn Fn(&WebhookTarget) -> WebhookFlavor + Send + Sync>,
    pub max_template_bytes: usize,
    /// The configured emailer ("smtp", "ses", ...), and whether it sends provider templates.
    pub emailer: String,
    pub provider_templates: bool,
}

/// The channel a webhook of `flavor` to `target` goes by: Teams URLs by the Teams sender, the
/// rest (Slack incoming webhooks too, which it knows) by the webhook sender.
pub fn webhook_channel(target: &WebhookTarget, flavor: WebhookFlavor) -> Channel {
    match (target, flavor) {
        (WebhookTarget::Url(_), WebhookFlavor::Teams) => Channel::Teams,
        _ => Channel::Webhook,
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            delivery_configs: Vec::new(),
            rule_sets: Vec::new(),
            flavor_of: Box::new(|_| WebhookFlavor::Generic),
            max_template_bytes: crate::config::Limits::default().max_template_bytes,
            emailer: "maildir".into(),
            provider_templates: false,
        }
    }
}

/// The catalog and the webhook targets, as resolution needs them together.
pub struct Known<'a> {
    pub catalog: &'a Catalog,
    pub webhook_targets: &'a WebhookTargets,
}

/// One rule, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Its position among the event's rules (of the named rule set, for NamedRule).
    pub index: u32,
    pub on_phases: Vec<i32>,
    pub channel: Channel,
    /// As ListPending shows them: the email's To addresses, a webhook's destination or URL
    /// without secrets.
    pub recipients: Vec<String>,
    pub message: Flyte2Message,
    /// The request field it came from, for errors found later (rendering too large).
    pub field: String,
}

fn addresses(field: &str, list: &[EmailRecipient], out: &mut Vec<FieldViolation>) -> Vec<String> {
    list.iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let text = if r.name.trim().is_empty() {
                r.address.trim().to_string()
            } else {
                format!("{} <{}>", r.name.trim(), r.address.trim())
            };
            match crate::delivery::email_address(&text) {
                Ok(_) => Some(text),
                Err(e) => {
                    out.push(FieldViolation::new(format!("{field}[{i}].address"), e));
                    None
                }
            }
        })
        .collect()
}

fn check_template(
    field: &str,
    text: &str,
    event: &Flyte2Event,
    max_bytes: usize,
    out: &mut Vec<FieldViolation>,
) {
    if text.len() > max_bytes {
        out.push(FieldViolation::new(
            field,
            format!("{} bytes; at most {max_bytes}", text.len()),
        ));
    } else if let Err(e) = template::check(text, event.variables()) {
        out.push(FieldViolation::new(field, e.to_string()));
    }
}

/// The escaping a webhook body gets from its Content-Type; a form body is refused (its values
/// would need URL encoding, which Flyte 2's JSON templates never ask for).
pub fn body_escape(headers: &[(String, String)]) -> Result<Escape, String> {
    if webhook_body::is_json(headers) {
        return Ok(Escape::Json);
    }
    let content_type = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        Err("a form body cannot carry a Flyte 2 template: send JSON (the default) or text".into())
    } else if content_type.contains("html") {
        Ok(Escape::Html)
    } else {
        Ok(Escape::Text)
    }
}

fn email(
    field: &str,
    t: &EmailDeliveryTemplate,
    event: &Flyte2Event,
    catalog: &Catalog,
    out: &mut Vec<FieldViolation>,
) -> Option<(Vec<String>, Flyte2Message)> {
    let max_template_bytes = catalog.max_template_bytes;
    let before = out.len();
    let to = addresses(&format!("{field}.to"), &t.to, out);
    let cc = addresses(&format!("{field}.cc"), &t.cc, out);
    let bcc = addresses(&format!("{field}.bcc"), &t.bcc, out);
    if t.to.is_empty() && t.cc.is_empty() && t.bcc.is_empty() {
        out.push(FieldViolation::new(
            format!("{field}.to"),
            "name at least one recipient",
        ));
    }
    let count = t.to.len() + t.cc.len() + t.bcc.len();
    if count > MAX_EMAIL_RECIPIENTS {
        out.push(FieldViolation::new(
            format!("{field}.to"),
            format!("{count} recipients in to, cc and bcc; at most {MAX_EMAIL_RECIPIENTS}"),
        ));
    }
    let content = match &t.content {
        None => {
            out.push(FieldViolation::new(
                format!("{field}.inline"),
                "required: an inline template or a provider_template",
            ));
            None
        }
        Some(email_delivery_template::Content::Inline(i)) => {
            let f = format!("{field}.inline");
            if i.subject.trim().is_empty() {
                out.push(FieldViolation::new(
                    format!("{f}.subject"),
                    "must not be empty",
                ));
            }
            if i.text_template.trim().is_empty() && i.html_template.trim().is_empty() {
                out.push(FieldViolation::new(
                    format!("{f}.text_template"),
                    "set text_template, html_template or both",
                ));
            }
            for (name, text) in [
                ("subject", &i.subject),
                ("text_template", &i.text_template),
                ("html_template", &i.html_template),
            ] {
                check_template(&format!("{f}.{name}"), text, event, max_template_bytes, out);
            }
            Some(Flyte2EmailContent::Inline {
                subject: i.subject.clone(),
                text: i.text_template.clone(),
                html: i.html_template.clone(),
            })
        }
        Some(email_delivery_template::Content::ProviderTemplate(p)) => {
            let f = format!("{field}.provider_template");
            if p.template_id.trim().is_empty() {
                out.push(FieldViolation::new(
                    format!("{f}.template_id"),
                    "must not be empty",
                ));
            }
            if !catalog.provider_templates {
                out.push(FieldViolation::new(
                    f.clone(),
                    format!(
                        "the configured emailer ({}) has no provider templates: use an inline \
                         template, or send through SendGrid or SES",
                        catalog.emailer
                    ),
                ));
            }
            if p.template_data.len() > MAX_TEMPLATE_DATA {
                out.push(FieldViolation::new(
                    format!("{f}.template_data"),
                    format!(
                        "{} entries; at most {MAX_TEMPLATE_DATA}",
                        p.template_data.len()
                    ),
                ));
            }
            for (key, value) in &p.template_data {
                check_template(
                    &format!("{f}.template_data[{key:?}]"),
                    value,
                    event,
                    max_template_bytes,
                    out,
                );
            }
            Some(Flyte2EmailContent::Provider {
                template_id: p.template_id.clone(),
                data: p
                    .template_data
                    .clone()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
            })
        }
    };
    let content = content?;
    if out.len() != before {
        return None;
    }
    // Listed by To; a message with only cc or bcc is listed by those.
    let shown = if !to.is_empty() {
        to.clone()
    } else if !cc.is_empty() {
        cc.clone()
    } else {
        bcc.clone()
    };
    Some((
        shown,
        Flyte2Message::Email {
            to,
            cc,
            bcc,
            content,
        },
    ))
}

fn webhook(
    field: &str,
    t: &WebhookDeliveryTemplate,
    destination: Option<&str>,
    event: &Flyte2Event,
    known: &Known<'_>,
    out: &mut Vec<FieldViolation>,
) -> Option<(Vec<String>, Channel, Flyte2Message)> {
    let before = out.len();
    let target = match destination {
        Some(name) => WebhookTarget::Destination(name.to_string()),
        None => WebhookTarget::Url(t.url.clone()),
    };
    if let WebhookTarget::Url(url) = &target
        && url.trim().is_empty()
    {
        out.push(FieldViolation::new(format!("{field}.url"), "required"));
    } else if let Some((f, problem)) = known.webhook_targets.check(&target) {
        out.push(FieldViolation::new(format!("{field}.{f}"), problem));
    }
    let method = match HttpMethod::try_from(t.method) {
        Ok(HttpMethod::Unspecified) => "POST".to_string(),
        Ok(m) => m
            .as_str_name()
            .trim_start_matches("HTTP_METHOD_")
            .to_string(),
        Err(_) => {
            out.push(FieldViolation::new(
                format!("{field}.method"),
                format!("{} is not an HttpMethod", t.method),
            ));
            "POST".to_string()
        }
    };
    let mut headers: Vec<(String, String)> = t
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.sort();
    // The Flyte 1 checks of method and headers, on a spec without a body (its template syntax
    // is not Flyte 1's).
    let probe = crate::delivery::WebhookSpec {
        target: target.clone(),
        method: method.clone(),
        headers: headers.clone(),
        body_template: String::new(),
        timeout_ms: None,
    };
    for (f, problem) in webhook_body::validate_spec(&probe, known.catalog.max_template_bytes) {
        if f != "url" && f != "destination" {
            out.push(FieldViolation::new(format!("{field}.{f}"), problem));
        }
    }
    match body_escape(&headers) {
        Err(problem) => out.push(FieldViolation::new(format!("{field}.headers"), problem)),
        Ok(_) => check_template(
            &format!("{field}.body_template"),
            &t.body_template,
            event,
            known.catalog.max_template_bytes,
            out,
        ),
    }
    if out.len() != before {
        return None;
    }
    let flavor = (known.catalog.flavor_of)(&target);
    let channel = webhook_channel(&target, flavor);
    Some((
        vec![shown_as(&target)],
        channel,
        Flyte2Message::Webhook {
            target,
            method,
            headers,
            body_template: t.body_template.clone(),
            flavor,
        },
    ))
}

/// A delivery template (inline, or a named config's) as a message.
fn template_message(
    field: &str,
    t: &DeliveryConfigTemplate,
    destination: Option<&str>,
    event: &Flyte2Event,
    known: &Known<'_>,
    out: &mut Vec<FieldViolation>,
) -> Option<(Vec<String>, Channel, Flyte2Message)> {
    match (&t.email, &t.webhook) {
        (Some(e), None) => email(&format!("{field}.email"), e, event, known.catalog, out)
            .map(|(shown, m)| (shown, Channel::Email, m)),
        (None, Some(w)) => webhook(
            &format!("{field}.webhook"),
            w,
            destination,
            event,
            known,
            out,
        ),
        (None, None) => {
            out.push(FieldViolation::new(
                field,
                "required: an email or a webhook",
            ));
            None
        }
        (Some(_), Some(_)) => {
            out.push(FieldViolation::new(field, "set email or webhook, not both"));
            None
        }
    }
}

/// A named delivery config as the template it stands for.
pub fn config_template(entry: &DeliveryConfigEntry) -> (DeliveryConfigTemplate, Option<&str>) {
    let recipients = |list: &[String]| {
        list.iter()
            .map(|a| EmailRecipient {
                name: String::new(),
                address: a.clone(),
            })
            .collect::<Vec<_>>()
    };
    let mut t = DeliveryConfigTemplate::default();
    if let Some(e) = &entry.email {
        let content = if e.template_id.is_empty() {
            email_delivery_template::Content::Inline(
                crate::proto::flyteidl2::notification::InlineEmailTemplate {
                    subject: e.subject.clone(),
                    html_template: e.html.clone(),
                    text_template: e.text.clone(),
                },
            )
        } else {
            email_delivery_template::Content::ProviderTemplate(
                crate::proto::flyteidl2::notification::ProviderEmailTemplate {
                    template_id: e.template_id.clone(),
                    template_data: e.template_data.clone().into_iter().collect(),
                },
            )
        };
        t.email = Some(EmailDeliveryTemplate {
            to: recipients(&e.to),
            cc: recipients(&e.cc),
            bcc: recipients(&e.bcc),
            content: Some(content),
        });
    }
    let mut destination = None;
    if let Some(w) = &entry.webhook {
        let method = if w.method.is_empty() {
            HttpMethod::Post
        } else {
            HttpMethod::from_str_name(&format!("HTTP_METHOD_{}", w.method.to_ascii_uppercase()))
                .unwrap_or(HttpMethod::Unspecified)
        };
        t.webhook = Some(WebhookDeliveryTemplate {
            url: String::new(),
            method: method as i32,
            headers: w.headers.clone().into_iter().collect(),
            body_template: w.body.clone(),
        });
        destination = Some(w.destination.as_str());
    }
    (t, destination)
}

fn unknown(kind: &str, name: &str, visible: Vec<String>, project: &str, domain: &str) -> String {
    let known = if visible.is_empty() {
        "none is defined for it".to_string()
    } else {
        format!("defined for it: {}", visible.join(", "))
    };
    format!(
        "no {kind} {} for project {project:?}, domain {domain:?} ({known})",
        crate::delivery::quoted(name)
    )
}

fn phases(field: &str, on_phases: &[i32], out: &mut Vec<FieldViolation>) -> Vec<i32> {
    use crate::proto::flyteidl2::common::ActionPhase;
    if on_phases.is_empty() {
        out.push(FieldViolation::new(field, "name at least one phase"));
    }
    for (i, p) in on_phases.iter().enumerate() {
        if !matches!(ActionPhase::try_from(*p), Ok(a) if a != ActionPhase::Unspecified) {
            out.push(FieldViolation::new(
                format!("{field}[{i}]"),
                format!("{p} is not an ActionPhase"),
            ));
        }
    }
    on_phases.to_vec()
}

/// One inline rule (from the request, or from a named rule set via its delivery config name).
fn rule(
    field: &str,
    index: u32,
    r: &InlineRule,
    event: &Flyte2Event,
    known: &Known<'_>,
    out: &mut Vec<FieldViolation>,
) -> Option<Resolved> {
    let on_phases = phases(&format!("{field}.on_phases"), &r.on_phases, out);
    // Upstream the two are a oneof, so a rule carries one of them at most.
    let (shown, channel, message) = match &r.delivery {
        None => {
            out.push(FieldViolation::new(
                format!("{field}.delivery_template"),
                "required: a delivery_template or a delivery_config_name",
            ));
            return None;
        }
        Some(Delivery::DeliveryTemplate(t)) => template_message(
            &format!("{field}.delivery_template"),
            t,
            None,
            event,
            known,
            out,
        )?,
        Some(Delivery::DeliveryConfigName(name)) => {
            let Some(entry) = config::resolve(
                &known.catalog.delivery_configs,
                name,
                &event.project,
                &event.domain,
            ) else {
                out.push(FieldViolation::new(
                    format!("{field}.delivery_config_name"),
                    unknown(
                        "delivery config",
                        name,
                        config::visible_names(
                            &known.catalog.delivery_configs,
                            &event.project,
                            &event.domain,
                        ),
                        &event.project,
                        &event.domain,
                    ),
                ));
                return None;
            };
            let (t, destination) = config_template(entry);
            // A config's own problems (a template using a variable this event has not) are
            // the request's, named by where the config is used.
            template_message(
                &format!("{field}.delivery_config_name({name})"),
                &t,
                destination,
                event,
                known,
                out,
            )?
        }
    };
    Some(Resolved {
        index,
        on_phases,
        channel,
        recipients: shown,
        message,
        field: field.to_string(),
    })
}

/// Every rule of `rules` for `event`, resolved; their problems go to `out`, each naming its field.
pub fn resolve(
    rules: Option<&api::Flyte2Rules>,
    event: &Flyte2Event,
    known: &Known<'_>,
    out: &mut Vec<FieldViolation>,
) -> Vec<Resolved> {
    use api::flyte2_rules::Rules;
    match rules.and_then(|r| r.rules.as_ref()) {
        None => {
            out.push(FieldViolation::new(
                "rules",
                "required: notification_rules or notification_rule_name",
            ));
            Vec::new()
        }
        Some(Rules::NotificationRules(list)) => {
            let field = "rules.notification_rules.rules";
            if list.rules.len() > MAX_RULES {
                out.push(FieldViolation::new(
                    field,
                    format!("{} rules; at most {MAX_RULES}", list.rules.len()),
                ));
                return Vec::new();
            }
            list.rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| rule(&format!("{field}[{i}]"), i as u32, r, event, known, out))
                .collect()
        }
        Some(Rules::NotificationRuleName(name)) => {
            let field = "rules.notification_rule_name";
            let Some(set) = config::resolve(
                &known.catalog.rule_sets,
                name,
                &event.project,
                &event.domain,
            ) else {
                out.push(FieldViolation::new(
                    field,
                    unknown(
                        "rule",
                        name,
                        config::visible_names(
                            &known.catalog.rule_sets,
                            &event.project,
                            &event.domain,
                        ),
                        &event.project,
                        &event.domain,
                    ),
                ));
                return Vec::new();
            };
            set.rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let inline = InlineRule {
                        on_phases: r
                            .on_phases
                            .iter()
                            .filter_map(|p| config::parse_phase(p))
                            .collect(),
                        delivery: Some(Delivery::DeliveryConfigName(r.delivery_config.clone())),
                    };
                    rule(
                        &format!("{field}({name}).rules[{i}]"),
                        i as u32,
                        &inline,
                        event,
                        known,
                        out,
                    )
                })
                .collect()
        }
    }
}
