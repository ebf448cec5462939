//! The text/plain part of an email whose body template is HTML: what a person would have typed,
//! with each link's URL written out, never the markup.

use html2text::Handle;
use html2text::render::{RichAnnotation, TaggedLine};

/// Element names an email body is written with. A `<` before anything else is how plain text
/// uses angle brackets (`a < b`, `<https://…>`, `<oncall@example.com>`), not markup.
const TAGS: &[&str] = &[
    "a",
    "b",
    "big",
    "blockquote",
    "body",
    "br",
    "caption",
    "center",
    "code",
    "dd",
    "div",
    "dl",
    "dt",
    "em",
    "font",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "i",
    "img",
    "li",
    "main",
    "meta",
    "ol",
    "p",
    "pre",
    "s",
    "section",
    "small",
    "span",
    "strike",
    "strong",
    "style",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "tt",
    "u",
    "ul",
];

/// Whether a body template is HTML: it has an opening or closing tag of a known element, or a
/// doctype. Decided on the template alone: the values put into it are caller input, and the HTML
/// part escapes them, so they can never add markup.
pub fn is_html(template: &str) -> bool {
    let bytes = template.as_bytes();
    template.match_indices('<').any(|(i, _)| {
        let rest = &bytes[i + 1..];
        if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"!doctype") {
            return true;
        }
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        let name_len = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let (name, after) = rest.split_at(name_len);
        matches!(
            after.first(),
            Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
        ) && TAGS.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(name))
    })
}

/// Paragraphs are laid out this wide before a line is broken: a text part has the paragraphs the
/// HTML has, and mail clients wrap them to their window. A narrow width would break the URLs.
const WIDTH: usize = 1000;

/// Elements nested deeper than this keep their text but lose their own layout. html2text indents
/// and copies every line once per level of nesting, so without this bound a page of nested lists
/// would cost the square of its size to lay out.
const MAX_DEPTH: usize = 32;

/// The text/plain part for `html`, lines separated by `\n`.
pub fn to_text(html: &str) -> String {
    let config = html2text::config::rich()
        .no_table_borders()
        .no_link_wrapping()
        .allow_width_overflow();
    let lines = config.parse_html(html.as_bytes()).and_then(|dom| {
        flatten_below(&dom.document, MAX_DEPTH);
        let tree = config.dom_to_render_tree(&dom)?;
        config.render_to_lines(tree, WIDTH)
    });
    match lines {
        Ok(lines) => join(lines),
        // html2text fails on read errors and on widths it cannot fit; a string cannot fail to
        // read and overflow is allowed, so this is not expected. An empty text part is still
        // better than markup in it.
        Err(e) => {
            tracing::warn!(error = %e, "could not make a text part from the HTML body");
            String::new()
        }
    }
}

fn is_element(node: &Handle) -> bool {
    matches!(node.data, html2text::Element { .. })
}

/// Replaces what is inside each element at `max_depth` with the text nodes it contains, in order.
fn flatten_below(root: &Handle, max_depth: usize) {
    let mut stack = vec![(root.clone(), 0)];
    while let Some((node, depth)) = stack.pop() {
        if depth < max_depth {
            stack.extend(
                node.children
                    .borrow()
                    .iter()
                    .map(|c| (c.clone(), depth + 1)),
            );
            continue;
        }
        if !node.children.borrow().iter().any(is_element) {
            continue;
        }
        let mut leaves = Vec::new();
        let mut todo: Vec<Handle> = node.children.borrow().iter().rev().cloned().collect();
        while let Some(n) = todo.pop() {
            if is_element(&n) {
                todo.extend(n.children.borrow().iter().rev().cloned());
            } else {
                leaves.push(n);
            }
        }
        *node.children.borrow_mut() = leaves;
    }
}

/// A run of link text being written, and where it last had text.
struct Link {
    url: String,
    shown: String,
    line: usize,
}

impl Link {
    /// Writes the URL after the link's text, unless the text already shows it (FlyteAdmin's
    /// documented body links a URL with itself) or it only points within the message.
    fn close(self, lines: &mut [String]) {
        if self.url.starts_with('#') || shows_url(&self.shown, &self.url) {
            return;
        }
        let line = &mut lines[self.line];
        line.truncate(line.trim_end().len());
        line.push_str(" (");
        line.push_str(&self.url);
        line.push(')');
    }
}

fn shows_url(text: &str, url: &str) -> bool {
    // FlyteAdmin's documentation writes `href=\http://…`; the backslash is a typo, not the URL.
    let url = url.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let core = ["https://", "http://", "mailto:"]
        .iter()
        .find_map(|scheme| {
            url.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &url[scheme.len()..])
        })
        .unwrap_or(url)
        .trim_end_matches('/');
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    core.is_empty() || text.contains(core)
}

