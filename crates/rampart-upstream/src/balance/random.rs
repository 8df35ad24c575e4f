//! Weighted random choice.

/// Picks among `n` servers with probability proportional to `weight(i)`.
pub(crate) fn weighted_random(n: usize, weight: impl Fn(usize) -> Option<u64>) -> Option<usize> {
    let total: u64 = (0..n).filter_map(&weight).sum();
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u64(0..total);
    for i in 0..n {
        if let Some(w) = weight(i) {
            if r < w {
                return Some(i);
            }
            r -= w;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_to_weight() {
        let w = [3u64, 1, 0];
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[weighted_random(3, |i| (w[i] > 0).then_some(w[i])).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        // 30,000 expected for server 0: far beyond 10 standard deviations (~87) either way.
        assert!((29_000..31_000).contains(&counts[0]), "{counts:?}");
    }
}
