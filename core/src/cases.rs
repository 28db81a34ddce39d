//! PQRS cases: filing with a gapless radicado and the legal due date, the PRO-SIG-10 lifecycle
//! with its role rules, the append-only event log, messages, and the queries behind the apps.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::blobs;
use crate::calendar::local_date;
use crate::deadlines::{self, Clock, Kind};
use crate::error::{Error, Result, violates};
use crate::holidays;
use crate::input::{self, Text};
use crate::notifications::{self, CustomerNotice};
use crate::processes;
use crate::types::{CaseStatus, CaseType, Channel, Level, Priority, Role};

/// The rating prompt follows the answer after the customer had a while to read it.
pub const RATING_PROMPT_DELAY: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub id: Uuid,
    pub radicado: String,
    #[serde(rename = "type")]
    pub case_type: CaseType,
    pub subject: String,
    pub description: String,
    pub channel: Channel,
    pub status: CaseStatus,
    pub priority: Priority,
    pub impact: Level,
    pub urgency: Level,
    pub customer_id: Uuid,
    pub process_code: Option<String>,
    pub assignee_id: Option<Uuid>,
    pub answer: Option<String>,
    pub in_favor_of_customer: Option<bool>,
    pub outcome: Option<String>,
    pub rating_score: Option<i16>,
    pub rating_comment: Option<String>,
    pub legal_term_days: i32,
    pub legal_due_date: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub rated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseEvent {
    pub id: i64,
    pub kind: String,
    pub actor_id: Option<Uuid>,
    pub actor_role: String,
    pub at: DateTime<Utc>,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: Uuid,
    /// The user who wrote it, or the customer when they have no app user.
    pub author_id: Option<Uuid>,
    pub author_customer_id: Option<Uuid>,
    pub from_staff: bool,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// What a customer (or a channel on their behalf) files.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// Chosen by the device, so retries and offline syncs file once.
    pub id: Uuid,
    pub case_type: CaseType,
    pub subject: String,
    pub description: String,
    pub channel: Channel,
    /// The customer's chat it came from, whose replies go back there.
    pub chat_id: Option<Uuid>,
}

pub enum Filed {
    Created(Case),
    /// The same request arrived before: this is the case it created.
    Existing(Case),
}

fn request_hash(customer_id: Uuid, c: &NewCase) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in [
        customer_id.as_bytes().as_slice(),
        c.case_type.as_str().as_bytes(),
        c.subject.as_bytes(),
        c.description.as_bytes(),
        c.channel.as_str().as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().to_vec()
}

/// Who acts on a case: a user of the apps (staff, or a customer's app user), or a customer who
/// has no app user (writing from a chat or the web form).
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    User(&'a User),
    Customer(Uuid),
}

impl<'a> From<&'a User> for Actor<'a> {
    fn from(user: &'a User) -> Self {
        Actor::User(user)
    }
}

impl Actor<'_> {
    pub fn user_id(self) -> Option<Uuid> {
        match self {
            Actor::User(u) => Some(u.id),
            Actor::Customer(_) => None,
        }
    }

    pub fn role(self) -> Role {
        match self {
            Actor::User(u) => u.role,
            Actor::Customer(_) => Role::Customer,
        }
    }

    /// The customer acting, or the one an app user belongs to.
    pub fn customer_id(self) -> Option<Uuid> {
        match self {
            Actor::User(u) => u.customer_id,
            Actor::Customer(id) => Some(id),
        }
    }
}

