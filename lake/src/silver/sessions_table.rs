//! Builds `view_sessions` rows from all events of the sessions to (re)compute.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder,
    Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit,
};

use super::packed_events::{pack, unpack};
use super::session::{EventKind, PlaybackEvent, event_order, summarize};
use crate::error::LakeError;

/// Columns of `view_sessions`, in order: the contract's, `last_event_at`,
/// and the session's events packed (see [`super::packed_events`]).
pub const COLUMNS: [&str; 18] = [
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
    PACKED_EVENTS,
];

/// The `view_sessions` column holding each session's events, packed.
pub const PACKED_EVENTS: &str = "packed_events";

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
        Field::new(PACKED_EVENTS, DataType::Binary, false),
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

/// Column `name` of `batch` (a batch of table `table`) cast to `to`.
fn cast_column(
    batch: &RecordBatch,
    table: &str,
    name: &str,
    to: &DataType,
) -> Result<ArrayRef, LakeError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| LakeError::ColumnType {
            table: table.into(),
            column: name.into(),
        })?;
    Ok(cast(array, to)?)
}

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
        let column = |name: &str, to: &DataType| cast_column(batch, "enriched_events", name, to);
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

    /// How the session attributes of two events tied in session order
    /// compare: by their texts in the order of [`TEXT_INPUTS`], then by
    /// `duration_s`. So a run takes the same first event whatever order it
    /// reads tied events in (two partitions, one offset and microsecond, the
    /// video enriched under two metadata files).
    fn attributes_order(a: (&EventColumns, usize), b: (&EventColumns, usize)) -> Ordering {
        let ((a, i), (b, j)) = (a, b);
        (0..TEXT_INPUTS.len())
            .map(|column| a.text(column, i).cmp(&b.text(column, j)))
            .find(|order| order.is_ne())
            .unwrap_or(Ordering::Equal)
            .then_with(|| {
                let (x, y) = (Self::f64(&a.duration_s, i), Self::f64(&b.duration_s, j));
                match (x, y) {
                    (Some(x), Some(y)) => (x + 0.0).total_cmp(&(y + 0.0)),
                    (x, y) => x.is_some().cmp(&y.is_some()),
                }
            })
    }
}

