//! Reading cases: one case for its customer or for the staff who work it, its trail and messages,
//! and the paginated lists behind the customer's app and the staff queue.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::calendar::local_date;
use crate::error::{Error, Result};
use crate::processes;
use crate::types::{CaseStatus, CaseType, Channel, Level, Priority};

use super::{Case, CaseEvent, Message};

/// Cases by id, in the order given; missing ids are skipped.
pub async fn fetch_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<Case>> {
    let cases = sqlx::query_as!(
        Case,
        r#"select c.id, c.radicado, c.type as "case_type: CaseType", c.subject, c.description,
                  c.channel as "channel: Channel", c.status as "status: CaseStatus",
                  c.priority as "priority: Priority", c.impact as "impact: Level", c.urgency as "urgency: Level",
                  c.customer_id, c.process_code, c.assignee_id, c.answer, c.in_favor_of_customer, c.outcome,
                  c.rating_score, c.rating_comment, c.legal_term_days, c.legal_due_date, c.received_at, c.created_at,
                  c.updated_at, c.answered_at, c.rated_at, c.work_order_id
           from unnest($1::uuid[]) with ordinality as ids(id, ord)
           join cases c on c.id = ids.id
           order by ids.ord"#,
        ids
    )
    .fetch_all(db)
    .await?;
    Ok(cases)
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Case> {
    fetch_many(db, &[id])
        .await?
        .pop()
        .ok_or(Error::not_found("case_not_found", "case"))
}

/// A customer's own case; someone else's is exactly as missing as one that does not exist.
pub async fn get_for_customer(
    db: impl PgExecutor<'_>,
    id: Uuid,
    customer_id: Uuid,
) -> Result<Case> {
    match get(db, id).await {
        Ok(c) if c.customer_id == customer_id => Ok(c),
        Ok(_) => Err(Error::not_found("case_not_found", "case")),
        Err(e) => Err(e),
    }
}

/// A case as the staff member `actor` sees it: one they work (see
/// [`processes::require_works_case`]); any other is exactly as missing as one that does not exist.
pub async fn get_for_staff(conn: &mut PgConnection, actor: &User, id: Uuid) -> Result<Case> {
    processes::require_works_case(&mut *conn, actor.id, id).await?;
    get(conn, id).await
}

/// How many events, messages or notifications a case view carries: the latest; the rest are paged.
pub const LATEST: u32 = 50;

/// The last `limit` of `rows` fetched newest first (`limit + 1` of them), oldest first, and
/// whether older rows remain.
fn latest<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let older = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    rows.reverse();
    (rows, older)
}

/// The latest `limit` events of a case before the event `before` (the latest of all without
/// one), oldest first, and the cursor of the older ones if there are any: the oldest id returned.
pub async fn events(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    customer_view: bool,
    before: Option<i64>,
    limit: u32,
) -> Result<(Vec<CaseEvent>, Option<i64>)> {
    let rows = sqlx::query_as!(
        CaseEvent,
        "select id, kind, actor_id, actor_role, at, from_status, to_status, comment
         from case_events where case_id = $1 and ($2 = false or visible_to_customer)
           and ($3::bigint is null or id < $3)
         order by id desc
         limit $4",
        case_id,
        customer_view,
        before,
        i64::from(limit) + 1,
    )
    .fetch_all(db)
    .await?;
    let (events, older) = latest(rows, limit);
    let next = events.first().filter(|_| older).map(|e| e.id);
    Ok((events, next))
}

/// A position in a case's messages: the oldest message a page returned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MessageCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// The latest `limit` messages of a case before `before`, oldest first, and the cursor of the
/// older ones if there are any.
pub async fn messages(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    before: Option<MessageCursor>,
    limit: u32,
) -> Result<(Vec<Message>, Option<MessageCursor>)> {
    let rows = sqlx::query_as!(
        Message,
        "select id, author_id, author_customer_id, from_staff, body, created_at from case_messages
         where case_id = $1 and ($2::timestamptz is null or (created_at, id) < ($2, $3))
         order by created_at desc, id desc
         limit $4",
        case_id,
        before.map(|c| c.created_at),
        before.map(|c| c.id),
        i64::from(limit) + 1,
    )
    .fetch_all(db)
    .await?;
    let (messages, older) = latest(rows, limit);
    let next = messages.first().filter(|_| older).map(|m| MessageCursor {
        created_at: m.created_at,
        id: m.id,
    });
    Ok((messages, next))
}

/// Turns the `limit + 1` (id, sort key) rows of a keyset query into one page of cases and the
/// position of its last row when another page follows.
async fn page<K: Copy>(
    db: &PgPool,
    rows: Vec<(Uuid, K)>,
    limit: u32,
) -> Result<(Vec<Case>, Option<(K, Uuid)>)> {
    let limit = limit as usize;
    let next = rows
        .get(limit)
        .and(rows.get(limit.wrapping_sub(1)))
        .map(|&(id, key)| (key, id));
    let ids: Vec<Uuid> = rows.iter().take(limit).map(|r| r.0).collect();
    Ok((fetch_many(db, &ids).await?, next))
}

