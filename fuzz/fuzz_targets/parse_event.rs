//! Any bytes through the event parser and validator: it answers with an event
//! that keeps the contract's rules or with a rejection whose reason is short
//! and never quotes the input; it never panics. `scripts/fuzz` starts from
//! the valid events in `fuzz/seeds`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamreel_protocol::{EventType, MAX_POSITION_S, parse_event};

#[derive(serde::Deserialize)]
struct EventId {
    event_id: String,
}

fuzz_target!(|data: &[u8]| {
    match parse_event(data) {
        Ok(event) => {
            for field in [&event.event_id, &event.session_id, &event.user_id, &event.video_id, &event.region] {
                assert!(!field.is_empty());
            }
            assert!((0.0..=MAX_POSITION_S).contains(&event.position_s));
            match (event.event_type, event.seek_to_s) {
                (EventType::Seek, Some(to)) => assert!((0.0..=MAX_POSITION_S).contains(&to)),
                (EventType::Seek, None) => panic!("a seek without a target was accepted"),
                (_, target) => assert!(target.is_none()),
            }
            // What was accepted is JSON with the same event id. Read as a
            // struct, so that unknown members are skipped as the parser
            // skips them (a `Value` refuses numbers out of range and deep
            // nesting in members the contract ignores).
            let read: EventId = serde_json::from_slice(data).expect("accepted input is JSON");
            assert_eq!(read.event_id, event.event_id);
        }
        Err(rejection) => {
            let reason = rejection.to_string();
            assert!(reason.len() <= 400, "reason of {} bytes", reason.len());
            assert!(!rejection.kind().is_empty());
        }
    }
});