struct SessionEvents {
    /// (batch, row) of the first event in [`event_order`].
    first: (usize, usize),
    first_event: PlaybackEvent,
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
            let session_id = cols.text(SESSION_ID, row).unwrap_or_default();
            match index.get(session_id) {
                Some(&i) => {
                    let session = &mut sessions[i].1;
                    let (first_batch, first_row) = session.first;
                    let earlier = event_order(&event, &session.first_event).then_with(|| {
                        EventColumns::attributes_order(
                            (cols, row),
                            (&columns[first_batch], first_row),
                        )
                    });
                    if earlier.is_lt() {
                        session.first_event = event;
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
                            first_event: event,
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
    let mut packed_events = BinaryBuilder::with_capacity(n, n * 80);
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
        started_at.append_value(session.first_event.event_time_us);
        last_event_at.append_value(session.last_event_time_us);
        day.append_value(session.first_event.event_time_us.div_euclid(86_400_000_000) as i32);
        event_count.append_value(summary.event_count);
        watch_s.append_value(summary.watch_s);
        max_position_s.append_value(summary.max_position_s);
        exit_position_s.append_value(summary.exit_position_s);
        duration_s.append_option(duration);
        pct_watched.append_option(duration.map(|d| pct_watched_of(summary.max_position_s, d)));
        completed.append_option(duration.map(|d| summary.max_position_s >= 0.95 * d));
        // In session order: `summarize` sorted them.
        packed_events.append_value(pack(&session.events));
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
        Arc::new(packed_events.finish()),
    ];
    Ok(RecordBatch::try_new(sessions_schema(), arrays)?)
}

/// The `view_sessions` columns a session is recomputed from when new events
/// arrive: the first event's attributes and all of its events, packed.
/// The attributes are the [`TEXT_INPUTS`] before `event_type`, in order, as
/// [`unpacked_events`] reads them.
pub const RECOMPUTE_COLUMNS: [&str; 9] = [
    TEXT_INPUTS[SESSION_ID],
    TEXT_INPUTS[USER_KEY],
    TEXT_INPUTS[VIDEO_ID],
    TEXT_INPUTS[GENRE],
    TEXT_INPUTS[CREATOR],
    TEXT_INPUTS[REGION],
    TEXT_INPUTS[DEVICE],
    "duration_s",
    PACKED_EVENTS,
];

/// The events packed in `sessions` (rows of `view_sessions` with
/// [`RECOMPUTE_COLUMNS`]) as rows of [`INPUT_COLUMNS`], what
/// [`build_sessions`] reads. Each event carries its session's attributes: of
/// a session's events only the first one's are read, and a recomputed
/// session's first event is either the one its row was built from or a new
/// event, which brings its own.
pub fn unpacked_events(sessions: &RecordBatch) -> Result<RecordBatch, LakeError> {
    let column = |name: &str, to: &DataType| cast_column(sessions, "view_sessions", name, to);
    let attributes: Vec<ArrayRef> = TEXT_INPUTS[..EVENT_TYPE]
        .iter()
        .map(|name| column(name, &DataType::Utf8))
        .collect::<Result<_, _>>()?;
    let attributes: Vec<&StringArray> = attributes.iter().map(|a| a.as_string::<i32>()).collect();
    let durations = column("duration_s", &DataType::Float64)?;
    let durations = durations.as_primitive::<Float64Type>();
    let packed = column(PACKED_EVENTS, &DataType::Binary)?;
    let packed = packed.as_binary::<i32>();

    let mut texts: Vec<StringBuilder> = TEXT_INPUTS.iter().map(|_| StringBuilder::new()).collect();
    let mut position_s = Float64Builder::new();
    let mut seek_to_s = Float64Builder::new();
    let mut event_time = Int64Builder::new();
    let mut kafka_offset = Int64Builder::new();
    let mut duration_s = Float64Builder::new();
    for row in 0..sessions.num_rows() {
        let events = unpack(packed.value(row)).map_err(|source| LakeError::PackedEvents {
            session_id: attributes[SESSION_ID].value(row).to_string(),
            source,
        })?;
        let duration = (!durations.is_null(row)).then(|| durations.value(row));
        for event in events {
            for (builder, values) in texts.iter_mut().zip(&attributes) {
                builder.append_option((!values.is_null(row)).then(|| values.value(row)));
            }
            texts[EVENT_TYPE].append_value(event.event_type.name());
            position_s.append_value(event.position_s);
            seek_to_s.append_option(event.seek_to_s);
            event_time.append_value(event.event_time_us);
            kafka_offset.append_value(event.kafka_offset);
            duration_s.append_option(duration);
        }
    }
    let mut fields: Vec<Field> = TEXT_INPUTS
        .iter()
        .map(|name| Field::new(*name, DataType::Utf8, true))
        .collect();
    let mut arrays: Vec<ArrayRef> = texts
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    for (name, kind, array) in [
        (
            "position_s",
            DataType::Float64,
            Arc::new(position_s.finish()) as ArrayRef,
        ),
        ("seek_to_s", DataType::Float64, Arc::new(seek_to_s.finish())),
        ("event_time", DataType::Int64, Arc::new(event_time.finish())),
        (
            "kafka_offset",
            DataType::Int64,
            Arc::new(kafka_offset.finish()),
        ),
        (
            "duration_s",
            DataType::Float64,
            Arc::new(duration_s.finish()),
        ),
    ] {
        fields.push(Field::new(name, kind, true));
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
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
    use deltalake::arrow::array::{BinaryArray, Float64Array, Int64Array};
    use proptest::prelude::*;

    use super::super::session::strategies::kind;
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
    fn events_tied_in_session_order_give_the_same_attributes_in_any_order() {
        // One stop read twice, from two partitions at one offset and
        // microsecond, enriched under two metadata files.
        let stop = PlaybackEvent {
            event_type: EventKind::Stop,
            position_s: 10.0,
            seek_to_s: None,
            event_time_us: 5,
            kafka_offset: 3,
        };
        let older = input_batch(&[stop], Some(900.0));
        let newer = input_batch(&[stop], Some(600.0));
        let one = build_sessions(&[older.clone(), newer.clone()]).unwrap();
        let other = build_sessions(&[newer, older]).unwrap();
        assert_eq!(one, other);
        let duration = one.column_by_name("duration_s").unwrap();
        assert_eq!(duration.as_primitive::<Float64Type>().value(0), 600.0);
    }

    /// Rows of [`INPUT_COLUMNS`] for events of session `s`, each with
    /// attributes of its own (its region names its offset): only the first
    /// event's may reach the session's row.
    fn input_batch(events: &[PlaybackEvent], duration_s: Option<f64>) -> RecordBatch {
        let n = events.len();
        let text = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
        let same = |value: &str| text(vec![value.to_string(); n]);
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("session_id", same("s")),
            ("user_key", same("u")),
            ("video_id", same("v")),
            ("genre", same("drama")),
            ("creator", same("c")),
            (
                "region",
                text(
                    events
                        .iter()
                        .map(|e| format!("r{}", e.kafka_offset))
                        .collect(),
                ),
            ),
            ("device", same("tv")),
            (
                "event_type",
                text(
                    events
                        .iter()
                        .map(|e| e.event_type.name().to_string())
                        .collect(),
                ),
            ),
            (
                "position_s",
                Arc::new(Float64Array::from_iter_values(
                    events.iter().map(|e| e.position_s),
                )),
            ),
            (
                "seek_to_s",
                Arc::new(Float64Array::from_iter(events.iter().map(|e| e.seek_to_s))),
            ),
            (
                "event_time",
                Arc::new(Int64Array::from_iter_values(
                    events.iter().map(|e| e.event_time_us),
                )),
            ),
            (
                "kafka_offset",
                Arc::new(Int64Array::from_iter_values(
                    events.iter().map(|e| e.kafka_offset),
                )),
            ),
            (
                "duration_s",
                Arc::new(Float64Array::from(vec![duration_s; n])),
            ),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    /// Events of one session with distinct offsets, times that may tie and
    /// arrive out of order, and the share of them that came first.
    fn session_split() -> impl Strategy<Value = (Vec<PlaybackEvent>, Vec<bool>)> {
        proptest::collection::vec(
            (
                kind(),
                0.0..150.0f64,
                proptest::option::of(0.0..150.0f64),
                0i64..20,
                any::<bool>(),
            ),
            1..14,
        )
        .prop_map(|drawn| {
            let mut events = Vec::new();
            let mut earlier = Vec::new();
            for (offset, (kind, position_s, seek_to_s, t, first)) in drawn.into_iter().enumerate() {
                events.push(PlaybackEvent {
                    event_type: kind,
                    position_s,
                    seek_to_s: seek_to_s.filter(|_| kind == EventKind::Seek),
                    event_time_us: 1_795_503_600_000_000 + t * 1_000_000,
                    kafka_offset: 1_000 + offset as i64,
                });
                earlier.push(first);
            }
            (events, earlier)
        })
    }

    proptest! {
        /// What silver does with a late event: the session computed from the
        /// events it had, then again from that row's packed events and the
        /// new ones, equals the session computed from all at once, in every
        /// column (the packed events included).
        #[test]
        fn a_session_recomputed_from_its_packed_row_equals_one_computed_at_once(
            (events, earlier) in session_split(),
            known_video in any::<bool>(),
        ) {
            let duration = known_video.then_some(100.0);
            let (before, after): (Vec<_>, Vec<_>) =
                events.iter().zip(&earlier).partition(|(_, first)| **first);
            let before: Vec<PlaybackEvent> = before.into_iter().map(|(e, _)| *e).collect();
            let after: Vec<PlaybackEvent> = after.into_iter().map(|(e, _)| *e).collect();
            let at_once = build_sessions(&[input_batch(&events, duration)]).unwrap();
            let mut input = Vec::new();
            if !before.is_empty() {
                let row = build_sessions(&[input_batch(&before, duration)]).unwrap();
                input.push(unpacked_events(&row).unwrap());
            }
            if !after.is_empty() {
                input.push(input_batch(&after, duration));
            }
            let recomputed = build_sessions(&input).unwrap();
            prop_assert_eq!(recomputed, at_once);
        }
    }

    #[test]
    fn an_unreadable_packed_value_names_its_session() {
        let row = build_sessions(&[input_batch(
            &[PlaybackEvent {
                event_type: EventKind::Play,
                position_s: 0.0,
                seek_to_s: None,
                event_time_us: 0,
                kafka_offset: 0,
            }],
            None,
        )])
        .unwrap();
        let index = row.schema().index_of(PACKED_EVENTS).unwrap();
        let mut columns = row.columns().to_vec();
        columns[index] = Arc::new(BinaryArray::from_iter_values([[9u8]]));
        let broken = RecordBatch::try_new(row.schema(), columns).unwrap();
        let error = unpacked_events(&broken).unwrap_err();
        assert!(
            matches!(&error, LakeError::PackedEvents { session_id, .. } if session_id == "s"),
            "{error}"
        );
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
