//! Cron expressions in a time zone (spec: scheduler-channels-mcp §3), parsed and searched by
//! the `croner` crate over `jiff` time zones.
//!
//! The accepted syntax is robfig/cron v3's "standard" set: five fields (minute, hour,
//! day-of-month, month, day-of-week), `*`, lists, ranges, steps, `?` as `*` in the day fields,
//! month and day names in any case, the Vixie rule (both day fields restricted: either one
//! matching is enough), and a leading `TZ=<zone>` / `CRON_TZ=<zone>` that overrides the
//! schedule's zone. There is no seconds field, no `@hourly`-style descriptor and no day-of-week
//! `7`. Beyond robfig, croner's `L`, `W` and `#` modifiers are accepted.
//!
//! The next run is the first matching minute strictly after the reference time, on the wall
//! clock of the zone, stored in UTC. Across a DST change (croner's OCPS rules): a wall-clock
//! time that does not exist (spring forward) runs at the first instant after the gap; a time
//! that happens twice (fall back) runs once, at its first occurrence, while hourly or finer
//! patterns run in both passes of the repeated hour. An expression that does not fire within
//! [`HORIZON_YEARS`] years (`0 0 30 2 *`) is an error, never a zero time.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use time::OffsetDateTime;

/// How far ahead an expression must fire at least once.
pub const HORIZON_YEARS: i64 = 5;

/// Why an expression or zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The zone is not an IANA name the tz database knows.
    #[error("invalid timezone: {0}")]
    Timezone(String),
    /// The expression does not parse.
    #[error("invalid cron expression: {0}")]
    Expression(String),
    /// The expression never fires within the horizon.
    #[error("cron expression never fires within {HORIZON_YEARS} years")]
    Never,
}

/// A parsed expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    zone: TimeZone,
}

/// The zone named `name` (`""` is UTC).
pub fn zone(name: &str) -> Result<TimeZone, CronError> {
    let name = name.trim();
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| CronError::Timezone(name.to_owned()))
}

impl CronSpec {
    /// Parses `expr` in the zone `timezone` (a `TZ=` prefix in `expr` wins).
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, CronError> {
        let mut zone = zone(timezone)?;
        let mut expr = expr.trim();
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = expr.strip_prefix(prefix) {
                let (name, pattern) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| CronError::Expression("missing fields after TZ=".into()))?;
                zone = TimeZone::get(name).map_err(|_| CronError::Timezone(name.to_owned()))?;
                expr = pattern.trim();
                break;
            }
        }
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::Expression(format!(
                "expected 5 fields, found {}",
                fields.len()
            )));
        }
        if fields[4].split(',').any(names_day_seven) {
            return Err(CronError::Expression(
                "day of week 7 is out of range".into(),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(&fields.join(" "))
            .map_err(|e| CronError::Expression(e.to_string()))?;
        Ok(CronSpec { cron, zone })
    }

    /// The first matching minute strictly after `after`, or `None` when there is none within
    /// [`HORIZON_YEARS`].
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = to_timestamp(after)?.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        let next = from_timestamp(next.timestamp())?;
        (next - after <= time::Duration::days(366 * HORIZON_YEARS)).then_some(next)
    }
}

/// Whether one day-of-week list item names the day `7` (robfig accepts 0–6 only).
fn names_day_seven(item: &str) -> bool {
    let days = item.split('/').next().unwrap_or("");
    let days = days.split('#').next().unwrap_or("");
    days.split('-')
        .any(|d| d.trim_start_matches('+').trim_end_matches('L') == "7")
}

/// The next run of `expr` in `timezone` after `after`: the validation of every write.
pub fn next_run(
    expr: &str,
    timezone: &str,
    after: OffsetDateTime,
) -> Result<OffsetDateTime, CronError> {
    CronSpec::parse(expr, timezone)?
        .next_after(after)
        .ok_or(CronError::Never)
}

fn to_timestamp(t: OffsetDateTime) -> Option<Timestamp> {
    Timestamp::from_nanosecond(t.unix_timestamp_nanos()).ok()
}

fn from_timestamp(t: Timestamp) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).ok()
}

impl FromStr for CronSpec {
    type Err = CronError;

