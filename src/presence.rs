//! Teams presence values: availability and activity.
//!
//! Graph types both as plain strings and one documentation version writes them
//! lowerCamel, so parsing is case-insensitive and a value we have never seen is
//! kept as it came (`Other`) rather than rejected: a new Teams state must not
//! stop the sync.

use std::fmt;
use std::sync::Arc;

macro_rules! presence_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant,)+
            /// A value Graph sent that this build does not know, kept verbatim
            /// (behind a thin pointer: engine state stays small per agent).
            Other(Arc<String>),
        }

        impl $name {
            /// Every value this build knows, in Graph's spelling.
            pub const KNOWN: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// Case-insensitive; unknown values are kept, never an error.
            pub fn parse(text: &str) -> Self {
                $(if text.eq_ignore_ascii_case(stringify!($variant)) {
                    return $name::$variant;
                })+
                $name::Other(Arc::new(text.to_string()))
            }

            /// Case-insensitive, known values only: for mapping files, where an
            /// unknown value is almost always a typo.
            pub fn parse_known(text: &str) -> Option<Self> {
                match Self::parse(text) {
                    $name::Other(_) => None,
                    known => Some(known),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                    $name::Other(text) => text,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

presence_enum!(
    /// The base presence (`availability` in Graph).
    Availability {
        Available, AvailableIdle, Away, BeRightBack, Busy, BusyIdle, DoNotDisturb, Offline,
        PresenceUnknown,
    }
);

presence_enum!(
    /// The supplemental presence (`activity` in Graph).
    Activity {
        Available, AvailableInactive, Away, BeRightBack, Busy, DoNotDisturb, InACall,
        InAConferenceCall, Inactive, InAMeeting, Offline, OffWork, OutOfOffice, PresenceUnknown,
        Presenting, UrgentInterruptionsOnly,
    }
);

impl Availability {
    /// How Teams ranks this availability among a user's sessions when it
    /// aggregates them: higher wins. Graph documents DoNotDisturb > Busy >
    /// Available > Away, and that a user-preferred presence outranks every
    /// session (it is not a session, so it has no rank here). The idle
    /// variants sit just below their base value, BeRightBack (a deliberate,
    /// short absence) between Available and Away, then Offline, then values
    /// this build does not know, so a session that says nothing useful never
    /// hides one that does. The simulator aggregates with this order and the
    /// mapping validator warns with it.
    pub fn session_rank(&self) -> u8 {
        match self {
            Availability::DoNotDisturb => 8,
            Availability::Busy => 7,
            Availability::BusyIdle => 6,
            Availability::Available => 5,
            Availability::AvailableIdle => 4,
            Availability::BeRightBack => 3,
            Availability::Away => 2,
            Availability::Offline => 1,
            Availability::PresenceUnknown | Availability::Other(_) => 0,
        }
    }

    /// An active user's own Teams client holds a session at least this
    /// high: a session target of an app that ranks below it cannot show
    /// while the user works in Teams.
    pub fn outranked_by_active_user(&self) -> bool {
        self.session_rank() < Availability::Available.session_rank()
    }
}

/// What Teams shows for a person: an availability/activity pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Presence {
    pub availability: Availability,
    pub activity: Activity,
}

impl Presence {
    pub fn new(availability: Availability, activity: Activity) -> Self {
        Presence {
            availability,
            activity,
        }
    }

    /// Parses Graph's two strings, keeping unknown values.
    pub fn from_graph(availability: &str, activity: &str) -> Self {
        Presence::new(Availability::parse(availability), Activity::parse(activity))
    }

    /// Parses `Availability/Activity` with known values only (mapping files).
    pub fn parse_pair(text: &str) -> Result<Self, PairError> {
        let (a, b) = text.split_once('/').ok_or(PairError::NotAPair)?;
        let availability =
            Availability::parse_known(a.trim()).ok_or(PairError::UnknownAvailability)?;
        let activity = Activity::parse_known(b.trim()).ok_or(PairError::UnknownActivity)?;
        Ok(Presence::new(availability, activity))
    }

    /// True when `setPresence` accepts this pair.
    pub fn is_settable_session(&self) -> bool {
        SET_PRESENCE_PAIRS.contains(&(self.availability.as_str(), self.activity.as_str()))
    }

    /// True when `setUserPreferredPresence` accepts this pair.
    pub fn is_settable_preferred(&self) -> bool {
        PREFERRED_PRESENCE_PAIRS.contains(&(self.availability.as_str(), self.activity.as_str()))
    }
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.availability, self.activity)
    }
}

/// Why a `Availability/Activity` string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairError {
    NotAPair,
    UnknownAvailability,
    UnknownActivity,
}

/// Pairs `setPresence` accepts (Graph docs; the older version lacks the last one).
pub const SET_PRESENCE_PAIRS: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// Pairs `setUserPreferredPresence` accepts.
pub const PREFERRED_PRESENCE_PAIRS: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

