//! Flyte 2's notification templates: `{{.Run.Name}}`-style variables, rendered here rather than
//! by Go, so the syntax is a strict subset of Go's `text/template`. Every template accepted here
//! means the same in Go; everything else is refused with what and where, rather than guessed at.
//!
//! Accepted inside `{{ }}`:
//! - a variable: a dot, then identifiers `[A-Za-z_][A-Za-z0-9_]*` joined by dots (`.Run.Name`),
//!   case-sensitive, with optional whitespace around it;
//! - a string literal, the way to write literal braces: `{{"{{"}}` (double-quoted with Go's
//!   backslash escapes, or a raw `` `...` `` string); it is output as written, never escaped,
//!   because it is the author's text, not a value;
//! - a comment `{{/* ... */}}`, which outputs nothing (as in Go it must start right at `{{`);
//! - Go's trim markers: `{{- ` drops the whitespace before the action, ` -}}` the whitespace after
//!   it. As in Go, the marker needs whitespace on its inner side (`{{-3}}` is not a trim).
//!
//! Anything else in an action (`if`, `range`, `end`, pipelines, function calls, `$x`, `.` alone)
//! is a syntax error naming it. Text outside actions, single braces and a `}}` without `{{`
//! included, is copied verbatim.
//!
//! The same guarantees as the Flyte 1 engine (`notify::template`): one pass, left to right, so a
//! substituted value is never read as template text; the output is bounded while it is built;
//! values are escaped for where the output goes; unknown variables are refused by name.

use std::borrow::Cow;

/// How a substituted value is escaped, by where the template's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Plain text: subjects, text/plain bodies. Values as they are.
    Text,
    /// HTML: `&<>"'` escaped.
    Html,
    /// Inside a JSON string literal (the SDK writes bodies with json.dumps, so variables sit
    /// inside "..."): escaped as JSON string content, without the surrounding quotes.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A variable the event does not have: carries the name as written, e.g. ".Run.Nmae", and
    /// the known names, sorted and comma-joined with their dots (empty when `render`'s lookup
    /// was the only judge, since a lookup cannot list what it knows).
    #[error("unknown variable {{{{{name}}}}}{}", unknown_detail(.name, .known))]
    Unknown { name: String, known: String },
    /// `{{` without `}}`, or an action that is not a variable (if/range/pipelines/functions):
    /// says what and at which byte offset of the template.
    #[error("template syntax error at byte {offset}: {message}")]
    Syntax { offset: usize, message: String },
    /// The output would exceed `max_bytes`.
    #[error("the rendered text would exceed {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
}

/// The tail of an Unknown message: the likely typo's correction, then what is known.
fn unknown_detail(name: &str, known: &str) -> String {
    if known.is_empty() {
        return String::new();
    }
    let candidates: Vec<&str> = known.split(", ").map(without_dot).collect();
    let near = crate::config::nearest(without_dot(name), &candidates)
        .map(|n| format!(" (did you mean {{{{.{n}}}}}?)"))
        .unwrap_or_default();
    format!("{near}; known: {known}")
}

fn without_dot(name: &str) -> &str {
    name.strip_prefix('.').unwrap_or(name)
}

/// Checks `template` against the variable names `known` (without the leading dot, e.g.
/// "Run.Name"): syntax, and that every variable is known. Enqueue calls this and refuses with
/// the field named.
pub fn check(template: &str, known: &[&str]) -> Result<(), TemplateError> {
    for piece in Pieces::new(template) {
        if let Piece::Variable(name) = piece?
            && !known.contains(&name)
        {
            let mut listed: Vec<String> = known.iter().map(|k| format!(".{k}")).collect();
            listed.sort();
            return Err(TemplateError::Unknown {
                name: format!(".{name}"),
                known: listed.join(", "),
            });
        }
    }
    Ok(())
}

/// Renders `template` in one pass: each `{{ .Name }}` is replaced by `lookup("Name")` escaped
/// by `escape` (a name `lookup` does not know is TemplateError::Unknown), text outside actions
/// is copied verbatim, and the output never exceeds `max_bytes` (stop early, do not build a
/// huge string first).
///
/// The returned `Cow` may only borrow from the name (or be `'static`): a lookup that borrows
/// the event's own strings does not type-check here, so such callers use [`render_with`].
pub fn render(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<Cow<'_, str>>,
    escape: Escape,
    max_bytes: usize,
) -> Result<String, TemplateError> {
    render_pieces(template, lookup, escape, max_bytes)
}

