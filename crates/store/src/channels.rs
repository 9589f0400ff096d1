//! Chat channels (`workspace_channels`): a workspace's Telegram, Slack, Discord or Lark
//! connection, its chat history (`channel_chat_history`) and the polling leases that give each
//! polling channel one poller across replicas.
//!
//! The store knows no adapter: the caller names the config keys that are sensitive, and those
//! are sealed as `ec1:` text (AES-256-GCM under the secrets key, see `cipher`) before they are
//! written. Every `ec1:` value is opened on read, so a key that stops being sensitive still
//! reads back. Other keys stay plaintext (SQL can still read `channel_config->>'chat_id'`).

use molecule_domain::WorkspaceId;
use serde_json::{Map, Value};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::cipher::{self, CipherError, SecretKey};
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// One stored channel, its config opened. Its `Debug` lists the config's keys only.
#[derive(Clone, PartialEq)]
pub struct Channel {
    /// Its id.
    pub id: Uuid,
    /// The workspace it talks to.
    pub workspace_id: WorkspaceId,
    /// `telegram`, `slack`, `discord` or `lark`.
    pub channel_type: String,
    /// The adapter config, sensitive values decrypted (those that could not be are left
    /// sealed and [`Channel::config_error`] says why).
    pub config: Map<String, Value>,
    /// Why a sealed value could not be opened, if one could not.
    pub config_error: Option<CipherError>,
    /// Whether it polls and accepts messages.
    pub enabled: bool,
    /// User or chat ids allowed to talk to the agent; empty: everyone.
    pub allowed_users: Vec<String>,
    /// The last inbound or outbound message.
    pub last_message_at: Option<OffsetDateTime>,
    /// Messages in and out so far.
    pub message_count: i32,
    /// Outbound sends allowed in all (`None`: unlimited).
    pub channel_budget: Option<i32>,
    /// Created at.
    pub created_at: OffsetDateTime,
    /// Last changed at.
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("channel_type", &self.channel_type)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("config_error", &self.config_error)
            .field("enabled", &self.enabled)
            .field("message_count", &self.message_count)
            .finish_non_exhaustive()
    }
}

/// A channel to create. Its `Debug` lists the config's keys only.
#[derive(Clone, PartialEq)]
pub struct NewChannel {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The adapter type.
    pub channel_type: String,
    /// The config in plaintext.
    pub config: Map<String, Value>,
    /// The config keys sealed at rest.
    pub sensitive: Vec<String>,
    /// The allowlist.
    pub allowed_users: Vec<String>,
    /// Whether it is enabled.
    pub enabled: bool,
}

impl std::fmt::Debug for NewChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewChannel")
            .field("workspace_id", &self.workspace_id)
            .field("channel_type", &self.channel_type)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A change to a channel: `None` keeps the stored value. Its `Debug` shows no config value.
#[derive(Clone, Default, PartialEq)]
pub struct ChannelUpdate {
    /// The whole new config in plaintext, and the keys sealed at rest.
    pub config: Option<(Map<String, Value>, Vec<String>)>,
    /// A new allowlist.
    pub allowed_users: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// A new budget (`Some(None)`: unlimited).
    pub channel_budget: Option<Option<i32>>,
}

impl std::fmt::Debug for ChannelUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelUpdate")
            .field(
                "config",
                &self
                    .config
                    .as_ref()
                    .map(|(c, _)| c.keys().collect::<Vec<_>>()),
            )
            .field("allowed_users", &self.allowed_users)
            .field("enabled", &self.enabled)
            .field("channel_budget", &self.channel_budget)
            .finish()
    }
}

const COLUMNS: &str = "id, workspace_id, channel_type, channel_config, enabled, allowed_users, \
     last_message_at, message_count, channel_budget, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    workspace_id: DbUuid,
    channel_type: String,
    channel_config: Json<Value>,
    enabled: bool,
    allowed_users: Option<Json<Value>>,
    last_message_at: Option<DbTime>,
    message_count: i32,
    channel_budget: Option<i32>,
    created_at: DbTime,
    updated_at: DbTime,
}

