//! Keeps secrets (API keys, tokens, passwords) out of logs, errors and files.
//!
//! Every log line passes through [`redact_text`] in the logger, and code that formats a URL or a
//! header for a human uses [`redact_url`] / [`redact_header`] on purpose as well: the logger is a
//! safety net, not the plan.

use std::fmt;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Query parameters and `key=value` names whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "token",
    "auth",
    "key",
    "password",
    "secret",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// HTTP headers whose values are secrets (compared case-insensitively).
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// A string that must never be shown. `Debug` and `Display` print [`MASK`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (a request), never for display.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Redacts the password of `user:password@host` and secret query parameters of a URL.
pub fn redact_url(url: &str) -> String {
    redact_text(&redact_userinfo(url))
}

/// The value to show for header `name`: masked when the header carries credentials.
pub fn redact_header<'a>(name: &str, value: &'a str) -> &'a str {
    if SECRET_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
        MASK
    } else {
        value
    }
}

/// Masks every `name=value` in free text whose name is a secret parameter, where `name` starts
/// the text or follows `?`, `&`, `;`, whitespace or a quote — as in URLs inside error messages —
/// and every credential header written as `Authorization: ...`.
pub fn redact_text(text: &str) -> String {
    let masked = redact_params(text);
    redact_header_lines(&masked)
}

fn redact_params(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || is_param_boundary(bytes[i - 1]);
        if at_boundary {
            if let Some(name_len) = secret_param_at(&text[i..]) {
                let value_start = i + name_len + 1;
                let value_end = text[value_start..]
                    .find(is_value_end)
                    .map_or(text.len(), |n| value_start + n);
                if value_end > value_start {
                    out.push_str(&text[copied..value_start]);
                    out.push_str(MASK);
                    copied = value_end;
                }
                i = value_end.max(i + 1);
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

fn is_param_boundary(b: u8) -> bool {
    matches!(b, b'?' | b'&' | b';' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'(' | b',')
}

fn is_value_end(c: char) -> bool {
    matches!(c, '&' | '#' | ' ' | '\t' | '\n' | '"' | '\'' | ')' | ',' | ';' | '>')
}

/// Length of the secret parameter name at the start of `s` when it is followed by `=`.
fn secret_param_at(s: &str) -> Option<usize> {
    let eq = s.find('=')?;
    let name = &s[..eq];
    SECRET_PARAMS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
        .then_some(eq)
}

fn redact_header_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&redact_header_line(line));
    }
    out
}

/// `... Authorization: Bearer abc` -> `... Authorization: ***` (the rest of the line is masked).
fn redact_header_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    for header in SECRET_HEADERS {
        let needle = format!("{header}:");
        if let Some(pos) = lower.find(&needle) {
            let starts_word = pos == 0 || !lower.as_bytes()[pos - 1].is_ascii_alphanumeric();
            if starts_word {
                let value_start = pos + needle.len();
                return format!("{} {MASK}", &line[..value_start]);
            }
        }
    }
    line.to_string()
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let shown = if userinfo.contains(':') {
                format!("{user}:{MASK}")
            } else {
                MASK.to_string()
            };
            format!("{}{}{}", &url[..scheme_end + 3], shown, &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_query_parameter_is_masked() {
        let url = "https://api.roboflow.com/ort/cars/3?api_key=SECRETKEY123&device=jetson&nocache=true";
        let shown = redact_url(url);
        assert_eq!(
            shown,
            "https://api.roboflow.com/ort/cars/3?api_key=***&device=jetson&nocache=true"
        );
    }

    #[test]
    fn secret_parameter_names_are_case_insensitive_and_anywhere_in_the_query() {
        let shown = redact_url("http://h/p?a=1&API_KEY=abc&Token=def#frag");
        assert_eq!(shown, "http://h/p?a=1&API_KEY=***&Token=***#frag");
    }

    #[test]
    fn parameters_that_only_end_in_a_secret_name_are_kept() {
        // `monkey=` ends in "key" but is not the `key` parameter.
        assert_eq!(redact_url("http://h/?monkey=banana"), "http://h/?monkey=banana");
        assert_eq!(redact_url("http://h/?keyframe=3"), "http://h/?keyframe=3");
    }

    #[test]
    fn url_inside_an_error_message_is_masked() {
        let msg = "GET https://h/x?api_key=s3cr3t failed: http status 500 (\"https://h/y?key=zz\")";
        let shown = redact_text(msg);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("zz\""), "{shown}");
        assert!(shown.contains("failed: http status 500"));
    }

    #[test]
    fn userinfo_password_is_masked() {
        assert_eq!(
            redact_url("https://user:hunter2@mirror.local/m.onnx"),
            "https://user:***@mirror.local/m.onnx"
        );
        assert_eq!(redact_url("https://tok@h/m"), "https://***@h/m");
        // An @ in the path is not userinfo.
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
    }

    #[test]
    fn credential_headers_are_masked() {
        assert_eq!(redact_header("Authorization", "Bearer abc"), MASK);
        assert_eq!(redact_header("x-api-key", "abc"), MASK);
        assert_eq!(redact_header("Content-Type", "text/plain"), "text/plain");
        let shown = redact_text("request headers: Authorization: Bearer abc.def");
        assert_eq!(shown, "request headers: Authorization: ***");
    }

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("topsecret");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "topsecret");
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        let msg = "downloaded 3 files (12.5 MiB) from https://h/m.onnx?v=2 in 1.2 s";
        assert_eq!(redact_text(msg), msg);
    }
}
