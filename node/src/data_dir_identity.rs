//! Which member a data dir belongs to: `<data-dir>/node-id`, written on the
//! first start. The Raft log and vote under it are that member's; another id
//! started on them would either sit outside the cluster it finds there, never
//! ingesting and never saying why, or vote and append as a member it is not.

use std::path::Path;

use streamreel_cluster::durable_file;

use crate::error::NodeError;

const FILE: &str = "node-id";

/// Records `node_id` in a data dir that has no owner yet, and refuses one
/// that belongs to another member. Call with the data dir locked.
pub fn claim_data_dir(data_dir: &Path, node_id: u64) -> Result<(), NodeError> {
    let path = data_dir.join(FILE);
    let io = |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(owner) if owner == node_id => Ok(()),
            Ok(owner) => Err(NodeError::DataDirOfOtherMember {
                data_dir: data_dir.display().to_string(),
                owner,
                ours: node_id,
            }),
            Err(_) => Err(NodeError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("holds {:?}, not a node id", text.trim()),
                ),
            }),
        },
        // A new data dir, or one from a version that did not record its
        // owner: this member takes it, writing the file whole or not at all
        // (a crash mid-write must not leave a file that refuses every start).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            durable_file::write_durably(&path, format!("{node_id}\n").as_bytes()).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_stays_with_the_member_that_first_used_it() {
        let dir = tempfile::tempdir().unwrap();
        claim_data_dir(dir.path(), 2).unwrap();
        claim_data_dir(dir.path(), 2).expect("a restart of the same member");
        let error = claim_data_dir(dir.path(), 1).unwrap_err().to_string();
        assert!(
            error.contains("belongs to node 2") && error.contains("node 1"),
            "{error}"
        );
        std::fs::write(dir.path().join(FILE), "two").unwrap();
        let error = claim_data_dir(dir.path(), 2).unwrap_err().to_string();
        assert!(error.contains("not a node id"), "{error}");
    }
}
