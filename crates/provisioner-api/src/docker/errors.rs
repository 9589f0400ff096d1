//! Classifying Docker daemon failures: by HTTP status, with the reference's message texts
//! as the fallback where the daemon's status is not enough (spec §1.5.6, §1.14.19–20).

use bollard::errors::Error as DockerError;

use crate::ProvisionError;

/// The HTTP status of a daemon answer, if the error is one.
pub(crate) fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn message(e: &DockerError) -> &str {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// Not found: status 404; the reference's strings as a fallback (spec §1.5.6, §1.14.19).
pub(crate) fn is_not_found(e: &DockerError) -> bool {
    status(e) == Some(404) || is_not_found_message(message(e))
}

fn is_not_found_message(m: &str) -> bool {
    m.contains("No such container") || m.contains("not found")
}

/// Removal already in progress: 409 with the text, or the text alone (spec §1.14.20).
pub(crate) fn is_removal_in_progress(e: &DockerError) -> bool {
    is_removal_in_progress_message(message(e))
}

fn is_removal_in_progress_message(m: &str) -> bool {
    m.contains("removal of container") && m.contains("already in progress")
}

/// The error kind of a daemon failure: transport problems are `Unavailable`, a refused request
/// (4xx) `Rejected` (404 `NotFound`), the rest `Failed`.
pub(crate) fn classify(e: &DockerError) -> ProvisionError {
    context(e, "docker")
}

pub(crate) fn context(e: &DockerError, what: &str) -> ProvisionError {
    let text = format!("{what}: {e}");
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => match status_code {
            404 => ProvisionError::NotFound(text),
            400..=499 => ProvisionError::Rejected(text),
            _ => ProvisionError::Failed(text),
        },
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::RequestTimeoutError
        | DockerError::SocketNotFoundError(_) => ProvisionError::Unavailable(text),
        _ => ProvisionError::Failed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code: code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn classifiers() {
        assert!(is_not_found(&server(404, "whatever")));
        assert!(is_not_found(&server(500, "No such container: ws-abc123")));
        assert!(is_not_found(&server(500, "container not found")));
        for no in ["context deadline exceeded", "EOF", "connection refused", ""] {
            assert!(!is_not_found(&server(500, no)), "{no}");
        }
        assert!(is_removal_in_progress(&server(
            409,
            "removal of container ws-x is already in progress"
        )));
        assert!(!is_removal_in_progress(&server(
            409,
            "image pull is already in progress"
        )));
        assert!(!is_removal_in_progress(&server(404, "No such container")));
        assert!(matches!(
            context(&server(404, "x"), "y"),
            ProvisionError::NotFound(_)
        ));
        assert!(matches!(
            context(&server(409, "x"), "y"),
            ProvisionError::Rejected(_)
        ));
        assert!(matches!(
            context(&server(500, "x"), "y"),
            ProvisionError::Failed(_)
        ));
        assert!(matches!(
            context(&DockerError::RequestTimeoutError, "y"),
            ProvisionError::Unavailable(_)
        ));
    }
}
