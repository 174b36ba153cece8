//! Bounded retries: 429 and 503 wait exactly for `Retry-After`; other transient failures
//! back off exponentially with jitter (backon's schedule); nothing retries a 4xx that
//! will not change. Bounded in attempts and in total time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use backon::BackoffBuilder;

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// The same request will fail the same way.
    Never,
    /// The server named the wait.
    After(Duration),
    /// Transient: back off on our own schedule.
    Backoff,
}

pub trait Retryable {
    fn retry_hint(&self) -> RetryHint;
}

impl Retryable for super::errors::TokenError {
    fn retry_hint(&self) -> RetryHint {
        match (self.kind.is_retryable(), self.retry_after) {
            (false, _) => RetryHint::Never,
            (true, Some(wait)) => RetryHint::After(wait),
            (true, None) => RetryHint::Backoff,
        }
    }
}

impl Retryable for super::errors::GraphError {
    fn retry_hint(&self) -> RetryHint {
        match (self.kind.is_retryable(), self.retry_after) {
            (false, _) => RetryHint::Never,
            (true, Some(wait)) => RetryHint::After(wait),
            (true, None) => RetryHint::Backoff,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// No retry starts past this much time since the first attempt.
    pub max_elapsed: Duration,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            max_elapsed: Duration::from_secs(120),
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        max_elapsed: Duration::ZERO,
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// Runs `attempt` until it succeeds, fails for good, or the budget is spent.
    /// Returns the last error when it gives up.
    pub async fn run<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build();
        let mut attempts = 1;
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let wait = match error.retry_hint() {
                RetryHint::Never => return Err(error),
                RetryHint::After(wait) => match backoff.next() {
                    // The server's word wins over our schedule; the schedule still counts attempts.
                    Some(_) => wait,
                    None => return Err(error),
                },
                RetryHint::Backoff => match backoff.next() {
                    Some(wait) => wait,
                    None => return Err(error),
                },
            };
            if attempts >= self.max_attempts || started.elapsed() + wait > self.max_elapsed {
                return Err(error);
            }
            tracing::debug!(
                attempt = attempts,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying: {error}"
            );
            tokio::time::sleep(wait).await;
            attempts += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Failure(RetryHint);
    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl Retryable for Failure {
        fn retry_hint(&self) -> RetryHint {
            self.0
        }
    }

    async fn attempts_until_given_up(policy: RetryPolicy, hint: RetryHint) -> u32 {
        let calls = AtomicU32::new(0);
        let result: Result<(), Failure> = policy
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Failure(hint))
            })
            .await;
        assert!(result.is_err());
        calls.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_what_will_not_change() {
        assert_eq!(
            attempts_until_given_up(RetryPolicy::default(), RetryHint::Never).await,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_bounded_by_attempts() {
        assert_eq!(
            attempts_until_given_up(RetryPolicy::default(), RetryHint::Backoff).await,
            4
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_for_exactly_and_bounded_by_time() {
        let started = tokio::time::Instant::now();
        let policy = RetryPolicy {
            max_elapsed: Duration::from_secs(100),
            ..RetryPolicy::default()
        };
        assert_eq!(
            attempts_until_given_up(policy, RetryHint::After(Duration::from_secs(30))).await,
            4
        );
        assert_eq!(started.elapsed(), Duration::from_secs(90));
        let short = RetryPolicy {
            max_elapsed: Duration::from_secs(45),
            ..RetryPolicy::default()
        };
        assert_eq!(
            attempts_until_given_up(short, RetryHint::After(Duration::from_secs(30))).await,
            2
        );
    }
}
