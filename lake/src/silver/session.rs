//! The contract's session semantics as a pure function: one session's events
//! in, its watch time and positions out.
//!
//! Events are ordered by (`event_time`, `kafka_offset`), ties by what they
//! say ([`event_order`]). The player starts
//! paused. While playing, every next event ends the current segment at its
//! `position_s`: the segment [start, end] counts
//! `max(0, min(end, duration) - max(start, 0))` watched seconds and
//! `min(end, duration)` is a position reached. Then `pause` -> paused,
//! `seek` -> playing from `seek_to_s`, `play` -> playing from `position_s`,
//! `stop` -> ended. While paused: `play` -> playing from `position_s`,
//! `seek` (and `pause`) -> paused, `stop` -> ended. Events after the end are
//! ignored (but still counted in `event_count`).

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaybackEvent {
    pub event_type: EventKind,
    pub position_s: f64,
    pub seek_to_s: Option<f64>,
    pub event_time_us: i64,
    pub kafka_offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Play,
    Pause,
    Seek,
    Stop,
}

impl EventKind {
    pub fn parse(text: &str) -> Option<EventKind> {
        match text {
            "play" => Some(EventKind::Play),
            "pause" => Some(EventKind::Pause),
            "seek" => Some(EventKind::Seek),
            "stop" => Some(EventKind::Stop),
            _ => None,
        }
    }

