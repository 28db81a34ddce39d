//! Processes of the quality system (Comercial, Operativo, Atención al Cliente…): staff belong to
//! them, cases are assigned to them, and each has one leader who approves its answers.

use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{Error, Result, violates};

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub code: String,
    pub name: String,
    pub leader_id: Option<Uuid>,
}

pub fn parse_code(raw: &str) -> Result<String> {
    let code = raw.trim().to_uppercase();
    let ok = (2..=32).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(code)
    } else {
        Err(Error::invalid(
            "invalid_process_code",
            "a process code is 2 to 32 letters, digits or _, starting with a letter",
        ))
    }
}

pub async fn create(
    db: impl PgExecutor<'_>,
    code: &str,
    name: &str,
    leader_id: Option<Uuid>,
) -> Result<Process> {
    let code = parse_code(code)?;
    let name = crate::auth::parse_name(name)?;
    sqlx::query!(
        "insert into processes (code, name, leader_id) values ($1, $2, $3)",
        code,
        name,
        leader_id
    )
    .execute(db)
    .await
    .map_err(|e| {
        if violates(&e, "processes_pkey") {
            Error::conflict("process_exists", format!("process {code} already exists"))
        } else {
            e.into()
        }
    })?;
    Ok(Process {
        code,
        name,
        leader_id,
    })
}

pub async fn set_leader(db: impl PgExecutor<'_>, code: &str, leader_id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "update processes set leader_id = $2 where code = $1",
        code,
        leader_id
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("process_not_found", "process"));
    }
    Ok(())
}

pub async fn add_member(db: impl PgExecutor<'_>, code: &str, user_id: Uuid) -> Result<()> {
    sqlx::query!(
        "insert into process_members (process_code, user_id) values ($1, $2) on conflict do nothing",
        code,
        user_id
    )
    .execute(db)
    .await
    .map_err(|e| {
        if violates(&e, "process_members_process_code_fkey") {
            Error::not_found("process_not_found", "process")
        } else {
            e.into()
        }
    })?;
    Ok(())
}

pub async fn find(db: impl PgExecutor<'_>, code: &str) -> Result<Option<Process>> {
    Ok(sqlx::query_as!(
        Process,
        "select code, name, leader_id from processes where code = $1",
        code
    )
    .fetch_optional(db)
    .await?)
}
