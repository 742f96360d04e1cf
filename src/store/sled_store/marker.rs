//! The clean-shutdown marker: a small file beside sled's own, written after
//! the last flush of a process that stops cleanly and taken away before
//! the next process lets sled touch the store. Present at open, it vouches
//! that the store was closed with everything on disk, so the deep check can
//! be skipped; missing (a crash, a kill, a power cut, an import), the store
//! is checked key by key.
//!
//! It is a file and not a meta record because sled writes to its files
//! whenever it opens them: reading a record would change the store before
//! we know whether it must first be checked on a scratch copy. It names the
//! store id and the next seq it vouches for; the open compares them with
//! the store's own meta.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::write::sync_dir;
use crate::store::StoreError;

/// The marker's file name in the state directory.
pub(crate) const FILE: &str = "clean-shutdown";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the marker durably: the file, then the directory entry.
pub(super) fn write(dir: &Path, store_id: &str, next_seq: u64) -> Result<(), StoreError> {
    let path = path(dir);
    let io_error = |e: io::Error| StoreError::Io(format!("writing {}: {e}", path.display()));
    let mut file = fs::File::create(&path).map_err(io_error)?;
    writeln!(file, "{store_id} {next_seq}").map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    sync_dir(dir)
}

/// Takes the marker away durably (before anything writes to the store) and
/// returns what it vouched for: the store id and the next seq. `None` when
/// there was none, or one that cannot be read (then removed all the same).
pub(super) fn take(dir: &Path) -> Result<Option<(String, u64)>, StoreError> {
    let path = path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Unreadable (not text, no permission): not a vouch, but it must go.
        Err(_) => String::new(),
    };
    remove(dir)?;
    Ok(parse(&text))
}

/// Withdraws the marker (a commit after it was written): the store is
/// being written again.
pub(super) fn remove(dir: &Path) -> Result<(), StoreError> {
    let path = path(dir);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io(format!("removing {}: {e}", path.display()))),
    }
}

pub(super) fn is_present(dir: &Path) -> bool {
    path(dir).is_file()
}

fn parse(text: &str) -> Option<(String, u64)> {
    let (id, seq) = text.trim().split_once(' ')?;
    Some((id.to_owned(), seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(dir.path()).unwrap(), None);
        write(dir.path(), "0123456789abcdef", 42).unwrap();
        assert!(is_present(dir.path()));
        assert_eq!(
            take(dir.path()).unwrap(),
            Some(("0123456789abcdef".to_owned(), 42))
        );
        assert!(!is_present(dir.path()));
        assert_eq!(take(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_garbled_marker_vouches_for_nothing_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path(dir.path()), "nonsense").unwrap();
        assert_eq!(take(dir.path()).unwrap(), None);
        assert!(!is_present(dir.path()));
    }
}
