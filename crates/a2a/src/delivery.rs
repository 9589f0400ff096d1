//! Delivering a normalised message to the target's URL and turning what happened into the
//! caller's answer, the activity row and the liveness consequences (a2a.md §1.2.4–1.2.8).

use std::sync::Arc;
use std::time::Duration;

use molecule_domain::{EventType, WorkspaceStatus};
use molecule_store::{NewActivity, Workspace};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::caller::Caller;
use crate::dispatch::{self, Failure, Limits, Outcome};
use crate::normalize::Normalized;
use crate::reply::{Reply, Stream, is_v1_method};
use crate::shared::Shared;
use crate::target::{display_name, receive_row, summary};
use crate::usage::{Sample, usage_of};

/// Chunks of a relayed stream waiting for a slow caller before the relay waits too.
const STREAM_BUFFER: usize = 32;

/// Answers from an agent that mean its origin may be dead: probe the compute.
const DEAD_ORIGIN: [u16; 7] = [502, 503, 504, 521, 522, 523, 524];

/// What a delivery means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The agent answered 2xx: delivered.
    Delivered,
    /// The agent did not take it (busy, reset, or it answered 429): worth queueing.
    NotTaken,
    /// Sent, but no answer came in time: delivered as far as the platform can tell.
    Unanswered,
    /// Anything else: not delivered, not worth queueing.
    Failed,
}

/// A delivery's answer and verdict.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// What the caller gets.
    pub(crate) reply: Reply,
    /// What it means for the message.
    pub(crate) verdict: Verdict,
}

impl Delivery {
    fn new(reply: Reply, verdict: Verdict) -> Self {
        Delivery { reply, verdict }
    }
}

/// Resolves the target's URL and delivers `normalized` there; with `log`, writes the
/// activity row of what happened. One `a2a.deliver` span (a client span in traces).
#[tracing::instrument(
    name = "a2a.deliver",
    skip_all,
    fields(otel.kind = "client", workspace = %ws.id, rpc.method = %normalized.method)
)]
pub(crate) async fn deliver(
    shared: &Arc<Shared>,
    ws: &Workspace,
    caller: &Caller,
    normalized: &Normalized,
    deadline: Option<Duration>,
    log: bool,
) -> Delivery {
    let Some(url) = ws.url.clone().filter(|u| !u.is_empty()) else {
        if matches!(
            ws.status,
            WorkspaceStatus::Hibernated | WorkspaceStatus::Hibernating
        ) {
            shared.platform.wake(ws.id).await;
            return Delivery::new(Reply::waking(), Verdict::Failed);
        }
        let reply = Reply::json(
            503,
            json!({ "error": "workspace has no URL", "status": ws.status }),
        );
        return Delivery::new(reply, Verdict::Failed);
    };
    let (url, policy) = shared.settings.target(ws, &url);
    if let Err(e) = policy.check(&url).await {
        tracing::warn!(workspace = %ws.id, error = %e, "a2a: target URL refused by the address policy");
        return Delivery::new(
            Reply::error(502, "workspace URL is not publicly routable"),
            Verdict::Failed,
        );
    }
    shared.store.workspaces().touch_activity(ws.id);
    let limits = Limits {
        idle: shared.idle_timeout_for(ws.id),
        // A deadline beyond what an `Instant` can hold is no deadline (never a panic).
        deadline: deadline.and_then(|d| Instant::now().checked_add(d)),
    };
    let body = serde_json::to_vec(&normalized.body).unwrap_or_default();
    let events = shared.platform.watch(ws.id);
    let started = Instant::now();
    // An A2A 1.0 method is only served as such when the request says so.
    let version = is_v1_method(&normalized.method).then_some("1.0");
    let headers = shared.platform.outbound_headers();
    let request = dispatch::Request {
        url: &url,
        body,
        version,
        headers: &headers,
    };
    let client = shared.client_for(&policy);
    let outcome = dispatch::deliver(client, request, limits, events).await;
    let attempt = Attempt {
        shared,
        ws,
        caller,
        normalized,
        log,
    };
    match outcome {
        Outcome::Streaming {
            status,
            content_type,
            response,
            events,
        } => {
            let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
            let (shared, ws, caller, normalized) = (
                Arc::clone(shared),
                ws.clone(),
                caller.clone(),
                normalized.clone(),
            );
            tokio::spawn(async move {
                let relayed = dispatch::relay(response, limits, events, tx, started).await;
                if log {
                    let attempt = Attempt {
                        shared: &shared,
                        ws: &ws,
                        caller: &caller,
                        normalized: &normalized,
                        log,
                    };
                    attempt.stream_ended(status, relayed).await;
                }
            });
            Delivery::new(
                Reply::stream(status, Stream::new(content_type, rx)),
                Verdict::Delivered,
            )
        }
        Outcome::Answered {
            status,
            body,
            elapsed,
        } => attempt.answered(status, body, elapsed).await,
        Outcome::BodyFailed { status, elapsed } => attempt.body_failed(status, elapsed).await,
        Outcome::Failed { failure, elapsed } => attempt.failed(failure, elapsed).await,
    }
}

