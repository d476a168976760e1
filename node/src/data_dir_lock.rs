//! One node process per data dir: an exclusive lock on `<data-dir>/streamreel.lock`,
//! held for the life of the process (the kernel releases it when the process
//! dies, however it dies).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::NodeError;

pub struct DataDirLock {
    _file: File,
}

pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, NodeError> {
    let path = data_dir.join("streamreel.lock");
    let io = |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            // The holder writes its pid just after it locks: read in between,
            // the file is empty.
            let holder = match holder.trim() {
                "" => "unknown".to_string(),
                pid => pid.to_string(),
            };
            return Err(NodeError::DataDirInUse {
                data_dir: data_dir.display().to_string(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { _file: file })
}

impl DataDirLock {
    /// Keeps the lock until the process exits. Dropped when `run_node`
    /// returns, it would be released while the runtime's blocking threads
    /// (a Raft snapshot being written) may still write under the data dir.
    pub fn hold_until_exit(self) {
        std::mem::forget(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_data_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        let error = lock_data_dir(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains(&std::process::id().to_string()), "{error}");
        assert!(error.contains("in use"), "{error}");
        drop(first);
        assert!(
            lock_data_dir(dir.path()).is_ok(),
            "released with its holder"
        );
    }
}
