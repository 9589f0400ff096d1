//! Delivering a normalised message to the target's URL and turning what happened into the
//! caller's answer, the activity row and the liveness consequences (a2a.md §1.2.4–1.2.8).

use std::time::Duration;

use molecule_domain::{EventType, Runtime, WorkspaceStatus};
use molecule_store::Workspace;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::caller::Caller;
use crate::dispatch::{self, Failure, Limits, Outcome};
use crate::log;
use crate::normalize::Normalized;
use crate::proxy::{Proxy, display_name, internal, receive_row};
use crate::reply::Reply;
use crate::ssrf::UrlPolicy;

/// Chunks of a relayed stream waiting for a slow caller before the relay waits too.
const STREAM_BUFFER: usize = 32;

/// Answers from an agent that mean its origin may be dead: probe the compute.
pub const DEAD_ORIGIN: [u16; 7] = [502, 503, 504, 521, 522, 523, 524];

/// What a delivery means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
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
pub struct Delivery {
    /// What the caller gets.
    pub reply: Reply,
    /// What it means for the message.
    pub verdict: Verdict,
}

impl Delivery {
    fn new(reply: Reply, verdict: Verdict) -> Self {
        Delivery { reply, verdict }
    }
}

impl Proxy {
    /// Resolves the target's URL and delivers `normalized` there.
    pub(crate) async fn deliver(
        &self,
        ws: &Workspace,
        caller: &Caller,
        normalized: &Normalized,
        deadline: Option<Duration>,
        log: bool,
    ) -> Delivery {
        let inner = &self.inner;
        let Some(url) = ws.url.clone().filter(|u| !u.is_empty()) else {
            if matches!(
                ws.status,
                WorkspaceStatus::Hibernated | WorkspaceStatus::Hibernating
            ) {
                inner.platform.wake(ws.id).await;
                return Delivery::new(Reply::waking(), Verdict::Failed);
            }
            let reply = Reply::json(
                503,
                json!({ "error": "workspace has no URL", "status": ws.status }),
            );
            return Delivery::new(reply, Verdict::Failed);
        };
        if let Err(e) = self.policy_for(ws, &url).check(&url).await {
            tracing::warn!(workspace = %ws.id, error = %e, "a2a: target URL refused by the address policy");
            return Delivery::new(
                Reply::error(502, "workspace URL is not publicly routable"),
                Verdict::Failed,
            );
        }
        if let Err(e) = inner.store.workspaces().touch_activity(ws.id).await {
            tracing::debug!(workspace = %ws.id, error = %e, "a2a: cannot record activity time");
        }
        let limits = Limits {
            idle: inner.settings.idle_timeout,
            // A deadline beyond what an `Instant` can hold is no deadline (never a panic).
            deadline: deadline.and_then(|d| Instant::now().checked_add(d)),
        };
        let body = serde_json::to_vec(&normalized.body).unwrap_or_default();
        let events = inner.platform.watch(ws.id);
        let started = Instant::now();
        // An A2A 1.0 method is only served as such when the request says so.
        let version = crate::reply::is_v1_method(&normalized.method).then_some("1.0");
        let outcome = dispatch::deliver(&inner.client, &url, body, version, limits, events).await;
        match outcome {
            Outcome::Streaming {
                status,
                content_type,
                response,
                elapsed: _,
                events,
            } => {
                let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
                let (proxy, ws, caller, normalized) =
                    (self.clone(), ws.clone(), caller.clone(), normalized.clone());
                tokio::spawn(async move {
                    let relayed = dispatch::relay(response, limits, events, tx, started).await;
                    if log {
                        proxy
                            .stream_ended(&ws, &caller, &normalized, status, relayed)
                            .await;
                    }
                });
                Delivery::new(
                    Reply::stream(status, crate::reply::Stream::new(content_type, rx)),
                    Verdict::Delivered,
                )
            }
            Outcome::Answered {
                status,
                body,
                elapsed,
            } => {
                self.answered(ws, caller, normalized, status, body, elapsed, log)
                    .await
            }
            Outcome::BodyFailed { status, elapsed } => {
                let confirmed = (200..400).contains(&status);
                if log && confirmed {
                    let row = molecule_store::NewActivity {
                        summary: Some(format!("{} → {}", normalized.method, display_name(ws))),
                        request_body: Some(normalized.body.clone()),
                        duration_ms: Some(millis(elapsed)),
                        ..receive_row(ws, caller, normalized)
                    };
                    log::record_quietly(&inner.store, inner.platform.as_ref(), &row).await;
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
            Outcome::Failed { failure, elapsed } => {
                self.failed(ws, caller, normalized, failure, elapsed, log)
                    .await
            }
        }
    }

    /// The address policy for a target: a loopback URL on a workspace the platform runs
    /// itself was published by its own provisioner (registration never accepts loopback
    /// outside dev mode), so it is allowed.
    pub(crate) fn policy_for(&self, ws: &Workspace, url: &str) -> UrlPolicy {
        let mut policy = self.inner.settings.policy;
        if ws.runtime != Runtime::EXTERNAL && url.starts_with("http://127.0.0.1:") {
            policy.dev_mode = true;
        }
        policy
    }

    #[allow(clippy::too_many_arguments)]
    async fn answered(
        &self,
        ws: &Workspace,
        caller: &Caller,
        normalized: &Normalized,
        status: u16,
        body: Vec<u8>,
        elapsed: Duration,
        log: bool,
    ) -> Delivery {
        let inner = &self.inner;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if log {
            let tool_trace = parsed
                .as_ref()
                .and_then(|v| v.pointer("/result/metadata/tool_trace"))
                .filter(|t| !t.is_null())
                .cloned();
            let row = molecule_store::NewActivity {
                summary: Some(format!("{} → {}", normalized.method, display_name(ws))),
                request_body: Some(normalized.body.clone()),
                response_body: parsed.clone(),
                tool_trace,
                duration_ms: Some(millis(elapsed)),
                status: if status < 400 { "ok" } else { "error" }.into(),
                ..receive_row(ws, caller, normalized)
            };
            log::record_quietly(&inner.store, inner.platform.as_ref(), &row).await;
            if status < 400 {
                let payload = json!({
                    "response_body": parsed.clone().unwrap_or(Value::Null),
                    "method": normalized.method,
                    "duration_ms": millis(elapsed),
                });
                self.answer_heard(ws, caller, payload).await;
            }
        }
        if (200..300).contains(&status) {
            if let Some((input_tokens, output_tokens)) =
                parsed.as_ref().and_then(crate::usage::usage_of)
            {
                let sample = crate::usage::Sample {
                    workspace: ws.id,
                    input_tokens,
                    output_tokens,
                };
                inner.usage.record(&inner.store, sample);
            }
            return Delivery::new(Reply::agent(status, body), Verdict::Delivered);
        }
        if status == 429 {
            return Delivery::new(Reply::busy(), Verdict::NotTaken);
        }
        if DEAD_ORIGIN.contains(&status) && inner.platform.is_dead(ws).await {
            inner.platform.declare_dead(ws).await;
            return Delivery::new(Reply::restarting(), Verdict::Failed);
        }
        Delivery::new(agent_error(status, parsed), Verdict::Failed)
    }

    /// The one activity row of a relayed stream, written when it ends: the last event's JSON
    /// is its answer (the final status or result), with the event count.
    async fn stream_ended(
        &self,
        ws: &Workspace,
        caller: &Caller,
        normalized: &Normalized,
        status: u16,
        relayed: dispatch::Relayed,
    ) {
        let inner = &self.inner;
        let text = String::from_utf8_lossy(&relayed.captured);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .collect();
        let last: Option<Value> = data.iter().rev().find_map(|d| serde_json::from_str(d).ok());
        let cut = relayed.cut.as_ref();
        let row = molecule_store::NewActivity {
            summary: Some(format!(
                "{} → {} (stream, {} events)",
                normalized.method,
                display_name(ws),
                data.len()
            )),
            request_body: Some(normalized.body.clone()),
            response_body: last.clone(),
            duration_ms: Some(millis(relayed.elapsed)),
            status: if cut.is_none() { "ok" } else { "error" }.into(),
            error_detail: cut.map(|f| f.describe().to_owned()),
            ..receive_row(ws, caller, normalized)
        };
        log::record_quietly(&inner.store, inner.platform.as_ref(), &row).await;
        if cut.is_none() {
            let payload = json!({
                "response_body": last.unwrap_or(Value::Null),
                "method": normalized.method,
                "duration_ms": millis(relayed.elapsed),
                "status": status,
            });
            self.answer_heard(ws, caller, payload).await;
        }
    }

    /// After a successful answer: the user's canvas hears it (`A2A_RESPONSE` with `payload`),
    /// a calling workspace's last outbound time moves.
    async fn answer_heard(&self, ws: &Workspace, caller: &Caller, payload: Value) {
        let inner = &self.inner;
        match caller {
            Caller::User => {
                inner
                    .platform
                    .emit(EventType::A2aResponse, ws.id, payload)
                    .await;
            }
            Caller::Workspace(id) => {
                if let Err(e) = inner.store.workspaces().touch_outbound(*id).await {
                    tracing::debug!(workspace = %id, error = %e, "a2a: cannot record last outbound");
                }
            }
            Caller::System(_) => {}
        }
    }

    async fn failed(
        &self,
        ws: &Workspace,
        caller: &Caller,
        normalized: &Normalized,
        failure: Failure,
        elapsed: Duration,
        log: bool,
    ) -> Delivery {
        let inner = &self.inner;
        if failure == Failure::BadRequest {
            return Delivery::new(internal("failed to create proxy request"), Verdict::Failed);
        }
        let dead = failure != Failure::NoAnswer && inner.platform.is_dead(ws).await;
        if log {
            let row = molecule_store::NewActivity {
                summary: Some(format!(
                    "A2A request to {} failed: {}",
                    display_name(ws),
                    failure.describe()
                )),
                request_body: Some(normalized.body.clone()),
                duration_ms: Some(millis(elapsed)),
                status: "error".into(),
                error_detail: Some(failure.describe().into()),
                ..receive_row(ws, caller, normalized)
            };
            log::record_quietly(&inner.store, inner.platform.as_ref(), &row).await;
        }
        if dead {
            inner.platform.declare_dead(ws).await;
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
