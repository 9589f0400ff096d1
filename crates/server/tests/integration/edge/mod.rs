//! The server's front door for a deployment: the tenant guard (`MOLECULE_ORG_ID`, spec
//! auth-router §2.9) and the canvas reverse proxy (`CANVAS_PROXY_URL`, §1.6), over real HTTP
//! against local upstream servers started by the tests (a page that reports what it received,
//! a body that streams in steps the test releases, a WebSocket echo).

mod canvas_proxy;
mod tenant_guard;
