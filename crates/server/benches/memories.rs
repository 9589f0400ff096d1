//! The agent-memory benchmark (`cargo bench -p molecule-server --bench memories`).
//!
//! For each database (SQLite in a temp dir; PostgreSQL on `TEST_DATABASE_URL`, a fresh
//! database, or a throwaway cluster when `initdb` is on the `PATH`), it starts the real
//! router in process (dev mode, no backend), creates one workspace, and over real HTTP:
//!
//! - commits `BENCH_MEMORIES` (10 000) LOCAL memories of 12 words from a 400-word vocabulary
//!   with `BENCH_CLIENTS` (8) concurrent clients, and reports memories committed per second;
//! - recalls `BENCH_RECALLS` (500) times, one request after the other, with a one- or two-word
//!   full-text query (`?q=`, limit 50, ranked), and reports p50 / p99 / max latency;
//! - recalls the newest 50 without a query the same number of times.
//!
//! No assertion is made on speed; it prints one table.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use molecule_server::{AppState, HttpSettings, Security, router};
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

fn main() -> std::process::ExitCode {
    // `cargo bench` passes `--bench`; a test run of bench targets does nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return std::process::ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memories bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn env_num(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

struct Load {
    memories: usize,
    clients: usize,
    recalls: usize,
}

struct Outcome {
    backend: &'static str,
    commits_per_second: f64,
    search: Vec<Duration>,
    newest: Vec<Duration>,
}

fn run() -> anyhow::Result<()> {
    let load = Load {
        memories: env_num("BENCH_MEMORIES", 10_000)?,
        clients: env_num("BENCH_CLIENTS", 8)?.max(1),
        recalls: env_num("BENCH_RECALLS", 500)?.max(1),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut outcomes = Vec::new();
    for backend in ["sqlite", "postgres"] {
        eprintln!("{backend}: committing {} memories…", load.memories);
        outcomes.push(rt.block_on(bench_one(backend, &load))?);
    }
    println!(
        "\n{} memories in one workspace, {} committing clients, {} recalls each\n",
        load.memories, load.clients, load.recalls
    );
    println!("| database | commits/s | recall ?q= p50 | p99 | max | recall newest p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let (s50, s99, smax) = percentiles(&o.search);
        let (n50, n99, _) = percentiles(&o.newest);
        println!(
            "| {} | {:.0} | {s50:.2} ms | {s99:.2} ms | {smax:.2} ms | {n50:.2} ms | {n99:.2} ms |",
            o.backend, o.commits_per_second
        );
    }
    Ok(())
}

/// p50, p99 and max in milliseconds.
fn percentiles(samples: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
        ms.get(i).copied().unwrap_or(0.0)
    };
    (at(0.50), at(0.99), at(1.0))
}

/// A deterministic vocabulary of 400 made-up words and a small generator over it.
struct Words {
    vocabulary: Vec<String>,
    state: u64,
}

impl Words {
    fn new(seed: u64) -> Self {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "tor", "ven", "sa", "qui", "den", "ru", "pho", "lin", "gar", "zu",
            "bel", "nor", "tek", "ras", "mon", "dil", "ux",
        ];
        let vocabulary = (0..400)
            .map(|i| {
                format!(
                    "{}{}{}",
                    SYLLABLES[i % 20],
                    SYLLABLES[(i / 20) % 20],
                    SYLLABLES[(i * 7 + 3) % 20]
                )
            })
            .collect();
        Self {
            vocabulary,
            state: seed,
        }
    }

    fn next(&mut self) -> &str {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let n = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // Skewed towards the first words, as natural text is.
        let r = (n >> 33) % 400;
        let i = ((r * r) / 400) as usize;
        &self.vocabulary[i]
    }

    fn sentence(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| self.next().to_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

async fn bench_one(backend: &'static str, load: &Load) -> anyhow::Result<Outcome> {
    let db = match backend {
        "sqlite" => TestStore::sqlite().await,
        _ => TestStore::postgres().await,
    };
    let http = HttpSettings {
        rate_limit: u32::MAX,
        ..HttpSettings::default()
    };
    let state = AppState::with_backend(
        (*db).clone(),
        Security::dev(),
        None,
        "http://127.0.0.1".into(),
    )
    .with_http(http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(molecule_server::http_server::serve(
        listener,
        router(state),
        molecule_server::http_server::ServerSettings::default(),
        std::future::pending(),
        Duration::ZERO,
    ));
    let client = reqwest::Client::new();
    let reply = client
        .post(format!("{base}/workspaces"))
        .json(&json!({"name": "bench-memories", "runtime": "external"}))
        .send()
        .await?;
    let body: Value = reply.json().await?;
    let id = body["id"].as_str().context("no workspace id")?.to_owned();
    let memories_url = format!("{base}/workspaces/{id}/memories");

    // Commits.
    let started = Instant::now();
    let per_client = load.memories.div_ceil(load.clients);
    let mut tasks = Vec::new();
    for c in 0..load.clients {
        let client = client.clone();
        let url = memories_url.clone();
        let count = per_client.min(load.memories.saturating_sub(c * per_client));
        tasks.push(tokio::spawn(async move {
            let mut words = Words::new(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            for _ in 0..count {
                let reply = client
                    .post(&url)
                    .json(&json!({"content": words.sentence(12), "scope": "LOCAL"}))
                    .send()
                    .await?;
                if reply.status() != 201 {
                    bail!("commit answered {}", reply.status());
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let commits_per_second = load.memories as f64 / started.elapsed().as_secs_f64();

    // Recalls.
    let mut words = Words::new(42);
    let mut search = Vec::with_capacity(load.recalls);
    let mut newest = Vec::with_capacity(load.recalls);
    for i in 0..load.recalls {
        let q = if i % 2 == 0 {
            words.next().to_owned()
        } else {
            let first = words.next().to_owned();
            format!("{first} {}", words.next())
        };
        let t = Instant::now();
        let reply = client
            .get(&memories_url)
            .query(&[("q", q.as_str())])
            .send()
            .await?;
        if reply.status() != 200 {
            bail!("recall answered {}", reply.status());
        }
        let _: Value = reply.json().await?;
        search.push(t.elapsed());
        let t = Instant::now();
        let reply = client.get(&memories_url).send().await?;
        let items: Value = reply.json().await?;
        newest.push(t.elapsed());
        if items.as_array().map(Vec::len) != Some(50.min(load.memories)) {
            bail!("recall without a query answered {} items", items);
        }
    }
    server.abort();
    Ok(Outcome {
        backend,
        commits_per_second,
        search,
        newest,
    })
}