/// The states people see in Teams, as documented: the universe the mapping
/// checks instantiate wildcards with.
pub const TEAMS_STATES: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Available", "AvailableInactive"),
    ("AvailableIdle", "Available"),
    ("Busy", "Busy"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Busy", "InAMeeting"),
    ("BusyIdle", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("DoNotDisturb", "Presenting"),
    ("DoNotDisturb", "UrgentInterruptionsOnly"),
    ("Away", "Away"),
    ("Away", "OutOfOffice"),
    ("BeRightBack", "BeRightBack"),
    ("Offline", "OffWork"),
    ("Offline", "Offline"),
    ("Offline", "OutOfOffice"),
    ("PresenceUnknown", "PresenceUnknown"),
];

/// Matches a presence: each side is a value or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PresencePattern {
    pub availability: Option<Availability>,
    pub activity: Option<Activity>,
}

impl PresencePattern {
    pub fn matches(&self, presence: &Presence) -> bool {
        self.availability
            .as_ref()
            .is_none_or(|a| *a == presence.availability)
            && self
                .activity
                .as_ref()
                .is_none_or(|a| *a == presence.activity)
    }

    /// True when every presence `other` matches is matched by `self` too.
    pub fn covers(&self, other: &PresencePattern) -> bool {
        fn side<T: PartialEq>(mine: &Option<T>, theirs: &Option<T>) -> bool {
            match (mine, theirs) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => a == b,
            }
        }
        side(&self.availability, &other.availability) && side(&self.activity, &other.activity)
    }

    /// Parses `Availability/Activity`, `Availability` alone (any activity), or
    /// `*` on either side. Known values only.
    pub fn parse(text: &str) -> Result<Self, PairError> {
        let (a, b) = match text.split_once('/') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (text.trim(), "*"),
        };
        let availability = match a {
            "*" => None,
            a => Some(Availability::parse_known(a).ok_or(PairError::UnknownAvailability)?),
        };
        let activity = match b {
            "*" => None,
            b => Some(Activity::parse_known(b).ok_or(PairError::UnknownActivity)?),
        };
        Ok(PresencePattern {
            availability,
            activity,
        })
    }
}

impl fmt::Display for PresencePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.availability {
            Some(a) => write!(f, "{a}")?,
            None => f.write_str("*")?,
        }
        match &self.activity {
            Some(a) => write!(f, "/{a}"),
            None => f.write_str("/*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_case_insensitively_and_keeps_unknown_values() {
        let p = Presence::from_graph("busy", "inAMeeting");
        assert_eq!(p, Presence::new(Availability::Busy, Activity::InAMeeting));
        let odd = Presence::from_graph("Focusing", "DeepWork");
        assert_eq!(odd.to_string(), "Focusing/DeepWork");
        assert!(matches!(odd.availability, Availability::Other(_)));
    }

    #[test]
    fn knows_which_pairs_graph_accepts() {
        assert!(
            Presence::parse_pair("Busy/InACall")
                .unwrap()
                .is_settable_session()
        );
        assert!(
            !Presence::parse_pair("Busy/InAMeeting")
                .unwrap()
                .is_settable_session()
        );
        assert!(
            Presence::parse_pair("Offline/OffWork")
                .unwrap()
                .is_settable_preferred()
        );
        assert!(
            !Presence::parse_pair("Busy/InACall")
                .unwrap()
                .is_settable_preferred()
        );
        assert_eq!(Presence::parse_pair("Busy"), Err(PairError::NotAPair));
        assert_eq!(
            Presence::parse_pair("Bussy/InACall"),
            Err(PairError::UnknownAvailability)
        );
    }

    #[test]
    fn patterns_match_and_cover() {
        let any_meeting = PresencePattern::parse("*/InAMeeting").unwrap();
        let busy = PresencePattern::parse("Busy").unwrap();
        let busy_meeting = PresencePattern::parse("Busy/InAMeeting").unwrap();
        assert!(any_meeting.matches(&Presence::from_graph("Busy", "InAMeeting")));
        assert!(!any_meeting.matches(&Presence::from_graph("Busy", "InACall")));
        assert!(busy.covers(&busy_meeting));
        assert!(any_meeting.covers(&busy_meeting));
        assert!(!busy_meeting.covers(&busy));
        assert_eq!(busy.to_string(), "Busy/*");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(a in ".{0,30}", b in ".{0,30}") {
            let p = Presence::from_graph(&a, &b);
            prop_assert_eq!(p.availability.as_str().to_ascii_lowercase(), a.to_ascii_lowercase());
            let _ = PresencePattern::parse(&format!("{a}/{b}"));
            let _ = Presence::parse_pair(&a);
        }
    }
}