/// Files a case: radicado, legal due date, priority and the `filed` event, in one transaction.
/// Filing the same id again returns the first case when the content is the same and is a conflict
/// when it is not.
pub async fn file(
    pool: &PgPool,
    customer_id: Uuid,
    filed_by: Option<&User>,
    new: NewCase,
) -> Result<Filed> {
    let new = NewCase {
        subject: Text::<input::Subject>::parse(&new.subject)?.into_string(),
        description: Text::<input::Description>::parse(&new.description)?.into_string(),
        ..new
    };
    let hash = request_hash(customer_id, &new);
    if let Some(existing) = existing_filing(pool, new.id, customer_id, &hash).await? {
        return Ok(Filed::Existing(existing));
    }

    let now = Utc::now();
    let filed_on = local_date(now);
    let (term, schedule) = {
        let mut conn = pool.acquire().await?;
        let term = holidays::legal_term_days(&mut *conn, new.case_type).await?;
        (term, deadlines::load_schedule(&mut conn).await?)
    };
    let due = schedule.calendar.add_business_days(filed_on, term);
    let (impact, urgency) = (Level::Medium, Level::Medium);
    let priority = Priority::from_matrix(impact, urgency);
    // The clocks start now: their due times and alert instants are written with the case.
    let start = |clock: Clock| deadlines::StoredEvent {
        clock,
        kind: Kind::Start,
        at: now,
        extend_to: None,
    };
    let inputs = deadlines::ClockInputs {
        filed_at: now,
        legal_term_days: term,
        priority,
        events: vec![
            start(Clock::Legal),
            start(Clock::FirstResponse),
            start(Clock::Resolution),
        ],
    };
    let clocks = deadlines::evaluate(&schedule, &inputs, now);
    let (first_due, resolution_due) = (clocks.first_response.due_at, clocks.resolution.due_at);
    let alerts = deadlines::alert_instants(&schedule, &inputs, &clocks);
    let alert_clocks: Vec<String> = alerts.iter().map(|a| a.0.as_str().to_owned()).collect();
    let alert_percents: Vec<i16> = alerts.iter().map(|a| a.1).collect();
    let alert_instants: Vec<DateTime<Utc>> = alerts.iter().map(|a| a.2).collect();
    let actor_role = filed_by.map_or("system", |u| u.role.as_str());

    let mut tx = pool.begin().await?;
    // The counter row stays locked until commit: one statement, then commit, keeps that short.
    let inserted = sqlx::query_scalar!(
        "with n as (
             insert into radicado_counters (year, last_number) values ($2, 1)
             on conflict (year) do update set last_number = radicado_counters.last_number + 1
             returning last_number
         ), c as (
             insert into cases (id, radicado, type, subject, description, channel, customer_id, filed_by,
                                request_hash, status, impact, urgency, priority, legal_term_days,
                                legal_due_date, created_at, updated_at, first_response_due_at, resolution_due_at,
                                chat_id)
             select $1, 'PQRS-' || $2::int || '-' || lpad(n.last_number::text, greatest(6, length(n.last_number::text)), '0'),
                    $3, $4, $5, $6, $7, $8, $9, 'received', $10, $11, $12, $13, $14, $15, $15, $17, $18, $23
             from n
             returning id, radicado
         ), e as (
             insert into case_events (case_id, actor_id, actor_role, at, kind, from_status, to_status, visible_to_customer)
             select c.id, $8, $16, $15, 'filed', null, 'received', true from c
         ), k as (
             insert into case_clock_events (case_id, clock, kind, at)
             select c.id, k.clock, 'start', $15
             from c cross join (values ('legal'), ('first_response'), ('resolution')) as k (clock)
         ), a as (
             -- The acknowledgement, in this one statement (the counter row is locked until commit);
             -- the database fans it out as it does every notification.
             insert into notifications (dedupe_key, case_id, customer_id, kind, urgency, ttl_secs, data)
             select 'acknowledgement:' || c.id, c.id, $7, 'acknowledgement', 'normal', $19,
                    jsonb_build_object('radicado', c.radicado, 'type', $3::text, 'due_date', $14::date)
             from c
         ), al as (
             insert into deadline_alerts (case_id, clock, percent, due_at)
             select c.id, x.clock, x.percent, x.due_at
             from c cross join unnest($20::text[], $21::int2[], $22::timestamptz[]) as x (clock, percent, due_at)
         )
         select radicado from c",
        new.id,
        filed_on.year(),
        new.case_type as CaseType,
        new.subject,
        new.description,
        new.channel as Channel,
        customer_id,
        filed_by.map(|u| u.id),
        hash,
        impact as Level,
        urgency as Level,
        priority as Priority,
        term as i32,
        due,
        now,
        actor_role,
        first_due,
        resolution_due,
        notifications::NOTICE_TTL.as_secs() as i32,
        &alert_clocks,
        &alert_percents,
        &alert_instants,
        new.chat_id,
    )
    .fetch_one(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {
            tx.commit().await?;
            Ok(Filed::Created(get(pool, new.id).await?))
        }
        // A concurrent request with the same id won; its case is the answer (or the conflict).
        Err(e) if violates(&e, "cases_pkey") => {
            drop(tx);
            existing_filing(pool, new.id, customer_id, &hash)
                .await?
                .map(Filed::Existing)
                .ok_or_else(|| Error::Internal("a case id conflicted but no case has it".into()))
        }
        Err(e) => Err(e.into()),
    }
}

async fn existing_filing(
    db: &PgPool,
    id: Uuid,
    customer_id: Uuid,
    hash: &[u8],
) -> Result<Option<Case>> {
    let row = sqlx::query!(
        "select customer_id, request_hash from cases where id = $1",
        id
    )
    .fetch_optional(db)
    .await?;
    match row {
        None => Ok(None),
        Some(r) if r.customer_id == customer_id && r.request_hash == hash => {
            Ok(Some(get(db, id).await?))
        }
        Some(_) => Err(Error::conflict(
            "idempotency_conflict",
            "a different case was already filed with this id; generate a new id for a new case",
        )),
    }
}

