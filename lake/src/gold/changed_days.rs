//! Which `day` partitions of `view_sessions` changed between two versions, read
//! from the Delta log: what lets gold rebuild a per-day model for those days
//! only.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;

use crate::error::LakeError;
use crate::silver::SESSIONS_PARTITION;
use crate::tables::SESSIONS_TABLE;

/// Beyond this many commits a full rebuild costs less than reading them.
const MAX_COMMITS_READ: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedDays {
    /// Only sessions of these days (UTC dates) were added, replaced or removed.
    Days(BTreeSet<NaiveDate>),
    /// Anything may have changed: the log does not say which days (a commit
    /// no longer in the log, a schema change, a file without its `day`).
    Unknown,
}

/// The days whose sessions changed in commits with `actions` (one list per
/// commit). Files added or removed by compaction (`dataChange` false) change
/// no row, so they change no day.
pub fn changed_days<'a>(commits: impl IntoIterator<Item = &'a [Action]>) -> ChangedDays {
    let mut days = BTreeSet::new();
    for actions in commits {
        for action in actions {
            let partition_values = match action {
                Action::Add(add) if add.data_change => Some(&add.partition_values),
                Action::Remove(remove) if remove.data_change => {
                    match remove.partition_values.as_ref() {
                        Some(values) => Some(values),
                        None => return ChangedDays::Unknown,
                    }
                }
                Action::Metadata(_) | Action::Protocol(_) => return ChangedDays::Unknown,
                _ => None,
            };
            let Some(values) = partition_values else {
                continue;
            };
            let day = values
                .get(SESSIONS_PARTITION)
                .and_then(|v| v.as_deref())
                .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
            match day {
                Some(day) => {
                    days.insert(day);
                }
                None => return ChangedDays::Unknown,
            }
        }
    }
    ChangedDays::Days(days)
}

/// The days whose sessions changed after version `since` up to the loaded
/// version of `sessions` (the `view_sessions` table).
pub async fn changed_days_since(
    sessions: &DeltaTable,
    since: u64,
) -> Result<ChangedDays, LakeError> {
    let Some(commits) = commits_since(sessions, since).await? else {
        return Ok(ChangedDays::Unknown);
    };
    Ok(changed_days(
        commits.iter().map(|(_, actions)| actions.as_slice()),
    ))
}

/// The actions of each commit of `sessions` (the `view_sessions` table)
/// after version `since` up to the loaded version; `None` when one has left
/// the log, or when there are too many to be worth reading.
pub async fn commits_since(
    sessions: &DeltaTable,
    since: u64,
) -> Result<Option<Vec<(u64, Vec<Action>)>>, LakeError> {
    let now = sessions.version().unwrap_or_default();
    if since > now || now - since > MAX_COMMITS_READ {
        return Ok(None);
    }
    let mut commits = Vec::new();
    for version in since + 1..=now {
        let entry = sessions
            .log_store()
            .read_commit_entry(version)
            .await
            .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?;
        let Some(bytes) = entry else {
            return Ok(None);
        };
        let actions =
            get_actions(version, &bytes).map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?;
        commits.push((version, actions));
    }
    Ok(Some(commits))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use deltalake::kernel::{Add, Remove, Transaction};

    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn values(day: &str) -> HashMap<String, Option<String>> {
        HashMap::from([(SESSIONS_PARTITION.to_string(), Some(day.to_string()))])
    }

    fn add(day: &str, data_change: bool) -> Action {
        Action::Add(Add {
            path: format!("day={day}/part.parquet"),
            partition_values: values(day),
            data_change,
            ..Default::default()
        })
    }

    fn remove(day: Option<&str>, data_change: bool) -> Action {
        Action::Remove(Remove {
            path: "old.parquet".into(),
            partition_values: day.map(values),
            data_change,
            ..Default::default()
        })
    }

    #[test]
    fn days_of_added_and_removed_files_changed_and_compaction_changed_none() {
        let first = vec![
            add("2026-11-30", true),
            Action::Txn(Transaction::new("streamreel-silver-sessions-0", 7)),
        ];
        let second = vec![
            remove(Some("2026-11-02"), true),
            add("2026-11-02", true),
            // Compaction of another day: the same rows in fewer files.
            remove(Some("2026-11-10"), false),
            add("2026-11-10", false),
        ];
        assert_eq!(
            changed_days([first.as_slice(), second.as_slice()]),
            ChangedDays::Days(BTreeSet::from([day("2026-11-02"), day("2026-11-30")]))
        );
        assert_eq!(
            changed_days(std::iter::empty()),
            ChangedDays::Days(BTreeSet::new())
        );
    }

    #[test]
    fn a_removed_file_without_its_day_or_a_protocol_change_leaves_the_days_unknown() {
        let no_day = vec![add("2026-11-30", true), remove(None, true)];
        assert_eq!(changed_days([no_day.as_slice()]), ChangedDays::Unknown);
        let protocol: Action =
            serde_json::from_str(r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#)
                .unwrap();
        let schema = vec![protocol];
        assert_eq!(changed_days([schema.as_slice()]), ChangedDays::Unknown);
        let unreadable_day = vec![add("yesterday", true)];
        assert_eq!(
            changed_days([unreadable_day.as_slice()]),
            ChangedDays::Unknown
        );
    }
}
