//! Flyte 2's server-side names (`flyte.notify.NamedDelivery` and `NamedRule`):
//! `flyteNotify.deliveryConfigs` and `flyteNotify.rules`, each entry scoped to a project and
//! domain (or to every one), and `flyteNotify.flyte2` for the rest.
//!
//! A name resolves to the most specific entry visible from the run's project and domain: one for
//! that project and domain, else one for the project, else one for the domain, else one for
//! every project. Entries for another project are invisible, as the SDK documents ("scoped to
//! project/domain").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Flyte2Settings {
    /// A link to a run when the caller sends none: `{org}`, `{project}`, `{domain}` and `{name}`
    /// are replaced (URL-encoded), e.g.
    /// `https://flyte.example.com/v2/domain/{domain}/project/{project}/runs/{name}`.
    #[serde(default)]
    pub run_url: String,
}

/// `flyteNotify.deliveryConfigs[]`: what `NamedDelivery(name)` sends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryConfigEntry {
    pub name: String,
    /// Empty: every project.
    #[serde(default)]
    pub project: String,
    /// Empty: every domain.
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub email: Option<EmailDeliveryConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookDeliveryConfig>,
}

/// An email, inline (`subject` with `text` and/or `html`) or by the provider's template
/// (`templateId` with `templateData`). Every text is a Go-template style template.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailDeliveryConfig {
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub html: String,
    #[serde(default)]
    pub template_id: String,
    #[serde(default)]
    pub template_data: BTreeMap<String, String>,
}

/// An HTTP request to a `flyteNotify.webhooks.destinations` entry, whose URL, signing secret and
/// headers stay there (a Slack or Teams webhook URL is a secret: keep it in the destination's
/// `urlFile` or `urlEnv`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDeliveryConfig {
    pub destination: String,
    /// Default POST.
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Empty: the built-in JSON body.
    #[serde(default)]
    pub body: String,
}

/// `flyteNotify.rules[]`: what `NamedRule(name)` applies.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSetEntry {
    pub name: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub domain: String,
    pub rules: Vec<RuleEntry>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleEntry {
    /// Phase names: SUCCEEDED, FAILED, ABORTED, TIMED_OUT, PAUSED, ... (any case, with or without
    /// the ACTION_PHASE_ prefix).
    pub on_phases: Vec<String>,
    /// A `deliveryConfigs` name, resolved for the run's project and domain.
    pub delivery_config: String,
}

/// Anything with a name and a scope.
pub trait Scoped {
    fn name(&self) -> &str;
    fn project(&self) -> &str;
    fn domain(&self) -> &str;
}

macro_rules! scoped {
    ($t:ty) => {
        impl Scoped for $t {
            fn name(&self) -> &str {
                &self.name
            }
            fn project(&self) -> &str {
                &self.project
            }
            fn domain(&self) -> &str {
                &self.domain
            }
        }
    };
}
scoped!(DeliveryConfigEntry);
scoped!(RuleSetEntry);

/// Whether `entry` can be used from `project`/`domain`.
pub fn visible(entry: &impl Scoped, project: &str, domain: &str) -> bool {
    (entry.project().is_empty() || entry.project() == project)
        && (entry.domain().is_empty() || entry.domain() == domain)
}

/// The entry `name` resolves to from `project`/`domain`: the most specific visible one.
pub fn resolve<'a, T: Scoped>(
    entries: &'a [T],
    name: &str,
    project: &str,
    domain: &str,
) -> Option<&'a T> {
    entries
        .iter()
        .filter(|e| e.name() == name && visible(*e, project, domain))
        .max_by_key(|e| (!e.project().is_empty(), !e.domain().is_empty()))
}

