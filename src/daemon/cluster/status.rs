//! What a node of the pair knows of itself and the cluster: shown by
//! `/readyz`, `/v1/health`, the board and `/metrics`, on either role.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::api::model::{ClusterOut, LeaseHolderOut, NatsOut, NodeOut};

/// A node's role, as people read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Connecting to NATS, or restoring its store from a snapshot.
    Starting,
    Standby,
    Active,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Active => "active",
        }
    }
}

#[derive(Debug)]
struct Inner {
    out: ClusterOut,
    /// When this node last held every record of the log (for the lag in
    /// seconds); `None` before it ever did.
    caught_up_at: Option<Instant>,
}

/// Shared by the node runner, the follower, the lease keeper and the API.
#[derive(Debug)]
pub struct ClusterStatus {
    inner: Mutex<Inner>,
}

impl ClusterStatus {
    pub fn new(node_id: &str, tenant: &str) -> ClusterStatus {
        ClusterStatus {
            inner: Mutex::new(Inner {
                out: ClusterOut {
                    role: Role::Starting.as_str().into(),
                    node_id: node_id.into(),
                    tenant: tenant.into(),
                    ..ClusterOut::default()
                },
                caught_up_at: None,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What `/readyz` shows, with the lag in seconds as of now.
    pub fn out(&self) -> ClusterOut {
        self.out_at(Instant::now())
    }

    pub fn out_at(&self, now: Instant) -> ClusterOut {
        self.with(|inner| {
            let mut out = inner.out.clone();
            out.lag_records = out
                .log_last
                .map_or(0, |last| last.saturating_sub(out.position));
            out.lag_seconds = if out.lag_records == 0 {
                0.0
            } else {
                inner
                    .caught_up_at
                    .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64())
            };
            out
        })
    }

    pub fn role(&self) -> Role {
        self.with(|inner| match inner.out.role.as_str() {
            "active" => Role::Active,
            "standby" => Role::Standby,
            _ => Role::Starting,
        })
    }

    pub fn set_role(&self, role: Role) {
        self.with(|inner| inner.out.role = role.as_str().into());
    }

    /// This node's store holds the log up to `position`.
    pub fn set_position(&self, position: u64) {
        self.set_position_at(position, Instant::now());
    }

    pub fn set_position_at(&self, position: u64, now: Instant) {
        self.with(|inner| {
            inner.out.position = position;
            if inner.out.log_last.is_none_or(|last| position >= last) {
                inner.out.log_last = Some(inner.out.log_last.map_or(position, |l| l.max(position)));
                inner.caught_up_at = Some(now);
            }
        });
    }

    /// The log's last record, as last seen.
    pub fn set_log_last(&self, last: u64) {
        self.set_log_last_at(last, Instant::now());
    }

    pub fn set_log_last_at(&self, last: u64, now: Instant) {
        self.with(|inner| {
            let was_caught_up = inner.out.log_last.is_none_or(|l| inner.out.position >= l);
            if was_caught_up && inner.out.position < last {
                // Behind from now on: the lag counts from the last moment
                // this node held everything.
                inner.caught_up_at = Some(now);
            }
            inner.out.log_last = Some(last);
            if inner.out.position >= last {
                inner.caught_up_at = Some(now);
            }
        });
    }

    pub fn set_holder(&self, holder: Option<LeaseHolderOut>) {
        self.with(|inner| inner.out.lease_holder = holder);
    }

    pub fn holder(&self) -> Option<LeaseHolderOut> {
        self.with(|inner| inner.out.lease_holder.clone())
    }

    pub fn set_nats(&self, nats: NatsOut) {
        self.with(|inner| inner.out.nats = nats);
    }

    /// The connection as the client sees it (a failure shown stays).
    pub fn set_nats_connection(&self, connected: bool, server: Option<String>) {
        self.with(|inner| {
            inner.out.nats.connected = connected;
            inner.out.nats.server = server;
        });
    }

    /// A failure talking to NATS, shown until the next success.
    pub fn nats_failed(&self, error: impl Into<String>) {
        let error = error.into();
        self.with(|inner| inner.out.nats.error = Some(error));
    }

    pub fn nats_ok(&self) {
        self.with(|inner| inner.out.nats.error = None);
    }

    pub fn set_nodes(&self, mut nodes: Vec<NodeOut>) {
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        self.with(|inner| inner.out.nodes = nodes);
    }

    pub fn took_over(&self) {
        self.with(|inner| {
            inner.out.takeovers += 1;
            inner.out.role = Role::Active.as_str().into();
        });
    }

    pub fn stepped_down(&self, why: impl Into<String>) {
        let why = why.into();
        self.with(|inner| {
            inner.out.step_downs += 1;
            inner.out.last_step_down = Some(why);
            inner.out.role = Role::Standby.as_str().into();
        });
    }

    /// The cluster's gauges and counters in Prometheus text.
    pub fn render_metrics(&self) -> String {
        let out = self.out();
        let mut text = String::new();
        let node = escape(&out.node_id);
        let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
            let _ = writeln!(text, "# HELP presence_sync_cluster_{name} {help}");
            let _ = writeln!(text, "# TYPE presence_sync_cluster_{name} {kind}");
            let _ = writeln!(
                text,
                "presence_sync_cluster_{name}{{node=\"{node}\"}} {value}"
            );
        };
        gauge(
            "active",
            "1 while this node is the active one, 0 otherwise.",
            "gauge",
            f64::from(u8::from(out.role == "active")),
        );
        gauge(
            "position",
            "The last commit-log record this node's store holds.",
            "gauge",
            out.position as f64,
        );
        gauge(
            "lag_records",
            "Commit-log records this node has not applied yet.",
            "gauge",
            out.lag_records as f64,
        );
        gauge(
            "lag_seconds",
            "Seconds since this node last held every record of the log.",
            "gauge",
            out.lag_seconds,
        );
        gauge(
            "nats_connected",
            "1 while this node is connected to NATS.",
            "gauge",
            f64::from(u8::from(out.nats.connected)),
        );
        gauge(
            "takeovers_total",
            "Times this node took over as the active one.",
            "counter",
            out.takeovers as f64,
        );
        gauge(
            "step_downs_total",
            "Times this node stepped down.",
            "counter",
            out.step_downs as f64,
        );
        text
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_lag_counts_records_and_seconds_behind() {
        let status = ClusterStatus::new("n1", "contoso");
        let t0 = Instant::now();
        status.set_position_at(10, t0);
        let out = status.out_at(t0 + Duration::from_secs(5));
        assert_eq!((out.lag_records, out.lag_seconds), (0, 0.0));

        status.set_log_last_at(14, t0 + Duration::from_secs(6));
        let out = status.out_at(t0 + Duration::from_secs(8));
        assert_eq!(out.lag_records, 4);
        assert!((out.lag_seconds - 2.0).abs() < 1e-9, "{}", out.lag_seconds);

        status.set_position_at(14, t0 + Duration::from_secs(9));
        let out = status.out_at(t0 + Duration::from_secs(10));
        assert_eq!((out.lag_records, out.lag_seconds), (0, 0.0));
    }

    #[test]
    fn roles_and_step_downs_are_counted_and_rendered() {
        let status = ClusterStatus::new("n\"1", "contoso");
        assert_eq!(status.role(), Role::Starting);
        status.set_role(Role::Standby);
        status.took_over();
        assert_eq!(status.role(), Role::Active);
        status.stepped_down("another node took the lease");
        let out = status.out();
        assert_eq!(
            (out.role.as_str(), out.takeovers, out.step_downs),
            ("standby", 1, 1)
        );
        assert_eq!(
            out.last_step_down.as_deref(),
            Some("another node took the lease")
        );
        let text = status.render_metrics();
        let parsed = crate::metrics::parse_text(&text).unwrap();
        assert!(
            text.contains("presence_sync_cluster_active{node=\"n\\\"1\"} 0"),
            "{text}"
        );
        assert!(!parsed.is_empty());
    }
}
