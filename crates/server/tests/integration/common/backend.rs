//! A Provisioner double that records every call and answers as each test sets it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use molecule_domain::WorkspaceId;
use molecule_provisioner_api::access::{FileEntry, FileRoot, RelPath, Target, WrittenTo};
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
    /// The workspaces' files: `(workspace, "<root>/<path>")` → bytes (the access methods).
    pub files: Mutex<std::collections::BTreeMap<(WorkspaceId, String), Vec<u8>>>,
    /// When set, the file access methods answer `Unsupported` (a backend without them).
    pub no_file_access: Mutex<bool>,
}

impl FakeBackend {
    /// The file `path` (e.g. `/configs/config.yaml`) of `id`, as text.
    pub fn file(&self, id: WorkspaceId, path: &str) -> Option<String> {
        let files = self.files.lock().unwrap();
        files
            .get(&(id, path.to_owned()))
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Every file path of `id` under `prefix`, sorted.
    pub fn paths(&self, id: WorkspaceId, prefix: &str) -> Vec<String> {
        let files = self.files.lock().unwrap();
        files
            .keys()
            .filter(|(w, p)| *w == id && p.starts_with(prefix))
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Puts a file into `id`'s compute behind the server's back.
    pub fn put_file(&self, id: WorkspaceId, path: &str, content: &str) {
        let mut files = self.files.lock().unwrap();
        files.insert((id, path.to_owned()), content.as_bytes().to_vec());
    }

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
        // The config files land in /configs, as the Docker backend uploads them.
        let mut files = self.files.lock().unwrap();
        for (path, bytes) in &request.config_files {
            let key = (request.workspace_id, format!("/configs/{}", path.as_str()));
            files.insert(key, bytes.clone());
        }
        drop(files);
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

    async fn list_files(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        dir: Option<&RelPath>,
        depth: u8,
    ) -> Result<Vec<FileEntry>, ProvisionError> {
        if *self.no_file_access.lock().unwrap() {
            return Err(ProvisionError::Unsupported("list_files"));
        }
        let base = match dir {
            Some(d) => format!("{}/{}/", root.as_str(), d.as_str()),
            None => format!("{}/", root.as_str()),
        };
        let files = self.files.lock().unwrap();
        let mut out = std::collections::BTreeSet::new();
        for ((w, p), bytes) in files.iter() {
            let Some(rest) = p.strip_prefix(&base).filter(|_| *w == target.workspace_id) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            for level in 1..=parts.len().min(usize::from(depth)) {
                let path = parts[..level].join("/");
                let dir = level < parts.len();
                let size = if dir { 0 } else { bytes.len() as u64 };
                out.insert(FileEntry { path, size, dir });
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn read_path(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<Vec<u8>, ProvisionError> {
        if *self.no_file_access.lock().unwrap() {
            return Err(ProvisionError::Unsupported("read_path"));
        }
        let key = (
            target.workspace_id,
            format!("{}/{}", root.as_str(), path.as_str()),
        );
        self.files
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .ok_or_else(|| ProvisionError::NotFound(path.as_str().to_owned()))
    }

    async fn write_files(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        files: &[(RelPath, Vec<u8>)],
    ) -> Result<WrittenTo, ProvisionError> {
        if *self.no_file_access.lock().unwrap() {
            return Err(ProvisionError::Unsupported("write_files"));
        }
        let mut map = self.files.lock().unwrap();
        for (path, bytes) in files {
            let key = (
                target.workspace_id,
                format!("{}/{}", root.as_str(), path.as_str()),
            );
            map.insert(key, bytes.clone());
        }
        drop(map);
        self.changed.notify_waiters();
        Ok(WrittenTo::Container)
    }

    async fn delete_path(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<(), ProvisionError> {
        if *self.no_file_access.lock().unwrap() {
            return Err(ProvisionError::Unsupported("delete_path"));
        }
        let exact = format!("{}/{}", root.as_str(), path.as_str());
        let under = format!("{exact}/");
        self.files.lock().unwrap().retain(|(w, p), _| {
            !(*w == target.workspace_id && (*p == exact || p.starts_with(&under)))
        });
        self.changed.notify_waiters();
        Ok(())
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
