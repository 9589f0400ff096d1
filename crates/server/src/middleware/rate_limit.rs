//! Fixed-window rate limiting (spec: auth-router §1.3): the global per-client-IP limiter, and
//! the [`RateLimiter`] that route-level limiters (org-token mint, MCP) can reuse with their own
//! key and limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::supervisor::Supervisor;

/// The global limit when `RATE_LIMIT` is unset, non-positive or invalid.
pub const DEFAULT_RATE_LIMIT: u32 = 600;
/// The global limiter's window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// How often the janitor drops old buckets.
pub const JANITOR_EVERY: Duration = Duration::from_secs(5 * 60);
/// Buckets whose window started longer ago than this are dropped by the janitor.
pub const JANITOR_MAX_AGE: Duration = Duration::from_secs(10 * 60);

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A fixed-window limiter: each key has a bucket of `limit` tokens that refills when its
/// window is over. Cheap to clone; clones share the buckets.
#[derive(Clone)]
pub struct RateLimiter<K = IpAddr> {
    limit: u32,
    window: Duration,
    buckets: Arc<Mutex<HashMap<K, Bucket>>>,
}

impl<K> std::fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: i64,
    window_start: Instant,
}

/// The outcome of one request against a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The limit of the window.
    pub limit: u32,
    /// Tokens left after this request (`max(tokens - 1, 0)`, counted before the decrement).
    pub remaining: i64,
    /// Whole seconds until the window ends.
    pub reset_secs: u64,
}

impl Decision {
    /// Sets `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub fn set_headers(&self, headers: &mut HeaderMap) {
        headers.insert(LIMIT, HeaderValue::from(self.limit));
        headers.insert(REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RESET, HeaderValue::from(self.reset_secs));
    }

    /// The 429 answer: `{"error": message, "retry_after": N}` with `Retry-After` and the
    /// `X-RateLimit-*` headers.
    pub fn rejection(&self, message: &str) -> Response {
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
            .with("retry_after", self.reset_secs)
            .into_response();
        let headers = response.headers_mut();
        self.set_headers(headers);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(self.reset_secs));
        response
    }
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `limit` requests per `window` and key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The limit per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes one token for `key` now.
    pub fn check(&self, key: K) -> Decision {
        self.check_at(key, Instant::now())
    }

    /// Takes one token for `key` at the instant `now` (tests pass their own clock).
    pub fn check_at(&self, key: K, now: Instant) -> Decision {
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: i64::from(self.limit),
            window_start: now,
        });
        if now.saturating_duration_since(bucket.window_start) >= self.window {
            bucket.tokens = i64::from(self.limit);
            bucket.window_start = now;
        }
        let reset_secs = (bucket.window_start + self.window)
            .saturating_duration_since(now)
            .as_secs();
        let remaining = (bucket.tokens - 1).max(0);
        let allowed = bucket.tokens > 0;
        if allowed {
            bucket.tokens -= 1;
        }
        Decision {
            allowed,
            limit: self.limit,
            remaining,
            reset_secs,
        }
    }

    /// Drops the buckets whose window started more than `max_age` before `now`.
    pub fn sweep_at(&self, now: Instant, max_age: Duration) {
        self.buckets
            .lock()
            .retain(|_, b| now.saturating_duration_since(b.window_start) <= max_age);
    }

    /// How many keys have a bucket.
    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    /// Whether no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The global limit from the `RATE_LIMIT` text: a positive integer, else the default.
pub fn parse_rate_limit(text: Option<&str>) -> u32 {
    text.and_then(|t| t.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map_or(DEFAULT_RATE_LIMIT, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// The global per-client-IP limiter. The client is the TCP peer; proxy headers are ignored.
/// Without a limiter (dev mode) everything goes through with `X-RateLimit-Limit: unlimited`.
/// Headers a route-level limiter already set win.
pub async fn global(
    State(limiter): State<Option<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        let mut response = next.run(request).await;
        response
            .headers_mut()
            .entry(LIMIT)
            .or_insert(HeaderValue::from_static("unlimited"));
        return response;
    };
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let decision = limiter.check(ip);
    if !decision.allowed {
        return decision.rejection("rate limit exceeded");
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(LIMIT) {
        decision.set_headers(headers);
    }
    response
}

/// Starts the janitor `name` that drops old buckets of `limiter`.
pub fn spawn_janitor<K>(name: &'static str, limiter: &RateLimiter<K>, supervisor: &Supervisor)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    let limiter = limiter.clone();
    supervisor.spawn_loop(name, JANITOR_EVERY, move || {
        let limiter = limiter.clone();
        async move { limiter.sweep_at(Instant::now(), JANITOR_MAX_AGE) }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn a_window_allows_the_limit_then_refuses_until_it_ends() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let d = limiter.check_at(ip(1), t0);
        assert_eq!(
            d,
            Decision {
                allowed: true,
                limit: 3,
                remaining: 2,
                reset_secs: 60
            }
        );
        assert_eq!(
            limiter
                .check_at(ip(1), t0 + Duration::from_secs(1))
                .remaining,
            1
        );
        assert_eq!(
            limiter
                .check_at(ip(1), t0 + Duration::from_secs(2))
                .remaining,
            0
        );
        let refused = limiter.check_at(ip(1), t0 + Duration::from_millis(20_500));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_secs, 39);
        // Another client has its own bucket.
        assert!(limiter.check_at(ip(2), t0 + Duration::from_secs(3)).allowed);
        // The window ends: the bucket refills.
        let later = limiter.check_at(ip(1), t0 + Duration::from_secs(60));
        assert!(later.allowed);
        assert_eq!(later.remaining, 2);
        assert_eq!(later.reset_secs, 60);
    }

    #[test]
    fn the_janitor_drops_only_old_buckets() {
        let limiter = RateLimiter::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        limiter.check_at(ip(1), t0);
        limiter.check_at(ip(2), t0 + Duration::from_secs(9 * 60));
        limiter.sweep_at(t0 + Duration::from_secs(11 * 60), JANITOR_MAX_AGE);
        assert_eq!(limiter.len(), 1);
        assert!(
            limiter
                .check_at(ip(2), t0 + Duration::from_secs(11 * 60))
                .allowed
        );
    }

    #[test]
    fn rate_limit_text_falls_back_to_600() {
        assert_eq!(parse_rate_limit(None), 600);
        assert_eq!(parse_rate_limit(Some("")), 600);
        assert_eq!(parse_rate_limit(Some("abc")), 600);
        assert_eq!(parse_rate_limit(Some("0")), 600);
        assert_eq!(parse_rate_limit(Some("-5")), 600);
        assert_eq!(parse_rate_limit(Some(" 42 ")), 42);
    }
}
