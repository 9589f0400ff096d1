//! Firing one claimed run (spec §5.3, §5.4): capacity, delivery through the proxy, outcome,
//! history row and event.

use molecule_a2a::reply::Body;
use molecule_a2a::{Caller, Message};
use molecule_domain::EventType;
use molecule_store::{Claim, RunOutcome, Schedule};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{CALLER, Scheduler, cron};

/// What one fire recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireOutcome {
    /// The schedule.
    pub schedule_id: Uuid,
    /// The status written (`ok`, `error`, `stale`, `skipped`), or `native` when the agent runs
    /// its own scheduler and nothing was sent.
    pub status: String,
    /// The error written.
    pub error: String,
}

/// The prompt as recorded in history: its first 200 bytes, cut at a character boundary.
const PROMPT_PREVIEW_BYTES: usize = 200;

impl Scheduler {
    /// Fires one claim and records it; `None` when the claim was lost to another replica.
    pub(super) async fn fire(&self, claim: Claim) -> Option<FireOutcome> {
        let s = &claim.schedule;
        if claim.sent_before {
            let error = "interrupted: the server firing this run stopped before recording it; \
                         not sent again";
            return self.record(&claim, "error", error, false).await;
        }
        if let Err(e) = cron::CronSpec::parse(&s.cron_expr, &s.timezone) {
            return self.record(&claim, "error", &e.to_string(), false).await;
        }
        if self.inner.a2a.has_capability(s.workspace_id, "scheduler") {
            // The agent runs its own scheduler: the claim already advanced next_run_at.
            let store = self.inner.store.schedules();
            if let Err(e) = store.release(s.id, claim.token).await {
                tracing::error!(schedule = %s.id, error = %e, "scheduler: release failed");
            }
            return Some(FireOutcome {
                schedule_id: s.id,
                status: "native".into(),
                error: String::new(),
            });
        }
        if let Some(active) = self.still_busy(s).await {
            return self.record_skipped(&claim, active).await;
        }
        match self
            .inner
            .store
            .schedules()
            .mark_sent(s.id, claim.token)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::error!(schedule = %s.id, error = %e, "scheduler: mark_sent failed");
                return None;
            }
        }
        let (status, error, answer) = self.deliver(s).await;
        let empty = answer.as_deref().is_some_and(is_empty_answer);
        let outcome = self.record(&claim, status, &error, empty).await;
        // A non-empty ok answer goes to the workspace's Slack channels (§6.5).
        if let Some(text) = answer.filter(|a| status == "ok" && !is_empty_answer(a)) {
            self.inner.events.post_cron_output(s.workspace_id, text);
        }
        outcome
    }

    /// `Some(active_tasks)` when the workspace stays at capacity through every poll; a failed
    /// read fires anyway (fail open).
    async fn still_busy(&self, s: &Schedule) -> Option<i32> {
        let settings = &self.inner.settings;
        let mut polls = 0;
        loop {
            let ws = match self.inner.store.workspaces().get(s.workspace_id).await {
                Ok(Some(ws)) => ws,
                _ => return None,
            };
            if ws.active_tasks < ws.max_concurrent_tasks.max(1) {
                return None;
            }
            if polls >= settings.capacity_polls {
                return Some(ws.active_tasks);
            }
            polls += 1;
            tokio::time::sleep(settings.capacity_poll_every).await;
        }
    }

    /// Sends the prompt; answers status, error and, for an agent's ok answer, its text.
    async fn deliver(&self, s: &Schedule) -> (&'static str, String, Option<String>) {
        let suffix: String = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let id = s.id.simple().to_string();
        let body = json!({
            "method": "message/send",
            "params": { "message": {
                "role": "user",
                "messageId": format!("cron-{}-{suffix}", &id[..8]),
                "parts": [{ "kind": "text", "text": s.prompt.replace('\r', "") }],
            }},
        });
        let timeout = self.inner.settings.fire_timeout;
        let message = Message {
            target: s.workspace_id,
            caller: Caller::System(CALLER.into()),
            body: body.to_string().into_bytes(),
            timeout: Some(timeout),
            log: true,
        };
        let reply = match tokio::time::timeout(timeout, self.inner.a2a.send(message)).await {
            Ok(reply) => reply,
            Err(_) => return ("error", "fire timed out".into(), None),
        };
        let ok = (200..300).contains(&reply.status);
        match &reply.body {
            Body::Json(v) if !ok => {
                let text = v.get("error").and_then(Value::as_str);
                let error = text.map_or_else(|| format!("HTTP {}", reply.status), str::to_owned);
                ("error", error, None)
            }
            _ if !ok => ("error", format!("HTTP {}", reply.status), None),
            Body::Agent(bytes) => ("ok", String::new(), Some(answer_text(bytes))),
            // Queued for a busy or poll-mode agent, or a stream: accepted, not empty.
            _ => ("ok", String::new(), None),
        }
    }

    async fn record_skipped(&self, claim: &Claim, active: i32) -> Option<FireOutcome> {
        let s = &claim.schedule;
        let reason = format!("skipped: workspace busy (active_tasks={active})");
        let outcome = RunOutcome {
            status: "skipped".into(),
            error: reason.clone(),
            empty_reply: false,
            summary: format!("Cron skipped: {}", s.name),
            request: json!({
                "schedule_id": s.id, "schedule_name": s.name, "cron_expr": s.cron_expr,
                "skipped": true, "active_tasks": active,
            }),
        };
        let status = self.finish(claim, &outcome).await?;
        self.inner
            .events
            .emit(
                EventType::CronSkipped,
                Some(s.workspace_id),
                json!({ "schedule_id": s.id, "schedule_name": s.name, "reason": reason }),
            )
            .await;
        Some(FireOutcome {
            schedule_id: s.id,
            status,
            error: reason,
        })
    }

    async fn record(
        &self,
        claim: &Claim,
        status: &str,
        error: &str,
        empty_reply: bool,
    ) -> Option<FireOutcome> {
        let s = &claim.schedule;
        let outcome = RunOutcome {
            status: status.into(),
            error: error.into(),
            empty_reply,
            summary: format!("Cron: {}", s.name),
            request: json!({
                "schedule_id": s.id, "schedule_name": s.name, "cron_expr": s.cron_expr,
                "prompt": preview(&s.prompt),
            }),
        };
        let status = self.finish(claim, &outcome).await?;
        self.inner
            .events
            .emit(
                EventType::CronExecuted,
                Some(s.workspace_id),
                json!({ "schedule_id": s.id, "schedule_name": s.name, "status": status }),
            )
            .await;
        Some(FireOutcome {
            schedule_id: s.id,
            status,
            error: error.into(),
        })
    }

    /// Records the outcome (its own deadline, whatever happened to the fire).
    async fn finish(&self, claim: &Claim, outcome: &RunOutcome) -> Option<String> {
        let schedules = self.inner.store.schedules();
        let write = schedules.finish(claim.schedule.id, claim.token, self.now(), outcome);
        match tokio::time::timeout(std::time::Duration::from_secs(10), write).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                tracing::error!(schedule = %claim.schedule.id, error = %e, "scheduler: recording the run failed");
                None
            }
            Err(_) => {
                tracing::error!(schedule = %claim.schedule.id, "scheduler: recording the run timed out");
                None
            }
        }
    }

    /// After a panic inside a fire: the run is recorded as an error.
    pub(super) async fn record_panic(&self, id: Uuid, token: Uuid) {
        let outcome = RunOutcome {
            status: "error".into(),
            error: "internal error while firing".into(),
            empty_reply: false,
            summary: "Cron: (internal error)".into(),
            request: json!({ "schedule_id": id }),
        };
        let schedules = self.inner.store.schedules();
        let write = schedules.finish(id, token, self.now(), &outcome);
        if let Err(e) = write.await {
            tracing::error!(schedule = %id, error = %e, "scheduler: recording a panicked run failed");
        }
    }

    /// Fires one schedule now (a manual run), unless a run of it is in flight: `Ok(None)`.
    /// Its next run is left alone.
    pub async fn run_now(
        &self,
        ws: molecule_domain::WorkspaceId,
        id: Uuid,
    ) -> Result<Option<FireOutcome>, molecule_store::StoreError> {
        let lease = time::Duration::try_from(self.inner.settings.lease)
            .unwrap_or(time::Duration::minutes(10));
        let claim = self
            .inner
            .store
            .schedules()
            .claim_one(ws, id, self.now(), lease)
            .await?;
        Ok(match claim {
            Some(claim) => self.fire(claim).await,
            None => None,
        })
    }
}

