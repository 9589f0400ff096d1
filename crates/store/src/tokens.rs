//! Workspace auth tokens: 32 random bytes as 43 characters of base64url, stored only as their
//! SHA-256 hash with an 8-character prefix for display.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use molecule_domain::WorkspaceId;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// A token in plain text. Its `Debug` and `Display` show only the prefix, so it cannot reach a
/// log by accident; [`PlainToken::expose`] gives the text to the one response that returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainToken(String);

impl PlainToken {
    /// Wraps a token presented by a caller.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The full token text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 8 characters, safe to show and log.
    pub fn prefix(&self) -> &str {
        self.0.get(..8).unwrap_or("")
    }

    pub(crate) fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainToken({}…)", self.prefix())
    }
}

impl fmt::Display for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.prefix())
    }
}

/// 32 random bytes as 43 characters of base64url without padding: the format of every token
/// and secret the platform mints.
pub fn random_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A token that was just issued: the only time its plain text is known.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token row's id.
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: WorkspaceId,
    /// The plain text, to hand to the caller once.
    pub token: PlainToken,
}

/// A live token as listed: never its text or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token row's id.
    pub id: Uuid,
    /// The first 8 characters.
    pub prefix: String,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// When it was last accepted.
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct InfoRow {
    id: DbUuid,
    prefix: String,
    created_at: DbTime,
    last_used_at: Option<DbTime>,
}

/// Revokes every live auth token of the workspace `$1` at the time `$2`.
pub(crate) const REVOKE_ALL: Sql = Sql::same(
    "UPDATE workspace_auth_tokens SET revoked_at = $2 \
     WHERE workspace_id = $1 AND revoked_at IS NULL",
);

/// Inserts a live token: id, workspace, hash, prefix, creation time.
const INSERT_TOKEN: Sql = Sql::same(
    "INSERT INTO workspace_auth_tokens (id, workspace_id, token_hash, prefix, created_at) \
     VALUES ($1, $2, $3, $4, $5)",
);

/// The bootstrap token of the workspace `$1` whose hash is `$2`, unexpired at the time `$3`.
const BOOTSTRAP_MATCH: &str = "workspace_id = $1 AND token_hash = $2 AND expires_at > $3";

/// The workspace auth tokens in the database.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceTokens<'a> {
    db: &'a Pool,
    hot: &'a crate::Hot,
}

impl<'a> WorkspaceTokens<'a> {
    pub(crate) fn new(db: &'a Pool, hot: &'a crate::Hot) -> Self {
        Self { db, hot }
    }

    /// Issues a new token for a workspace.
    pub async fn issue(&self, workspace_id: WorkspaceId) -> Result<IssuedToken, StoreError> {
        let token = PlainToken(random_token()?);
        let id = Uuid::new_v4();
        db_query!(
            self.db.exec(), query, INSERT_TOKEN,
            DbUuid(id),
            DbUuid::from(workspace_id),
            token.hash(),
            token.prefix().to_owned(),
            DbTime::now();
            execute
        )?;
        Ok(IssuedToken {
            id,
            workspace_id,
            token,
        })
    }

    /// Replaces every live token of a workspace by one new token, in one transaction: on a
    /// failure the old tokens stay live and no new one exists.
    pub async fn rotate(&self, workspace_id: WorkspaceId) -> Result<IssuedToken, StoreError> {
        let token = PlainToken(random_token()?);
        let id = Uuid::new_v4();
        let now = DbTime::now();
        let mut tx = self.db.begin().await?;
        db_query!(
            tx.exec(), query, REVOKE_ALL,
            DbUuid::from(workspace_id), now;
            execute
        )?;
        db_query!(
            tx.exec(), query, INSERT_TOKEN,
            DbUuid(id),
            DbUuid::from(workspace_id),
            token.hash(),
            token.prefix().to_owned(),
            now;
            execute
        )?;
        tx.commit().await?;
        self.hot.registry.forget_tokens_of(workspace_id);
        Ok(IssuedToken {
            id,
            workspace_id,
            token,
        })
    }

    /// The workspace a live token belongs to, if the token is live and its workspace is not
    /// removed. Does not count as a use. Answered from the registry cache; a miss reads the
    /// database once and keeps a live token's answer.
    pub async fn workspace_of(
        &self,
        token: &PlainToken,
    ) -> Result<Option<WorkspaceId>, StoreError> {
        let hash = token.hash();
        if let Some(id) = self.hot.registry.token(&hash) {
            return Ok(Some(id));
        }
        let ticket = self.hot.registry.ticket();
        let sql = Sql::same(
            "SELECT t.workspace_id FROM workspace_auth_tokens t \
             JOIN workspaces w ON w.id = t.workspace_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL \
               AND (w.status IS NULL OR w.status <> 'removed')",
        );
        let id: Option<WorkspaceId> =
            db_query!(self.db.exec(), query_scalar::<DbUuid>, sql, hash.clone(); fetch_optional)?
                .map(Into::into);
        if let (Some(ticket), Some(id)) = (ticket, id) {
            self.hot.registry.fill_token(ticket, hash, id);
        }
        Ok(id)
    }

