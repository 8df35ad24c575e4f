//! Consistent hashing on a ketama ring: each server owns 160 points per unit of weight, a key
//! goes to the first point clockwise of its hash, and an unavailable server's keys move to the
//! next server on the ring. Removing one of N servers therefore moves only its ~1/N of keys.

/// 64-bit FNV-1a followed by a SplitMix64 finalizer: stable across builds and processes (so
/// several Rampart instances map a key to the same server) and well mixed for ring positions.
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Points per unit of weight (ketama's 160).
const POINTS: u32 = 160;

/// A hash ring over server indexes.
#[derive(Debug)]
pub struct Ring {
    points: Vec<(u64, usize)>,
    servers: usize,
}

impl Ring {
    /// Builds the ring from (server id, weight) pairs; index = position in the slice.
    pub fn new<'a>(servers: impl Iterator<Item = (&'a str, u32)>) -> Ring {
        let mut points = Vec::new();
        let mut count = 0;
        for (idx, (id, weight)) in servers.enumerate() {
            count = idx + 1;
            for p in 0..POINTS.saturating_mul(weight.clamp(1, 100)) {
                let key = format!("{id}-{p}");
                points.push((hash_bytes(key.as_bytes()), idx));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            servers: count,
        }
    }

    /// The first server clockwise from `hash` for which `ok` holds.
    pub fn pick(&self, hash: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(h, _)| *h < hash);
        let n = self.points.len();
        let mut tried = 0u64;
        for k in 0..n {
            let (_, idx) = self.points[(start + k) % n];
            if ok(idx) {
                return Some(idx);
            }
            // Every server rejected: stop early (tracked for up to 64 servers).
            if self.servers <= 64 {
                tried |= 1u64 << idx;
                if tried.count_ones() as usize >= self.servers {
                    break;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let ids: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}:80")).collect();
        let full = Ring::new(ids.iter().map(|s| (s.as_str(), 1)));
        let fewer = Ring::new(ids[..9].iter().map(|s| (s.as_str(), 1)));
        let keys = 20_000;
        let mut moved = 0;
        for k in 0..keys {
            let h = hash_bytes(format!("user-{k}").as_bytes());
            let a = full.pick(h, |_| true).unwrap();
            let b = fewer.pick(h, |_| true).unwrap();
            if a != b {
                moved += 1;
                assert_eq!(a, 9, "only keys of the removed server move");
            }
        }
        // ~1/10 of keys lived on the removed server; allow generous slack for ring variance.
        assert!(moved > keys / 20 && moved < keys * 3 / 20, "moved {moved}");
    }

    #[test]
    fn unavailable_server_keys_go_to_the_next() {
        let ids = ["a", "b", "c"];
        let ring = Ring::new(ids.iter().map(|s| (*s, 1)));
        for k in 0..1000 {
            let h = hash_bytes(format!("{k}").as_bytes());
            let a = ring.pick(h, |_| true).unwrap();
            let b = ring.pick(h, |i| i != 1).unwrap();
            if a != 1 {
                assert_eq!(a, b);
            } else {
                assert_ne!(b, 1);
            }
        }
        assert_eq!(ring.pick(1, |_| false), None);
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(hash_bytes(b"abc"), hash_bytes(b"abc"));
        assert_ne!(hash_bytes(b"abc"), hash_bytes(b"abd"));
    }
}
