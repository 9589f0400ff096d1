//! The activity routes over real HTTP against the real router, on both databases: the list's
//! validation and filters, the `since_id` cursor, the session search, agents' self-reports,
//! notifications, and who may call them.

mod list;
mod reports;

use molecule_store::testing::TestStore;
use serde_json::Value;
use time::OffsetDateTime;

use crate::common::{Options, TestServer};

const CURSOR_GONE: &str = "since_id cursor not found (row may have been pruned or belongs to a \
     different workspace); omit since_id to reset";

/// A strict-mode server without a backend (the workspaces are written to the store).
async fn server(db: TestStore) -> TestServer {
    let options = Options {
        backend: false,
        ..Options::STRICT
    };
    TestServer::start(db, options).await
}

/// A fixed instant, `seconds` after another.
fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

/// The ids of a list's items.
fn ids(reply: &Value) -> Vec<String> {
    reply
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {reply}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}
