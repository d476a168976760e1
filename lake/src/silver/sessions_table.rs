//! Builds `view_sessions` rows from all events of the sessions to (re)compute.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit,
};

use super::session::{EventKind, PlaybackEvent, summarize};
use crate::error::LakeError;

/// Columns of `view_sessions`, in order.
pub const COLUMNS: [&str; 17] = [
    "session_id",
    "user_key",
    "video_id",
    "genre",
    "creator",
    "region",
    "device",
    "started_at",
    "last_event_at",
    "day",
    "event_count",
    "watch_s",
    "max_position_s",
    "exit_position_s",
    "duration_s",
    "pct_watched",
    "completed",
];

pub fn sessions_schema() -> SchemaRef {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("session_id", DataType::Utf8, false),
        Field::new("user_key", DataType::Utf8, false),
        Field::new("video_id", DataType::Utf8, false),
        Field::new("genre", DataType::Utf8, true),
        Field::new("creator", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, false),
        Field::new("device", DataType::Utf8, true),
        Field::new("started_at", utc.clone(), false),
        Field::new("last_event_at", utc, false),
        Field::new("day", DataType::Date32, false),
        Field::new("event_count", DataType::Int64, false),
        Field::new("watch_s", DataType::Float64, false),
        Field::new("max_position_s", DataType::Float64, false),
        Field::new("exit_position_s", DataType::Float64, false),
        Field::new("duration_s", DataType::Float64, true),
        Field::new("pct_watched", DataType::Float64, true),
        Field::new("completed", DataType::Boolean, true),
    ]))
}

/// The text columns of `enriched_events` a session is built from.
const TEXT_INPUTS: [&str; 8] = [
    "session_id",
    "user_key",
    "video_id",
    "genre",
    "creator",
    "region",
    "device",
    "event_type",
];

/// Every column of `enriched_events` a session is built from: what silver
/// reads back for sessions it recomputes.
pub const INPUT_COLUMNS: [&str; 13] = [
    TEXT_INPUTS[0],
    TEXT_INPUTS[1],
    TEXT_INPUTS[2],
    TEXT_INPUTS[3],
    TEXT_INPUTS[4],
    TEXT_INPUTS[5],
    TEXT_INPUTS[6],
    TEXT_INPUTS[7],
    "position_s",
    "seek_to_s",
    "event_time",
    "kafka_offset",
    "duration_s",
];

/// Positions in [`TEXT_INPUTS`] (read per event: no lookup by name).
const SESSION_ID: usize = 0;
const USER_KEY: usize = 1;
const VIDEO_ID: usize = 2;
const GENRE: usize = 3;
const CREATOR: usize = 4;
const REGION: usize = 5;
const DEVICE: usize = 6;
const EVENT_TYPE: usize = 7;

/// The columns of one input batch, cast once to plain types.
struct EventColumns {
    /// In the order of [`TEXT_INPUTS`].
    strings: Vec<StringArray>,
    event_time_us: ArrayRef,
    kafka_offset: ArrayRef,
    position_s: ArrayRef,
    seek_to_s: ArrayRef,
    duration_s: ArrayRef,
}

impl EventColumns {
    fn new(batch: &RecordBatch) -> Result<EventColumns, LakeError> {
        let column = |name: &str, to: &DataType| -> Result<ArrayRef, LakeError> {
            let array = batch
                .column_by_name(name)
                .ok_or_else(|| LakeError::ColumnType {
                    table: "enriched_events".into(),
                    column: name.into(),
                })?;
            Ok(cast(array, to)?)
        };
        let strings = TEXT_INPUTS
            .iter()
            .map(|name| Ok(column(name, &DataType::Utf8)?.as_string::<i32>().clone()))
            .collect::<Result<_, LakeError>>()?;
        Ok(EventColumns {
            strings,
            event_time_us: column("event_time", &DataType::Int64)?,
            kafka_offset: column("kafka_offset", &DataType::Int64)?,
            position_s: column("position_s", &DataType::Float64)?,
            seek_to_s: column("seek_to_s", &DataType::Float64)?,
            duration_s: column("duration_s", &DataType::Float64)?,
        })
    }

    fn text(&self, column: usize, row: usize) -> Option<&str> {
        let array = &self.strings[column];
        (!array.is_null(row)).then(|| array.value(row))
    }

    fn f64(array: &ArrayRef, row: usize) -> Option<f64> {
        let values = array.as_primitive::<Float64Type>();
        (!values.is_null(row)).then(|| values.value(row))
    }

    fn i64(array: &ArrayRef, row: usize) -> i64 {
        array.as_primitive::<Int64Type>().value(row)
    }
}

struct SessionEvents {
    /// (batch, row) of the first event by (event_time, kafka_offset).
    first: (usize, usize),
    first_key: (i64, i64),
    last_event_time_us: i64,
    events: Vec<PlaybackEvent>,
}

