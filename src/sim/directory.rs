//! The tenant's users and the change log behind `/users/delta`. Pure: no I/O,
//! time passed in.
//!
//! Every add or change stamps the user with the directory's next version; a
//! delta token is "the changes after version V", so a delta round returns each
//! user changed since the last round once, however often it changed.

use std::collections::HashMap;
use std::time::Duration;

use super::rng::Rng;
use crate::time::Timestamp;

/// Graph: delta tokens for directory objects stay valid for 7 days.
pub const DELTA_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Teams Phone (MCOEV) service plan id: how the daemon tells Teams users.
pub const MCOEV_PLAN_ID: &str = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7";
/// Microsoft Teams (TEAMS1), service `TeamspaceAPI`: the user has Teams.
pub const TEAMS_PLAN_ID: &str = "57ff2da0-773e-42df-b2af-ffb7a2317929";

/// The share of generated users with Teams Phone assigned: most agents
/// have it, a few back-office accounts do not.
const TEAMS_SHARE: f64 = 0.9;
const MOBILE_SHARE: f64 = 0.6;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
    pub mail: Option<String>,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub office_location: Option<String>,
    pub preferred_language: Option<String>,
    pub business_phones: Vec<String>,
    pub mobile_phone: Option<String>,
    /// MCOEV in `assignedPlans`, assigned at `created`.
    pub teams_phone: bool,
    pub created: Timestamp,
    pub department: Option<String>,
}

/// A user to add; what is missing is generated.
#[derive(Clone, Debug, Default)]
pub struct NewUser {
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub user_principal_name: Option<String>,
    pub mail: Option<String>,
    pub job_title: Option<String>,
    pub business_phones: Option<Vec<String>>,
    pub mobile_phone: Option<String>,
    pub teams_phone: Option<bool>,
    pub department: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("a user with userPrincipalName {0} already exists")]
    DuplicateUpn(String),
    #[error("userPrincipalName {0} is not of the form name@domain")]
    BadUpn(String),
}

/// Why a delta token is refused: Graph answers both with `syncStateNotFound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("the delta token is not one this tenant issued")]
    Unknown,
    #[error("the delta token has expired")]
    Expired,
}

#[derive(Clone, Debug)]
struct Entry {
    user: User,
    changed: u64,
}

/// One page of a delta round.
#[derive(Debug)]
pub struct DeltaPage<'a> {
    pub users: Vec<&'a User>,
    /// Where the next page starts (index into creation order), or `None`
    /// when this round is complete and a delta token is due.
    pub next_after: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Directory {
    domain: String,
    /// Distinguishes this tenant's delta tokens from another run's.
    instance: u64,
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    by_upn: HashMap<String, usize>,
    version: u64,
    rng: Rng,
}

impl Directory {
    /// `instance` should differ between runs (the server draws it at random)
    /// so tokens of an earlier run are refused like Graph refuses lost state.
    pub fn new(domain: &str, seed: u64, instance: u64) -> Self {
        Directory {
            domain: domain.to_ascii_lowercase(),
            instance,
            entries: Vec::new(),
            by_id: HashMap::new(),
            by_upn: HashMap::new(),
            version: 0,
            rng: Rng::new(seed),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.entries.iter().map(|e| &e.user)
    }

    pub fn by_index(&self, index: usize) -> Option<&User> {
        self.entries.get(index).map(|e| &e.user)
    }

    /// By object id or by userPrincipalName (case-insensitive), as Graph's
    /// `/users/{id | userPrincipalName}` accepts.
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.by_id
            .get(&key.to_ascii_lowercase())
            .or_else(|| self.by_upn.get(&key.to_ascii_lowercase()))
            .copied()
    }

    pub fn get(&self, key: &str) -> Option<&User> {
        self.index_of(key).and_then(|i| self.by_index(i))
    }

