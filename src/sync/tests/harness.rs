//! Drives one engine through time the way the daemon does, without any clock.

use std::sync::Arc;
use std::time::Duration;

use crate::mapping::{CcStatus, Direction, Profile, Rule, Side, StatusId, TeamsTarget, WriteMode};
use crate::presence::{Presence, PresencePattern};
use crate::sync::{
    AgentKey, Decision, Engine, Settings, SyncEvent, TeamsWrite, WriteId, WriteOutcome,
};
use crate::time::Timestamp;

pub fn presence(text: &str) -> Presence {
    let (a, b) = text.split_once('/').unwrap_or((text, text));
    Presence::from_graph(a, b)
}

pub fn pattern(text: &str) -> PresencePattern {
    PresencePattern::parse(text).unwrap()
}

fn target(text: &str) -> TeamsTarget {
    if text == "clear" {
        TeamsTarget::Clear
    } else {
        TeamsTarget::Set(presence(text))
    }
}

/// The profile most scenarios use: SPEC's contact center in miniature.
pub fn contact_center() -> Profile {
    let statuses: Vec<(&str, bool, &str)> = vec![
        ("Available", true, "clear"),
        ("On contact", false, "Busy/InACall"),
        ("Lunch", false, "Away/Away"),
        ("Meeting", false, "clear"),
        ("Break", false, "Away/Away"),
    ];
    let mut profile = Profile {
        name: "test".into(),
        direction: Direction::Both,
        debounce: Duration::from_secs(15),
        prefer: Side::Cc,
        write_mode: WriteMode::Session,
        statuses: statuses
            .iter()
            .map(|(n, r, _)| CcStatus {
                name: n.to_string(),
                routable: *r,
            })
            .collect(),
        cc_to_teams: statuses.iter().map(|(_, _, t)| target(t)).collect(),
        default_teams: TeamsTarget::Clear,
        rules: vec![],
        blocking: vec![pattern("Busy/InAMeeting")],
    };
    let meeting = id(&profile, "Meeting");
    let available = id(&profile, "Available");
    profile.rules.push(Rule {
        name: "meeting".into(),
        when: vec![
            pattern("Busy/InAMeeting"),
            pattern("DoNotDisturb/Presenting"),
        ],
        set: meeting,
        replaces: Some(vec![available]),
        restore: true,
        debounce: None,
    });
    profile
}

pub fn id(profile: &Profile, name: &str) -> StatusId {
    profile.status_id(name).unwrap()
}

pub struct Harness {
    pub engine: Engine,
    pub agent: AgentKey,
    pub now: Timestamp,
    /// Every decision so far, with the time it was made.
    pub log: Vec<(Timestamp, Decision)>,
    /// Writes sent and not yet answered.
    pub pending_writes: Vec<(WriteId, TeamsWrite)>,
    /// Acknowledge writes as soon as they are made.
    pub auto_ack: bool,
}

impl Harness {
    pub fn new(profile: Profile) -> Self {
        Self::with_settings(profile, Settings::default())
    }

    pub fn with_settings(profile: Profile, settings: Settings) -> Self {
        let mut engine = Engine::new(settings, vec![Arc::new(profile)]).unwrap();
        let agent = engine.add_agent(crate::sync::ProfileId(0)).unwrap();
        Harness {
            engine,
            agent,
            now: Timestamp::from_secs(1_000_000),
            log: Vec::new(),
            pending_writes: Vec::new(),
            auto_ack: true,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.engine.profiles()[0]
    }

    fn absorb(&mut self, out: Vec<Decision>) {
        let mut acks = Vec::new();
        for d in out {
            if let Decision::WriteTeams { id, write, .. } = &d {
                if self.auto_ack {
                    acks.push(*id);
                } else {
                    self.pending_writes.push((*id, write.clone()));
                }
            }
            self.log.push((self.now, d));
        }
        for id in acks {
            let mut out = Vec::new();
            self.engine
                .write_done(self.now, self.agent, id, WriteOutcome::Done, &mut out)
                .unwrap();
            self.absorb(out);
        }
    }

    /// Takes decisions made outside the harness's own calls.
    pub fn absorb_for_test(&mut self, out: Vec<Decision>) {
        self.absorb(out);
    }

    pub fn cc(&mut self, status: &str) {
        let mut out = Vec::new();
        self.engine
            .report_cc_named(self.now, self.agent, status, &mut out)
            .unwrap();
        self.absorb(out);
    }

    pub fn teams(&mut self, text: &str) {
        let mut out = Vec::new();
        self.engine
            .observe_teams(self.now, self.agent, presence(text), &mut out)
            .unwrap();
        self.absorb(out);
    }

    pub fn finish_write(&mut self, index: usize, outcome: WriteOutcome) {
        let (id, _) = self.pending_writes.remove(index);
        let mut out = Vec::new();
        self.engine
            .write_done(self.now, self.agent, id, outcome, &mut out)
            .unwrap();
        self.absorb(out);
    }

    /// Moves time forward, running every wake-up on its way at its own time.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(at) = self.engine.next_wakeup() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            let mut out = Vec::new();
            self.engine.tick(self.now, &mut out);
            self.absorb(out);
        }
        self.now = end;
    }

    pub fn secs(&mut self, s: u64) {
        self.advance(Duration::from_secs(s));
    }

    /// Teams writes since `from` (an index into the log).
    pub fn writes_since(&self, from: usize) -> Vec<TeamsWrite> {
        self.log[from..]
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::WriteTeams { write, .. } => Some(write.clone()),
                _ => None,
            })
            .collect()
    }

    /// When each Teams write was made.
    pub fn write_times(&self) -> Vec<Timestamp> {
        self.log
            .iter()
            .filter(|(_, d)| matches!(d, Decision::WriteTeams { .. }))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn requests_since(&self, from: usize) -> Vec<String> {
        self.log[from..]
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::RequestCc { status, .. } => {
                    Some(self.profile().status_name(*status).to_string())
                }
                _ => None,
            })
            .collect()
    }

    pub fn events_since(&self, from: usize) -> Vec<SyncEvent> {
        self.log[from..]
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::Event { event, .. } => match event {
                    SyncEvent::TeamsPresenceChanged { .. } => None,
                    other => Some(other.clone()),
                },
                _ => None,
            })
            .collect()
    }

    /// The daemon dies and starts again: the agent's snapshot goes through
    /// its stored (JSON) form into a new engine; writes that were on their
    /// way are lost with the process, and their answers never come.
    pub fn restart(&mut self) {
        let snapshot = self.engine.snapshot(self.agent).unwrap();
        let stored = serde_json::to_string(&snapshot).unwrap();
        let snapshot: crate::sync::AgentSnapshot = serde_json::from_str(&stored).unwrap();
        let profiles = self.engine.profiles().to_vec();
        self.engine = Engine::new(self.engine.settings().clone(), profiles).unwrap();
        self.pending_writes.clear();
        let mut out = Vec::new();
        self.agent = self
            .engine
            .restore_agent(self.now, crate::sync::ProfileId(0), &snapshot, &mut out)
            .unwrap();
        self.absorb(out);
    }

    pub fn mark(&self) -> usize {
        self.log.len()
    }
}

pub fn set_session(text: &str) -> TeamsWrite {
    TeamsWrite::SetSession {
        presence: presence(text),
        expiry: Settings::default().session_expiry,
    }
}
