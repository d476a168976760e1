//! Opt-in fault injection for chaos tests, read from the environment once.
//!
//! `STREAMREEL_FAULT_PANIC_BEFORE_COMMIT=<partition>` makes that partition's actor
//! panic once, just before its first bronze commit in this process, so tests can
//! watch the supervisor restart it. Unset in production: then nothing happens.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub const PANIC_BEFORE_COMMIT_ENV: &str = "STREAMREEL_FAULT_PANIC_BEFORE_COMMIT";

static FIRED: AtomicBool = AtomicBool::new(false);

fn target_partition() -> Option<i32> {
    static TARGET: OnceLock<Option<i32>> = OnceLock::new();
    *TARGET.get_or_init(|| {
        std::env::var(PANIC_BEFORE_COMMIT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// Panics the first time it is called for the configured partition.
pub fn maybe_panic_before_commit(partition: i32) {
    if target_partition() == Some(partition) && !FIRED.swap(true, Ordering::SeqCst) {
        panic!("injected fault: panic before the bronze commit of partition {partition}");
    }
}
