//! An independent reference implementation of the contract's silver sessions and
//! gold tables, written from CONTRACT.md without the lake crate's code.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use streamreel_lake::VideoMetadata;
use streamreel_protocol::BronzeRow;

#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub user_key: String,
    pub video_id: String,
    pub region: String,
    pub device: Option<String>,
    pub started_at_us: i64,
    pub last_event_at_us: i64,
    pub day: i64,
    pub event_count: i64,
    pub watch_s: f64,
    pub max_position_s: f64,
    pub exit_position_s: f64,
    pub video: Option<VideoMetadata>,
}

impl Session {
    pub fn pct_watched(&self) -> Option<f64> {
        self.video
            .as_ref()
            .map(|v| 100.0 * self.max_position_s / v.duration_s)
    }

    pub fn completed(&self) -> Option<bool> {
        self.video
            .as_ref()
            .map(|v| self.max_position_s >= 0.95 * v.duration_s)
    }
}

pub fn sessions(rows: &[BronzeRow], videos: &[VideoMetadata]) -> Vec<Session> {
    let catalogue: HashMap<&str, &VideoMetadata> =
        videos.iter().map(|v| (v.video_id.as_str(), v)).collect();
    let mut by_session: BTreeMap<&str, Vec<&BronzeRow>> = BTreeMap::new();
    for row in rows {
        by_session
            .entry(row.session_id.as_str())
            .or_default()
            .push(row);
    }
    let mut out = Vec::new();
    for (session_id, mut events) in by_session {
        // Ties on both (two partitions) by what the events say.
        let rank = |t: &str| {
            ["play", "pause", "seek", "stop"]
                .iter()
                .position(|k| *k == t)
        };
        // Numbers by value (-0.0 is 0.0); full ties by the attributes the
        // session would take, so the first event does not depend on order.
        let by_value = |x: f64, y: f64| (x + 0.0).total_cmp(&(y + 0.0));
        let attributes = |e: &BronzeRow| {
            let video = catalogue.get(e.video_id.as_str());
            (
                e.user_key.clone(),
                e.video_id.clone(),
                video.map(|v| v.genre.clone()),
                video.map(|v| v.creator.clone()),
                e.region.clone(),
                e.device.clone(),
            )
        };
        events.sort_by(|a, b| {
            (a.event_time_us, a.kafka_offset, rank(&a.event_type))
                .cmp(&(b.event_time_us, b.kafka_offset, rank(&b.event_type)))
                .then(by_value(a.position_s, b.position_s))
                .then_with(|| match (a.seek_to_s, b.seek_to_s) {
                    (Some(x), Some(y)) => by_value(x, y),
                    (x, y) => x.is_some().cmp(&y.is_some()),
                })
                .then_with(|| attributes(a).cmp(&attributes(b)))
        });
        let first = events[0];
        let video = catalogue.get(first.video_id.as_str()).map(|v| (*v).clone());
        let limit = video
            .as_ref()
            .map(|v| v.duration_s)
            .unwrap_or(f64::INFINITY);
        let mut playing_from: Option<f64> = None; // starts paused
        let mut watch = 0.0;
        let mut furthest: f64 = 0.0;
        let mut exit = 0.0;
        for event in &events {
            exit = event.position_s.min(limit);
            if let Some(start) = playing_from {
                let end = event.position_s.min(limit);
                watch += f64::max(0.0, end - start.max(0.0));
                furthest = furthest.max(end);
            }
            let was_playing = playing_from.is_some();
            match event.event_type.as_str() {
                "stop" => break,
                "play" => playing_from = Some(event.position_s),
                "pause" => playing_from = None,
                "seek" if was_playing => playing_from = event.seek_to_s,
                _ => {}
            }
        }
        out.push(Session {
            session_id: session_id.to_string(),
            user_key: first.user_key.clone(),
            video_id: first.video_id.clone(),
            region: first.region.clone(),
            device: first.device.clone(),
            started_at_us: first.event_time_us,
            last_event_at_us: events
                .iter()
                .map(|e| e.event_time_us)
                .max()
                .unwrap_or_default(),
            day: first.event_time_us.div_euclid(86_400_000_000),
            event_count: events.len() as i64,
            watch_s: watch,
            max_position_s: furthest,
            exit_position_s: exit,
            video,
        });
    }
    out
}

fn known(sessions: &[Session]) -> impl Iterator<Item = &Session> {
    sessions.iter().filter(|s| s.video.is_some())
}

/// (video_id, bucket) -> (sessions, viewers_reached, retention)
pub fn viewer_retention(sessions: &[Session]) -> BTreeMap<(String, i64), (i64, i64, f64)> {
    let mut out = BTreeMap::new();
    let mut by_video: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for s in known(sessions) {
        by_video
            .entry(&s.video_id)
            .or_default()
            .push(s.pct_watched().unwrap());
    }
    for (video, pcts) in by_video {
        for bucket in (0..=100).step_by(5) {
            let reached = pcts.iter().filter(|p| **p >= bucket as f64).count() as i64;
            let n = pcts.len() as i64;
            out.insert(
                (video.to_string(), bucket),
                (n, reached, reached as f64 / n as f64),
            );
        }
    }
    out
}

