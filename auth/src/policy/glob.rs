//! Block-name globs: `*` matches any run of characters (`::` included), `?` exactly one.

/// Whether `text` matches the glob `pattern` as a whole.
///
/// There is no escape syntax: block names never contain `*` or `?`.
///
/// This is the classic iterative wildcard match: on a mismatch it only ever retries from the
/// most recent `*`, consuming one more character there. That is enough because an earlier
/// `*` can never need to absorb more once a later one matched, so the worst case is
/// `O(pattern.len() * text.len())` time and `O(1)` space, whatever the pattern.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    // Byte positions; both always sit on character boundaries, because literal characters
    // are compared whole (UTF-8 is self-synchronizing) and `?`/`*` are ASCII.
    let (mut p, mut t) = (0, 0);
    // After a `*`: the pattern position just past it, and where its match currently ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(b'?') => {
                p += 1;
                t += char_len(text[t]);
                continue;
            }
            Some(&byte) if byte == text[t] => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_star, star_end)) = star else {
            return false;
        };
        let star_end = star_end + char_len(text[star_end]);
        star = Some((after_star, star_end));
        p = after_star;
        t = star_end;
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// Length of the UTF-8 character starting with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::matches;

    #[test]
    fn literal_matches_only_itself() {
        assert!(matches("app::search", "app::search"));
        assert!(!matches("app::search", "app::searc"));
        assert!(!matches("app::search", "app::search2"));
        assert!(!matches("app::search", "App::search"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn star_matches_any_run_including_path_separators() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything::at::all#3"));
        assert!(matches("app::*", "app::search"));
        assert!(matches("app::*", "app::nested::deep::block#0"));
        assert!(matches("app::search*", "app::search#0"));
        assert!(matches("app::search*", "app::search"));
        assert!(!matches("app::search*", "app::index#0"));
        assert!(matches("*::search#*", "crate::mod::search#12"));
        assert!(!matches("app::*", "other::search"));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "a__b__b__c"));
        assert!(!matches("a*b*c", "a__c__b"));
        assert!(matches("**", "x"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(matches("block#?", "block#7"));
        assert!(!matches("block#?", "block#"));
        assert!(!matches("block#?", "block#12"));
        assert!(matches("??", "é€"));
        assert!(!matches("?", "é€"));
        assert!(matches("a?c", "aéc"));
    }

    #[test]
    fn non_ascii_literals_and_stars() {
        assert!(matches("ü*ß", "üxyzß"));
        assert!(matches("*€", "price€"));
        assert!(!matches("*€", "price$"));
        assert!(matches("*?", "日本"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(100_000);
        let started = Instant::now();
        assert!(!matches("*a*a*a*a*b", &text));
        assert!(!matches("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
        assert!(matches("*a*a*a*a*a", &text));
        let stars = "*".repeat(10_000);
        assert!(matches(&stars, &text));
        assert!(!matches(&format!("{stars}b"), &text));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
