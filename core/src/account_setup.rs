//! App users the company creates for its customers (PRO-SIG-10 has the company assign each
//! customer a user), and the single-use link with which the customer sets the first password.
//!
//! The user is created without a password, so nobody can log in as them until the customer opens
//! the link sent to the e-mail on file. The link's token is made by the e-mail channel when it
//! writes the message ([`issue`]) and only its SHA-256 is stored: the secret never rests in the
//! database in clear, and a retried send mails a fresh link that replaces the unsent one. Asking
//! for a new link replaces the live one; a link expires, and works once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::{Hashing, Password, User, new_secret, parse_email, token_digest};
use crate::error::{Error, Result, violates};
use crate::notifications::{self, Kind, NewNotification, Recipient};
use crate::types::{PushUrgency, Role};

/// How long a link works unless the settings say otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(72 * 3600);

/// The page a link opens, under the public base URL (the web crate serves it).
pub fn page_path(token: &str) -> String {
    format!("/cuenta/clave/{token}")
}

/// What staff are told once a link is on its way: never the link itself.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    /// The app user; their login is the customer's e-mail.
    pub user_id: Uuid,
    /// Whether the user was created now (false: a fresh link for a user who has not set a
    /// password yet; the earlier link no longer works).
    pub created: bool,
    /// The address the link is sent to, masked (`a***@example.co`).
    pub sent_to: String,
    /// Until when the link works.
    pub expires_at: DateTime<Utc>,
}

/// `ana@example.co` → `a***@example.co`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

fn email_required() -> Error {
    Error::invalid(
        "email_required",
        "the customer needs an e-mail address: it is the app user's login and where the link to \
         set the password goes",
    )
}

/// Creates the customer's app user if they have none, and sends a fresh link to set the password
/// (any earlier link stops working), in the caller's transaction. `created_by` is the staff member
/// asking (none from the command line). Refused for an unverified contact, a customer without an
/// e-mail, and a customer whose app user has a password already.
pub async fn invite(
    conn: &mut PgConnection,
    customer_id: Uuid,
    created_by: Option<Uuid>,
    ttl: Duration,
) -> Result<Invitation> {
    let customer = sqlx::query!(
        "select name, email, verified, merged_into, language from customers where id = $1 for update",
        customer_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::not_found("customer_not_found", "customer"))?;
    if !customer.verified || customer.merged_into.is_some() {
        return Err(Error::invalid(
            "customer_not_verified",
            "an app user is created for a verified customer, not for an unverified contact",
        ));
    }
    let email = match customer.email.as_deref().map(str::trim) {
        Some(e) if !e.is_empty() => parse_email(e)?,
        _ => return Err(email_required()),
    };
    let existing = sqlx::query!(
        r#"select id, email, password_hash is not null as "has_password!" from users
           where customer_id = $1 and active order by created_at"#,
        customer_id
    )
    .fetch_all(&mut *conn)
    .await?;
    if existing.iter().any(|u| u.has_password) {
        return Err(Error::conflict(
            "app_user_exists",
            "the customer has an app user with a password already",
        ));
    }
    let taken = |e: sqlx::Error| {
        if violates(&e, "users_email_key") {
            Error::conflict("email_taken", "a user with that e-mail already exists")
        } else {
            e.into()
        }
    };
    let (user_id, created) = match existing.first() {
        // The login follows the address the link goes to.
        Some(u) => {
            if u.email != email {
                sqlx::query!("update users set email = $2 where id = $1", u.id, email)
                    .execute(&mut *conn)
                    .await
                    .map_err(taken)?;
            }
            (u.id, false)
        }
        None => {
            let id = Uuid::new_v4();
            sqlx::query!(
                "insert into users (id, email, name, role, customer_id, password_hash, language)
                 values ($1, $2, $3, $4, $5, null, $6)",
                id,
                email,
                customer.name,
                Role::Customer as Role,
                customer_id,
                customer.language.as_deref().unwrap_or("es"),
            )
            .execute(&mut *conn)
            .await
            .map_err(taken)?;
            (id, true)
        }
    };
    sqlx::query!(
        "update account_setups set replaced_at = now()
         where user_id = $1 and used_at is null and replaced_at is null",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    let setup_id = Uuid::new_v4();
    let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
    let expires_at = sqlx::query_scalar!(
        "insert into account_setups (id, user_id, created_by, expires_at)
         values ($1, $2, $3, now() + make_interval(secs => $4::bigint))
         returning expires_at",
        setup_id,
        user_id,
        created_by,
        secs,
    )
    .fetch_one(&mut *conn)
    .await?;
    notifications::notify(
        conn,
        NewNotification {
            dedupe_key: format!("account_setup:{setup_id}"),
            case_id: None,
            recipient: Recipient::Customer(customer_id),
            kind: Kind::AccountSetup,
            urgency: PushUrgency::Normal,
            ttl: ttl.min(notifications::NOTICE_TTL),
            // What the e-mail needs besides the token, which the e-mail channel makes (`issue`).
            data: serde_json::json!({"setup_id": setup_id, "email": email}),
            delay: Duration::ZERO,
        },
    )
    .await?;
    Ok(Invitation {
        user_id,
        created,
        sent_to: mask_email(&email),
        expires_at,
    })
}

/// [`invite`] in a transaction of its own.
pub async fn invite_one(
    pool: &PgPool,
    customer_id: Uuid,
    created_by: Option<Uuid>,
    ttl: Duration,
) -> Result<Invitation> {
    let mut tx = pool.begin().await?;
    let invitation = invite(&mut tx, customer_id, created_by, ttl).await?;
    tx.commit().await?;
    Ok(invitation)
}

/// A link's token, made as its e-mail is written.
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Makes the token of the link `setup_id` and stores its digest; a token made earlier for the
/// same link (an attempt whose send failed) stops working. None when the link no longer is to be
/// sent: replaced, used, expired, or its user has a password or was deactivated.
pub async fn issue(db: impl PgExecutor<'_>, setup_id: Uuid) -> Result<Option<Issued>> {
    let token = new_secret("acct_");
    let expires_at = sqlx::query_scalar!(
        "update account_setups s set token_hash = $2, issued_at = now()
         from users u
         where s.id = $1 and u.id = s.user_id and u.active and u.password_hash is null
           and s.used_at is null and s.replaced_at is null and s.expires_at > now()
         returning s.expires_at",
        setup_id,
        token_digest(&token),
    )
    .fetch_optional(db)
    .await?;
    Ok(expires_at.map(|expires_at| Issued { token, expires_at }))
}

/// What a link opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The form to set the password of this user.
    Open {
        email: String,
        name: String,
        language: String,
        expires_at: DateTime<Utc>,
    },
    /// No such link (or its user was deactivated).
    Unknown,
    /// A newer link was sent.
    Replaced,
    /// The password was set with it already.
    Used,
    Expired,
}

