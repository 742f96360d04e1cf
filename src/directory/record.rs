//! One Teams user as the daemon keeps it: the few properties the directory
//! view, linking and direct dial need, in compact form (no Graph payload,
//! no assigned plans, only what they say).

use std::sync::Arc;

use crate::graph::model::User;
use crate::store::StoredUser;

/// The shortest and longest E.164 numbers, in digits after the `+`.
const E164_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

/// The optional texts of a record, in the order they are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Upn,
    Mail,
    DisplayName,
    Department,
    JobTitle,
    MobilePhone,
}

const FIELDS: usize = 6;

/// A Teams user of the directory. Its texts are packed in one allocation
/// (at 50,000 users, one string each would cost twice the memory): read
/// them with the accessors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryRecord {
    /// The Entra object id, as Graph wrote it (shared with the indexes
    /// that key by it when it is lower case already, as Graph writes them).
    pub id: Arc<str>,
    /// The optional texts ([`Field`] order), then each business phone.
    texts: Box<str>,
    /// Where each packed text ends in `texts`.
    ends: Box<[u32]>,
    /// Bit `i`: [`Field`] `i` is set (an empty text is not absent).
    present: u8,
    /// Teams is assigned and enabled; `None` until the plans were read.
    pub teams: Option<bool>,
    /// Teams Phone (MCOEV) is enabled; `None` until the plans were read.
    pub teams_phone: Option<bool>,
}

/// A record's texts, unpacked, to build or change one.
#[derive(Clone, Debug, Default)]
struct Parts {
    fields: [Option<String>; FIELDS],
    phones: Vec<String>,
}

