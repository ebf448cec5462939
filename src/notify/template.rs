//! FlyteAdmin's `{{ var }}` templates: for each known variable V, exactly `{{ V }}` and `{{V}}` are
//! replaced; any other spacing and any unknown name stays verbatim, as FlyteAdmin's email.go does.
//!
//! One deliberate difference: FlyteAdmin replaces variable after variable over the whole text, so a
//! value that itself contains `{{ name }}` (an error message, say) gets substituted again. We scan
//! once, left to right, and never look inside a value we inserted.

/// The 13 variables FlyteAdmin offers, in the order of its documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    Project,
    Domain,
    Name,
    Phase,
    Error,
    WorkflowProject,
    WorkflowDomain,
    WorkflowName,
    WorkflowVersion,
    LaunchPlanProject,
    LaunchPlanDomain,
    LaunchPlanName,
    LaunchPlanVersion,
}

impl Variable {
    pub const ALL: [Variable; 13] = [
        Variable::Project,
        Variable::Domain,
        Variable::Name,
        Variable::Phase,
        Variable::Error,
        Variable::WorkflowProject,
        Variable::WorkflowDomain,
        Variable::WorkflowName,
        Variable::WorkflowVersion,
        Variable::LaunchPlanProject,
        Variable::LaunchPlanDomain,
        Variable::LaunchPlanName,
        Variable::LaunchPlanVersion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variable::Project => "project",
            Variable::Domain => "domain",
            Variable::Name => "name",
            Variable::Phase => "phase",
            Variable::Error => "error",
            Variable::WorkflowProject => "workflow.project",
            Variable::WorkflowDomain => "workflow.domain",
            Variable::WorkflowName => "workflow.name",
            Variable::WorkflowVersion => "workflow.version",
            Variable::LaunchPlanProject => "launch_plan.project",
            Variable::LaunchPlanDomain => "launch_plan.domain",
            Variable::LaunchPlanName => "launch_plan.name",
            Variable::LaunchPlanVersion => "launch_plan.version",
        }
    }

    fn from_name(name: &str) -> Option<Variable> {
        Variable::ALL.into_iter().find(|v| v.name() == name)
    }

    fn index(self) -> usize {
        Variable::ALL
            .iter()
            .position(|v| *v == self)
            .expect("every variable is in ALL")
    }
}

/// The value of every variable for one execution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values([String; 13]);

impl Values {
    pub fn set(&mut self, var: Variable, value: impl Into<String>) {
        self.0[var.index()] = value.into();
    }

    pub fn get(&self, var: Variable) -> &str {
        &self.0[var.index()]
    }
}

/// One `{{...}}` occurrence: where it is and which variable, if it is an exact match.
struct Placeholder<'a> {
    start: usize,
    end: usize,
    inner: &'a str,
    exact: Option<Variable>,
}

/// Finds `{{ ... }}` spans left to right. A span's inner text holds no `{{` and no newline; a
/// lone `{{` is skipped so that `{{{{ name }}` still finds the last one.
fn placeholders(text: &str) -> impl Iterator<Item = Placeholder<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while let Some(rel) = text[pos..].find("{{") {
            let start = pos + rel;
            let after = start + 2;
            let Some(close_rel) = text[after..].find("}}") else {
                pos = text.len();
                return None;
            };
            let inner = &text[after..after + close_rel];
            if inner.starts_with('{') {
                // `{{{ name }}}`: the placeholder starts one brace later, as FlyteAdmin's plain
                // string replacement would find it.
                pos = start + 1;
                continue;
            }
            if inner.contains("{{") || inner.contains('\n') {
                pos = after;
                continue;
            }
            let end = after + close_rel + 2;
            pos = end;
            let exact =
                if let Some(spaced) = inner.strip_prefix(' ').and_then(|s| s.strip_suffix(' ')) {
                    Variable::from_name(spaced)
                } else {
                    Variable::from_name(inner)
                };
            return Some(Placeholder {
                start,
                end,
                inner,
                exact,
            });
        }
        None
    })
}

