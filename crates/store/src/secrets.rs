//! Workspace and global secrets, encrypted at rest (see `cipher`). Every write goes through
//! one helper that records the `encryption_version` it used; listing never reads values.

use molecule_domain::WorkspaceId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::cipher::{self, CipherError, Secret, SecretKey};
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// A secret as listed: its key and times, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The key (an environment variable name by convention; not validated).
    pub key: String,
    /// When it was first stored.
    pub created_at: OffsetDateTime,
    /// When it was last written.
    pub updated_at: OffsetDateTime,
}

/// A stored value read back: the key and the value, or why it could not be decrypted.
pub type SecretRead = (String, Result<Secret, CipherError>);

#[derive(sqlx::FromRow)]
struct InfoRow {
    key: String,
    created_at: DbTime,
    updated_at: DbTime,
}

#[derive(sqlx::FromRow)]
struct ValueRow {
    key: String,
    encrypted_value: Vec<u8>,
    encryption_version: i32,
}

fn info(rows: Vec<InfoRow>) -> Vec<SecretInfo> {
    rows.into_iter()
        .map(|r| SecretInfo {
            key: r.key,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
        .collect()
}

/// The workspace and global secrets in the database.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    db: &'a Pool,
    key: Option<&'a SecretKey>,
}

/// The columns of a secret as listed (no value).
const INFO_COLUMNS: &str = "key, created_at, updated_at";

/// The columns of a stored value ([`ValueRow`]).
const VALUE_COLUMNS: &str = "key, encrypted_value, encryption_version";

/// Writes a workspace secret: `$1` id, `$2` workspace, `$3` key, `$4` bytes, `$5` version,
/// `$6` now; an existing key gets the new value, version and time.
const UPSERT_WORKSPACE: Sql = Sql::same(
    "INSERT INTO workspace_secrets \
     (id, workspace_id, key, encrypted_value, encryption_version, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6) \
     ON CONFLICT (workspace_id, key) DO UPDATE SET \
     encrypted_value = excluded.encrypted_value, \
     encryption_version = excluded.encryption_version, updated_at = excluded.updated_at",
);

/// Writes a global secret: `$1` id, `$2` key, `$3` bytes, `$4` version, `$5` now; as
/// [`UPSERT_WORKSPACE`].
const UPSERT_GLOBAL: Sql = Sql::same(
    "INSERT INTO global_secrets \
     (id, key, encrypted_value, encryption_version, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $5) \
     ON CONFLICT (key) DO UPDATE SET \
     encrypted_value = excluded.encrypted_value, \
     encryption_version = excluded.encryption_version, updated_at = excluded.updated_at",
);

impl<'a> Secrets<'a> {
    pub(crate) fn new(db: &'a Pool, key: Option<&'a SecretKey>) -> Self {
        Self { db, key }
    }

    /// Whether new values are encrypted (a key is loaded).
    pub fn encrypts(&self) -> bool {
        self.key.is_some()
    }

    /// The secrets of a workspace, sorted by key.
    pub async fn list_workspace(&self, id: WorkspaceId) -> Result<Vec<SecretInfo>, StoreError> {
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM workspace_secrets WHERE workspace_id = $1 ORDER BY key",
        )
        .replace("__COLUMNS__", INFO_COLUMNS);
        let rows: Vec<InfoRow> =
            db_query!(self.db.exec(), query_as::<InfoRow>, sql, DbUuid::from(id); fetch_all)?;
        Ok(info(rows))
    }

    /// The global secrets, sorted by key.
    pub async fn list_global(&self) -> Result<Vec<SecretInfo>, StoreError> {
        let sql = Sql::same("SELECT __COLUMNS__ FROM global_secrets ORDER BY key")
            .replace("__COLUMNS__", INFO_COLUMNS);
        let rows: Vec<InfoRow> = db_query!(self.db.exec(), query_as::<InfoRow>, sql; fetch_all)?;
        Ok(info(rows))
    }

    /// Stores (or replaces) a workspace secret, encrypted when a key is loaded.
    pub async fn set_workspace(
        &self,
        id: WorkspaceId,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let (bytes, version) = cipher::seal(self.key, value)?;
        db_query!(
            self.db.exec(), query, UPSERT_WORKSPACE,
            DbUuid(Uuid::new_v4()), DbUuid::from(id), key.to_owned(), bytes, version,
            DbTime::now();
            execute
        )?;
        Ok(())
    }

    /// Stores (or replaces) a global secret, encrypted when a key is loaded.
    pub async fn set_global(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (bytes, version) = cipher::seal(self.key, value)?;
        db_query!(
            self.db.exec(), query, UPSERT_GLOBAL,
            DbUuid(Uuid::new_v4()), key.to_owned(), bytes, version, DbTime::now();
            execute
        )?;
        Ok(())
    }

    /// Deletes a workspace secret; `false` if there was none.
    pub async fn delete_workspace(&self, id: WorkspaceId, key: &str) -> Result<bool, StoreError> {
        let sql = Sql::same("DELETE FROM workspace_secrets WHERE workspace_id = $1 AND key = $2");
        let n = db_query!(
            self.db.exec(), query, sql, DbUuid::from(id), key.to_owned(); execute
        )?;
        Ok(n > 0)
    }

    /// Deletes a global secret; `false` if there was none.
    pub async fn delete_global(&self, key: &str) -> Result<bool, StoreError> {
        let sql = Sql::same("DELETE FROM global_secrets WHERE key = $1");
        let n = db_query!(self.db.exec(), query, sql, key.to_owned(); execute)?;
        Ok(n > 0)
    }

    /// One workspace secret's value, `None` if it is not set.
    pub async fn get_workspace(
        &self,
        id: WorkspaceId,
        key: &str,
    ) -> Result<Option<Secret>, StoreError> {
        let row = self.workspace_value(id, key).await?;
        row.map(|r| cipher::open(self.key, &r.encrypted_value, r.encryption_version))
            .transpose()
            .map_err(StoreError::from)
    }

    /// Every workspace secret's value (sorted by key), each decrypted on its own so that a
    /// caller can name the ones that failed.
    pub async fn workspace_values(&self, id: WorkspaceId) -> Result<Vec<SecretRead>, StoreError> {
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM workspace_secrets WHERE workspace_id = $1 ORDER BY key",
        )
        .replace("__COLUMNS__", VALUE_COLUMNS);
        let rows: Vec<ValueRow> =
            db_query!(self.db.exec(), query_as::<ValueRow>, sql, DbUuid::from(id); fetch_all)?;
        Ok(self.open_all(rows))
    }

    /// Every global secret's value (sorted by key), each decrypted on its own.
    pub async fn global_values(&self) -> Result<Vec<SecretRead>, StoreError> {
        let sql = Sql::same("SELECT __COLUMNS__ FROM global_secrets ORDER BY key")
            .replace("__COLUMNS__", VALUE_COLUMNS);
        let rows: Vec<ValueRow> = db_query!(self.db.exec(), query_as::<ValueRow>, sql; fetch_all)?;
        Ok(self.open_all(rows))
    }

    fn open_all(&self, rows: Vec<ValueRow>) -> Vec<SecretRead> {
        rows.into_iter()
            .map(|r| {
                let value = cipher::open(self.key, &r.encrypted_value, r.encryption_version);
                (r.key, value)
            })
            .collect()
    }

    /// The stored bytes and `encryption_version` of a workspace secret, as they are in the
    /// database (for inspection and tests: with a key loaded, the bytes are ciphertext).
    pub async fn raw_workspace(
        &self,
        id: WorkspaceId,
        key: &str,
    ) -> Result<Option<(Vec<u8>, i32)>, StoreError> {
        let row = self.workspace_value(id, key).await?;
        Ok(row.map(|r| (r.encrypted_value, r.encryption_version)))
    }

    /// The stored bytes and `encryption_version` of a global secret, as they are.
    pub async fn raw_global(&self, key: &str) -> Result<Option<(Vec<u8>, i32)>, StoreError> {
        let sql = Sql::same("SELECT __COLUMNS__ FROM global_secrets WHERE key = $1")
            .replace("__COLUMNS__", VALUE_COLUMNS);
        let row: Option<ValueRow> = db_query!(
            self.db.exec(), query_as::<ValueRow>, sql, key.to_owned(); fetch_optional
        )?;
        Ok(row.map(|r| (r.encrypted_value, r.encryption_version)))
    }

    /// The stored value of one workspace secret, as it is in the database.
    async fn workspace_value(
        &self,
        id: WorkspaceId,
        key: &str,
    ) -> Result<Option<ValueRow>, StoreError> {
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM workspace_secrets WHERE workspace_id = $1 AND key = $2",
        )
        .replace("__COLUMNS__", VALUE_COLUMNS);
        Ok(db_query!(
            self.db.exec(), query_as::<ValueRow>, sql, DbUuid::from(id), key.to_owned();
            fetch_optional
        )?)
    }

    /// Writes a workspace secret row with these exact bytes and version, bypassing
    /// encryption: for tests of databases written by older versions (plaintext rows).
    pub async fn put_raw_workspace(
        &self,
        id: WorkspaceId,
        key: &str,
        bytes: &[u8],
        version: i32,
    ) -> Result<(), StoreError> {
        db_query!(
            self.db.exec(), query, UPSERT_WORKSPACE,
            DbUuid(Uuid::new_v4()), DbUuid::from(id), key.to_owned(), bytes.to_vec(), version,
            DbTime::now();
            execute
        )?;
        Ok(())
    }

    /// Workspaces a change of the global secret `key` should restart: not removed or paused,
    /// not external, and without a workspace secret of that key (which overrides it).
    pub async fn workspaces_using_global(&self, key: &str) -> Result<Vec<WorkspaceId>, StoreError> {
        let sql = Sql::same(
            "SELECT w.id FROM workspaces w \
             WHERE (w.status IS NULL OR w.status NOT IN ('removed', 'paused')) \
               AND (w.runtime IS NULL OR w.runtime <> 'external') \
               AND NOT EXISTS (SELECT 1 FROM workspace_secrets s \
                               WHERE s.workspace_id = w.id AND s.key = $1) \
             ORDER BY w.created_at",
        );
        let ids: Vec<DbUuid> =
            db_query!(self.db.exec(), query_scalar::<DbUuid>, sql, key.to_owned(); fetch_all)?;
        Ok(ids.into_iter().map(Into::into).collect())
    }
}

/// Seals and upserts workspace secrets inside a transaction (workspace create).
pub(crate) async fn upsert_all_in(
    tx: &mut crate::db::Tx,
    key: Option<&SecretKey>,
    workspace_id: WorkspaceId,
    secrets: &[(String, Secret)],
) -> Result<(), StoreError> {
    for (name, value) in secrets {
        let (bytes, version) =
            cipher::seal(key, value.expose()).map_err(|e| StoreError::SecretWrite {
                key: name.clone(),
                encrypt: true,
                cause: e.to_string(),
            })?;
        db_query!(
            tx.exec(), query, UPSERT_WORKSPACE,
            DbUuid(Uuid::new_v4()), DbUuid::from(workspace_id), name.clone(), bytes, version,
            DbTime::now();
            execute
        )
        .map_err(|e| StoreError::SecretWrite {
            key: name.clone(),
            encrypt: false,
            cause: e.to_string(),
        })?;
    }
    Ok(())
}
