//! Smooth weighted round robin, as nginx does it: every pick adds each candidate's weight to
//! its running score, takes the highest, and subtracts the total from the winner. Weights
//! 5/1/1 give a,a,b,a,c,a,a — spread out, never bursts of one server.

use std::sync::Mutex;

/// Running scores, one per server.
#[derive(Debug)]
pub(crate) struct SmoothRoundRobin {
    current: Mutex<Vec<i64>>,
}

impl SmoothRoundRobin {
    pub(crate) fn new(n: usize) -> Self {
        SmoothRoundRobin {
            current: Mutex::new(vec![0; n]),
        }
    }

    /// Picks among `n` servers those where `weight(i)` is `Some`.
    pub(crate) fn pick(&self, n: usize, weight: impl Fn(usize) -> Option<u64>) -> Option<usize> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..n {
            let Some(w) = weight(i) else { continue };
            let w = i64::try_from(w).unwrap_or(i64::MAX / 1024);
            cur[i] += w;
            total += w;
            if best.is_none_or(|b| cur[i] > cur[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        cur[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_order_for_5_1_1() {
        let rr = SmoothRoundRobin::new(3);
        let w = [5u64, 1, 1];
        let seq: String = (0..7)
            .map(|_| (b'a' + rr.pick(3, |i| Some(w[i])).unwrap() as u8) as char)
            .collect();
        assert_eq!(seq, "aabacaa");
    }

    #[test]
    fn skips_unavailable() {
        let rr = SmoothRoundRobin::new(3);
        let picks: Vec<usize> = (0..4)
            .map(|_| rr.pick(3, |i| (i != 1).then_some(1)).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
        assert_eq!(rr.pick(3, |_| None), None);
    }
}