/// Cases by id, in the order given; missing ids are skipped.
pub async fn fetch_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<Case>> {
    let cases = sqlx::query_as!(
        Case,
        r#"select c.id, c.radicado, c.type as "case_type: CaseType", c.subject, c.description,
                  c.channel as "channel: Channel", c.status as "status: CaseStatus",
                  c.priority as "priority: Priority", c.impact as "impact: Level", c.urgency as "urgency: Level",
                  c.customer_id, c.process_code, c.assignee_id, c.answer, c.in_favor_of_customer, c.outcome,
                  c.rating_score, c.rating_comment, c.legal_term_days, c.legal_due_date, c.created_at,
                  c.updated_at, c.answered_at, c.rated_at
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

/// The moves of the PRO-SIG-10 lifecycle (the README opens with who makes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Assign,
    Draft,
    Approve,
    Return,
    Close,
    Rate,
    /// Staff ask the customer for missing information; the case waits on them.
    RequestInfo,
}

impl Action {
    fn event_kind(self) -> &'static str {
        match self {
            Action::Assign => "assigned",
            Action::Draft => "drafted",
            Action::Approve => "approved",
            Action::Return => "returned",
            Action::Close => "closed",
            Action::Rate => "rated",
            Action::RequestInfo => "information_requested",
        }
    }

    /// Internal review steps stay between staff; the customer sees progress and the outcome.
    fn visible_to_customer(self) -> bool {
        matches!(
            self,
            Action::Assign | Action::Close | Action::Rate | Action::RequestInfo
        )
    }
}

/// Where `action` takes a case in `from`, or why it cannot (a 409 code).
pub fn next_status(action: Action, from: CaseStatus) -> Result<CaseStatus> {
    use CaseStatus::*;
    let refuse = |code, message: &str| {
        Err(Error::conflict(
            code,
            format!("{message} (the case is {from})"),
        ))
    };
    match (action, from) {
        (_, WaitingCustomer) => refuse(
            "waiting_on_customer",
            "the case is waiting for the customer's reply to a request for information",
        ),
        (Action::RequestInfo, Received | Assigned) => Ok(WaitingCustomer),
        (Action::RequestInfo, _) => refuse(
            "answer_in_progress",
            "information can be requested only before the answer is drafted",
        ),
        (Action::Assign, Received | Assigned) => Ok(Assigned),
        (Action::Assign, _) => refuse(
            "case_past_assignment",
            "the case already has an answer in progress and cannot be reassigned",
        ),
        (Action::Draft, Assigned) => Ok(InApproval),
        (Action::Draft, Received) => refuse(
            "case_not_assigned",
            "the case must be assigned to a process before drafting",
        ),
        (Action::Draft, InApproval) => refuse(
            "draft_pending_approval",
            "a draft is already waiting for approval",
        ),
        (Action::Draft, _) => refuse("answer_already_approved", "the answer was already approved"),
        (Action::Approve | Action::Return, InApproval) => Ok(if action == Action::Approve {
            Approved
        } else {
            Assigned
        }),
        (Action::Approve | Action::Return, _) => refuse(
            "no_draft_to_review",
            "there is no draft waiting for approval",
        ),
        (Action::Close, Approved) => Ok(Answered),
        (Action::Close, Answered | Rated) => refuse(
            "case_already_closed",
            "the case was already closed and answered",
        ),
        (Action::Close, _) => refuse(
            "answer_not_approved",
            "the answer must be approved by the process leader before closing",
        ),
        (Action::Rate, Answered) => Ok(Rated),
        (Action::Rate, Rated) => refuse("case_already_rated", "the answer was already rated"),
        (Action::Rate, _) => refuse(
            "case_not_answered",
            "the case can be rated only after it is answered",
        ),
    }
}

struct Locked {
    status: CaseStatus,
    resume_status: Option<CaseStatus>,
    process_code: Option<String>,
    assignee_id: Option<Uuid>,
    customer_id: Uuid,
}

async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Locked> {
    sqlx::query_as!(
        Locked,
        r#"select status as "status: CaseStatus", resume_status as "resume_status: CaseStatus", process_code, assignee_id, customer_id
           from cases where id = $1 for update"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::not_found("case_not_found", "case"))
}

/// One line of the ISO 10002 trail.
struct NewEvent<'a> {
    kind: &'a str,
    from: Option<CaseStatus>,
    to: Option<CaseStatus>,
    comment: Option<&'a str>,
    visible: bool,
}

