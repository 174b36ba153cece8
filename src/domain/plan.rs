//! Whether and when to rotate a client secret: pure decisions, no IO (issue 5's "When").
//!
//! Rotate when the remaining lifetime falls below the larger of a lead time (30 days by
//! default) and a third of the secret's total lifetime (as cert-manager renews at two
//! thirds). New secrets live 180 days by default, never more than 24 months, and never more
//! than the tenant's app-management policy allows. After a failure, back off 1 h, 2 h, 4 h
//! ... up to a day.

use chrono::{DateTime, Duration, Utc};

/// Microsoft's ceiling for client secrets created in the admin center (reference §4).
pub fn max_lifetime() -> Duration {
    Duration::days(730)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate at least this long before expiry.
    pub lead_time: Duration,
    /// The lifetime asked for new secrets.
    pub lifetime: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            lead_time: Duration::days(30),
            lifetime: Duration::days(180),
        }
    }
}

impl RotationPolicy {
    /// This policy with an organization's own settings applied (`org set ORG
    /// --rotation-lead-time`, kept as `rotation_lead_time_secs`).
    pub fn for_organization(
        &self,
        organization_settings: &super::OrganizationSettings,
    ) -> RotationPolicy {
        let mut policy = *self;
        if let Some(secs) = organization_settings.rotation_lead_time_secs {
            policy.lead_time = Duration::seconds(secs);
        }
        policy
    }
}

/// When the secret valid from `start` to `end` is due for rotation. A secret whose whole
/// life is shorter than the lead time (a tenant policy allowing only short secrets) is
/// rotated after two thirds of it, as cert-manager does, instead of at once, forever.
/// Without a known start (a secret stored by hand), the lead time alone decides.
pub fn due_at(
    policy: &RotationPolicy,
    start: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
) -> DateTime<Utc> {
    let Some(start) = start else {
        return end - policy.lead_time;
    };
    let total = end - start;
    let third = total / 3;
    if policy.lead_time < total {
        end - policy.lead_time.max(third)
    } else {
        end - third
    }
}

/// Whether to rotate now, given the secret's validity and the time of the last failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not yet: look again at this time.
    Wait { until: DateTime<Utc> },
    /// Rotate now.
    Rotate,
}

/// `failures` is how many rotation attempts failed in a row, the last at `last_failure`.
pub fn decide(
    policy: &RotationPolicy,
    start: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
    failures: u32,
    last_failure: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    let due = due_at(policy, start, end);
    let retry_at = last_failure.map(|at| at + backoff(failures));
    let earliest = match retry_at {
        Some(retry_at) => due.max(retry_at),
        None => due,
    };
    if now >= earliest {
        Decision::Rotate
    } else {
        Decision::Wait { until: earliest }
    }
}

/// The wait after `failures` failures in a row: 1 h, 2 h, 4 h ... at most 24 h.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::zero();
    }
    let hours = 1i64 << (failures - 1).min(5);
    Duration::hours(hours.min(24))
}

/// The wait after `failures` transient failures in a row (Microsoft throttling or
/// unavailable, answers lost): minutes, not hours: 1, 2, 4 ... at most 60 min.
pub fn transient_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::zero();
    }
    let minutes = 1i64 << (failures - 1).min(6);
    Duration::minutes(minutes.min(60))
}

/// The lifetime to ask for: the configured one, within Microsoft's ceiling and the
/// tenant's policy maximum when one is known.
pub fn lifetime(policy: &RotationPolicy, policy_maximum: Option<Duration>) -> Duration {
    let mut lifetime = policy.lifetime.min(max_lifetime());
    if let Some(maximum) = policy_maximum {
        lifetime = lifetime.min(maximum);
    }
    lifetime.max(Duration::days(1))
}

/// The lifetimes to ask for, longest first: the one `lifetime` chooses, then shorter ones
/// for when the tenant's app-management policy refuses it (Graph says only that the
/// lifetime is too long, not what the limit is).
pub fn lifetime_ladder(policy: &RotationPolicy, policy_maximum: Option<Duration>) -> Vec<Duration> {
    let mut ladder = vec![lifetime(policy, policy_maximum)];
    for days in [365, 180, 90, 60, 30, 14, 7, 1] {
        let step = Duration::days(days);
        if ladder.last().is_some_and(|last| step < *last) {
            ladder.push(step);
        }
    }
    ladder
}

