//! OpenTelemetry, exported to a local OTLP/HTTP receiver started here (it decodes the
//! protobuf exports with `opentelemetry-proto`): an A2A message through the server is one
//! trace from the HTTP request span to the `a2a.deliver` span, and the echo agent (a real
//! process) receives that trace's `traceparent`, naming the delivery span as its parent; a
//! caller's `traceparent` is continued; provisioning is a `workspace.provision` span with its
//! steps as events.
//!
//! The spans are collected through a subscriber set for the test's thread (the tokio test
//! runtime is single-threaded, so the in-process server's tasks run there too).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use molecule_server::telemetry::Telemetry;
use molecule_store::testing::TestStore;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message as _;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::chat_files::agent::EchoAgent;
use crate::common::{Options, TestServer, assert_status, eventually};

/// Every span received, with its resource's `service.name`.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn find(&self, wanted: impl Fn(&Span) -> bool) -> Option<(String, Span)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s)| wanted(s))
            .cloned()
    }
}

/// The OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn receiver() -> (String, Received, tokio::task::JoinHandle<()>) {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let Ok(export) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                let mut spans = sink.0.lock().unwrap();
                for resource in export.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            AnyValue::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
                    }
                }
                // An empty ExportTraceServiceResponse: full success.
                (axum::http::StatusCode::OK, Vec::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, received, task)
}

/// Exports what has ended (the flush blocks, so off the runtime's one thread).
async fn flush(telemetry: &Telemetry) {
    let telemetry = telemetry.clone();
    tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .unwrap();
}

/// A local OTLP receiver and this test thread's spans exported to it (until dropped).
struct Traced {
    telemetry: Telemetry,
    received: Received,
    _receiver: tokio::task::JoinHandle<()>,
    _subscriber: tracing::subscriber::DefaultGuard,
}

async fn traced() -> Traced {
    let (url, received, receiver) = receiver().await;
    let telemetry = Telemetry::to_endpoint(&format!("{url}/v1/traces")).unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(telemetry.layer())
        .set_default();
    Traced {
        telemetry,
        received,
        _receiver: receiver,
        _subscriber: subscriber,
    }
}

/// Flushes until a span `wanted` accepts has been received.
async fn exported(
    traced: &Traced,
    what: &str,
    wanted: impl Fn(&Span) -> bool + Copy,
) -> (String, Span) {
    let (telemetry, received) = (&traced.telemetry, &traced.received);
    eventually(what, || async move {
        flush(telemetry).await;
        received.find(wanted).is_some()
    })
    .await;
    received.find(wanted).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A strict server whose address policy lets the loopback echo agent through.
async fn server() -> TestServer {
    TestServer::start_configured(TestStore::sqlite().await, Options::STRICT, |st| {
        let mut settings = st.a2a.settings().clone();
        settings.policy.dev_mode = true;
        st.with_a2a_settings(settings)
    })
    .await
}

#[tokio::test]
async fn an_a2a_call_is_one_trace_that_reaches_the_agent() {
    let traced = traced().await;
    let s = server().await;
    let (id, token) = s.external("traced", None).await;
    let _agent = EchoAgent::start(&s, id, &token).await;

    let message = json!({
        "jsonrpc": "2.0",
        "id": "1",
        "method": "message/send",
        "params": {"message": {"role": "user", "messageId": "m-1",
                               "parts": [{"kind": "text", "text": "traced"}]}},
    });
    let reply = assert_status(
        s.admin("POST", &format!("/workspaces/{id}/a2a"), Some(message))
            .await,
        200,
    );
    // What the agent received: version, trace id, parent span id, flags.
    let traceparent = reply["result"]["metadata"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("the agent saw no traceparent: {reply}"))
        .to_owned();
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    let (trace_id, parent_id) = (fields[1].to_owned(), fields[2].to_owned());
    assert_eq!(fields[3], "01", "sampled: {traceparent}");

    let (service, deliver) =
        exported(&traced, "the a2a.deliver span", |s| s.name == "a2a.deliver").await;
    assert_eq!(service, "molecule-server");
    assert_eq!(
        hex(&deliver.trace_id),
        trace_id,
        "the agent saw the same trace"
    );
    assert_eq!(
        hex(&deliver.span_id),
        parent_id,
        "the delivery is the agent's parent"
    );
    assert_eq!(deliver.kind, SpanKind::Client as i32);

    let route = "POST /workspaces/{id}/a2a";
    let (_, request) = exported(&traced, "the HTTP request span", |s| {
        s.name == "POST /workspaces/{id}/a2a"
    })
    .await;
    assert_eq!(hex(&request.trace_id), trace_id, "{route}: one trace");
    assert_eq!(request.kind, SpanKind::Server as i32);
    let status = request
        .attributes
        .iter()
        .find(|a| a.key == "http.response.status_code")
        .and_then(|a| a.value.clone()?.value);
    assert_eq!(status, Some(AnyValue::IntValue(200)));
    assert_eq!(
        deliver.parent_span_id, request.span_id,
        "the delivery is a child of the request"
    );
}

#[tokio::test]
async fn a_callers_traceparent_is_continued() {
    let traced = traced().await;
    let s = server().await;
    let reply = s
        .http
        .get(format!("{}/health", s.base))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let (_, span) = exported(&traced, "the GET /health span", |s| s.name == "GET /health").await;
    assert_eq!(hex(&span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
}

#[tokio::test]
async fn provisioning_is_a_span_with_its_steps() {
    let traced = traced().await;
    let s = server().await;
    let id = s
        .create(json!({"name": "provisioned", "runtime": "langgraph"}))
        .await;
    let (_, span) = exported(&traced, "the workspace.provision span", |s| {
        s.name == "workspace.provision"
    })
    .await;
    let attribute = |key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone()?.value)
    };
    assert_eq!(
        attribute("workspace"),
        Some(AnyValue::StringValue(id.to_string()))
    );
    let steps: Vec<(String, String)> = span
        .events
        .iter()
        .filter(|e| e.name == "provision step")
        .map(|e| {
            let field = |k: &str| {
                e.attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| match a.value.clone()?.value? {
                        AnyValue::StringValue(s) => Some(s),
                        _ => None,
                    })
                    .unwrap_or_default()
            };
            (field("step"), field("status"))
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("container".to_owned(), "started".to_owned()),
            ("container".to_owned(), "done".to_owned()),
        ],
        "{span:?}"
    );
}