async fn append_event(
    conn: &mut PgConnection,
    case_id: Uuid,
    actor: Actor<'_>,
    e: NewEvent<'_>,
) -> Result<()> {
    sqlx::query!(
        "insert into case_events (case_id, actor_id, actor_role, kind, from_status, to_status, comment, visible_to_customer)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        case_id,
        actor.user_id(),
        actor.role().as_str(),
        e.kind,
        e.from.map(CaseStatus::as_str),
        e.to.map(CaseStatus::as_str),
        e.comment,
        e.visible,
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn require_role<'a>(actor: impl Into<Actor<'a>>, role: Role, action: &str) -> Result<()> {
    let actual = actor.into().role();
    if actual == role {
        Ok(())
    } else {
        Err(Error::forbidden(
            "role_not_allowed",
            format!("only a {role} may {action}; you are a {actual}"),
        ))
    }
}

async fn leads(conn: &mut PgConnection, process: &str, user_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from processes where code = $1 and leader_id = $2) as "leads!""#,
        process,
        user_id
    )
    .fetch_one(conn)
    .await?)
}

/// A lifecycle move in progress: the case row is locked and the move is legal from its state.
/// Dropping it without `finish` rolls everything back.
struct Move {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    case_id: Uuid,
    action: Action,
    locked: Locked,
    to: CaseStatus,
}

impl Move {
    /// Locks the case, which must be one `actor` works, before anything about it is told.
    async fn start(pool: &PgPool, actor: &User, case_id: Uuid, action: Action) -> Result<Move> {
        let mut tx = pool.begin().await?;
        let locked = lock(&mut tx, case_id).await?;
        processes::require_works_case(&mut *tx, actor.id, case_id).await?;
        let to = next_status(action, locked.status)?;
        Ok(Move {
            tx,
            case_id,
            action,
            locked,
            to,
        })
    }

    /// Sets the new status and appends the event, then commits.
    async fn finish(mut self, actor: Actor<'_>, comment: Option<&str>) -> Result<Case> {
        sqlx::query!(
            "update cases set status = $2, updated_at = now() where id = $1",
            self.case_id,
            self.to as CaseStatus
        )
        .execute(&mut *self.tx)
        .await?;
        let event = NewEvent {
            kind: self.action.event_kind(),
            from: Some(self.locked.status),
            to: Some(self.to),
            comment,
            visible: self.action.visible_to_customer(),
        };
        append_event(&mut self.tx, self.case_id, actor, event).await?;
        deadlines::refresh(&mut self.tx, self.case_id).await?;
        let case = get(&mut *self.tx, self.case_id).await?;
        self.tx.commit().await?;
        Ok(case)
    }
}

pub struct Assignment {
    pub process: String,
    pub assignee: Option<Uuid>,
    pub impact: Level,
    pub urgency: Level,
}

/// The quality director classifies the case and sends it to a process (and optionally a person).
pub async fn assign(pool: &PgPool, actor: &User, case_id: Uuid, a: Assignment) -> Result<Case> {
    require_role(actor, Role::QualityDirector, "assign cases")?;
    let process = crate::processes::parse_code(&a.process)?;
    let comment = format!("process {process}");
    let mut m = Move::start(pool, actor, case_id, Action::Assign).await?;
    let conn = &mut *m.tx;
    {
        if crate::processes::find(&mut *conn, &process)
            .await?
            .is_none()
        {
            return Err(Error::invalid(
                "unknown_process",
                format!("there is no process {process}"),
            ));
        }
        if let Some(assignee) = a.assignee {
            let role = sqlx::query_scalar!(
                r#"select role as "role: Role" from users where id = $1 and active"#,
                assignee
            )
            .fetch_optional(&mut *conn)
            .await?;
            if role != Some(Role::Collaborator)
                || !processes::is_member(&mut *conn, &process, assignee).await?
            {
                return Err(Error::invalid(
                    "assignee_not_in_process",
                    format!("the assignee must be a collaborator of process {process}"),
                ));
            }
        }
        sqlx::query!(
            "update cases set process_code = $2, assignee_id = $3, impact = $4, urgency = $5, priority = $6 where id = $1",
            case_id,
            process,
            a.assignee,
            a.impact as Level,
            a.urgency as Level,
            Priority::from_matrix(a.impact, a.urgency) as Priority,
        )
        .execute(conn)
        .await?;
    }
    m.finish(actor.into(), Some(&comment)).await
}

