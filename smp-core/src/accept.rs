//! What a server's accept loop does when `accept` fails. Out of file
//! descriptors (EMFILE, ENFILE) the listening socket stays readable, so
//! retrying at once spins a core and logging each failure floods the log;
//! instead the loop waits longer after each failure (up to a second), says
//! so once a minute, and says when it recovers.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one warning per this interval while failures go on.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Counts events and says when one warning about them is due: the first
/// at once, then at most one per interval, each with the count since the
/// last.
#[derive(Debug)]
struct Occasional {
    unreported: u64,
    last_report: Option<Instant>,
    interval: Duration,
}

impl Occasional {
    fn new(interval: Duration) -> Self {
        Self {
            unreported: 0,
            last_report: None,
            interval,
        }
    }

    /// Records one event; `Some(count)` when a warning is due now.
    fn record(&mut self) -> Option<u64> {
        self.unreported += 1;
        let due = self
            .last_report
            .is_none_or(|t| t.elapsed() >= self.interval);
        if !due {
            return None;
        }
        self.last_report = Some(Instant::now());
        Some(core::mem::take(&mut self.unreported))
    }

    fn reset(&mut self) {
        *self = Self::new(self.interval);
    }
}

/// State of one accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: Duration,
    /// Failures since the last successful accept.
    failures: u64,
    warnings: Occasional,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

impl AcceptBackoff {
    /// `interval`: the least time between two warnings.
    pub fn new(interval: Duration) -> Self {
        Self {
            delay: FIRST_DELAY,
            failures: 0,
            warnings: Occasional::new(interval),
        }
    }

    /// Records a failed accept and returns how long to wait before the
    /// next one.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        self.failures += 1;
        if let Some(failures) = self.warnings.record() {
            let why = if is_out_of_descriptors(e) {
                "out of file descriptors"
            } else {
                "accept error"
            };
            tracing::warn!(
                failures,
                "cannot accept connections ({why}: {e}); retrying with back-off"
            );
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        wait
    }

    /// Records a successful accept; after failures, says the loop recovered.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
            self.warnings.reset();
            self.delay = FIRST_DELAY;
        }
    }

    /// Failures since the last successful accept.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// At most `max` connections at once. One over the limit is closed as soon
/// as it is accepted: its descriptor comes back at once and the client sees
/// the connection end instead of a hang. Refusals are said once a minute.
#[derive(Clone)]
pub struct ConnectionSlots(Arc<Slots>);

struct Slots {
    max: usize,
    open: AtomicUsize,
    refusals: Mutex<Occasional>,
}

/// One connection's place; given back when dropped.
pub struct ConnectionSlot(Arc<Slots>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionSlots {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Slots {
            max,
            open: AtomicUsize::new(0),
            refusals: Mutex::new(Occasional::new(LOG_INTERVAL)),
        }))
    }

    /// A place for a new connection, or `None` (and a rate-limited
    /// warning) when `max` are open.
    pub fn take(&self) -> Option<ConnectionSlot> {
        let s = &self.0;
        let taken = s
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < s.max).then_some(n + 1)
            })
            .is_ok();
        if taken {
            return Some(ConnectionSlot(s.clone()));
        }
        let due = s
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record();
        if let Some(refused) = due {
            tracing::warn!(
                refused,
                max = s.max,
                "connection limit reached: new connections are closed"
            );
        }
        None
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }
}

/// EMFILE or ENFILE: the process or the system ran out of descriptors.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_a_second_and_start_over_after_a_success() {
        let mut b = AcceptBackoff::new(Duration::from_secs(3600));
        let e = io::Error::from_raw_os_error(24);
        let waits: Vec<_> = (0..10).map(|_| b.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        assert_eq!(b.failures(), 10);
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(&e), Duration::from_millis(10));
    }

    #[test]
    fn slots_are_bounded_and_come_back() {
        let slots = ConnectionSlots::new(2);
        let a = slots.take().expect("first");
        let b = slots.take().expect("second");
        assert!(slots.take().is_none(), "a third is refused");
        assert_eq!(slots.open(), 2);
        drop(a);
        let c = slots.take().expect("a freed place is taken again");
        assert!(slots.take().is_none());
        drop((b, c));
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn warnings_are_occasional_and_carry_the_count() {
        let mut w = Occasional::new(Duration::from_secs(3600));
        assert_eq!(w.record(), Some(1), "the first is said at once");
        assert_eq!((0..5).filter_map(|_| w.record()).count(), 0);
        w.reset();
        assert_eq!(w.record(), Some(1));
        let mut w = Occasional::new(Duration::ZERO);
        assert_eq!(w.record(), Some(1));
        assert_eq!(w.record(), Some(1), "an interval past: said again");
    }

    #[test]
    fn descriptor_errors_are_told_apart() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(24)));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(23)));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(104)));
    }
}