/// "rotation overdue" (when rotation is failing): expiry is nearer than the lead time.
pub fn overdue(lead_time: Duration, end: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    end - now < lead_time
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(n)
    }

    #[test]
    fn due_at_the_larger_of_the_lead_time_and_a_third_of_the_lifetime() {
        let policy = RotationPolicy::default();
        // 180 days: a third is 60 days, more than the 30-day lead.
        assert_eq!(due_at(&policy, Some(day(0)), day(180)), day(120));
        // 60 days: a third is 20 days, less than the lead: 30 days before expiry.
        assert_eq!(due_at(&policy, Some(day(0)), day(60)), day(30));
        // Two years: a third.
        assert_eq!(due_at(&policy, Some(day(0)), day(729)), day(486));
    }

    #[test]
    fn an_organization_may_have_its_own_lead_time() {
        let policy = RotationPolicy::default();
        let own = policy.for_organization(&super::super::OrganizationSettings {
            rotation_lead_time_secs: Some(86400 * 45),
            ..Default::default()
        });
        assert_eq!(own.lead_time, Duration::days(45));
        assert_eq!(own.lifetime, policy.lifetime);
        assert_eq!(
            policy.for_organization(&super::super::OrganizationSettings::default()),
            policy
        );
    }

    #[test]
    fn without_a_known_start_the_lead_time_decides() {
        let policy = RotationPolicy::default();
        assert_eq!(due_at(&policy, None, day(5)), day(-25));
    }

    #[test]
    fn a_secret_shorter_than_the_lead_time_is_rotated_after_two_thirds() {
        let policy = RotationPolicy::default();
        assert_eq!(
            due_at(&policy, Some(day(0)), day(7)),
            day(0) + Duration::hours(112)
        );
        assert_eq!(due_at(&policy, Some(day(0)), day(30)), day(20));
    }

    #[test]
    fn the_lifetime_ladder_steps_down_from_the_chosen_lifetime() {
        let policy = RotationPolicy::default();
        let days = |ladder: Vec<Duration>| ladder.iter().map(|d| d.num_days()).collect::<Vec<_>>();
        assert_eq!(
            days(lifetime_ladder(&policy, None)),
            [180, 90, 60, 30, 14, 7, 1]
        );
        assert_eq!(
            days(lifetime_ladder(&policy, Some(Duration::days(45)))),
            [45, 30, 14, 7, 1]
        );
    }

    #[test]
    fn decide_waits_until_due_and_backs_off_after_failures() {
        let policy = RotationPolicy::default();
        assert_eq!(
            decide(&policy, Some(day(0)), day(180), 0, None, day(100)),
            Decision::Wait { until: day(120) }
        );
        assert_eq!(
            decide(&policy, Some(day(0)), day(180), 0, None, day(120)),
            Decision::Rotate
        );
        let failed_at = day(121);
        assert_eq!(
            decide(
                &policy,
                Some(day(0)),
                day(180),
                1,
                Some(failed_at),
                failed_at + Duration::minutes(30)
            ),
            Decision::Wait {
                until: failed_at + Duration::hours(1)
            }
        );
        assert_eq!(
            decide(
                &policy,
                Some(day(0)),
                day(180),
                3,
                Some(failed_at),
                failed_at + Duration::hours(4)
            ),
            Decision::Rotate
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_day() {
        let hours: Vec<i64> = (0..8).map(|n| backoff(n).num_hours()).collect();
        assert_eq!(hours, [0, 1, 2, 4, 8, 16, 24, 24]);
    }

    #[test]
    fn lifetimes_are_clamped() {
        let policy = RotationPolicy {
            lead_time: Duration::days(30),
            lifetime: Duration::days(1000),
        };
        assert_eq!(lifetime(&policy, None), Duration::days(730));
        assert_eq!(
            lifetime(&policy, Some(Duration::days(90))),
            Duration::days(90)
        );
        assert_eq!(
            lifetime(&RotationPolicy::default(), None),
            Duration::days(180)
        );
    }

    #[test]
    fn overdue_inside_the_lead_time() {
        let lead_time = RotationPolicy::default().lead_time;
        assert!(!overdue(lead_time, day(40), day(0)));
        assert!(
            !overdue(lead_time, day(30), day(0)),
            "exactly the lead time left"
        );
        assert!(overdue(lead_time, day(29), day(0)));
    }

    #[test]
    fn transient_failures_back_off_in_minutes() {
        let waits: Vec<i64> = (0..9).map(|n| transient_backoff(n).num_minutes()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(transient_backoff(3) < backoff(1));
    }
}