/// A collaborator of the assigned process (the assignee, when there is one) writes the answer.
pub async fn draft(pool: &PgPool, actor: &User, case_id: Uuid, answer: &str) -> Result<Case> {
    require_role(actor, Role::Collaborator, "draft answers")?;
    let answer = Text::<input::Answer>::parse(answer)?.into_string();
    let mut m = Move::start(pool, actor, case_id, Action::Draft).await?;
    let (conn, locked) = (&mut *m.tx, &m.locked);
    {
        // Move::start let only a collaborator of the case's process, or its assignee, this far.
        if locked.assignee_id.is_some_and(|a| a != actor.id) {
            return Err(Error::forbidden(
                "not_assignee",
                "the case is assigned to another collaborator",
            ));
        }
        sqlx::query!(
            "update cases set answer = $2 where id = $1",
            case_id,
            answer
        )
        .execute(conn)
        .await?;
    }
    m.finish(actor.into(), None).await
}

async fn review(
    pool: &PgPool,
    actor: &User,
    case_id: Uuid,
    action: Action,
    comment: Option<&str>,
) -> Result<Case> {
    let verb = if action == Action::Approve {
        "approve answers"
    } else {
        "return drafts"
    };
    require_role(actor, Role::ProcessLeader, verb)?;
    let mut m = Move::start(pool, actor, case_id, action).await?;
    let process = m.locked.process_code.clone().unwrap_or_default();
    if !leads(&mut m.tx, &process, actor.id).await? {
        return Err(Error::forbidden(
            "not_process_leader",
            format!("only the leader of process {process} may review this answer"),
        ));
    }
    m.finish(actor.into(), comment).await
}

pub async fn approve(
    pool: &PgPool,
    actor: &User,
    case_id: Uuid,
    comment: Option<&str>,
) -> Result<Case> {
    let comment = comment
        .map(|c| Text::<input::Comment>::parse(c).map(Text::into_string))
        .transpose()?;
    review(pool, actor, case_id, Action::Approve, comment.as_deref()).await
}

/// The leader sends the draft back to the collaborator, saying why.
pub async fn return_draft(
    pool: &PgPool,
    actor: &User,
    case_id: Uuid,
    comment: &str,
) -> Result<Case> {
    let comment = Text::<input::ReturnComment>::parse(comment)?.into_string();
    review(pool, actor, case_id, Action::Return, Some(&comment)).await
}

pub struct Closing {
    pub in_favor_of_customer: bool,
    pub outcome: Option<String>,
}

/// The quality director closes the case and sends the approved answer to the customer.
pub async fn close(pool: &PgPool, actor: &User, case_id: Uuid, c: Closing) -> Result<Case> {
    require_role(actor, Role::QualityDirector, "close cases")?;
    let outcome = c
        .outcome
        .as_deref()
        .map(|o| Text::<input::Outcome>::parse(o).map(Text::into_string))
        .transpose()?;
    let comment = if c.in_favor_of_customer {
        "decided in the customer's favour"
    } else {
        "not decided in the customer's favour"
    };
    let mut m = Move::start(pool, actor, case_id, Action::Close).await?;
    sqlx::query!(
        "update cases set in_favor_of_customer = $2, outcome = $3, answered_at = now() where id = $1",
        case_id,
        c.in_favor_of_customer,
        outcome
    )
    .execute(&mut *m.tx)
    .await?;
    // Closing sends the answer: it is the first response if nothing else was, and it ends every clock.
    for clock in [Clock::FirstResponse, Clock::Resolution, Clock::Legal] {
        if !deadlines::is_stopped(&mut m.tx, case_id, clock).await? {
            deadlines::record(&mut m.tx, case_id, clock, Kind::Stop, Some(actor.id), None).await?;
        }
    }
    let case = get(&mut *m.tx, case_id).await?;
    let data = serde_json::json!({"radicado": case.radicado, "type": case.case_type.as_str()});
    // A chat carries the answer itself; a push notification only says it is there.
    let mut answer = data.clone();
    answer["answer"] = case.answer.clone().into();
    for (kind, data, delay) in [
        (
            notifications::Kind::Answer,
            answer,
            std::time::Duration::ZERO,
        ),
        (notifications::Kind::RatingPrompt, data, RATING_PROMPT_DELAY),
    ] {
        let notice = CustomerNotice {
            kind,
            cause: case_id,
            data,
            delay,
        };
        notifications::notify_customer(&mut m.tx, case_id, notice).await?;
    }
    m.finish(actor.into(), Some(comment)).await
}

