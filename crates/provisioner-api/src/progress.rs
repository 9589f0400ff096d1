//! Progress of a start: the steps a backend goes through (image, volume, container) and the
//! one the platform adds (registration), each reported as started, done or failed to a
//! [`Progress`] the caller passes to [`crate::Provisioner::start_with_progress`].

use std::future::Future;

/// One step of provisioning a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The runtime image is made local (pulled by the pull policy).
    Image,
    /// The workspace's volumes exist.
    Volume,
    /// The container (or instance) is created and started.
    Container,
    /// The agent registers with the platform.
    Registration,
}

impl Step {
    /// The wire name (`image`, `volume`, `container`, `registration`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Image => "image",
            Step::Volume => "volume",
            Step::Container => "container",
            Step::Registration => "registration",
        }
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    /// The step began.
    Started,
    /// The step finished.
    Done,
    /// The step failed (the start fails with it).
    Failed,
}

impl StepStatus {
    /// The wire name (`started`, `done`, `failed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "started",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
        }
    }
}

/// Receives the steps of one start. Called on the backend's task: it must not block.
pub trait Progress: Send + Sync {
    /// `step` reached `status`.
    fn report(&self, step: Step, status: StepStatus);
}

/// A [`Progress`] that drops every report.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _: Step, _: StepStatus) {}
}

/// Runs `work` as `step`: reports it started, then done or failed by its outcome.
pub async fn step<T, E>(
    progress: &dyn Progress,
    step: Step,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    progress.report(step, StepStatus::Started);
    let outcome = work.await;
    let status = if outcome.is_ok() {
        StepStatus::Done
    } else {
        StepStatus::Failed
    };
    progress.report(step, status);
    outcome
}
