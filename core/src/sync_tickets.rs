//! Sync tickets: what opens a sync WebSocket instead of the bearer token. Browsers cannot send
//! headers on a WebSocket, so the credential travels in the URL, where proxies and logs keep it;
//! a ticket lasts minutes, not the session's days. It stays valid until it expires because the
//! stock automerge-repo client reconnects with the same URL after every close, and it dies with
//! its session. Only its digest is stored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::auth::{SessionInfo, SessionRow, User, new_secret, token_digest};
use crate::error::{Error, Result};
use crate::types::Role;

/// How long a ticket lasts unless the settings say otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

pub struct Ticket {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

/// A ticket for the session of `session_token`, expiring after `ttl` or with the session,
/// whichever comes first.
pub async fn issue(db: impl PgExecutor<'_>, session_token: &str, ttl: Duration) -> Result<Ticket> {
    let ticket = new_secret("ats_");
    let ttl = chrono::Duration::from_std(ttl)
        .map_err(|e| Error::Internal(format!("sync ticket ttl: {e}")))?;
    let expires_at = sqlx::query_scalar!(
        r#"insert into sync_tickets (ticket_hash, session_hash, expires_at)
           select $1, token_hash, least(expires_at, $3) from sessions
           where token_hash = $2 and revoked_at is null and expires_at > now()
           returning expires_at"#,
        token_digest(&ticket),
        token_digest(session_token),
        Utc::now() + ttl,
    )
    .fetch_optional(db)
    .await?
    .ok_or(Error::Unauthenticated)?;
    Ok(Ticket { ticket, expires_at })
}

/// The user and session behind an unexpired ticket whose session is still open.
pub async fn redeem(db: impl PgExecutor<'_>, ticket: &str) -> Result<(User, SessionInfo)> {
    let row = sqlx::query_as!(
        SessionRow,
        r#"select u.id, u.email, u.name, u.role as "role: Role", u.customer_id, u.language,
                  s.token_hash, s.expires_at
           from sync_tickets t
           join sessions s on s.token_hash = t.session_hash
           join users u on u.id = s.user_id
           where t.ticket_hash = $1 and t.expires_at > now()
             and s.revoked_at is null and s.expires_at > now() and u.active"#,
        token_digest(ticket)
    )
    .fetch_optional(db)
    .await?
    .ok_or(Error::Unauthenticated)?;
    Ok(row.into())
}
