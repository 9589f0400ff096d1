//! Searching the activity log: the rows whose text columns contain a string, matched with
//! `ILIKE` on PostgreSQL and `LIKE` (case-insensitive for ASCII) on SQLite.

use molecule_domain::WorkspaceId;

use super::{Activity, ActivityRow, COLUMNS, NEWEST_FIRST, Row};
use crate::StoreError;
use crate::db::Sql;
use crate::types::DbUuid;

/// What [`Activity::search`] looks in, as text; `__TEXT__` stands for the dialect's cast of a
/// JSON column to text.
const SEARCHED: &[&str] = &[
    "COALESCE(summary, '')",
    "activity_type",
    "COALESCE(method, '')",
    "COALESCE(status, '')",
    "COALESCE(request_body__TEXT__, '')",
    "COALESCE(response_body__TEXT__, '')",
];

/// The search condition on `$2` (a [`like_pattern`]): any of [`SEARCHED`] matches it with
/// `like` (`ILIKE` or `LIKE`), JSON columns read as text through `json_as_text`.
fn search_condition(like: &str, json_as_text: &str) -> String {
    let any: Vec<String> = SEARCHED
        .iter()
        .map(|column| {
            let column = column.replace("__TEXT__", json_as_text);
            format!("{column} {like} $2 ESCAPE '\\'")
        })
        .collect();
    format!("({})", any.join(" OR "))
}

/// `%q%` for `LIKE … ESCAPE '\'`, with the pattern characters of `q` taken literally.
pub(crate) fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Activity<'_> {
    /// The newest rows of a workspace, at most `limit`, whose summary, type, method, status
    /// or request/response body contains `q` (case-insensitively, `%` and `_` literal); every
    /// row when `q` is `None` or empty.
    pub async fn search(
        &self,
        ws: WorkspaceId,
        q: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        self.hot.behind.barrier().await;
        let pattern = q.filter(|q| !q.is_empty()).map(like_pattern);
        let (pg, lite) = if pattern.is_some() {
            (
                search_condition("ILIKE", "::text"),
                search_condition("LIKE", ""),
            )
        } else {
            ("$2 IS NULL".to_owned(), "$2 IS NULL".to_owned())
        };
        let build = |cond: &str| {
            format!(
                "SELECT {COLUMNS} FROM activity_logs WHERE workspace_id = $1 AND {cond} \
                 {NEWEST_FIRST} LIMIT $3"
            )
        };
        let sql = Sql::built(build(&pg), build(&lite));
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql,
            DbUuid::from(ws), pattern, limit.max(0);
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{like_pattern, search_condition};

    #[test]
    fn the_search_condition_differs_by_dialect_only_in_like_and_the_cast() {
        assert_eq!(
            search_condition("ILIKE", "::text"),
            "(COALESCE(summary, '') ILIKE $2 ESCAPE '\\' OR activity_type ILIKE $2 ESCAPE '\\' \
             OR COALESCE(method, '') ILIKE $2 ESCAPE '\\' OR COALESCE(status, '') ILIKE $2 ESCAPE '\\' \
             OR COALESCE(request_body::text, '') ILIKE $2 ESCAPE '\\' \
             OR COALESCE(response_body::text, '') ILIKE $2 ESCAPE '\\')"
        );
        assert_eq!(
            search_condition("LIKE", ""),
            "(COALESCE(summary, '') LIKE $2 ESCAPE '\\' OR activity_type LIKE $2 ESCAPE '\\' \
             OR COALESCE(method, '') LIKE $2 ESCAPE '\\' OR COALESCE(status, '') LIKE $2 ESCAPE '\\' \
             OR COALESCE(request_body, '') LIKE $2 ESCAPE '\\' \
             OR COALESCE(response_body, '') LIKE $2 ESCAPE '\\')"
        );
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("abc"), "%abc%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
