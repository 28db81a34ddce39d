use std::time::Duration;

/// What went wrong, in terms an API can turn into a stable machine code. `code` strings are part of
/// the contract with the apps: never rename one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a rule: a bad field value, a missing consent.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The thing does not exist or the caller may not know it exists.
    #[error("{what} not found")]
    NotFound {
        code: &'static str,
        what: &'static str,
    },
    /// No valid credentials.
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// The caller is known but their role may not do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The request contradicts the current state: an illegal transition, a duplicate.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("too many failed attempts; try again later")]
    TooManyAttempts { retry_after: Duration },
    /// Too much of a bounded resource is in use (password hashing); try again shortly.
    #[error("the server is busy; try again shortly")]
    Busy { retry_after: Duration },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Error::Forbidden {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: &'static str, what: &'static str) -> Self {
        Error::NotFound { code, what }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a database error is the violation of the named unique/foreign-key/check constraint.
pub fn violates(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => db.constraint() == Some(constraint),
        _ => false,
    }
}
