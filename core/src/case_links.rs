//! The secret link to a case's own page, for customers without the app: given on the web form's
//! acknowledgement and in every e-mail about the case. Whoever holds it may read the case's
//! visible messages and answer, reply while the case waits on the customer, and rate the answer.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::new_secret;
use crate::error::Result;

/// The case's link token, made the first time it is asked for.
pub async fn token_for(conn: &mut PgConnection, case_id: Uuid) -> Result<String> {
    sqlx::query!(
        "insert into case_links (case_id, token) values ($1, $2) on conflict (case_id) do nothing",
        case_id,
        new_secret("pqrs_"),
    )
    .execute(&mut *conn)
    .await?;
    Ok(
        sqlx::query_scalar!("select token from case_links where case_id = $1", case_id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The case a link token opens, if any.
pub async fn case_for(conn: &mut PgConnection, token: &str) -> Result<Option<Uuid>> {
    // Tokens are made by `new_secret`; anything else is not looked up.
    if token.len() > 128 {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar!("select case_id from case_links where token = $1", token)
            .fetch_optional(&mut *conn)
            .await?,
    )
}
