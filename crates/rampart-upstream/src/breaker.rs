//! The per-server circuit breaker, which is also passive health (outlier detection):
//!
//! ```text
//! Closed ──max_fails consecutive failures──▶ Open(until) ──cooldown over──▶ HalfOpen
//!   ▲                                          ▲                              │ one trial request
//!   └──────────────trial succeeds──────────────┼──────────trial fails─────────┘
//! ```
//! Each opening doubles the cooldown (up to `max_cooldown`), so a server that keeps failing is
//! tried less and less often; the count decays once it has stayed closed for `max_cooldown`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::settings::BreakerSettings;

/// Breaker states, as reported in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// The server is ejected.
    Open,
    /// One trial request is allowed through.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { fails: u32, since: Instant },
    Open { until: Instant },
    HalfOpen { trial: bool },
}

/// One server's breaker.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    /// True while closed with no failure counted: the per-request path then takes no lock.
    clean: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Openings in a row (drives the growing cooldown).
    openings: u32,
}

/// What a recorded outcome changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing visible.
    None,
    /// The breaker opened (the server is ejected) for this long.
    Opened(Duration),
    /// The breaker closed (the server is back).
    Closed,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            clean: AtomicBool::new(true),
            inner: Mutex::new(Inner {
                state: State::Closed {
                    fails: 0,
                    since: Instant::now(),
                },
                openings: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-written (every update is
        // a single assignment), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request may be sent now (no state change: selection asks about many servers).
    pub fn available(&self, now: Instant) -> bool {
        if self.clean.load(Ordering::Acquire) {
            return true;
        }
        match self.lock().state {
            State::Closed { .. } => true,
            State::Open { until } => now >= until,
            State::HalfOpen { trial } => !trial,
        }
    }

    /// The chosen server takes a request: an expired open breaker turns half-open and this
    /// request becomes its trial.
    pub fn on_chosen(&self, now: Instant) {
        if self.clean.load(Ordering::Acquire) {
            return;
        }
        let mut g = self.lock();
        match g.state {
            State::Open { until } if now >= until => g.state = State::HalfOpen { trial: true },
            State::HalfOpen { trial: false } => g.state = State::HalfOpen { trial: true },
            _ => {}
        }
    }

    /// A request succeeded.
    pub fn on_success(&self, now: Instant) -> Transition {
        if self.clean.load(Ordering::Acquire) {
            return Transition::None;
        }
        let mut g = self.lock();
        match g.state {
            State::Closed { since, .. } => {
                if g.openings > 0 && now.duration_since(since) > self.settings.max_cooldown {
                    g.openings = 0;
                }
                g.state = State::Closed { fails: 0, since };
                if g.openings == 0 {
                    self.clean.store(true, Ordering::Release);
                }
                Transition::None
            }
            State::HalfOpen { .. } | State::Open { .. } => {
                g.state = State::Closed {
                    fails: 0,
                    since: now,
                };
                Transition::Closed
            }
        }
    }

    /// A request failed (connect error, timeout, or a 5xx when those count).
    pub fn on_failure(&self, now: Instant) -> Transition {
        if self.settings.max_fails == 0 {
            return Transition::None;
        }
        let mut g = self.lock();
        self.clean.store(false, Ordering::Release);
        match g.state {
            State::Closed { fails, since } => {
                let fails = fails + 1;
                if fails >= self.settings.max_fails {
                    self.open(&mut g, now)
                } else {
                    g.state = State::Closed { fails, since };
                    Transition::None
                }
            }
            State::HalfOpen { .. } => self.open(&mut g, now),
            // Late failures of requests sent before it opened change nothing.
            State::Open { .. } => Transition::None,
        }
    }

    fn open(&self, g: &mut Inner, now: Instant) -> Transition {
        let factor = 1u32 << g.openings.min(16);
        let cool = self
            .settings
            .cooldown
            .saturating_mul(factor)
            .min(self.settings.max_cooldown);
        g.openings = g.openings.saturating_add(1);
        g.state = State::Open { until: now + cool };
        Transition::Opened(cool)
    }

    /// The state for metrics.
    pub fn state(&self, now: Instant) -> BreakerState {
        if self.clean.load(Ordering::Acquire) {
            return BreakerState::Closed;
        }
        match self.lock().state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(max_fails: u32) -> Breaker {
        Breaker::new(BreakerSettings {
            max_fails,
            fail_on_5xx: false,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(35),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_cooldown_grows() {
        let br = b(3);
        let t = Instant::now();
        assert_eq!(br.on_failure(t), Transition::None);
        assert_eq!(br.on_failure(t), Transition::None);
        br.on_success(t); // resets the count
        assert_eq!(br.on_failure(t), Transition::None);
        assert_eq!(br.on_failure(t), Transition::None);
        assert_eq!(
            br.on_failure(t),
            Transition::Opened(Duration::from_secs(10))
        );
        assert!(!br.available(t + Duration::from_secs(9)));
        let t2 = t + Duration::from_secs(10);
        assert!(br.available(t2));
        br.on_chosen(t2);
        assert_eq!(br.state(t2), BreakerState::HalfOpen);
        assert!(!br.available(t2), "only one trial at a time");
        // The trial fails: open again, twice as long.
        assert_eq!(
            br.on_failure(t2),
            Transition::Opened(Duration::from_secs(20))
        );
        let t3 = t2 + Duration::from_secs(20);
        br.on_chosen(t3);
        assert_eq!(
            br.on_failure(t3),
            Transition::Opened(Duration::from_secs(35)),
            "capped at max_cooldown"
        );
        let t4 = t3 + Duration::from_secs(35);
        br.on_chosen(t4);
        assert_eq!(br.on_success(t4), Transition::Closed);
        assert_eq!(br.state(t4), BreakerState::Closed);
        assert!(br.available(t4));
    }

    #[test]
    fn zero_max_fails_never_opens() {
        let br = b(0);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(br.on_failure(t), Transition::None);
        }
        assert!(br.available(t));
    }
}
