//! A Provisioner double that records every call and answers as each test sets it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use molecule_domain::WorkspaceId;
use molecule_provisioner_api::{
    BackendKind, ProvisionError, ProvisionRequest, Provisioner, Running, Started,
};

use super::WITHIN;

/// A Provisioner double that records every call. Faults are set per test.
#[derive(Debug, Default)]
pub struct FakeBackend {
    pub starts: Mutex<Vec<ProvisionRequest>>,
    pub stops: Mutex<Vec<WorkspaceId>>,
    /// Answers of `running`, consumed in order; `Running::Yes` when empty.
    pub running_answers: Mutex<VecDeque<Running>>,
    /// When set, `start` fails.
    pub fail_start: Mutex<bool>,
    /// When set, `stop` fails.
    pub fail_stop: Mutex<bool>,
    /// What `managed_workspaces` answers.
    pub managed: Mutex<Vec<WorkspaceId>>,
    /// What `console_output` answers; `None`: unsupported.
    pub console: Mutex<Option<String>>,
    /// When set, `stop` waits for this semaphore's permit (to hold a cycle open).
    pub stop_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// How many `stop` calls have begun (before the gate).
    pub stops_entered: Mutex<usize>,
    /// Signalled after every recorded call.
    pub changed: tokio::sync::Notify,
}

impl FakeBackend {
    /// Waits until `done` holds for the recorded calls, woken by each new call (bounded by
    /// [`WITHIN`] only to turn a hang into a failure).
    pub async fn wait_for(&self, done: impl Fn(&FakeBackend) -> bool) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            tokio::time::timeout_at(deadline, notified)
                .await
                .expect("the backend was not called as expected in time");
        }
    }

    /// Waits for the first start of `id` and answers the auth token of its latest start.
    pub async fn token_of(&self, id: WorkspaceId) -> String {
        self.wait_for(|b| b.started(id) >= 1).await;
        let latest = self.starts_of(id).pop().unwrap();
        let token = latest.auth_token.expect("the start carried a token");
        token.expose().to_owned()
    }

    /// The recorded starts of `id`, first to latest.
    pub fn starts_of(&self, id: WorkspaceId) -> Vec<ProvisionRequest> {
        let starts = self.starts.lock().unwrap();
        starts
            .iter()
            .filter(|r| r.workspace_id == id)
            .cloned()
            .collect()
    }

    /// Queues the answer of the next `running` check.
    pub fn answer_running(&self, answer: Running) {
        self.running_answers.lock().unwrap().push_back(answer);
    }

    pub fn start_count(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    pub fn started(&self, id: WorkspaceId) -> usize {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.workspace_id == id)
            .count()
    }

    pub fn stopped(&self, id: WorkspaceId) -> usize {
        self.stops
            .lock()
            .unwrap()
            .iter()
            .filter(|s| **s == id)
            .count()
    }
}

#[async_trait]
impl Provisioner for FakeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Other
    }

    fn publishes_agent_url(&self) -> bool {
        true
    }

    async fn start(&self, request: &ProvisionRequest) -> Result<Started, ProvisionError> {
        self.starts.lock().unwrap().push(request.clone());
        self.changed.notify_waiters();
        if *self.fail_start.lock().unwrap() {
            return Err(ProvisionError::Failed(
                "daemon said: secret internal detail".into(),
            ));
        }
        Ok(Started {
            agent_url: Some(format!("http://127.0.0.1:1/{}", request.workspace_id)),
            instance_id: Some(format!("fake-{}", request.workspace_id.short())),
        })
    }

    async fn stop(&self, id: WorkspaceId, _instance: Option<&str>) -> Result<(), ProvisionError> {
        *self.stops_entered.lock().unwrap() += 1;
        self.changed.notify_waiters();
        let gate = self.stop_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await.unwrap();
        }
        if *self.fail_stop.lock().unwrap() {
            return Err(ProvisionError::Unavailable("daemon is down".into()));
        }
        self.stops.lock().unwrap().push(id);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn managed_workspaces(&self) -> Result<Vec<WorkspaceId>, ProvisionError> {
        Ok(self.managed.lock().unwrap().clone())
    }

    async fn console_output(
        &self,
        _id: WorkspaceId,
        _instance: Option<&str>,
    ) -> Result<String, ProvisionError> {
        self.console
            .lock()
            .unwrap()
            .clone()
            .ok_or(ProvisionError::Unsupported("console_output"))
    }

    async fn running(&self, _id: WorkspaceId, _instance: Option<&str>) -> Running {
        self.running_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Running::Yes)
    }
}

/// A request to start workspace `id` with its name and the platform's URL, and nothing else
/// (no token, no secrets): for the tests that start compute behind the server's back.
pub fn provision_request(id: WorkspaceId, name: &str, platform_url: &str) -> ProvisionRequest {
    ProvisionRequest {
        workspace_id: id,
        name: name.into(),
        role: None,
        tier: molecule_domain::Tier::Standard,
        runtime: "langgraph".into(),
        parent_id: None,
        model: None,
        template: None,
        config_files: Vec::new(),
        workspace_dir: None,
        workspace_access: molecule_domain::WorkspaceAccess::None,
        platform_url: platform_url.into(),
        env: Default::default(),
        auth_token: None,
        platform_inbound_secret: None,
        bootstrap_token: None,
    }
}
