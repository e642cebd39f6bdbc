//! HTML sanitising for `html` chat messages: an allow-list of formatting tags written
//! without attributes (`<b>`, `<p>`, `<br/>`, ...) is kept; every other `<`, `>` and stray
//! `&` is escaped, so no element, attribute, script or URL from a message reaches a page.

/// Tags kept (lower-case, attribute-free).
pub const ALLOWED: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "s",
    "strike",
    "p",
    "br",
    "div",
    "span",
    "ul",
    "ol",
    "li",
    "code",
    "pre",
    "blockquote",
];

/// Sanitise `html`: allowed tags pass as `<tag>`/`</tag>`/`<br/>`; all other markup
/// becomes text.
pub fn sanitize_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 16);
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => match allowed_tag(rest) {
                Some((tag, len)) => {
                    out.push_str(&tag);
                    rest = &rest[len..];
                    continue;
                }
                None => out.push_str("&lt;"),
            },
            '>' => out.push_str("&gt;"),
            '&' => match entity_len(rest) {
                Some(len) => {
                    out.push_str(&rest[..len]);
                    rest = &rest[len..];
                    continue;
                }
                None => out.push_str("&amp;"),
            },
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// If `s` starts with an allowed tag, its normalised form and its length in `s`.
fn allowed_tag(s: &str) -> Option<(String, usize)> {
    let end = s.find('>')?;
    let inner = &s[1..end];
    let (closing, inner) = match inner.strip_prefix('/') {
        Some(i) => (true, i),
        None => (false, inner),
    };
    let (inner, self_closing) = match inner.trim_end().strip_suffix('/') {
        Some(i) => (i, true),
        None => (inner, false),
    };
    let name = inner.trim_end().to_ascii_lowercase();
    if !ALLOWED.contains(&name.as_str()) || (closing && self_closing) {
        return None;
    }
    let tag = match (closing, self_closing || name == "br") {
        (true, _) => format!("</{name}>"),
        (false, true) => format!("<{name}/>"),
        (false, false) => format!("<{name}>"),
    };
    Some((tag, end + 1))
}

/// If `s` starts with a character reference (`&amp;`, `&#39;`, `&#x1F600;`), its length.
fn entity_len(s: &str) -> Option<usize> {
    let end = s[1..].find(';')? + 1;
    let body = &s[1..end];
    let ok = match body.strip_prefix('#') {
        Some(num) => match num.strip_prefix(['x', 'X']) {
            Some(hex) => !hex.is_empty() && hex.len() <= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            None => !num.is_empty() && num.len() <= 7 && num.bytes().all(|b| b.is_ascii_digit()),
        },
        None => !body.is_empty() && body.len() <= 32 && body.bytes().all(|b| b.is_ascii_alphanumeric()),
    };
    ok.then_some(end + 1)
}

#[cfg(test)]
mod tests {
    use super::sanitize_html as s;

    #[test]
    fn formatting_tags_pass() {
        assert_eq!(s("<b>bold</b> <I>it</I><br><br />x<P>p</p>"), "<b>bold</b> <i>it</i><br/><br/>x<p>p</p>");
    }

    #[test]
    fn everything_else_is_text() {
        assert_eq!(s("<img src=x onerror=alert(1)>"), "&lt;img src=x onerror=alert(1)&gt;");
        assert_eq!(s("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(s("<b onclick=x>y</b>"), "&lt;b onclick=x&gt;y</b>");
        assert_eq!(s("<a href=\"javascript:x\">l</a>"), "&lt;a href=\"javascript:x\"&gt;l&lt;/a&gt;");
        assert_eq!(s("a < b > c"), "a &lt; b &gt; c");
        assert_eq!(s("<"), "&lt;");
        assert_eq!(s("</b/>"), "&lt;/b/&gt;");
    }

    #[test]
    fn entities_survive_and_bare_ampersands_are_escaped() {
        assert_eq!(s("&amp; &#39; &#x1F600; & &x y;"), "&amp; &#39; &#x1F600; &amp; &amp;x y;");
        assert_eq!(s("héllo ✓"), "héllo ✓");
    }
}
