//! Retry budget (as in Finagle and Linkerd): retries may add at most `percent` of the recent
//! request rate, plus a small floor, so a failing group is not hammered by retry storms.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counting window; the budget looks at this one and the previous one.
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Counts {
    start: Instant,
    requests: u64,
    retries: u64,
    prev_requests: u64,
    prev_retries: u64,
}

/// A group's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u64,
    min_per_sec: u64,
    counts: Mutex<Counts>,
}

impl RetryBudget {
    /// A budget of `percent` of requests plus `min_per_sec` retries per second.
    pub fn new(percent: u32, min_per_sec: u32) -> Self {
        RetryBudget {
            percent: u64::from(percent),
            min_per_sec: u64::from(min_per_sec),
            counts: Mutex::new(Counts {
                start: Instant::now(),
                requests: 0,
                retries: 0,
                prev_requests: 0,
                prev_retries: 0,
            }),
        }
    }

    fn rotate(c: &mut Counts, now: Instant) {
        let age = now.duration_since(c.start);
        if age >= WINDOW * 2 {
            *c = Counts {
                start: now,
                requests: 0,
                retries: 0,
                prev_requests: 0,
                prev_retries: 0,
            };
        } else if age >= WINDOW {
            c.prev_requests = c.requests;
            c.prev_retries = c.retries;
            c.requests = 0;
            c.retries = 0;
            c.start += WINDOW;
        }
    }

    /// Counts a first attempt.
    pub fn on_request(&self, now: Instant) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        Self::rotate(&mut c, now);
        c.requests += 1;
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&self) -> bool {
        let now = Instant::now();
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        Self::rotate(&mut c, now);
        let requests = c.requests + c.prev_requests;
        let allowed = requests * self.percent / 100 + self.min_per_sec * WINDOW.as_secs() * 2;
        if c.retries + c.prev_retries < allowed {
            c.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_bounds_retries() {
        let b = RetryBudget::new(20, 0);
        for _ in 0..100 {
            b.on_request(Instant::now());
        }
        let granted = (0..100).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 20);
        let floor = RetryBudget::new(0, 1);
        let granted = (0..100).filter(|_| floor.try_retry()).count();
        assert_eq!(granted, 20, "1/s over the 20 s the budget spans");
    }
}
