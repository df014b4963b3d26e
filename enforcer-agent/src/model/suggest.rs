//! "Did you mean …?" for misspelt field names: the closest known name by edit distance.

/// Edit distance between two names: Levenshtein over characters (strsim); a change of
/// case is an edit like any other, so `Destination` → `destination` is 1.
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo
/// (at most a third of the word's length in edits, at least 1, at most 3).
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit && *d < word.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The field names serde lists in an unknown-field message
/// ("unknown field `x`, expected one of `a`, `b`" / "expected `a` or `b`").
fn expected_fields(message: &str) -> Vec<&str> {
    let Some((_, expected)) = message.split_once(", expected ") else {
        return Vec::new();
    };
    expected.split('`').skip(1).step_by(2).collect()
}

/// For serde's unknown-field message: the unknown name and the closest expected one.
pub fn unknown_field_suggestion(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let unknown = rest.split('`').next()?;
    let best = closest(unknown, expected_fields(message))?;
    Some((unknown, best))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("destinaton", "destination"), 1);
        assert_eq!(edit_distance("ingres", "ingress"), 1);
        assert_eq!(edit_distance("Ingress", "ingress"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }

    #[test]
    fn suggests_from_serde_messages() {
        let msg = "unknown field `destinaton`, expected one of `action`, `source`, `destination`";
        assert_eq!(
            unknown_field_suggestion(msg),
            Some(("destinaton", "destination"))
        );
        let msg = "unknown field `polcyTypes`, expected `podSelector` or `policyTypes`";
        assert_eq!(
            unknown_field_suggestion(msg),
            Some(("polcyTypes", "policyTypes"))
        );
        assert_eq!(
            unknown_field_suggestion("unknown field `zzz`, expected `a` or `b`"),
            None
        );
        assert_eq!(
            unknown_field_suggestion("unknown field `x`, there are no fields"),
            None
        );
    }
}
