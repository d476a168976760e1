use thiserror::Error;

/// Why an input event was refused. `Display` is the readable reason sent in the
/// dead-letter `error` header; [`Rejection::kind`] is a stable label for metrics.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Rejection {
    #[error("not valid json: {detail}")]
    NotJson { detail: String },
    #[error("does not match the event schema: {detail}")]
    Schema { detail: String },
    #[error("field `{field}` must not be empty")]
    EmptyField { field: &'static str },
    #[error("unknown event_type {value:?} (expected play, pause, seek or stop)")]
    UnknownEventType { value: String },
    #[error("field `{field}` must be a finite number >= 0, got {value}")]
    BadNumber { field: &'static str, value: f64 },
    #[error("field `seek_to_s` is required for a seek event")]
    MissingSeekTarget,
    #[error("field `seek_to_s` must be absent or null for a {event_type} event")]
    UnexpectedSeekTarget { event_type: &'static str },
    #[error("field `event_time` {value:?} is not an RFC 3339 time: {detail}")]
    BadTime { value: String, detail: String },
}

impl Rejection {
    /// A short, stable label (for counters and dashboards).
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::NotJson { .. } => "not_json",
            Rejection::Schema { .. } => "schema",
            Rejection::EmptyField { .. } => "empty_field",
            Rejection::UnknownEventType { .. } => "unknown_event_type",
            Rejection::BadNumber { .. } => "bad_number",
            Rejection::MissingSeekTarget => "missing_seek_target",
            Rejection::UnexpectedSeekTarget { .. } => "unexpected_seek_target",
            Rejection::BadTime { .. } => "bad_time",
        }
    }
}
