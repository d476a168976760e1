//! The deterministic simulated stream: for a seed, settings and catalogue the
//! same messages come out in the same order.
//!
//! Concurrent sessions are kept in a heap ordered by their next event time, so
//! the stream interleaves viewers realistically and memory stays bounded by the
//! number of sessions in flight, not by the number of events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use streamreel_lake::VideoMetadata;
use streamreel_protocol::EventType;
use streamreel_protocol::time::format_rfc3339_micros;

use super::malformed;
use super::session::{Session, SessionEvent};

#[derive(Debug, Clone)]
pub struct SimulationSettings {
    /// Messages to send in all: valid + malformed + duplicates.
    pub events: u64,
    pub seed: u64,
    /// Event time of the first session start, UTC microseconds.
    pub start_us: i64,
    pub malformed_share: f64,
    pub duplicate_share: f64,
    /// Distinct viewers; `None` picks one from the event count.
    pub users: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Valid,
    Malformed,
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct SimulatedMessage {
    /// The raw `user_id`: the Kafka key.
    pub key: String,
    pub payload: Vec<u8>,
    pub kind: MessageKind,
    /// Set for valid events and their duplicates.
    pub event_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulationSummary {
    pub valid: u64,
    pub malformed: u64,
    pub duplicates: u64,
}

impl SimulationSummary {
    pub fn total(&self) -> u64 {
        self.valid + self.malformed + self.duplicates
    }

    pub fn count(&mut self, kind: MessageKind) {
        match kind {
            MessageKind::Valid => self.valid += 1,
            MessageKind::Malformed => self.malformed += 1,
            MessageKind::Duplicate => self.duplicates += 1,
        }
    }
}

struct Viewer {
    user_id: String,
    region: &'static str,
    device: Option<&'static str>,
}

const REGIONS: [(&str, u32); 7] = [
    ("us-east", 24),
    ("us-west", 14),
    ("eu-west", 20),
    ("eu-central", 12),
    ("ap-south", 14),
    ("ap-northeast", 10),
    ("sa-east", 6),
];
const DEVICES: [(&str, u32); 4] = [("mobile", 45), ("tv", 20), ("web", 25), ("tablet", 10)];
/// Recently sent valid events, the pool duplicates are redelivered from.
const REDELIVERY_POOL: usize = 4096;
const MICROS_PER_S: f64 = 1_000_000.0;

pub struct Simulator<'a> {
    settings: SimulationSettings,
    rng: ChaCha8Rng,
    catalogue: &'a [VideoMetadata],
    /// Cumulative popularity weights (Zipf-like) over the catalogue.
    popularity: Vec<f64>,
    viewers: Vec<Viewer>,
    sessions: Vec<Session>,
    /// Slots of `sessions` whose session has ended, reused by the next ones.
    free_slots: Vec<usize>,
    due: BinaryHeap<Reverse<(i64, usize)>>,
    next_arrival_us: i64,
    recent_valid: VecDeque<SimulatedMessage>,
    /// Events held back to arrive late, with how many messages later.
    late: VecDeque<(u32, SimulatedMessage)>,
    emitted: u64,
    summary: SimulationSummary,
}

impl<'a> Simulator<'a> {
    pub fn new(settings: SimulationSettings, catalogue: &'a [VideoMetadata]) -> Simulator<'a> {
        assert!(!catalogue.is_empty(), "the catalogue has no videos");
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let user_count = settings
            .users
            .unwrap_or_else(|| (settings.events / 40).clamp(50, 50_000) as usize);
        let viewers = (0..user_count)
            .map(|n| Viewer {
                user_id: format!("user-{n:06}@viewers.example"),
                region: pick_weighted(&mut rng, &REGIONS),
                device: rng
                    .random_bool(0.95)
                    .then(|| pick_weighted(&mut rng, &DEVICES)),
            })
            .collect();
        let mut total = 0.0;
        let popularity = (1..=catalogue.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(0.9);
                total
            })
            .collect();
        let start_us = settings.start_us;
        Simulator {
            settings,
            rng,
            catalogue,
            popularity,
            viewers,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            due: BinaryHeap::new(),
            next_arrival_us: start_us,
            recent_valid: VecDeque::with_capacity(REDELIVERY_POOL),
            late: VecDeque::new(),
            emitted: 0,
            summary: SimulationSummary::default(),
        }
    }

