//! Rate limits: a token bucket, and an allowance shared by a service's
//! tasks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A token bucket: `capacity` requests at once, refilled at `rate` a second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(requests_per_second: u32, burst: u32) -> Self {
        let capacity = f64::from(burst.max(1));
        Self { rate: f64::from(requests_per_second.max(1)), capacity, tokens: capacity, refilled_at: Instant::now() }
    }

    /// One replica's bucket when `replicas` share a member's limits: the
    /// rate and burst divided among them, rounded up (never below one).
    pub fn share(requests_per_second: u32, burst: u32, replicas: u32) -> Self {
        let replicas = replicas.max(1);
        Self::new(requests_per_second.div_ceil(replicas), burst.div_ceil(replicas))
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    /// Whether `other` has the same rate and burst.
    pub fn same_limits(&self, other: &Self) -> bool {
        (self.rate - other.rate).abs() < f64::EPSILON && (self.capacity - other.capacity).abs() < f64::EPSILON
    }
}

/// Something done at most at a rate, by any task (recording refusals, say,
/// which a flood must not turn into a flood of records); what goes beyond
/// the rate is counted, and the count is logged at every power of two.
#[derive(Debug)]
pub struct Allowance {
    what: &'static str,
    /// Whose allowance it is, for the log; empty: the service's.
    whom: String,
    bucket: Mutex<TokenBucket>,
    beyond: AtomicU64,
}

impl Allowance {
    /// `what` names the things allowed, for the log.
    pub fn new(what: &'static str, per_second: u32, burst: u32) -> Self {
        Self::of_bucket(what, String::new(), TokenBucket::new(per_second, burst))
    }

    /// The allowance of `whom` (named in the log), within `bucket`.
    pub fn of_bucket(what: &'static str, whom: String, bucket: TokenBucket) -> Self {
        Self { what, whom, bucket: Mutex::new(bucket), beyond: AtomicU64::new(0) }
    }

    /// Whether one more is allowed now.
    pub fn admit(&self) -> bool {
        let within = self.bucket.lock().is_ok_and(|mut bucket| bucket.take(Instant::now()).is_ok());
        if !within {
            let beyond = self.beyond.fetch_add(1, Ordering::Relaxed) + 1;
            if beyond.is_power_of_two() {
                tracing::warn!(beyond, what = self.what, whom = self.whom, "beyond the allowed rate");
            }
        }
        within
    }

    /// How many went beyond the rate so far.
    pub fn beyond(&self) -> u64 {
        self.beyond.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_one_request_per_interval() {
        let mut bucket = TokenBucket::new(10, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).expect_err("the burst is used up");
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(bucket.take(start + Duration::from_millis(100)), Ok(()));
        assert!(bucket.take(start + Duration::from_millis(100)).is_err());
        // A long pause refills only up to the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn replicas_share_a_limit_rounded_up() {
        let start = Instant::now();
        let mut bucket = TokenBucket::share(10, 7, 3);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()), "7 / 3 rounded up");
        }
        let wait = bucket.take(start).expect_err("the share of the burst is used up");
        assert_eq!(wait, Duration::from_millis(250), "10 / 3 rounded up is 4 a second");
        let mut alone = TokenBucket::share(1, 1, 5);
        assert_eq!(alone.take(start), Ok(()), "never below one");
        assert!(TokenBucket::share(10, 7, 1).same_limits(&TokenBucket::new(10, 7)));
    }

    #[test]
    fn an_allowance_admits_its_burst_and_counts_the_rest() {
        let allowance = Allowance::new("tests", 1, 3);
        let admitted = (0..10).filter(|_| allowance.admit()).count();
        assert!((3..=4).contains(&admitted), "the burst, and at most one more within the second: {admitted}");
        assert_eq!(allowance.beyond(), 10 - u64::try_from(admitted).expect("count"));
    }
}