/// The allowlist as strings (numbers as their decimal text).
fn users(v: Option<Json<Value>>) -> Vec<String> {
    let Some(Json(Value::Array(items))) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// The config with every sealed value opened.
fn open_config(
    key: Option<&SecretKey>,
    config: Value,
) -> (Map<String, Value>, Option<CipherError>) {
    let Value::Object(mut map) = config else {
        return (Map::new(), None);
    };
    let mut error = None;
    for value in map.values_mut() {
        if let Value::String(s) = value
            && s.starts_with(cipher::TEXT_PREFIX)
        {
            match cipher::open_text(key, s) {
                Ok(plain) => *s = plain,
                Err(e) => error = Some(e),
            }
        }
    }
    (map, error)
}

/// The config with the sensitive string values sealed.
fn seal_config(
    key: Option<&SecretKey>,
    config: &Map<String, Value>,
    sensitive: &[String],
) -> Result<Value, CipherError> {
    let mut sealed = config.clone();
    for name in sensitive {
        if let Some(Value::String(s)) = sealed.get_mut(name) {
            *s = cipher::seal_text(key, s)?;
        }
    }
    Ok(Value::Object(sealed))
}

/// The chat history entries kept per chat.
pub const HISTORY_KEEP: usize = 10;

/// The channels repository.
#[derive(Debug, Clone, Copy)]
pub struct Channels<'a> {
    db: &'a Pool,
    key: Option<&'a SecretKey>,
}

impl<'a> Channels<'a> {
    pub(crate) fn new(db: &'a Pool, key: Option<&'a SecretKey>) -> Self {
        Self { db, key }
    }

    fn channel(&self, r: Row) -> Channel {
        let (config, config_error) = open_config(self.key, r.channel_config.0);
        Channel {
            id: r.id.0,
            workspace_id: r.workspace_id.into(),
            channel_type: r.channel_type,
            config,
            config_error,
            enabled: r.enabled,
            allowed_users: users(r.allowed_users),
            last_message_at: r.last_message_at.map(|t| t.0),
            message_count: r.message_count,
            channel_budget: r.channel_budget,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        }
    }

