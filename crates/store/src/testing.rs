//! Test databases on both backends (feature `testing`).
//!
//! [`TestStore::sqlite`] opens a fresh SQLite file in a temporary directory.
//! [`TestStore::postgres`] creates a fresh database on the PostgreSQL server named by
//! `TEST_DATABASE_URL`, or, when that is unset, on a throwaway cluster started from the
//! machine's PostgreSQL binaries and shared by the tests of this process.

// Test support: a database that cannot be had fails the test that asked for it.
#![allow(clippy::expect_used, clippy::panic)]

use std::ops::Deref;
use std::sync::{Arc, Weak};

use molecule_testkit::PgCluster;
use parking_lot::Mutex;
use sqlx::Connection;

use crate::{DatabaseUrl, Store};

/// Declares each listed `async fn(TestStore)` as two tests, `<name>::sqlite` and
/// `<name>::postgres`, so that one test body runs against both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::testing::TestStore::sqlite().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::testing::TestStore::postgres().await).await;
                }
            }
        )*
    };
}

/// A store on a fresh database, which lives as long as this value.
#[derive(Debug)]
pub struct TestStore {
    store: Store,
    url: String,
    _guard: Guard,
}

#[derive(Debug)]
#[allow(dead_code)] // held for their Drop
enum Guard {
    Dir(tempfile::TempDir),
    Cluster(Arc<PgCluster>),
    None,
}

impl Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    /// A store on a fresh SQLite file.
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = Store::connect(&DatabaseUrl::parse(&url).expect("sqlite url"))
            .await
            .expect("open a SQLite test database");
        TestStore {
            store,
            url,
            _guard: Guard::Dir(dir),
        }
    }

    /// A store on a fresh PostgreSQL database. Panics (fails the test) when no PostgreSQL can
    /// be had: no test on PostgreSQL is ever skipped.
    pub async fn postgres() -> TestStore {
        let (server_url, guard) = postgres_server();
        let name = format!("molecule_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = database_url(&server_url, &name);
        let store = Store::connect(&DatabaseUrl::parse(&url).expect("postgres url"))
            .await
            .expect("open the PostgreSQL test database");
        TestStore {
            store,
            url,
            _guard: guard,
        }
    }

    /// A second store on this PostgreSQL database (another replica: its own pools, cache,
    /// cache listener and group-commit writer) with `settings`. SQLite has no replicas.
    pub async fn replica(&self, settings: crate::StoreSettings) -> TestStore {
        let guard = match &self._guard {
            Guard::Cluster(cluster) => Guard::Cluster(Arc::clone(cluster)),
            Guard::None => Guard::None,
            Guard::Dir(_) => panic!("a SQLite database has no replicas"),
        };
        let url = DatabaseUrl::parse(&self.url).expect("postgres url");
        let store = Store::connect_with(&url, settings)
            .await
            .expect("open a replica of the PostgreSQL test database");
        TestStore {
            store,
            url: self.url.clone(),
            _guard: guard,
        }
    }

    /// A store of the named backend: `"sqlite"` or `"postgres"`.
    pub async fn of(backend: crate::Backend) -> TestStore {
        match backend {
            crate::Backend::Sqlite => Self::sqlite().await,
            crate::Backend::Postgres => Self::postgres().await,
        }
    }

    /// The URL of this test database, for a second process or connection.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs raw SQL (one or more statements) on its own connection: a fault a test installs
    /// in the real database, such as a trigger refusing a row.
    pub async fn execute_raw(&self, sql: &str) {
        if self.url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect to the SQLite test database");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("raw SQL");
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect to the PostgreSQL test database");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("raw SQL");
        }
    }

    /// The one integer a raw SQL query answers (e.g. a `COUNT(*)`), on its own connection.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        if self.url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect to the SQLite test database");
            sqlx::query_scalar(sql)
                .fetch_one(&mut c)
                .await
                .expect("raw SQL")
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect to the PostgreSQL test database");
            sqlx::query_scalar(sql)
                .fetch_one(&mut c)
                .await
                .expect("raw SQL")
        }
    }
}

/// `server_url` with its database replaced by `name`.
fn database_url(server_url: &str, name: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    // postgres://user@host:port/db -> keep everything up to the path.
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

static CLUSTER: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());

fn postgres_server() -> (String, Guard) {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        return (url, Guard::None);
    }
    let mut slot = CLUSTER.lock();
    let cluster = match slot.upgrade() {
        Some(c) => c,
        None => {
            let c = Arc::new(PgCluster::start().unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for the store tests and could not be started: {e}. \
                     Set TEST_DATABASE_URL to use a running server."
                )
            }));
            *slot = Arc::downgrade(&c);
            c
        }
    };
    (cluster.url(), Guard::Cluster(cluster))
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_is_replaced_and_options_kept() {
        assert_eq!(
            database_url("postgres://u@h:1/postgres?sslmode=disable", "t"),
            "postgres://u@h:1/t?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h:1", "t"), "postgres://u@h:1/t");
    }
}