/// Names visible from `project`/`domain`, sorted, for an error that says what exists.
pub fn visible_names<T: Scoped>(entries: &[T], project: &str, domain: &str) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .filter(|e| visible(*e, project, domain))
        .map(|e| e.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// ActionPhase by its name as an operator writes it.
pub fn parse_phase(text: &str) -> Option<i32> {
    let upper = text.trim().to_ascii_uppercase().replace([' ', '-'], "_");
    let bare = upper.strip_prefix("ACTION_PHASE_").unwrap_or(&upper);
    crate::proto::flyteidl2::common::ActionPhase::from_str_name(&format!("ACTION_PHASE_{bare}"))
        .filter(|p| *p != crate::proto::flyteidl2::common::ActionPhase::Unspecified)
        .map(|p| p as i32)
}

type Invalid = (String, String);

fn check_text(key: String, text: &str) -> Result<(), Invalid> {
    let known = crate::notify::flyte2::event::any_variable();
    crate::notify::flyte2::template::check(text, &known).map_err(|e| (key, e.to_string()))
}

fn check_scope(
    key: &str,
    seen: &mut std::collections::HashSet<(String, String, String)>,
    entry: &impl Scoped,
) -> Result<(), Invalid> {
    if entry.name().trim().is_empty() {
        return Err((format!("{key}.name"), "must not be empty".into()));
    }
    let scope = (
        entry.name().to_string(),
        entry.project().to_string(),
        entry.domain().to_string(),
    );
    if !seen.insert(scope) {
        return Err((
            format!("{key}.name"),
            format!(
                "{:?} is defined twice for project {:?}, domain {:?}",
                entry.name(),
                entry.project(),
                entry.domain()
            ),
        ));
    }
    Ok(())
}

/// Checks the Flyte 2 keys: names unique per scope, every template valid for some event, every
/// destination and delivery config a rule names defined (for the rule's scope).
pub fn validate(
    delivery_configs: &[DeliveryConfigEntry],
    rules: &[RuleSetEntry],
    settings: &Flyte2Settings,
    webhook_destinations: &[&str],
) -> Result<(), Invalid> {
    let url = &settings.run_url;
    if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        return Err((
            "flyteNotify.flyte2.runUrl".into(),
            "must start with http:// or https://".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in delivery_configs.iter().enumerate() {
        let key = format!("flyteNotify.deliveryConfigs[{i}]");
        check_scope(&key, &mut seen, entry)?;
        match (&entry.email, &entry.webhook) {
            (Some(_), Some(_)) => {
                return Err((key, "set email or webhook, not both".into()));
            }
            (None, None) => return Err((key, "set email or webhook".into())),
            (Some(e), None) => {
                let key = format!("{key}.email");
                if e.to.is_empty() && e.cc.is_empty() && e.bcc.is_empty() {
                    return Err((format!("{key}.to"), "name at least one recipient".into()));
                }
                for (list, addresses) in [("to", &e.to), ("cc", &e.cc), ("bcc", &e.bcc)] {
                    for (j, a) in addresses.iter().enumerate() {
                        crate::delivery::email_address(a)
                            .map_err(|m| (format!("{key}.{list}[{j}]"), m))?;
                    }
                }
                if e.template_id.is_empty() {
                    if e.subject.trim().is_empty() {
                        return Err((
                            format!("{key}.subject"),
                            "required (or templateId for the provider's template)".into(),
                        ));
                    }
                    if e.text.trim().is_empty() && e.html.trim().is_empty() {
                        return Err((format!("{key}.text"), "set text, html or both".into()));
                    }
                    if !e.template_data.is_empty() {
                        return Err((format!("{key}.templateData"), "only with templateId".into()));
                    }
                } else if !(e.subject.is_empty() && e.text.is_empty() && e.html.is_empty()) {
                    return Err((
                        format!("{key}.templateId"),
                        "a provider's template brings its own subject and body: drop subject, \
                         text and html"
                            .into(),
                    ));
                }
                for (name, text) in [
                    ("subject", &e.subject),
                    ("text", &e.text),
                    ("html", &e.html),
                ] {
                    check_text(format!("{key}.{name}"), text)?;
                }
                for (k, v) in &e.template_data {
                    check_text(format!("{key}.templateData.{k}"), v)?;
                }
            }
            (None, Some(w)) => {
                let key = format!("{key}.webhook");
                if !webhook_destinations.contains(&w.destination.as_str()) {
                    return Err((
                        format!("{key}.destination"),
                        format!(
                            "{:?} is not in flyteNotify.webhooks.destinations (defined: {})",
                            w.destination,
                            webhook_destinations.join(", ")
                        ),
                    ));
                }
                let method = w.method.to_ascii_uppercase();
                if !(method.is_empty()
                    || crate::proto::flyteidl2::notification::HttpMethod::from_str_name(&format!(
                        "HTTP_METHOD_{method}"
                    ))
                    .is_some())
                {
                    return Err((
                        format!("{key}.method"),
                        format!("{:?} is not an HTTP method", w.method),
                    ));
                }
                check_text(format!("{key}.body"), &w.body)?;
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, set) in rules.iter().enumerate() {
        let key = format!("flyteNotify.rules[{i}]");
        check_scope(&key, &mut seen, set)?;
        if set.rules.is_empty() {
            return Err((format!("{key}.rules"), "name at least one rule".into()));
        }
        for (j, rule) in set.rules.iter().enumerate() {
            let key = format!("{key}.rules[{j}]");
            if rule.on_phases.is_empty() {
                return Err((format!("{key}.onPhases"), "name at least one phase".into()));
            }
            for (k, p) in rule.on_phases.iter().enumerate() {
                if parse_phase(p).is_none() {
                    return Err((
                        format!("{key}.onPhases[{k}]"),
                        format!(
                            "{p:?} is not a phase: SUCCEEDED, FAILED, ABORTED, TIMED_OUT, \
                             PAUSED, RECOVERED, QUEUED, RUNNING, ..."
                        ),
                    ));
                }
            }
            // Every run the rule set applies to must find the delivery config: one visible from
            // the set's own scope (a config for every project, or for the set's project/domain).
            let reachable = delivery_configs.iter().any(|c| {
                c.name == rule.delivery_config
                    && (c.project.is_empty() || c.project == set.project)
                    && (c.domain.is_empty() || c.domain == set.domain)
            });
            if !reachable {
                return Err((
                    format!("{key}.deliveryConfig"),
                    format!(
                        "no delivery config {:?} in flyteNotify.deliveryConfigs for the rule \
                         set's project {:?} and domain {:?}",
                        rule.delivery_config, set.project, set.domain
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, project: &str, domain: &str) -> RuleSetEntry {
        RuleSetEntry {
            name: name.into(),
            project: project.into(),
            domain: domain.into(),
            rules: Vec::new(),
        }
    }

    #[test]
    fn the_most_specific_visible_entry_wins_and_other_projects_are_invisible() {
        let entries = [
            entry("oncall", "", ""),
            entry("oncall", "flytesnacks", ""),
            entry("oncall", "flytesnacks", "production"),
            entry("oncall", "", "development"),
            entry("private", "other", ""),
        ];
        let pick = |p, d| {
            let e = resolve(&entries, "oncall", p, d).unwrap();
            (e.project.as_str(), e.domain.as_str())
        };
        assert_eq!(
            pick("flytesnacks", "production"),
            ("flytesnacks", "production")
        );
        assert_eq!(pick("flytesnacks", "development"), ("flytesnacks", ""));
        assert_eq!(pick("ml", "development"), ("", "development"));
        assert_eq!(pick("ml", "staging"), ("", ""));
        assert!(resolve(&entries, "private", "flytesnacks", "production").is_none());
        assert!(resolve(&entries, "private", "other", "production").is_some());
        assert_eq!(
            visible_names(&entries, "flytesnacks", "production"),
            vec!["oncall"]
        );
    }

    #[test]
    fn phases_are_read_in_any_case_with_or_without_the_prefix() {
        assert_eq!(parse_phase("failed"), Some(6));
        assert_eq!(parse_phase("ACTION_PHASE_TIMED_OUT"), Some(8));
        assert_eq!(parse_phase("timed-out"), Some(8));
        assert_eq!(parse_phase("Paused"), Some(9));
        assert_eq!(parse_phase("unspecified"), None);
        assert_eq!(parse_phase("done"), None);
    }

    fn refused(yaml: &str) -> String {
        crate::config::Config::from_yaml(yaml)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("accepted:\n{yaml}"))
    }

    #[test]
    fn bad_named_configs_and_rules_are_refused_naming_the_key() {
        let head = "flyteNotify:\n  webhooks:\n    destinations:\n      - name: hook\n        urlEnvVar: HOOK_URL\n";
        let cases = [
            (
                "  deliveryConfigs:\n    - name: a\n      webhook: { destination: nope }\n",
                "flyteNotify.deliveryConfigs[0].webhook.destination",
            ),
            (
                "  deliveryConfigs:\n    - name: a\n      email: { to: [x@example.com], subject: \"{{.Run.Nmae}}\", text: t }\n",
                "flyteNotify.deliveryConfigs[0].email.subject",
            ),
            (
                "  deliveryConfigs:\n    - name: a\n      email: { to: [x@example.com], subject: s, text: t }\n    - name: a\n      email: { to: [y@example.com], subject: s, text: t }\n",
                "flyteNotify.deliveryConfigs[1].name",
            ),
            (
                "  deliveryConfigs:\n    - name: a\n      email: { to: [x@example.com], templateId: d-1, subject: s }\n",
                "flyteNotify.deliveryConfigs[0].email.templateId",
            ),
            (
                "  rules:\n    - name: r\n      rules: [{ onPhases: [FAILED], deliveryConfig: missing }]\n",
                "flyteNotify.rules[0].rules[0].deliveryConfig",
            ),
            (
                "  deliveryConfigs:\n    - name: a\n      project: p\n      webhook: { destination: hook }\n  rules:\n    - name: r\n      rules: [{ onPhases: [FAILED], deliveryConfig: a }]\n",
                "flyteNotify.rules[0].rules[0].deliveryConfig",
            ),
            (
                "  deliveryConfigs:\n    - name: a\n      webhook: { destination: hook }\n  rules:\n    - name: r\n      rules: [{ onPhases: [FINISHED], deliveryConfig: a }]\n",
                "flyteNotify.rules[0].rules[0].onPhases[0]",
            ),
            (
                "  flyte2: { runUrl: ftp://x }\n",
                "flyteNotify.flyte2.runUrl",
            ),
        ];
        for (tail, key) in cases {
            let e = refused(&format!("{head}{tail}"));
            assert!(e.starts_with(key), "{key}: {e}");
        }
        // And a good one passes.
        crate::config::Config::from_yaml(&format!(
            "{head}  deliveryConfigs:\n    - name: a\n      webhook: {{ destination: hook, body: '{{\"r\": \"{{{{.Run.Name}}}}\"}}' }}\n  rules:\n    - name: r\n      rules: [{{ onPhases: [failed, TIMED_OUT], deliveryConfig: a }}]\n"
        ))
        .unwrap();
    }
}