/// The customer who filed rates the answer, once: through an app user, or as a customer with
/// none (from a chat).
pub async fn rate<'a>(
    pool: &PgPool,
    actor: impl Into<Actor<'a>>,
    case_id: Uuid,
    score: i64,
    comment: Option<&str>,
) -> Result<Case> {
    let actor = actor.into();
    require_role(actor, Role::Customer, "rate answers")?;
    if !(1..=5).contains(&score) {
        return Err(Error::invalid(
            "invalid_score",
            "the score must be a whole number from 1 to 5",
        ));
    }
    let comment = comment
        .filter(|c| !c.trim().is_empty())
        .map(|c| Text::<input::Comment>::parse(c).map(Text::into_string))
        .transpose()?;
    // Ownership is checked before the state, so someone else's case stays invisible.
    let mut tx = pool.begin().await?;
    let locked = lock(&mut tx, case_id).await?;
    if Some(locked.customer_id) != actor.customer_id() {
        return Err(Error::not_found("case_not_found", "case"));
    }
    let to = next_status(Action::Rate, locked.status)?;
    let mut m = Move {
        tx,
        case_id,
        action: Action::Rate,
        locked,
        to,
    };
    sqlx::query!(
        "update cases set rating_score = $2, rating_comment = $3, rated_at = now() where id = $1",
        case_id,
        score as i16,
        comment
    )
    .execute(&mut *m.tx)
    .await?;
    // Whoever rated before the prompt left is not asked again.
    sqlx::query!(
        "update deliveries d set state = 'cancelled', last_error = 'the answer was rated before the prompt left', locked_until = null
         from notifications n
         where n.id = d.notification_id and n.case_id = $1 and n.kind = 'rating_prompt' and d.state = 'pending'",
        case_id
    )
    .execute(&mut *m.tx)
    .await?;
    m.finish(actor, comment.as_deref()).await
}

/// The comment a customer adds after rating with one tap (from a chat): kept once, on a case
/// they rated without one.
pub async fn comment_rating<'a>(
    pool: &PgPool,
    actor: impl Into<Actor<'a>>,
    case_id: Uuid,
    comment: &str,
) -> Result<()> {
    let actor = actor.into();
    require_role(actor, Role::Customer, "rate answers")?;
    let comment = Text::<input::Comment>::parse(comment)?.into_string();
    let updated = sqlx::query!(
        "update cases set rating_comment = $3
         where id = $1 and customer_id = $2 and status = 'rated' and rating_comment is null",
        case_id,
        actor.customer_id(),
        comment
    )
    .execute(pool)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(Error::conflict(
            "rating_comment_not_allowed",
            "the case is not rated, or its rating has a comment already",
        ));
    }
    Ok(())
}

/// A message on a case: from its customer (an app user, or a customer with none), or from staff
/// (and then visible to the customer, who is told), with the blobs it attaches (see
/// [`blobs::attach_to_case`]); a bad attachment writes nothing. Within a caller's transaction
/// (a chat update being handled) the message is part of it, so a replayed update adds it once.
pub async fn add_message<'a>(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: impl Into<Actor<'a>>,
    case_id: Uuid,
    body: &str,
    attachments: &[String],
) -> Result<(Message, Vec<blobs::Attachment>)> {
    let actor = actor.into();
    let body = Text::<input::Message>::parse(body)?.into_string();
    let staff = match actor {
        Actor::User(u) if u.role.is_staff() => Some(u),
        _ => None,
    };
    if staff.is_none() && actor.role() != Role::Customer {
        return Err(Error::forbidden(
            "role_not_allowed",
            "only the customer and staff write on a case",
        ));
    }
    let mut tx = db.begin().await?;
    let locked = lock(&mut tx, case_id).await?;
    if let Some(user) = staff {
        processes::require_works_case(&mut *tx, user.id, case_id).await?;
    } else if Some(locked.customer_id) != actor.customer_id() {
        return Err(Error::not_found("case_not_found", "case"));
    }
    let message = insert_message(&mut tx, case_id, actor, &body).await?;
    let attached = match actor {
        Actor::User(user) => {
            blobs::attach_to_case(&mut tx, case_id, Some(message.id), attachments, user).await?
        }
        Actor::Customer(customer_id) => {
            blobs::attach_customer_blobs(
                &mut tx,
                case_id,
                Some(message.id),
                attachments,
                customer_id,
            )
            .await?
        }
    };
    if let Some(user) = staff {
        first_response(&mut tx, case_id, user).await?;
        let data = notice_data(&mut tx, case_id, ("message", &body)).await?;
        notifications::notify_customer(
            &mut tx,
            case_id,
            CustomerNotice {
                kind: notifications::Kind::StaffMessage,
                cause: message.id,
                data,
                delay: std::time::Duration::ZERO,
            },
        )
        .await?;
    } else if let (CaseStatus::WaitingCustomer, Some(back)) = (locked.status, locked.resume_status)
    {
        // The customer's reply resumes the clocks exactly where they paused.
        for clock in [Clock::Resolution, Clock::Legal] {
            deadlines::record(&mut tx, case_id, clock, Kind::Resume, actor.user_id(), None).await?;
        }
        sqlx::query!(
            "update cases set status = $2, resume_status = null where id = $1",
            case_id,
            back as CaseStatus
        )
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            kind: "customer_replied",
            from: Some(CaseStatus::WaitingCustomer),
            to: Some(back),
            comment: None,
            visible: true,
        };
        append_event(&mut tx, case_id, actor, event).await?;
    }
    deadlines::refresh(&mut tx, case_id).await?;
    tx.commit().await?;
    Ok((message, attached))
}

