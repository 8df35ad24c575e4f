//! `Range: bytes=…` (RFC 9110 §14): parsing, resolution against the length, coalescing, and the
//! abuse limits (too many ranges, heavy overlap) under which the header is ignored like nginx's
//! `max_ranges`.

/// Ranges beyond this count make us ignore the header and send the whole file.
pub const MAX_RANGES: usize = 100;

/// What to do with a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangePlan {
    /// Ignore it: send 200 with the whole representation.
    Full,
    /// 206 with these inclusive `(first, last)` byte positions, sorted and disjoint.
    Partial(Vec<(u64, u64)>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Resolves a `Range` header value against a representation of `len` bytes.
pub fn plan(value: &[u8], len: u64) -> RangePlan {
    let Ok(value) = std::str::from_utf8(value) else {
        return RangePlan::Full;
    };
    let value = value.trim();
    let Some(specs) = strip_prefix_ci(value, "bytes=") else {
        // Unknown unit: ignore (RFC 9110 §14.2).
        return RangePlan::Full;
    };
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut count = 0usize;
    let mut requested: u64 = 0;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_RANGES {
            return RangePlan::Full;
        }
        let Some((a, b)) = spec.split_once('-') else {
            return RangePlan::Full;
        };
        let (a, b) = (a.trim(), b.trim());
        let range = if a.is_empty() {
            // Suffix: the last N bytes.
            let Some(n) = parse_u64(b) else {
                return RangePlan::Full;
            };
            if n == 0 || len == 0 {
                None
            } else {
                Some((len.saturating_sub(n), len - 1))
            }
        } else {
            let Some(first) = parse_u64(a) else {
                return RangePlan::Full;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match parse_u64(b) {
                    Some(l) if l >= first => l,
                    // `last < first` makes the whole header invalid.
                    _ => return RangePlan::Full,
                }
            };
            if first >= len {
                None
            } else {
                Some((first, last.min(len - 1)))
            }
        };
        if let Some((f, l)) = range {
            requested = requested.saturating_add(l - f + 1);
            ranges.push((f, l));
        }
    }
    if count == 0 {
        return RangePlan::Full;
    }
    if ranges.is_empty() {
        return RangePlan::Unsatisfiable;
    }
    // Heavy overlap (the Apache "Range of death"): more than twice the file asked for.
    if ranges.len() > 1 && requested > len.saturating_mul(2) {
        return RangePlan::Full;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (f, l) in ranges {
        match merged.last_mut() {
            // Overlapping or adjacent: one part is cheaper than two.
            Some(last) if f <= last.1.saturating_add(1) => last.1 = last.1.max(l),
            _ => merged.push((f, l)),
        }
    }
    RangePlan::Partial(merged)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Longer than u64: treat as "to the end"/"too far" by saturating.
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str, len: u64) -> RangePlan {
        plan(v.as_bytes(), len)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(p("bytes=0-99", 1000), RangePlan::Partial(vec![(0, 99)]));
        assert_eq!(p("bytes=500-", 1000), RangePlan::Partial(vec![(500, 999)]));
        assert_eq!(p("bytes=-500", 1000), RangePlan::Partial(vec![(500, 999)]));
        assert_eq!(p("bytes=-5000", 1000), RangePlan::Partial(vec![(0, 999)]));
        assert_eq!(
            p("bytes=990-2000", 1000),
            RangePlan::Partial(vec![(990, 999)])
        );
        assert_eq!(
            p("Bytes = 1-1", 10),
            RangePlan::Full,
            "space before = is not the unit"
        );
        assert_eq!(p("BYTES=1-1", 10), RangePlan::Partial(vec![(1, 1)]));
        assert_eq!(
            p("bytes=99999999999999999999999-", 10),
            RangePlan::Unsatisfiable
        );
    }

    #[test]
    fn unsatisfiable_and_invalid() {
        assert_eq!(p("bytes=1000-", 1000), RangePlan::Unsatisfiable);
        assert_eq!(p("bytes=-0", 1000), RangePlan::Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), RangePlan::Unsatisfiable);
        assert_eq!(p("bytes=5-1", 1000), RangePlan::Full);
        assert_eq!(p("bytes=abc", 1000), RangePlan::Full);
        assert_eq!(p("items=0-1", 1000), RangePlan::Full);
        assert_eq!(p("bytes=", 1000), RangePlan::Full);
        assert_eq!(p("bytes=--1", 1000), RangePlan::Full);
        assert_eq!(
            p("bytes=2000-3000, 0-1", 1000),
            RangePlan::Partial(vec![(0, 1)])
        );
    }

    #[test]
    fn multiple_and_coalescing() {
        assert_eq!(
            p("bytes=0-9, 20-29", 100),
            RangePlan::Partial(vec![(0, 9), (20, 29)])
        );
        assert_eq!(
            p("bytes=20-29,0-9,5-22", 100),
            RangePlan::Partial(vec![(0, 29)])
        );
        assert_eq!(p("bytes=0-9,10-19", 100), RangePlan::Partial(vec![(0, 19)]));
        assert_eq!(
            p("bytes=-10,0-4", 100),
            RangePlan::Partial(vec![(0, 4), (90, 99)])
        );
    }

    #[test]
    fn abuse_limits() {
        let many: Vec<String> = (0..101).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert_eq!(
            p(&format!("bytes={}", many.join(",")), 1000),
            RangePlan::Full
        );
        let hundred: Vec<String> = (0..100).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert!(
            matches!(p(&format!("bytes={}", hundred.join(",")), 1000), RangePlan::Partial(v) if v.len() == 100)
        );
        let overlap: Vec<&str> = (0..5).map(|_| "0-999").collect();
        assert_eq!(
            p(&format!("bytes={}", overlap.join(",")), 1000),
            RangePlan::Full
        );
    }
}
