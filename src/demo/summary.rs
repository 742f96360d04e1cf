//! The demo's live output: one summary line from the daemon's own metrics,
//! and one line per notable event.

use std::collections::BTreeMap;

use crate::events::{Event, kind};

/// The counters the summary shows, read from `/metrics`.
#[derive(Debug, Default)]
pub struct Summary {
    values: BTreeMap<String, f64>,
}

/// Reads `name{labels} value` lines, summing a family's labelled samples.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let family = name.split('{').next().unwrap_or(name);
        if name.contains("le=") {
            continue;
        }
        *values.entry(family.to_string()).or_default() += value;
        values.insert(name.to_string(), value);
    }
    values
}

impl Summary {
    pub fn update(&mut self, metrics: &str) {
        self.values = parse_metrics(metrics);
    }

    fn get(&self, name: &str) -> u64 {
        self.values
            .get(&format!("presence_sync_{name}"))
            .copied()
            .unwrap_or(0.0) as u64
    }

    pub fn line(&self) -> String {
        format!(
            "── agents synced {}/{} · Teams writes {} (keep-alives {}) · CC requests {} · events {} · echoes suppressed {} · debounced {} · loop suspensions {} · Graph calls {} (429s {})",
            self.get("agents{linked=\"true\"}"),
            self.get("agents"),
            self.get("teams_writes_total"),
            self.get("keepalives_total"),
            self.get("cc_requests_total"),
            self.get("events_committed_total"),
            self.get("echo_suppressed_total"),
            self.get("debounced_total"),
            self.get("loop_suspensions_total"),
            self.get("graph_calls_total"),
            self.get("graph_throttled_total"),
        )
    }
}

fn presence(v: &serde_json::Value) -> String {
    match (
        v.get("availability").and_then(|a| a.as_str()),
        v.get("activity").and_then(|a| a.as_str()),
    ) {
        (Some(a), Some(b)) => format!("{a}/{b}"),
        _ => "?".into(),
    }
}

/// One line for an event worth showing, or `None`.
pub fn describe(event: &Event) -> Option<String> {
    let agent = event.agent_id.as_deref().unwrap_or("-");
    let d = &event.data;
    let text = match event.kind.as_str() {
        kind::TEAMS_WRITTEN => match d.get("presence").filter(|p| !p.is_null()) {
            Some(p) => format!("CC → Teams: set {}", presence(p)),
            None => "CC → Teams: handed back to the user's own presence".to_string(),
        },
        kind::CC_STATUS_REQUESTED => format!(
            "Teams → CC: asked for `{}` ({})",
            d.get("status").and_then(|s| s.as_str()).unwrap_or("?"),
            d.get("reason").and_then(|s| s.as_str()).unwrap_or("")
        ),
        kind::SYNC_LOOP_SUSPENDED => "loop guard: sync suspended".to_string(),
        kind::SYNC_LOOP_RESUMED => "loop guard: sync resumed".to_string(),
        kind::SYNC_TEAMS_OVERRIDE_DETECTED => {
            "Teams shows the user's own choice over ours: not re-writing".to_string()
        }
        kind::SYNC_WRITE_FAILED => format!(
            "Teams write failed: {}",
            d.get("message").and_then(|s| s.as_str()).unwrap_or("?")
        ),
        kind::AGENT_LINKED => "linked to its Teams user".to_string(),
        _ => return None,
    };
    Some(format!("#{:<6} {agent}: {text}", event.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_samples_into_their_family() {
        let text = "# HELP x\npresence_sync_agents{linked=\"true\"} 3\npresence_sync_agents{linked=\"false\"} 1\npresence_sync_teams_writes_total 7\n";
        let mut s = Summary::default();
        s.update(text);
        assert_eq!(s.get("agents"), 4);
        assert_eq!(s.get("agents{linked=\"true\"}"), 3);
        assert!(s.line().contains("agents synced 3/4"));
        assert!(s.line().contains("Teams writes 7"));
    }
}
