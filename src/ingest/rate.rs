//! Per-tenant ingestion rate limiting: one token bucket per tenant.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use crate::model::Tenant;

/// A token bucket per tenant, refilled at `rate` tokens per second up to
/// `burst`. A rate of zero disables the limiter.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Tenant, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter with `rate` tokens per second and `burst` capacity (zero or
    /// less than the rate means one second's worth).
    pub fn new(rate: f64, burst: usize) -> RateLimiter {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        RateLimiter {
            rate,
            burst: (burst as f64).max(rate),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True when the limiter does nothing.
    pub fn is_unlimited(&self) -> bool {
        self.rate == 0.0
    }

    /// The sustained rate, per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The burst capacity.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Takes `n` tokens for `tenant` if allowed. A request larger than the
    /// whole burst is let through when the bucket is full (it then goes into
    /// debt), so no request size is refused forever.
    pub fn try_take(&self, tenant: &Tenant, n: usize, now: Instant) -> bool {
        if self.is_unlimited() || n == 0 {
            return true;
        }
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        let n = n as f64;
        if b.tokens >= n.min(self.burst) {
            b.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_and_isolates_tenants() {
        let l = RateLimiter::new(10.0, 20);
        let (a, b) = (Tenant::new("a").unwrap(), Tenant::new("b").unwrap());
        let t0 = Instant::now();
        assert!(l.try_take(&a, 20, t0));
        assert!(!l.try_take(&a, 1, t0));
        assert!(l.try_take(&b, 5, t0), "tenants have separate buckets");
        assert!(l.try_take(&a, 10, t0 + Duration::from_secs(1)));
        assert!(!l.try_take(&a, 1, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn oversized_request_passes_only_on_a_full_bucket() {
        let l = RateLimiter::new(10.0, 0);
        let a = Tenant::new("a").unwrap();
        let t0 = Instant::now();
        assert!(l.try_take(&a, 100, t0));
        assert!(!l.try_take(&a, 100, t0 + Duration::from_secs(5)));
        assert!(l.try_take(&a, 100, t0 + Duration::from_secs(11)));
        assert!(RateLimiter::new(0.0, 0).try_take(&a, 1 << 40, t0));
    }
}
