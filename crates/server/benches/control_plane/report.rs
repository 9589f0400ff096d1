//! The one table the run prints (Markdown, so it can go into the README as is), with the
//! machine and the date above it.

use std::time::Duration;

use crate::load::Outcome;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    measurement: String,
    database: &'static str,
    value: String,
    percentiles: Option<[Duration; 3]>,
    errors: Option<usize>,
    goal: String,
}

impl Row {
    /// A rate with the latency percentiles and errors of `outcome` (`unit`: "req/s", …).
    pub fn load(
        measurement: impl Into<String>,
        database: &'static str,
        outcome: &Outcome,
        unit: &str,
    ) -> Row {
        Row {
            measurement: measurement.into(),
            database,
            value: format!("{:.0} {unit}", outcome.per_second()),
            percentiles: Some([50.0, 95.0, 99.0].map(|p| outcome.percentile(p))),
            errors: Some(outcome.errors),
            goal: String::new(),
        }
    }

    /// A single value.
    pub fn value(measurement: impl Into<String>, database: &'static str, value: String) -> Row {
        Row {
            measurement: measurement.into(),
            database,
            value,
            percentiles: None,
            errors: None,
            goal: String::new(),
        }
    }

    /// With errors counted.
    pub fn errors(mut self, errors: usize) -> Row {
        self.errors = Some(errors);
        self
    }

    /// With what the goal asks and whether it was met.
    pub fn goal(mut self, goal: impl Into<String>) -> Row {
        self.goal = goal.into();
        self
    }
}

/// "met" or "MISSED".
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Milliseconds with two decimals.
pub fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The rows of the run, printed at the end.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    load_before: String,
}

impl Report {
    /// An empty report; notes the load average before anything runs.
    pub fn new() -> Report {
        Report {
            load_before: load_average(),
            ..Report::default()
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Adds a line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Prints the heading, the table and the notes to stdout.
    pub fn print(&self, settings: &str) {
        println!();
        println!(
            "molecule-rs control-plane bench, {} UTC, {} CPU(s) ({}), {} RAM, load average before {} / after {}",
            now(),
            std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model(),
            memory_total(),
            self.load_before,
            load_average(),
        );
        println!("{settings}");
        println!();
        println!("| measurement | database | rate / value | p50 | p95 | p99 | errors | goal |");
        println!("|---|---|---:|---:|---:|---:|---:|---|");
        for r in &self.rows {
            let [p50, p95, p99] = r
                .percentiles
                .map_or_else(|| ["".into(), "".into(), "".into()], |p| p.map(millis));
            let errors = r.errors.map_or_else(String::new, |e| e.to_string());
            println!(
                "| {} | {} | {} | {p50} | {p95} | {p99} | {errors} | {} |",
                r.measurement, r.database, r.value, r.goal
            );
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
    }
}

/// The date and time now, `YYYY-MM-DD HH:MM`.
fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The 1-minute load average from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The CPU's model name from `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `MemTotal` from `/proc/meminfo`, in GiB.
fn memory_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or_else(
            || "?".into(),
            |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
        )
}
