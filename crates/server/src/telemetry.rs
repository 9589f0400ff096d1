//! OpenTelemetry traces over OTLP/HTTP (protobuf), on when the standard variables ask for it:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`. The exporter itself reads the
//! rest (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`), the SDK `OTEL_SERVICE_NAME` (default
//! `molecule-server`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_BSP_*`.
//!
//! Spans come from `tracing` (through `tracing-opentelemetry`): one per HTTP request
//! ([`crate::middleware::trace`]), per A2A delivery and per provisioning (with its steps).
//! The W3C trace context travels in `traceparent`/`tracestate`: read from requests, written
//! on deliveries to agents ([`outbound_headers`]).
//!
//! Export runs on the SDK's batch thread; its HTTP requests go through this crate's reqwest
//! client on the server's tokio runtime (no second HTTP stack, no gRPC).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const SERVICE_NAME: &str = "molecule-server";
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter refused its configuration (a malformed endpoint, an unsupported protocol).
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(String),
    /// No tokio runtime to run the exports on.
    #[error("tracing must be set up inside the server's tokio runtime")]
    NoRuntime,
}

/// The tracer provider: its `tracing` layer, flush and shutdown.
#[derive(Debug, Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// Whether the variables (read through `get`) ask for OTLP trace export.
pub fn wanted(get: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| get(k).is_some_and(|v| !v.trim().is_empty());
    let is = |k: &str, v: &str| get(k).is_some_and(|x| x.trim().eq_ignore_ascii_case(v));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

impl Telemetry {
    /// Tracing per the process environment, or `None` when it does not ask for it. Must be
    /// called inside the tokio runtime that will carry the exports.
    pub fn from_env() -> Result<Option<Self>, TelemetryError> {
        if !wanted(|k| std::env::var(k).ok()) {
            return Ok(None);
        }
        if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && !matches!(protocol.trim(), "" | "http/protobuf")
        {
            tracing::warn!(%protocol, "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported; using it");
        }
        Self::build(None).map(Some)
    }

    /// Tracing exported to `traces_endpoint` (the full URL, e.g. `http://host:4318/v1/traces`),
    /// whatever the environment says about the endpoint.
    pub fn to_endpoint(traces_endpoint: &str) -> Result<Self, TelemetryError> {
        Self::build(Some(traces_endpoint))
    }

    fn build(endpoint: Option<&str>) -> Result<Self, TelemetryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(TokioReqwest { client, runtime });
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let exporter = builder
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans of this provider.
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(SERVICE_NAME))
    }

    /// Exports every finished span now. Blocks: call it off the runtime's threads.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "telemetry: flush failed");
        }
    }

    /// Exports what is left and stops the exporter. Blocks: call it off the runtime's threads.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "telemetry: shutdown failed");
        }
    }
}

/// The W3C trace-context headers (`traceparent`, `tracestate`) of the current span, to send
/// with a request to an agent; none when the span is not traced.
pub fn outbound_headers() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    let mut headers = Headers::default();
    TraceContextPropagator::new().inject_context(&context, &mut headers);
    headers.0.into_iter().collect()
}

/// Makes `span` a child of the trace context in `headers` (an incoming `traceparent`), if any.
pub fn adopt_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&RequestHeaders(headers));
    use opentelemetry::trace::TraceContextExt as _;
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

#[derive(Default)]
struct Headers(HashMap<String, String>);

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct RequestHeaders<'a>(&'a axum::http::HeaderMap);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The exporter's HTTP client: this crate's reqwest, run on the server's runtime (the SDK's
/// batch thread only waits for the answer).
#[derive(Debug)]
struct TokioReqwest {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for TokioReqwest {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_variables_turn_it_on() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4318"
        )])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(!wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])));
        assert!(!wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
    }

    #[test]
    fn no_span_no_headers() {
        assert!(outbound_headers().is_empty());
    }
}
