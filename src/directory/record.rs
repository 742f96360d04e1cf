//! One Teams user as the daemon keeps it: the few properties the directory
//! view, linking and direct dial need, in compact form (no Graph payload,
//! no assigned plans, only what they say).

use std::sync::Arc;

use crate::graph::model::User;
use crate::store::StoredUser;

/// The shortest and longest E.164 numbers, in digits after the `+`.
const E164_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

/// A Teams user of the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryRecord {
    /// The Entra object id, as Graph wrote it (shared with the indexes
    /// that key by it when it is lower case already, as Graph writes them).
    pub id: Arc<str>,
    pub upn: Option<Box<str>>,
    pub mail: Option<Box<str>>,
    pub display_name: Option<Box<str>>,
    pub department: Option<Box<str>>,
    pub job_title: Option<Box<str>>,
    pub business_phones: Box<[Box<str>]>,
    pub mobile_phone: Option<Box<str>>,
    /// Teams is assigned and enabled; `None` until the plans were read.
    pub teams: Option<bool>,
    /// Teams Phone (MCOEV) is enabled; `None` until the plans were read.
    pub teams_phone: Option<bool>,
}

fn boxed(text: Option<&str>) -> Option<Box<str>> {
    text.map(Box::from)
}

impl DirectoryRecord {
    /// A record from a user as a full read lists it.
    pub fn from_user(user: &User) -> DirectoryRecord {
        let mut record = DirectoryRecord {
            id: Arc::from(user.id.as_str()),
            ..DirectoryRecord::default()
        };
        record.merge(user);
        record
    }

    /// Applies a delta item: the properties it carries replace ours, absent
    /// ones stay.
    pub fn merge(&mut self, user: &User) {
        fn take(mine: &mut Option<Box<str>>, theirs: &Option<Option<String>>) {
            if let Some(value) = theirs {
                *mine = boxed(value.as_deref());
            }
        }
        take(&mut self.upn, &user.user_principal_name);
        take(&mut self.mail, &user.mail);
        take(&mut self.display_name, &user.display_name);
        take(&mut self.department, &user.department);
        take(&mut self.job_title, &user.job_title);
        take(&mut self.mobile_phone, &user.mobile_phone);
        if user.business_phones.is_some() {
            self.business_phones = user
                .business_phones()
                .iter()
                .map(|p| Box::from(p.as_str()))
                .collect();
        }
        if let Some(teams) = user.has_teams() {
            self.teams = Some(teams);
        }
        if let Some(phone) = user.has_teams_phone() {
            self.teams_phone = Some(phone);
        }
    }

    /// The id as every index keys it: lower case, the record's own when it
    /// is lower case already.
    pub fn key(&self) -> Arc<str> {
        if self.id.bytes().any(|b| b.is_ascii_uppercase()) {
            Arc::from(self.id.to_ascii_lowercase().as_str())
        } else {
            Arc::clone(&self.id)
        }
    }

    pub fn user_principal_name(&self) -> Option<&str> {
        self.upn.as_deref()
    }

    pub fn mail(&self) -> Option<&str> {
        self.mail.as_deref()
    }

    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// Whether the directory lists the user: Teams enabled, or not known
    /// not to be (plans not read yet).
    pub fn teams_enabled(&self) -> bool {
        self.teams != Some(false)
    }

    /// The number to dial the user directly, normalised to `+` and digits:
    /// a dialable business phone of a user with Teams Phone first, then a
    /// dialable mobile phone. `None` when there is neither.
    pub fn direct_dial(&self) -> Option<String> {
        let business = (self.teams_phone == Some(true))
            .then(|| self.business_phones.iter().find_map(|p| dialable(p)))
            .flatten();
        business.or_else(|| self.mobile_phone.as_deref().and_then(dialable))
    }

    /// What the store keeps of the user.
    pub fn stored(&self) -> StoredUser {
        StoredUser {
            id: self.id.to_string(),
            upn: self.upn.as_deref().map(str::to_string),
            mail: self.mail.as_deref().map(str::to_string),
            business_phones: self.business_phones.iter().map(|p| p.to_string()).collect(),
            mobile_phone: self.mobile_phone.as_deref().map(str::to_string),
            teams: self.teams,
            teams_phone: self.teams_phone,
        }
    }

    /// A record from what the store kept: names, department and title
    /// come back with the next full read.
    pub fn from_stored(stored: &StoredUser) -> DirectoryRecord {
        DirectoryRecord {
            id: Arc::from(stored.id.as_str()),
            upn: boxed(stored.upn.as_deref()),
            mail: boxed(stored.mail.as_deref()),
            display_name: None,
            department: None,
            job_title: None,
            business_phones: stored
                .business_phones
                .iter()
                .map(|p| Box::from(p.as_str()))
                .collect(),
            mobile_phone: boxed(stored.mobile_phone.as_deref()),
            teams: stored.teams,
            teams_phone: stored.teams_phone,
        }
    }
}