    pub fn summary(&self) -> SimulationSummary {
        self.summary
    }

    fn random_hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.rng.random::<u8>()))
            .collect()
    }

    fn pick_video(&mut self) -> usize {
        let total = *self.popularity.last().expect("non-empty catalogue");
        let target = self.rng.random_range(0.0..total);
        self.popularity.partition_point(|&w| w <= target)
    }

    /// Starts new sessions until the next arrival lies after the earliest due event.
    fn start_due_sessions(&mut self) {
        loop {
            let earliest_due = self.due.peek().map(|Reverse((t, _))| *t);
            if earliest_due.is_some_and(|t| t < self.next_arrival_us) {
                return;
            }
            let start = self.next_arrival_us;
            // Bursts: now and then a premiere draws many viewers to one video at once.
            if self.rng.random_bool(0.002) {
                let video = self.pick_video();
                for _ in 0..self.rng.random_range(20..80) {
                    let offset = self.rng.random_range(0.0..60.0);
                    self.start_session(video, start + (offset * MICROS_PER_S) as i64);
                }
            } else {
                let video = self.pick_video();
                self.start_session(video, start);
            }
            let gap_s = -self.rng.random_range(f64::EPSILON..1.0f64).ln() * 1.5;
            self.next_arrival_us = start + (gap_s * MICROS_PER_S) as i64;
        }
    }

    fn start_session(&mut self, video: usize, start_us: i64) {
        let session_id = format!("sess-{}", self.random_hex(12));
        let user = self.rng.random_range(0..self.viewers.len());
        let duration = self.catalogue[video].duration_s;
        let session = Session::new(&mut self.rng, session_id, user, video, duration, start_us);
        let index = match self.free_slots.pop() {
            Some(index) => {
                self.sessions[index] = session;
                index
            }
            None => {
                self.sessions.push(session);
                self.sessions.len() - 1
            }
        };
        self.due
            .push(Reverse((self.sessions[index].next_time_us, index)));
    }

    /// The next valid event of the session due first, as a JSON object.
    fn next_session_event(&mut self) -> (String, Map<String, Value>) {
        self.start_due_sessions();
        let Reverse((_, index)) = self.due.pop().expect("a session is always due");
        let event = self.sessions[index].next_event(&mut self.rng);
        let event_id = format!("evt-{}", self.random_hex(16));
        let null_seek = self.rng.random_bool(0.1);
        let session = &self.sessions[index];
        if !session.is_ended() {
            self.due.push(Reverse((session.next_time_us, index)));
        }
        let viewer = &self.viewers[session.user];
        let key = viewer.user_id.clone();
        let object = render(
            &event_id,
            session,
            viewer,
            &self.catalogue[session.video],
            &event,
            null_seek,
        );
        if session.is_ended() {
            self.free_slots.push(index);
        }
        (key, object)
    }

    fn next_message(&mut self) -> SimulatedMessage {
        if let Some((0, _)) = self.late.front() {
            let message = self.late.pop_front().expect("checked").1;
            self.remember(&message);
            return message;
        }
        let roll = self.rng.random_range(0.0..1.0);
        if roll < self.settings.malformed_share {
            let (key, object) = self.next_session_event();
            let payload = malformed::corrupt(&mut self.rng, object);
            return SimulatedMessage {
                key,
                payload,
                kind: MessageKind::Malformed,
                event_id: None,
            };
        }
        if roll < self.settings.malformed_share + self.settings.duplicate_share
            && !self.recent_valid.is_empty()
        {
            let pick = self.rng.random_range(0..self.recent_valid.len());
            let mut duplicate = self.recent_valid[pick].clone();
            duplicate.kind = MessageKind::Duplicate;
            return duplicate;
        }
        let (key, object) = self.next_session_event();
        let event_id = object["event_id"].as_str().map(str::to_string);
        let message = SimulatedMessage {
            key,
            payload: serde_json::to_vec(&object).expect("json"),
            kind: MessageKind::Valid,
            event_id,
        };
        // A few events arrive late (a phone back from a tunnel), after later
        // ones; only while the stream has room to send every held event.
        let remaining = (self.settings.events - self.emitted) as usize;
        if self.rng.random_bool(0.005) && self.late.len() + 2 <= remaining {
            let delay = self.rng.random_range(1..30);
            self.late.push_back((delay, message));
            return self.next_message();
        }
        self.remember(&message);
        message
    }

    /// Keeps a valid message as it is sent, for redelivery: one still held
    /// back is not in the pool, so a duplicate never precedes its original
    /// (the node would keep the copy and count the original as the duplicate).
    fn remember(&mut self, message: &SimulatedMessage) {
        if self.recent_valid.len() == REDELIVERY_POOL {
            self.recent_valid.pop_front();
        }
        self.recent_valid.push_back(message.clone());
    }
}

