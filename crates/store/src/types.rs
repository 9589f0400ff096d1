//! Column types that encode and decode the same Rust value on both backends.
//!
//! PostgreSQL has native `uuid`, `timestamptz` and the `workspace_status` enum; SQLite stores
//! the same values as TEXT (timestamps as fixed-width UTC RFC 3339, so text order is time
//! order). Each wrapper implements sqlx's `Type`, `Encode` and `Decode` for both.

use std::str::FromStr;

use molecule_domain::{WireEnum, WorkspaceId, WorkspaceStatus};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// A UUID: `uuid` in PostgreSQL, hyphenated TEXT in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DbUuid(pub Uuid);

/// A point in time: `timestamptz` in PostgreSQL, `YYYY-MM-DDTHH:MM:SS.ffffffZ` TEXT in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DbTime(pub OffsetDateTime);

/// A workspace status: the `workspace_status` enum in PostgreSQL, TEXT in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DbStatus(pub WorkspaceStatus);

/// Any other wire enum: TEXT on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DbText<T>(pub T);

impl From<WorkspaceId> for DbUuid {
    fn from(id: WorkspaceId) -> Self {
        DbUuid(id.as_uuid())
    }
}

impl From<DbUuid> for WorkspaceId {
    fn from(id: DbUuid) -> Self {
        WorkspaceId::from_uuid(id.0)
    }
}

impl DbTime {
    /// Now, truncated to microseconds (PostgreSQL's precision), so that a value reads back
    /// exactly as it was written on both backends.
    pub(crate) fn now() -> Self {
        Self::at(OffsetDateTime::now_utc())
    }

    /// `t` in UTC, truncated to microseconds like [`DbTime::now`].
    pub(crate) fn at(t: OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        DbTime(t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t))
    }

    fn to_sqlite_text(self) -> String {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

// ---- DbUuid ----

impl Type<Postgres> for DbUuid {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for DbUuid {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Uuid as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbUuid {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbUuid(<Uuid as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for DbUuid {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for DbUuid {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0.hyphenated().to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbUuid {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(DbUuid(Uuid::parse_str(text)?))
    }
}

// ---- DbTime ----

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbTime(<OffsetDateTime as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for DbTime {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.to_sqlite_text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(DbTime(OffsetDateTime::parse(text, &Rfc3339)?))
    }
}

// ---- DbStatus ----

const STATUS_TYPE: &str = "workspace_status";

impl Type<Postgres> for DbStatus {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name(STATUS_TYPE)
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        *ty == PgTypeInfo::with_name(STATUS_TYPE) || <&str as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for DbStatus {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.0.as_str(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbStatus {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbStatus(WorkspaceStatus::from_str(<&str as Decode<
            Postgres,
        >>::decode(
            value
        )?)?))
    }
}

impl Type<Sqlite> for DbStatus {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for DbStatus {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Sqlite>>::encode(self.0.as_str(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbStatus {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbStatus(WorkspaceStatus::from_str(<&str as Decode<
            Sqlite,
        >>::decode(
            value
        )?)?))
    }
}

// ---- DbText ----

impl<T: WireEnum> Type<Postgres> for DbText<T> {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<T: WireEnum> Encode<'_, Postgres> for DbText<T> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.0.wire_str(), buf)
    }
}

impl<'r, T: WireEnum> Decode<'r, Postgres> for DbText<T> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbText(T::from_str(<&str as Decode<Postgres>>::decode(
            value,
        )?)?))
    }
}

impl<T: WireEnum> Type<Sqlite> for DbText<T> {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q, T: WireEnum> Encode<'q, Sqlite> for DbText<T> {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Sqlite>>::encode(self.0.wire_str(), buf)
    }
}

impl<'r, T: WireEnum> Decode<'r, Sqlite> for DbText<T> {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbText(T::from_str(<&str as Decode<Sqlite>>::decode(
            value,
        )?)?))
    }
}
