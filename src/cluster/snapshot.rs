//! Snapshots: the whole store as of one commit log position, so a new
//! standby need not replay a log whose history is bounded.
//!
//! A snapshot is `presence-sync export`'s JSON lines (the header with the
//! store id and the next seq, agents, outbox, contacts, events, meta, the
//! log position among the meta) followed by the stored directory, which
//! the log replicates too but backups leave out:
//!
//! ```text
//! {"kind":"presence-sync-export","schema":1,"store_id":"5f0c…","next_seq":812}
//! …
//! {"kind":"meta","key":"log_position","value":"4711"}
//! {"kind":"directory","complete":true,"delta_link":"https://…"}
//! {"kind":"directory_user","user":{…StoredUser…}}
//! {"kind":"directory_staged_user","user":{…StoredUser…}}
//! ```
//!
//! The directory lines come only when the store holds a directory; staged
//! users belong to a replace that came in several records and whose last
//! record is after the snapshot's position. The
//! notification inbox is in neither the log nor snapshots: a node that
//! takes over reconciles by polling, as a restored backup does.
//!
//! Restoring imports into an empty directory, which keeps the store id and
//! the next seq, so the restored standby numbers the events of the records
//! after the snapshot as the active did.

use std::fs::File;
use std::io::{BufRead, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{Position, SnapshotMeta};
use crate::store::export::EXPORT_KIND;
use crate::store::{DirectoryParts, SledStore, Store, StoreError, StoredUser, export, import};

/// The log position's meta line, as an export writes it.
const POSITION_LINE_START: &str = r#"{"kind":"meta","key":"log_position","value":"#;
/// Every directory line starts so (export lines never do).
const DIRECTORY_LINE_START: &str = r#"{"kind":"directory"#;

/// A directory line of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum DirectoryLine {
    Directory {
        complete: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta_link: Option<String>,
    },
    DirectoryUser {
        user: StoredUser,
    },
    /// A user staged for a replace whose last record the snapshot does not
    /// hold yet.
    DirectoryStagedUser {
        user: StoredUser,
    },
}

/// Takes a snapshot of `sled`. The caller keeps commits away meanwhile
/// (the active through [`super::replicated::ReplicatedStore::snapshot`],
/// a standby by not applying), so the store, its directory and its
/// position are of one moment.
pub fn take(sled: &SledStore) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
    let mut bytes = Vec::new();
    let meta = take_into(sled, &mut bytes)?;
    Ok((meta, bytes))
}

