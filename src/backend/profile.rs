//! What `bench --profile` prints for any backend: time summed by kernel (CUDA) or op (CPU),
//! largest first.

use std::collections::HashMap;

/// One kernel's or op's share of the recorded time.
pub struct OpStat {
    pub name: String,
    pub calls: usize,
    pub total_ms: f64,
}

/// Records summed by name, largest total first (ties by name, so the order is stable).
pub fn by_name<'a>(records: impl IntoIterator<Item = (&'a str, f64)>) -> Vec<OpStat> {
    let mut sums: HashMap<&str, (usize, f64)> = HashMap::new();
    for (name, ms) in records {
        let e = sums.entry(name).or_default();
        e.0 += 1;
        e.1 += ms;
    }
    let mut stats: Vec<OpStat> = sums
        .into_iter()
        .map(|(name, (calls, total_ms))| OpStat {
            name: name.to_string(),
            calls,
            total_ms,
        })
        .collect();
    stats.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.name.cmp(&b.name)));
    stats
}

/// A markdown table of a profile: `unit` (kernel or op), calls, total and mean time, share;
/// after `note`, which says what a record's time holds.
pub fn table(unit: &str, note: &str, stats: &[OpStat]) -> String {
    let total: f64 = stats.iter().map(|s| s.total_ms).sum();
    let calls: usize = stats.iter().map(|s| s.calls).sum();
    let mut s = format!(
        "{note}\n\n| {unit} | calls | total ms | mean us | share |\n|---|---|---|---|---|\n"
    );
    for k in stats {
        s += &format!(
            "| {} | {} | {:.3} | {:.1} | {:.1}% |\n",
            k.name,
            k.calls,
            k.total_ms,
            1e3 * k.total_ms / k.calls.max(1) as f64,
            100.0 * k.total_ms / total.max(1e-12)
        );
    }
    s += &format!("| all | {calls} | {total:.3} | | 100% |\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_name_largest_first_and_shares_add_up() {
        let stats = by_name([("a", 1.0), ("b", 3.0), ("a", 1.5), ("c", 0.5)]);
        let got: Vec<_> = stats
            .iter()
            .map(|s| (s.name.as_str(), s.calls, s.total_ms))
            .collect();
        assert_eq!(got, [("b", 1, 3.0), ("a", 2, 2.5), ("c", 1, 0.5)]);
        let t = table("op", "note", &stats);
        assert!(t.starts_with("note\n\n| op | calls |"), "{t}");
        assert!(t.contains("| a | 2 | 2.500 | 1250.0 | 41.7% |"), "{t}");
        assert!(t.contains("| all | 4 | 6.000 | | 100% |"), "{t}");
    }
}
