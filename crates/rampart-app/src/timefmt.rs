//! Time formatting for logs without a calendar dependency: nginx's `$time_local` shape
//! (`25/Nov/2026:17:21:43 +0000`, always UTC here) and RFC 3339 for JSON logs. The text is cached
//! per second per thread, since thousands of log lines share each second.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 → (year, month 1-12, day 1-31). Howard Hinnant's civil_from_days.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Cache {
    secs: u64,
    local: String,
    rfc3339: String,
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { secs: u64::MAX, local: String::new(), rfc3339: String::new() }) };
}

fn with<R>(f: impl FnOnce(&Cache) -> R) -> R {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.secs != secs {
            let (y, m, d) = civil((secs / 86_400) as i64);
            let t = secs % 86_400;
            let (hh, mm, ss) = (t / 3600, (t / 60) % 60, t % 60);
            let mon = MONTHS[(m as usize).saturating_sub(1) % 12];
            c.local = format!("{d:02}/{mon}/{y}:{hh:02}:{mm:02}:{ss:02} +0000");
            c.rfc3339 = format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z");
            c.secs = secs;
        }
        f(&c)
    })
}

/// Appends `$time_local`.
pub fn push_local(out: &mut String) {
    with(|c| out.push_str(&c.local));
}

/// Appends an RFC 3339 UTC timestamp.
pub fn push_rfc3339(out: &mut String) {
    with(|c| out.push_str(&c.rfc3339));
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_417), (2025, 11, 25));
        assert_eq!(super::civil(11_016), (2000, 2, 29));
    }
}