impl Iterator for Simulator<'_> {
    type Item = SimulatedMessage;

    fn next(&mut self) -> Option<SimulatedMessage> {
        if self.emitted >= self.settings.events {
            return None;
        }
        let remaining = self.settings.events - self.emitted;
        // Held-back events must still be sent before the stream ends.
        let message = if remaining as usize <= self.late.len() {
            let message = self.late.pop_front().expect("checked").1;
            self.remember(&message);
            message
        } else {
            let message = self.next_message();
            for entry in self.late.iter_mut() {
                entry.0 = entry.0.saturating_sub(1);
            }
            message
        };
        self.emitted += 1;
        self.summary.count(message.kind);
        Some(message)
    }
}

fn render(
    event_id: &str,
    session: &Session,
    viewer: &Viewer,
    video: &VideoMetadata,
    event: &SessionEvent,
    null_seek: bool,
) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("event_id".into(), event_id.into());
    object.insert("session_id".into(), session.session_id.clone().into());
    object.insert("user_id".into(), viewer.user_id.clone().into());
    object.insert("video_id".into(), video.video_id.clone().into());
    object.insert("event_type".into(), event.event_type.as_str().into());
    object.insert("position_s".into(), event.position_s.into());
    match event.seek_to_s {
        Some(target) => {
            object.insert("seek_to_s".into(), target.into());
        }
        None if null_seek => {
            object.insert("seek_to_s".into(), Value::Null);
        }
        None => {}
    }
    debug_assert_eq!(
        event.seek_to_s.is_some(),
        event.event_type == EventType::Seek
    );
    object.insert(
        "event_time".into(),
        format_rfc3339_micros(event.event_time_us).into(),
    );
    object.insert("region".into(), viewer.region.into());
    if let Some(device) = viewer.device {
        object.insert("device".into(), device.into());
    }
    object
}

