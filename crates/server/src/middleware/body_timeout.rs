//! The request body read timeout: a body must arrive whole within
//! [`HttpSettings::body_read_timeout`](super::HttpSettings) of the request reaching the
//! router (a total deadline, so a body trickled a byte at a time cannot hold a connection).
//! A late body fails the read, and the answer is replaced by 408
//! `{"error":"request body timeout"}` with `Connection: close`. Requests without a body are
//! not wrapped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::HttpSettings;
use crate::error::ApiError;

/// The message of a 408 answer.
pub const BODY_TIMEOUT: &str = "request body timeout";

/// The error a late body's read fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Puts the body of `request` under the deadline (see the module documentation).
pub async fn body_timeout(
    State(http): State<Arc<HttpSettings>>,
    request: Request,
    next: Next,
) -> Response {
    if http_body::Body::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = Box::pin(tokio::time::sleep(http.body_read_timeout));
    let flag = Arc::clone(&expired);
    let request = request.map(move |inner| {
        Body::new(DeadlineBody {
            inner,
            deadline,
            expired: flag,
        })
    });
    let response = next.run(request).await;
    if expired.load(Ordering::Acquire) {
        tracing::debug!("request body timed out");
        let mut response = ApiError::new(StatusCode::REQUEST_TIMEOUT, BODY_TIMEOUT).into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    response
}

/// A body that fails with [`BodyTimedOut`] once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        // What has arrived is delivered even at the deadline.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
