//! Opt-in fault injection for chaos tests, read from the environment once.
//!
//! `STREAMREEL_FAULT_PANIC_BEFORE_COMMIT=<partition>` makes that partition's actor
//! panic once, just before its first bronze commit in this process, so tests can
//! watch the supervisor restart it.
//! `STREAMREEL_FAULT_PANIC_AFTER_COMMIT=<partition>` makes it panic once just
//! after its first bronze commit, before the Raft checkpoint: the restarted
//! actor must take that batch's ids from bronze into its window.
//! `STREAMREEL_FAULT_FAIL_BRONZE_COMMITS=<n>` makes the first `n` bronze commit
//! attempts of the process fail, as a lake outage would.
//! Unset in production: then nothing happens.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const PANIC_BEFORE_COMMIT_ENV: &str = "STREAMREEL_FAULT_PANIC_BEFORE_COMMIT";

pub const PANIC_AFTER_COMMIT_ENV: &str = "STREAMREEL_FAULT_PANIC_AFTER_COMMIT";

pub const FAIL_BRONZE_COMMITS_ENV: &str = "STREAMREEL_FAULT_FAIL_BRONZE_COMMITS";

static FIRED: AtomicBool = AtomicBool::new(false);
static FIRED_AFTER: AtomicBool = AtomicBool::new(false);

/// True for the first `n` calls when [`FAIL_BRONZE_COMMITS_ENV`] is `n`.
pub fn bronze_commit_should_fail() -> bool {
    static LEFT: OnceLock<AtomicU64> = OnceLock::new();
    let left = LEFT.get_or_init(|| {
        AtomicU64::new(
            std::env::var(FAIL_BRONZE_COMMITS_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    });
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn partition_in(env: &'static str, cell: &OnceLock<Option<i32>>) -> Option<i32> {
    *cell.get_or_init(|| std::env::var(env).ok().and_then(|v| v.parse().ok()))
}

/// Panics the first time it is called for the configured partition.
pub fn maybe_panic_before_commit(partition: i32) {
    static TARGET: OnceLock<Option<i32>> = OnceLock::new();
    if partition_in(PANIC_BEFORE_COMMIT_ENV, &TARGET) == Some(partition)
        && !FIRED.swap(true, Ordering::SeqCst)
    {
        panic!("injected fault: panic before the bronze commit of partition {partition}");
    }
}

/// Panics the first time it is called for the configured partition.
pub fn maybe_panic_after_commit(partition: i32) {
    static TARGET: OnceLock<Option<i32>> = OnceLock::new();
    if partition_in(PANIC_AFTER_COMMIT_ENV, &TARGET) == Some(partition)
        && !FIRED_AFTER.swap(true, Ordering::SeqCst)
    {
        panic!(
            "injected fault: panic between the bronze commit and the checkpoint of partition {partition}"
        );
    }
}
