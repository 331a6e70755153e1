//! What a server's accept loop does when `accept` fails. Out of file
//! descriptors (EMFILE, ENFILE) the listening socket stays readable, so
//! retrying at once spins a core and logging each failure floods the log;
//! instead the loop waits longer after each failure (up to a second), says
//! so once a minute, and says when it recovers.

use std::io;
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one warning per this interval while failures go on.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// State of one accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: Duration,
    /// Failures since the last successful accept.
    failures: u64,
    /// Failures not yet reported.
    unreported: u64,
    last_report: Option<Instant>,
    interval: Duration,
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
            unreported: 0,
            last_report: None,
            interval,
        }
    }

    /// Records a failed accept and returns how long to wait before the
    /// next one.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        self.failures += 1;
        self.unreported += 1;
        let due = self
            .last_report
            .is_none_or(|t| t.elapsed() >= self.interval);
        if due {
            let why = if is_out_of_descriptors(e) {
                "out of file descriptors"
            } else {
                "accept error"
            };
            tracing::warn!(
                failures = self.unreported,
                "cannot accept connections ({why}: {e}); retrying with back-off"
            );
            self.unreported = 0;
            self.last_report = Some(Instant::now());
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
            self.unreported = 0;
            self.last_report = None;
            self.delay = FIRST_DELAY;
        }
    }

    /// Failures since the last successful accept.
    pub fn failures(&self) -> u64 {
        self.failures
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
    fn descriptor_errors_are_told_apart() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(24)));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(23)));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(104)));
    }
}
