//! The names of a deployment's streams, subjects and buckets (per tenant).

use super::error::ClusterError;
use crate::config::is_cluster_name;

/// The lease bucket's one key.
pub const LEASE_KEY: &str = "leader";
/// The snapshot object's name.
pub const SNAPSHOT_OBJECT: &str = "latest";

/// Everything a tenant's deployment is called in NATS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    tenant: String,
}

impl Names {
    /// The names for `tenant` (letters, digits, `_` and `-`).
    pub fn new(tenant: &str) -> Result<Names, ClusterError> {
        if !is_cluster_name(tenant) {
            return Err(ClusterError::Invalid(format!(
                "the cluster tenant \"{tenant}\" is not a valid NATS name: use 1 to 64 letters, digits, `_` or `-`"
            )));
        }
        Ok(Names {
            tenant: tenant.to_owned(),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The commit log's stream.
    pub fn log_stream(&self) -> String {
        format!("PS_{}_LOG", self.tenant)
    }

    /// The commit log's one subject.
    pub fn log_subject(&self) -> String {
        format!("presence-sync.{}.log", self.tenant)
    }

    /// The events' stream.
    pub fn events_stream(&self) -> String {
        format!("PS_{}_EVENTS", self.tenant)
    }

    /// The subjects the events' stream takes.
    pub fn events_subjects(&self) -> String {
        format!("presence-sync.{}.events.>", self.tenant)
    }

    /// The subject of an event of type `kind` (its dots make more tokens).
    pub fn event_subject(&self, kind: &str) -> Result<String, ClusterError> {
        let valid = !kind.is_empty()
            && kind.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .chars()
                        .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
            });
        if !valid {
            return Err(ClusterError::Invalid(format!(
                "the event type \"{kind}\" cannot be a NATS subject"
            )));
        }
        Ok(format!("presence-sync.{}.events.{kind}", self.tenant))
    }

    /// The leadership lease's KV bucket.
    pub fn lease_bucket(&self) -> String {
        format!("PS_{}_LEASE", self.tenant)
    }

    /// The nodes' reports' KV bucket.
    pub fn nodes_bucket(&self) -> String {
        format!("PS_{}_NODES", self.tenant)
    }

    /// The snapshots' object store.
    pub fn snapshot_bucket(&self) -> String {
        format!("PS_{}_SNAP", self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_tenant() {
        let names = Names::new("contoso-1").unwrap();
        assert_eq!(names.log_stream(), "PS_contoso-1_LOG");
        assert_eq!(names.log_subject(), "presence-sync.contoso-1.log");
        assert_eq!(names.events_stream(), "PS_contoso-1_EVENTS");
        assert_eq!(names.events_subjects(), "presence-sync.contoso-1.events.>");
        assert_eq!(
            names.event_subject("cc.status_requested").unwrap(),
            "presence-sync.contoso-1.events.cc.status_requested"
        );
        assert_eq!(names.lease_bucket(), "PS_contoso-1_LEASE");
        assert_eq!(names.nodes_bucket(), "PS_contoso-1_NODES");
        assert_eq!(names.snapshot_bucket(), "PS_contoso-1_SNAP");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a.b", "a b", "a*", "a>", "ä", &"x".repeat(65)] {
            assert!(Names::new(bad).is_err(), "{bad}");
        }
        let names = Names::new("t").unwrap();
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", ">", "a\n"] {
            assert!(names.event_subject(bad).is_err(), "{bad:?}");
        }
    }
}
