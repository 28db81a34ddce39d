//! Work orders: a visit by one or more technicians to a customer. Each has one field report, an
//! Automerge document its technicians edit offline; the staff of its process may read it, and
//! the customer once the visit is completed.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ScalarValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::doc_id::DocumentId;
use crate::documents::{self, DocumentKind, Mode};
use crate::error::{Error, Result};
use crate::input::{self, Text};
use crate::types::Role;

/// At most this many technicians on one visit.
pub const MAX_TECHNICIANS: usize = 10;

/// What staff send to schedule a visit.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewWorkOrder {
    pub customer_id: Uuid,
    /// Code of the process that runs the visit (its staff may read the report): 2 to 32
    /// letters, digits or `_`, starting with a letter; read trimmed and upper-cased.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^[\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*[A-Za-z][A-Za-z0-9_]{1,31}[\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$"
        )
    )]
    pub process: String,
    /// Not blank; at most 500 characters once trimmed.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 500,
            pattern = "[^\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
        )
    )]
    pub address: String,
    pub scheduled_at: DateTime<Utc>,
    /// Not blank; at most 100 characters once trimmed.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = "[^\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
        )
    )]
    pub service_type: String,
    /// 1 to 10 users with the technician role (a repeated id counts once): they may edit the
    /// report.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub technicians: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub process: String,
    pub address: String,
    pub scheduled_at: DateTime<Utc>,
    pub service_type: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = status_schema))]
    pub status: String,
    /// The field report's Automerge URL (`automerge:<id>`), for the apps to sync.
    pub report_url: String,
    pub technicians: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// The two states a work order is in (a check of the `work_orders` table).
#[cfg(feature = "openapi")]
fn status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["scheduled", "completed"]))
        .description(Some("`scheduled`, or `completed` once the report says so"))
        .build()
}

/// The empty report: every list exists from the start, so technicians who edit offline add to
/// the same lists instead of each creating one and losing the other's on merge.
fn initial_report(
    doc: &mut AutoCommit,
    order: &WorkOrderRow,
) -> Result<(), automerge::AutomergeError> {
    doc.put(ROOT, "work_order_id", order.id.to_string())?;
    doc.put(ROOT, "address", order.address.as_str())?;
    doc.put(ROOT, "scheduled_at", order.scheduled_at.to_rfc3339())?;
    doc.put(ROOT, "service_type", order.service_type.as_str())?;
    for key in [
        "arrival_at",
        "departure_at",
        "treatment_type",
        "target_pest",
        "observations",
        "recommendations",
        "signature",
    ] {
        doc.put(ROOT, key, ScalarValue::Null)?;
    }
    for key in ["areas_treated", "products", "photos"] {
        doc.put_object(ROOT, key, ObjType::List)?;
    }
    doc.put(ROOT, "completed", false)?;
    Ok(())
}

struct WorkOrderRow {
    id: Uuid,
    address: String,
    scheduled_at: DateTime<Utc>,
    service_type: String,
}

/// Staff of a process: the quality director and admins for any process, otherwise its leader
/// and members. They manage its work orders and read its field reports.
async fn is_process_staff(conn: &mut PgConnection, actor: &User, process: &str) -> Result<bool> {
    if matches!(actor.role, Role::QualityDirector | Role::Admin) {
        return Ok(true);
    }
    if !actor.role.is_staff() {
        return Ok(false);
    }
    crate::processes::works_in(&mut *conn, actor.id, process).await
}

async fn require_process_staff(conn: &mut PgConnection, actor: &User, process: &str) -> Result<()> {
    if !actor.role.is_staff() {
        return Err(Error::forbidden("staff_only", "this endpoint is for staff"));
    }
    if is_process_staff(conn, actor, process).await? {
        Ok(())
    } else {
        Err(Error::forbidden(
            "not_process_member",
            format!("you are not on the staff of process {process}"),
        ))
    }
}

/// A work order as its process's staff see it; to anyone else it does not exist.
pub async fn get_for_staff(conn: &mut PgConnection, actor: &User, id: Uuid) -> Result<WorkOrder> {
    let order = get(&mut *conn, id).await?;
    if is_process_staff(conn, actor, &order.process).await? {
        Ok(order)
    } else {
        Err(Error::not_found("work_order_not_found", "work order"))
    }
}

/// Every technician must be an active user with the technician role.
async fn check_technicians(conn: &mut PgConnection, technicians: &[Uuid]) -> Result<Vec<Uuid>> {
    let mut ids = technicians.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_TECHNICIANS {
        return Err(Error::invalid(
            "invalid_technicians",
            format!("a work order has 1 to {MAX_TECHNICIANS} technicians"),
        ));
    }
    let found = sqlx::query_scalar!(
        r#"select count(*) as "n!" from users where id = any($1) and role = 'technician' and active"#,
        &ids
    )
    .fetch_one(&mut *conn)
    .await?;
    if found != ids.len() as i64 {
        return Err(Error::invalid(
            "invalid_technicians",
            "every technician must be an active user with the technician role",
        ));
    }
    Ok(ids)
}

