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
    /// The agent answered 2xx with `text/event-stream`: the stream is still open, to be
    /// [`relay`]ed event by event.
    Streaming {
        /// HTTP status.
        status: u16,
        /// The agent's content type.
        content_type: String,
        /// The open answer.
        response: reqwest::Response,
        /// The target's event signals, for the relay's idle timer.
        events: mpsc::Receiver<()>,
    },
}

/// What came of the exchange before the body.
enum Got {
    Whole(u16, Option<Vec<u8>>, Duration),
    Stream(u16, String, reqwest::Response),
}

/// Whether an answer is a server-sent event stream.
fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
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

/// The header naming the A2A protocol version of a request.
pub const A2A_VERSION_HEADER: &str = "A2A-Version";

impl Limits {
    /// Completes at the deadline; never without one.
    async fn deadline_reached(self) {
        match self.deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// One request to an agent.
#[derive(Debug)]
pub struct Request<'a> {
    /// The agent's URL.
    pub url: &'a str,
    /// The JSON-RPC body.
    pub body: Vec<u8>,
    /// `A2A-Version`, when the method is an A2A 1.0 one.
    pub version: Option<&'a str>,
    /// Further headers (the trace context).
    pub headers: &'a [(String, String)],
}

/// Posts the request's body to its URL (with `A2A-Version` when given, and its headers) and
/// reads the answer, resetting the idle timer on each signal from `events`.
pub async fn deliver(
    client: &reqwest::Client,
    request: Request<'_>,
    limits: Limits,
    mut events: mpsc::Receiver<()>,
) -> Outcome {
    let started = Instant::now();
    let Request {
        url,
        body,
        version,
        headers,
    } = request;
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(v) = version {
        request = request.header(A2A_VERSION_HEADER, v);
    }
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = match request.body(body).build() {
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
        if response.status().is_success() && is_event_stream(&response) {
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/event-stream")
                .to_owned();
            return Ok(Got::Stream(status, content_type, response));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Ok(Got::Whole(status, None, at));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(Got::Whole(status, Some(body), at)),
                Err(e) => {
                    tracing::debug!(error = %e, "a2a: agent body read failed");
                    return Ok(Got::Whole(status, None, at));
                }
            }
        }
    };
    tokio::pin!(exchange);
    let idle = tokio::time::sleep(limits.idle);
    tokio::pin!(idle);
    let deadline = limits.deadline_reached();
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
        Ok(Got::Whole(status, Some(body), at)) => Outcome::Answered {
            status,
            body,
            elapsed: at,
        },
        Ok(Got::Whole(status, None, at)) => Outcome::BodyFailed {
            status,
            elapsed: at,
        },
        Ok(Got::Stream(status, content_type, response)) => Outcome::Streaming {
            status,
            content_type,
            response,
            events,
        },
        Err(failure) => Outcome::Failed { failure, elapsed },
    }
}

/// A chunk of a relayed stream, as the caller's body receives it.
pub type Chunk = Result<Vec<u8>, std::io::Error>;

/// How a relayed stream ended.
#[derive(Debug)]
pub struct Relayed {
    /// Bytes read from the agent.
    pub bytes: usize,
    /// The first [`MAX_RESPONSE_BYTES`] of them, for the activity row.
    pub captured: Vec<u8>,
    /// `None` when the agent closed the stream; else why it was cut.
    pub cut: Option<Failure>,
    /// From the first byte of the request to the end of the stream.
    pub elapsed: Duration,
}

/// Forwards an open event stream to `tx` chunk by chunk as it arrives, under the same idle
/// window (reset by every chunk and every event of the target) and deadline as a whole
/// answer. A caller that goes away does not stop the relay: the agent's stream is read to its
/// end so that its outcome is recorded.
pub async fn relay(
    mut response: reqwest::Response,
    limits: Limits,
    mut events: mpsc::Receiver<()>,
    tx: mpsc::Sender<Chunk>,
    started: Instant,
) -> Relayed {
    let mut relayed = Relayed {
        bytes: 0,
        captured: Vec::new(),
        cut: None,
        elapsed: Duration::ZERO,
    };
    let idle = tokio::time::sleep(limits.idle);
    tokio::pin!(idle);
    let deadline = limits.deadline_reached();
    tokio::pin!(deadline);
    let mut caller_gone = false;
    loop {
        tokio::select! {
            chunk = response.chunk() => match chunk {
                Ok(Some(chunk)) => {
                    idle.as_mut().reset(Instant::now() + limits.idle);
                    relayed.bytes = relayed.bytes.saturating_add(chunk.len());
                    let room = MAX_RESPONSE_BYTES.saturating_sub(relayed.captured.len());
                    relayed.captured.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if !caller_gone && tx.send(Ok(chunk.to_vec())).await.is_err() {
                        caller_gone = true;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "a2a: agent stream read failed");
                    relayed.cut = Some(Failure::NotTaken);
                    break;
                }
            },
            Some(()) = events.recv() => idle.as_mut().reset(Instant::now() + limits.idle),
            () = &mut idle => {
                relayed.cut = Some(Failure::NoAnswer);
                break;
            }
            () = &mut deadline => {
                relayed.cut = Some(Failure::NoAnswer);
                break;
            }
        }
    }
    if relayed.cut.is_some() && !caller_gone {
        let _ = tx
            .send(Err(std::io::Error::other("the agent's stream was cut")))
            .await;
    }
    relayed.elapsed = started.elapsed();
    relayed
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
