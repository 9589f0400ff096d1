//! Tracing setup: human-readable or JSON lines on stderr, filtered by `RUST_LOG` (default
//! `info`), and, when [`crate::telemetry`] is on, spans exported over OTLP (at info level and
//! above, whatever `RUST_LOG` keeps for the log).

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;
use crate::telemetry::Telemetry;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat, telemetry: Option<&Telemetry>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Human => Box::new(lines.with_filter(filter)),
        LogFormat::Json => Box::new(lines.json().with_filter(filter)),
    };
    let spans = telemetry.map(|t| t.layer().with_filter(LevelFilter::INFO));
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .try_init();
}