/// A position in a list ordered newest first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page of a customer's cases, newest first, and the cursor of the next page if there is one.
pub async fn list_for_customer(
    db: &PgPool,
    customer_id: Uuid,
    status: Option<CaseStatus>,
    after: Option<CustomerCursor>,
    limit: u32,
) -> Result<(Vec<Case>, Option<CustomerCursor>)> {
    let rows = sqlx::query!(
        "select id, created_at from cases
         where customer_id = $1 and ($2::text is null or status = $2)
           and ($3::timestamptz is null or (created_at, id) < ($3, $4))
         order by created_at desc, id desc
         limit $5",
        customer_id,
        status.map(CaseStatus::as_str),
        after.map(|c| c.created_at),
        after.map(|c| c.id),
        i64::from(limit) + 1,
    )
    .fetch_all(db)
    .await?;
    let (cases, next) = page(
        db,
        rows.into_iter().map(|r| (r.id, r.created_at)).collect(),
        limit,
    )
    .await?;
    Ok((
        cases,
        next.map(|(created_at, id)| CustomerCursor { created_at, id }),
    ))
}

#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub status: Option<CaseStatus>,
    pub process: Option<String>,
    pub assignee: Option<Uuid>,
    pub due_before: Option<NaiveDate>,
    /// Only cases past a deadline: the legal date, or a running SLA clock's due time.
    pub overdue: bool,
}

/// A position in the staff queue: by legal due date, or by the next SLA due time (first response
/// or resolution, whichever comes first; paused and stopped clocks sort last).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueueCursor {
    Legal { due: NaiveDate, id: Uuid },
    Sla { due: DateTime<Utc>, id: Uuid },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueOrder {
    #[default]
    LegalDue,
    SlaDue,
}

/// Sorts after every real due time, for cases with no running SLA clock.
const NO_SLA_DUE: &str = "9999-12-31T00:00:00Z";

/// One page of the cases `actor` works (see [`processes::require_works_case`]), filtered.
pub async fn staff_queue(
    db: &PgPool,
    actor: &User,
    filter: &QueueFilter,
    order: QueueOrder,
    after: Option<QueueCursor>,
    limit: u32,
) -> Result<(Vec<Case>, Option<QueueCursor>)> {
    let never: DateTime<Utc> = NO_SLA_DUE
        .parse()
        .map_err(|_| Error::Internal("sentinel date".into()))?;
    let (after_due, after_at, after_id) = match after {
        Some(QueueCursor::Legal { due, id }) => (Some(due), None, Some(id)),
        Some(QueueCursor::Sla { due, id }) => (None, Some(due), Some(id)),
        None => (None, None, None),
    };
    let rows = sqlx::query!(
        r#"select id, legal_due_date, coalesce(least(first_response_due_at, resolution_due_at), $9) as "sla_due!"
         from cases c cross join staff_scope($12) s
         where works_case(s, c.process_code, c.assignee_id)
           and ($1::text is null or status = $1)
           and ($2::text is null or process_code = $2)
           and ($3::uuid is null or assignee_id = $3)
           and ($4::date is null or legal_due_date < $4)
           and (not $5 or legal_due_date < $13
                or first_response_due_at < now() or resolution_due_at < now())
           and ($6::date is null or (legal_due_date, id) > ($6, $8))
           and ($7::timestamptz is null or (coalesce(least(first_response_due_at, resolution_due_at), $9), id) > ($7, $8))
         order by case when $10 then coalesce(least(first_response_due_at, resolution_due_at), $9) end,
                  case when not $10 then legal_due_date end, id
         limit $11"#,
        filter.status.map(CaseStatus::as_str),
        filter.process.as_deref(),
        filter.assignee,
        filter.due_before,
        filter.overdue,
        after_due,
        after_at,
        after_id,
        never,
        order == QueueOrder::SlaDue,
        i64::from(limit) + 1,
        actor.id,
        local_date(Utc::now()),
    )
    .fetch_all(db)
    .await?;
    match order {
        QueueOrder::LegalDue => {
            let (cases, next) = page(
                db,
                rows.into_iter().map(|r| (r.id, r.legal_due_date)).collect(),
                limit,
            )
            .await?;
            Ok((cases, next.map(|(due, id)| QueueCursor::Legal { due, id })))
        }
        QueueOrder::SlaDue => {
            let (cases, next) = page(
                db,
                rows.into_iter().map(|r| (r.id, r.sla_due)).collect(),
                limit,
            )
            .await?;
            Ok((cases, next.map(|(due, id)| QueueCursor::Sla { due, id })))
        }
    }
}

/// A case as its work order lists it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisitCase {
    pub id: Uuid,
    pub radicado: String,
    #[serde(rename = "type")]
    pub case_type: CaseType,
    pub status: CaseStatus,
    pub subject: String,
    pub received_at: DateTime<Utc>,
}

/// The cases about a work order, oldest first (a visit has a handful at most; 200 are shown).
pub async fn for_work_order(
    db: impl PgExecutor<'_>,
    work_order_id: Uuid,
) -> Result<Vec<VisitCase>> {
    Ok(sqlx::query_as!(
        VisitCase,
        r#"select id, radicado, type as "case_type: CaseType", status as "status: CaseStatus", subject, received_at
           from cases where work_order_id = $1
           order by received_at, id
           limit 200"#,
        work_order_id
    )
    .fetch_all(db)
    .await?)
}
