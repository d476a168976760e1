use thiserror::Error;

/// Why an input event was refused. `Display` is the readable reason sent in the
/// dead-letter `error` header; [`Rejection::kind`] is a stable label for metrics.
///
/// A reason never quotes an input value: values may be personal data, and an
/// unbounded one would make the header (and the dead-letter record) as large as
/// the input. The value itself is kept, byte for byte, in the record's payload.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Rejection {
    #[error("not valid json: {detail}")]
    NotJson { detail: String },
    #[error("does not match the event schema: {detail}")]
    Schema { detail: String },
    #[error("field `{field}` must not be empty")]
    EmptyField { field: &'static str },
    #[error("unknown event_type (expected play, pause, seek or stop)")]
    UnknownEventType,
    #[error("field `{field}` must be a number from 0 to 1000000000, got {}", shown(*.value))]
    BadNumber { field: &'static str, value: f64 },
    #[error("field `seek_to_s` is required for a seek event")]
    MissingSeekTarget,
    #[error("field `seek_to_s` must be absent or null for a {event_type} event")]
    UnexpectedSeekTarget { event_type: &'static str },
    #[error("field `event_time` is not an RFC 3339 time: {detail}")]
    BadTime { detail: String },
    #[error("record of {bytes} bytes is larger than the {limit}-byte limit of an event")]
    TooLarge { bytes: usize, limit: usize },
}

/// A number as a reason shows it: very large and very small ones in exponent
/// form, so that `1e308` or `-1e-300` read as that and not as 300 digits.
fn shown(value: f64) -> String {
    if value != 0.0 && !(1e-6..1e16).contains(&value.abs()) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

impl Rejection {
    /// A short, stable label (for counters and dashboards).
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::NotJson { .. } => "not_json",
            Rejection::Schema { .. } => "schema",
            Rejection::EmptyField { .. } => "empty_field",
            Rejection::UnknownEventType => "unknown_event_type",
            Rejection::BadNumber { .. } => "bad_number",
            Rejection::MissingSeekTarget => "missing_seek_target",
            Rejection::UnexpectedSeekTarget { .. } => "unexpected_seek_target",
            Rejection::BadTime { .. } => "bad_time",
            Rejection::TooLarge { .. } => "too_large",
        }
    }
}

/// The longest parser detail a reason carries.
const MAX_DETAIL_CHARS: usize = 160;

/// A parser's message without the input it quotes: every `"..."` becomes `"…"`
/// (serde_json quotes offending strings whole), and the rest is capped. serde
/// puts other values (numbers, booleans) and field names between backticks:
/// a name (lowercase letters and `_`) stays, anything else becomes `…`.
pub fn redact_input(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len().min(MAX_DETAIL_CHARS + 8));
    let mut chars = detail.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '`' {
            let quoted: String = chars.by_ref().take_while(|&inner| inner != '`').collect();
            let is_name = !quoted.is_empty()
                && quoted.len() <= 32
                && quoted.chars().all(|q| q.is_ascii_lowercase() || q == '_');
            out.push_str(if is_name { &quoted } else { "…" });
            out.push('`');
        }
        if c == '"' {
            out.push('…');
            // Skip to the closing quote; a backslash escapes the next char.
            while let Some(inner) = chars.next() {
                match inner {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            out.push('"');
        }
        if out.chars().count() >= MAX_DETAIL_CHARS {
            // A section just added may have passed the cap.
            out = out.chars().take(MAX_DETAIL_CHARS).collect();
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_quoted_input_and_caps_the_rest() {
        assert_eq!(
            redact_input(
                r#"invalid type: string "secret \"x\" value", expected f64 at line 1 column 9"#
            ),
            r#"invalid type: string "…", expected f64 at line 1 column 9"#
        );
        assert_eq!(
            redact_input("invalid type: integer `4155550123`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(
            redact_input("missing field `video_id`; invalid type: boolean `true`"),
            "missing field `video_id`; invalid type: boolean `true`"
        );
        // Redacting twice changes nothing more.
        let once = redact_input(r#"member `user_id`: integer `41`, string "x""#);
        assert_eq!(once, r#"member `user_id`: integer `…`, string "…""#);
        assert_eq!(redact_input(&once), once);
        let unterminated = redact_input(&format!("a \"{}", "x".repeat(1_000_000)));
        assert_eq!(unterminated, "a \"…\"");
        let long = redact_input(&"y".repeat(10_000));
        assert!(long.chars().count() <= MAX_DETAIL_CHARS + 1, "{long}");
        // A name between backticks that ends past the cap is cut at it too.
        let name_at_the_cap = format!("{} `{}`", "x".repeat(150), "a".repeat(30));
        assert_eq!(
            redact_input(&name_at_the_cap).chars().count(),
            MAX_DETAIL_CHARS + 1
        );
    }
}