    /// Adds a user, generating whatever `new` leaves out.
    pub fn add(&mut self, new: NewUser, now: Timestamp) -> Result<usize, DirectoryError> {
        let index = self.entries.len();
        let mut rng = self.rng.fork(index as u64);
        let given = new
            .given_name
            .clone()
            .unwrap_or_else(|| pick(&mut rng, GIVEN_NAMES).to_string());
        let surname = new
            .surname
            .clone()
            .unwrap_or_else(|| pick(&mut rng, SURNAMES).to_string());
        let upn = match new.user_principal_name {
            Some(upn) => {
                let upn = upn.trim().to_string();
                let valid = upn
                    .split_once('@')
                    .is_some_and(|(name, domain)| !name.is_empty() && domain.contains('.'));
                if !valid {
                    return Err(DirectoryError::BadUpn(upn));
                }
                if self.by_upn.contains_key(&upn.to_ascii_lowercase()) {
                    return Err(DirectoryError::DuplicateUpn(upn));
                }
                upn
            }
            None => self.free_upn(&given, &surname),
        };
        let display_name = new
            .display_name
            .unwrap_or_else(|| format!("{given} {surname}"));
        let teams_phone = new.teams_phone.unwrap_or_else(|| rng.chance(TEAMS_SHARE));
        let n = index as u64;
        let business_phones = new
            .business_phones
            .unwrap_or_else(|| vec![fictional_phone(200, n)]);
        let mobile_phone = new
            .mobile_phone
            .or_else(|| rng.chance(MOBILE_SHARE).then(|| fictional_phone(600, n)));
        let mut id = rng.guid();
        while self.by_id.contains_key(&id) {
            id = rng.guid();
        }
        let user = User {
            id: id.clone(),
            mail: Some(new.mail.unwrap_or_else(|| upn.clone())),
            user_principal_name: upn.clone(),
            display_name,
            given_name: Some(given),
            surname: Some(surname),
            job_title: Some(
                new.job_title
                    .unwrap_or_else(|| pick(&mut rng, JOB_TITLES).to_string()),
            ),
            office_location: Some(pick(&mut rng, OFFICES).to_string()),
            preferred_language: Some(pick(&mut rng, LANGUAGES).to_string()),
            business_phones,
            mobile_phone,
            teams_phone,
            created: now,
            // Drawn last, so the users a seed made before departments
            // existed keep every other value.
            department: Some(
                new.department
                    .unwrap_or_else(|| pick(&mut rng, DEPARTMENTS).to_string()),
            ),
        };
        self.version += 1;
        self.by_id.insert(id, index);
        self.by_upn.insert(upn.to_ascii_lowercase(), index);
        self.entries.push(Entry {
            user,
            changed: self.version,
        });
        Ok(index)
    }

    /// Changes a user in place and records the change for delta.
    pub fn update(&mut self, index: usize, change: impl FnOnce(&mut User)) -> bool {
        let Some(entry) = self.entries.get_mut(index) else {
            return false;
        };
        change(&mut entry.user);
        self.version += 1;
        entry.changed = self.version;
        true
    }