/// One row per session found in `events` (columns as selected by silver).
pub fn build_sessions(events: &[RecordBatch]) -> Result<RecordBatch, LakeError> {
    let columns: Vec<EventColumns> = events
        .iter()
        .map(EventColumns::new)
        .collect::<Result<_, _>>()?;
    // Sessions in order of first appearance, so that output is deterministic.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut sessions: Vec<(&str, SessionEvents)> = Vec::new();
    for (b, (batch, cols)) in events.iter().zip(&columns).enumerate() {
        for row in 0..batch.num_rows() {
            let Some(kind) = cols.text(EVENT_TYPE, row).and_then(EventKind::parse) else {
                continue;
            };
            let event = PlaybackEvent {
                event_type: kind,
                position_s: EventColumns::f64(&cols.position_s, row).unwrap_or(0.0),
                seek_to_s: EventColumns::f64(&cols.seek_to_s, row),
                event_time_us: EventColumns::i64(&cols.event_time_us, row),
                kafka_offset: EventColumns::i64(&cols.kafka_offset, row),
            };
            let key = (event.event_time_us, event.kafka_offset);
            let session_id = cols.text(SESSION_ID, row).unwrap_or_default();
            match index.get(session_id) {
                Some(&i) => {
                    let session = &mut sessions[i].1;
                    if key < session.first_key {
                        session.first_key = key;
                        session.first = (b, row);
                    }
                    session.last_event_time_us =
                        session.last_event_time_us.max(event.event_time_us);
                    session.events.push(event);
                }
                None => {
                    index.insert(session_id, sessions.len());
                    sessions.push((
                        session_id,
                        SessionEvents {
                            first: (b, row),
                            first_key: key,
                            last_event_time_us: event.event_time_us,
                            events: vec![event],
                        },
                    ));
                }
            }
        }
    }
    drop(index);

    let n = sessions.len();
    let mut session_id = StringBuilder::with_capacity(n, n * 24);
    let mut user_key = StringBuilder::with_capacity(n, n * 32);
    let mut video_id = StringBuilder::with_capacity(n, n * 10);
    let mut genre = StringBuilder::with_capacity(n, n * 8);
    let mut creator = StringBuilder::with_capacity(n, n * 12);
    let mut region = StringBuilder::with_capacity(n, n * 8);
    let mut device = StringBuilder::with_capacity(n, n * 6);
    let mut started_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut last_event_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut day = Date32Builder::with_capacity(n);
    let mut event_count = Int64Builder::with_capacity(n);
    let mut watch_s = Float64Builder::with_capacity(n);
    let mut max_position_s = Float64Builder::with_capacity(n);
    let mut exit_position_s = Float64Builder::with_capacity(n);
    let mut duration_s = Float64Builder::with_capacity(n);
    let mut pct_watched = Float64Builder::with_capacity(n);
    let mut completed = BooleanBuilder::with_capacity(n);
    for (id, mut session) in sessions {
        let (b, row) = session.first;
        let cols = &columns[b];
        let duration = EventColumns::f64(&cols.duration_s, row).filter(|d| *d > 0.0);
        let summary = summarize(&mut session.events, duration);
        session_id.append_value(id);
        user_key.append_option(cols.text(USER_KEY, row));
        video_id.append_option(cols.text(VIDEO_ID, row));
        genre.append_option(cols.text(GENRE, row));
        creator.append_option(cols.text(CREATOR, row));
        region.append_option(cols.text(REGION, row));
        device.append_option(cols.text(DEVICE, row));
        started_at.append_value(session.first_key.0);
        last_event_at.append_value(session.last_event_time_us);
        day.append_value(session.first_key.0.div_euclid(86_400_000_000) as i32);
        event_count.append_value(summary.event_count);
        watch_s.append_value(summary.watch_s);
        max_position_s.append_value(summary.max_position_s);
        exit_position_s.append_value(summary.exit_position_s);
        duration_s.append_option(duration);
        pct_watched.append_option(duration.map(|d| pct_watched_of(summary.max_position_s, d)));
        completed.append_option(duration.map(|d| summary.max_position_s >= 0.95 * d));
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(session_id.finish()),
        Arc::new(user_key.finish()),
        Arc::new(video_id.finish()),
        Arc::new(genre.finish()),
        Arc::new(creator.finish()),
        Arc::new(region.finish()),
        Arc::new(device.finish()),
        Arc::new(started_at.finish()),
        Arc::new(last_event_at.finish()),
        Arc::new(day.finish()),
        Arc::new(event_count.finish()),
        Arc::new(watch_s.finish()),
        Arc::new(max_position_s.finish()),
        Arc::new(exit_position_s.finish()),
        Arc::new(duration_s.finish()),
        Arc::new(pct_watched.finish()),
        Arc::new(completed.finish()),
    ];
    Ok(RecordBatch::try_new(sessions_schema(), arrays)?)
}

/// `100 * max_position_s / duration_s`, exactly 100 for a session watched to
/// the end: the position is capped at the duration, but the two roundings of
/// the formula can land one unit in the last place either side of 100, which
/// would fail the 0-100 range test or leave the view out of the 100% step.
fn pct_watched_of(max_position_s: f64, duration_s: f64) -> f64 {
    if max_position_s >= duration_s {
        100.0
    } else {
        (100.0 * max_position_s / duration_s).min(100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_watched_to_the_end_is_exactly_100_percent() {
        // Durations where 100 * d / d rounds to 100 +- 1 ulp.
        for d in [2707.5209514946896, 108.42703662427847, 1664.1432316152855] {
            assert_ne!(100.0 * d / d, 100.0, "{d} shows the rounding");
            assert_eq!(pct_watched_of(d, d), 100.0);
            assert!(pct_watched_of(d * 0.999_999, d) < 100.0);
        }
        assert_eq!(pct_watched_of(30.0, 120.0), 25.0);
        assert_eq!(pct_watched_of(0.0, 120.0), 0.0);
    }

    #[test]
    fn column_positions_name_the_text_inputs() {
        let named = [
            (SESSION_ID, "session_id"),
            (USER_KEY, "user_key"),
            (VIDEO_ID, "video_id"),
            (GENRE, "genre"),
            (CREATOR, "creator"),
            (REGION, "region"),
            (DEVICE, "device"),
            (EVENT_TYPE, "event_type"),
        ];
        for (position, name) in named {
            assert_eq!(TEXT_INPUTS[position], name);
        }
        assert_eq!(named.len(), TEXT_INPUTS.len());
    }
}
