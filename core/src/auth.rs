//! Users, passwords, bearer tokens and customer self-registration.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::error::{Error, Result, violates};
use crate::types::{DocumentType, Role};

/// Failed logins for one e-mail inside this window, beyond the limit, are refused without checking.
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
const THROTTLE_LIMIT: i64 = 5;
/// The data-processing policy customers accept when they register (Ley 1581 de 2012).
pub const DATA_POLICY_VERSION: &str = "2026-01";

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub customer_id: Option<Uuid>,
    pub language: String,
}

/// A password that never prints.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self> {
        let chars = raw.chars().count();
        if chars < 8 {
            return Err(Error::invalid(
                "weak_password",
                "the password must have at least 8 characters",
            ));
        }
        if raw.len() > 1024 {
            return Err(Error::invalid(
                "invalid_password",
                "the password is longer than 1024 bytes",
            ));
        }
        Ok(Password(raw))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Lower-cases and checks the shape of an e-mail address.
pub fn parse_email(raw: &str) -> Result<String> {
    let email = raw.trim().to_lowercase();
    let ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if ok {
        Ok(email)
    } else {
        Err(Error::invalid(
            "invalid_email",
            format!("{raw:?} is not an e-mail address"),
        ))
    }
}

pub fn parse_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid(
            "invalid_name",
            "the name must have between 1 and 200 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Argon2id with its default cost; runs on the blocking pool because it is deliberately slow.
pub async fn hash_password(password: &Password) -> Result<String> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("password hashing task: {e}")))?
}

async fn verify_password(hash: String, password: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| Error::Internal(format!("stored password hash: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| Error::Internal(format!("password check task: {e}")))?
}

/// Checked against when the e-mail is unknown, so a miss takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"not a real password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let mut token = String::with_capacity(4 + 64);
    token.push_str("atd_");
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

fn email_taken(e: sqlx::Error) -> Error {
    if violates(&e, "users_email_key") {
        Error::conflict("email_taken", "a user with that e-mail already exists")
    } else {
        e.into()
    }
}

pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password: Password,
    pub customer_id: Option<Uuid>,
    pub language: String,
}

pub async fn create_user(db: impl PgExecutor<'_>, user: NewUser) -> Result<User> {
    let email = parse_email(&user.email)?;
    let name = parse_name(&user.name)?;
    if user.language != "es" && user.language != "en" {
        return Err(Error::invalid(
            "invalid_language",
            "language must be es or en",
        ));
    }
    let hash = hash_password(&user.password).await?;
    let id = Uuid::new_v4();
    sqlx::query!(
        "insert into users (id, email, name, role, customer_id, password_hash, language)
         values ($1, $2, $3, $4, $5, $6, $7)",
        id,
        email,
        name,
        user.role as Role,
        user.customer_id,
        hash,
        user.language,
    )
    .execute(db)
    .await
    .map_err(email_taken)?;
    Ok(User {
        id,
        email,
        name,
        role: user.role,
        customer_id: user.customer_id,
        language: user.language,
    })
}

pub async fn find_user_by_email(db: impl PgExecutor<'_>, email: &str) -> Result<Option<User>> {
    let user = sqlx::query_as!(
        User,
        r#"select id, email, name, role as "role: Role", customer_id, language
           from users where lower(email) = lower($1) and active"#,
        email
    )
    .fetch_optional(db)
    .await?;
    Ok(user)
}

pub struct Registration {
    pub email: String,
    pub password: Password,
    pub name: String,
    pub phone: Option<String>,
    pub document_type: DocumentType,
    pub document_number: String,
    pub accept_data_policy: bool,
    pub language: String,
}

pub fn parse_document_number(raw: &str) -> Result<String> {
    let n = raw.trim().to_uppercase();
    let ok =
        (3..=20).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(n)
    } else {
        Err(Error::invalid(
            "invalid_document_number",
            "the document number must be 3 to 20 letters, digits or dashes",
        ))
    }
}

pub fn parse_phone(raw: &str) -> Result<String> {
    let p: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let digits = p.strip_prefix('+').unwrap_or(&p);
    if (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(p)
    } else {
        Err(Error::invalid(
            "invalid_phone",
            "the phone number must have 7 to 15 digits, optionally after a +",
        ))
    }
}