    /// Users changed after version `since` and at or before `upto`, in
    /// creation order starting after index `after` (exclusive; `None` from
    /// the start), at most `limit`.
    pub fn changes(
        &self,
        since: u64,
        upto: u64,
        after: Option<usize>,
        limit: usize,
    ) -> DeltaPage<'_> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut users = Vec::new();
        let mut next_after = None;
        for (index, entry) in self.entries.iter().enumerate().skip(start) {
            if entry.changed <= since || entry.changed > upto {
                continue;
            }
            if users.len() == limit.max(1) {
                // Another match exists: the caller needs one more page.
                next_after = Some(index - 1);
                break;
            }
            users.push(&entry.user);
        }
        DeltaPage { users, next_after }
    }

    /// A delta token for "everything up to version `upto`", issued `now`.
    pub fn delta_token(&self, upto: u64, now: Timestamp) -> String {
        format!(
            "{:016x}{:016x}{:016x}",
            self.instance,
            upto,
            now.as_micros()
        )
    }

    /// The version a delta token stands for, if this tenant issued it and it
    /// is younger than 7 days.
    pub fn check_delta_token(&self, token: &str, now: Timestamp) -> Result<u64, DeltaError> {
        let field = |i: usize| {
            token
                .get(i * 16..(i + 1) * 16)
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        };
        let (Some(instance), Some(version), Some(issued), 48) =
            (field(0), field(1), field(2), token.len())
        else {
            return Err(DeltaError::Unknown);
        };
        if instance != self.instance || version > self.version {
            return Err(DeltaError::Unknown);
        }
        if now.since(Timestamp::from_micros(issued)) >= DELTA_TOKEN_LIFETIME {
            return Err(DeltaError::Expired);
        }
        Ok(version)
    }

    fn free_upn(&self, given: &str, surname: &str) -> String {
        let base: String = format!("{given}.{surname}")
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let mut candidate = format!("{base}@{}", self.domain);
        let mut n = 2;
        while self.by_upn.contains_key(&candidate) {
            candidate = format!("{base}{n}@{}", self.domain);
            n += 1;
        }
        candidate
    }
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    rng.pick(items).copied().unwrap_or("")
}

/// North American numbers in the 555-0100..0199 range reserved for fiction;
/// unique per user for the first 40,000 users (400 area codes × 100), after
/// which they repeat.
fn fictional_phone(first_area: u64, n: u64) -> String {
    let area = first_area + (n / 100) % 400;
    format!("+1 {area} 555 {:04}", 100 + n % 100)
}

const GIVEN_NAMES: &[&str] = &[
    "Adele", "Alex", "Allan", "Amara", "Ana", "Ben", "Carla", "Chen", "Daniel", "Diego", "Elena",
    "Emily", "Fatima", "Grace", "Hana", "Isaac", "Jamal", "Johanna", "Jonas", "Kenji", "Lara",
    "Lee", "Lidia", "Lynne", "Maria", "Megan", "Miriam", "Nestor", "Nia", "Omar", "Patti", "Priya",
    "Rafael", "Sara", "Sofia", "Tomasz", "Uma", "Victor", "Wei", "Yusuf", "Zoe",
];

const SURNAMES: &[&str] = &[
    "Adams",
    "Ahmed",
    "Bauer",
    "Brown",
    "Costa",
    "Dubois",
    "Fernandez",
    "Garcia",
    "Haddad",
    "Holt",
    "Ito",
    "Jensen",
    "Khan",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Nakamura",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Petrov",
    "Quinn",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Tanaka",
    "Vance",
    "Wagner",
    "Wilber",
    "Wong",
    "Yilmaz",
    "Zhang",
];

const JOB_TITLES: &[&str] = &[
    "Customer Service Agent",
    "Senior Customer Service Agent",
    "Team Lead",
    "Support Engineer",
    "Sales Representative",
    "Billing Specialist",
    "Contact Center Supervisor",
];

const DEPARTMENTS: &[&str] = &[
    "Sales",
    "Support",
    "Billing",
    "Operations",
    "Marketing",
    "Finance",
    "Human Resources",
];
const OFFICES: &[&str] = &["Lisbon", "Austin", "Manila", "Dublin", "Kraków", "Remote"];

