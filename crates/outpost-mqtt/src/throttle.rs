//! Connection throttling: at most N CONNECTs per second per hub, as IoT Hub throttles device
//! connections; refused attempts get CONNACK 3 (server unavailable), which the SDKs retry.

use std::collections::HashMap;
use std::time::Instant;

use outpost_model::HubName;
use parking_lot::Mutex;

/// A token bucket per hub: `rate` tokens a second, holding at most `rate` (one second's burst).
#[derive(Debug)]
pub struct ConnectThrottle {
    rate: u32,
    buckets: Mutex<HashMap<HubName, (f64, Instant)>>,
}

impl ConnectThrottle {
    /// Admits `rate` connects per second per hub; 0 admits every connect.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Returns whether a connect to `hub` at `now` is admitted, taking a token if so.
    pub fn admit(&self, hub: &HubName, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        let mut buckets = self.buckets.lock();
        let (tokens, last) = buckets.entry(hub.clone()).or_insert((rate, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_refills_at_the_rate_and_hubs_are_separate() {
        let throttle = ConnectThrottle::new(2);
        let (a, b) = (HubName::new("a").unwrap(), HubName::new("b").unwrap());
        let start = Instant::now();
        assert!(throttle.admit(&a, start));
        assert!(throttle.admit(&a, start));
        assert!(!throttle.admit(&a, start));
        assert!(throttle.admit(&b, start));
        assert!(throttle.admit(&a, start + Duration::from_millis(500)));
        assert!(!throttle.admit(&a, start + Duration::from_millis(500)));
        let unlimited = ConnectThrottle::new(0);
        assert!((0..1000).all(|_| unlimited.admit(&a, start)));
    }
}
