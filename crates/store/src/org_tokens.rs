//! Org API tokens: full-admin, tenant-wide bearer tokens. Same format and storage scheme as
//! workspace tokens (SHA-256 hash and 8-character prefix only), plus a name, a provenance
//! label and an optional anchoring `org_id`.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::tokens::{PlainToken, random_token};
use crate::types::{DbTime, DbUuid};

/// Most tokens `list` returns.
pub const ORG_TOKEN_LIST_LIMIT: i64 = 500;

/// A live org token as listed: never its text or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgToken {
    /// The row id.
    pub id: Uuid,
    /// The first 8 characters.
    pub prefix: String,
    /// A label given at mint.
    pub name: Option<String>,
    /// The org (root workspace) the token is anchored to, if any.
    pub org_id: Option<Uuid>,
    /// Who minted it (`admin-token`, `session`, `org-token:<prefix>`).
    pub created_by: Option<String>,
    /// When it was minted.
    pub created_at: OffsetDateTime,
    /// When it was last accepted.
    pub last_used_at: Option<OffsetDateTime>,
}

/// Who a valid org token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgIdentity {
    /// The token row id.
    pub id: Uuid,
    /// Its 8-character prefix.
    pub prefix: String,
    /// Its anchoring org, if any.
    pub org_id: Option<Uuid>,
}

/// An org token that was just minted: the only time its plain text is known.
#[derive(Debug, Clone)]
pub struct IssuedOrgToken {
    /// The stored row.
    pub info: OrgToken,
    /// The plain text, to hand to the caller once.
    pub token: PlainToken,
}

/// The columns read back, in the order of [`Row`].
const COLUMNS: &str = "id, prefix, name, org_id, created_by, created_at, last_used_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    prefix: String,
    name: Option<String>,
    org_id: Option<DbUuid>,
    created_by: Option<String>,
    created_at: DbTime,
    last_used_at: Option<DbTime>,
}

impl From<Row> for OrgToken {
    fn from(r: Row) -> Self {
        OrgToken {
            id: r.id.0,
            prefix: r.prefix,
            name: r.name,
            org_id: r.org_id.map(|u| u.0),
            created_by: r.created_by,
            created_at: r.created_at.0,
            last_used_at: r.last_used_at.map(|t| t.0),
        }
    }
}

/// The org API tokens in the database.
#[derive(Debug, Clone, Copy)]
pub struct OrgTokens<'a> {
    db: &'a Pool,
}

impl<'a> OrgTokens<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Mints a token.
    pub async fn issue(
        &self,
        name: Option<&str>,
        created_by: &str,
        org_id: Option<Uuid>,
    ) -> Result<IssuedOrgToken, StoreError> {
        let token = PlainToken::new(random_token()?);
        let id = Uuid::new_v4();
        let now = DbTime::now();
        let sql = Sql::same(
            "INSERT INTO org_api_tokens (id, token_hash, prefix, name, created_by, created_at, org_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), token.hash(), token.prefix().to_owned(),
            name.map(str::to_owned), created_by.to_owned(), now, org_id.map(DbUuid);
            execute
        )?;
        Ok(IssuedOrgToken {
            info: OrgToken {
                id,
                prefix: token.prefix().to_owned(),
                name: name.map(str::to_owned),
                org_id,
                created_by: Some(created_by.to_owned()),
                created_at: now.0,
                last_used_at: None,
            },
            token,
        })
    }

    /// Who a live token is; its `last_used_at` is bumped. `None` for anything else.
    pub async fn validate(&self, token: &PlainToken) -> Result<Option<OrgIdentity>, StoreError> {
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM org_api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .replace("__COLUMNS__", COLUMNS);
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, token.hash(); fetch_optional)?;
        let Some(row) = row else { return Ok(None) };
        let bump = Sql::same("UPDATE org_api_tokens SET last_used_at = $2 WHERE id = $1");
        if let Err(e) = db_query!(self.db.exec(), query, bump, row.id, DbTime::now(); execute) {
            tracing::warn!(error = %e, "org token last_used_at not updated");
        }
        Ok(Some(OrgIdentity {
            id: row.id.0,
            prefix: row.prefix,
            org_id: row.org_id.map(|u| u.0),
        }))
    }

    /// The live tokens, newest first, at most [`ORG_TOKEN_LIST_LIMIT`].
    pub async fn list(&self) -> Result<Vec<OrgToken>, StoreError> {
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM org_api_tokens WHERE revoked_at IS NULL \
             ORDER BY created_at DESC, id LIMIT $1",
        )
        .replace("__COLUMNS__", COLUMNS);
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, ORG_TOKEN_LIST_LIMIT; fetch_all)?;
        Ok(rows.into_iter().map(OrgToken::from).collect())
    }

    /// Revokes a live token; `false` if there is no such live token.
    pub async fn revoke(&self, id: Uuid) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE org_api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        );
        let n = db_query!(self.db.exec(), query, sql, DbUuid(id), DbTime::now(); execute)?;
        Ok(n > 0)
    }
}