/// [`render`] with a lookup whose values borrow from the caller's data (lifetime `'v`), so no
/// value is copied before it is escaped into the output.
pub fn render_with<'v>(
    template: &str,
    lookup: impl Fn(&str) -> Option<Cow<'v, str>>,
    escape: Escape,
    max_bytes: usize,
) -> Result<String, TemplateError> {
    render_pieces(template, lookup, escape, max_bytes)
}

fn render_pieces<'t, 'v>(
    template: &'t str,
    lookup: impl Fn(&'t str) -> Option<Cow<'v, str>>,
    escape: Escape,
    max_bytes: usize,
) -> Result<String, TemplateError> {
    let mut out = Bounded::new(max_bytes, template.len());
    for piece in Pieces::new(template) {
        match piece? {
            Piece::Text(text) => out.push(text)?,
            Piece::Literal(text) => out.push(&text)?,
            Piece::Variable(name) => {
                let value = lookup(name).ok_or_else(|| TemplateError::Unknown {
                    name: format!(".{name}"),
                    known: String::new(),
                })?;
                out.push_escaped(&value, escape)?;
            }
        }
    }
    Ok(out.text)
}

/// A string that refuses to grow past its bound, checked before each append.
struct Bounded {
    text: String,
    max_bytes: usize,
}

impl Bounded {
    fn new(max_bytes: usize, hint: usize) -> Bounded {
        Bounded {
            text: String::with_capacity(hint.min(max_bytes)),
            max_bytes,
        }
    }

    fn push(&mut self, s: &str) -> Result<(), TemplateError> {
        if s.len() > self.max_bytes - self.text.len() {
            return Err(TemplateError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        self.text.push_str(s);
        Ok(())
    }

    /// Appends `value` escaped, runs of characters that need no escape as one slice each, so
    /// that a huge value fails at the bound rather than after being escaped whole.
    fn push_escaped(&mut self, value: &str, escape: Escape) -> Result<(), TemplateError> {
        let mut plain = 0;
        for (i, c) in value.char_indices() {
            let replacement: Cow<'static, str> = match (escape, c) {
                (Escape::Text, _) => continue,
                (Escape::Html, '&') => "&#38;".into(),
                (Escape::Html, '<') => "&#60;".into(),
                (Escape::Html, '>') => "&#62;".into(),
                (Escape::Html, '"') => "&#34;".into(),
                (Escape::Html, '\'') => "&#39;".into(),
                (Escape::Json, '"') => "\\\"".into(),
                (Escape::Json, '\\') => "\\\\".into(),
                (Escape::Json, '\n') => "\\n".into(),
                (Escape::Json, '\r') => "\\r".into(),
                (Escape::Json, '\t') => "\\t".into(),
                (Escape::Json, c) if c < ' ' => format!("\\u{:04x}", c as u32).into(),
                _ => continue,
            };
            self.push(&value[plain..i])?;
            self.push(&replacement)?;
            plain = i + c.len_utf8();
        }
        self.push(&value[plain..])
    }
}

/// What a template is made of, in order.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'t> {
    /// Template text, already trimmed by the markers around it.
    Text(&'t str),
    /// A string literal's value.
    Literal(Cow<'t, str>),
    /// A variable's name without the leading dot: "Run.Name".
    Variable(&'t str),
}

/// A parsed `{{ ... }}`: what it outputs (nothing for a comment), its trim markers, and the
/// byte after its `}}`.
struct Action<'t> {
    piece: Option<Piece<'t>>,
    trim_before: bool,
    trim_after: bool,
    end: usize,
}

/// The pieces of a template, left to right in one pass: each byte is read once, and after the
/// first error the iterator ends.
struct Pieces<'t> {
    src: &'t str,
    pos: usize,
    /// The previous action ended with ` -}}`: the next text loses its leading whitespace.
    trim_next: bool,
    /// An action already parsed (to know whether it trims the text before it), not yet given.
    pending: Option<Piece<'t>>,
}

impl<'t> Pieces<'t> {
    fn new(src: &'t str) -> Pieces<'t> {
        Pieces {
            src,
            pos: 0,
            trim_next: false,
            pending: None,
        }
    }
}

impl<'t> Iterator for Pieces<'t> {
    type Item = Result<Piece<'t>, TemplateError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(piece) = self.pending.take() {
                return Some(Ok(piece));
            }
            if self.pos >= self.src.len() {
                return None;
            }
            let rest = &self.src[self.pos..];
            let (mut text, action) = match rest.find("{{") {
                None => (rest, None),
                Some(i) => match action(self.src, self.pos + i) {
                    Ok(a) => (&rest[..i], Some(a)),
                    Err(e) => {
                        self.pos = self.src.len();
                        return Some(Err(e));
                    }
                },
            };
            if self.trim_next {
                text = text.trim_start_matches(is_space);
            }
            match action {
                None => {
                    self.pos = self.src.len();
                    self.trim_next = false;
                }
                Some(a) => {
                    if a.trim_before {
                        text = text.trim_end_matches(is_space);
                    }
                    self.pos = a.end;
                    self.trim_next = a.trim_after;
                    self.pending = a.piece;
                }
            }
            if !text.is_empty() {
                return Some(Ok(Piece::Text(text)));
            }
        }
    }
}