    /// The workspace's channels, oldest first.
    pub async fn list(&self, ws: WorkspaceId) -> Result<Vec<Channel>, StoreError> {
        let sql = Sql::same(
            "SELECT __C__ FROM workspace_channels WHERE workspace_id = $1 \
             ORDER BY created_at ASC, id ASC",
        )
        .replace("__C__", COLUMNS);
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws); fetch_all)?;
        Ok(rows.into_iter().map(|r| self.channel(r)).collect())
    }

    /// One channel of the workspace (another workspace's is `None`).
    pub async fn get(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<Channel>, StoreError> {
        let sql =
            Sql::same("SELECT __C__ FROM workspace_channels WHERE id = $1 AND workspace_id = $2")
                .replace("__C__", COLUMNS);
        let row: Option<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid(id), DbUuid::from(ws); fetch_optional
        )?;
        Ok(row.map(|r| self.channel(r)))
    }

    /// One channel by id alone (the manager's pollers).
    pub async fn get_by_id(&self, id: Uuid) -> Result<Option<Channel>, StoreError> {
        let sql = Sql::same("SELECT __C__ FROM workspace_channels WHERE id = $1")
            .replace("__C__", COLUMNS);
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid(id); fetch_optional)?;
        Ok(row.map(|r| self.channel(r)))
    }

    /// Every enabled channel (of one type, when given), oldest first.
    pub async fn enabled(&self, channel_type: Option<&str>) -> Result<Vec<Channel>, StoreError> {
        let rows: Vec<Row> = match channel_type {
            Some(t) => {
                let sql = Sql::same(
                    "SELECT __C__ FROM workspace_channels WHERE enabled AND channel_type = $1 \
                     ORDER BY created_at ASC, id ASC",
                )
                .replace("__C__", COLUMNS);
                db_query!(self.db.exec(), query_as::<Row>, sql, t.to_owned(); fetch_all)?
            }
            None => {
                let sql = Sql::same(
                    "SELECT __C__ FROM workspace_channels WHERE enabled \
                     ORDER BY created_at ASC, id ASC",
                )
                .replace("__C__", COLUMNS);
                db_query!(self.db.exec(), query_as::<Row>, sql; fetch_all)?
            }
        };
        Ok(rows.into_iter().map(|r| self.channel(r)).collect())
    }

    /// Creates a channel, sealing the sensitive config values. A type the workspace already
    /// has is [`StoreError::Duplicate`], a missing workspace [`StoreError::NotFound`].
    pub async fn create(&self, new: &NewChannel) -> Result<Channel, StoreError> {
        let id = Uuid::new_v4();
        let config = seal_config(self.key, &new.config, &new.sensitive)?;
        let users = Value::from(new.allowed_users.clone());
        let sql = Sql::same(
            "INSERT INTO workspace_channels (id, workspace_id, channel_type, channel_config, \
             enabled, allowed_users, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), DbUuid::from(new.workspace_id), new.channel_type.clone(), Json(config),
            new.enabled, Json(users), DbTime::now();
            execute
        )
        .map_err(StoreError::from_write)?;
        self.get(new.workspace_id, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Applies `change` to the workspace's channel; `false` when there is no such channel.
    pub async fn update(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        change: &ChannelUpdate,
    ) -> Result<bool, StoreError> {
        let config = match &change.config {
            Some((config, sensitive)) => Some(Json(seal_config(self.key, config, sensitive)?)),
            None => None,
        };
        let users = change
            .allowed_users
            .as_ref()
            .map(|u| Json(Value::from(u.clone())));
        let (set_budget, budget) = match change.channel_budget {
            Some(b) => (true, b),
            None => (false, None),
        };
        let sql = Sql::same(
            "UPDATE workspace_channels SET \
             channel_config = COALESCE($3, channel_config), \
             allowed_users = COALESCE($4, allowed_users), \
             enabled = COALESCE($5, enabled), \
             channel_budget = CASE WHEN $6 THEN $7 ELSE channel_budget END, \
             updated_at = $8 WHERE id = $1 AND workspace_id = $2",
        );
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), DbUuid::from(ws), config, users, change.enabled, set_budget, budget,
            DbTime::now();
            execute
        )?;
        Ok(n > 0)
    }

    /// Deletes the workspace's channel; `false` when there is no such channel.
    pub async fn delete(&self, ws: WorkspaceId, id: Uuid) -> Result<bool, StoreError> {
        let history = Sql::same("DELETE FROM channel_chat_history WHERE channel_id = $1");
        let sql = Sql::same("DELETE FROM workspace_channels WHERE id = $1 AND workspace_id = $2");
        let mut tx = self.db.begin().await?;
        db_query!(tx.exec(), query, history, DbUuid(id); execute)?;
        let n = db_query!(tx.exec(), query, sql, DbUuid(id), DbUuid::from(ws); execute)?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Counts one message in or out: `message_count + 1`, `last_message_at = now`.
    pub async fn record_message(&self, id: Uuid) -> Result<(), StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_channels SET message_count = message_count + 1, \
             last_message_at = $2 WHERE id = $1",
        );
        db_query!(self.db.exec(), query, sql, DbUuid(id), DbTime::now(); execute)?;
        Ok(())
    }

    /// Takes or renews the polling lease of a channel for `holder` until `now + lease`:
    /// `true` when `holder` holds it now. Nobody else holds it while their lease runs, so one
    /// poller runs per channel across replicas (one conditional `UPDATE`, atomic on both
    /// databases).
    pub async fn claim_poll(
        &self,
        id: Uuid,
        holder: &str,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<bool, StoreError> {
        let now = DbTime::at(now);
        let sql = Sql::same(
            "UPDATE workspace_channels SET poll_holder = $2, poll_expires_at = $3 \
             WHERE id = $1 AND enabled AND (poll_holder IS NULL OR poll_holder = $2 \
             OR poll_expires_at IS NULL OR poll_expires_at <= $4)",
        );
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), holder.to_owned(), DbTime::at(now.0 + lease), now;
            execute
        )?;
        Ok(n > 0)
    }

    /// Gives up `holder`'s polling lease of a channel (if it holds it).
    pub async fn release_poll(&self, id: Uuid, holder: &str) -> Result<(), StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_channels SET poll_holder = NULL, poll_expires_at = NULL \
             WHERE id = $1 AND poll_holder = $2",
        );
        db_query!(self.db.exec(), query, sql, DbUuid(id), holder.to_owned(); execute)?;
        Ok(())
    }

    /// Who holds the polling lease of a channel, and until when.
    pub async fn poll_holder(
        &self,
        id: Uuid,
    ) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
        let sql =
            Sql::same("SELECT poll_holder, poll_expires_at FROM workspace_channels WHERE id = $1");
        let row: Option<(Option<String>, Option<DbTime>)> = db_query!(
            self.db.exec(), query_as::<(Option<String>, Option<DbTime>)>, sql, DbUuid(id);
            fetch_optional
        )?;
        Ok(row.and_then(|(h, t)| Some((h?, t?.0))))
    }

    /// The chat's history entries, newest first, when written within `max_age` of `now`.
    pub async fn history(
        &self,
        channel: Uuid,
        chat_id: &str,
        now: OffsetDateTime,
        max_age: time::Duration,
    ) -> Result<Vec<Value>, StoreError> {
        let sql = Sql::same(
            "SELECT entries FROM channel_chat_history WHERE channel_id = $1 AND chat_id = $2 \
             AND updated_at > $3",
        );
        let row: Option<Json<Value>> = db_query!(
            self.db.exec(), query_scalar::<Json<Value>>, sql,
            DbUuid(channel), chat_id.to_owned(), DbTime::at(now - max_age);
            fetch_optional
        )?;
        Ok(match row {
            Some(Json(Value::Array(items))) => items,
            _ => Vec::new(),
        })
    }

    /// Puts `entry` first in the chat's history, keeping the newest [`HISTORY_KEEP`]; older
    /// entries than `max_age` are dropped first.
    pub async fn push_history(
        &self,
        channel: Uuid,
        chat_id: &str,
        entry: Value,
        now: OffsetDateTime,
        max_age: time::Duration,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let read = Sql::split(
            "SELECT entries FROM channel_chat_history WHERE channel_id = $1 AND chat_id = $2 \
             AND updated_at > $3 FOR UPDATE",
            "SELECT entries FROM channel_chat_history WHERE channel_id = $1 AND chat_id = $2 \
             AND updated_at > $3",
        );
        let row: Option<Json<Value>> = db_query!(
            tx.exec(), query_scalar::<Json<Value>>, read,
            DbUuid(channel), chat_id.to_owned(), DbTime::at(now - max_age);
            fetch_optional
        )?;
        let mut entries = match row {
            Some(Json(Value::Array(items))) => items,
            _ => Vec::new(),
        };
        entries.insert(0, entry);
        entries.truncate(HISTORY_KEEP);
        let write = Sql::same(
            "INSERT INTO channel_chat_history (channel_id, chat_id, entries, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (channel_id, chat_id) DO UPDATE SET \
             entries = excluded.entries, updated_at = excluded.updated_at",
        );
        db_query!(
            tx.exec(), query, write,
            DbUuid(channel), chat_id.to_owned(), Json(Value::Array(entries)), DbTime::at(now);
            execute
        )
        .map_err(StoreError::from_write)?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the chat's history (`/reset`).
    pub async fn clear_history(&self, channel: Uuid, chat_id: &str) -> Result<(), StoreError> {
        let sql =
            Sql::same("DELETE FROM channel_chat_history WHERE channel_id = $1 AND chat_id = $2");
        db_query!(self.db.exec(), query, sql, DbUuid(channel), chat_id.to_owned(); execute)?;
        Ok(())
    }

    /// The raw stored config (sealed values as stored), for checks of encryption at rest.
    pub async fn stored_config(&self, id: Uuid) -> Result<Option<Value>, StoreError> {
        let sql = Sql::same("SELECT channel_config FROM workspace_channels WHERE id = $1");
        let row: Option<Json<Value>> = db_query!(
            self.db.exec(), query_scalar::<Json<Value>>, sql, DbUuid(id); fetch_optional
        )?;
        Ok(row.map(|j| j.0))
    }
}