    /// The `event_type` text [`EventKind::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Play => "play",
            EventKind::Pause => "pause",
            EventKind::Seek => "seek",
            EventKind::Stop => "stop",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionSummary {
    pub event_count: i64,
    pub watch_s: f64,
    pub max_position_s: f64,
    pub exit_position_s: f64,
}

#[derive(Clone, Copy)]
enum Player {
    Paused,
    Playing { from_s: f64 },
    Ended,
}

/// The order of a session's events: by (event_time, kafka_offset). Two events
/// of one session from two partitions (a user's events move when partitions
/// are added) can tie on both; they are then ordered by what they say, so
/// that every run, whatever order it reads them in, orders them alike.
/// Numbers compare by value: `-0.0` (which a bronze from another writer may
/// hold) is `0.0`, where its bits would sort it after every positive number.
pub fn event_order(a: &PlaybackEvent, b: &PlaybackEvent) -> Ordering {
    let by_value = |x: f64, y: f64| (x + 0.0).total_cmp(&(y + 0.0));
    (a.event_time_us, a.kafka_offset)
        .cmp(&(b.event_time_us, b.kafka_offset))
        .then_with(|| (a.event_type as u8).cmp(&(b.event_type as u8)))
        .then_with(|| by_value(a.position_s, b.position_s))
        .then_with(|| match (a.seek_to_s, b.seek_to_s) {
            (Some(x), Some(y)) => by_value(x, y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
}

/// Summarises one session. `duration_s` is `None` for videos without metadata:
/// then positions are not capped.
pub fn summarize(events: &mut [PlaybackEvent], duration_s: Option<f64>) -> SessionSummary {
    events.sort_by(event_order);
    let cap = |position: f64| duration_s.map_or(position, |d| position.min(d));
    let mut player = Player::Paused;
    let mut watch_s = 0.0;
    let mut max_position_s: f64 = 0.0;
    let mut last_position_s = 0.0;
    for event in events.iter() {
        if let Player::Ended = player {
            break;
        }
        last_position_s = event.position_s;
        if let Player::Playing { from_s } = player {
            let end = cap(event.position_s);
            watch_s += (end - from_s.max(0.0)).max(0.0);
            max_position_s = max_position_s.max(end);
        }
        player = match (player, event.event_type) {
            (_, EventKind::Stop) => Player::Ended,
            (_, EventKind::Play) => Player::Playing {
                from_s: event.position_s,
            },
            (Player::Playing { .. }, EventKind::Seek) => Player::Playing {
                from_s: event.seek_to_s.unwrap_or(event.position_s),
            },
            (Player::Playing { .. }, EventKind::Pause) => Player::Paused,
            (paused, _) => paused,
        };
    }
    SessionSummary {
        event_count: events.len() as i64,
        watch_s,
        max_position_s,
        exit_position_s: cap(last_position_s),
    }
}

/// Property-test inputs shared by the modules that pack and rebuild sessions.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    use super::EventKind;

    pub fn kind() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            Just(EventKind::Play),
            Just(EventKind::Pause),
            Just(EventKind::Seek),
            Just(EventKind::Stop),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, position_s: f64, seek_to_s: Option<f64>, t: i64) -> PlaybackEvent {
        PlaybackEvent {
            event_type: kind,
            position_s,
            seek_to_s,
            event_time_us: t,
            kafka_offset: t,
        }
    }

    use EventKind::*;

    #[test]
    fn events_of_two_partitions_tied_on_time_and_offset_summarise_alike_in_any_order() {
        // The pause from one partition and the stop from another, both at
        // offset 502 and the same microsecond.
        let play = event(Play, 0.0, None, 0);
        let pause = PlaybackEvent {
            event_type: Pause,
            position_s: 60.0,
            seek_to_s: None,
            event_time_us: 60_000_000,
            kafka_offset: 502,
        };
        let stop = PlaybackEvent {
            event_type: Stop,
            position_s: 61.0,
            ..pause
        };
        let first = summarize(&mut [play, pause, stop], Some(600.0));
        let second = summarize(&mut [stop, play, pause], Some(600.0));
        assert_eq!(first, second);
        assert_eq!(first.watch_s, 60.0);
        assert_eq!(first.exit_position_s, 61.0);
    }

    #[test]
    fn seeks_tied_on_everything_else_are_ordered_by_their_targets_value() {
        // Two seeks at position 10 in the same microsecond and offset, to
        // -0.0 (a bronze from another writer may hold it) and to 50: the
        // one to 0 comes first, so the session plays 0-10, 0-10 and 50-60
        // (with the seek to 50 first it would play 0-10 and 0-60).
        let play = event(Play, 0.0, None, 0);
        let seek = |to: f64| PlaybackEvent {
            event_type: Seek,
            position_s: 10.0,
            seek_to_s: Some(to),
            event_time_us: 10_000_000,
            kafka_offset: 7,
        };
        let pause = event(Pause, 60.0, None, 60_000_000);
        for mut events in [
            [play, seek(-0.0), seek(50.0), pause],
            [play, seek(50.0), seek(-0.0), pause],
        ] {
            let summary = summarize(&mut events, None);
            assert_eq!(summary.watch_s, 30.0, "{events:?}");
        }
        let none_first = PlaybackEvent {
            seek_to_s: None,
            ..seek(0.0)
        };
        assert_eq!(event_order(&none_first, &seek(-0.0)), Ordering::Less);
        assert_eq!(event_order(&seek(-0.0), &seek(0.0)), Ordering::Equal);
    }

    #[test]
    fn play_seek_pause_play_stop() {
        let mut events = vec![
            event(Play, 0.0, None, 1),
            event(Seek, 30.0, Some(100.0), 2), // watched 0..30
            event(Pause, 120.0, None, 3),      // watched 100..120
            event(Play, 120.0, None, 4),
            event(Stop, 150.0, None, 5), // watched 120..150
            event(Play, 150.0, None, 6), // ignored after stop
        ];
        let summary = summarize(&mut events, Some(600.0));
        assert_eq!(summary.event_count, 6);
        assert_eq!(summary.watch_s, 80.0);
        assert_eq!(summary.max_position_s, 150.0);
        assert_eq!(summary.exit_position_s, 150.0);
    }

    #[test]
    fn out_of_order_arrival_is_sorted_by_event_time_then_offset() {
        let at = |kind, position_s, event_time_us, kafka_offset| PlaybackEvent {
            event_type: kind,
            position_s,
            seek_to_s: None,
            event_time_us,
            kafka_offset,
        };
        // Arrival (offset) order disagrees with event time: in offset order
        // the stop would come first and nothing would count as watched.
        let mut events = vec![
            at(Stop, 50.0, 3, 1),
            at(Play, 0.0, 1, 2),
            at(Pause, 20.0, 2, 3),
        ];
        let summary = summarize(&mut events, Some(100.0));
        assert_eq!(summary.watch_s, 20.0);
        assert_eq!(summary.exit_position_s, 50.0);
        // A time tie is broken by the offset, not by the kind: the pause
        // (offset 11) before the play (offset 12) plays 0-20 and 20-40; the
        // other way round the session would end paused at 20.
        let mut tied = vec![
            at(Stop, 40.0, 3, 5),
            at(Play, 20.0, 2, 12),
            at(Pause, 20.0, 2, 11),
            at(Play, 0.0, 1, 10),
        ];
        let summary = summarize(&mut tied, Some(100.0));
        assert_eq!(summary.watch_s, 40.0);
    }

    #[test]
    fn positions_are_capped_at_the_duration_and_start_paused() {
        let mut events = vec![
            event(Seek, 0.0, Some(50.0), 1), // paused: stays paused
            event(Play, 90.0, None, 2),
            event(Stop, 130.0, None, 3),
        ];
        let summary = summarize(&mut events, Some(100.0));
        assert_eq!(summary.watch_s, 10.0);
        assert_eq!(summary.max_position_s, 100.0);
        assert_eq!(summary.exit_position_s, 100.0);
        let never_played = summarize(&mut [event(Pause, 40.0, None, 1)], Some(100.0));
        assert_eq!(
            (never_played.watch_s, never_played.max_position_s),
            (0.0, 0.0)
        );
    }

    #[test]
    fn backward_segments_count_nothing() {
        let mut events = vec![
            event(Play, 0.0, None, 1),
            event(Seek, 10.0, Some(80.0), 2),
            event(Pause, 60.0, None, 3), // end before start
        ];
        let summary = summarize(&mut events, None);
        assert_eq!(summary.watch_s, 10.0);
        assert_eq!(summary.max_position_s, 60.0);
    }
}