const LANGUAGES: &[&str] = &["en-US", "en-GB", "pt-PT", "es-ES", "pl-PL", "fil-PH"];

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(n: usize) -> Directory {
        let mut d = Directory::new("contoso.test", 42, 7);
        for _ in 0..n {
            d.add(NewUser::default(), Timestamp::from_secs(1000))
                .unwrap();
        }
        d
    }

    #[test]
    fn generation_is_deterministic_and_realistic() {
        let a = directory(50);
        let b = directory(50);
        let a_users: Vec<_> = a.users().cloned().collect();
        let b_users: Vec<_> = b.users().cloned().collect();
        assert_eq!(a_users, b_users);
        let mut upns: Vec<_> = a.users().map(|u| u.user_principal_name.clone()).collect();
        upns.sort();
        upns.dedup();
        assert_eq!(upns.len(), 50, "UPNs are unique");
        for user in a.users() {
            assert!(user.user_principal_name.ends_with("@contoso.test"));
            assert_eq!(
                user.mail.as_deref(),
                Some(user.user_principal_name.as_str())
            );
            assert!(super::super::rng::is_guid(&user.id));
            assert!(user.business_phones[0].starts_with("+1 "));
        }
        assert!(a.users().any(|u| u.teams_phone));
    }

    #[test]
    fn finds_users_by_id_or_upn_in_any_case() {
        let d = directory(3);
        let user = d.by_index(1).unwrap().clone();
        assert_eq!(d.get(&user.id.to_ascii_uppercase()), Some(&user));
        assert_eq!(
            d.get(&user.user_principal_name.to_ascii_uppercase()),
            Some(&user)
        );
        assert_eq!(d.get("nobody@contoso.test"), None);
    }

    #[test]
    fn refuses_duplicate_and_malformed_upns() {
        let mut d = directory(1);
        let upn = d.by_index(0).unwrap().user_principal_name.clone();
        let dup = NewUser {
            user_principal_name: Some(upn.to_ascii_uppercase()),
            ..NewUser::default()
        };
        assert!(matches!(
            d.add(dup, Timestamp::ZERO),
            Err(DirectoryError::DuplicateUpn(_))
        ));
        let bad = NewUser {
            user_principal_name: Some("no-at-sign".into()),
            ..NewUser::default()
        };
        assert!(matches!(
            d.add(bad, Timestamp::ZERO),
            Err(DirectoryError::BadUpn(_))
        ));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn delta_pages_then_only_changes() {
        let mut d = directory(5);
        let upto = d.version();
        let first = d.changes(0, upto, None, 2);
        assert_eq!(first.users.len(), 2);
        let second = d.changes(0, upto, first.next_after, 2);
        assert_eq!(second.users.len(), 2);
        let third = d.changes(0, upto, second.next_after, 2);
        assert_eq!(third.users.len(), 1);
        assert_eq!(third.next_after, None);
        let now = Timestamp::from_secs(2000);
        let token = d.delta_token(upto, now);
        assert_eq!(d.check_delta_token(&token, now), Ok(upto));
        let added = d.add(NewUser::default(), now).unwrap();
        d.update(1, |u| u.job_title = Some("Team Lead".into()));
        let since = d.check_delta_token(&token, now).unwrap();
        let page = d.changes(since, d.version(), None, 100);
        let ids: Vec<_> = page.users.iter().map(|u| u.id.clone()).collect();
        assert_eq!(
            ids,
            vec![
                d.by_index(1).unwrap().id.clone(),
                d.by_index(added).unwrap().id.clone()
            ]
        );
    }

    #[test]
    fn unknown_foreign_and_old_delta_tokens_are_refused() {
        let d = directory(2);
        let now = Timestamp::from_secs(5000);
        assert_eq!(
            d.check_delta_token("garbage", now),
            Err(DeltaError::Unknown)
        );
        let other = Directory::new("contoso.test", 42, 8);
        let foreign = other.delta_token(0, now);
        assert_eq!(d.check_delta_token(&foreign, now), Err(DeltaError::Unknown));
        let future = d.delta_token(d.version() + 1, now);
        assert_eq!(d.check_delta_token(&future, now), Err(DeltaError::Unknown));
        let token = d.delta_token(d.version(), now);
        let later = now + DELTA_TOKEN_LIFETIME;
        assert_eq!(d.check_delta_token(&token, later), Err(DeltaError::Expired));
    }
}
