//! The `clientState` check: every notification carries the secret the
//! subscription was created with, and only Graph (and we) know it. Compared
//! in constant time, so a caller guessing it learns nothing from how long a
//! refusal takes (only the length of the secret, which is not secret).

use aws_lc_rs::constant_time::verify_slices_are_equal;

use crate::config::Secret;

/// Whether `given` is the configured secret. A missing one never is.
pub fn client_state_matches(expected: &Secret, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    verify_slices_are_equal(expected.expose().as_bytes(), given.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_matches() {
        let secret = Secret::new("s3cret-state");
        assert!(client_state_matches(&secret, Some("s3cret-state")));
        for wrong in ["", "s3cret-stat", "s3cret-statE", "s3cret-state ", "x"] {
            assert!(!client_state_matches(&secret, Some(wrong)), "{wrong}");
        }
        assert!(!client_state_matches(&secret, None));
    }
}
