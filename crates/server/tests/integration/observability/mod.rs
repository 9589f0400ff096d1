//! Approvals, the canvas viewport, the workspace config blob, agent records, token usage,
//! traces, transcript and the audit ledger over real HTTP against the real router, both
//! databases (`observability.md` §1.6–1.9, §1.14, §1.15, §1.18, §1.20, §1.21).

mod approvals;
mod artifacts;
mod ledger;
mod records;
mod traces;

use molecule_store::testing::TestStore;

use crate::common::{Options, TestServer};

/// A strict-mode server with these observability settings.
async fn observed(
    db: TestStore,
    langfuse: Option<molecule_server::observability::Langfuse>,
    salt: Option<&str>,
) -> TestServer {
    let salt = salt.map(str::to_owned);
    TestServer::start_configured(db, Options::STRICT, |st| {
        st.with_observability(langfuse, salt)
    })
    .await
}
