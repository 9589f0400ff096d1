//! The two backends behind one handle, and the macro that runs one query on either.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, PgPool, Postgres, SqliteConnection, SqlitePool, Transaction};

use crate::{ConnectError, DatabaseUrl};

/// Something that exists once per backend: a pool, a transaction, a connection.
#[derive(Debug, Clone)]
pub(crate) enum Db<P, S> {
    Postgres(P),
    Sqlite(S),
}

/// A pool of either backend.
pub(crate) type Pool = Db<PgPool, SqlitePools>;

/// SQLite's pools: one writer connection, and readers that never wait behind it (WAL).
///
/// Every write and every transaction goes to the single writer connection, so SQLite's one
/// write lock is never contended inside the process. A plain read (a statement that starts
/// with `SELECT`, or a `WITH` that writes nothing) goes to a reader. Read-after-write holds:
/// a read is its own implicit transaction, begun after the write it follows has committed, so
/// WAL shows it the committed state (and single-row reads are drained to their end, see
/// `db_query!`, so no reader keeps an older snapshot open). Readers are opened `query_only`,
/// so a write routed to one by mistake fails instead of taking the write lock.
#[derive(Debug, Clone)]
pub(crate) struct SqlitePools {
    /// The one connection that writes.
    pub(crate) write: SqlitePool,
    /// Read-only connections.
    pub(crate) read: SqlitePool,
}

impl SqlitePools {
    /// The pool a statement belongs on.
    pub(crate) fn route(&self, sql: &str) -> &SqlitePool {
        if is_plain_read(sql) {
            &self.read
        } else {
            &self.write
        }
    }

    /// Closes both pools.
    pub(crate) async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Where one SQLite statement runs: a pool routes it by its text, a connection (a
/// transaction) runs it as it is.
pub(crate) trait SqliteRoute<'e> {
    type Executor: sqlx::Executor<'e, Database = sqlx::Sqlite>;
    fn route(self, sql: &str) -> Self::Executor;
}

impl<'e> SqliteRoute<'e> for &'e SqlitePools {
    type Executor = &'e SqlitePool;
    fn route(self, sql: &str) -> &'e SqlitePool {
        SqlitePools::route(self, sql)
    }
}

impl<'e> SqliteRoute<'e> for &'e mut SqliteConnection {
    type Executor = &'e mut SqliteConnection;
    fn route(self, _sql: &str) -> &'e mut SqliteConnection {
        self
    }
}

/// Whether a statement only reads: it starts with `SELECT`, or with `WITH` and names no
/// writing keyword. Anything else (and anything unsure) is a write.
pub(crate) fn is_plain_read(sql: &str) -> bool {
    let text = sql.trim_start();
    let starts = |word: &str| {
        text.get(..word.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(word))
    };
    if starts("SELECT") {
        return true;
    }
    if !starts("WITH") {
        return false;
    }
    let upper = text.to_ascii_uppercase();
    !["INSERT", "UPDATE", "DELETE", "REPLACE", "RETURNING"]
        .iter()
        .any(|w| upper.contains(w))
}

/// A transaction of either backend.
pub(crate) type Tx = Db<Transaction<'static, Postgres>, Transaction<'static, sqlx::Sqlite>>;

impl Pool {
    /// The pool as an executor for [`db_query!`].
    pub(crate) fn exec(&self) -> Db<&PgPool, &SqlitePools> {
        match self {
            Db::Postgres(p) => Db::Postgres(p),
            Db::Sqlite(p) => Db::Sqlite(p),
        }
    }

    /// Starts a transaction. SQLite transactions take the write lock at once (`BEGIN
    /// IMMEDIATE`), so two of them never deadlock upgrading a read lock.
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(p) => Db::Postgres(p.begin().await?),
            Db::Sqlite(p) => Db::Sqlite(p.write.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

impl Tx {
    /// The transaction as an executor for [`db_query!`].
    pub(crate) fn exec(&mut self) -> Db<&mut PgConnection, &mut SqliteConnection> {
        match self {
            Db::Postgres(t) => Db::Postgres(&mut **t),
            Db::Sqlite(t) => Db::Sqlite(&mut **t),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Db::Postgres(t) => t.commit().await,
            Db::Sqlite(t) => t.commit().await,
        }
    }
}

/// The text of one query, the same for both dialects or written once for each.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    postgres: Cow<'static, str>,
    sqlite: Cow<'static, str>,
}

impl Sql {
    /// A query both dialects understand as written.
    pub(crate) const fn same(sql: &'static str) -> Self {
        Self {
            postgres: Cow::Borrowed(sql),
            sqlite: Cow::Borrowed(sql),
        }
    }

    /// A query written once per dialect.
    pub(crate) const fn split(postgres: &'static str, sqlite: &'static str) -> Self {
        Self {
            postgres: Cow::Borrowed(postgres),
            sqlite: Cow::Borrowed(sqlite),
        }
    }

    /// A query built at run time, once per dialect.
    pub(crate) fn built(postgres: String, sqlite: String) -> Self {
        Self {
            postgres: Cow::Owned(postgres),
            sqlite: Cow::Owned(sqlite),
        }
    }

    /// Both texts with `from` replaced by `to` (for lists built from domain constants).
    pub(crate) fn replace(&self, from: &str, to: &str) -> Self {
        Self {
            postgres: Cow::Owned(self.postgres.replace(from, to)),
            sqlite: Cow::Owned(self.sqlite.replace(from, to)),
        }
    }

    pub(crate) fn postgres(&self) -> &str {
        &self.postgres
    }

