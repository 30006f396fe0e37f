//! Exponential backoff with jitter, for links that reconnect.

use std::time::Duration;

/// Exponential backoff with jitter for reconnecting outbound links.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay. Default 0.5 s.
    pub initial: Duration,
    /// The factor between delays. Default 1.6.
    pub multiplier: f64,
    /// The largest delay. Default 30 s.
    pub max: Duration,
    /// The random spread of each delay, as a fraction. Default 0.2 (+-20 %).
    pub jitter: f64,
    /// Whether links reconnect at all. Default true.
    pub enabled: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            multiplier: 1.6,
            max: Duration::from_secs(30),
            jitter: 0.2,
            enabled: true,
        }
    }
}

impl Backoff {
    /// A backoff starting at `initial`, growing by `multiplier` up to `max`, +-20 % jitter.
    pub fn new(initial: Duration, multiplier: f64, max: Duration) -> Self {
        Self {
            initial,
            multiplier,
            max,
            ..Self::default()
        }
    }

    /// No reconnection.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt` (from 1), with `unit` in `[0, 1)` picking the jitter.
    pub(crate) fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max.as_secs_f64());
        let spread = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((capped * spread).max(0.0))
    }
}

/// A number in `[0, 1)` for jitter: random per call (UUID v4 randomness, which is the
/// operating system's or, in the browser, `crypto.getRandomValues`).
pub(crate) fn jitter_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1, 0.5), Duration::from_millis(500));
        assert_eq!(backoff.delay(2, 0.5), Duration::from_millis(800));
        assert_eq!(backoff.delay(30, 0.5), Duration::from_secs(30));
        assert_eq!(backoff.delay(1, 0.0), Duration::from_millis(400));
        assert!(backoff.delay(1, 0.999_999) < Duration::from_millis(600));
        assert!(backoff.delay(30, 0.999_999) <= Duration::from_secs(36));
    }
}