/// Go's whitespace inside actions and for trim markers.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn syntax(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax {
        offset,
        message: message.into(),
    }
}

/// Keywords of Go's template language, refused by name.
const KEYWORDS: [&str; 10] = [
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// Parses the action whose `{{` is at `start`.
fn action(src: &str, start: usize) -> Result<Action<'_>, TemplateError> {
    let b = src.as_bytes();
    let mut p = start + 2;
    let trim_before = b.get(p) == Some(&b'-') && b.get(p + 1).is_some_and(|c| is_space(*c as char));
    if trim_before {
        p += 2;
    }
    if src[p..].starts_with("/*") {
        return comment(src, start, p, trim_before);
    }
    let token_start = skip_space(src, p);
    let unclosed = || syntax(start, "`{{` is never closed by `}}`");
    if token_start >= src.len() {
        return Err(unclosed());
    }
    // An action with no `}}` anywhere after it is reported as unclosed whatever it holds
    // (literals excepted: theirs may close inside them), rather than by its first odd token.
    if !matches!(b[token_start], b'"' | b'`') && !src[token_start..].contains("}}") {
        return Err(unclosed());
    }
    if close(src, token_start, token_start > p).is_some() {
        return Err(syntax(
            start,
            "empty action: write a variable like {{.Run.Name}}",
        ));
    }
    let (piece, token_end) = token(src, start, token_start)?;
    let after = skip_space(src, token_end);
    if let Some((trim_after, end)) = close(src, after, after > token_end) {
        return Ok(Action {
            piece: Some(piece),
            trim_before,
            trim_after,
            end,
        });
    }
    let written = &src[token_start..token_end];
    Err(match b.get(after) {
        None => unclosed(),
        Some(b'|') => syntax(
            after,
            format!(
                "only variables like {{{{.Run.Name}}}} are supported, not pipelines ({{{{{written} | ...}}}})"
            ),
        ),
        Some(b'-') if src[after..].starts_with("-}}") => {
            syntax(after, "`-}}` trims only after whitespace: write ` -}}`")
        }
        Some(_) => syntax(
            after,
            format!(
                "only one variable per action: `{written}` is followed by {}",
                next_token(src, after)
            ),
        ),
    })
}

/// The end of an action at `p`: `}}`, or `-}}` after whitespace (`spaced`). Returns whether it
/// trims the text after it, and the byte after the `}}`.
fn close(src: &str, p: usize, spaced: bool) -> Option<(bool, usize)> {
    let rest = &src[p..];
    if rest.starts_with("}}") {
        Some((false, p + 2))
    } else if spaced && rest.starts_with("-}}") {
        Some((true, p + 3))
    } else {
        None
    }
}

fn skip_space(src: &str, p: usize) -> usize {
    p + src[p..].len() - src[p..].trim_start_matches(is_space).len()
}

/// `{{/* ... */}}`, whose `/*` is at `p`: as in Go, `*/` must be followed directly by `}}` or by
/// one whitespace character and `-}}`.
fn comment(
    src: &str,
    start: usize,
    p: usize,
    trim_before: bool,
) -> Result<Action<'_>, TemplateError> {
    let Some(close_at) = src[p + 2..].find("*/") else {
        return Err(syntax(start, "comment `{{/*` is never closed by `*/}}`"));
    };
    let q = p + 2 + close_at + 2;
    let rest = &src[q..];
    let (trim_after, end) = if rest.starts_with("}}") {
        (false, q + 2)
    } else if rest.starts_with(|c: char| is_space(c)) && rest[1..].starts_with("-}}") {
        (true, q + 4)
    } else {
        return Err(syntax(
            q,
            "a comment must end right at the action's end: `*/}}` or `*/ -}}`",
        ));
    };
    Ok(Action {
        piece: None,
        trim_before,
        trim_after,
        end,
    })
}

