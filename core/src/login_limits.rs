//! Login limits: failed attempts counted per e-mail at one client address, per client address and
//! per e-mail from everywhere, each in a fixed window (the README, "Login limits", states the
//! rule). An attempt is counted before its password is checked and refunded if it succeeds, in one
//! statement that locks the counters, so parallel requests cannot all slip under a limit.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::types::PgInterval;

use crate::error::{Error, Result};

/// How many failed logins are let through to the password check in each window.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// For one e-mail from one client address: what stops guessing a password.
    pub per_email_and_address: u32,
    /// From one client address, whatever the e-mail: what stops trying one password on many
    /// accounts.
    pub per_address: u32,
    /// For one e-mail from every address together: a backstop against guessing from many
    /// addresses, well above the others so that one throttled address does not lock the owner out.
    pub per_email: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_email_and_address: 5,
            per_address: 20,
            per_email: 100,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// The part of a client's address that limits apply to: the address itself for IPv4, the /64
/// network for IPv6 (one subscriber usually holds a whole /64).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// An attempt that was counted and may go on to the password check.
pub(crate) struct Attempt {
    pair: String,
    others: [String; 2],
}

fn interval(d: Duration) -> Result<PgInterval> {
    PgInterval::try_from(d).map_err(|e| Error::Internal(format!("login window: {e}")))
}

/// Counts the attempt against every limit; when one is reached the attempt is not counted at all
/// and the caller is told how long to wait.
pub(crate) async fn begin(
    pool: &PgPool,
    limits: &LoginLimits,
    email: &str,
    client: IpAddr,
) -> Result<Attempt> {
    let address = address_key(client);
    // The e-mail as a digest: whatever its length, the key fits the index, and the table lists
    // no addresses.
    let email: String = crate::auth::token_digest(email)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let attempt = Attempt {
        pair: format!("ea:{email}|{address}"),
        others: [format!("a:{address}"), format!("e:{email}")],
    };
    let mut keys = vec![
        attempt.pair.clone(),
        attempt.others[0].clone(),
        attempt.others[1].clone(),
    ];
    // Every attempt locks its rows in the same order, so two attempts cannot deadlock.
    keys.sort();
    let mut tx = pool.begin().await?;
    let counted = sqlx::query!(
        r#"insert into login_throttle (key, window_started_at, attempts)
           select key, now(), 1 from unnest($1::text[]) as key order by key
           on conflict (key) do update set
               attempts = case when login_throttle.window_started_at > now() - $2::interval
                               then login_throttle.attempts + 1 else 1 end,
               window_started_at = case when login_throttle.window_started_at > now() - $2::interval
                               then login_throttle.window_started_at else now() end
           returning key, attempts, window_started_at"#,
        &keys,
        interval(limits.window)?,
    )
    .fetch_all(&mut *tx)
    .await?;
    let limit = |key: &str| {
        if key.starts_with("ea:") {
            limits.per_email_and_address
        } else if key.starts_with("a:") {
            limits.per_address
        } else {
            limits.per_email
        }
    };
    let reached: Option<DateTime<Utc>> = counted
        .iter()
        .filter(|row| i64::from(row.attempts) > i64::from(limit(&row.key)))
        .map(|row| row.window_started_at)
        .max();
    match reached {
        None => {
            tx.commit().await?;
            Ok(attempt)
        }
        Some(started) => {
            tx.rollback().await?;
            let ends = started
                + chrono::Duration::from_std(limits.window)
                    .map_err(|e| Error::Internal(format!("login window: {e}")))?;
            let wait = (ends - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            Err(Error::TooManyAttempts {
                retry_after: wait.max(Duration::from_secs(1)),
            })
        }
    }
}

/// The password was right: the attempt is refunded, and earlier failures of this e-mail at this
/// address are forgotten.
pub(crate) async fn succeeded(pool: &PgPool, attempt: Attempt) -> Result<()> {
    sqlx::query!(
        "with forgotten as (delete from login_throttle where key = $1)
         update login_throttle set attempts = greatest(attempts - 1, 0) where key = any($2)",
        attempt.pair,
        &attempt.others[..],
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The password was never checked (the server was busy): the attempt is refunded.
pub(crate) async fn abandoned(pool: &PgPool, attempt: Attempt) -> Result<()> {
    let keys = [
        attempt.pair,
        attempt.others[0].clone(),
        attempt.others[1].clone(),
    ];
    sqlx::query!(
        "update login_throttle set attempts = greatest(attempts - 1, 0) where key = any($1)",
        &keys[..],
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes counters whose window ended. Returns how many.
pub async fn purge(pool: &PgPool, window: Duration) -> Result<u64> {
    let done = sqlx::query!(
        "delete from login_throttle where window_started_at <= now() - $1::interval",
        interval(window)?,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(address_key(mapped), "192.0.2.7");
    }
}
