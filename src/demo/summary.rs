//! The demo's live output: one summary line from the daemon's own metrics,
//! and one line per notable event.

use crate::events::{Event, kind};
use crate::metrics::{Sample, parse_text};

/// The counters the summary shows, read from `/metrics`.
#[derive(Debug, Default)]
pub struct Summary {
    samples: Vec<Sample>,
}

impl Summary {
    pub fn update(&mut self, metrics: &str) {
        if let Ok(samples) = parse_text(metrics) {
            self.samples = samples;
        }
    }

    /// The sum of a metric's samples whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let name = format!("presence_sync_{name}");
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|s| s.value)
            .sum::<f64>() as u64
    }

    pub fn line(&self) -> String {
        let keepalives = self.sum("teams_writes_total", &[("kind", "keepalive")]);
        format!(
            "── agents synced {}/{} · contacts waiting {}, offered {} · Teams writes {} (+{} keep-alives) · CC requests {} · events {} · echoes suppressed {} · debounced {} · loop suspensions {} · Graph calls {} (429s {})",
            self.sum("agents", &[("linked", "true")]),
            self.sum("agents", &[]),
            self.sum("routing_waiting", &[]),
            self.sum("routing_offers_total", &[]),
            self.sum("teams_writes_total", &[]) - keepalives,
            keepalives,
            self.sum("cc_requests_total", &[]),
            self.sum("events_committed_total", &[]),
            self.sum("echo_suppressed_total", &[]),
            self.sum("debounced_total", &[]),
            self.sum("loop_suspensions_total", &[]),
            self.sum("graph_calls_total", &[]),
            self.sum("graph_throttled_total", &[]),
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

/// `contact c-1 (sales)` from a routing event's data.
fn contact_in(d: &serde_json::Value) -> String {
    format!(
        "contact {} ({})",
        d.get("contact").and_then(|s| s.as_str()).unwrap_or("?"),
        d.get("queue").and_then(|s| s.as_str()).unwrap_or("?")
    )
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
        kind::ROUTING_OFFERED => format!("routing: offered {}", contact_in(d)),
        kind::ROUTING_ACCEPTED => format!("routing: accepted {}", contact_in(d)),
        kind::ROUTING_DECLINED => format!("routing: declined {}", contact_in(d)),
        kind::ROUTING_RONA => format!("routing: no answer in time to {}", contact_in(d)),
        kind::ROUTING_COMPLETED => format!("routing: completed {}", contact_in(d)),
        kind::ROUTING_OVERFLOW => format!("routing: overflow of {}", contact_in(d)),
        kind::ROUTING_AGENT_PAUSED => "routing: paused after missed offers".to_string(),
        _ => return None,
    };
    Some(format!("#{:<6} {agent}: {text}", event.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_samples_into_their_family() {
        let text = "# HELP x\npresence_sync_agents{linked=\"true\"} 3\npresence_sync_agents{linked=\"false\"} 1\npresence_sync_teams_writes_total{kind=\"set\",outcome=\"ok\"} 7\npresence_sync_teams_writes_total{kind=\"keepalive\",outcome=\"ok\"} 2\n";
        let mut s = Summary::default();
        s.update(text);
        assert_eq!(s.sum("agents", &[]), 4);
        assert!(s.line().contains("agents synced 3/4"), "{}", s.line());
        assert!(
            s.line().contains("Teams writes 7 (+2 keep-alives)"),
            "{}",
            s.line()
        );
    }
}