/// The one token of an action, at `p` (not whitespace, not `}}`): a variable or a string
/// literal; anything else is an error naming it. Returns the piece and the byte after it.
fn token(src: &str, start: usize, p: usize) -> Result<(Piece<'_>, usize), TemplateError> {
    let b = src.as_bytes();
    let not = |what: String| {
        syntax(
            p,
            format!("only variables like {{{{.Run.Name}}}} are supported, not {what}"),
        )
    };
    match b[p] {
        b'.' => {
            if !b.get(p + 1).is_some_and(|c| is_ident_start(*c)) {
                return Err(not("{{.}} (the whole event): name a field".into()));
            }
            let end = variable_end(src, p)?;
            Ok((Piece::Variable(&src[p + 1..end]), end))
        }
        b'"' => quoted(src, p),
        b'`' => raw(src, p),
        b'$' => Err(not(format!("template variables ({})", next_token(src, p)))),
        b'(' => Err(not("parenthesized pipelines".into())),
        b'|' => Err(not("pipelines".into())),
        b'-' if p == start + 2 => Err(syntax(
            p,
            "`{{-` trims only when followed by whitespace: write `{{- .Run.Name }}`",
        )),
        c if is_ident_start(c) => {
            let word = &src[p..ident_end(b, p)];
            let after = skip_space(src, p + word.len());
            Err(not(if KEYWORDS.contains(&word) {
                format!("{{{{{word} ...}}}}")
            } else if matches!(word, "true" | "false" | "nil") {
                format!("constants ({{{{{word}}}}})")
            } else if src[after..].starts_with("}}") || src[after..].starts_with("-}}") {
                format!("{{{{{word}}}}}: a variable starts with a dot, as in {{{{.{word}}}}}")
            } else {
                format!("function calls ({{{{{word} ...}}}})")
            }))
        }
        _ => Err(syntax(
            p,
            format!(
                "unexpected {} in an action: only variables like {{{{.Run.Name}}}} are supported",
                next_token(src, p)
            ),
        )),
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn ident_end(b: &[u8], mut p: usize) -> usize {
    while b
        .get(p)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        p += 1;
    }
    p
}

/// The end of the variable whose dot is at `p` (followed by an identifier): `.A.B.C`.
fn variable_end(src: &str, mut p: usize) -> Result<usize, TemplateError> {
    let b = src.as_bytes();
    loop {
        // b[p] is a dot.
        if !b.get(p + 1).is_some_and(|c| is_ident_start(*c)) {
            return Err(syntax(
                p,
                format!(
                    "a `.` in a variable must be followed by a field name, as in .Run.Name (found {})",
                    next_token(src, p + 1)
                ),
            ));
        }
        p = ident_end(b, p + 1);
        if b.get(p) != Some(&b'.') {
            return Ok(p);
        }
    }
}

/// A few characters at `p`, quoted, to name what was found there.
fn next_token(src: &str, p: usize) -> String {
    let rest = &src[p..];
    if rest.is_empty() {
        return "the end of the template".into();
    }
    let word: String = rest
        .chars()
        .take_while(|c| !is_space(*c) && *c != '}')
        .take(20)
        .collect();
    if word.is_empty() {
        format!("`{}`", rest.chars().next().unwrap_or_default())
    } else {
        format!("`{word}`")
    }
}

/// A double-quoted Go string literal at `p`, with Go's backslash escapes (octal ones excepted,
/// and `\x` only below 0x80, so the value is always UTF-8).
fn quoted(src: &str, p: usize) -> Result<(Piece<'_>, usize), TemplateError> {
    // Stays empty, and the literal borrowed, unless an escape needs the value rebuilt.
    let mut value = String::new();
    let mut plain = p + 1;
    let mut chars = src[p + 1..].char_indices().map(|(i, c)| (p + 1 + i, c));
    let unterminated = || syntax(p, "string literal is never closed by `\"`");
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let piece = if value.is_empty() {
                    Cow::Borrowed(&src[p + 1..i])
                } else {
                    value.push_str(&src[plain..i]);
                    Cow::Owned(value)
                };
                return Ok((Piece::Literal(piece), i + 1));
            }
            '\n' => return Err(unterminated()),
            '\\' => {
                value.push_str(&src[plain..i]);
                let (_, e) = chars.next().ok_or_else(unterminated)?;
                let simple = match e {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                let c = match (simple, e) {
                    (Some(c), _) => c,
                    (None, 'x' | 'u' | 'U') => {
                        let digits = escape_digits(e);
                        let hex: String = (&mut chars).take(digits).map(|(_, c)| c).collect();
                        let code = (hex.len() == digits)
                            .then(|| u32::from_str_radix(&hex, 16).ok())
                            .flatten()
                            .filter(|code| e != 'x' || *code < 0x80);
                        code.and_then(char::from_u32).ok_or_else(|| {
                            syntax(
                                i,
                                format!("`\\{e}{hex}` is not a valid escape in a string literal"),
                            )
                        })?
                    }
                    (None, e) => {
                        return Err(syntax(
                            i,
                            format!(
                                "`\\{e}` is not an escape this string literal knows (\\\" \\\\ \\n \\t \\r \\a \\b \\f \\v \\x \\u \\U)"
                            ),
                        ));
                    }
                };
                value.push(c);
                plain = i + 2 + escape_digits(e);
            }
            _ => {}
        }
    }
    Err(unterminated())
}