/// One message sent to a target: what turning its outcome into an answer needs.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    shared: &'a Shared,
    ws: &'a Workspace,
    caller: &'a Caller,
    normalized: &'a Normalized,
    /// Whether to write activity rows and broadcasts.
    log: bool,
}

impl Attempt<'_> {
    /// The `a2a_receive` row of this message with `title` as its summary, taking `elapsed`.
    fn row(&self, title: String, elapsed: Duration) -> NewActivity {
        NewActivity {
            duration_ms: Some(millis(elapsed)),
            ..receive_row(self.ws, self.caller, self.normalized, title)
        }
    }

    /// The agent answered in full.
    async fn answered(self, status: u16, body: Vec<u8>, elapsed: Duration) -> Delivery {
        let (shared, ws) = (self.shared, self.ws);
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if self.log {
            let tool_trace = parsed
                .as_ref()
                .and_then(|v| v.pointer("/result/metadata/tool_trace"))
                .filter(|t| !t.is_null())
                .cloned();
            let row = NewActivity {
                response_body: parsed.clone(),
                tool_trace,
                status: if status < 400 { "ok" } else { "error" }.into(),
                ..self.row(summary(self.normalized, ws), elapsed)
            };
            shared.record_quietly(row).await;
            if status < 400 {
                self.answer_heard(|| {
                    json!({
                        "response_body": parsed.clone().unwrap_or(Value::Null),
                        "method": self.normalized.method,
                        "duration_ms": millis(elapsed),
                    })
                });
            }
        }
        if (200..300).contains(&status) {
            if let Some((input_tokens, output_tokens)) = parsed.as_ref().and_then(usage_of) {
                let sample = Sample {
                    workspace: ws.id,
                    input_tokens,
                    output_tokens,
                };
                shared.usage.record(&shared.store, sample);
            }
            return Delivery::new(Reply::agent(status, body), Verdict::Delivered);
        }
        if status == 429 {
            return Delivery::new(Reply::busy(), Verdict::NotTaken);
        }
        if DEAD_ORIGIN.contains(&status) && shared.platform.is_dead(ws).await {
            shared.platform.declare_dead(ws).await;
            return Delivery::new(Reply::restarting(), Verdict::Failed);
        }
        Delivery::new(agent_error(status, parsed), Verdict::Failed)
    }

    /// The headers arrived (`status`) but the body could not be read.
    async fn body_failed(self, status: u16, elapsed: Duration) -> Delivery {
        let confirmed = (200..400).contains(&status);
        if self.log && confirmed {
            let row = self.row(summary(self.normalized, self.ws), elapsed);
            self.shared.record_quietly(row).await;
        }
        let reply = Reply::json(
            502,
            json!({ "error": "failed to read agent response", "delivery_confirmed": confirmed }),
        );
        let verdict = if confirmed {
            Verdict::Unanswered
        } else {
            Verdict::Failed
        };
        Delivery::new(reply, verdict)
    }

    /// The one activity row of a relayed stream, written when it ends: the last event's JSON
    /// is its answer (the final status or result), with the event count.
    async fn stream_ended(self, status: u16, relayed: dispatch::Relayed) {
        let text = String::from_utf8_lossy(&relayed.captured);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .collect();
        let last: Option<Value> = data.iter().rev().find_map(|d| serde_json::from_str(d).ok());
        let cut = relayed.cut.as_ref();
        let title = format!(
            "{} (stream, {} events)",
            summary(self.normalized, self.ws),
            data.len()
        );
        let row = NewActivity {
            response_body: last.clone(),
            status: if cut.is_none() { "ok" } else { "error" }.into(),
            error_detail: cut.map(|f| f.describe().to_owned()),
            ..self.row(title, relayed.elapsed)
        };
        self.shared.record_quietly(row).await;
        if cut.is_none() {
            self.answer_heard(|| {
                json!({
                    "response_body": last.unwrap_or(Value::Null),
                    "method": self.normalized.method,
                    "duration_ms": millis(relayed.elapsed),
                    "status": status,
                })
            });
        }
    }

    /// After a successful answer: the user's canvas hears it (`A2A_RESPONSE` with the
    /// payload, built only then), a calling workspace's last outbound time moves.
    fn answer_heard(self, payload: impl FnOnce() -> Value) {
        match self.caller {
            Caller::User => {
                self.shared
                    .platform
                    .broadcast(EventType::A2aResponse, self.ws.id, payload());
            }
            Caller::Workspace(id) => self.shared.store.workspaces().touch_outbound(*id),
            Caller::System(_) => {}
        }
    }

    /// No answer came.
    async fn failed(self, failure: Failure, elapsed: Duration) -> Delivery {
        let (shared, ws) = (self.shared, self.ws);
        if failure == Failure::BadRequest {
            return Delivery::new(
                Reply::error(500, "failed to create proxy request"),
                Verdict::Failed,
            );
        }
        let dead = failure != Failure::NoAnswer && shared.platform.is_dead(ws).await;
        if self.log {
            let title = format!(
                "A2A request to {} failed: {}",
                display_name(ws),
                failure.describe()
            );
            let row = NewActivity {
                status: "error".into(),
                error_detail: Some(failure.describe().into()),
                ..self.row(title, elapsed)
            };
            shared.record_quietly(row).await;
        }
        if dead {
            shared.platform.declare_dead(ws).await;
            return Delivery::new(Reply::restarting(), Verdict::Failed);
        }
        match failure {
            Failure::NotTaken => Delivery::new(Reply::busy(), Verdict::NotTaken),
            Failure::NoAnswer => Delivery::new(
                Reply::json(
                    504,
                    json!({
                        "error": "workspace agent accepted the request but did not answer in time",
                        "delivery_confirmed": true,
                    }),
                ),
                Verdict::Unanswered,
            ),
            Failure::Unreachable | Failure::BadRequest => Delivery::new(
                Reply::error(502, "failed to reach workspace agent"),
                Verdict::Failed,
            ),
        }
    }
}

/// The answer for an agent's non-2xx reply: its own body when that already carries a string
/// `error`, else `{"error": <reason phrase>}` with the agent's JSON kept under `agent_response`.
fn agent_error(status: u16, parsed: Option<Value>) -> Reply {
    if let Some(v) = &parsed
        && v.get("error").is_some_and(Value::is_string)
    {
        return Reply::json(status, v.clone());
    }
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("upstream error");
    let mut body = json!({ "error": reason });
    if let Some(v) = parsed {
        body["agent_response"] = v;
    }
    Reply::json(status, body)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
