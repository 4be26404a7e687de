//! Small formatters shared by the renderers: durations, token counts, costs, lists.

use std::time::Duration;

use forge_events::Timestamp;

/// A duration for people: `0.4s`, `12s`, `1m05s`, `2h03m`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        #[allow(clippy::cast_precision_loss)] // at most 10 000
        let secs = ms as f64 / 1000.0;
        return format!("{secs:.1}s");
    }
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// [`duration`] of milliseconds.
pub(crate) fn millis(ms: u64) -> String {
    duration(Duration::from_millis(ms))
}

/// The time from `from` to `to` (zero if `to` is earlier).
pub(crate) fn between(from: Timestamp, to: Timestamp) -> Duration {
    let ms = to.as_millisecond().saturating_sub(from.as_millisecond());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A token count: `950`, `12.3k`, `1.2M`.
pub(crate) fn tokens(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // shown with one decimal
    let f = n as f64;
    if n < 1000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", f / 1e3)
    } else {
        format!("{:.1}M", f / 1e6)
    }
}

/// Tokens and cost spent, `12.3k tok $0.04` (`n/a` for a cost no agent reported and no price
/// gave), or nothing before any usage was reported.
pub(crate) fn spent(u: &forge_events::Usage) -> Option<String> {
    let total = u.tokens_in.saturating_add(u.tokens_out);
    if total == 0 && u.cost_usd.is_none() {
        return None;
    }
    Some(format!(
        "{} tok {}",
        tokens(total),
        u.cost_usd.map_or_else(|| "n/a".to_owned(), cost)
    ))
}

/// A cost in dollars: `$0.02`, `$1.25`, `<$0.01`.
pub(crate) fn cost(usd: f64) -> String {
    if usd > 0.0 && usd < 0.005 {
        "<$0.01".to_owned()
    } else {
        format!("${usd:.2}")
    }
}

/// `1 task`, `3 tasks`.
pub(crate) fn plural(n: impl Into<u64>, word: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `a`, `a and b`, `a, b and c`, `a, b, c and 4 more`.
pub(crate) fn list<S: AsRef<str>>(items: &[S], max: usize) -> String {
    let names: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    match names.len() {
        0 => String::new(),
        1 => names[0].to_owned(),
        n if n <= max => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
        n => format!("{} and {} more", names[..max].join(", "), n - max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(millis(400), "0.4s");
        assert_eq!(millis(9_950), "9.9s");
        assert_eq!(millis(12_000), "12s");
        assert_eq!(millis(65_000), "1m05s");
        assert_eq!(millis(7_380_000), "2h03m");
    }

    #[test]
    fn counts_and_costs() {
        assert_eq!(tokens(950), "950");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(tokens(1_200_000), "1.2M");
        assert_eq!(cost(0.02), "$0.02");
        assert_eq!(cost(0.001), "<$0.01");
        assert_eq!(plural(1u32, "task"), "1 task");
        assert_eq!(plural(3u32, "task"), "3 tasks");
    }

    #[test]
    fn lists_are_english() {
        assert_eq!(list(&["a"], 3), "a");
        assert_eq!(list(&["a", "b"], 3), "a and b");
        assert_eq!(list(&["a", "b", "c"], 3), "a, b and c");
        assert_eq!(list(&["a", "b", "c", "d", "e"], 2), "a, b and 3 more");
    }
}
