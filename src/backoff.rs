//! How long to wait before trying again: the first wait, doubled after each attempt, up
//! to a cap. Used to reconnect to a libvirtd that went away.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    wait: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap,
            wait: first,
            attempts: 0,
        }
    }

    /// The wait before the next attempt; counts the attempt.
    pub fn next_wait(&mut self) -> Duration {
        let w = self.wait;
        self.wait = self.wait.saturating_mul(2).min(self.cap);
        self.attempts = self.attempts.saturating_add(1);
        w
    }

    /// Attempts counted since the start or the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Start again from the first wait (after a success).
    pub fn reset(&mut self) {
        self.wait = self.first;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(30));
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert_eq!((b.next_wait(), b.attempts()), (s(1), 1));
    }
}
