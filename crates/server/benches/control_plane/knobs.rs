//! The bench's knobs: environment variables with defaults sized so that the whole run takes a
//! few minutes on two cores.

use std::time::Duration;

use anyhow::{Context, bail};

/// How the test kit's PostgreSQL clusters run (`molecule_testkit::PgCluster`).
pub const THROWAWAY: &str =
    "a throwaway local cluster (fsync, full_page_writes and synchronous_commit off)";

/// A database the sections run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on `TEST_DATABASE_URL`, or on a throwaway cluster.
    Postgres,
}

impl Database {
    /// The name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres => "PostgreSQL",
        }
    }

    /// The store backend of a fresh test database of this kind.
    pub fn backend(self) -> molecule_store::Backend {
        match self {
            Database::Sqlite => molecule_store::Backend::Sqlite,
            Database::Postgres => molecule_store::Backend::Postgres,
        }
    }
}

/// A part of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// A2A round trips: direct, nginx, the proxy with two kinds of callers.
    A2a,
    /// Heartbeats from many registered agents.
    Heartbeats,
    /// Enqueue to a full agent, then drain.
    Queue,
    /// The server binary's resident memory, idle and with many workspaces.
    Rss,
}

impl Section {
    const ALL: [Section; 4] = [
        Section::A2a,
        Section::Heartbeats,
        Section::Queue,
        Section::Rss,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::A2a => "a2a",
            Section::Heartbeats => "heartbeats",
            Section::Queue => "queue",
            Section::Rss => "rss",
        }
    }
}

/// Concurrency and duration of a closed-loop load.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Concurrent clients, each sending one request after the other.
    pub clients: usize,
    /// Requests before this are not counted.
    pub warmup: Duration,
    /// The counted window.
    pub measured: Duration,
}

/// Every knob of one run.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Which sections run (`BENCH_SECTIONS`, comma-separated; default all).
    pub sections: Vec<Section>,
    /// Which databases (`BENCH_DATABASES`: `sqlite,postgres`).
    pub databases: Vec<Database>,
    /// A2A load (`BENCH_CLIENTS` 16, `BENCH_WARMUP_SECONDS` 1, `BENCH_SECONDS` 5).
    pub a2a: Timing,
    /// Heartbeat load (`BENCH_HEARTBEAT_CLIENTS` 64, same warm-up and window).
    pub heartbeats: Timing,
    /// Simulated agents that heartbeat (`BENCH_AGENTS` 1000).
    pub agents: usize,
    /// Messages queued for a full agent, then drained (`BENCH_QUEUE_MESSAGES` 2000).
    pub queue_messages: usize,
    /// Workspaces created and registered on the binary for the RSS reading
    /// (`BENCH_RSS_WORKSPACES` 10000).
    pub rss_workspaces: usize,
    /// Clients that create and register workspaces (`BENCH_SETUP_CLIENTS` 16).
    pub setup_clients: usize,
}

impl Knobs {
    /// The knobs from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let warmup = Duration::from_secs(num("BENCH_WARMUP_SECONDS", 1)?);
        let measured = Duration::from_secs(num("BENCH_SECONDS", 5)?.max(1));
        let timing = |clients: u64| -> anyhow::Result<Timing> {
            Ok(Timing {
                clients: usize::try_from(clients.max(1))?,
                warmup,
                measured,
            })
        };
        Ok(Knobs {
            sections: list("BENCH_SECTIONS", &Section::ALL, Section::name)?,
            databases: list(
                "BENCH_DATABASES",
                &[Database::Sqlite, Database::Postgres],
                |d| match d {
                    Database::Sqlite => "sqlite",
                    Database::Postgres => "postgres",
                },
            )?,
            a2a: timing(num("BENCH_CLIENTS", 16)?)?,
            heartbeats: timing(num("BENCH_HEARTBEAT_CLIENTS", 64)?)?,
            agents: usize::try_from(num("BENCH_AGENTS", 1000)?.max(1))?,
            queue_messages: usize::try_from(num("BENCH_QUEUE_MESSAGES", 2000)?.max(1))?,
            rss_workspaces: usize::try_from(num("BENCH_RSS_WORKSPACES", 10_000)?)?,
            setup_clients: usize::try_from(num("BENCH_SETUP_CLIENTS", 16)?.max(1))?,
        })
    }

    /// The load in one line, for the table's heading.
    pub fn describe(&self) -> String {
        // `cargo xtask bench` says which PostgreSQL it handed over in `BENCH_POSTGRES`.
        let postgres = match (
            std::env::var("BENCH_POSTGRES"),
            std::env::var("TEST_DATABASE_URL"),
        ) {
            (Ok(said), _) if !said.trim().is_empty() => format!("PostgreSQL: {said}"),
            (_, Ok(url)) if !url.trim().is_empty() => "PostgreSQL: TEST_DATABASE_URL".to_owned(),
            _ => format!("PostgreSQL: {THROWAWAY}"),
        };
        format!(
            "A2A: {} clients, {} s measured after {} s warm-up; heartbeats: {} agents, {} \
             clients, same window; queue: {} messages, {} clients; RSS: {} workspaces; \
             setup: {} clients; in-process router in strict mode, binary in dev mode; \
             {postgres}",
            self.a2a.clients,
            self.a2a.measured.as_secs(),
            self.a2a.warmup.as_secs(),
            self.agents,
            self.heartbeats.clients,
            self.queue_messages,
            self.a2a.clients,
            self.rss_workspaces,
            self.setup_clients,
        )
    }

    /// Whether `section` runs.
    pub fn runs(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }
}

/// A whole number from the environment, or `default`.
fn num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        _ => Ok(default),
    }
}

/// A comma-separated selection from `all` by name, or all of them.
fn list<T: Copy + PartialEq>(
    name: &str,
    all: &[T],
    name_of: impl Fn(T) -> &'static str,
) -> anyhow::Result<Vec<T>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(all.to_vec());
    };
    if text.trim().is_empty() {
        return Ok(all.to_vec());
    }
    let mut chosen = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let Some(item) = all.iter().copied().find(|t| name_of(*t) == word) else {
            let known: Vec<_> = all.iter().map(|t| name_of(*t)).collect();
            bail!("{name}: unknown {word:?}; known: {}", known.join(", "));
        };
        if !chosen.contains(&item) {
            chosen.push(item);
        }
    }
    Ok(chosen)
}
