//! Balancing methods. Each picks one server among the *candidates* (servers usable now, of the
//! primary tier, or of the backup tier when no primary is usable), given as a predicate over
//! server indexes so that picking allocates nothing.

mod hash;
mod least;
mod random;
mod round_robin;

pub use hash::{hash_bytes, Ring};
pub(crate) use least::{least_conn, least_time, power_of_two, Load};
pub(crate) use random::weighted_random;
pub(crate) use round_robin::SmoothRoundRobin;