/// How many hex digits follow the escape letter `e` (all of them ASCII once validated).
fn escape_digits(e: char) -> usize {
    match e {
        'x' => 2,
        'u' => 4,
        'U' => 8,
        _ => 0,
    }
}

/// A raw Go string literal at `p`: no escapes, newlines allowed, carriage returns dropped (as
/// Go's spec says for raw strings).
fn raw(src: &str, p: usize) -> Result<(Piece<'_>, usize), TemplateError> {
    let Some(len) = src[p + 1..].find('`') else {
        return Err(syntax(p, "raw string literal is never closed by '`'"));
    };
    let body = &src[p + 1..p + 1 + len];
    let value = if body.contains('\r') {
        Cow::Owned(body.replace('\r', ""))
    } else {
        Cow::Borrowed(body)
    };
    Ok((Piece::Literal(value), p + len + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 5] = ["Run.Name", "Run.Project", "Run.Domain", "Phase", "Error"];

    /// Each known variable's value is `<` + its name + `>`, so a test sees which one came out.
    fn named(name: &str) -> Option<Cow<'_, str>> {
        KNOWN
            .contains(&name)
            .then(|| Cow::Owned(format!("<{name}>")))
    }

    fn text(template: &str) -> Result<String, TemplateError> {
        render(template, &named, Escape::Text, usize::MAX)
    }

    fn syntax_at(template: &str) -> (usize, String) {
        assert_eq!(
            check(template, &KNOWN).as_ref().err(),
            text(template).as_ref().err(),
            "check and render disagree on {template:?}"
        );
        match text(template) {
            Err(TemplateError::Syntax { offset, message }) => (offset, message),
            other => panic!("{template:?}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn variables_with_and_without_spaces() {
        assert_eq!(
            text(
                "Run {{.Run.Name}} in {{ .Run.Project }}/{{\t.Run.Domain\n}}: {{.Phase}}{{.Error}}"
            )
            .unwrap(),
            "Run <Run.Name> in <Run.Project>/<Run.Domain>: <Phase><Error>"
        );
        assert!(check("{{ .Run.Name }}{{.Phase}}", &KNOWN).is_ok());
    }

    #[test]
    fn text_outside_actions_is_verbatim() {
        for t in [
            "",
            "plain",
            "a { b } c",
            "}} no opening",
            "{ .Run.Name }",
            "é{ü}",
            "}}}}",
        ] {
            assert_eq!(text(t).unwrap(), t, "{t:?}");
            assert!(check(t, &KNOWN).is_ok(), "{t:?}");
        }
        assert_eq!(text("{x}{{.Phase}}}").unwrap(), "{x}<Phase>}");
    }

    #[test]
    fn trim_markers_remove_whitespace_on_their_side() {
        assert_eq!(text("a \n\t {{- .Phase }} b").unwrap(), "a<Phase> b");
        assert_eq!(text("a {{ .Phase -}} \r\n b").unwrap(), "a <Phase>b");
        assert_eq!(text("a  {{- .Phase -}}  b").unwrap(), "a<Phase>b");
        // Trimming stops at the first non-space, and only reaches the neighbouring text.
        assert_eq!(
            text("x {{.Phase -}}  {{- .Error}}").unwrap(),
            "x <Phase><Error>"
        );
        assert_eq!(text("{{- .Phase -}}").unwrap(), "<Phase>");
        // The whitespace Go's marker needs may be a newline.
        assert_eq!(text("a {{-\n.Phase\n-}} b").unwrap(), "a<Phase>b");
        // A value's own whitespace is never trimmed.
        let spaced = |_: &str| Some(Cow::Borrowed("  v  "));
        assert_eq!(
            render_with("[{{- .X -}}]", spaced, Escape::Text, 100).unwrap(),
            "[  v  ]"
        );
    }

    #[test]
    fn trim_markers_follow_gos_rule_on_spaces() {
        let (offset, message) = syntax_at("ab{{-.Phase}}");
        assert_eq!(offset, 4);
        assert!(
            message.contains("`{{-` trims only when followed by whitespace"),
            "{message}"
        );
        let (offset, message) = syntax_at("{{ .Phase-}}");
        assert_eq!(offset, 9);
        assert!(message.contains("` -}}`"), "{message}");
        let (offset, _) = syntax_at("{{-}}");
        assert_eq!(offset, 2);
    }

    #[test]
    fn string_literals_write_literal_braces() {
        assert_eq!(text(r#"{{"{{"}}.Run.Name}}"#).unwrap(), "{{.Run.Name}}");
        assert_eq!(text(r#"{{ "}}" }}"#).unwrap(), "}}");
        assert_eq!(
            text(r#"{{"a\"b\\c\n\t\u00e9\U0001F600\x41"}}"#).unwrap(),
            "a\"b\\c\n\té😀A"
        );
        assert_eq!(text("{{`raw \\n {{ \"`}}").unwrap(), "raw \\n {{ \"");
        assert_eq!(text("{{`a\r\nb`}}").unwrap(), "a\nb");
        assert_eq!(text("a {{- \"x\" -}} b").unwrap(), "axb");
    }

    #[test]
    fn string_literals_are_not_escaped() {
        // The author's own text, like the text around actions.
        let out = render(r#"<{{"<b>\"&"}}>"#, &named, Escape::Html, 100).unwrap();
        assert_eq!(out, "<<b>\"&>");
        let out = render(r#"{{"\""}}"#, &named, Escape::Json, 100).unwrap();
        assert_eq!(out, "\"");
    }

    #[test]
    fn bad_string_literals_say_where() {
        let (offset, message) = syntax_at(r#"ab {{ "open }}"#);
        assert_eq!(offset, 6);
        assert!(message.contains("never closed"), "{message}");
        let (offset, _) = syntax_at("{{\"a\nb\"}}");
        assert_eq!(offset, 2);
        let (offset, message) = syntax_at(r#"{{"a\qb"}}"#);
        assert_eq!(offset, 4);
        assert!(message.contains("`\\q`"), "{message}");
        let (offset, message) = syntax_at(r#"{{"\u12"}}"#);
        assert_eq!(offset, 3);
        assert!(message.contains("`\\u12\"}`"), "{message}");
        let (offset, _) = syntax_at(r#"{{"\xff"}}"#);
        assert_eq!(offset, 3);
        let (offset, _) = syntax_at(r#"{{"\ud800"}}"#);
        assert_eq!(offset, 3);
        let (offset, _) = syntax_at("{{`never");
        assert_eq!(offset, 2);
        let (offset, message) = syntax_at(r#"{{"a" "b"}}"#);
        assert_eq!(offset, 6);
        assert!(
            message.contains("`\"a\"` is followed by `\"b\"`"),
            "{message}"
        );
    }

    #[test]
    fn comments_output_nothing() {
        assert_eq!(text("a{{/* note */}}b").unwrap(), "ab");
        assert_eq!(
            text("a {{- /* spans\n lines, {{.Nope}} */ -}} b").unwrap(),
            "ab"
        );
        assert_eq!(text("a{{/**/ -}}  b").unwrap(), "ab");
        // Nothing inside a comment is checked, not even names.
        assert!(check("{{/* {{.Nope}} {{if}} */}}", &KNOWN).is_ok());
    }

    #[test]
    fn comments_must_sit_at_the_delimiters() {
        let (offset, message) = syntax_at("x {{/* open");
        assert_eq!(offset, 2);
        assert!(message.contains("never closed"), "{message}");
        let (offset, message) = syntax_at("{{/* c */ }}");
        assert_eq!(offset, 9);
        assert!(message.contains("must end right at"), "{message}");
        let (offset, _) = syntax_at("{{ /* c */}}");
        assert_eq!(offset, 3);
    }

    #[test]
    fn unterminated_actions_name_their_opening() {
        for (t, at) in [
            ("{{", 0),
            ("ab {{ .Run.Name", 3),
            ("ab {{ .Run.Name }", 3),
            ("{{.Phase}} x {{ ", 13),
            ("{{- .Phase", 0),
        ] {
            let (offset, message) = syntax_at(t);
            assert_eq!(offset, at, "{t:?}");
            assert!(message.contains("never closed"), "{t:?}: {message}");
        }
    }

    #[test]
    fn everything_but_variables_is_refused_by_name() {
        for (t, at, says) in [
            ("{{if .Error}}x{{end}}", 2, "not {{if ...}}"),
            ("{{ range .Runs }}", 3, "not {{range ...}}"),
            ("{{end}}", 2, "not {{end ...}}"),
            (
                "{{ .Run.Name | printf \"%q\" }}",
                13,
                "not pipelines ({{.Run.Name | ...}})",
            ),
            (
                "{{printf \"%s\" .Phase}}",
                2,
                "function calls ({{printf ...}})",
            ),
            ("{{ $x := .Phase }}", 3, "template variables (`$x`)"),
            ("{{.}}", 2, "{{.}} (the whole event)"),
            ("{{ . }}", 3, "{{.}} (the whole event)"),
            (
                "{{ name }}",
                3,
                "{{name}}: a variable starts with a dot, as in {{.name}}",
            ),
            ("{{true}}", 2, "constants ({{true}})"),
            ("{{(.Phase)}}", 2, "parenthesized pipelines"),
            ("{{ 3 }}", 3, "unexpected `3`"),
            ("{{ é }}", 3, "unexpected `é`"),
            ("{{.Run.Name\u{a0}}}", 11, "followed by `\u{a0}`"),
            ("{{{.Phase}}}", 2, "unexpected `{.Phase`"),
            ("{{{{.Phase}}", 2, "unexpected `{{.Phase`"),
            (
                "{{ .Phase .Error }}",
                10,
                "`.Phase` is followed by `.Error`",
            ),
            ("{{.Run.}}", 6, "must be followed by a field name"),
            ("{{.Run..Name}}", 6, "must be followed by a field name"),
            ("{{.9}}", 2, "{{.}}"),
            ("{{}}", 0, "empty action"),
            ("{{ -}}", 0, "empty action"),
        ] {
            let (offset, message) = syntax_at(t);
            assert_eq!(offset, at, "{t:?}: {message}");
            assert!(message.contains(says), "{t:?}: {message}");
        }
    }

    #[test]
    fn the_first_error_wins_and_ends_the_scan() {
        let (offset, _) = syntax_at("{{.Phase}} {{if}} {{");
        assert_eq!(offset, 13);
    }

    #[test]
    fn unknown_variables_are_named_as_written_with_a_suggestion() {
        let e = check("ok {{.Phase}} {{ .Run.Nmae }}", &KNOWN).unwrap_err();
        assert_eq!(
            e,
            TemplateError::Unknown {
                name: ".Run.Nmae".into(),
                known: ".Error, .Phase, .Run.Domain, .Run.Name, .Run.Project".into(),
            }
        );
        assert_eq!(
            e.to_string(),
            "unknown variable {{.Run.Nmae}} (did you mean {{.Run.Name}}?); known: .Error, \
             .Phase, .Run.Domain, .Run.Name, .Run.Project"
        );
        // Case matters, as in Go, but the suggestion sees through it.
        let e = check("{{.phase}}", &KNOWN).unwrap_err();
        assert!(e.to_string().contains("did you mean {{.Phase}}?"), "{e}");
        // Nothing close: no suggestion, just the list.
        let e = check("{{.Workflow.Version}}", &KNOWN).unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
        assert!(e.to_string().contains("known: .Error,"), "{e}");
    }

    #[test]
    fn render_takes_a_closure_of_owned_values() {
        // What `render`'s signature lets a closure return: values it owns.
        let phase = String::from("succeeded");
        assert_eq!(
            render(
                "{{.Phase}}",
                &|name| (name == "Phase").then(|| Cow::Owned(phase.clone())),
                Escape::Text,
                100
            )
            .unwrap(),
            "succeeded"
        );
    }

    #[test]
    fn render_refuses_what_the_lookup_does_not_know() {
        assert_eq!(
            text("{{.Phase}}{{.Run.Nmae}}"),
            Err(TemplateError::Unknown {
                name: ".Run.Nmae".into(),
                known: String::new(),
            })
        );
        assert_eq!(
            text("{{.Run.Nmae}}").unwrap_err().to_string(),
            "unknown variable {{.Run.Nmae}}"
        );
    }

    #[test]
    fn values_are_never_read_as_template_text() {
        let sly = |name: &str| {
            Some(Cow::Borrowed(match name {
                "Error" => "{{.Run.Name}} {{if}} {{- \"x\" -}} {{",
                _ => "p",
            }))
        };
        assert_eq!(
            render_with("{{.Error}}/{{.Run.Name}}", sly, Escape::Text, 1000).unwrap(),
            "{{.Run.Name}} {{if}} {{- \"x\" -}} {{/p"
        );
    }

    #[test]
    fn the_bound_is_exact() {
        let t = "ab{{.Phase}}cd"; // "ab<Phase>cd": 11 bytes
        assert_eq!(render(t, &named, Escape::Text, 11).unwrap(), "ab<Phase>cd");
        assert_eq!(
            render(t, &named, Escape::Text, 10),
            Err(TemplateError::TooLarge { max_bytes: 10 })
        );
        // Escaping counts: `<` and `>` become five bytes each in HTML.
        assert_eq!(
            render("{{.Phase}}", &named, Escape::Html, 15)
                .unwrap()
                .len(),
            15
        );
        assert!(render("{{.Phase}}", &named, Escape::Html, 14).is_err());
        assert_eq!(render("", &named, Escape::Text, 0).unwrap(), "");
        assert!(render("x", &named, Escape::Text, 0).is_err());
    }

    #[test]
    fn many_large_values_stop_at_the_bound() {
        let big = "<\"".repeat(500_000); // 1 MB, escaping to 5 MB in HTML
        let lookup = |_: &str| Some(Cow::Borrowed(big.as_str()));
        let t = "{{.Error}}".repeat(10_000); // would expand to 10 GB as text
        for escape in [Escape::Text, Escape::Html, Escape::Json] {
            assert_eq!(
                render_with(&t, lookup, escape, 3_000_000),
                Err(TemplateError::TooLarge {
                    max_bytes: 3_000_000
                }),
                "{escape:?}"
            );
        }
    }

    #[test]
    fn json_values_round_trip_inside_quotes() {
        for value in [
            "plain",
            "quote \" and backslash \\ and \\\"",
            "newline\n tab\t cr\r nul\0 bell\x07 esc\x1b del\x7f",
            "unicode é ü 日本 😀 \u{2028}\u{2029} \u{feff}",
            "{{.Run.Name}} </script> & '",
            "",
        ] {
            let lookup = |_: &str| Some(Cow::Borrowed(value));
            let out = render_with("{{.Error}}", lookup, Escape::Json, 1000).unwrap();
            let parsed: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
            assert_eq!(parsed, value, "{out}");
            // And in a body built the way the SDK builds one.
            let body = r#"{"text": "Run failed: {{.Error}}"}"#;
            let out = render_with(body, lookup, Escape::Json, 1000).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(parsed["text"], format!("Run failed: {value}"));
        }
    }

    #[test]
    fn html_values_carry_no_markup() {
        let value = "<script>alert('x')</script> & \"quoted\" <<>>";
        let lookup = |_: &str| Some(Cow::Borrowed(value));
        let out = render_with("<p>{{.Error}}</p>", lookup, Escape::Html, 1000).unwrap();
        let inner = out
            .strip_prefix("<p>")
            .unwrap()
            .strip_suffix("</p>")
            .unwrap();
        assert!(!inner.contains(['<', '>', '"', '\'']), "{out}");
        // The same entities as the Flyte 1 renderer, so both kinds of email read alike.
        assert_eq!(inner, crate::notify::render::escape_html(value));
    }

    #[test]
    fn text_values_are_as_they_are() {
        let value = "<b>\"x\"\\\n";
        let lookup = |_: &str| Some(Cow::Borrowed(value));
        assert_eq!(
            render_with("{{.Error}}", lookup, Escape::Text, 100).unwrap(),
            value
        );
    }

    #[test]
    fn long_pathological_templates_are_read_once() {
        // Each of these fails or succeeds at once; a rescanning parser would take minutes.
        let opens = "{{ ".repeat(200_000);
        assert!(matches!(
            text(&opens),
            Err(TemplateError::Syntax { offset: 0, .. })
        ));
        let text_only = "{ } }} ".repeat(200_000);
        assert_eq!(text(&text_only).unwrap(), text_only);
        let comment = format!("{{{{/*{}", "* /".repeat(200_000));
        assert!(text(&comment).is_err());
        let many = "{{.Phase}}".repeat(100_000);
        assert_eq!(text(&many).unwrap().len(), "<Phase>".len() * 100_000);
    }
}
