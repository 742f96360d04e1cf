//! What the API accepts as ids, names and text, checked once where input
//! comes in (paths and bodies), before the daemon sees it. A value outside
//! these rules is a 400 naming its field; the OpenAPI document and the
//! README state the same rules (from the constants here).
//!
//! - **Ids** (agent ids, contact ids): 1–[`ID_MAX_CHARS`] characters of
//!   `A-Z a-z 0-9 . _ : @ -`, not starting with `.`, so every id is one
//!   plain URL path segment (no `/`, `?`, `#`, `%`, and never `.` or `..`,
//!   which clients and proxies rewrite), a store key and a log word.
//! - **Names** (groups, skills): 1–[`NAME_MAX_CHARS`] characters, not
//!   blank, no control or invisible formatting characters.
//! - **Text** (display names, phone numbers): at most a set length, no
//!   control or invisible formatting characters (NUL, line breaks,
//!   bidirectional overrides such as U+202E, zero-width characters), which
//!   would let a value hide or reorder what an admin sees in a log or a UI.

use super::error::ApiError;
use super::model::{AgentUpsert, ContactActionIn, ContactIn, StatusReport};

/// The longest agent or contact id.
pub const ID_MAX_CHARS: usize = 128;
/// The id alphabet as a regular expression (OpenAPI `pattern`).
pub const ID_PATTERN: &str = "^[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*$";
/// The longest group or skill name.
pub const NAME_MAX_CHARS: usize = 64;
/// Names and text: no control (Cc) or format (Cf) characters, not blank
/// (OpenAPI `pattern`, ECMA-262 with Unicode property escapes).
pub const TEXT_PATTERN: &str = "^(?=.*\\S)[^\\p{Cc}\\p{Cf}\\u2028\\u2029]*$";
/// The longest display name.
pub const DISPLAY_NAME_MAX_CHARS: usize = 256;
/// The longest phone number.
pub const PHONE_MAX_CHARS: usize = 64;
/// The longest CC status name in a report.
pub const STATUS_MAX_CHARS: usize = 128;

/// The rule for ids, in words (messages and docs).
pub fn id_rule() -> String {
    format!("1 to {ID_MAX_CHARS} characters of A-Z a-z 0-9 . _ : @ -, not starting with `.`")
}

/// Checks an agent or contact id; the error names `field`.
pub fn id(field: &str, what: &str, value: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
    let ok = !value.is_empty()
        && value.chars().count() <= ID_MAX_CHARS
        && !value.starts_with('.')
        && value.chars().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            &format!("invalid_{}", field.rsplit('.').next().unwrap_or(field)),
            format!("{what} must be {}", id_rule()),
        )
        .with_field(field))
    }
}

/// Characters that make text lie about itself: controls (NUL, line breaks,
/// escape), line and paragraph separators, and Unicode format characters
/// (bidirectional embeddings, overrides and isolates, zero-width spaces and
/// joiners, the byte-order mark, soft hyphens, tag characters).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// Checks free text: at most `max` characters, nothing hidden, and (unless
/// `may_be_empty`) not blank.
pub fn text(field: &str, what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let count = value.chars().count();
    let problem = if value.trim().is_empty() {
        Some("must not be empty or only spaces".to_string())
    } else if count > max {
        Some(format!(
            "is {count} characters long; at most {max} are allowed"
        ))
    } else {
        value.chars().find(|c| is_hidden(*c)).map(|c| {
            format!(
                "contains U+{:04X}, a control or invisible formatting character; use plain text",
                u32::from(c)
            )
        })
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(
            ApiError::bad_request("invalid_text", format!("{what} {problem}")).with_field(field),
        ),
    }
}

/// Checks a group or skill name.
pub fn name(field: &str, what: &str, value: &str) -> Result<(), ApiError> {
    text(field, what, value, NAME_MAX_CHARS).map_err(|mut error| {
        error.code = "invalid_name".to_string();
        error
    })
}

/// A request body's own rules, checked after it parsed.
pub trait Validate {
    fn validate(&self) -> Result<(), ApiError>;
}

impl Validate for AgentUpsert {
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(display_name) = &self.display_name {
            text(
                "display_name",
                "display_name",
                display_name,
                DISPLAY_NAME_MAX_CHARS,
            )?;
        }
        if let Some(phone) = &self.phone {
            text("phone", "phone", phone, PHONE_MAX_CHARS)?;
        }
        for (i, group) in self.groups.iter().flatten().enumerate() {
            name(&format!("groups[{i}]"), "a group name", group)?;
        }
        for skill in self.skills.iter().flatten().map(|(skill, _)| skill) {
            name(&format!("skills.{skill}"), "a skill name", skill)?;
        }
        for (i, membership) in self.queues.iter().flatten().enumerate() {
            name(
                &format!("queues[{i}].queue"),
                "a queue name",
                &membership.queue,
            )?;
        }
        Ok(())
    }
}

impl Validate for StatusReport {
    fn validate(&self) -> Result<(), ApiError> {
        text("status", "status", &self.status, STATUS_MAX_CHARS)
    }
}

impl Validate for ContactIn {
    fn validate(&self) -> Result<(), ApiError> {
        name("queue", "queue", &self.queue)?;
        if let Some(id) = &self.contact_id {
            self::id("contact_id", "contact_id", id)?;
        }
        for skill in self.skills.iter().flatten().map(|(skill, _)| skill) {
            name(&format!("skills.{skill}"), "a skill name", skill)?;
        }
        Ok(())
    }
}

impl Validate for ContactActionIn {
    fn validate(&self) -> Result<(), ApiError> {
        match &self.agent_id {
            Some(agent) => id("agent_id", "agent_id", agent),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_plain_path_segment() {
        for ok in ["a", "agent-7", "x.y_z:1@cc", "a..b", "_x", &"a".repeat(128)] {
            assert!(id("agent_id", "an agent id", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a b",
            "a/b",
            "a?b",
            "a#b",
            "%41",
            "é",
            "a\n",
            &"a".repeat(129),
        ] {
            let error = id("contact_id", "contact_id", bad).unwrap_err();
            assert_eq!(
                (error.status, error.field.as_deref(), error.code.as_str()),
                (400, Some("contact_id"), "invalid_contact_id"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn text_refuses_hidden_characters_and_overlong_values() {
        assert!(text("display_name", "display_name", "Zoë O'Brien (Sales)", 256).is_ok());
        assert!(text("display_name", "display_name", "日本語の名前", 256).is_ok());
        for bad in [
            "a\u{0}b",
            "evil\u{202E}txt.exe",
            "zero\u{200B}width",
            "line\nbreak",
            "bom\u{FEFF}",
            "   ",
            "",
        ] {
            let error = text("display_name", "display_name", bad, 256).unwrap_err();
            assert_eq!(error.field.as_deref(), Some("display_name"), "{bad:?}");
            assert_eq!(error.status, 400);
        }
        let long = "é".repeat(257);
        let error = text("display_name", "display_name", &long, 256).unwrap_err();
        assert!(error.message.contains("at most 256"), "{}", error.message);
        assert!(text("display_name", "display_name", &"é".repeat(256), 256).is_ok());
    }

    #[test]
    fn names_are_capped() {
        assert!(name("groups[0]", "a group name", &"g".repeat(64)).is_ok());
        let error = name("groups[0]", "a group name", &"g".repeat(65)).unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.field.as_deref()),
            ("invalid_name", Some("groups[0]"))
        );
    }
}