impl DirectoryRecord {
    fn pack(id: Arc<str>, parts: &Parts, teams: Option<bool>, teams_phone: Option<bool>) -> Self {
        let mut texts = String::new();
        let mut ends = Vec::with_capacity(FIELDS + parts.phones.len());
        let mut present = 0u8;
        let texts_of = parts
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if f.is_some() {
                    present |= 1 << i;
                }
                f.as_deref().unwrap_or_default()
            })
            .collect::<Vec<_>>();
        for text in texts_of
            .into_iter()
            .chain(parts.phones.iter().map(String::as_str))
        {
            texts.push_str(text);
            ends.push(u32::try_from(texts.len()).unwrap_or(u32::MAX));
        }
        DirectoryRecord {
            id,
            texts: texts.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            present,
            teams,
            teams_phone,
        }
    }

    fn unpack(&self) -> Parts {
        let mut parts = Parts::default();
        for (i, field) in parts.fields.iter_mut().enumerate() {
            *field = self.text_at(i).map(str::to_string);
        }
        parts.phones = self.business_phones().map(str::to_string).collect();
        parts
    }

    /// The `i`th packed text, whatever `present` says.
    fn slice(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.texts
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn text_at(&self, i: usize) -> Option<&str> {
        (self.present & (1 << i) != 0).then(|| self.slice(i))
    }

    fn field(&self, field: Field) -> Option<&str> {
        self.text_at(field as usize)
    }

    /// A record from a user as a full read lists it.
    pub fn from_user(user: &User) -> DirectoryRecord {
        let mut record =
            DirectoryRecord::pack(Arc::from(user.id.as_str()), &Parts::default(), None, None);
        record.merge(user);
        record
    }

    /// Applies a delta item: the properties it carries replace ours, absent
    /// ones stay.
    pub fn merge(&mut self, user: &User) {
        let mut parts = self.unpack();
        let mut take = |field: Field, theirs: &Option<Option<String>>| {
            if let Some(value) = theirs {
                parts.fields[field as usize].clone_from(value);
            }
        };
        take(Field::Upn, &user.user_principal_name);
        take(Field::Mail, &user.mail);
        take(Field::DisplayName, &user.display_name);
        take(Field::Department, &user.department);
        take(Field::JobTitle, &user.job_title);
        take(Field::MobilePhone, &user.mobile_phone);
        if user.business_phones.is_some() {
            parts.phones = user.business_phones().to_vec();
        }
        let teams = user.has_teams().or(self.teams);
        let teams_phone = user.has_teams_phone().or(self.teams_phone);
        *self = DirectoryRecord::pack(Arc::clone(&self.id), &parts, teams, teams_phone);
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
        self.field(Field::Upn)
    }

    pub fn mail(&self) -> Option<&str> {
        self.field(Field::Mail)
    }

    pub fn display_name(&self) -> Option<&str> {
        self.field(Field::DisplayName)
    }

    pub fn department(&self) -> Option<&str> {
        self.field(Field::Department)
    }

    pub fn job_title(&self) -> Option<&str> {
        self.field(Field::JobTitle)
    }

    pub fn mobile_phone(&self) -> Option<&str> {
        self.field(Field::MobilePhone)
    }

    /// The business phones, in Graph's order.
    pub fn business_phones(&self) -> impl Iterator<Item = &str> {
        (FIELDS..self.ends.len()).map(|i| self.slice(i))
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
            .then(|| self.business_phones().find_map(dialable))
            .flatten();
        business.or_else(|| self.mobile_phone().and_then(dialable))
    }

    /// What the store keeps of the user.
    pub fn stored(&self) -> StoredUser {
        StoredUser {
            id: self.id.to_string(),
            upn: self.user_principal_name().map(str::to_string),
            mail: self.mail().map(str::to_string),
            business_phones: self.business_phones().map(str::to_string).collect(),
            mobile_phone: self.mobile_phone().map(str::to_string),
            teams: self.teams,
            teams_phone: self.teams_phone,
        }
    }

    /// Whether the store keeps the same of both ([`DirectoryRecord::stored`]),
    /// without building either.
    pub fn stores_as(&self, other: &DirectoryRecord) -> bool {
        self.id == other.id
            && self.user_principal_name() == other.user_principal_name()
            && self.mail() == other.mail()
            && self.business_phones().eq(other.business_phones())
            && self.mobile_phone() == other.mobile_phone()
            && self.teams == other.teams
            && self.teams_phone == other.teams_phone
    }

    /// A record from what the store kept: names, department and title
    /// come back with the next full read.
    pub fn from_stored(stored: &StoredUser) -> DirectoryRecord {
        let mut parts = Parts::default();
        parts.fields[Field::Upn as usize].clone_from(&stored.upn);
        parts.fields[Field::Mail as usize].clone_from(&stored.mail);
        parts.fields[Field::MobilePhone as usize].clone_from(&stored.mobile_phone);
        parts.phones.clone_from(&stored.business_phones);
        DirectoryRecord::pack(
            Arc::from(stored.id.as_str()),
            &parts,
            stored.teams,
            stored.teams_phone,
        )
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
        assert_eq!(record.department(), None);
        assert_eq!(record.job_title(), Some("Agent"));
        assert_eq!(
            record.business_phones().collect::<Vec<_>>(),
            ["+1 425 555 0100"]
        );
        assert_eq!(record.user_principal_name(), Some("ann@contoso.com"));
        assert_eq!(record.teams, None);
        assert!(record.teams_enabled());
    }

    #[test]
    fn packed_texts_keep_empty_apart_from_absent_and_every_phone() {
        let mut record = DirectoryRecord::from_user(&user(serde_json::json!({
            "id": "u1", "displayName": "", "mail": null, "jobTitle": "Agénte",
            "businessPhones": ["+1 425 555 0100", "", "+44 20 7946 0958"],
            "mobilePhone": "+1 425 555 0199"
        })));
        assert_eq!(record.display_name(), Some(""));
        assert_eq!(record.mail(), None);
        assert_eq!(record.user_principal_name(), None);
        assert_eq!(record.job_title(), Some("Agénte"));
        assert_eq!(
            record.business_phones().collect::<Vec<_>>(),
            ["+1 425 555 0100", "", "+44 20 7946 0958"]
        );
        assert_eq!(record.mobile_phone(), Some("+1 425 555 0199"));
        record.merge(&user(
            serde_json::json!({"id": "u1", "businessPhones": [], "mail": "m@x.example"}),
        ));
        assert_eq!(record.business_phones().count(), 0);
        assert_eq!(record.mail(), Some("m@x.example"));
        assert_eq!(record.job_title(), Some("Agénte"));
        assert_eq!(record.mobile_phone(), Some("+1 425 555 0199"));
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
        assert_eq!(back.user_principal_name(), record.user_principal_name());
        assert_eq!(back.mail(), record.mail());
        assert_eq!(back.direct_dial(), record.direct_dial());
        assert_eq!(back.display_name(), None);
        assert_eq!(back.department(), None);
    }
}