/// The tenth of `duration` that `exit` falls in, exact at the boundaries
/// (`10 * exit / duration` in floating point can land just below one).
pub fn exit_decile(exit: f64, duration: f64) -> i64 {
    let guess = (10.0 * exit / duration).floor() as i64;
    if 10.0 * exit >= (guess + 1) as f64 * duration {
        guess + 1
    } else if 10.0 * exit < guess as f64 * duration {
        guess - 1
    } else {
        guess
    }
}

/// (genre, bucket) -> (sessions, share)
pub fn dropoff_by_genre(sessions: &[Session]) -> BTreeMap<(String, i64), (i64, f64)> {
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for s in known(sessions) {
        let video = s.video.as_ref().unwrap();
        let bucket = exit_decile(s.exit_position_s, video.duration_s).min(9) * 10;
        *counts.entry((video.genre.clone(), bucket)).or_default() += 1;
        *totals.entry(video.genre.clone()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((genre, bucket), n)| {
            let share = n as f64 / totals[&genre] as f64;
            ((genre, bucket), (n, share))
        })
        .collect()
}

/// (day, region) -> (sessions, unique_viewers, watch_hours)
pub fn regional_viewership(sessions: &[Session]) -> BTreeMap<(i64, String), (i64, i64, f64)> {
    let mut groups: BTreeMap<(i64, String), (i64, BTreeSet<&str>, f64)> = BTreeMap::new();
    for s in known(sessions) {
        let entry = groups.entry((s.day, s.region.clone())).or_default();
        entry.0 += 1;
        entry.1.insert(&s.user_key);
        entry.2 += s.watch_s;
    }
    groups
        .into_iter()
        .map(|(k, (n, users, watch))| (k, (n, users.len() as i64, watch / 3600.0)))
        .collect()
}

/// video_id -> (creator, sessions, unique_viewers, watch_hours, completion_rate, rank)
pub fn top_videos(sessions: &[Session]) -> BTreeMap<String, (String, i64, i64, f64, f64, i64)> {
    let mut groups: BTreeMap<&str, (String, i64, BTreeSet<&str>, f64, i64)> = BTreeMap::new();
    for s in known(sessions) {
        let entry = groups.entry(&s.video_id).or_default();
        entry.0 = s.video.as_ref().unwrap().creator.clone();
        entry.1 += 1;
        entry.2.insert(&s.user_key);
        entry.3 += s.watch_s;
        entry.4 += i64::from(s.completed().unwrap());
    }
    let mut ranked: Vec<_> = groups.into_iter().collect();
    ranked.sort_by(|a, b| b.1.3.total_cmp(&a.1.3).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .enumerate()
        .map(|(i, (video, (creator, n, users, watch, done)))| {
            (
                video.to_string(),
                (
                    creator,
                    n,
                    users.len() as i64,
                    watch / 3600.0,
                    done as f64 / n as f64,
                    i as i64 + 1,
                ),
            )
        })
        .collect()
}

/// creator -> (videos, sessions, watch_hours, rank)
pub fn top_creators(sessions: &[Session]) -> BTreeMap<String, (i64, i64, f64, i64)> {
    let mut groups: BTreeMap<String, (BTreeSet<&str>, i64, f64)> = BTreeMap::new();
    for s in known(sessions) {
        let entry = groups
            .entry(s.video.as_ref().unwrap().creator.clone())
            .or_default();
        entry.0.insert(&s.video_id);
        entry.1 += 1;
        entry.2 += s.watch_s;
    }
    let mut ranked: Vec<_> = groups.into_iter().collect();
    ranked.sort_by(|a, b| b.1.2.total_cmp(&a.1.2).then(a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .enumerate()
        .map(|(i, (creator, (videos, n, watch)))| {
            (
                creator,
                (videos.len() as i64, n, watch / 3600.0, i as i64 + 1),
            )
        })
        .collect()
}

/// day -> (sessions, unique_viewers, watch_hours, avg_pct_watched, completion_rate)
pub fn daily_engagement(sessions: &[Session]) -> BTreeMap<i64, (i64, i64, f64, f64, f64)> {
    let mut groups: BTreeMap<i64, (i64, BTreeSet<&str>, f64, f64, i64)> = BTreeMap::new();
    for s in known(sessions) {
        let entry = groups.entry(s.day).or_default();
        entry.0 += 1;
        entry.1.insert(&s.user_key);
        entry.2 += s.watch_s;
        entry.3 += s.pct_watched().unwrap();
        entry.4 += i64::from(s.completed().unwrap());
    }
    groups
        .into_iter()
        .map(|(day, (n, users, watch, pct, done))| {
            (
                day,
                (
                    n,
                    users.len() as i64,
                    watch / 3600.0,
                    pct / n as f64,
                    done as f64 / n as f64,
                ),
            )
        })
        .collect()
}
