//! Errors of the store.

use molecule_domain::IllegalTransition;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `DATABASE_URL` is not a PostgreSQL or SQLite URL, or is malformed.
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    /// The SQLite data directory cannot be created or written.
    #[error("data directory {path} is not usable: {error}")]
    DataDir {
        /// The directory.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The SQLite database file cannot be created or made private.
    #[error("cannot make the database file {path} private: {error}")]
    DatabaseFile {
        /// The file.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The database did not accept a connection.
    #[error("cannot connect to {target}: {error}")]
    Connect {
        /// The database, without credentials.
        target: String,
        /// The underlying error.
        error: sqlx::Error,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A query run while connecting failed.
    #[error("database error while connecting: {0}")]
    Database(sqlx::Error),
}

// Written out rather than `#[from]`, which would also make the inner error the `source` and
// print it twice in an error chain; the message already carries it.
impl From<sqlx::migrate::MigrateError> for ConnectError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        ConnectError::Migrate(e)
    }
}

impl From<sqlx::Error> for ConnectError {
    fn from(e: sqlx::Error) -> Self {
        ConnectError::Database(e)
    }
}

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The workspace does not exist.
    #[error("workspace not found")]
    NotFound,
    /// The named parent workspace does not exist (or is removed).
    #[error("parent workspace not found")]
    ParentNotFound,
    /// The new parent would make the workspace its own ancestor.
    #[error("parent_id would create a cycle")]
    ParentCycle,
    /// The transition table refuses the status change from the current status.
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// The caller asked for the transition only from certain statuses, and the workspace is
    /// in another one.
    #[error("workspace is {current}")]
    UnexpectedStatus {
        /// The status it is in.
        current: molecule_domain::WorkspaceStatus,
    },
    /// A stored value is not what the domain allows (e.g. an unknown status string).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The operating system refused random bytes for a token.
    #[error("no randomness available: {0}")]
    Random(String),
    /// A secret value could not be encrypted or decrypted.
    #[error(transparent)]
    Cipher(#[from] crate::cipher::CipherError),
    /// One of the secrets given with a new workspace could not be encrypted or saved; the
    /// workspace was not created.
    #[error("secret {key} could not be {}: {cause}", if *.encrypt { "encrypted" } else { "saved" })]
    SecretWrite {
        /// The secret's key.
        key: String,
        /// Whether encryption (rather than the database write) failed.
        encrypt: bool,
        /// The underlying error, for logs.
        cause: String,
    },
    /// A row with the same unique key (an activity's idempotency key) already exists.
    #[error("duplicate key")]
    Duplicate,
    /// The paging cursor names no row of this workspace (pruned, or another workspace's).
    #[error("cursor not found")]
    CursorNotFound,
    /// The queue item does not exist.
    #[error("queue item not found")]
    QueueItemNotFound,
    /// Any other database error. Its text is for logs, never for response bodies.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Classifies a failed write: a unique-key clash is [`StoreError::Duplicate`], a missing
    /// referenced workspace [`StoreError::NotFound`], anything else a database error.
    pub(crate) fn from_write(e: sqlx::Error) -> Self {
        match e.as_database_error() {
            Some(d) if d.is_unique_violation() => StoreError::Duplicate,
            Some(d) if d.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::Database(e),
        }
    }

    /// Whether the store was closed: retrying cannot succeed.
    pub fn is_closed(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::PoolClosed))
    }
}
