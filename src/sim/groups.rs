//! Entra groups and their members, as far as the directory's scope by group
//! membership reads them: a group is an object id, a name and the users in
//! it (by their index in the directory). Pure: no time, no I/O.

use std::collections::BTreeMap;

/// One group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    /// The members' directory indexes, ascending, each once.
    pub members: Vec<usize>,
}

/// Every group, by lower-case object id.
#[derive(Clone, Debug, Default)]
pub struct Groups {
    by_id: BTreeMap<String, Group>,
}

impl Groups {
    /// The group `id` (any case).
    pub fn get(&self, id: &str) -> Option<&Group> {
        self.by_id.get(&id.to_ascii_lowercase())
    }

    /// Creates group `id`, or replaces its name and members when it
    /// exists; returns whether it was created.
    pub fn put(&mut self, id: &str, display_name: String, mut members: Vec<usize>) -> bool {
        members.sort_unstable();
        members.dedup();
        let group = Group {
            id: id.to_string(),
            display_name,
            members,
        };
        self.by_id.insert(id.to_ascii_lowercase(), group).is_none()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_created_then_its_members_replaced() {
        let mut groups = Groups::default();
        assert!(groups.put("AB-1", "Sales".into(), vec![3, 1, 3]));
        assert_eq!(
            groups.get("ab-1").map(|g| g.members.clone()),
            Some(vec![1, 3])
        );
        assert!(!groups.put("ab-1", "Sales".into(), vec![2]));
        assert_eq!(groups.get("AB-1").map(|g| g.members.clone()), Some(vec![2]));
        assert_eq!(groups.len(), 1);
        assert!(groups.get("other").is_none());
    }
}
