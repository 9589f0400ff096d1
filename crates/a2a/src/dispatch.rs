//! One HTTP delivery to an agent: connect and idle timeouts, a ceiling, no redirects, a capped
//! body, and a classification of what went wrong that decides whether the message was
//! delivered.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// The largest agent answer read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// What came of one delivery.
#[derive(Debug)]
pub enum Outcome {
    /// The agent answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// The body, at most [`MAX_RESPONSE_BYTES`].
        body: Vec<u8>,
        /// Time until the answer's headers.
        elapsed: Duration,
    },
    /// Headers arrived, but the body could not be read whole.
    BodyFailed {
        /// HTTP status of the headers.
        status: u16,
        /// Time until the headers.
        elapsed: Duration,
    },
    /// No answer.
    Failed {
        /// Why.
        failure: Failure,
        /// Time spent.
        elapsed: Duration,
    },
}

/// Why a delivery got no answer, in the terms that decide what happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be built (a URL the client refuses).
    BadRequest,
    /// Nobody accepted the connection: refused, unresolvable or a refused address. Not
    /// delivered.
    Unreachable,
    /// The agent did not take the request: the connect timed out, or the connection was
    /// reset or closed before an answer began. Not delivered; worth queueing.
    NotTaken,
    /// The request was sent and the agent said nothing within the idle window or the
    /// deadline. Treated as delivered: it is never queued again (the agent may still be
    /// working on it).
    NoAnswer,
}

impl Failure {
    /// A short text for logs and activity rows (no internal detail).
    pub fn describe(&self) -> &'static str {
        match self {
            Failure::BadRequest => "the request could not be built",
            Failure::Unreachable => "connection refused or address unreachable",
            Failure::NotTaken => "the agent did not take the request (timeout or reset)",
            Failure::NoAnswer => "the agent did not answer in time",
        }
    }
}

/// How long a delivery may stay silent, and for how long at most it may run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The idle window, reset by every event about the target.
    pub idle: Duration,
    /// An absolute deadline, if any.
    pub deadline: Option<Instant>,
}

/// Posts `body` to `url` and reads the answer, resetting the idle timer on each signal from
/// `events`.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    limits: Limits,
    mut events: mpsc::Receiver<()>,
) -> Outcome {
    let started = Instant::now();
    let request = match client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "a2a: request could not be built");
            return Outcome::Failed {
                failure: Failure::BadRequest,
                elapsed: started.elapsed(),
            };
        }
    };
    let exchange = async {
        let mut response = client.execute(request).await.map_err(classify)?;
        let status = response.status().as_u16();
        let at = started.elapsed();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Ok((status, None, at));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok((status, Some(body), at)),
                Err(e) => {
                    tracing::debug!(error = %e, "a2a: agent body read failed");
                    return Ok((status, None, at));
                }
            }
        }
    };
    tokio::pin!(exchange);
    let idle = tokio::time::sleep(limits.idle);
    tokio::pin!(idle);
    let deadline = async {
        match limits.deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            r = &mut exchange => break r,
            Some(()) = events.recv() => idle.as_mut().reset(Instant::now() + limits.idle),
            () = &mut idle => break Err(Failure::NoAnswer),
            () = &mut deadline => break Err(Failure::NoAnswer),
        }
    };
    let elapsed = started.elapsed();
    match result {
        Ok((status, Some(body), at)) => Outcome::Answered {
            status,
            body,
            elapsed: at,
        },
        Ok((status, None, at)) => Outcome::BodyFailed {
            status,
            elapsed: at,
        },
        Err(failure) => Outcome::Failed { failure, elapsed },
    }
}

/// Sorts a client error: before a connection there was no delivery; after it, a reset or
/// early close means the agent did not take the request.
fn classify(e: reqwest::Error) -> Failure {
    if e.is_builder() || crate::ssrf::policy_error(&e).is_some() {
        Failure::BadRequest
    } else if e.is_connect() {
        if e.is_timeout() {
            Failure::NotTaken
        } else {
            Failure::Unreachable
        }
    } else if e.is_redirect() {
        Failure::Unreachable
    } else {
        Failure::NotTaken
    }
}
