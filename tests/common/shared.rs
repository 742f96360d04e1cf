//! Access to `../shared` (Microsoft's documented payloads and other team
//! material beside the repository), which a fresh clone may not have.

use std::path::PathBuf;

/// `../shared/<relative>` when it exists. When it does not, prints why the
/// calling test is skipped and returns `None` — unless
/// `PRESENCE_SYNC_REQUIRE_SHARED=1` (CI), where a missing directory fails
/// the test.
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
    eprintln!(
        "skipped: {shown} not found (set PRESENCE_SYNC_REQUIRE_SHARED=1 to make this an error)"
    );
    None
}

/// Reads and parses a strict JSON file under `../shared/<relative>`.
pub fn shared_json(relative: &str) -> Option<serde_json::Value> {
    let path = shared_path(relative)?;
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not strict JSON: {e}", path.display())),
    )
}
