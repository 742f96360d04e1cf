//! The loop's run: it waits for a command, a presence, a write result or
//! the next wake-up, takes what else is waiting into the same step, and
//! has the step decided and committed (`step.rs`).

use crate::store::Store;

use super::super::tasks::{TaskState, TaskStatus};
use super::step::Input;
use super::{Inputs, SyncLoop};
use crate::stop::Stop;

/// Commands taken in one step at most: bounds the latency of the first.
const MAX_COMMANDS_PER_STEP: usize = 512;

impl<S: Store> SyncLoop<S> {
    /// Runs until stopped. An `Err` means the store failed: the daemon must
    /// exit and start again from what is durable.
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        status: TaskStatus,
        stop: Stop,
    ) -> Result<(), String> {
        status.set(TaskState::Running);
        loop {
            let wake = match (self.engine.next_wakeup(), self.router.next_wakeup()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let clock = std::sync::Arc::clone(&self.clock);
            let sleep = async {
                match wake {
                    Some(at) => {
                        tokio::time::sleep(at.since(clock.now())).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let mut taken = Vec::new();
            let stopping = tokio::select! {
                () = stop.stopped() => true,
                Some(cmd) = inputs.commands.recv() => { taken.push(Input::Command(cmd)); false }
                Some(update) = inputs.presences.recv() => { taken.push(Input::Presence(update)); false }
                Some(result) = inputs.write_results.recv() => { taken.push(Input::WriteResult(result)); false }
                () = sleep => false,
            };
            // Take whatever else is waiting, up to a bound, into this step.
            for _ in 0..MAX_COMMANDS_PER_STEP {
                if let Ok(cmd) = inputs.commands.try_recv() {
                    taken.push(Input::Command(cmd));
                } else if let Ok(update) = inputs.presences.try_recv() {
                    taken.push(Input::Presence(update));
                } else if let Ok(result) = inputs.write_results.try_recv() {
                    taken.push(Input::WriteResult(result));
                } else {
                    break;
                }
            }
            let now = self.clock.now();
            if let Err(e) = self.step(now, taken).await {
                status.set(TaskState::Failed(e.clone()));
                return Err(e);
            }
            if stopping {
                // Answer what is still queued so no caller hangs, then stop.
                inputs.commands.close();
                let mut queued = Vec::new();
                while let Ok(cmd) = inputs.commands.try_recv() {
                    queued.push(Input::Command(cmd));
                }
                let now = self.clock.now();
                for input in queued {
                    self.input(now, input);
                }
                self.commit(now).await?;
                return Ok(());
            }
        }
    }
}
