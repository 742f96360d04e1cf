//! Microsoft's documented payloads and other material in `../shared`,
//! beside the repository, which tests use as fixtures. A fresh clone may not
//! have it: tests then say they were skipped and why, unless
//! `PRESENCE_SYNC_REQUIRE_SHARED=1` (CI), where a missing directory fails.
//! Test support only; nothing in the daemon reads `../shared`.

use std::io::Write;
use std::path::PathBuf;

/// `../shared/<relative>` when it exists; otherwise `None` after saying why
/// the calling test is skipped (or a panic when CI requires it).
pub fn shared_path(relative: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(relative);
    if path.exists() {
        return Some(path);
    }
    let shown = format!("../shared/{relative}");
    if std::env::var("PRESENCE_SYNC_REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("{shown} not found and PRESENCE_SYNC_REQUIRE_SHARED=1");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {shown} not found (set PRESENCE_SYNC_REQUIRE_SHARED=1 to make this an error)"
    );
    None
}

/// The text of `../shared/<relative>`, or `None` as [`shared_path`] says.
pub fn shared_text(relative: &str) -> Option<String> {
    let path = shared_path(relative)?;
    Some(
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
    )
}