/// Whether an answer's text (from [`answer_text`]) counts as no answer (#795): blank, or the
/// runtime's "(no response generated)".
fn is_empty_answer(text: &str) -> bool {
    let text = text.trim();
    text.is_empty() || text == "(no response generated)"
}

/// The text of an agent's answer: the texts of its JSON-RPC result's parts, artifacts and
/// status message; a body that is not such a result is its own text ("" when blank).
pub fn answer_text(bytes: &[u8]) -> String {
    let raw = || String::from_utf8_lossy(bytes).trim().to_owned();
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return raw();
    };
    let Some(result) = v.get("result") else {
        return raw();
    };
    let mut texts = Vec::new();
    collect_texts(result.get("parts"), &mut texts);
    if let Some(artifacts) = result.get("artifacts").and_then(Value::as_array) {
        for a in artifacts {
            collect_texts(a.get("parts"), &mut texts);
        }
    }
    if let Some(status_message) = result.pointer("/status/message") {
        collect_texts(status_message.get("parts"), &mut texts);
    }
    texts.concat()
}

fn collect_texts<'a>(parts: Option<&'a Value>, into: &mut Vec<&'a str>) {
    for part in parts.and_then(Value::as_array).into_iter().flatten() {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            into.push(t);
        }
    }
}

/// The first [`PROMPT_PREVIEW_BYTES`] bytes of a prompt at a character boundary, with `...`
/// when cut.
fn preview(prompt: &str) -> String {
    let prompt = prompt.replace('\r', "");
    if prompt.len() <= PROMPT_PREVIEW_BYTES {
        return prompt;
    }
    let mut end = PROMPT_PREVIEW_BYTES;
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &prompt[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_reply(bytes: &[u8]) -> bool {
        is_empty_answer(&answer_text(bytes))
    }

    #[test]
    fn answers_are_read_from_their_parts() {
        let answer =
            br#"{"result":{"parts":[{"kind":"text","text":"a"},{"kind":"text","text":"b"}]}}"#;
        assert_eq!(answer_text(answer), "ab");
        assert_eq!(answer_text(b" plain "), "plain");
    }

    #[test]
    fn empty_replies_are_found_by_their_text() {
        assert!(empty_reply(b""));
        assert!(empty_reply(
            br#"{"result":{"parts":[{"kind":"text","text":""}]}}"#
        ));
        assert!(empty_reply(
            br#"{"result":{"parts":[{"kind":"text","text":"(no response generated)"}]}}"#
        ));
        assert!(!empty_reply(
            br#"{"result":{"parts":[{"kind":"text","text":""},{"kind":"text","text":"hi"}]}}"#
        ));
        assert!(!empty_reply(
            br#"{"result":{"artifacts":[{"parts":[{"kind":"text","text":"done"}]}]}}"#
        ));
        assert!(!empty_reply(br#"{"error":{"code":1}}"#));
    }

    #[test]
    fn the_preview_never_splits_a_character() {
        let prompt = format!("{}€€", "a".repeat(199));
        let p = preview(&prompt);
        assert_eq!(p, format!("{}...", "a".repeat(199)));
        assert_eq!(preview("short\r\n"), "short\n");
    }
}
