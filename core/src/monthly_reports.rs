//! The analysis staff write for each month's customer-service report (SGC-SAC-001 REG-003): the
//! quality director or an admin writes it, every save is a new version (never edited), and the
//! report shows the latest with who wrote it and when.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::calendar::local_date;
use crate::error::{Error, Result, violates};
use crate::indicators::Month;
use crate::types::Role;

/// The longest analysis, in characters: a few printed pages.
pub const MAX_ANALYSIS_CHARS: usize = 20_000;

/// One saved version of a month's analysis.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub version: i32,
    pub body: String,
    pub author_id: Uuid,
    pub author_name: String,
    pub created_at: DateTime<Utc>,
}

/// Whether `actor` may write the analysis: the quality director and admins.
pub fn may_write(actor: &User) -> bool {
    matches!(actor.role, Role::QualityDirector | Role::Admin)
}

/// Every version of the month's analysis, newest first.
pub async fn versions(db: impl PgExecutor<'_>, month: Month) -> Result<Vec<Analysis>> {
    Ok(sqlx::query_as!(
        Analysis,
        r#"select a.version, a.body, a.author_id, u.name as author_name, a.created_at
           from monthly_report_analyses a join users u on u.id = a.author_id
           where a.month = $1
           order by a.version desc"#,
        month.first_day(),
    )
    .fetch_all(db)
    .await?)
}

/// The months that have an analysis, newest first, with their latest version.
pub async fn months(db: impl PgExecutor<'_>) -> Result<Vec<(Month, i32)>> {
    Ok(sqlx::query!(
        r#"select month, max(version) as "version!" from monthly_report_analyses
           group by month order by month desc"#
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (Month::of(r.month), r.version))
    .collect())
}

/// The text as it is saved: trimmed, 1 to [`MAX_ANALYSIS_CHARS`] characters.
pub fn parse_body(raw: &str) -> Result<String> {
    let body = raw.trim();
    if body.is_empty() {
        return Err(Error::invalid(
            "analysis_required",
            "write the analysis before saving it",
        ));
    }
    if body.chars().count() > MAX_ANALYSIS_CHARS {
        return Err(Error::invalid(
            "analysis_too_long",
            format!("the analysis has at most {MAX_ANALYSIS_CHARS} characters"),
        ));
    }
    Ok(body.to_owned())
}

/// Saves a new version of the month's analysis, written over version `base` (0: none yet). When
/// someone saved another version since, nothing is saved and the conflict says so.
pub async fn save(
    pool: &PgPool,
    actor: &User,
    month: Month,
    base: i32,
    raw: &str,
) -> Result<Analysis> {
    if !may_write(actor) {
        return Err(Error::forbidden(
            "report_read_only",
            "the analysis is written by the quality director and admins",
        ));
    }
    if month > Month::of(local_date(Utc::now())) {
        return Err(Error::invalid(
            "month_in_future",
            "the report of a month is written once it has begun",
        ));
    }
    let body = parse_body(raw)?;
    let saved = sqlx::query!(
        r#"insert into monthly_report_analyses (month, version, body, author_id)
           select $1, $2 + 1, $3, $4
           where $2 = (select coalesce(max(version), 0) from monthly_report_analyses where month = $1)
           returning version, created_at"#,
        month.first_day(),
        base,
        body,
        actor.id,
    )
    .fetch_optional(pool)
    .await;
    let stale = || {
        Error::conflict(
            "analysis_changed",
            "someone saved another version of this analysis meanwhile",
        )
    };
    match saved {
        Ok(Some(r)) => Ok(Analysis {
            version: r.version,
            body,
            author_id: actor.id,
            author_name: actor.name.clone(),
            created_at: r.created_at,
        }),
        Ok(None) => Err(stale()),
        Err(e) if violates(&e, "monthly_report_analyses_pkey") => Err(stale()),
        Err(e) => Err(e.into()),
    }
}
