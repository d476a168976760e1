//! CPU time of a process from `/proc/<pid>/stat`, so the benchmark can say
//! which process spent the time: the broker or the client.

use std::collections::BTreeMap;

/// Clock ticks per second in `/proc`: USER_HZ, fixed at 100 by the Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds used so far by process `pid` (all its threads).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// As [`cpu_seconds`], for this process.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds(std::process::id())
}

/// CPU seconds of process `pid`'s live threads, summed by kind: the thread's
/// name without trailing digits (librdkafka numbers its broker threads).
/// Threads that already ended are not counted.
pub fn cpu_seconds_by_thread_kind(pid: u32) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut kinds = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
            continue;
        };
        *kinds.entry(thread_kind(&stat)?.to_string()).or_insert(0.0) += parse_stat(&stat)?;
    }
    Ok(kinds)
}

/// The thread's name (field 2, in parentheses) without trailing digits.
fn thread_kind(stat: &str) -> anyhow::Result<&str> {
    let name = stat
        .find('(')
        .zip(stat.rfind(')'))
        .map(|(open, close)| &stat[open + 1..close])
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc stat: {stat}"))?;
    Ok(name.trim_end_matches(|c: char| c.is_ascii_digit()))
}

/// Fields 14 and 15 (utime, stime) count after the command name, which is in
/// parentheses and may itself hold spaces.
fn parse_stat(stat: &str) -> anyhow::Result<f64> {
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc stat: {stat}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .ok_or_else(|| anyhow::anyhow!("short /proc stat: {stat}"))?
            .parse::<f64>()?)
    };
    // After the name, field 3 (state) is at index 0, so utime (14) is at 11.
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}
