//! What an admin does from the command line: users, processes and the business calendar.

use atiende_core::auth::{self, Hashing, NewUser, Password};
use atiende_core::types::Role;
use atiende_core::{holidays, processes};
use chrono::NaiveDate;
use sqlx::PgPool;

pub struct UserAdd {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub process: Option<String>,
    pub language: String,
}

/// Creates a staff user, joining them to a process; a process leader becomes that process's leader.
pub async fn add_user(
    pool: &PgPool,
    hashing: &Hashing,
    req: UserAdd,
    password: Password,
) -> atiende_core::Result<auth::User> {
    if req.role == Role::Customer {
        return Err(atiende_core::Error::invalid(
            "customer_via_app",
            "customers register through the app (POST /api/v1/auth/register)",
        ));
    }
    let mut tx = pool.begin().await?;
    let process = match &req.process {
        Some(code) => {
            let code = processes::parse_code(code)?;
            if processes::find(&mut *tx, &code).await?.is_none() {
                return Err(atiende_core::Error::not_found(
                    "process_not_found",
                    "process",
                ));
            }
            Some(code)
        }
        None => None,
    };
    let user = auth::create_user(
        &mut *tx,
        hashing,
        NewUser {
            email: req.email,
            name: req.name,
            role: req.role,
            password,
            customer_id: None,
            language: req.language,
        },
    )
    .await?;
    if let Some(code) = &process {
        processes::add_member(&mut *tx, code, user.id).await?;
        if req.role == Role::ProcessLeader {
            processes::set_leader(&mut *tx, code, user.id).await?;
        }
    }
    tx.commit().await?;
    Ok(user)
}

/// Deactivates a user (staff or customer): no more logins, sessions revoked, sync sockets closed
/// on every server.
pub async fn deactivate_user(pool: &PgPool, email: &str) -> atiende_core::Result<auth::User> {
    auth::deactivate_user(pool, email).await
}

pub async fn add_process(
    pool: &PgPool,
    code: &str,
    name: &str,
    leader_email: Option<&str>,
) -> atiende_core::Result<processes::Process> {
    let mut tx = pool.begin().await?;
    let leader = match leader_email {
        Some(email) => {
            let user = auth::find_user_by_email(&mut *tx, email)
                .await?
                .ok_or(atiende_core::Error::not_found("user_not_found", "user"))?;
            if user.role != Role::ProcessLeader {
                return Err(atiende_core::Error::invalid(
                    "not_a_process_leader",
                    format!("{email} is a {}, not a process_leader", user.role),
                ));
            }
            Some(user.id)
        }
        None => None,
    };
    let process = processes::create(&mut *tx, code, name, leader).await?;
    if let Some(leader) = leader {
        processes::add_member(&mut *tx, &process.code, leader).await?;
    }
    tx.commit().await?;
    Ok(process)
}

/// The due date of a term of `days` business days for something filed on `from`.
pub async fn due_date(
    pool: &PgPool,
    from: NaiveDate,
    days: u32,
) -> atiende_core::Result<NaiveDate> {
    Ok(holidays::load_calendar(pool)
        .await?
        .add_business_days(from, days))
}