async fn insert_message(
    conn: &mut PgConnection,
    case_id: Uuid,
    actor: Actor<'_>,
    body: &str,
) -> Result<Message> {
    let from_staff = actor.role().is_staff();
    let (author_id, author_customer_id) = match actor {
        Actor::User(u) => (Some(u.id), None),
        Actor::Customer(id) => (None, Some(id)),
    };
    let message = sqlx::query_as!(
        Message,
        "insert into case_messages (id, case_id, author_id, author_customer_id, from_staff, body)
         values ($1, $2, $3, $4, $5, $6)
         returning id, author_id, author_customer_id, from_staff, body, created_at",
        Uuid::new_v4(),
        case_id,
        author_id,
        author_customer_id,
        from_staff,
        body
    )
    .fetch_one(&mut *conn)
    .await?;
    let kind = if from_staff {
        "staff_message"
    } else {
        "customer_message"
    };
    let event = NewEvent {
        kind,
        from: None,
        to: None,
        comment: None,
        visible: true,
    };
    append_event(&mut *conn, case_id, actor, event).await?;
    sqlx::query!("update cases set updated_at = now() where id = $1", case_id)
        .execute(&mut *conn)
        .await?;
    Ok(message)
}

/// What a notice about the case names it by (rendered in the recipient's language at delivery),
/// with `what` the notice says.
async fn notice_data(
    conn: &mut PgConnection,
    case_id: Uuid,
    what: (&str, &str),
) -> Result<serde_json::Value> {
    let case = sqlx::query!(
        r#"select radicado, type as "case_type: CaseType" from cases where id = $1"#,
        case_id
    )
    .fetch_one(conn)
    .await?;
    Ok(
        serde_json::json!({"radicado": case.radicado, "type": case.case_type.as_str(), what.0: what.1}),
    )
}

/// The first word from staff that the customer can see meets the first-response clock.
async fn first_response(conn: &mut PgConnection, case_id: Uuid, actor: &User) -> Result<()> {
    if !deadlines::is_stopped(&mut *conn, case_id, Clock::FirstResponse).await? {
        deadlines::record(
            conn,
            case_id,
            Clock::FirstResponse,
            Kind::Stop,
            Some(actor.id),
            None,
        )
        .await?;
    }
    Ok(())
}

/// Staff ask the customer for what is missing (Ley 1755 art. 17): the question goes to the
/// customer, the case waits, and the resolution and legal clocks pause until the customer replies.
pub async fn request_info(
    pool: &PgPool,
    actor: &User,
    case_id: Uuid,
    question: &str,
) -> Result<Case> {
    if !actor.role.is_staff() {
        return Err(Error::forbidden(
            "role_not_allowed",
            "only staff request information",
        ));
    }
    let question = Text::<input::Question>::parse(question)?.into_string();
    let mut m = Move::start(pool, actor, case_id, Action::RequestInfo).await?;
    let message = insert_message(&mut m.tx, case_id, actor.into(), &question).await?;
    first_response(&mut m.tx, case_id, actor).await?;
    let data = notice_data(&mut m.tx, case_id, ("question", &question)).await?;
    notifications::notify_customer(
        &mut m.tx,
        case_id,
        CustomerNotice {
            kind: notifications::Kind::InformationRequest,
            cause: message.id,
            data,
            delay: std::time::Duration::ZERO,
        },
    )
    .await?;
    for clock in [Clock::Resolution, Clock::Legal] {
        deadlines::record(&mut m.tx, case_id, clock, Kind::Pause, Some(actor.id), None).await?;
    }
    sqlx::query!(
        "update cases set resume_status = $2 where id = $1",
        case_id,
        m.locked.status as CaseStatus
    )
    .execute(&mut *m.tx)
    .await?;
    m.finish(actor.into(), None).await
}

