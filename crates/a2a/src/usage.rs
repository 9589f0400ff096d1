//! Token usage reported in agents' answers (`result.usage`, else `usage`:
//! `{input_tokens, output_tokens}`), summed per workspace and UTC day off the hot path: the
//! proxy hands each sample to a bounded channel, and one background writer folds what is
//! waiting into one upsert per workspace (spec observability §1.21).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use molecule_domain::WorkspaceId;
use molecule_store::{Store, UsageDelta, day_start};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

/// The most tokens of one kind a single answer may add.
pub const MAX_TOKENS: i64 = 10_000_000;
/// USD per input token.
pub const INPUT_PRICE: f64 = 0.000_003;
/// USD per output token.
pub const OUTPUT_PRICE: f64 = 0.000_015;
/// Samples waiting for the writer; past that, samples are dropped (and logged) rather than
/// slowing the proxy.
const BUFFER: usize = 4096;

/// One answer's usage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The workspace that answered.
    pub workspace: WorkspaceId,
    /// Input tokens, clamped.
    pub input_tokens: i64,
    /// Output tokens, clamped.
    pub output_tokens: i64,
}

/// The usage an answer reports, if any: `result.usage`, else top-level `usage`; each count
/// clamped to `0..=MAX_TOKENS`; none when both are zero or absent.
pub fn usage_of(answer: &Value) -> Option<(i64, i64)> {
    let usage = answer
        .pointer("/result/usage")
        .filter(|u| u.is_object())
        .or_else(|| answer.get("usage"))?;
    let count = |key: &str| {
        usage
            .get(key)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
            .unwrap_or(0)
            .clamp(0, MAX_TOKENS)
    };
    let (input, output) = (count("input_tokens"), count("output_tokens"));
    (input > 0 || output > 0).then_some((input, output))
}

/// The channel between the proxy and the writer.
#[derive(Debug)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<Sample>,
    rx: Arc<Mutex<mpsc::Receiver<Sample>>>,
    started: AtomicBool,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        Recorder {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            started: AtomicBool::new(false),
        }
    }

    /// Queues a sample for the writer (started on first use); never waits.
    pub(crate) fn record(&self, store: &Store, sample: Sample) {
        if !self.started.swap(true, Ordering::AcqRel) {
            spawn_writer(store.clone(), Arc::clone(&self.rx));
        }
        if self.tx.try_send(sample).is_err() {
            tracing::warn!(workspace = %sample.workspace, "a2a: usage writer behind; a sample was dropped");
        }
    }
}

/// Runs the writer, restarting it after a panic.
fn spawn_writer(store: Store, rx: Arc<Mutex<mpsc::Receiver<Sample>>>) {
    tokio::spawn(async move {
        loop {
            let run = tokio::spawn(write_loop(store.clone(), Arc::clone(&rx)));
            match run.await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(error = %e, "a2a: usage writer stopped; restarting");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Takes what is waiting, folds it per workspace, writes one upsert each; ends when every
/// sender is gone.
async fn write_loop(store: Store, rx: Arc<Mutex<mpsc::Receiver<Sample>>>) {
    let mut rx = rx.lock().await;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, BUFFER).await > 0 {
        let mut sums: HashMap<WorkspaceId, UsageDelta> = HashMap::new();
        for s in batch.drain(..) {
            let d = sums.entry(s.workspace).or_default();
            d.input_tokens = d.input_tokens.saturating_add(s.input_tokens);
            d.output_tokens = d.output_tokens.saturating_add(s.output_tokens);
            d.calls = d.calls.saturating_add(1);
            d.cost_usd +=
                s.input_tokens as f64 * INPUT_PRICE + s.output_tokens as f64 * OUTPUT_PRICE;
        }
        let day = day_start(time::OffsetDateTime::now_utc());
        for (ws, delta) in sums {
            if let Err(e) = store.usage().add(ws, day, delta).await {
                tracing::warn!(workspace = %ws, error = %e, "a2a: cannot record token usage");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_read_from_the_result_then_the_top_level_and_clamped() {
        assert_eq!(
            usage_of(&json!({"result": {"usage": {"input_tokens": 10, "output_tokens": 5}}})),
            Some((10, 5))
        );
        assert_eq!(
            usage_of(&json!({"usage": {"input_tokens": 3}})),
            Some((3, 0))
        );
        assert_eq!(
            usage_of(&json!({"usage": {"input_tokens": -4, "output_tokens": 1e30}})),
            Some((0, MAX_TOKENS))
        );
        assert_eq!(usage_of(&json!({"usage": {"input_tokens": 0}})), None);
        assert_eq!(usage_of(&json!({"result": {"parts": []}})), None);
        assert_eq!(usage_of(&json!({"usage": "lots"})), None);
    }
}