    /// Whether the token is live and bound to this workspace; if so its `last_used_at` is
    /// bumped (by the group-commit writer).
    pub async fn validate(
        &self,
        workspace_id: WorkspaceId,
        token: &PlainToken,
    ) -> Result<bool, StoreError> {
        if self.workspace_of(token).await? != Some(workspace_id) {
            return Ok(false);
        }
        self.hot.behind.token_used(token.hash());
        Ok(true)
    }

    /// The live tokens of a workspace, newest first.
    pub async fn list(
        &self,
        workspace_id: WorkspaceId,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        self.hot.behind.barrier().await;
        let sql = Sql::same(
            "SELECT id, prefix, created_at, last_used_at FROM workspace_auth_tokens \
             WHERE workspace_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        );
        let rows: Vec<InfoRow> = db_query!(
            self.db.exec(), query_as::<InfoRow>, sql,
            DbUuid::from(workspace_id), limit, offset;
            fetch_all
        )?;
        Ok(rows
            .into_iter()
            .map(|r| TokenInfo {
                id: r.id.0,
                prefix: r.prefix,
                created_at: r.created_at.0,
                last_used_at: r.last_used_at.map(|t| t.0),
            })
            .collect())
    }

    /// How many live tokens a workspace has.
    pub async fn count_live(&self, workspace_id: WorkspaceId) -> Result<i64, StoreError> {
        let sql = Sql::same(
            "SELECT COUNT(*) FROM workspace_auth_tokens \
             WHERE workspace_id = $1 AND revoked_at IS NULL",
        );
        Ok(db_query!(
            self.db.exec(), query_scalar::<i64>, sql, DbUuid::from(workspace_id);
            fetch_one
        )?)
    }

    /// Revokes one live token of a workspace. `false` if there is no such live token.
    pub async fn revoke(
        &self,
        workspace_id: WorkspaceId,
        token_id: Uuid,
    ) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_auth_tokens SET revoked_at = $3 \
             WHERE id = $1 AND workspace_id = $2 AND revoked_at IS NULL",
        );
        let done = db_query!(
            self.db.exec(), query, sql,
            DbUuid(token_id), DbUuid::from(workspace_id), DbTime::now();
            execute
        )?;
        self.hot.registry.forget_tokens_of(workspace_id);
        Ok(done > 0)
    }

    /// Revokes every live token of a workspace, and its bootstrap token; returns how many
    /// auth tokens were revoked.
    pub async fn revoke_all(&self, workspace_id: WorkspaceId) -> Result<u64, StoreError> {
        let done = db_query!(
            self.db.exec(), query, REVOKE_ALL,
            DbUuid::from(workspace_id), DbTime::now();
            execute
        )?;
        let sql = Sql::same("DELETE FROM workspace_bootstrap_tokens WHERE workspace_id = $1");
        db_query!(self.db.exec(), query, sql, DbUuid::from(workspace_id); execute)?;
        self.hot.registry.forget_tokens_of(workspace_id);
        Ok(done)
    }

    /// Issues the one-time bootstrap token of a workspace, valid until `expires_at`,
    /// replacing any earlier one. Only its hash is stored.
    pub async fn issue_bootstrap(
        &self,
        workspace_id: WorkspaceId,
        expires_at: OffsetDateTime,
    ) -> Result<PlainToken, StoreError> {
        let token = PlainToken(random_token()?);
        let sql = Sql::same(
            "INSERT INTO workspace_bootstrap_tokens \
             (workspace_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id) DO UPDATE SET token_hash = excluded.token_hash, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(workspace_id),
            token.hash(),
            DbTime::now(),
            DbTime::at(expires_at);
            execute
        )?;
        Ok(token)
    }

    /// Whether `token` is the unexpired bootstrap token of this workspace (not consumed).
    pub async fn bootstrap_valid(
        &self,
        workspace_id: WorkspaceId,
        token: &PlainToken,
    ) -> Result<bool, StoreError> {
        let sql = Sql::same("SELECT COUNT(*) FROM workspace_bootstrap_tokens WHERE __MATCH__")
            .replace("__MATCH__", BOOTSTRAP_MATCH);
        let n = db_query!(
            self.db.exec(), query_scalar::<i64>, sql,
            DbUuid::from(workspace_id), token.hash(), DbTime::now();
            fetch_one
        )?;
        Ok(n > 0)
    }

    /// Consumes the bootstrap token of this workspace if `token` is it and it has not
    /// expired: `true` exactly once, for one caller, however many race.
    pub async fn consume_bootstrap(
        &self,
        workspace_id: WorkspaceId,
        token: &PlainToken,
    ) -> Result<bool, StoreError> {
        let sql = Sql::same("DELETE FROM workspace_bootstrap_tokens WHERE __MATCH__")
            .replace("__MATCH__", BOOTSTRAP_MATCH);
        let done = db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(workspace_id), token.hash(), DbTime::now();
            execute
        )?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_show_only_the_prefix() {
        let t = PlainToken::new("abcdefghSECRETSECRETSECRET");
        assert_eq!(format!("{t:?}"), "PlainToken(abcdefgh…)");
        assert_eq!(t.to_string(), "abcdefgh…");
        assert_eq!(t.hash().len(), 32);
    }
}
