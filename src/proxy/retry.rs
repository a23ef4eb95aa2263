//! The retry decision of `HTTPRoute.rules[].retry`, as a pure function of the
//! policy, the attempts made so far and how the last attempt ended.
//!
//! `attempts` counts retries after the first try (Gateway API: "the maximum
//! number of times an individual request from the gateway to a backend should
//! be retried"). A response is retried when its status is listed in `codes`.
//! Failures without a response — connection refused or reset before the
//! response head, and an attempt exceeding `timeouts.backendRequest` — are
//! retried whatever `codes` lists: the conformance tests
//! `HTTPRouteRetryConnectionError` and `HTTPRouteRetryWithTimeouts` require it
//! with policies that list no codes at all.

use crate::dataplane::RetryPolicy;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered with this status.
    Status(u16),
    /// No response: connection refused, reset or closed before the head.
    ConnectionFailed,
    /// The attempt exceeded `timeouts.backendRequest`.
    Timeout,
    /// Any other failure (invalid response, unusable request): not retried.
    Fatal,
}

/// Whether to try again after `attempts_made` attempts (1 after the first
/// try) ended with `outcome`, under `policy`.
pub fn should_retry(policy: Option<&RetryPolicy>, attempts_made: u32, outcome: Outcome) -> bool {
    let Some(policy) = policy else {
        return false;
    };
    if attempts_made > policy.attempts {
        return false;
    }
    match outcome {
        Outcome::Status(code) => policy.codes.contains(&code),
        Outcome::ConnectionFailed | Outcome::Timeout => true,
        Outcome::Fatal => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(codes: &[u16], attempts: u32) -> RetryPolicy {
        RetryPolicy {
            codes: codes.to_vec(),
            attempts,
            backoff: Duration::ZERO,
        }
    }

    #[test]
    fn no_policy_never_retries() {
        assert!(!should_retry(None, 1, Outcome::Status(503)));
        assert!(!should_retry(None, 1, Outcome::ConnectionFailed));
    }

    #[test]
    fn listed_code_is_retried_up_to_attempts() {
        let p = policy(&[500], 3);
        assert!(should_retry(Some(&p), 1, Outcome::Status(500)));
        assert!(should_retry(Some(&p), 3, Outcome::Status(500)));
        assert!(!should_retry(Some(&p), 4, Outcome::Status(500)));
    }

    #[test]
    fn unlisted_code_is_returned() {
        let p = policy(&[500], 3);
        assert!(!should_retry(Some(&p), 1, Outcome::Status(503)));
        assert!(!should_retry(Some(&p), 1, Outcome::Status(200)));
    }

    #[test]
    fn connection_errors_retry_without_codes() {
        let p = policy(&[], 3);
        assert!(should_retry(Some(&p), 1, Outcome::ConnectionFailed));
        assert!(!should_retry(Some(&p), 4, Outcome::ConnectionFailed));
    }

    #[test]
    fn backend_timeouts_retry_without_codes() {
        let p = policy(&[], 2);
        assert!(should_retry(Some(&p), 2, Outcome::Timeout));
        assert!(!should_retry(Some(&p), 3, Outcome::Timeout));
    }

    #[test]
    fn fatal_failures_are_not_retried() {
        let p = policy(&[500, 502], 5);
        assert!(!should_retry(Some(&p), 1, Outcome::Fatal));
    }
}
