//! The business calendar as configured: computed Colombian holidays plus the overrides an admin
//! stores.

use chrono::NaiveDate;
use sqlx::PgExecutor;

use crate::calendar::{BusinessCalendar, HolidayOverride};
use crate::error::{Error, Result};

pub async fn load_calendar(db: impl PgExecutor<'_>) -> Result<BusinessCalendar> {
    let rows = sqlx::query!("select date, kind, name from holiday_overrides order by date")
        .fetch_all(db)
        .await?;
    let overrides = rows.into_iter().map(|r| match (r.kind.as_str(), r.name) {
        ("add", Some(name)) => HolidayOverride::Add { date: r.date, name },
        _ => HolidayOverride::Remove { date: r.date },
    });
    Ok(BusinessCalendar::new(overrides))
}

/// Declares an extra holiday (a new law, a one-off decree), replacing any override on that date.
pub async fn add_override(db: impl PgExecutor<'_>, date: NaiveDate, name: &str) -> Result<()> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid(
            "invalid_name",
            "the holiday needs a name of 1 to 200 characters",
        ));
    }
    sqlx::query!(
        "insert into holiday_overrides (date, kind, name) values ($1, 'add', $2)
         on conflict (date) do update set kind = 'add', name = excluded.name, created_at = now()",
        date,
        name
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Makes a computed holiday a business day again.
pub async fn remove_holiday(db: impl PgExecutor<'_>, date: NaiveDate) -> Result<()> {
    sqlx::query!(
        "insert into holiday_overrides (date, kind, name) values ($1, 'remove', null)
         on conflict (date) do update set kind = 'remove', name = null, created_at = now()",
        date
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets the override on a date, going back to what the law computes.
pub async fn clear_override(db: impl PgExecutor<'_>, date: NaiveDate) -> Result<bool> {
    let done = sqlx::query!("delete from holiday_overrides where date = $1", date)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}
