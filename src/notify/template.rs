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

/// Where each `{{` that never closes on its line is, in one pass: an opening followed by the end
/// of the line or text before any `}}`, or by another `{{` (the later one opens the span).
fn unclosed(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i + 1 < bytes.len() {
        match &bytes[i..i + 2] {
            b"{{" => {
                // A run of braces opens once, at its last pair (`{{{ name }}}`).
                let mut j = i;
                while bytes.get(j + 2) == Some(&b'{') {
                    j += 1;
                }
                if let Some(o) = open.replace(j) {
                    found.push(o);
                }
                i = j + 2;
                continue;
            }
            b"}}" => {
                open = None;
                i += 2;
                continue;
            }
            _ => {}
        }
        if bytes[i] == b'\n'
            && let Some(o) = open.take()
        {
            found.push(o);
        }
        i += 1;
    }
    found.extend(open);
    found
}

/// Finds `{{ ... }}` spans left to right, in one pass over the text: linear in its length
/// whatever it holds (a template of many unclosed `{{` must not be rescanned once per `{{`).
/// A span's inner text holds no `{{` and no newline; of several `{{` before one `}}`, the last
/// one opens the span, so `{{{{ name }}` still finds a placeholder.
fn placeholders(text: &str) -> impl Iterator<Item = Placeholder<'_>> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        let mut start = pos + text[pos..].find("{{")?;
        let mut p = start + 2;
        loop {
            if bytes.get(start + 2) == Some(&b'{') {
                // `{{{ name }}}`: the placeholder starts one brace later, as FlyteAdmin's plain
                // string replacement would find it.
                start += 1;
                p = start + 2;
                continue;
            }
            match bytes.get(p..p + 2) {
                None => {
                    // No `}}` after this `{{`: nothing more can match.
                    pos = text.len();
                    return None;
                }
                Some(b"}}") => break,
                Some(b"{{") => {
                    start = p;
                    p = start + 2;
                    continue;
                }
                Some([b'\n', _]) => {
                    // A span never crosses a line: look for the next `{{` after it.
                    pos = p + 1;
                    start = pos + text[pos..].find("{{")?;
                    p = start + 2;
                    continue;
                }
                Some(_) => p += 1,
            }
        }
        let inner = &text[start + 2..p];
        let end = p + 2;
        pos = end;
        let exact = if let Some(spaced) = inner.strip_prefix(' ').and_then(|s| s.strip_suffix(' '))
        {
            Variable::from_name(spaced)
        } else {
            Variable::from_name(inner)
        };
        Some(Placeholder {
            start,
            end,
            inner,
            exact,
        })
    })
}

/// The length `render` would produce, without producing it: linear, and no allocation, so a
/// template that would expand to gigabytes costs no more to measure than to read.
/// `escaped_len` gives the length of a value after escaping.
pub fn rendered_len(template: &str, values: &Values, escaped_len: impl Fn(&str) -> usize) -> usize {
    let mut len = template.len();
    for p in placeholders(template) {
        if let Some(var) = p.exact {
            len = len - (p.end - p.start) + escaped_len(values.get(var));
        }
    }
    len
}

/// Substitutes every exact placeholder; `escape` is applied to the inserted values only (the
/// template's own text is the author's and is kept as written). Callers bound the output with
/// `rendered_len` first.
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
    let unclosed = unclosed(template);
    let unclosed = unclosed.first().map(|first| {
        format!(
            "{} `{{{{` never closed on its line (the first at byte {first}); write {{{{ name }}}} \
             with its closing braces, or leave out the braces",
            unclosed.len()
        )
    });
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
        .chain(unclosed)
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
    fn newlines_end_a_span_and_the_last_opening_wins() {
        let v = values();
        assert_eq!(render("{{ a \n {{ name }}", &v, raw), "{{ a \n <name>");
        assert_eq!(
            render("{{ name \n }} {{ phase }}", &v, raw),
            "{{ name \n }} <phase>"
        );
        assert_eq!(render("{{ x {{ y {{ name }}", &v, raw), "{{ x {{ y <name>");
        assert_eq!(render("{{", &v, raw), "{{");
        assert_eq!(render("a{{b}", &v, raw), "a{{b}");
        assert_eq!(render("{{ name }}{{", &v, raw), "<name>{{");
        assert_eq!(render("é{{ name }}ü", &v, raw), "é<name>ü");
    }

    #[test]
    fn the_measured_length_is_the_rendered_length() {
        let v = values();
        for t in [
            "",
            "plain",
            "{{ name }}",
            "a {{ name }}b{{phase}} {{ x }} {{{{ domain }}",
            "{{{ name }}}{{ error }}\n{{ launch_plan.version }}",
        ] {
            assert_eq!(
                rendered_len(t, &v, str::len),
                render(t, &v, raw).len(),
                "{t}"
            );
        }
    }

    #[test]
    fn pathological_templates_are_read_correctly() {
        // Each of these was rescanned to its end once per `{{` by the old scanner (seconds per
        // megabyte); the one-pass scanner reads each once. Speed is the benchmark's business;
        // here, that they come out right.
        let v = values();
        for t in [
            "{{ ".repeat(100_000),
            "{{ a ".repeat(100_000) + "}}",
            "{".repeat(100_000) + "}}",
            "{{\n".repeat(100_000),
        ] {
            assert_eq!(rendered_len(&t, &v, str::len), t.len());
            assert_eq!(render(&t, &v, raw), t);
        }
        let many = "{{ name }}".repeat(10_000);
        assert_eq!(rendered_len(&many, &v, str::len), "<name>".len() * 10_000);
    }

    #[test]
    fn unclosed_openings_are_found_once_each() {
        assert_eq!(
            unclosed("{{ name }} {{{ name }}} {{{{name}}}}"),
            Vec::<usize>::new()
        );
        assert_eq!(unclosed("a {{ b"), vec![2]);
        assert_eq!(unclosed("{{ x {{ name }}"), vec![0]);
        assert_eq!(unclosed("{{ x\n}}"), vec![0]);
        assert_eq!(unclosed(&"{{ ".repeat(4)), vec![0, 3, 6, 9]);
        let p = problems(&"{{ a ".repeat(1000));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("1000 `{{` never closed"), "{p:?}");
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
