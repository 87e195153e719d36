//! The time the server and its modules read.
//!
//! A running server reads the system's clocks. `ferrosip test` stops the clock instead and
//! moves it itself (a test's `wait` step), so that everything that depends on time — tm's
//! timers, `$Ts`/`$TV`, htable expiry, registrations expiring, pike's windows, digest
//! nonces — sees the same time and a test never waits for real seconds. One [`Clock`] is
//! held by the [`Registry`](crate::Registry) and handed to modules
//! ([`ModuleBuilder::clock`](crate::ModuleBuilder::clock)); its clones share it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock and a wall clock that are either the system's or stopped and moved
/// by hand (together, so the two never disagree).
#[derive(Clone, Default)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

#[derive(Default)]
struct ClockInner {
    /// Checked before the lock, so the system clock costs one relaxed load.
    stopped: AtomicBool,
    stopped_at: Mutex<Option<Stopped>>,
}

#[derive(Clone, Copy)]
struct Stopped {
    monotonic: Instant,
    wall: SystemTime,
}

impl Clock {
    /// The system's clocks.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that stands still (at the present moment) until [`Clock::advance`] moves it.
    pub fn manual() -> Clock {
        let clock = Clock::default();
        clock.stop();
        clock
    }

    /// Stops this clock and every clone of it at the present moment; from now on only
    /// [`Clock::advance`] moves it. Stopping a stopped clock changes nothing.
    pub fn stop(&self) {
        let mut stopped = self.lock();
        if stopped.is_none() {
            *stopped = Some(Stopped {
                monotonic: Instant::now(),
                wall: SystemTime::now(),
            });
        }
        self.inner.stopped.store(true, Ordering::Release);
    }

    /// Stops the clock with its wall time at `wall` (a test that says what time it is).
    pub fn stop_at(&self, wall: SystemTime) {
        self.stop();
        if let Some(stopped) = self.lock().as_mut() {
            stopped.wall = wall;
        }
    }

    /// Whether the clock is stopped (moved by hand).
    pub fn is_manual(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Stopped>> {
        self.inner
            .stopped_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> Option<Stopped> {
        if self.is_manual() {
            *self.lock()
        } else {
            None
        }
    }

    /// The monotonic time: what timers and durations are measured on.
    pub fn now(&self) -> Instant {
        match self.stopped() {
            Some(s) => s.monotonic,
            None => Instant::now(),
        }
    }

    /// The wall-clock time.
    pub fn wall(&self) -> SystemTime {
        match self.stopped() {
            Some(s) => s.wall,
            None => SystemTime::now(),
        }
    }

    /// The wall-clock time since the Unix epoch (zero before it).
    pub fn since_epoch(&self) -> Duration {
        self.wall().duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// The wall-clock time in whole seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u64 {
        self.since_epoch().as_secs()
    }

    /// Moves a stopped clock forward; a running clock cannot be moved (no effect).
    pub fn advance(&self, by: Duration) {
        if !self.is_manual() {
            return;
        }
        if let Some(stopped) = self.lock().as_mut() {
            stopped.monotonic += by;
            stopped.wall += by;
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_manual() { "manual" } else { "system" };
        f.debug_struct("Clock").field("kind", &kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_clock_moves_only_when_advanced_and_its_clones_follow() {
        let clock = Clock::system();
        let clone = clock.clone();
        clock.stop_at(UNIX_EPOCH + Duration::from_secs(1_000));
        assert!(clone.is_manual());
        let t0 = clone.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clone.now(), t0);
        assert_eq!(clone.unix_secs(), 1_000);
        clock.advance(Duration::from_millis(2_500));
        assert_eq!(clone.now() - t0, Duration::from_millis(2_500));
        assert_eq!(clone.unix_secs(), 1_002);
        assert_eq!(clone.since_epoch().subsec_millis(), 500);
    }

    #[test]
    fn a_system_clock_ignores_advance() {
        let clock = Clock::system();
        let before = clock.unix_secs();
        clock.advance(Duration::from_secs(3_600));
        assert!(clock.unix_secs() < before + 60);
    }
}
