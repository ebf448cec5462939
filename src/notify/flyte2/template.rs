//! PLACEHOLDER until the gotmpl branch lands (it replaces this file): `{{ .Name }}` only.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    Text,
    Html,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown variable {name}; known: {known}")]
    Unknown { name: String, known: String },
    #[error("at byte {offset}: {message}")]
    Syntax { offset: usize, message: String },
    #[error("the rendered text would exceed {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
}

fn actions(template: &str) -> Result<Vec<(usize, usize, String)>, TemplateError> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = template[at..].find("{{") {
        let start = at + open;
        let Some(close) = template[start..].find("}}") else {
            return Err(TemplateError::Syntax {
                offset: start,
                message: "{{ without }}".into(),
            });
        };
        let end = start + close + 2;
        let inner = template[start + 2..end - 2].trim();
        let Some(name) = inner.strip_prefix('.') else {
            return Err(TemplateError::Syntax {
                offset: start,
                message: format!("only variables are supported, not {{{{{inner}}}}}"),
            });
        };
        out.push((start, end, name.to_string()));
        at = end;
    }
    Ok(out)
}

pub fn check(template: &str, known: &[&str]) -> Result<(), TemplateError> {
    for (_, _, name) in actions(template)? {
        if !known.contains(&name.as_str()) {
            return Err(TemplateError::Unknown {
                name: format!(".{name}"),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

pub fn render(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<Cow<'_, str>>,
    escape: Escape,
    max_bytes: usize,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut at = 0;
    for (start, end, name) in actions(template)? {
        out.push_str(&template[at..start]);
        let value = lookup(&name).ok_or_else(|| TemplateError::Unknown {
            name: format!(".{name}"),
            known: String::new(),
        })?;
        match escape {
            Escape::Text => out.push_str(&value),
            Escape::Html => out.push_str(&crate::notify::render::escape_html(&value)),
            Escape::Json => {
                let quoted = serde_json::to_string(&*value).unwrap_or_default();
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
        }
        if out.len() > max_bytes {
            return Err(TemplateError::TooLarge { max_bytes });
        }
        at = end;
    }
    out.push_str(&template[at..]);
    if out.len() > max_bytes {
        return Err(TemplateError::TooLarge { max_bytes });
    }
    Ok(out)
}