/// `number` as `+` and digits when it is an E.164 number as people write
/// them (`+1 (425) 555-0100`, `+44 20 7946 0958`): a leading `+`, 8 to 15
/// digits, nothing else but spaces, `-`, `.`, `(` and `)`. A national
/// number without its country code, an extension or letters are not
/// dialable from anywhere, so `None`.
pub fn dialable(number: &str) -> Option<String> {
    let rest = number.trim().strip_prefix('+')?;
    let mut out = String::with_capacity(16);
    out.push('+');
    for c in rest.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    E164_DIGITS.contains(&(out.len() - 1)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: serde_json::Value) -> User {
        serde_json::from_value(json).unwrap()
    }

    const MCOEV: &str = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7";

    #[test]
    fn dialable_numbers_are_e164_as_written() {
        assert_eq!(
            dialable("+1 (425) 555-0100").as_deref(),
            Some("+14255550100")
        );
        assert_eq!(
            dialable(" +44 20.7946.0958 ").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(dialable("425 555 0100"), None, "no country code");
        assert_eq!(dialable("+1 425 555 0100 x12"), None, "an extension");
        assert_eq!(dialable("+1234567"), None, "too short");
        assert_eq!(dialable("+1234567890123456"), None, "too long");
        assert_eq!(dialable("+"), None);
    }

    #[test]
    fn direct_dial_is_a_teams_phone_business_number_then_a_mobile() {
        let with_phone = DirectoryRecord::from_user(&user(serde_json::json!({
            "id": "u1", "businessPhones": ["+1 425 555 0100"], "mobilePhone": "+1 425 555 0199",
            "assignedPlans": [{"capabilityStatus": "Enabled", "servicePlanId": MCOEV}]
        })));
        assert_eq!(with_phone.direct_dial().as_deref(), Some("+14255550100"));
        let without = DirectoryRecord::from_user(&user(serde_json::json!({
            "id": "u2", "businessPhones": ["+1 425 555 0100"], "mobilePhone": "+1 425 555 0199",
            "assignedPlans": []
        })));
        assert_eq!(without.direct_dial().as_deref(), Some("+14255550199"));
        let nothing = DirectoryRecord::from_user(&user(serde_json::json!({
            "id": "u3", "businessPhones": ["+1 425 555 0100"], "mobilePhone": "0199",
            "assignedPlans": []
        })));
        assert_eq!(nothing.direct_dial(), None);
        let bad_business = DirectoryRecord::from_user(&user(serde_json::json!({
            "id": "u4", "businessPhones": ["ext 12"], "mobilePhone": null,
            "assignedPlans": [{"capabilityStatus": "Enabled", "servicePlanId": MCOEV}]
        })));
        assert_eq!(bad_business.direct_dial(), None);
    }

    #[test]
    fn a_delta_item_changes_only_what_it_carries() {
        let mut record = DirectoryRecord::from_user(&user(serde_json::json!({
            "id": "u1", "displayName": "Ann", "department": "Sales", "jobTitle": "Agent",
            "userPrincipalName": "ann@contoso.com", "businessPhones": ["+1 425 555 0100"]
        })));
        record.merge(&user(
            serde_json::json!({"id": "u1", "department": null, "displayName": "Ann B"}),
        ));
        assert_eq!(record.display_name(), Some("Ann B"));
        assert_eq!(record.department, None);
        assert_eq!(record.job_title.as_deref(), Some("Agent"));
        assert_eq!(record.business_phones.len(), 1);
        assert_eq!(record.teams, None);
        assert!(record.teams_enabled());
    }

    #[test]
    fn the_stored_form_keeps_what_linking_and_dialling_need() {
        let record = DirectoryRecord::from_user(&user(serde_json::json!({
            "id": "U1", "displayName": "Ann", "department": "Sales", "mail": "ann@contoso.com",
            "userPrincipalName": "ann@contoso.com", "businessPhones": ["+1 425 555 0100"],
            "assignedPlans": [{"capabilityStatus": "Enabled", "servicePlanId": MCOEV}]
        })));
        let back = DirectoryRecord::from_stored(&record.stored());
        assert_eq!(back.id, record.id);
        assert_eq!(back.upn, record.upn);
        assert_eq!(back.mail, record.mail);
        assert_eq!(back.direct_dial(), record.direct_dial());
        assert_eq!(back.display_name, None);
        assert_eq!(back.department, None);
    }
}
