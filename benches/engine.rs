//! Observations per second through the sync engine, and engine state per agent.
//!
//! `cargo bench --bench engine`. Every agent uses the shipped default profile;
//! the stream mixes Teams presence changes and CC status reports the way a
//! busy contact center produces them, time moves 1 ms per observation, due
//! wake-ups run every 1,000 observations and every Teams write is answered at
//! once, so debounce, echo, keep-alive and loop-guard paths all run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use divan::Bencher;
use divan::counter::ItemsCount;
use presence_sync::mapping::{Profile, StatusId, load_profile};
use presence_sync::presence::Presence;
use presence_sync::sync::{AgentKey, Decision, Engine, ProfileId, Settings, WriteOutcome};
use presence_sync::time::Timestamp;

const BATCH: usize = 100_000;

const PRESENCES: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "InAMeeting"),
    ("Busy", "InACall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
    ("BeRightBack", "BeRightBack"),
];

fn default_profile() -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/default.toml");
    match load_profile("default", &path) {
        Ok(profile) => profile,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            panic!("the shipped default profile must load");
        }
    }
}

/// An engine with `agents` agents, each with a CC status and a presence.
struct Load {
    engine: Engine,
    agents: u32,
    statuses: u16,
    presences: Vec<Presence>,
    now: Timestamp,
    step: u64,
    out: Vec<Decision>,
}

impl Load {
    fn new(agents: u32) -> Self {
        let profile = Arc::new(default_profile());
        let statuses = u16::try_from(profile.statuses.len()).unwrap();
        let mut engine = Engine::new(Settings::default(), vec![profile]).unwrap();
        for _ in 0..agents {
            engine.add_agent(ProfileId(0)).unwrap();
        }
        let mut load = Load {
            engine,
            agents,
            statuses,
            presences: PRESENCES
                .iter()
                .map(|(a, b)| Presence::from_graph(a, b))
                .collect(),
            now: Timestamp::from_secs(1_700_000_000),
            step: 0,
            out: Vec::with_capacity(4096),
        };
        // Warm up: every agent has a status and a presence, and state is steady.
        load.run(agents as usize * 4);
        load
    }

    /// Feeds `n` observations.
    fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.step += 1;
            let step = self.step;
            // A cheap spread over agents that is not sequential.
            let agent =
                AgentKey(((step.wrapping_mul(2_654_435_761)) % u64::from(self.agents)) as u32);
            self.now = self.now + Duration::from_millis(1);
            let result = if step.is_multiple_of(2) {
                let presence =
                    self.presences[(step / 2 % self.presences.len() as u64) as usize].clone();
                self.engine
                    .observe_teams(self.now, agent, presence, &mut self.out)
            } else {
                let status = StatusId((step / 2 % u64::from(self.statuses)) as u16);
                self.engine
                    .report_cc(self.now, agent, status, &mut self.out)
            };
            debug_assert!(result.is_ok());
            if step.is_multiple_of(1000) {
                self.engine.tick(self.now, &mut self.out);
            }
            self.answer_writes();
        }
    }

    fn answer_writes(&mut self) {
        while let Some(decision) = self.out.pop() {
            if let Decision::WriteTeams { agent, id, .. } = decision {
                let mut more = Vec::new();
                let _ = self
                    .engine
                    .write_done(self.now, agent, id, WriteOutcome::Done, &mut more);
                self.out.extend(more);
            }
        }
    }
}

#[divan::bench(args = [10_000, 100_000], sample_count = 20, sample_size = 1)]
fn observations(bencher: Bencher, agents: u32) {
    let mut load = Load::new(agents);
    bencher
        .counter(ItemsCount::new(BATCH))
        .bench_local(|| load.run(BATCH));
}

fn main() {
    for agents in [10_000u32, 100_000] {
        let load = Load::new(agents);
        let bytes = load.engine.state_bytes();
        println!(
            "engine state with {agents} agents: {bytes} bytes, {} bytes/agent",
            bytes / agents as usize
        );
    }
    divan::main();
}
