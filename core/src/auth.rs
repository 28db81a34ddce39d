//! Users, passwords, bearer tokens and customer self-registration.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::documents::SYNC_CHANNEL;
use crate::error::{Error, Result, violates};
use crate::login_limits::{self, LoginLimits};
use crate::types::{DocumentType, Role};

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

/// Bounds the Argon2 hashes computed at once (login, registration, `user add`): each takes about
/// 19 MiB and a core for a while, so unbounded parallel logins are a lever on the whole server. A
/// request that gets no permit within `wait` is answered "busy" instead of queueing without end.
#[derive(Clone)]
pub struct Hashing {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl Hashing {
    pub fn new(concurrent: usize, wait: Duration) -> Self {
        Hashing {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            wait,
        }
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::Busy {
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// Argon2id with its default cost, on the blocking pool because it is deliberately slow.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        let permit = self.permit().await?;
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done, even if the request that wanted it is gone.
            let _permit = permit;
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(format!("password hashing task: {e}")))?
    }
}

/// As many hashes at once as there are cores, and a two-second wait for one.
impl Default for Hashing {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Hashing::new(cores, Duration::from_secs(2))
    }
}

async fn verify_password(
    permit: OwnedSemaphorePermit,
    hash: String,
    password: String,
) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
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

/// 32 random bytes in hex after a prefix that says what the secret is for.
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let mut token = String::with_capacity(prefix.len() + 64);
    token.push_str(prefix);
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