fn pick_weighted(rng: &mut ChaCha8Rng, options: &[(&'static str, u32)]) -> &'static str {
    options
        .choose_weighted(rng, |(_, weight)| *weight)
        .expect("weights are positive")
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use streamreel_protocol::parse_event;

    fn catalogue() -> Vec<VideoMetadata> {
        let path = std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
        )
        .join("../metadata/video_metadata.csv");
        streamreel_lake::read_metadata_file(&path).unwrap()
    }

    fn settings(events: u64, seed: u64) -> SimulationSettings {
        SimulationSettings {
            events,
            seed,
            start_us: 1_795_478_400_000_000,
            malformed_share: 0.005,
            duplicate_share: 0.01,
            users: None,
        }
    }

    #[test]
    fn every_event_held_back_is_sent_before_the_stream_ends() {
        let videos = catalogue();
        let mut held_at_some_point = 0;
        for seed in 0..3_000 {
            let mut simulator = Simulator::new(settings(3, seed), &videos);
            let mut sent = 0;
            while simulator.next().is_some() {
                sent += 1;
                held_at_some_point += usize::from(!simulator.late.is_empty());
            }
            assert_eq!(sent, 3, "seed {seed}");
            assert!(simulator.late.is_empty(), "seed {seed} lost a held event");
        }
        assert!(held_at_some_point > 0, "some runs held an event back");
    }

    #[test]
    fn kinds_agree_with_validation_and_ids_are_unique() {
        let videos = catalogue();
        let known: HashSet<&str> = videos.iter().map(|v| v.video_id.as_str()).collect();
        let mut simulator = Simulator::new(settings(20_000, 1), &videos);
        let mut seen = HashSet::new();
        let mut summary = SimulationSummary::default();
        for message in simulator.by_ref() {
            summary.count(message.kind);
            match (message.kind, parse_event(&message.payload)) {
                (MessageKind::Malformed, Err(_)) => {}
                (MessageKind::Valid, Ok(event)) => {
                    assert!(seen.insert(event.event_id.to_string()), "ids are unique");
                    assert_eq!(event.user_id, message.key);
                    assert!(known.contains(event.video_id.as_ref()));
                }
                (MessageKind::Duplicate, Ok(event)) => {
                    assert!(
                        seen.contains(event.event_id.as_ref()),
                        "redelivers a sent event"
                    );
                }
                (kind, result) => panic!("{kind:?} parsed as {result:?}"),
            }
        }
        assert_eq!(summary, simulator.summary());
        assert_eq!(summary.total(), 20_000);
        assert!((40..=170).contains(&summary.malformed), "{summary:?}");
        assert!((120..=300).contains(&summary.duplicates), "{summary:?}");
    }

    #[test]
    fn a_duplicate_never_comes_before_its_original() {
        let videos = catalogue();
        // Short streams with many duplicates: while the pool of sent events
        // is small, a duplicate would often pick an event still held back.
        let mut duplicates = 0;
        for seed in 0..500 {
            let settings = SimulationSettings {
                duplicate_share: 0.5,
                ..settings(300, seed)
            };
            let mut sent = HashSet::new();
            for message in Simulator::new(settings, &videos) {
                let id = message.event_id.clone();
                match message.kind {
                    MessageKind::Valid => {
                        assert!(sent.insert(id.expect("a valid message has an id")));
                    }
                    MessageKind::Duplicate => {
                        duplicates += 1;
                        let id = id.expect("a duplicate has an id");
                        assert!(
                            sent.contains(&id),
                            "seed {seed}: duplicate {id} sent before its original"
                        );
                    }
                    MessageKind::Malformed => {}
                }
            }
        }
        assert!(duplicates > 50_000, "{duplicates}");
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_does_not() {
        let videos = catalogue();
        let run = |seed| -> Vec<Vec<u8>> {
            Simulator::new(settings(2_000, seed), &videos)
                .map(|m| m.payload)
                .collect()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn memory_follows_the_sessions_in_flight_not_the_sessions_run() {
        let videos = catalogue();
        let mut simulator = Simulator::new(settings(200_000, 6), &videos);
        let mut sessions = HashSet::new();
        for message in simulator.by_ref() {
            if let Ok(event) = parse_event(&message.payload) {
                sessions.insert(event.session_id.to_string());
            }
        }
        assert!(
            simulator.sessions.len() * 4 < sessions.len(),
            "{} slots for {} sessions",
            simulator.sessions.len(),
            sessions.len()
        );
    }

    #[test]
    fn every_malformed_variant_is_rejected() {
        let videos = catalogue();
        let mut simulator = Simulator::new(settings(10, 3), &videos);
        let (_, object) = simulator.next_session_event();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for variant in 0..malformed::VARIANTS {
            for _ in 0..20 {
                let payload = malformed::corrupt_as(variant, &mut rng, &mut object.clone());
                assert!(parse_event(&payload).is_err(), "variant {variant} accepted");
            }
        }
    }

    #[test]
    fn some_events_arrive_out_of_time_order_within_a_user() {
        let videos = catalogue();
        let mut last_time: std::collections::HashMap<String, i64> = Default::default();
        let mut out_of_order = 0;
        for message in Simulator::new(settings(20_000, 4), &videos) {
            if message.kind != MessageKind::Valid {
                continue;
            }
            let event = parse_event(&message.payload).unwrap();
            let last = last_time.entry(message.key.clone()).or_insert(i64::MIN);
            if event.event_time_us < *last {
                out_of_order += 1;
            }
            *last = (*last).max(event.event_time_us);
        }
        assert!(out_of_order > 0);
    }
}
