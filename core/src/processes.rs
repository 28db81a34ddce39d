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

/// Whether `user_id` belongs to the process or leads it: the staff who manage its work orders
/// and read its field reports, and (with the assigned cases) the cases they work.
pub async fn works_in(db: impl PgExecutor<'_>, user_id: Uuid, process: &str) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists(
               select 1 from process_members where process_code = $1 and user_id = $2
               union all
               select 1 from processes where code = $1 and leader_id = $2
           ) as "member!""#,
        process,
        user_id
    )
    .fetch_one(db)
    .await?)
}

/// The process's leader and members: everyone who is staff of it.
pub async fn staff(db: impl PgExecutor<'_>, process: &str) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        r#"select user_id as "id!" from process_members where process_code = $1
           union
           select leader_id from processes where code = $1 and leader_id is not null"#,
        process
    )
    .fetch_all(db)
    .await?)
}

/// Whether `user_id` leads the process: the one who approves or returns its answers.
pub async fn leads(db: impl PgExecutor<'_>, process: &str, user_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from processes where code = $1 and leader_id = $2) as "leads!""#,
        process,
        user_id
    )
    .fetch_one(db)
    .await?)
}

/// Whether `user_id` is a member of the process (its leader is not, unless also added).
pub async fn is_member(db: impl PgExecutor<'_>, process: &str, user_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from process_members where process_code = $1 and user_id = $2) as "member!""#,
        process,
        user_id
    )
    .fetch_one(db)
    .await?)
}

/// The processes a staff member belongs to, and those they lead.
pub async fn of_user(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<String>> {
    let codes = sqlx::query_scalar!(
        "select process_code from process_members where user_id = $1
         union select code from processes where leader_id = $1
         order by 1",
        user_id
    )
    .fetch_all(db)
    .await?;
    Ok(codes.into_iter().flatten().collect())
}

/// The one rule of who works which case, kept in the database so every query applies it alike
/// (`staff_scope` and `works_case`, see the migration `staff_scope`): the quality director works
/// every case; collaborators, process leaders and technicians the cases of the processes they
/// belong to or lead and the cases assigned to them; admins and customers none. A case outside
/// it is exactly as missing as one that does not exist.
pub async fn require_works_case(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    case_id: Uuid,
) -> Result<()> {
    let works = sqlx::query_scalar!(
        r#"select works_case(s, c.process_code, c.assignee_id) as "works!"
           from cases c cross join staff_scope($2) s where c.id = $1"#,
        case_id,
        user_id
    )
    .fetch_optional(db)
    .await?;
    if works == Some(true) {
        Ok(())
    } else {
        Err(Error::not_found("case_not_found", "case"))
    }
}
