//! The demo's callers and what its agents do with their offers: contacts are
//! posted to the example queues, each offer is accepted a moment later (now
//! and then declined, so the next agent gets it), a contact is completed
//! after a talk, and the agent is made available again when its wrap-up
//! ends. The statuses in between (`On contact`, `After contact work`) are the
//! queues' own: the daemon asks for them and the CC sets them.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::events::{Event, kind};
use crate::sim::rng::Rng;
use crate::stop::Stop;

use super::contact_center::{ApiClient, Busy, CcError, secs};

/// The example queues, as the demo's config names them.
const QUEUES: [&str; 2] = ["sales", "support"];

/// Something an agent or the CC does later.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Accept {
        contact: String,
        agent: String,
    },
    Decline {
        contact: String,
        agent: String,
    },
    Complete {
        contact: String,
        agent: String,
    },
    /// The wrap-up is over: the agent takes contacts again.
    Available {
        agent: String,
    },
}

/// Actions by when they are due.
#[derive(Debug, Default)]
struct Agenda {
    due: Vec<(Instant, Action)>,
}

impl Agenda {
    fn add(&mut self, at: Instant, action: Action) {
        self.due.push((at, action));
    }

    fn next_at(&self) -> Option<Instant> {
        self.due.iter().map(|(at, _)| *at).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<Action> {
        let (due, later): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|(at, _)| *at <= now);
        self.due = later;
        due.into_iter().map(|(_, action)| action).collect()
    }
}

/// The average time between two new contacts for `agents` agents: about one
/// contact per agent every 100 s keeps roughly half of them on a contact.
pub fn contact_interval(agents: usize) -> Duration {
    let millis = 100_000 / agents.max(1) as u64;
    Duration::from_millis(millis.clamp(500, 10_000))
}