    /// An expression in UTC.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSpec::parse(s, "UTC")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, tz: &str, after: OffsetDateTime) -> OffsetDateTime {
        next_run(expr, tz, after).unwrap()
    }

    #[test]
    fn the_next_minute_is_strictly_after() {
        let t = datetime!(2026-01-05 10:00:00 UTC);
        assert_eq!(next("* * * * *", "", t), datetime!(2026-01-05 10:01:00 UTC));
        assert_eq!(
            next("*/15 * * * *", "UTC", datetime!(2026-01-05 10:00:30 UTC)),
            datetime!(2026-01-05 10:15:00 UTC)
        );
    }

    #[test]
    fn a_zone_moves_the_wall_clock() {
        // 09:00 in New York in January is 14:00 UTC.
        let t = datetime!(2026-01-05 12:00:00 UTC);
        assert_eq!(
            next("0 9 * * *", "America/New_York", t),
            datetime!(2026-01-05 14:00:00 UTC)
        );
        // A TZ= prefix wins over the schedule's zone.
        assert_eq!(
            next("TZ=Asia/Tokyo 0 9 * * *", "America/New_York", t),
            datetime!(2026-01-06 00:00:00 UTC)
        );
    }

    #[test]
    fn dom_and_dow_follow_the_vixie_or_rule_and_names_and_question_marks_parse() {
        // The 15th or any Monday: from Fri 2026-01-09, Monday the 12th comes first.
        let t = datetime!(2026-01-09 12:00:00 UTC);
        assert_eq!(
            next("0 0 15 * MON", "", t),
            datetime!(2026-01-12 00:00:00 UTC)
        );
        assert_eq!(
            next("0 0 ? jan mon", "", t),
            datetime!(2026-01-12 00:00:00 UTC)
        );
        assert_eq!(
            next("0/30 * * * *", "", t),
            datetime!(2026-01-09 12:30:00 UTC)
        );
    }

    #[test]
    fn what_robfig_refuses_is_refused() {
        let t = datetime!(2026-01-09 12:00:00 UTC);
        for bad in [
            "",
            "* * * *",
            "0 * * * * *",
            "@hourly",
            "0 0 * * 7",
            "0 0 * * 1-7",
            "61 * * * *",
            "nonsense",
        ] {
            assert!(
                matches!(next_run(bad, "UTC", t), Err(CronError::Expression(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            next_run("* * * * *", "Mars/Olympus", t),
            Err(CronError::Timezone("Mars/Olympus".into()))
        );
        assert_eq!(next_run("0 0 30 2 *", "UTC", t), Err(CronError::Never));
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_runs_when_the_gap_ends() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let before = datetime!(2026-03-08 06:00:00 UTC); // 01:00 EST
        assert_eq!(
            next("30 2 * * *", "America/New_York", before),
            datetime!(2026-03-08 07:00:00 UTC) // 03:00 EDT
        );
        // The next day it is back on 02:30 EDT.
        assert_eq!(
            next(
                "30 2 * * *",
                "America/New_York",
                datetime!(2026-03-08 07:00:00 UTC)
            ),
            datetime!(2026-03-09 06:30:00 UTC)
        );
        // 09:00 daily keeps its wall clock across the change (14:00 UTC before, 13:00 after).
        assert_eq!(
            next(
                "0 9 * * *",
                "America/New_York",
                datetime!(2026-03-07 15:00:00 UTC)
            ),
            datetime!(2026-03-08 13:00:00 UTC)
        );
    }

    #[test]
    fn a_time_in_the_fall_back_overlap_runs_once() {
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let spec = CronSpec::parse("30 1 * * *", "America/New_York").unwrap();
        let first = spec.next_after(datetime!(2026-11-01 04:00:00 UTC)).unwrap();
        assert_eq!(first, datetime!(2026-11-01 05:30:00 UTC)); // 01:30 EDT
        let second = spec.next_after(first).unwrap();
        assert_eq!(second, datetime!(2026-11-02 06:30:00 UTC)); // next day, 01:30 EST
        // An every-30-minutes pattern runs in both passes of the repeated hour.
        let spec = CronSpec::parse("*/30 * * * *", "America/New_York").unwrap();
        let mut t = datetime!(2026-11-01 05:00:00 UTC); // 01:00 EDT
        let mut runs = Vec::new();
        for _ in 0..4 {
            t = spec.next_after(t).unwrap();
            runs.push(t);
        }
        assert_eq!(
            runs,
            vec![
                datetime!(2026-11-01 05:30:00 UTC),
                datetime!(2026-11-01 06:00:00 UTC),
                datetime!(2026-11-01 06:30:00 UTC),
                datetime!(2026-11-01 07:00:00 UTC),
            ]
        );
    }
}