    pub(crate) fn sqlite(&self) -> &str {
        &self.sqlite
    }
}

/// Runs one sqlx query on whichever backend an executor (from `Pool::exec` or `Tx::exec`)
/// holds, with the same binds: `db_query!(exec, query_as::<Row>, sql, a, b; fetch_one)`.
/// Every bound value must encode for both backends (see `types`).
macro_rules! db_query {
    // `execute` answers the number of rows affected, the same type on both backends.
    ($exec:expr, $kind:ident $(::<$T:ty>)?, $sql:expr $(, $arg:expr)* ; execute) => {{
        let sql: &$crate::db::Sql = &$sql;
        match $exec {
            $crate::db::Db::Postgres(e) => sqlx::$kind $(::<_, $T>)? (sql.postgres())
                $(.bind($arg))* .execute(e).await.map(|r| r.rows_affected()),
            $crate::db::Db::Sqlite(e) => sqlx::$kind $(::<_, $T>)? (sql.sqlite())
                $(.bind($arg))* .execute($crate::db::SqliteRoute::route(e, sql.sqlite())).await
                .map(|r| r.rows_affected()),
        }
    }};
    // On SQLite, a result stream dropped before its end can leave the statement un-reset,
    // which pins the connection's WAL read snapshot and makes later reads on that pooled
    // connection stale (sqlx issue 2543). Single-row reads therefore drain the stream there.
    ($exec:expr, $kind:ident $(::<$T:ty>)?, $sql:expr $(, $arg:expr)* ; fetch_optional) => {{
        let sql: &$crate::db::Sql = &$sql;
        match $exec {
            $crate::db::Db::Postgres(e) => sqlx::$kind $(::<_, $T>)? (sql.postgres())
                $(.bind($arg))* .fetch_optional(e).await,
            $crate::db::Db::Sqlite(e) => sqlx::$kind $(::<_, $T>)? (sql.sqlite())
                $(.bind($arg))* .fetch_all($crate::db::SqliteRoute::route(e, sql.sqlite())).await
                .map(|rows| rows.into_iter().next()),
        }
    }};
    ($exec:expr, $kind:ident $(::<$T:ty>)?, $sql:expr $(, $arg:expr)* ; fetch_one) => {{
        let sql: &$crate::db::Sql = &$sql;
        match $exec {
            $crate::db::Db::Postgres(e) => sqlx::$kind $(::<_, $T>)? (sql.postgres())
                $(.bind($arg))* .fetch_one(e).await,
            $crate::db::Db::Sqlite(e) => sqlx::$kind $(::<_, $T>)? (sql.sqlite())
                $(.bind($arg))* .fetch_all($crate::db::SqliteRoute::route(e, sql.sqlite())).await
                .and_then(|rows| rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)),
        }
    }};
    ($exec:expr, $kind:ident $(::<$T:ty>)?, $sql:expr $(, $arg:expr)* ; $method:ident) => {{
        let sql: &$crate::db::Sql = &$sql;
        match $exec {
            $crate::db::Db::Postgres(e) => {
                sqlx::$kind $(::<_, $T>)? (sql.postgres()) $(.bind($arg))* .$method(e).await
            }
            $crate::db::Db::Sqlite(e) => {
                sqlx::$kind $(::<_, $T>)? (sql.sqlite()) $(.bind($arg))*
                    .$method($crate::db::SqliteRoute::route(e, sql.sqlite())).await
            }
        }
    }};
}

/// Makes a SQLite database file private before SQLite opens it (see [`crate::private`]): one
/// SQLite would create is created 0600 first; an existing one is tightened. In-memory and
/// read-only databases are left alone.
fn private_sqlite(options: &SqliteConnectOptions) -> Result<(), ConnectError> {
    use sqlx::ConnectOptions;
    let url = options.to_url_lossy();
    let mode = url
        .query_pairs()
        .find(|(key, _)| key == "mode")
        .map(|(_, value)| value.into_owned());
    let path = options.get_filename();
    let create = match mode.as_deref() {
        Some("rwc") => true,
        Some("rw") => false,
        _ => return Ok(()),
    };
    if !create && !path.exists() {
        return Ok(());
    }
    crate::private::private_sqlite_files(path).map_err(|error| ConnectError::DatabaseFile {
        path: path.display().to_string(),
        error,
    })
}

/// SQLite reader connections (reads run beside the one writer).
const SQLITE_READERS: u32 = 4;

/// How long one connection attempt may take at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pool for the URL. A PostgreSQL server is tried once first, so that a refused or
/// unresolvable address fails at once and an unanswering one within `CONNECT_TIMEOUT`.
pub(crate) async fn connect(url: &DatabaseUrl) -> Result<Pool, ConnectError> {
    let target = url.to_string();
    let fail = |error| ConnectError::Connect {
        target: target.clone(),
        error,
    };
    match url {
        DatabaseUrl::Postgres(options) => {
            let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options))
                .await
                .map_err(|_| fail(sqlx::Error::PoolTimedOut))?
                .map_err(fail)?;
            let _ = probe.close().await;
            PgPoolOptions::new()
                .max_connections(20)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options.clone())
                .await
                .map(Db::Postgres)
                .map_err(fail)
        }
        DatabaseUrl::Sqlite(options) => {
            private_sqlite(options)?;
            let options = options
                .clone()
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(CONNECT_TIMEOUT);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options.clone())
                .await
                .map_err(fail)?;
            // A database private to one connection (`:memory:`) has no readers to share it.
            if options.get_filename().as_os_str() == ":memory:" {
                return Ok(Db::Sqlite(SqlitePools {
                    read: write.clone(),
                    write,
                }));
            }
            let read = SqlitePoolOptions::new()
                .max_connections(SQLITE_READERS)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options.pragma("query_only", "ON"))
                .await
                .map_err(fail)?;
            Ok(Db::Sqlite(SqlitePools { write, read }))
        }
    }
}
