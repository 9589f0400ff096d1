//! The embedded migrations of `migrations/postgres` and `migrations/sqlite`, applied at start.

use sqlx::migrate::Migrator;

use crate::ConnectError;
use crate::db::{Db, Pool, Sql};

static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Applies every pending migration. A PostgreSQL database made by the reference server (it has
/// the reference's `schema_migrations` table) is adopted in place: our migrations are written
/// to be idempotent over the reference schema.
pub(crate) async fn run(db: &Pool) -> Result<(), ConnectError> {
    match db {
        Db::Postgres(pool) => {
            let reference: bool = db_query!(
                db.exec(),
                query_scalar::<bool>,
                Sql::same("SELECT to_regclass('public.schema_migrations') IS NOT NULL");
                fetch_one
            )?;
            if reference {
                tracing::info!(
                    "found the reference server's schema_migrations table: adopting its schema in place"
                );
            }
            POSTGRES.run(pool).await?;
        }
        Db::Sqlite(pools) => SQLITE.run(&pools.write).await?,
    }
    Ok(())
}
