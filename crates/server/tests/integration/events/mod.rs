//! The event routes over real HTTP against the real router: `/ws` (canvas and workspace
//! clients, auth, origin check), the SSE stream, the structure-event log, and two server
//! replicas on one PostgreSQL sharing their events. Here: a server that emits events on
//! demand, and a WebSocket client.

mod replicas;
mod stream;
mod ws;

use std::time::Duration;

use futures_util::StreamExt;
use molecule_domain::{EventType, WorkspaceId};
use molecule_server::Security;
use molecule_server::http_server::ServerSettings;
use molecule_server::{AppState, app};
use molecule_store::{NewWorkspace, Store};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::common::serve_router;

/// An upper bound for anything awaited; never a synchronisation.
const BOUND: Duration = Duration::from_secs(15);
const ADMIN: &str = "admin-token";

/// A server on a free loopback port, serving the real router.
struct Server {
    addr: std::net::SocketAddr,
    state: AppState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(state: AppState) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app::router(state.clone());
    let task = serve_router(listener, app, ServerSettings::default());
    Server { addr, state, task }
}

async fn strict(store: &Store) -> Server {
    serve(AppState::new(
        store.clone(),
        Security::strict(ADMIN.into(), false),
    ))
    .await
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` with `bearer` (if any).
    async fn get(&self, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(self.url(path));
        if let Some(b) = bearer {
            request = request.bearer_auth(b);
        }
        request.send().await.unwrap()
    }

    async fn emit(&self, event: EventType, ws: Option<WorkspaceId>, payload: Value) {
        self.state.events.emit(event, ws, payload).await;
    }

    /// Opens `/ws<query>` with these headers; on refusal, the status and body.
    async fn ws(&self, query: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
        let mut request = format!("ws://{}/ws{query}", self.addr)
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match tokio::time::timeout(BOUND, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
        {
            Ok((stream, _)) => Ok(Ws(stream)),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((response.status().as_u16(), body))
            }
            Err(e) => panic!("websocket error: {e}"),
        }
    }

    async fn canvas(&self) -> Ws {
        self.ws("", &[("authorization", &format!("Bearer {ADMIN}"))])
            .await
            .unwrap()
    }
}

struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    /// The next event envelope.
    async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(BOUND, self.0.next())
                .await
                .expect("an event in time")
                .expect("the socket is open")
                .expect("a frame");
            match msg {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }
}

async fn workspace(store: &Store, name: &str, parent: Option<WorkspaceId>) -> WorkspaceId {
    let mut new = NewWorkspace::named(name);
    new.parent_id = parent;
    store.workspaces().create(new).await.unwrap().id
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["error"].as_str().unwrap().to_owned()
}
