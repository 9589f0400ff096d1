//! Starting a workspace: the provision request from the whole row, fresh credentials, the
//! backend call, and `failed` with a canned reason when anything goes wrong.

use std::collections::BTreeMap;

use molecule_domain::{EventType, RelPath, Tier, WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::progress::{Step, StepStatus};
use molecule_provisioner_api::{ProvisionRequest, SecretValue};
use molecule_store::{StatusChange, Workspace};
use serde_json::{Value, json};

use super::{Lifecycle, NO_BACKEND, progress};

/// The reason stored when the backend refuses to start a workspace (backend text is only
/// logged).
pub(crate) const START_FAILED: &str = "workspace start failed";

/// The reason stored when a global secret cannot be decrypted (never its key or the cause).
pub(crate) const GLOBAL_DECRYPT_FAILED: &str = "failed to decrypt global secret";
/// The reason stored when a workspace secret cannot be decrypted.
pub(crate) const WORKSPACE_DECRYPT_FAILED: &str = "failed to decrypt workspace secret";
/// The reason stored when the secrets cannot be read at all.
pub(crate) const SECRETS_UNREADABLE: &str = "failed to load secrets";

/// The workspace secret that holds the model choice.
const MODEL_SECRET: &str = "MODEL_PROVIDER";

impl Lifecycle {
    /// Provisions a workspace that is in `provisioning`, in the background; the returned
    /// handle completes when the backend call has finished (tests and callers may await it).
    pub fn spawn_provision(&self, id: WorkspaceId) -> tokio::task::JoinHandle<()> {
        self.spawn_provision_with_files(id, Vec::new())
    }

    /// [`Lifecycle::spawn_provision`] with the files the workspace's config root starts
    /// from (a template's, or a generated `config.yaml`): the backend writes them before the
    /// agent starts.
    pub fn spawn_provision_with_files(
        &self,
        id: WorkspaceId,
        files: Vec<(RelPath, Vec<u8>)>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let lock = this.lock_of(id);
            let _guard = lock.lock().await;
            this.provision_locked(id, files).await;
        })
    }

    /// Provisions under the caller's lock, with `files` for the config root.
    #[tracing::instrument(name = "workspace.provision", skip(self, files), fields(workspace = %id))]
    pub(crate) async fn provision_locked(&self, id: WorkspaceId, files: Vec<(RelPath, Vec<u8>)>) {
        let store = &self.inner.store;
        let ws = match store.workspaces().get(id).await {
            Ok(Some(ws)) if ws.status == WorkspaceStatus::Provisioning => ws,
            Ok(_) => return, // removed, paused or otherwise moved on meanwhile
            Err(e) => {
                tracing::error!(workspace = %id, error = %e, "provision: cannot read the workspace");
                return;
            }
        };
        let Some(backend) = self.inner.backend.clone() else {
            self.mark_failed(id, NO_BACKEND, json!({ "error": NO_BACKEND }))
                .await;
            return;
        };
        let request = match self.request_for(&ws, backend.delivers_credentials()).await {
            Ok(r) => ProvisionRequest {
                config_files: files,
                ..r
            },
            Err(reason) => {
                self.mark_failed(id, reason, json!({ "error": reason }))
                    .await;
                return;
            }
        };
        let starting = self.starting(id);
        let reporter = progress::EventProgress::start(self.inner.events.clone(), id);
        let outcome = backend.start_with_progress(&request, &reporter).await;
        reporter.finish().await;
        if outcome.is_ok() {
            // Before the start is over: a registration waiting for it reports after this.
            progress::emit(
                &self.inner.events,
                id,
                Step::Registration,
                StepStatus::Started,
            )
            .await;
        }
        match outcome {
            Ok(started) => {
                let workspaces = store.workspaces();
                if let Some(url) = started.agent_url.as_deref()
                    && let Err(e) = workspaces.set_url(id, Some(url)).await
                {
                    tracing::error!(workspace = %id, error = %e, "provision: cannot store the agent URL");
                }
                if started.instance_id.is_some()
                    && let Err(e) = workspaces
                        .set_instance_id(id, started.instance_id.as_deref())
                        .await
                {
                    tracing::error!(workspace = %id, error = %e, "provision: cannot store the instance id");
                }
                drop(starting);
                tracing::info!(workspace = %id, "provision: backend started the workspace");
            }
            Err(e) => {
                drop(starting);
                tracing::error!(workspace = %id, error = %e, "provision: backend start failed");
                self.mark_failed(id, START_FAILED, json!({ "error": START_FAILED }))
                    .await;
            }
        }
    }

    /// The container environment: every global secret, then the workspace's own (which win),
    /// plus `MODEL` (and `HERMES_DEFAULT_MODEL` for hermes) from the stored model choice.
    /// Any value that cannot be decrypted aborts with a canned reason.
    async fn env_for(
        &self,
        ws: &Workspace,
    ) -> Result<(BTreeMap<String, SecretValue>, Option<String>), &'static str> {
        let secrets = self.inner.store.secrets();
        let read_failed = |e: molecule_store::StoreError| {
            tracing::error!(workspace = %ws.id, error = %e, "provision: cannot read secrets");
            SECRETS_UNREADABLE
        };
        let global = secrets.global_values().await.map_err(read_failed)?;
        let own = secrets.workspace_values(ws.id).await.map_err(read_failed)?;
        let mut env = BTreeMap::new();
        for (reads, reason) in [
            (global, GLOBAL_DECRYPT_FAILED),
            (own, WORKSPACE_DECRYPT_FAILED),
        ] {
            for (key, value) in reads {
                match value {
                    Ok(v) => {
                        env.insert(key, SecretValue::new(v.into_exposed()));
                    }
                    Err(e) => {
                        tracing::error!(workspace = %ws.id, error = %e, "provision: {reason}");
                        return Err(reason);
                    }
                }
            }
        }
        let model = env
            .get(MODEL_SECRET)
            .map(|m| m.expose().trim().to_owned())
            .filter(|m| !m.is_empty());
        if let Some(model) = &model {
            env.insert("MODEL".to_owned(), SecretValue::new(model.clone()));
            if ws.runtime == "hermes" {
                env.insert(
                    "HERMES_DEFAULT_MODEL".to_owned(),
                    SecretValue::new(model.clone()),
                );
            }
        }
        Ok((env, model))
    }

    /// Builds the request from the whole row and the merged secrets, with a fresh auth token
    /// (all older ones are revoked) and a fresh platform inbound secret. When the backend does
    /// not deliver credentials (`issue_token` false: EC2, whose user-data is readable), the old
    /// tokens are revoked and only a one-time bootstrap token is issued (valid until the
    /// provision timeout): the agent's first register presents it and receives its token.
    async fn request_for(
        &self,
        ws: &Workspace,
        issue_token: bool,
    ) -> Result<ProvisionRequest, &'static str> {
        let (env, model) = self.env_for(ws).await?;
        let store = &self.inner.store;
        let tokens = store.tokens();
        let auth_token = match tokens.revoke_all(ws.id).await {
            Ok(_) if !issue_token => None,
            Ok(_) => match tokens.issue(ws.id).await {
                Ok(issued) => Some(SecretValue::new(issued.token.expose())),
                Err(e) => {
                    tracing::error!(workspace = %ws.id, error = %e, "provision: cannot issue a token");
                    None
                }
            },
            Err(e) => {
                tracing::error!(workspace = %ws.id, error = %e, "provision: cannot revoke old tokens");
                None
            }
        };
        let bootstrap_token = if issue_token {
            None
        } else {
            let until = time::OffsetDateTime::now_utc()
                .checked_add(self.bootstrap_ttl())
                .unwrap_or(time::OffsetDateTime::now_utc());
            match tokens.issue_bootstrap(ws.id, until).await {
                Ok(t) => Some(SecretValue::new(t.expose())),
                Err(e) => {
                    tracing::error!(workspace = %ws.id, error = %e, "provision: cannot issue a bootstrap token");
                    None
                }
            }
        };
        let inbound = match molecule_store::random_token() {
            Ok(secret) => match store.workspaces().set_inbound_secret(ws.id, &secret).await {
                Ok(()) => Some(SecretValue::new(secret)),
                Err(e) => {
                    tracing::error!(workspace = %ws.id, error = %e, "provision: cannot store the inbound secret");
                    None
                }
            },
            Err(e) => {
                tracing::error!(workspace = %ws.id, error = %e, "provision: no randomness");
                None
            }
        };
        Ok(ProvisionRequest {
            workspace_id: ws.id,
            name: ws.name.clone(),
            role: ws.role.clone(),
            tier: Tier::try_from(i64::from(ws.tier)).unwrap_or(Tier::DEFAULT),
            runtime: ws.runtime.clone(),
            parent_id: ws.parent_id,
            model,
            template: None,
            config_files: Vec::new(),
            workspace_dir: ws.workspace_dir.clone(),
            workspace_access: ws.workspace_access,
            platform_url: self.inner.platform_url.clone(),
            env,
            auth_token,
            platform_inbound_secret: inbound,
            bootstrap_token,
        })
    }

    /// Marks a workspace `failed` with `reason` (unless it was removed meanwhile) and
    /// broadcasts `WORKSPACE_PROVISION_FAILED` with `payload`.
    pub async fn mark_failed(&self, id: WorkspaceId, reason: &str, payload: Value) {
        let result = self
            .inner
            .store
            .workspaces()
            .transition_with(
                id,
                WorkspaceStatus::Failed,
                None,
                &StatusChange::failed(reason),
            )
            .await;
        match result {
            Ok(_) => {
                self.inner
                    .events
                    .emit(EventType::WorkspaceProvisionFailed, Some(id), payload)
                    .await;
            }
            Err(e) => {
                tracing::warn!(workspace = %id, error = %e, "not marked failed");
            }
        }
    }
}
