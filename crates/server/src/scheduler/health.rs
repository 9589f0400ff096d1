//! Schedule health for operators (`GET /admin/schedules/health`, spec §4), with the
//! reference's inaccuracies fixed (defect 21): staleness is measured from the run expected
//! after the last one, so a weekday schedule is not stale over a weekend; disabled schedules
//! are left out; a schedule the scheduler marked `stale` (empty replies) is reported stale.

use molecule_store::Schedule;
use time::OffsetDateTime;

use super::cron::CronSpec;

/// A schedule's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `never_run`, `stale` or `ok`.
    pub status: &'static str,
    /// Twice the interval between the run expected after the last one and the run after
    /// that; 0 when the expression or zone does not parse (never stale by time then).
    pub stale_threshold_seconds: i64,
}

/// The health of `s` at `now`. A schedule is stale when the run expected after its last run
/// is overdue by more than one interval (the grace period), or when the scheduler marked it
/// `stale`.
pub fn of(s: &Schedule, now: OffsetDateTime) -> Health {
    let spec = CronSpec::parse(&s.cron_expr, &s.timezone).ok();
    let Some(last) = s.last_run_at else {
        let threshold = spec
            .as_ref()
            .and_then(|spec| interval_after(spec, now))
            .map_or(0, |gap| gap * 2);
        return Health {
            status: "never_run",
            stale_threshold_seconds: threshold,
        };
    };
    let expected = spec.as_ref().and_then(|spec| spec.next_after(last));
    let gap = match (&spec, expected) {
        (Some(spec), Some(expected)) => spec
            .next_after(expected)
            .map(|after| (after - expected).whole_seconds()),
        _ => None,
    };
    let threshold = gap.map_or(0, |g| g * 2);
    let overdue = match (expected, gap) {
        (Some(expected), Some(gap)) if gap > 0 => (now - expected).whole_seconds() > gap,
        _ => false,
    };
    Health {
        status: if overdue || s.last_status == "stale" {
            "stale"
        } else {
            "ok"
        },
        stale_threshold_seconds: threshold,
    }
}

/// The gap between the next two runs after `t`, in seconds.
fn interval_after(spec: &CronSpec, t: OffsetDateTime) -> Option<i64> {
    let first = spec.next_after(t)?;
    let second = spec.next_after(first)?;
    Some((second - first).whole_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn schedule(cron: &str, last: Option<OffsetDateTime>) -> Schedule {
        let t = datetime!(2026-01-01 00:00:00 UTC);
        Schedule {
            id: uuid::Uuid::nil(),
            workspace_id: molecule_domain::WorkspaceId::new(),
            name: "s".into(),
            cron_expr: cron.into(),
            timezone: "UTC".into(),
            prompt: "p".into(),
            enabled: true,
            last_run_at: last,
            next_run_at: None,
            run_count: 0,
            last_status: String::new(),
            last_error: String::new(),
            source: "runtime".into(),
            consecutive_empty_runs: 0,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn staleness_counts_from_the_run_expected_after_the_last_one() {
        // Weekdays at 09:00; last run Friday 2026-01-09. Saturday and Sunday are fine, Monday
        // 10:00 too (within one interval of grace); Tuesday 09:01 without a run is stale.
        let s = schedule("0 9 * * 1-5", Some(datetime!(2026-01-09 09:00:00 UTC)));
        assert_eq!(of(&s, datetime!(2026-01-10 12:00:00 UTC)).status, "ok");
        assert_eq!(of(&s, datetime!(2026-01-12 10:00:00 UTC)).status, "ok");
        assert_eq!(of(&s, datetime!(2026-01-13 09:01:00 UTC)).status, "stale");
        assert_eq!(
            of(&s, datetime!(2026-01-10 12:00:00 UTC)).stale_threshold_seconds,
            172_800
        );
        assert_eq!(
            of(
                &schedule("*/5 * * * *", None),
                datetime!(2026-01-10 12:00:00 UTC)
            ),
            Health {
                status: "never_run",
                stale_threshold_seconds: 600
            }
        );
        let bad = schedule("nonsense", Some(datetime!(2020-01-01 00:00:00 UTC)));
        assert_eq!(
            of(&bad, datetime!(2026-01-10 12:00:00 UTC)),
            Health {
                status: "ok",
                stale_threshold_seconds: 0
            }
        );
    }
}