pub async fn create_user(
    db: impl PgExecutor<'_>,
    hashing: &Hashing,
    user: NewUser,
) -> Result<User> {
    let email = parse_email(&user.email)?;
    let name = parse_name(&user.name)?;
    if user.language != "es" && user.language != "en" {
        return Err(Error::invalid(
            "invalid_language",
            "language must be es or en",
        ));
    }
    let hash = hashing.hash(&user.password).await?;
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

/// What anyone is told when their document number cannot be registered from the app, whether a
/// user already has it or staff created the customer record: the answer must not tell a stranger
/// which numbers are known, and linking an existing record to an app user is staff's job.
fn document_refused() -> Error {
    Error::conflict(
        "customer_already_registered",
        "this document cannot be registered from the app; if it is yours, contact the company to \
         link your account",
    )
}

/// A customer signs up from the app: customer record, consent record and user, in one transaction.
/// A document number the company already knows (filed by phone, a bot or staff) is refused: a typed
/// number proves nothing, and attaching that record would hand its cases to whoever typed it.
pub async fn register_customer(
    pool: &PgPool,
    hashing: &Hashing,
    reg: Registration,
    channel: &str,
) -> Result<User> {
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
    let hash = hashing.hash(&reg.password).await?;

    let mut tx = pool.begin().await?;
    let customer_id = sqlx::query_scalar!(
        "insert into customers (id, kind, document_type, document_number, name, email, phone)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (document_type, document_number) where verified do nothing
         returning id",
        Uuid::new_v4(),
        reg.document_type.customer_kind() as _,
        reg.document_type as DocumentType,
        document_number,
        name,
        email,
        phone,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(document_refused)?;
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
    let token = new_secret("atd_");
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

/// Checks the password within the login limits and opens a session. `client` is the caller's
/// address, which the limits count by.
pub async fn login(
    pool: &PgPool,
    hashing: &Hashing,
    limits: &LoginLimits,
    email: &str,
    password: &str,
    client: IpAddr,
    ttl: Duration,
) -> Result<(User, Session)> {
    let email = email.trim().to_lowercase();
    let attempt = login_limits::begin(pool, limits, &email, client).await?;
    let row = sqlx::query!(
        r#"select id, email, name, role as "role: Role", customer_id, language, password_hash
           from users where lower(email) = $1 and active"#,
        email
    )
    .fetch_optional(pool)
    .await?;
    // A user the company created has no password until the customer sets one through the link
    // e-mailed to them (`account_setup`); the check still takes as long as any other.
    let mut password_set = true;
    let (user, hash) = match row {
        Some(r) => {
            password_set = r.password_hash.is_some();
            (
                Some(User {
                    id: r.id,
                    email: r.email,
                    name: r.name,
                    role: r.role,
                    customer_id: r.customer_id,
                    language: r.language,
                }),
                r.password_hash.unwrap_or_else(|| dummy_hash().to_owned()),
            )
        }
        None => (None, dummy_hash().to_owned()),
    };
    let permit = match hashing.permit().await {
        Ok(permit) => permit,
        Err(busy) => {
            login_limits::abandoned(pool, attempt).await?;
            return Err(busy);
        }
    };
    let matches = verify_password(permit, hash, password.to_owned()).await?;
    match user {
        Some(_) if !password_set => Err(Error::forbidden(
            "password_not_set",
            "this user has no password yet: set it with the link the company sent by e-mail",
        )),
        Some(user) if matches => {
            login_limits::succeeded(pool, attempt).await?;
            let session = start_session(pool, user.id, ttl).await?;
            Ok((user, session))
        }
        _ => Err(Error::InvalidCredentials),
    }
}

/// Which session a credential belongs to and when it ends: a sync connection closes then.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The SHA-256 digest of the session's bearer token, as stored.
    pub digest: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// A user with the session a token or ticket belongs to, as one query reads them.
pub(crate) struct SessionRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub customer_id: Option<Uuid>,
    pub language: String,
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

impl From<SessionRow> for (User, SessionInfo) {
    fn from(r: SessionRow) -> Self {
        let user = User {
            id: r.id,
            email: r.email,
            name: r.name,
            role: r.role,
            customer_id: r.customer_id,
            language: r.language,
        };
        let session = SessionInfo {
            digest: r.token_hash,
            expires_at: r.expires_at,
        };
        (user, session)
    }
}

/// The token of an `Authorization: Bearer …` header value, if it is one.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The user behind a bearer token that is neither expired nor revoked.
pub async fn authenticate(db: impl PgExecutor<'_>, token: &str) -> Result<User> {
    authenticate_session(db, token).await.map(|(user, _)| user)
}

/// [`authenticate`], with the session it belongs to.
pub async fn authenticate_session(
    db: impl PgExecutor<'_>,
    token: &str,
) -> Result<(User, SessionInfo)> {
    let row = sqlx::query_as!(
        SessionRow,
        r#"select u.id, u.email, u.name, u.role as "role: Role", u.customer_id, u.language,
                  s.token_hash, s.expires_at
           from sessions s join users u on u.id = s.user_id
           where s.token_hash = $1 and s.revoked_at is null and s.expires_at > now() and u.active"#,
        token_digest(token)
    )
    .fetch_optional(db)
    .await?
    .ok_or(Error::Unauthenticated)?;
    Ok(row.into())
}

/// Revokes the session; once committed, every sync server closes its sockets (see
/// [`SYNC_CHANNEL`]).
pub async fn logout(db: impl PgExecutor<'_>, token: &str) -> Result<()> {
    sqlx::query_scalar!(
        r#"with revoked as (
               update sessions set revoked_at = now()
               where token_hash = $1 and revoked_at is null
               returning token_hash
           )
           select count(*) as "n!"
           from revoked, pg_notify($2, json_build_object('session_ended', encode(token_hash, 'hex'))::text)"#,
        token_digest(token),
        SYNC_CHANNEL,
    )
    .fetch_one(db)
    .await?;
    Ok(())
}

/// Deactivates a user: they can no longer log in, their sessions are revoked and every sync
/// server closes their sockets once this commits.
pub async fn deactivate_user(pool: &PgPool, email: &str) -> Result<User> {
    let mut tx = pool.begin().await?;
    let user = sqlx::query_as!(
        User,
        r#"update users set active = false where lower(email) = lower($1)
           returning id, email, name, role as "role: Role", customer_id, language"#,
        email.trim()
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::not_found("user_not_found", "user"))?;
    sqlx::query!(
        "update sessions set revoked_at = now() where user_id = $1 and revoked_at is null",
        user.id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query_scalar!(
        r#"select count(*) as "n!"
           from pg_notify($1, json_build_object('user_deactivated', $2::uuid)::text)"#,
        SYNC_CHANNEL,
        user.id,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Deletes sessions that ended (expired or revoked) and sync tickets that expired. Returns how
/// many sessions went.
pub async fn purge_sessions(pool: &PgPool) -> Result<u64> {
    sqlx::query!("delete from sync_tickets where expires_at <= now()")
        .execute(pool)
        .await?;
    let done =
        sqlx::query!("delete from sessions where expires_at <= now() or revoked_at is not null")
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
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
