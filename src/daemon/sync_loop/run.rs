//! The loop's run: it waits for a command, a presence, a write result or
//! the next wake-up, takes what else is waiting into the same step, lets
//! the engine and the router tick, and commits.

use crate::store::Store;
use crate::time::Timestamp;

use super::super::tasks::{TaskState, TaskStatus};
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
            let sleep = async {
                match wake {
                    Some(at) => {
                        let now = Timestamp::now();
                        tokio::time::sleep(at.since(now)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let stopping = tokio::select! {
                () = stop.stopped() => true,
                Some(cmd) = inputs.commands.recv() => { self.command(cmd); false }
                Some(update) = inputs.presences.recv() => { self.presence(update); false }
                Some(result) = inputs.write_results.recv() => { self.write_result(result); false }
                () = sleep => false,
            };
            // Take whatever else is waiting, up to a bound, into this step.
            for _ in 0..MAX_COMMANDS_PER_STEP {
                if let Ok(cmd) = inputs.commands.try_recv() {
                    self.command(cmd);
                } else if let Ok(update) = inputs.presences.try_recv() {
                    self.presence(update);
                } else if let Ok(result) = inputs.write_results.try_recv() {
                    self.write_result(result);
                } else {
                    break;
                }
            }
            let mut decisions = Vec::new();
            let now = Timestamp::now();
            self.engine.tick(now, &mut decisions);
            self.absorb(decisions);
            self.route_tick(now);
            if let Err(e) = self.commit().await {
                status.set(TaskState::Failed(e.clone()));
                return Err(e);
            }
            if stopping {
                // Answer what is still queued so no caller hangs, then stop.
                inputs.commands.close();
                while let Ok(cmd) = inputs.commands.try_recv() {
                    self.command(cmd);
                }
                self.commit().await?;
                return Ok(());
            }
        }
    }
}
