//! One viewing session: a viewer watching one video once, emitting play / pause /
//! seek / stop events in event-time order.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use streamreel_protocol::EventType;

/// An event a session emits, before it is rendered as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub event_type: EventType,
    pub position_s: f64,
    pub seek_to_s: Option<f64>,
    pub event_time_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    NotStarted,
    Playing,
    Paused,
    Ended,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub user: usize,
    pub video: usize,
    duration_s: f64,
    /// The position where this viewer will give up (the duration for a full watch).
    exit_at_s: f64,
    position_s: f64,
    phase: Phase,
    /// When the next event happens.
    pub next_time_us: i64,
}

const MICROS: f64 = 1_000_000.0;

impl Session {
    pub fn new(
        rng: &mut ChaCha8Rng,
        session_id: String,
        user: usize,
        video: usize,
        duration_s: f64,
        start_us: i64,
    ) -> Session {
        // Engagement mix: early drop-offs, partial watches, and full watches.
        let share = match rng.random_range(0..100) {
            0..25 => rng.random_range(0.0..0.15),
            25..65 => rng.random_range(0.15..0.9),
            _ => 1.0,
        };
        Session {
            session_id,
            user,
            video,
            duration_s,
            exit_at_s: (duration_s * share).max(1.0).min(duration_s),
            position_s: 0.0,
            phase: Phase::NotStarted,
            next_time_us: start_us,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Emits the event due at `next_time_us` and schedules the one after it.
    pub fn next_event(&mut self, rng: &mut ChaCha8Rng) -> SessionEvent {
        let now = self.next_time_us;
        // Rounded to the millisecond, but never past the end of the video.
        let duration_s = self.duration_s;
        let at = |position_s: f64| round_ms(position_s).min(duration_s);
        let event = |event_type, position_s, seek_to_s: Option<f64>| SessionEvent {
            event_type,
            position_s: at(position_s),
            seek_to_s: seek_to_s.map(at),
            event_time_us: now,
        };
        match self.phase {
            Phase::NotStarted => {
                self.phase = Phase::Playing;
                self.schedule_watching(rng);
                event(EventType::Play, 0.0, None)
            }
            Phase::Playing => {
                if self.position_s >= self.exit_at_s - 1e-9 {
                    self.phase = Phase::Ended;
                    return event(EventType::Stop, self.position_s, None);
                }
                match rng.random_range(0..100) {
                    0..55 => {
                        self.phase = Phase::Paused;
                        self.next_time_us = now + secs(rng.random_range(2.0..240.0));
                        event(EventType::Pause, self.position_s, None)
                    }
                    55..90 => {
                        let from = self.position_s;
                        let jump = if rng.random_bool(0.7) {
                            rng.random_range(5.0..90.0)
                        } else {
                            -rng.random_range(5.0..60.0)
                        };
                        let to = (from + jump).clamp(0.0, self.exit_at_s);
                        self.position_s = to;
                        self.schedule_watching(rng);
                        event(EventType::Seek, from, Some(to))
                    }
                    _ => {
                        // A stray play while already playing (a double tap),
                        // where the player is now, not where it will be.
                        let from = self.position_s;
                        self.schedule_watching(rng);
                        event(EventType::Play, from, None)
                    }
                }
            }
            Phase::Paused => match rng.random_range(0..100) {
                0..80 => {
                    // Playing resumes where the player paused.
                    let from = self.position_s;
                    self.phase = Phase::Playing;
                    self.schedule_watching(rng);
                    event(EventType::Play, from, None)
                }
                80..90 => {
                    // Scrubbing while paused: the player stays paused.
                    let from = self.position_s;
                    let to = rng.random_range(0.0..self.exit_at_s);
                    self.position_s = to;
                    self.next_time_us = now + secs(rng.random_range(1.0..20.0));
                    event(EventType::Seek, from, Some(to))
                }
                _ => {
                    self.phase = Phase::Ended;
                    event(EventType::Stop, self.position_s, None)
                }
            },
            Phase::Ended => event(EventType::Stop, self.position_s, None),
        }
    }

    /// Plays on for a while, never past the exit point.
    fn schedule_watching(&mut self, rng: &mut ChaCha8Rng) {
        let mean_chunk = (self.duration_s / 6.0).max(20.0);
        let chunk = rng.random_range(0.2..1.8) * mean_chunk;
        let until = (self.position_s + chunk).min(self.exit_at_s);
        let watched = (until - self.position_s).max(0.5);
        self.position_s = until;
        self.next_time_us += secs(watched);
    }
}

fn secs(seconds: f64) -> i64 {
    (seconds * MICROS) as i64
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sessions_start_with_play_end_with_stop_and_stay_in_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in 0..500 {
            let duration = rng.random_range(60.0..7200.0);
            let mut session = Session::new(&mut rng, format!("s{n}"), 0, 0, duration, 0);
            let mut events = Vec::new();
            while !session.is_ended() {
                events.push(session.next_event(&mut rng));
                assert!(events.len() < 10_000, "session never ends");
            }
            assert_eq!(events[0].event_type, EventType::Play);
            assert_eq!(events.last().unwrap().event_type, EventType::Stop);
            for pair in events.windows(2) {
                assert!(pair[0].event_time_us < pair[1].event_time_us);
            }
            for event in &events {
                assert!(event.position_s >= 0.0 && event.position_s <= duration + 0.001);
                assert_eq!(
                    event.seek_to_s.is_some(),
                    event.event_type == EventType::Seek
                );
            }
        }
    }

    /// Events of one session, played through a player that follows them.
    fn session_events(rng: &mut ChaCha8Rng, duration: f64) -> Vec<SessionEvent> {
        let mut session = Session::new(rng, "s".into(), 0, 0, duration, 0);
        let mut events = Vec::new();
        while !session.is_ended() {
            events.push(session.next_event(rng));
        }
        events
    }

    #[test]
    fn each_event_is_where_the_player_is_at_its_time() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..500 {
            let duration = rng.random_range(60.0..7200.0);
            // The player's position at `since_us`, and whether it plays on.
            let (mut position, mut since_us, mut playing) = (0.0, 0, false);
            for event in session_events(&mut rng, duration) {
                let expected = if playing {
                    position + (event.event_time_us - since_us) as f64 / MICROS
                } else {
                    position
                };
                // A chunk shorter than half a second still takes half a
                // second, so a playing player may lag its clock by that much.
                let lag = if playing { 0.5 } else { 0.0 };
                assert!(
                    event.position_s <= expected + 0.002
                        && event.position_s >= expected - lag - 0.002,
                    "{event:?}: the player is at {expected}"
                );
                position = event.seek_to_s.unwrap_or(event.position_s);
                since_us = event.event_time_us;
                match event.event_type {
                    EventType::Play => playing = true,
                    EventType::Pause | EventType::Stop => playing = false,
                    EventType::Seek => {}
                }
            }
        }
    }

    #[test]
    fn positions_stay_within_short_and_unrounded_durations() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for duration in [0.3, 0.9, 100.0006] {
            for _ in 0..300 {
                for event in session_events(&mut rng, duration) {
                    for position in [Some(event.position_s), event.seek_to_s]
                        .into_iter()
                        .flatten()
                    {
                        assert!(position <= duration, "{event:?} past {duration}");
                    }
                }
            }
        }
    }
}
