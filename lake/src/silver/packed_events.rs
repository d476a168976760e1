//! A session's events packed into one `view_sessions` value (`packed_events`),
//! so that a late event recomputes its session from the session's own row
//! instead of finding the earlier events among all of `enriched_events`.
//!
//! Why: late events fall in every day, partition and file, so finding the
//! earlier events of a few thousand sessions decoded the `session_id` of every
//! enriched event (10M rows: 0.7-1.0 s of a 3 s incremental run). Their
//! sessions' rows are read anyway, to replace them.
//!
//! Pure. The format, version 1: a version byte, then per event in session
//! order (`event_time`, `kafka_offset`, then the ties of
//! [`super::session::event_order`]):
//! - a tag byte: the kind (0 play, 1 pause, 2 seek, 3 stop), plus 4 when a
//!   `seek_to_s` follows, plus 8 when `position_s` is in milliseconds, plus 16
//!   when `seek_to_s` is;
//! - `event_time` (µs) and `kafka_offset`, each as the zigzag LEB128 varint of
//!   its difference to the previous event's (to 0 for the first);
//! - `position_s`, then `seek_to_s` if tagged: a zigzag varint of whole
//!   milliseconds when that gives back the same double bit for bit (players
//!   report milliseconds: 3 bytes instead of 8), else the IEEE 754 double,
//!   little-endian. Exact either way: the session is recomputed from them.

use thiserror::Error;

use super::session::{EventKind, PlaybackEvent};

const VERSION: u8 = 1;
const HAS_SEEK_TO: u8 = 4;
const POSITION_MS: u8 = 8;
const SEEK_TO_MS: u8 = 16;
const FLAGS: u8 = HAS_SEEK_TO | POSITION_MS | SEEK_TO_MS;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UnpackError {
    #[error("empty value")]
    Empty,
    #[error("format version {0}, this build reads version {VERSION}")]
    Version(u8),
    #[error("unknown event tag {0}")]
    Tag(u8),
    #[error("value ends inside an event")]
    Truncated,
    #[error("a varint longer than 64 bits")]
    Overlong,
}

/// `events`, in the order given (the caller's session order).
pub fn pack(events: &[PlaybackEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + events.len() * 14);
    out.push(VERSION);
    let (mut time, mut offset) = (0i64, 0i64);
    for event in events {
        let kind = match event.event_type {
            EventKind::Play => 0,
            EventKind::Pause => 1,
            EventKind::Seek => 2,
            EventKind::Stop => 3,
        };
        let position_ms = whole_milliseconds(event.position_s);
        let seek_to_ms = event.seek_to_s.and_then(whole_milliseconds);
        let mut tag = kind;
        if event.seek_to_s.is_some() {
            tag |= HAS_SEEK_TO;
        }
        if position_ms.is_some() {
            tag |= POSITION_MS;
        }
        if seek_to_ms.is_some() {
            tag |= SEEK_TO_MS;
        }
        out.push(tag);
        put_varint(&mut out, zigzag(event.event_time_us.wrapping_sub(time)));
        put_varint(&mut out, zigzag(event.kafka_offset.wrapping_sub(offset)));
        put_position(&mut out, event.position_s, position_ms);
        if let Some(seek_to) = event.seek_to_s {
            put_position(&mut out, seek_to, seek_to_ms);
        }
        (time, offset) = (event.event_time_us, event.kafka_offset);
    }
    out
}

/// The events [`pack`] was given, in its order.
pub fn unpack(bytes: &[u8]) -> Result<Vec<PlaybackEvent>, UnpackError> {
    let (&version, mut rest) = bytes.split_first().ok_or(UnpackError::Empty)?;
    if version != VERSION {
        return Err(UnpackError::Version(version));
    }
    let mut events = Vec::new();
    let (mut time, mut offset) = (0i64, 0i64);
    while let Some((&tag, after)) = rest.split_first() {
        rest = after;
        let event_type = match tag & !FLAGS {
            0 => EventKind::Play,
            1 => EventKind::Pause,
            2 => EventKind::Seek,
            3 => EventKind::Stop,
            _ => return Err(UnpackError::Tag(tag)),
        };
        time = time.wrapping_add(unzigzag(take_varint(&mut rest)?));
        offset = offset.wrapping_add(unzigzag(take_varint(&mut rest)?));
        let position_s = take_position(&mut rest, tag & POSITION_MS != 0)?;
        let seek_to_s = if tag & HAS_SEEK_TO != 0 {
            Some(take_position(&mut rest, tag & SEEK_TO_MS != 0)?)
        } else {
            None
        };
        events.push(PlaybackEvent {
            event_type,
            position_s,
            seek_to_s,
            event_time_us: time,
            kafka_offset: offset,
        });
    }
    Ok(events)
}

/// `seconds` as whole milliseconds, when dividing them by 1,000 gives back
/// the same double, bit for bit (so not for -0.0, NaN or infinities).
fn whole_milliseconds(seconds: f64) -> Option<i64> {
    let ms = (seconds * 1000.0).round();
    // Integers beyond 2^53 are not all doubles.
    if ms.abs() > 9_007_199_254_740_992.0 {
        return None;
    }
    let ms = ms as i64;
    ((ms as f64 / 1000.0).to_bits() == seconds.to_bits()).then_some(ms)
}

