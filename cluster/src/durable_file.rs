//! Files replaced whole: a crash leaves the old content or the new, never a
//! mix, and never a half-written file that a restart would refuse.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What a file being written is called beside its final name; a crash may
/// leave one behind, which the next write replaces.
pub const TMP_SUFFIX: &str = ".tmp";

/// The last bytes of every sealed file: a CRC-32 of what precedes them
/// (little-endian), then this mark.
const SEAL_MARK: [u8; 4] = *b"SRc1";
const SEAL_LEN: usize = 4 + SEAL_MARK.len();

/// `bytes` with a checksum after them ([`unseal`] checks it). bincode reads
/// most flipped bits as other valid values, so without it a damaged Raft file
/// could be read as a wrong vote, entry or state without complaint.
pub fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&SEAL_MARK);
    bytes
}

/// The bytes a sealed file holds, refused when they no longer match their
/// checksum. Bytes without the mark are returned whole: files written before
/// files were sealed. (A damaged mark makes a sealed file such a file, which
/// then fails to decode for its 8 bytes too many.)
pub fn unseal(bytes: &[u8]) -> Result<&[u8], Damaged> {
    let Some(body_len) = bytes.len().checked_sub(SEAL_LEN) else {
        return Ok(bytes);
    };
    let (body, seal) = bytes.split_at(body_len);
    let (crc, mark) = seal.split_at(4);
    if mark != SEAL_MARK {
        return Ok(bytes);
    }
    let expected = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let found = crc32fast::hash(body);
    if found != expected {
        return Err(Damaged { expected, found });
    }
    Ok(body)
}

/// A sealed file whose bytes changed after they were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("checksum {found:08x} instead of {expected:08x}: the file changed after it was written")]
pub struct Damaged {
    pub expected: u32,
    pub found: u32,
}

/// Replaces `path` with `bytes` (a temporary file, synced, then renamed). The
/// rename is durable once the directory is synced ([`sync_dir`]), which a
/// caller replacing several files does once for all of them.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Makes the creations, renames and removals of files in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors, durably: each new directory's
/// entry is synced in its parent, so that a power loss soon after cannot
/// take the directory, and what was written under it, away.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// [`replace`], then [`sync_dir`] of its directory: durable on return.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_reads_back_and_any_flipped_bit_is_caught() {
        let body = b"vote: term 7, node 2".to_vec();
        let sealed = seal(body.clone());
        assert_eq!(unseal(&sealed), Ok(&body[..]));
        // Every bit of the body and of the checksum: a flip in the mark makes
        // the file read as one written before seals, whole, 8 bytes too long.
        for bit in 0..(body.len() + 4) * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(unseal(&damaged).is_err(), "bit {bit}");
        }
        for bit in (body.len() + 4) * 8..sealed.len() * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(unseal(&damaged), Ok(&damaged[..]), "bit {bit}");
        }
    }

    #[test]
    fn files_written_before_seals_read_whole() {
        assert_eq!(unseal(b""), Ok(&b""[..]));
        assert_eq!(unseal(b"\x03abc"), Ok(&b"\x03abc"[..]));
        assert_eq!(unseal(b"0123456789"), Ok(&b"0123456789"[..]));
        assert_eq!(unseal(&seal(Vec::new())), Ok(&b""[..]));
    }

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("vote");
        write_durably(&path, b"old").expect("first write");
        write_durably(&path, b"new").expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vote")]);
    }
}