/// [`take`] into a file of its own in the store's directory (on the
/// store's disk, not a `/tmp` that may be memory), unlinked as soon as it
/// is created, and returned read from its start: a snapshot of 50,000
/// agents takes tens of megabytes, which memory need not hold to send it.
pub fn take_file(sled: &SledStore) -> Result<(SnapshotMeta, File), StoreError> {
    let io = |e: std::io::Error| StoreError::Io(format!("writing a snapshot to a file: {e}"));
    let mut file = unlinked_file_in(sled.dir()).map_err(io)?;
    let meta = {
        let mut out = BufWriter::new(&mut file);
        let meta = take_into(sled, &mut out)?;
        out.flush().map_err(io)?;
        meta
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok((meta, file))
}

/// A new file in `dir`, readable and writable by this user only, whose
/// name is removed at once.
fn unlinked_file_in(dir: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut tries = 0u32;
    loop {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let path = dir.join(format!(
            "presence-sync-snapshot-{}-{nanos:x}-{tries}",
            std::process::id()
        ));
        match options.open(&path) {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Writes the snapshot to `out`; see [`take`].
fn take_into(sled: &SledStore, out: &mut impl Write) -> Result<SnapshotMeta, StoreError> {
    let position = sled.log_position()?;
    if position == 0 {
        return Err(StoreError::Replication(
            "a store that holds no commit log record (position 0) has nothing to snapshot"
                .to_owned(),
        ));
    }
    let mut out = Counted { out, bytes: 0 };
    export(sled, &mut out)?;
    let directory = sled.directory_parts()?;
    if directory != DirectoryParts::default() {
        let mut line = |value: &DirectoryLine| -> Result<(), StoreError> {
            serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Io(e.to_string()))?;
            out.write_all(b"\n")
                .map_err(|e| StoreError::Io(e.to_string()))
        };
        line(&DirectoryLine::Directory {
            complete: directory.complete,
            delta_link: directory.delta_link,
        })?;
        for user in directory.users {
            line(&DirectoryLine::DirectoryUser { user })?;
        }
        for user in directory.staged {
            line(&DirectoryLine::DirectoryStagedUser { user })?;
        }
    }
    Ok(SnapshotMeta {
        store_id: sled.store_id().to_owned(),
        position,
        taken_at: Utc::now(),
        bytes: out.bytes,
    })
}

/// A writer that counts what it wrote.
struct Counted<'a, W: Write> {
    out: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Restores a snapshot into `dir`, which must be empty or missing. The
/// snapshot is checked against `meta` (size, store id, position) and
/// every line is read before anything is written; the store is left
/// closed cleanly, ready for [`SledStore::open`].
pub fn restore(dir: &Path, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), StoreError> {
    let refuse = |problem: String| StoreError::Replication(format!("snapshot refused: {problem}"));
    if bytes.len() as u64 != meta.bytes {
        return Err(refuse(format!(
            "it has {} bytes where its description says {}",
            bytes.len(),
            meta.bytes
        )));
    }
    let (export_part, directory) = split(bytes)?;
    let (store_id, position) = header_facts(export_part)?;
    if store_id != meta.store_id {
        return Err(refuse(format!(
            "it is of store {store_id}, its description says {}",
            meta.store_id
        )));
    }
    if position != meta.position {
        return Err(refuse(format!(
            "it holds commit log position {position}, its description says {}",
            meta.position
        )));
    }
    import(dir, export_part)?;
    let sled = SledStore::open(dir)?;
    let restored = sled.log_position()?;
    if restored != meta.position || sled.store_id() != meta.store_id {
        return Err(refuse(format!(
            "the restored store in {} is of store {} at position {restored}, not {} at {}; remove it",
            dir.display(),
            sled.store_id(),
            meta.store_id,
            meta.position
        )));
    }
    if let Some(directory) = directory {
        sled.restore_directory(&directory)?;
    }
    sled.mark_clean_shutdown()
}

/// The export's lines, and the directory read from the lines after them.
fn split(bytes: &[u8]) -> Result<(&[u8], Option<DirectoryParts>), StoreError> {
    let mut offset = 0;
    let mut export_end = None;
    let mut directory: Option<DirectoryParts> = None;
    for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        let start = offset;
        offset += line.len();
        if export_end.is_none() {
            if !line.starts_with(DIRECTORY_LINE_START.as_bytes()) {
                continue;
            }
            export_end = Some(start);
        }
        let fail = |message: String| StoreError::Import {
            line: line_number,
            message,
        };
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let parsed: DirectoryLine =
            serde_json::from_slice(text).map_err(|e| fail(e.to_string()))?;
        match (parsed, directory.as_mut()) {
            (
                DirectoryLine::Directory {
                    complete,
                    delta_link,
                },
                None,
            ) => {
                directory = Some(DirectoryParts {
                    complete,
                    delta_link,
                    users: Vec::new(),
                    staged: Vec::new(),
                });
            }
            (DirectoryLine::DirectoryUser { user }, Some(parts)) => parts.users.push(user),
            (DirectoryLine::DirectoryStagedUser { user }, Some(parts)) => parts.staged.push(user),
            (DirectoryLine::Directory { .. }, Some(_)) => {
                return Err(fail("a second directory line".to_owned()));
            }
            (
                DirectoryLine::DirectoryUser { .. } | DirectoryLine::DirectoryStagedUser { .. },
                None,
            ) => {
                return Err(fail(
                    "a directory user before the directory line".to_owned(),
                ));
            }
        }
    }
    Ok((&bytes[..export_end.unwrap_or(bytes.len())], directory))
}

/// The store id in the export's header and the log position among its
/// meta lines (0 when there is none).
fn header_facts(export_part: &[u8]) -> Result<(String, Position), StoreError> {
    #[derive(Deserialize)]
    struct Header {
        kind: String,
        store_id: String,
    }
    #[derive(Deserialize)]
    struct PositionLine {
        value: String,
    }
    let mut lines = export_part.lines().enumerate();
    let header: Header = match lines.next() {
        Some((_, Ok(text))) => serde_json::from_str(&text).map_err(|e| StoreError::Import {
            line: 1,
            message: format!("the snapshot's first line is not an export header: {e}"),
        })?,
        _ => {
            return Err(StoreError::Import {
                line: 1,
                message: "the snapshot is empty".to_owned(),
            });
        }
    };
    if header.kind != EXPORT_KIND {
        return Err(StoreError::Import {
            line: 1,
            message: format!("the snapshot's first line is a {:?} line", header.kind),
        });
    }
    let mut position = 0;
    for (index, text) in lines {
        let line = index + 1;
        let text = text.map_err(|e| StoreError::Import {
            line,
            message: e.to_string(),
        })?;
        if !text.starts_with(POSITION_LINE_START) {
            continue;
        }
        let parsed: PositionLine = serde_json::from_str(&text).map_err(|e| StoreError::Import {
            line,
            message: e.to_string(),
        })?;
        position = parsed.value.parse().map_err(|_| StoreError::Import {
            line,
            message: format!("the log position {:?} is not a number", parsed.value),
        })?;
    }
    Ok((header.store_id, position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::apply::{Applied, apply};
    use crate::cluster::record::{self, Record};
    use crate::store::DirectoryBatch;
    use crate::store::testing::batch;

    fn user(id: &str) -> StoredUser {
        StoredUser {
            id: id.to_owned(),
            upn: Some(format!("{id}@contoso.example")),
            mail: None,
            business_phones: vec![],
            mobile_phone: None,
            teams: Some(true),
            teams_phone: None,
        }
    }

    /// A store at position 3: genesis, a step, a directory change.
    fn source() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(dir.path()).unwrap();
        let id = sled.store_id().to_owned();
        let records = [
            Record::Genesis {
                store_id: id.clone(),
            },
            Record::Step {
                store_id: id.clone(),
                batch: batch("a1", 1, 2, 100),
            },
            Record::Directory {
                store_id: id,
                batch: DirectoryBatch {
                    replace: true,
                    upserts: vec![user("u1"), user("u2")],
                    removes: vec![],
                    delta_link: Some("https://graph.example/d".into()),
                },
            },
        ];
        for (position, record) in (1..).zip(&records) {
            let bytes = record::encode(record).unwrap();
            assert_eq!(apply(&sled, position, &bytes).unwrap(), Applied::Applied);
        }
        (dir, sled)
    }

    fn exported(sled: &SledStore) -> Vec<u8> {
        let mut out = Vec::new();
        export(sled, &mut out).unwrap();
        out
    }

    #[test]
    fn a_restored_snapshot_is_the_store_with_its_directory() {
        let (_source_dir, sled) = source();
        let (meta, bytes) = take(&sled).unwrap();
        assert_eq!(meta.position, 3);
        assert_eq!(meta.store_id, sled.store_id());
        assert_eq!(meta.bytes, bytes.len() as u64);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#"{"kind":"meta","key":"log_position","value":"3"}"#));
        assert!(text.contains(
            r#"{"kind":"directory","complete":true,"delta_link":"https://graph.example/d"}"#
        ));

        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("state");
        restore(&dir, &meta, &bytes).unwrap();
        let restored = SledStore::open(&dir).unwrap();
        assert_eq!(
            restored.opened(),
            crate::store::OpenCheck::AfterCleanShutdown
        );
        assert_eq!(restored.store_id(), sled.store_id());
        assert_eq!(restored.log_position().unwrap(), 3);
        assert_eq!(exported(&restored), exported(&sled));
        assert_eq!(restored.directory().unwrap(), sled.directory().unwrap());
        // It takes the same snapshot again.
        let (again_meta, again) = take(&restored).unwrap();
        assert_eq!(again, bytes);
        assert_eq!(again_meta.position, meta.position);
    }

    #[test]
    fn a_snapshot_in_a_file_is_the_snapshot_and_leaves_no_name_behind() {
        let (_source_dir, sled) = source();
        let (meta, bytes) = take(&sled).unwrap();
        let names = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    name.starts_with(&format!("presence-sync-snapshot-{}-", std::process::id()))
                })
                .collect()
        };
        let (file_meta, mut file) = take_file(&sled).unwrap();
        assert_eq!(names(sled.dir()), Vec::<String>::new());
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut read).unwrap();
        assert_eq!(read, bytes);
        assert_eq!(file_meta.bytes, read.len() as u64);
        assert_eq!(
            (&file_meta.store_id, file_meta.position),
            (&meta.store_id, meta.position)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn an_incomplete_directory_is_carried_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(dir.path()).unwrap();
        let change = record::encode(&Record::Directory {
            store_id: sled.store_id().to_owned(),
            batch: DirectoryBatch {
                upserts: vec![user("u9")],
                delta_link: Some("https://graph.example/partial".into()),
                ..DirectoryBatch::default()
            },
        })
        .unwrap();
        apply(&sled, 1, &change).unwrap();
        let (meta, bytes) = take(&sled).unwrap();
        let target = tempfile::tempdir().unwrap();
        restore(target.path(), &meta, &bytes).unwrap();
        let restored = SledStore::open(target.path()).unwrap();
        assert_eq!(restored.directory().unwrap(), None);
        assert_eq!(
            restored.directory_parts().unwrap(),
            sled.directory_parts().unwrap()
        );
    }

    #[test]
    fn a_snapshot_that_does_not_match_its_description_is_refused_before_writing() {
        let (_source_dir, sled) = source();
        let (meta, bytes) = take(&sled).unwrap();
        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("state");
        let cases = [
            (
                SnapshotMeta {
                    position: 4,
                    ..meta.clone()
                },
                bytes.clone(),
                "position 3",
            ),
            (
                SnapshotMeta {
                    store_id: "00c0ffee00c0ffee".into(),
                    ..meta.clone()
                },
                bytes.clone(),
                "of store",
            ),
            (
                SnapshotMeta {
                    bytes: meta.bytes + 1,
                    ..meta.clone()
                },
                bytes.clone(),
                "bytes",
            ),
        ];
        for (described, bytes, expected) in cases {
            match restore(&dir, &described, &bytes) {
                Err(StoreError::Replication(problem)) => {
                    assert!(problem.contains(expected), "{problem}")
                }
                other => panic!("{other:?}"),
            }
            assert!(!dir.exists(), "a refused snapshot wrote");
        }
        // A damaged directory line is named by its line.
        let mut damaged = String::from_utf8(bytes).unwrap();
        damaged.push_str("{\"kind\":\"directory_user\",\"user\":{}}\n");
        let described = SnapshotMeta {
            bytes: damaged.len() as u64,
            ..meta
        };
        assert!(matches!(
            restore(&dir, &described, damaged.as_bytes()),
            Err(StoreError::Import { .. })
        ));
        assert!(!dir.exists());
        // Into a directory that holds a store: refused.
        let (good_meta, good) = take(&sled).unwrap();
        assert!(matches!(
            restore(sled.dir(), &good_meta, &good),
            Err(StoreError::NotEmpty { .. })
        ));
    }

    #[test]
    fn a_store_outside_the_log_has_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(dir.path()).unwrap();
        assert!(matches!(take(&sled), Err(StoreError::Replication(_))));
    }
}
