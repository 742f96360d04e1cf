//! What a valid profile may still get wrong: things the daemon can do, but
//! that will not look in Teams the way the admin expects. They are warnings
//! (`check` prints them and passes, the daemon logs them at every load), not
//! errors, because the profile works as written.
//!
//! Graph aggregates a user's sessions DoNotDisturb > Busy > Available > Away
//! (`Availability::session_rank`), and a user-preferred presence above all.
//! An app writing in its own session (`write_mode = "session"`) therefore
//! cannot show anything ranked below Available while the user works in
//! Teams: the user's own client holds an Available session, which wins. A
//! status mapped to `Away/Away` in session mode shows only once the user's
//! client is idle or closed.

use super::validate::Origins;
use super::{Problem, Profile, TeamsTarget, WriteMode};

/// Every warning for `profile`, at the status it concerns, in file order.
pub(crate) fn find(profile: &Profile, origins: &Origins) -> Vec<Problem> {
    let mut found = Vec::new();
    if profile.write_mode != WriteMode::Session || !profile.direction.cc_to_teams() {
        return found;
    }
    for (index, (status, target)) in profile
        .statuses
        .iter()
        .zip(&profile.cc_to_teams)
        .enumerate()
    {
        let TeamsTarget::Set(presence) = target else {
            continue;
        };
        if !presence.availability.outranked_by_active_user() {
            continue;
        }
        let at = origins
            .statuses
            .get(index)
            .copied()
            .unwrap_or(origins.statuses_table);
        found.push(Problem::new(
            at,
            format!(
                "warning: `{}` shows `{presence}` in Teams, which cannot show while the user is \
                 active in Teams: Graph ranks the user's own Available session above an app's \
                 {} session, so the daemon's write stays hidden until the user's Teams goes \
                 idle. Use `clear`, a Busy or DoNotDisturb pair, or write_mode = \"preferred\" \
                 (mappings/README.md, \"What Teams shows\")",
                status.name, presence.availability
            ),
        ));
    }
    found.sort_by_key(|p| p.at);
    found
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::mapping::parse_checked;

    fn warnings(source: &str) -> Vec<String> {
        match parse_checked("t", Path::new("t.toml"), source) {
            Ok(checked) => checked.warnings.iter().map(|d| d.to_string()).collect(),
            Err(errors) => panic!("profile should load: {errors:?}"),
        }
    }

    #[test]
    fn session_targets_below_available_are_warned_at_their_status() {
        let found = warnings(
            "[statuses]\nAvailable = { routable = true, teams = \"clear\" }\n\
             Lunch = { teams = \"Away/Away\" }\n\"On contact\" = { teams = \"Busy/InACall\" }\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("t.toml:3:1: warning: `Lunch` shows `Away/Away`"));
        assert!(found[0].contains("user's own Available session"));
    }

    #[test]
    fn the_default_target_is_warned_where_a_status_takes_it() {
        let found = warnings(
            "default_teams = \"Away/Away\"\n[statuses]\nAvailable = { teams = \"clear\" }\nBreak = {}\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("t.toml:4:1: warning: `Break`"),
            "{found:?}"
        );
    }

    #[test]
    fn ranks_at_or_above_available_preferred_mode_and_no_cc_to_teams_are_quiet() {
        assert!(
            warnings(
                "[statuses]\nA = { teams = \"Available/Available\" }\n\
                 B = { teams = \"Busy/InACall\" }\nC = { teams = \"DoNotDisturb/Presenting\" }\n"
            )
            .is_empty()
        );
        assert!(
            warnings(
                "write_mode = \"preferred\"\n[statuses]\nLunch = { teams = \"Away/Away\" }\n\
                 Brb = { teams = \"BeRightBack/BeRightBack\" }\n"
            )
            .is_empty()
        );
        assert!(
            warnings(
                "direction = \"teams_to_cc\"\n[statuses]\nLunch = { teams = \"Away/Away\" }\n"
            )
            .is_empty()
        );
    }
}
