//! How long to wait before trying again: the first wait, doubled after each attempt, up
//! to a cap. Used to reconnect to a libvirtd that went away.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    cap: Duration,
    wait: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff { cap, wait: first }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let w = self.wait;
        self.wait = self.wait.saturating_mul(2).min(self.cap);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(30));
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
