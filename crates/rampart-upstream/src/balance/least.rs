//! Load-aware methods: least connections, least time and power of two choices. Ties rotate
//! from a moving start so equal servers share the load instead of the first one taking all.

/// What these methods read about a candidate.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Requests in flight.
    pub inflight: u32,
    /// Effective weight × 1000.
    pub weight: u64,
    /// Response-time EWMA, µs (0 = unknown).
    pub ewma_us: u64,
}

fn conn_score(l: &Load) -> u128 {
    // (in flight + 1) / weight, compared without division.
    u128::from(l.inflight + 1) * 1_000_000 / u128::from(l.weight.max(1))
}

fn time_score(l: &Load) -> u128 {
    // An unmeasured server scores 0 so it gets a sample at once.
    u128::from(l.ewma_us) * u128::from(l.inflight + 1) * 1_000_000 / u128::from(l.weight.max(1))
}

fn least_by(
    n: usize,
    start: usize,
    load: impl Fn(usize) -> Option<Load>,
    score: fn(&Load) -> u128,
) -> Option<usize> {
    let mut best: Option<(usize, u128)> = None;
    for k in 0..n {
        let i = (start + k) % n.max(1);
        if let Some(l) = load(i) {
            let s = score(&l);
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((i, s));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Fewest requests in flight per unit of weight.
pub(crate) fn least_conn(
    n: usize,
    start: usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Option<usize> {
    least_by(n, start, load, conn_score)
}

/// Lowest response-time EWMA × (in flight + 1) per unit of weight.
pub(crate) fn least_time(
    n: usize,
    start: usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Option<usize> {
    least_by(n, start, load, time_score)
}

/// Two random candidates; the one with fewer requests in flight per weight wins.
pub(crate) fn power_of_two(n: usize, load: impl Fn(usize) -> Option<Load>) -> Option<usize> {
    let count = (0..n).filter(|i| load(*i).is_some()).count();
    if count == 0 {
        return None;
    }
    let nth = |k: usize| (0..n).filter(|i| load(*i).is_some()).nth(k);
    let a = fastrand::usize(0..count);
    if count == 1 {
        return nth(a);
    }
    let mut b = fastrand::usize(0..count - 1);
    if b >= a {
        b += 1;
    }
    let (ia, ib) = (nth(a)?, nth(b)?);
    let (la, lb) = (load(ia)?, load(ib)?);
    Some(if conn_score(&lb) < conn_score(&la) {
        ib
    } else {
        ia
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(inflight: u32, weight: u64, ewma_us: u64) -> Load {
        Load {
            inflight,
            weight: weight * 1000,
            ewma_us,
        }
    }

    #[test]
    fn least_conn_weighs_inflight() {
        let loads = [l(4, 1, 0), l(1, 1, 0), l(5, 1, 0)];
        assert_eq!(least_conn(3, 0, |i| Some(loads[i])), Some(1));
        // Server 2 has 4x the weight: 6/4 < 2/1.
        let loads = [l(1, 1, 0), l(3, 1, 0), l(5, 4, 0)];
        assert_eq!(least_conn(3, 0, |i| Some(loads[i])), Some(2));
    }

    #[test]
    fn least_time_prefers_fast_and_unmeasured() {
        let loads = [l(0, 1, 9000), l(0, 1, 1000), l(0, 1, 5000)];
        assert_eq!(least_time(3, 0, |i| Some(loads[i])), Some(1));
        let loads = [l(0, 1, 9000), l(0, 1, 1000), l(0, 1, 0)];
        assert_eq!(least_time(3, 0, |i| Some(loads[i])), Some(2));
        // A fast server with a queue loses to a slower idle one.
        let loads = [l(0, 1, 3000), l(9, 1, 1000)];
        assert_eq!(least_time(2, 0, |i| Some(loads[i])), Some(0));
    }

    #[test]
    fn ties_rotate() {
        let loads = [l(0, 1, 0); 3];
        assert_eq!(least_conn(3, 0, |i| Some(loads[i])), Some(0));
        assert_eq!(least_conn(3, 1, |i| Some(loads[i])), Some(1));
        assert_eq!(least_conn(3, 2, |i| Some(loads[i])), Some(2));
    }

    #[test]
    fn p2c_never_picks_the_busiest_of_two() {
        let loads = [l(100, 1, 0), l(0, 1, 0)];
        for _ in 0..100 {
            assert_eq!(power_of_two(2, |i| Some(loads[i])), Some(1));
        }
        assert_eq!(power_of_two(2, |i| (i == 0).then_some(loads[0])), Some(0));
    }
}