/// What a routing event asks of the simulated agents, if anything; `now`
/// and the generator place it in time.
fn react(event: &Event, now: Instant, rng: &mut Rng, busy: &Busy, agenda: &mut Agenda) {
    let Some(agent) = event.agent_id.clone() else {
        return;
    };
    let contact = || {
        event
            .data
            .get("contact")
            .and_then(|c| c.as_str())
            .map(str::to_string)
    };
    match event.kind.as_str() {
        kind::ROUTING_OFFERED => {
            let Some(contact) = contact() else { return };
            let at = now + Duration::from_millis(1_000 + rng.below(3_000));
            if rng.below(10) == 0 {
                agenda.add(at, Action::Decline { contact, agent });
            } else {
                agenda.add(at, Action::Accept { contact, agent });
            }
        }
        kind::ROUTING_ACCEPTED => {
            let Some(contact) = contact() else { return };
            busy.set(&agent, true);
            agenda.add(now + secs(rng, 20, 60), Action::Complete { contact, agent });
        }
        kind::ROUTING_COMPLETED => {
            let wrap_up = event
                .data
                .get("wrap_up_until")
                .and_then(|t| t.as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| {
                    (t.to_utc() - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            agenda.add(
                now + wrap_up + Duration::from_millis(500),
                Action::Available { agent },
            );
        }
        _ => {}
    }
}

async fn perform(api: &ApiClient, busy: &Busy, action: Action) {
    let result = match &action {
        Action::Accept { contact, agent } => api
            .post(
                &format!("/v1/contacts/{contact}/accept"),
                serde_json::json!({"agent_id": agent}),
            )
            .await
            .map(drop),
        Action::Decline { contact, agent } => api
            .post(
                &format!("/v1/contacts/{contact}/decline"),
                serde_json::json!({"agent_id": agent}),
            )
            .await
            .map(drop),
        Action::Complete { contact, agent } => api
            .post(
                &format!("/v1/contacts/{contact}/complete"),
                serde_json::json!({"agent_id": agent}),
            )
            .await
            .map(drop),
        Action::Available { agent } => {
            busy.set(agent, false);
            api.put(
                &format!("/v1/agents/{agent}/status"),
                serde_json::json!({"status": "Available"}),
            )
            .await
        }
    };
    // An offer can be withdrawn before it is answered (the agent went on a
    // break meanwhile): the daemon's refusal says so, and the demo goes on.
    if let Err(error) = result {
        tracing::info!(?action, %error, "the demo CC's action was refused");
    }
}

/// Posts contacts every `interval` on average and answers the routing
/// events it is handed, until stopped.
pub async fn run(
    api: ApiClient,
    seed: u64,
    interval: Duration,
    busy: Busy,
    mut events: mpsc::UnboundedReceiver<Event>,
    stop: Stop,
) -> Result<(), CcError> {
    let mut rng = Rng::new(seed ^ 0x00c0_ffee);
    let mut agenda = Agenda::default();
    let mut posted: u64 = 0;
    let spread = |rng: &mut Rng| {
        let base = interval.as_millis() as u64;
        Duration::from_millis(base / 2 + rng.below(base.max(1)))
    };
    let mut next_contact = Instant::now() + spread(&mut rng);
    loop {
        let wake = agenda
            .next_at()
            .map_or(next_contact, |at| at.min(next_contact));
        tokio::select! {
            () = stop.stopped() => return Ok(()),
            event = events.recv() => match event {
                Some(event) => react(&event, Instant::now(), &mut rng, &busy, &mut agenda),
                None => return Ok(()),
            },
            () = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        for action in agenda.take_due(now) {
            perform(&api, &busy, action).await;
        }
        if next_contact <= now {
            posted += 1;
            let queue = QUEUES[(rng.below(3) as usize).min(1)];
            let body = serde_json::json!({
                "queue": queue,
                "priority": if rng.below(8) == 0 { 1 } else { 0 },
                "data": {"caller": format!("+1 555 01{:02}", posted % 100)},
            });
            if let Err(error) = api.post("/v1/contacts", body).await {
                tracing::warn!(%error, "the demo CC could not post a contact");
            }
            next_contact = now + spread(&mut rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, agent: &str, data: serde_json::Value) -> Event {
        serde_json::from_value(serde_json::json!({
            "seq": 1, "id": "e-1", "type": kind, "time": "2026-01-01T00:00:00Z",
            "agent_id": agent, "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn offers_are_answered_contacts_completed_and_agents_freed_after_wrap_up() {
        let now = Instant::now();
        let mut rng = Rng::new(7);
        let busy = Busy::default();
        let mut agenda = Agenda::default();
        let offered = event(
            kind::ROUTING_OFFERED,
            "agent-001",
            serde_json::json!({"contact": "c-1", "queue": "sales"}),
        );
        react(&offered, now, &mut rng, &busy, &mut agenda);
        let due = agenda.take_due(now + Duration::from_secs(5));
        assert!(
            matches!(&due[..], [Action::Accept { contact, agent } | Action::Decline { contact, agent }]
                if contact == "c-1" && agent == "agent-001"),
            "{due:?}"
        );
        let accepted = event(
            kind::ROUTING_ACCEPTED,
            "agent-001",
            serde_json::json!({"contact": "c-1", "queue": "sales"}),
        );
        react(&accepted, now, &mut rng, &busy, &mut agenda);
        assert!(busy.contains("agent-001"));
        assert!(agenda.take_due(now + Duration::from_secs(19)).is_empty());
        let due = agenda.take_due(now + Duration::from_secs(61));
        assert_eq!(
            due,
            vec![Action::Complete {
                contact: "c-1".into(),
                agent: "agent-001".into()
            }]
        );
        let wrap_up_until = chrono::Utc::now() + chrono::Duration::seconds(10);
        let completed = event(
            kind::ROUTING_COMPLETED,
            "agent-001",
            serde_json::json!({"contact": "c-1", "queue": "sales", "wrap_up_until": wrap_up_until}),
        );
        react(&completed, now, &mut rng, &busy, &mut agenda);
        assert!(agenda.take_due(now + Duration::from_secs(8)).is_empty());
        assert_eq!(
            agenda.take_due(now + Duration::from_secs(12)),
            vec![Action::Available {
                agent: "agent-001".into()
            }]
        );
    }

    #[test]
    fn events_without_an_agent_or_of_other_kinds_ask_for_nothing() {
        let mut agenda = Agenda::default();
        let mut rng = Rng::new(1);
        let busy = Busy::default();
        let queued = event(
            kind::ROUTING_QUEUED,
            "agent-001",
            serde_json::json!({"contact": "c-1", "queue": "sales"}),
        );
        react(&queued, Instant::now(), &mut rng, &busy, &mut agenda);
        let mut offered = event(
            kind::ROUTING_OFFERED,
            "agent-001",
            serde_json::json!({"contact": "c-1"}),
        );
        offered.agent_id = None;
        react(&offered, Instant::now(), &mut rng, &busy, &mut agenda);
        assert!(agenda.next_at().is_none());
    }

    #[test]
    fn the_contact_rate_follows_the_agents_within_bounds() {
        assert_eq!(contact_interval(25), Duration::from_secs(4));
        assert_eq!(contact_interval(1), Duration::from_secs(10));
        assert_eq!(contact_interval(10_000), Duration::from_millis(500));
        assert_eq!(contact_interval(0), Duration::from_secs(10));
    }
}