/// A customer signs up from the app: customer record, consent record and user, in one transaction.
/// A customer already known by document (filed by phone or a bot) gets their user attached.
pub async fn register_customer(pool: &PgPool, reg: Registration, channel: &str) -> Result<User> {
    if !reg.accept_data_policy {
        return Err(Error::invalid(
            "consent_required",
            "the data-processing policy must be accepted to register (Ley 1581 de 2012)",
        ));
    }
    let email = parse_email(&reg.email)?;
    let name = parse_name(&reg.name)?;
    let document_number = parse_document_number(&reg.document_number)?;
    let phone = reg.phone.as_deref().map(parse_phone).transpose()?;
    let hash = hash_password(&reg.password).await?;

    let mut tx = pool.begin().await?;
    let customer_id = sqlx::query_scalar!(
        "insert into customers (id, kind, document_type, document_number, name, email, phone)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (document_type, document_number) do update set email = excluded.email,
             phone = coalesce(excluded.phone, customers.phone)
         returning id",
        Uuid::new_v4(),
        reg.document_type.customer_kind() as _,
        reg.document_type as DocumentType,
        document_number,
        name,
        email,
        phone,
    )
    .fetch_one(&mut *tx)
    .await?;
    let taken = sqlx::query_scalar!(
        "select exists(select 1 from users where customer_id = $1)",
        customer_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if taken == Some(true) {
        return Err(Error::conflict(
            "customer_already_registered",
            "a user is already registered for that document",
        ));
    }
    record_consent(&mut *tx, customer_id, true, channel).await?;
    let id = Uuid::new_v4();
    sqlx::query!(
        "insert into users (id, email, name, role, customer_id, password_hash, language)
         values ($1, $2, $3, 'customer', $4, $5, $6)",
        id,
        email,
        name,
        customer_id,
        hash,
        reg.language,
    )
    .execute(&mut *tx)
    .await
    .map_err(email_taken)?;
    tx.commit().await?;
    Ok(User {
        id,
        email,
        name,
        role: Role::Customer,
        customer_id: Some(customer_id),
        language: reg.language,
    })
}

pub async fn record_consent(
    db: impl PgExecutor<'_>,
    customer_id: Uuid,
    granted: bool,
    channel: &str,
) -> Result<()> {
    sqlx::query!(
        "insert into consents (customer_id, purpose, channel, policy_version, granted)
         values ($1, 'pqrs_management', $2, $3, $4)",
        customer_id,
        channel,
        DATA_POLICY_VERSION,
        granted,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub struct Session {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn start_session(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    ttl: Duration,
) -> Result<Session> {
    let token = new_token();
    let ttl = chrono::Duration::from_std(ttl)
        .map_err(|e| Error::Internal(format!("session ttl: {e}")))?;
    let expires_at = Utc::now() + ttl;
    sqlx::query!(
        "insert into sessions (token_hash, user_id, expires_at) values ($1, $2, $3)",
        token_digest(&token),
        user_id,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(Session { token, expires_at })
}

/// Checks the password, throttling repeated failures per e-mail, and opens a session.
pub async fn login(
    pool: &PgPool,
    email: &str,
    password: &str,
    ttl: Duration,
) -> Result<(User, Session)> {
    let email = email.trim().to_lowercase();
    let window = chrono::Duration::from_std(THROTTLE_WINDOW)
        .unwrap_or_else(|_| chrono::Duration::minutes(15));
    let recent = sqlx::query!(
        r#"select count(*) as "count!", min(failed_at) as oldest from
             (select failed_at from login_failures
              where lower(email) = $1 and failed_at > now() - $2::interval
              order by failed_at desc limit $3) f"#,
        email,
        sqlx::postgres::types::PgInterval::try_from(window)
            .map_err(|e| Error::Internal(e.to_string()))?,
        THROTTLE_LIMIT,
    )
    .fetch_one(pool)
    .await?;
    if recent.count >= THROTTLE_LIMIT {
        let oldest = recent.oldest.unwrap_or_else(Utc::now);
        let wait = (oldest + window - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(1));
        return Err(Error::TooManyAttempts {
            retry_after: wait.max(Duration::from_secs(1)),
        });
    }

    let row = sqlx::query!(
        r#"select id, email, name, role as "role: Role", customer_id, language, password_hash
           from users where lower(email) = $1 and active"#,
        email
    )
    .fetch_optional(pool)
    .await?;
    let (user, hash) = match row {
        Some(r) => (
            Some(User {
                id: r.id,
                email: r.email,
                name: r.name,
                role: r.role,
                customer_id: r.customer_id,
                language: r.language,
            }),
            r.password_hash,
        ),
        None => (None, dummy_hash().to_owned()),
    };
    let matches = verify_password(hash, password.to_owned()).await?;
    match user {
        Some(user) if matches => {
            sqlx::query!("delete from login_failures where lower(email) = $1", email)
                .execute(pool)
                .await?;
            let session = start_session(pool, user.id, ttl).await?;
            Ok((user, session))
        }
        _ => {
            sqlx::query!("insert into login_failures (email) values ($1)", email)
                .execute(pool)
                .await?;
            Err(Error::InvalidCredentials)
        }
    }
}

/// The user behind a bearer token that is neither expired nor revoked.
pub async fn authenticate(db: impl PgExecutor<'_>, token: &str) -> Result<User> {
    let user = sqlx::query_as!(
        User,
        r#"select u.id, u.email, u.name, u.role as "role: Role", u.customer_id, u.language
           from sessions s join users u on u.id = s.user_id
           where s.token_hash = $1 and s.revoked_at is null and s.expires_at > now() and u.active"#,
        token_digest(token)
    )
    .fetch_optional(db)
    .await?;
    user.ok_or(Error::Unauthenticated)
}

pub async fn logout(db: impl PgExecutor<'_>, token: &str) -> Result<()> {
    sqlx::query!(
        "update sessions set revoked_at = now() where token_hash = $1 and revoked_at is null",
        token_digest(token)
    )
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            parse_email(" Ana@Example.COM ").ok().as_deref(),
            Some("ana@example.com")
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.co",
            "ana@x",
            "a na@x.co",
            "a@b@c.co",
            "ana@.co",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn password_never_prints() {
        let p = Password::parse("correct horse".into()).map(|p| format!("{p:?}"));
        assert_eq!(p.ok().as_deref(), Some("Password(<redacted>)"));
        assert!(Password::parse("short".into()).is_err());
    }
}