impl Link {
    /// Why a link that is not open refuses, with its stable code.
    pub fn refusal(&self) -> Option<Error> {
        match self {
            Link::Open { .. } => None,
            Link::Unknown => Some(Error::not_found("setup_link_not_found", "link")),
            Link::Replaced => Some(Error::conflict(
                "setup_link_replaced",
                "a newer link was sent; use the latest e-mail",
            )),
            Link::Used => Some(Error::conflict(
                "setup_link_used",
                "the password was set with this link already; sign in to the app",
            )),
            Link::Expired => Some(Error::conflict(
                "setup_link_expired",
                "the link has expired; ask the company for a new one",
            )),
        }
    }
}

/// What the link with `token` opens.
pub async fn link(db: impl PgExecutor<'_>, token: &str) -> Result<Link> {
    // Tokens are made by `new_secret`; anything much longer is not looked up.
    if token.is_empty() || token.len() > 128 {
        return Ok(Link::Unknown);
    }
    let row = sqlx::query!(
        r#"select u.email, u.name, u.language, u.active, s.used_at, s.replaced_at, s.expires_at,
                  s.expires_at <= now() as "expired!"
           from account_setups s join users u on u.id = s.user_id
           where s.token_hash = $1"#,
        token_digest(token)
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => Link::Unknown,
        Some(r) if !r.active => Link::Unknown,
        Some(r) if r.used_at.is_some() => Link::Used,
        Some(r) if r.replaced_at.is_some() => Link::Replaced,
        Some(r) if r.expired => Link::Expired,
        Some(r) => Link::Open {
            email: r.email,
            name: r.name,
            language: r.language,
            expires_at: r.expires_at,
        },
    })
}

/// Sets the first password with the link `token`, which then stops working. The link is checked
/// before the password is hashed, so a dead link costs no hash, and consumed in one statement
/// with the password, so two submissions cannot both succeed.
pub async fn set_password(
    pool: &PgPool,
    hashing: &Hashing,
    token: &str,
    password: &Password,
) -> Result<User> {
    if let Some(refusal) = link(pool, token).await?.refusal() {
        return Err(refusal);
    }
    let hash = hashing.hash(password).await?;
    let mut tx = pool.begin().await?;
    let user = sqlx::query_as!(
        User,
        r#"with used as (
               update account_setups set used_at = now()
               where token_hash = $1 and used_at is null and replaced_at is null
                 and expires_at > now()
               returning user_id
           )
           update users u set password_hash = $2
           from used
           where u.id = used.user_id and u.active and u.password_hash is null
           returning u.id, u.email, u.name, u.role as "role: Role", u.customer_id, u.language"#,
        token_digest(token),
        hash,
    )
    .fetch_optional(&mut *tx)
    .await?;
    match user {
        Some(user) => {
            tx.commit().await?;
            Ok(user)
        }
        None => {
            drop(tx);
            // Another submission or a new link came first: say which.
            Err(link(pool, token)
                .await?
                .refusal()
                .unwrap_or_else(|| Error::conflict("setup_link_used", "the password is set")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mask_email;

    #[test]
    fn masked_addresses_keep_the_first_letter_and_the_domain() {
        assert_eq!(mask_email("ana.perez@example.co"), "a***@example.co");
        assert_eq!(mask_email("x@y.co"), "x***@y.co");
        assert_eq!(mask_email("nothing"), "***");
    }
}