/// The quality director extends the legal term once, before it expires, to at most twice the
/// original term, telling the customer why (Ley 1755 art. 14 parágrafo).
pub async fn extend_legal_term(
    pool: &PgPool,
    actor: &User,
    case_id: Uuid,
    new_due: NaiveDate,
    reason: &str,
) -> Result<Case> {
    require_role(actor, Role::QualityDirector, "extend legal terms")?;
    let reason = Text::<input::ExtensionReason>::parse(reason)?.into_string();
    let mut tx = pool.begin().await?;
    let locked = lock(&mut tx, case_id).await?;
    processes::require_works_case(&mut *tx, actor.id, case_id).await?;
    if matches!(locked.status, CaseStatus::Answered | CaseStatus::Rated) {
        return Err(Error::conflict(
            "case_already_closed",
            "the case was already answered",
        ));
    }
    let schedule = deadlines::load_schedule(&mut tx).await?;
    let inputs = deadlines::inputs(&mut tx, case_id).await?;
    let legal = deadlines::legal_clock(&schedule.calendar, &inputs, Utc::now());
    if legal.extended {
        return Err(Error::conflict(
            "extension_already_used",
            "the legal term was already extended once",
        ));
    }
    if legal.business_days_remaining < 0 {
        return Err(Error::conflict(
            "legal_term_expired",
            "the legal term has expired and can no longer be extended",
        ));
    }
    let latest = schedule
        .calendar
        .add_business_days(legal.due_date, inputs.legal_term_days);
    if new_due <= legal.due_date {
        return Err(Error::invalid(
            "extension_not_later",
            format!("the new date must be after {}", legal.due_date),
        ));
    }
    if new_due > latest {
        return Err(Error::invalid(
            "extension_too_long",
            format!("the term can be extended to at most twice its length: {latest} at the latest"),
        ));
    }
    deadlines::record(
        &mut tx,
        case_id,
        Clock::Legal,
        Kind::Extend,
        Some(actor.id),
        Some(new_due),
    )
    .await?;
    insert_message(&mut tx, case_id, actor.into(), &reason).await?;
    let event = NewEvent {
        kind: "legal_term_extended",
        from: None,
        to: None,
        comment: Some(&reason),
        visible: true,
    };
    append_event(&mut tx, case_id, actor.into(), event).await?;
    deadlines::refresh(&mut tx, case_id).await?;
    let case = get(&mut *tx, case_id).await?;
    let data = serde_json::json!({"radicado": case.radicado, "type": case.case_type.as_str(), "due_date": new_due, "reason": reason});
    notifications::notify_customer(
        &mut tx,
        case_id,
        CustomerNotice {
            kind: notifications::Kind::Extension,
            cause: case_id,
            data,
            delay: std::time::Duration::ZERO,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(case)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaseStatus::*;

    #[test]
    fn the_happy_path_follows_the_design() {
        let mut s = Received;
        for (action, expected) in [
            (Action::Assign, Assigned),
            (Action::Draft, InApproval),
            (Action::Return, Assigned),
            (Action::Draft, InApproval),
            (Action::Approve, Approved),
            (Action::Close, Answered),
            (Action::Rate, Rated),
        ] {
            s = next_status(action, s).unwrap_or_else(|e| panic!("{action:?} from {s}: {e}"));
            assert_eq!(s, expected);
        }
    }

    #[test]
    fn every_other_move_is_refused_with_a_reason() {
        let allowed = |a, s| {
            matches!(
                (a, s),
                (Action::Assign, Received | Assigned)
                    | (Action::Draft, Assigned)
                    | (Action::Approve | Action::Return, InApproval)
                    | (Action::Close, Approved)
                    | (Action::Rate, Answered)
                    | (Action::RequestInfo, Received | Assigned)
            )
        };
        for &s in CaseStatus::ALL {
            for a in [
                Action::Assign,
                Action::Draft,
                Action::Approve,
                Action::Return,
                Action::Close,
                Action::Rate,
                Action::RequestInfo,
            ] {
                match next_status(a, s) {
                    Ok(_) => assert!(allowed(a, s), "{a:?} allowed from {s}"),
                    Err(Error::Conflict { code, .. }) => {
                        assert!(!allowed(a, s) && !code.is_empty())
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
    }

    #[test]
    fn bogota_dates() {
        let late_evening =
            DateTime::parse_from_rfc3339("2026-01-01T03:00:00Z").map(|d| d.with_timezone(&Utc));
        assert_eq!(
            late_evening.map(local_date).ok(),
            NaiveDate::from_ymd_opt(2025, 12, 31)
        );
    }
}
