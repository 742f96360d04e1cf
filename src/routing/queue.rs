//! What a queue is: its strategy, the skills it needs, its timings and where
//! its contacts go when they have waited too long. Plain settings, built by
//! the config loader and handed to the router.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a queue picks among the agents free to take its next contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent idle longest: since it last became routable or finished
    /// wrap-up. Ties: agent order.
    LongestIdle,
    /// The next agent after the one offered last, in agent order, wrapping.
    RoundRobin,
    /// The agent who accepted the fewest contacts today (UTC). Ties: longest idle.
    FewestContacts,
    /// The agent with the least time on contacts today, talk and wrap-up
    /// (UTC). Ties: longest idle.
    LeastOccupied,
    /// The first free agent in agent order (position, then id).
    TopDown,
    /// Any free agent, uniformly, from the router's seeded generator.
    Random,
    /// The highest summed proficiency in the skills the contact needs.
    /// Ties: longest idle.
    SkillsBest,
}

impl Strategy {
    pub const ALL: [Strategy; 7] = [
        Strategy::LongestIdle,
        Strategy::RoundRobin,
        Strategy::FewestContacts,
        Strategy::LeastOccupied,
        Strategy::TopDown,
        Strategy::Random,
        Strategy::SkillsBest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest-idle",
            Strategy::RoundRobin => "round-robin",
            Strategy::FewestContacts => "fewest-contacts",
            Strategy::LeastOccupied => "least-occupied",
            Strategy::TopDown => "top-down",
            Strategy::Random => "random",
            Strategy::SkillsBest => "skills-best",
        }
    }

    pub fn parse(text: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a contact goes after its queue's maximum wait.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowTarget {
    /// Another queue; the contact keeps its place by arrival there.
    Queue(String),
    /// Teams users (object ids or UPNs) the CC should dial directly, in
    /// order of preference; the daemon finds their numbers in the directory.
    TeamsUsers(Vec<String>),
}

/// One queue's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSettings {
    pub name: String,
    pub strategy: Strategy,
    /// Skill → the minimum level an agent needs.
    pub skills: BTreeMap<String, u8>,
    /// The priority of its contacts unless one is given; higher goes first.
    pub priority: u8,
    /// An offer not accepted within this is a no-answer (RONA).
    pub offer_timeout: Duration,
    /// After a contact completes, the agent takes no contact for this long.
    pub wrap_up: Duration,
    /// Missed offers in a row (declines and no-answers) that pause an
    /// agent; 0 never pauses.
    pub max_no_answer: u32,
    /// After a miss the agent is not offered anything for this long.
    pub miss_backoff: Duration,
    /// A contact waiting longer overflows (needs `overflow`).
    pub max_wait: Option<Duration>,
    pub overflow: Option<OverflowTarget>,
    /// Agents in these groups serve the queue, after the agent's own list.
    pub groups: Vec<String>,
}

impl QueueSettings {
    /// A queue with the defaults the config uses.
    pub fn new(name: &str, strategy: Strategy) -> Self {
        QueueSettings {
            name: name.to_string(),
            strategy,
            skills: BTreeMap::new(),
            priority: 0,
            offer_timeout: Duration::from_secs(20),
            wrap_up: Duration::from_secs(10),
            max_no_answer: 3,
            miss_backoff: Duration::from_secs(10),
            max_wait: None,
            overflow: None,
            groups: Vec::new(),
        }
    }
}