/// Creates the work order, its field report document (technicians write; the process's staff
/// read) and its empty projection, in one transaction.
pub async fn create(pool: &PgPool, actor: &User, new: NewWorkOrder) -> Result<WorkOrder> {
    let process = crate::processes::parse_code(&new.process)?;
    let row = WorkOrderRow {
        id: Uuid::new_v4(),
        address: Text::<input::Address>::parse(&new.address)?.into_string(),
        scheduled_at: new.scheduled_at,
        service_type: Text::<input::ServiceType>::parse(&new.service_type)?.into_string(),
    };
    let mut tx = pool.begin().await?;
    require_process_staff(&mut tx, actor, &process).await?;
    let process_exists = sqlx::query_scalar!(
        r#"select exists(select 1 from processes where code = $1) as "e!""#,
        process
    )
    .fetch_one(&mut *tx)
    .await?;
    if !process_exists {
        return Err(Error::invalid(
            "unknown_process",
            format!("there is no process {process}"),
        ));
    }
    let customer_exists = sqlx::query_scalar!(
        r#"select exists(select 1 from customers where id = $1) as "e!""#,
        new.customer_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if !customer_exists {
        return Err(Error::invalid(
            "unknown_customer",
            "there is no such customer",
        ));
    }
    let technicians = check_technicians(&mut tx, &new.technicians).await?;

    let mut access: Vec<(Uuid, Mode)> = technicians.iter().map(|t| (*t, Mode::Write)).collect();
    for reader in crate::processes::staff(&mut *tx, &process).await? {
        if !technicians.contains(&reader) {
            access.push((reader, Mode::Read));
        }
    }
    let doc = documents::create(&mut *tx, DocumentKind::FieldReport, &access, |doc| {
        initial_report(doc, &row)
    })
    .await?;
    sqlx::query!(
        "insert into work_orders (id, customer_id, process_code, address, scheduled_at, service_type, report_document_id, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        row.id,
        new.customer_id,
        process,
        row.address,
        row.scheduled_at,
        row.service_type,
        doc.to_string(),
        actor.id,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into work_order_technicians (work_order_id, user_id) select $1, unnest($2::uuid[])",
        row.id,
        &technicians
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into field_reports (work_order_id) values ($1)",
        row.id
    )
    .execute(&mut *tx)
    .await?;
    let order = get(&mut *tx, row.id).await?;
    tx.commit().await?;
    Ok(order)
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<WorkOrder> {
    list(db, None, Some(id))
        .await?
        .pop()
        .ok_or(Error::not_found("work_order_not_found", "work order"))
}

/// The work orders of a technician, or the one with `id`, soonest first.
async fn list(
    db: impl PgExecutor<'_>,
    technician: Option<Uuid>,
    id: Option<Uuid>,
) -> Result<Vec<WorkOrder>> {
    let rows = sqlx::query!(
        r#"select w.id, w.customer_id, w.process_code, w.address, w.scheduled_at, w.service_type,
                  w.status, w.report_document_id, w.created_at, w.completed_at,
                  array(select t.user_id from work_order_technicians t
                        where t.work_order_id = w.id order by t.user_id) as "technicians!"
           from work_orders w
           where ($1::uuid is null or exists (select 1 from work_order_technicians t
                                               where t.work_order_id = w.id and t.user_id = $1))
             and ($2::uuid is null or w.id = $2)
           order by w.scheduled_at, w.id
           limit 500"#,
        technician,
        id
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let doc = DocumentId::parse(&r.report_document_id)
                .map_err(|e| Error::Internal(format!("stored document id: {e}")))?;
            Ok(WorkOrder {
                id: r.id,
                customer_id: r.customer_id,
                process: r.process_code,
                address: r.address,
                scheduled_at: r.scheduled_at,
                service_type: r.service_type,
                status: r.status,
                report_url: doc.url(),
                technicians: r.technicians,
                created_at: r.created_at,
                completed_at: r.completed_at,
            })
        })
        .collect()
}

/// A technician's work orders with their report URLs.
pub async fn for_technician(db: impl PgExecutor<'_>, actor: &User) -> Result<Vec<WorkOrder>> {
    if actor.role != Role::Technician {
        return Err(Error::forbidden(
            "technicians_only",
            "this endpoint is for technicians",
        ));
    }
    list(db, Some(actor.id), None).await
}

/// Replaces the technicians of a work order. Those removed stop receiving its report at once
/// (their sync peers get `doc-unavailable`); those added may write it.
pub async fn set_technicians(
    pool: &PgPool,
    actor: &User,
    id: Uuid,
    technicians: &[Uuid],
) -> Result<WorkOrder> {
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query!(
        "select process_code, report_document_id from work_orders where id = $1 for update",
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Err(Error::not_found("work_order_not_found", "work order"));
    };
    // Like `get_for_staff`: another process's work order is exactly as missing as none at all.
    if !is_process_staff(&mut tx, actor, &row.process_code).await? {
        return Err(Error::not_found("work_order_not_found", "work order"));
    }
    let technicians = check_technicians(&mut tx, technicians).await?;
    let doc = DocumentId::parse(&row.report_document_id)
        .map_err(|e| Error::Internal(format!("stored document id: {e}")))?;
    let removed = sqlx::query_scalar!(
        "delete from work_order_technicians where work_order_id = $1 and not (user_id = any($2))
         returning user_id",
        id,
        &technicians
    )
    .fetch_all(&mut *tx)
    .await?;
    let readers = crate::processes::staff(&mut *tx, &row.process_code).await?;
    for user in removed {
        if readers.contains(&user) {
            documents::grant(&mut *tx, doc, user, Mode::Read).await?;
        } else {
            documents::revoke(&mut *tx, doc, user).await?;
        }
    }
    sqlx::query!(
        "insert into work_order_technicians (work_order_id, user_id) select $1, unnest($2::uuid[])
         on conflict do nothing",
        id,
        &technicians
    )
    .execute(&mut *tx)
    .await?;
    for user in &technicians {
        documents::grant(&mut *tx, doc, *user, Mode::Write).await?;
    }
    let order = get(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(order)
}
