//! Access to `../shared` (Microsoft's documented payloads and other team
//! material beside the repository), which a fresh clone may not have.

pub use presence_sync::shared_fixtures::shared_path;

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