fn put_position(out: &mut Vec<u8>, seconds: f64, ms: Option<i64>) {
    match ms {
        Some(ms) => put_varint(out, zigzag(ms)),
        None => out.extend_from_slice(&seconds.to_le_bytes()),
    }
}

fn take_position(rest: &mut &[u8], in_ms: bool) -> Result<f64, UnpackError> {
    if in_ms {
        Ok(unzigzag(take_varint(rest)?) as f64 / 1000.0)
    } else {
        take_f64(rest)
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(rest: &mut &[u8]) -> Result<u64, UnpackError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, after) = rest.split_first().ok_or(UnpackError::Truncated)?;
        *rest = after;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(UnpackError::Overlong)
}

fn take_f64(rest: &mut &[u8]) -> Result<f64, UnpackError> {
    let (bytes, after) = rest
        .split_first_chunk::<8>()
        .ok_or(UnpackError::Truncated)?;
    *rest = after;
    Ok(f64::from_le_bytes(*bytes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::session::strategies::kind;
    use super::*;

    fn event() -> impl Strategy<Value = PlaybackEvent> {
        (
            kind(),
            any::<f64>(),
            proptest::option::of(any::<f64>()),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(
                |(event_type, position_s, seek_to_s, event_time_us, kafka_offset)| PlaybackEvent {
                    event_type,
                    position_s,
                    seek_to_s,
                    event_time_us,
                    kafka_offset,
                },
            )
    }

    /// Bit for bit, NaNs and extreme differences included.
    fn same(a: &[PlaybackEvent], b: &[PlaybackEvent]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.event_type == y.event_type
                    && x.position_s.to_bits() == y.position_s.to_bits()
                    && x.seek_to_s.map(f64::to_bits) == y.seek_to_s.map(f64::to_bits)
                    && x.event_time_us == y.event_time_us
                    && x.kafka_offset == y.kafka_offset
            })
    }

    proptest! {
        #[test]
        fn unpacking_gives_back_what_was_packed(events in proptest::collection::vec(event(), 0..40)) {
            let packed = pack(&events);
            prop_assert!(same(&unpack(&packed).unwrap(), &events));
        }

        #[test]
        fn a_cut_value_fails_or_decodes_a_prefix(
            events in proptest::collection::vec(event(), 1..10),
            cut in 1usize..200,
        ) {
            let packed = pack(&events);
            let cut = cut.min(packed.len() - 1);
            // A cut at an event's boundary decodes as a shorter session:
            // the whole value is the unit, never a prefix of it.
            match unpack(&packed[..cut]) {
                Err(UnpackError::Truncated) => {}
                Ok(prefix) => prop_assert!(prefix.len() < events.len() && same(&prefix, &events[..prefix.len()])),
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
    }

    #[test]
    fn positions_in_milliseconds_take_three_bytes_and_others_eight() {
        let t0 = 1_795_503_600_000_000;
        let session = |position: fn(i64) -> f64| -> Vec<PlaybackEvent> {
            (0..6)
                .map(|i| PlaybackEvent {
                    event_type: if i == 0 {
                        EventKind::Play
                    } else {
                        EventKind::Pause
                    },
                    position_s: position(i),
                    seek_to_s: None,
                    event_time_us: t0 + i * 9_000_000,
                    kafka_offset: 400_000 + i * 3,
                })
                .collect()
        };
        // The first event carries the absolute time (8 bytes) and offset (3).
        // 12.5 s steps: 0 ms takes one byte, 12,500-62,500 ms three.
        let in_ms = pack(&session(|i| 12.5 * i as f64));
        assert_eq!(in_ms.len(), 1 + (1 + 8 + 3 + 1) + 5 * (1 + 4 + 1 + 3));
        let finer = pack(&session(|i| (i + 1) as f64 * 0.123_456_7));
        assert_eq!(finer.len(), 1 + (1 + 8 + 3 + 8) + 5 * (1 + 4 + 1 + 8));
        for (seconds, ms) in [(0.0, Some(0)), (0.001, Some(1)), (-12.345, Some(-12_345))] {
            assert_eq!(whole_milliseconds(seconds), ms, "{seconds}");
        }
        for seconds in [-0.0, f64::NAN, f64::INFINITY, 1e300, 0.0005, 1.0 / 3.0] {
            assert_eq!(whole_milliseconds(seconds), None, "{seconds}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(unpack(&[]), Err(UnpackError::Empty));
        assert_eq!(unpack(&[2]), Err(UnpackError::Version(2)));
        assert_eq!(unpack(&[VERSION, 0x40]), Err(UnpackError::Tag(0x40)));
        assert_eq!(unpack(&[VERSION, 0, 0x80]), Err(UnpackError::Truncated));
        assert_eq!(
            unpack(&[VERSION, 0, 0, 0, 1, 2]),
            Err(UnpackError::Truncated)
        );
        assert_eq!(
            unpack(&[
                VERSION, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            Err(UnpackError::Overlong)
        );
    }
}