fn join(rendered: Vec<TaggedLine<Vec<RichAnnotation>>>) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(rendered.len());
    let mut link: Option<Link> = None;
    for line in &rendered {
        lines.push(String::new());
        let n = lines.len() - 1;
        for piece in line.tagged_strings() {
            let url = piece.tag.iter().find_map(|a| match a {
                RichAnnotation::Link(url) => Some(url.as_str()),
                _ => None,
            });
            if link.as_ref().map(|l| l.url.as_str()) != url {
                if let Some(done) = link.take() {
                    done.close(&mut lines);
                }
                link = url.map(|url| Link {
                    url: url.to_string(),
                    shown: String::new(),
                    line: n,
                });
            }
            if let Some(l) = &mut link {
                l.shown.push_str(&piece.s);
                l.line = n;
            }
            lines[n].push_str(&piece.s);
        }
    }
    if let Some(done) = link.take() {
        done.close(&mut lines);
    }
    // Table cells are padded to their column; trailing blanks only make lines look longer.
    let lines: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
    let first = lines
        .iter()
        .position(|l| !l.is_empty())
        .unwrap_or(lines.len());
    let last = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(first, |i| i + 1);
    lines[first..last].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_told_by_its_tags_not_by_angle_brackets() {
        for html in [
            "<html><body>x</body></html>",
            "Execution {{ name }}: <a href=\"u\">console</a>",
            "<A HREF=u>x</A>",
            "a<br>b",
            "a<br/>b",
            "<p>x",
            "x</p>",
            "<!DOCTYPE html>x",
            "<table>\n<tr><td>x</td></tr></table>",
            "View details at\n  <a href=\\http://example.com/x>\n  http://example.com/x</a>.",
            "<div\nclass=x>y</div>",
        ] {
            assert!(is_html(html), "{html:?}");
        }
        for plain in [
            "Execution {{ name }} has {{ phase }}.{{ error }}",
            "x < 0 and y > 1",
            "see <https://console.example.com/x>",
            "write to <oncall@example.com>",
            "x<y and y>z",
            "<br",
            "<pp>",
            "<>",
            "",
        ] {
            assert!(!is_html(plain), "{plain:?}");
        }
    }

    #[test]
    fn a_link_keeps_its_url_once() {
        assert_eq!(
            to_text("<p>See <a href=\"https://c.example/x?a=1&amp;b=2\">the console</a>.</p>"),
            "See the console (https://c.example/x?a=1&b=2)."
        );
        // Linked with itself, as FlyteAdmin's documentation does (backslash included).
        assert_eq!(
            to_text("at <a href=\\http://e.example/p/x>\n  http://e.example/p/x</a>."),
            "at http://e.example/p/x."
        );
        assert_eq!(
            to_text("<a href=\"mailto:o@e.example\">o@e.example</a> or <a href=\"#top\">top</a>"),
            "o@e.example or top"
        );
    }

    #[test]
    fn a_long_link_is_not_broken() {
        let url = format!("https://e.example/{}", "segment/".repeat(40));
        let text = to_text(&format!(
            "<p>{} <a href=\"{url}\">{url}</a> and <a href=\"{url}\">here</a></p>",
            "word ".repeat(30)
        ));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(text.matches(url.as_str()).count(), 2, "{text}");
    }

    #[test]
    fn layout_becomes_lines_and_markup_disappears() {
        let text = to_text(
            "<!DOCTYPE html><html><head><title>T</title><style>p { color: red }</style></head>\
             <body><h2>Failed</h2><p>Execution <strong>e</strong> has <em>failed</em>.</p>\
             <table><tr><td>Workflow</td><td><code>p/d/wf@v1</code></td></tr>\
             <tr><td>Launch plan</td><td>p/d/lp@v2</td></tr></table>\
             <ul><li>one</li><li>two</li></ul><pre>x &lt; 1\n  y</pre></body></html>",
        );
        assert_eq!(
            text,
            "## Failed\n\nExecution e has failed.\n\nWorkflow    p/d/wf@v1\nLaunch plan p/d/lp@v2\n\
             * one\n* two\n\nx < 1\n  y"
        );
    }

    #[test]
    fn deep_nesting_keeps_its_text() {
        let depth = 3 * MAX_DEPTH;
        let html = format!(
            "{}deep <a href=\"https://e.example/\">link</a> text{}",
            "<div><blockquote>".repeat(depth),
            "</blockquote></div>".repeat(depth)
        );
        let text = to_text(&html);
        assert!(text.ends_with("deep link text"), "{text}");
        assert!(!text.contains('<'), "{text}");
    }
}
