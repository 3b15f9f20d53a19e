//! A short, loggable description of an error answer's body, so that an operator can tell
//! a gateway's HTML page from the API's own problem without anyone reading raw bodies. It
//! keeps only what describes the failure (a problem's `title` and `detail`, an HTML page's
//! title): never `errors[]`, whose values come from the records, nor any other JSON.

use serde_json::Value;

/// At most this many characters in an excerpt.
pub(crate) const MAX_EXCERPT_CHARS: usize = 120;
/// Bytes of a non-JSON body looked at: the title or first text is near the top.
const SCANNED_BYTES: usize = 16 * 1024;

/// The excerpt of `body`, `None` when it is empty (or only whitespace).
pub(crate) fn excerpt(body: &[u8]) -> Option<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let (text, if_blank) = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => (json_text(&obj), "JSON without title or detail"),
        // A bare JSON value could be anything the server echoed: describe, do not show.
        Ok(_) => (String::new(), "JSON without title or detail"),
        Err(_) => {
            let head = String::from_utf8_lossy(&body[..body.len().min(SCANNED_BYTES)]);
            if looks_binary(&head) {
                return Some(format!("{} bytes of binary data", body.len()));
            }
            (html_text(&head), "markup without text")
        }
    };
    let clean = clean(&text);
    if clean.is_empty() {
        return Some(if_blank.to_string());
    }
    Some(cut(&clean, MAX_EXCERPT_CHARS))
}

/// `title: detail` of a problem; an OAuth error (`error`, `error_description`) or a
/// gateway's `message` when it has neither.
fn json_text(obj: &serde_json::Map<String, Value>) -> String {
    let field = |name: &str| obj.get(name).and_then(Value::as_str).unwrap_or("").trim();
    let parts = |names: &[&str]| {
        names
            .iter()
            .map(|n| field(n))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ")
    };
    let problem = parts(&["title", "detail"]);
    if problem.is_empty() {
        parts(&["error", "error_description", "message"])
    } else {
        problem
    }
}

/// Undecodable bytes or control characters in more than a tenth of the text.
fn looks_binary(text: &str) -> bool {
    let total = text.chars().count();
    let odd = text
        .chars()
        .filter(|&c| c == '\u{FFFD}' || (c.is_control() && !c.is_whitespace()))
        .count();
    odd * 10 > total
}

/// The page's `<title>`, else its text with tags, comments, scripts and styles removed.
/// Plain text passes through unchanged.
fn html_text(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if let Some(open) = lower.find("<title")
        && let Some(start) = lower[open..].find('>').map(|i| open + i + 1)
        && let Some(len) = lower[start..].find("</title")
    {
        let title = decode_entities(&text[start..start + len]);
        if !clean(&title).is_empty() {
            return title;
        }
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        out.push(' ');
        let tag = &rest[lt..];
        let tag_lower = tag.to_ascii_lowercase();
        let end = if tag_lower.starts_with("<!--") {
            tag.find("-->").map(|i| i + 3)
        } else if tag_lower.starts_with("<script") {
            tag_lower.find("</script>").map(|i| i + 9)
        } else if tag_lower.starts_with("<style") {
            tag_lower.find("</style>").map(|i| i + 8)
        } else {
            tag.find('>').map(|i| i + 1)
        };
        match end {
            Some(end) => rest = &tag[end..],
            // An unclosed tag: the rest is markup, not text.
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    decode_entities(&out)
}

/// The few entities that show up in error pages; others stay as written.
fn decode_entities(text: &str) -> String {
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Whitespace collapsed to single spaces; control, bidi-override and replacement
/// characters removed (they could forge or garble a log line).
fn clean(text: &str) -> String {
    let kept: String = text
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|&c| {
            !c.is_control()
                && c != '\u{FFFD}'
                && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, ending in `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_gives_its_title_or_else_its_first_text() {
        let page = b"<html><head><title>403 Forbidden</title></head>\
                     <body><h1>Forbidden</h1>gateway</body></html>";
        assert_eq!(excerpt(page).as_deref(), Some("403 Forbidden"));
        let untitled = b"<!DOCTYPE html>\n<html><head><style>h1 { color: red }</style>\
            <script>var x = '<b>';</script></head>\n<body>\n  <h1>Bad&nbsp;Gateway</h1>\
            <!-- upstream: 10.0.0.7 -->\n<p>nginx &amp; friends</p></body></html>";
        assert_eq!(
            excerpt(untitled).as_deref(),
            Some("Bad Gateway nginx & friends")
        );
        assert_eq!(
            excerpt(b"<html><title>  </title><body>Denied</body>").as_deref(),
            Some("Denied")
        );
        assert_eq!(
            excerpt(b"upstream connect error\r\n\tor disconnect").as_deref(),
            Some("upstream connect error or disconnect")
        );
    }

    #[test]
    fn a_problem_gives_title_and_detail_never_its_errors() {
        let body = br#"{"type":"about:blank","title":"Invalid Records","status":400,
            "detail":"some records are invalid",
            "errors":[{"record_id":"R-1","field":"student_id","message":"Jane Doe"}]}"#;
        let text = excerpt(body).unwrap();
        assert_eq!(text, "Invalid Records: some records are invalid");
        assert!(!text.contains("R-1") && !text.contains("Jane"));
        let oauth = br#"{"error":"invalid_client","error_description":"bad secret"}"#;
        assert_eq!(
            excerpt(oauth).as_deref(),
            Some("invalid_client: bad secret")
        );
        // JSON with nothing that describes a failure is described, never shown.
        let echo = br#"{"records":[{"student_id":"Jane Doe"}]}"#;
        assert_eq!(
            excerpt(echo).as_deref(),
            Some("JSON without title or detail")
        );
        assert_eq!(
            excerpt(br#"["Jane Doe"]"#).as_deref(),
            Some("JSON without title or detail")
        );
    }

    #[test]
    fn binary_garbage_is_only_measured() {
        let garbage: Vec<u8> = (0u8..=255).rev().cycle().take(300).collect();
        assert_eq!(
            excerpt(&garbage).as_deref(),
            Some("300 bytes of binary data")
        );
        assert_eq!(
            excerpt(b"\x00\x01\x02ok").as_deref(),
            Some("5 bytes of binary data")
        );
    }

    #[test]
    fn control_characters_go_and_long_text_is_cut_on_a_char_boundary() {
        assert_eq!(
            excerpt("Denied\u{1b}[31m \u{202E}x".as_bytes()).as_deref(),
            Some("Denied[31m x")
        );
        let long = "é".repeat(500);
        let text = excerpt(long.as_bytes()).unwrap();
        assert_eq!(text.chars().count(), MAX_EXCERPT_CHARS);
        assert!(text.ends_with('…'));
        let detail = format!(
            r#"{{"title":"Bad Request","detail":"{}"}}"#,
            "x ".repeat(200)
        );
        assert!(excerpt(detail.as_bytes()).unwrap().chars().count() <= MAX_EXCERPT_CHARS);
    }

    #[test]
    fn an_empty_body_has_no_excerpt() {
        assert_eq!(excerpt(b""), None);
        assert_eq!(excerpt(b" \r\n"), None);
    }
}
