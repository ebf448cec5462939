//! The rate limiter of one process: a GCRA bucket per destination in memory. The embedded
//! (SQLite) store's, where one process does all the sending, and the shared limiter's fallback
//! while its database cannot be reached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{RateLimiter, interval};
use crate::channels::Destination;

/// Destinations not used for this long are forgotten, so the map cannot grow without bound with
/// one-off webhook URLs.
const IDLE_FORGET: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct LocalRateLimiter {
    /// Per destination key: the theoretical arrival time of the next send (GCRA's TAT).
    buckets: Mutex<HashMap<String, Instant>>,
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn reserve(&self, destination: &Destination) -> Duration {
        self.reserve_at(destination, Instant::now())
    }

    async fn release(&self, destination: &Destination) {
        self.release_now(destination)
    }

    async fn pause(&self, destination: &Destination, wait: Duration) {
        self.pause_now(destination, wait)
    }
}

impl LocalRateLimiter {
    fn reserve_at(&self, destination: &Destination, now: Instant) -> Duration {
        let t = interval(destination.limit);
        // A full bucket lets `events` go at once: the burst tolerance is the rest of the period.
        let tolerance = destination.limit.per.saturating_sub(t);
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        if buckets.len() > 10_000 {
            buckets.retain(|_, tat| *tat + IDLE_FORGET > now);
        }
        let tat = buckets.entry(destination.key.clone()).or_insert(now);
        let earliest = (*tat).checked_sub(tolerance).unwrap_or(now).max(now);
        *tat = (*tat).max(now) + t;
        earliest - now
    }

    fn release_now(&self, destination: &Destination) {
        let t = interval(destination.limit);
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        if let Some(tat) = buckets.get_mut(&destination.key) {
            *tat = (*tat).checked_sub(t).unwrap_or(*tat);
        }
    }

    fn pause_now(&self, destination: &Destination, wait: Duration) {
        let now = Instant::now();
        let tolerance = destination
            .limit
            .per
            .saturating_sub(interval(destination.limit));
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        let tat = buckets.entry(destination.key.clone()).or_insert(now);
        *tat = (*tat).max(now + wait + tolerance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::RateLimit;

    fn dest(key: &str, events: u32, per_secs: u64) -> Destination {
        Destination {
            key: key.into(),
            limit: RateLimit {
                events,
                per: Duration::from_secs(per_secs),
            },
        }
    }

    #[test]
    fn a_burst_goes_at_once_then_sends_are_spaced_by_the_rate() {
        let limiter = LocalRateLimiter::default();
        let now = Instant::now();
        let d = dest("a", 2, 1);
        let waits: Vec<Duration> = (0..5).map(|_| limiter.reserve_at(&d, now)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, vec![ms(0), ms(0), ms(500), ms(1000), ms(1500)]);
        // Another destination has its own bucket.
        assert_eq!(limiter.reserve_at(&dest("b", 2, 1), now), ms(0));
        // Time passing refills it.
        let later = now + Duration::from_secs(10);
        assert_eq!(limiter.reserve_at(&d, later), ms(0));
    }

    #[test]
    fn one_per_second_spaces_every_send_by_a_second() {
        let limiter = LocalRateLimiter::default();
        let now = Instant::now();
        let d = dest("slack", 1, 1);
        let waits: Vec<u64> = (0..4)
            .map(|_| limiter.reserve_at(&d, now).as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![0, 1000, 2000, 3000]);
        limiter.release_now(&d);
        assert_eq!(limiter.reserve_at(&d, now).as_millis(), 3000);
    }

    #[tokio::test]
    async fn a_pause_holds_every_send_until_it_is_over() {
        let limiter = LocalRateLimiter::default();
        let d = dest("pd", 120, 60);
        limiter.pause(&d, Duration::from_secs(2)).await;
        let wait = limiter.reserve(&d).await;
        assert!(wait >= Duration::from_millis(1900), "{wait:?}");
    }
}
