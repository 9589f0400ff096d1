//! Classifying EC2 API failures by error code and HTTP status (never by message text).

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ProvisionError;

/// Codes that say the instance does not exist (or cannot, for a malformed id), or, from EC2
/// Instance Connect, is not there to take a key (not running).
const NOT_FOUND: &[&str] = &[
    "InvalidInstanceID.NotFound",
    "InvalidInstanceID.Malformed",
    "EC2InstanceNotFoundException",
    "EC2InstanceStateInvalidException",
];

/// Codes of transient faults: throttling and service-side trouble.
const TRANSIENT: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "SlowDown",
    "ServiceUnavailable",
    "Unavailable",
    "InternalError",
    "InternalFailure",
    "InsufficientInstanceCapacity",
];

/// The kind of an EC2 failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The instance does not exist.
    NotFound,
    /// Transport trouble, a timeout, throttling or a 5xx: may work later.
    Transient,
    /// The request was refused (4xx other than throttling).
    Rejected,
    /// Anything else (a request that could not be built, an unreadable answer).
    Other,
}

/// Kind and code of an SDK error.
pub(crate) fn fault<E>(e: &SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Fault::Transient,
        SdkError::ServiceError(_) => {
            let code = e.code().unwrap_or("");
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            by_code(code, status)
        }
        SdkError::ResponseError(_) => {
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            if status >= 500 || status == 429 {
                Fault::Transient
            } else {
                Fault::Other
            }
        }
        _ => Fault::Other,
    }
}

/// The kind of a service error from its code and HTTP status.
pub(crate) fn by_code(code: &str, status: u16) -> Fault {
    if NOT_FOUND.contains(&code) {
        Fault::NotFound
    } else if TRANSIENT.contains(&code) || status >= 500 || status == 429 {
        Fault::Transient
    } else if (400..500).contains(&status) {
        Fault::Rejected
    } else {
        Fault::Other
    }
}

/// The typed error of a failed call, `what` naming the call.
pub(crate) fn to_error<E>(e: &SdkError<E, HttpResponse>, what: &str) -> ProvisionError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("ec2 {what}: {}", DisplayErrorContext(e));
    from_fault(fault(e), text)
}

/// The error of a fault kind with a message.
pub(crate) fn from_fault(fault: Fault, text: String) -> ProvisionError {
    match fault {
        Fault::NotFound => ProvisionError::NotFound(text),
        Fault::Transient => ProvisionError::Unavailable(text),
        Fault::Rejected => ProvisionError::Rejected(text),
        Fault::Other => ProvisionError::Failed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(by_code("InvalidInstanceID.NotFound", 400), Fault::NotFound);
        assert_eq!(by_code("InvalidInstanceID.Malformed", 400), Fault::NotFound);
        assert_eq!(by_code("RequestLimitExceeded", 503), Fault::Transient);
        assert_eq!(by_code("RequestLimitExceeded", 400), Fault::Transient);
        assert_eq!(by_code("Whatever", 500), Fault::Transient);
        assert_eq!(by_code("UnauthorizedOperation", 403), Fault::Rejected);
        assert_eq!(by_code("InvalidAMIID.NotFound", 400), Fault::Rejected);
        assert_eq!(by_code("", 0), Fault::Other);
    }
}