/// Substitutes every exact placeholder; `escape` is applied to the inserted values only (the
/// template's own text is the author's and is kept as written).
pub fn render(template: &str, values: &Values, escape: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut copied = 0;
    for p in placeholders(template) {
        if let Some(var) = p.exact {
            out.push_str(&template[copied..p.start]);
            out.push_str(&escape(values.get(var)));
            copied = p.end;
        }
    }
    out.push_str(&template[copied..]);
    out
}

/// Human-readable reasons why placeholders in `template` will not be substituted.
pub fn problems(template: &str) -> Vec<String> {
    placeholders(template)
        .filter(|p| p.exact.is_none())
        .map(|p| {
            let whole = format!("{{{{{}}}}}", p.inner);
            match Variable::from_name(p.inner.trim()) {
                Some(v) => format!(
                    "{whole} is not substituted: write {{{{ {0} }}}} or {{{{{0}}}}} (one space each side, or none)",
                    v.name()
                ),
                None => format!(
                    "{whole} names no known variable (known: {})",
                    Variable::ALL.map(|v| v.name()).join(", ")
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        let mut v = Values::default();
        for var in Variable::ALL {
            v.set(var, format!("<{}>", var.name()));
        }
        v
    }

    fn raw(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn all_thirteen_variables_in_both_spacings() {
        let v = values();
        for var in Variable::ALL {
            let want = format!("<{}>", var.name());
            assert_eq!(render(&format!("{{{{ {} }}}}", var.name()), &v, raw), want);
            assert_eq!(render(&format!("{{{{{}}}}}", var.name()), &v, raw), want);
        }
    }

    #[test]
    fn other_spacings_and_unknown_names_stay_verbatim() {
        let v = values();
        for t in [
            "{{  project }}",
            "{{ project}}",
            "{{project }}",
            "{{\tproject }}",
            "{{ Project }}",
            "{{ nope }}",
            "{{ workflow }}",
            "{{ launchplan.name }}",
            "{{}}",
            "{{ project",
            "project }}",
            "{ project }",
        ] {
            assert_eq!(render(t, &v, raw), t, "{t}");
        }
    }

    #[test]
    fn mixed_text_keeps_everything_around_placeholders() {
        let v = values();
        assert_eq!(
            render("a {{ name }}b{{phase}} {{ x }} {{{{ domain }}", &v, raw),
            "a <name>b<phase> {{ x }} {{<domain>"
        );
    }

    #[test]
    fn extra_braces_around_a_placeholder_stay_as_text() {
        let v = values();
        assert_eq!(render("{{{ name }}}", &v, raw), "{<name>}");
        assert_eq!(render("{{{{name}}}}", &v, raw), "{{<name>}}");
        assert!(problems("{{{ name }}}").is_empty());
    }

    #[test]
    fn inserted_values_are_not_substituted_again() {
        let mut v = Values::default();
        v.set(Variable::Error, "{{ project }}");
        v.set(Variable::Project, "p");
        assert_eq!(
            render("{{ error }}/{{ project }}", &v, raw),
            "{{ project }}/p"
        );
    }

    #[test]
    fn escape_applies_to_values_only() {
        let mut v = Values::default();
        v.set(Variable::Name, "<b>");
        let out = render("<i>{{ name }}</i>", &v, |s| {
            s.replace('<', "&lt;").replace('>', "&gt;")
        });
        assert_eq!(out, "<i>&lt;b&gt;</i>");
    }

    #[test]
    fn problems_name_each_placeholder_left_verbatim() {
        let p = problems("{{ project }} {{  name }} {{ nope }} {{domain}}");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("{{  name }} is not substituted"), "{p:?}");
        assert!(
            p[1].starts_with("{{ nope }} names no known variable"),
            "{p:?}"
        );
    }
}
