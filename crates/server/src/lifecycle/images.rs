//! Image refresh through the backend (spec provisioner §1.12).

use molecule_provisioner_api::{ImageRefresh, ProvisionError, RefreshError};

use super::Lifecycle;

impl Lifecycle {
    /// Pulls the latest images of `runtimes` and, with `recreate`, removes the containers
    /// running them (the health sweep restarts those). No backend, or one without images,
    /// answers [`ProvisionError::Unsupported`] in the error.
    pub async fn refresh_images(
        &self,
        runtimes: &[String],
        recreate: bool,
    ) -> Result<ImageRefresh, RefreshError> {
        let Some(backend) = &self.inner.backend else {
            return Err(RefreshError {
                partial: ImageRefresh::default(),
                cause: ProvisionError::Unsupported("refresh_images"),
            });
        };
        backend.refresh_images(runtimes, recreate).await
    }
}
