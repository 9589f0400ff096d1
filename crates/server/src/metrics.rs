//! The Prometheus metrics of the server (spec: observability §1.22), served at `GET /metrics`.
//!
//! Series: `molecule_http_requests_total{method,path,status}`,
//! `molecule_http_request_duration_seconds_total{method,path,status}` (summed seconds) and
//! `molecule_websocket_connections_active`. They are encoded by `prometheus-client` in the
//! OpenMetrics text format.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels of the HTTP series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The request method.
    pub method: String,
    /// The matched route template (`/workspaces/:id`), or `unmatched`.
    pub path: String,
    /// The final status code.
    pub status: u16,
}

/// The metrics registry and its series. Cheap to clone; clones share the series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<HttpLabels, Counter>,
    durations: Family<HttpLabels, Counter<f64, AtomicU64>>,
    websockets: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Counter>::default();
        let durations = Family::<HttpLabels, Counter<f64, AtomicU64>>::default();
        let websockets = Gauge::default();
        // Counters get the `_total` suffix when encoded.
        registry.register(
            "molecule_http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "molecule_http_request_duration_seconds",
            "Summed HTTP request latency in seconds by method, route and status",
            durations.clone(),
        );
        registry.register(
            "molecule_websocket_connections_active",
            "Open WebSocket connections",
            websockets.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            durations,
            websockets,
        }
    }

    /// Counts one finished request that took `seconds`.
    pub fn record_request(&self, labels: HttpLabels, seconds: f64) {
        self.durations.get_or_create(&labels).inc_by(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// The gauge of open WebSocket connections, for code that manages it by hand.
    pub fn websocket_connections(&self) -> &Gauge {
        &self.websockets
    }

    /// Counts one open WebSocket connection until the returned guard is dropped.
    pub fn websocket_connection(&self) -> WebSocketGuard {
        self.websockets.inc();
        WebSocketGuard {
            gauge: self.websockets.clone(),
        }
    }

    /// Every series in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// One open WebSocket connection in `molecule_websocket_connections_active`; dropping it
/// decrements the gauge.
#[derive(Debug)]
pub struct WebSocketGuard {
    gauge: Gauge,
}

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_encoded_with_their_reference_names() {
        let m = Metrics::new();
        let labels = HttpLabels {
            method: "GET".into(),
            path: "/workspaces/:id".into(),
            status: 200,
        };
        m.record_request(labels.clone(), 0.25);
        m.record_request(labels, 0.5);
        let guard = m.websocket_connection();
        let _second = m.websocket_connection();
        drop(guard);
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"molecule_http_requests_total{method="GET",path="/workspaces/:id",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"molecule_http_request_duration_seconds_total{method="GET",path="/workspaces/:id",status="200"} 0.75"#
            ),
            "{text}"
        );
        assert!(
            text.contains("molecule_websocket_connections_active 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
