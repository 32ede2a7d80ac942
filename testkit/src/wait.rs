//! Waits on conditions, never on time: poll a condition until it holds or
//! a deadline passes, and say what was awaited when it does.

use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// A wait whose deadline passed.
#[derive(Debug)]
pub struct TimedOut {
    /// What was awaited.
    pub what: String,
    /// How long.
    pub waited: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out after {:.1} s waiting for {}",
            self.waited.as_secs_f64(),
            self.what
        )
    }
}

impl std::error::Error for TimedOut {}

/// Polls `f` until it returns true; `Err` naming `what` after `within`.
pub fn try_wait_until(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<(), TimedOut> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() >= within {
            return Err(TimedOut {
                what: what.to_string(),
                waited: within,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Polls `f` until it returns true, or panics naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, f: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(what, within, f) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_holds_returns_at_once() {
        let mut calls = 0;
        try_wait_until("nothing", Duration::ZERO, || {
            calls += 1;
            true
        })
        .unwrap();
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_condition_that_becomes_true_is_awaited() {
        let mut n = 0;
        try_wait_until("three polls", Duration::from_secs(60), || {
            n += 1;
            n == 3
        })
        .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn the_timeout_names_what_was_awaited() {
        let e = try_wait_until("the moon", Duration::ZERO, || false).unwrap_err();
        assert!(e.to_string().contains("waiting for the moon"), "{e}");
    }

    #[test]
    #[should_panic(expected = "waiting for the sun")]
    fn wait_until_panics_with_the_name() {
        wait_until("the sun", Duration::ZERO, || false);
    }
}
