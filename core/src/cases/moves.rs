//! The moves on a case, each in one transaction that locks the case row: assign, draft, review,
//! close, rate, messages both ways, requests for information and extending the legal term.

use chrono::{NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::blobs;
use crate::deadlines::{self, Clock, Kind};
use crate::error::{Error, Result};
use crate::input::{self, Text};
use crate::notifications::{self, CustomerNotice};
use crate::processes;
use crate::terms::{self, Terms};
use crate::types::{CaseStatus, CaseType, Level, Priority, Role};

use super::lifecycle::{Action, next_status};
use super::queries::get;
use super::{Actor, Case, Message, RATING_PROMPT_DELAY};

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

/// A lifecycle move in progress: the case row is locked and the move is legal from its state.
/// Dropping it without `finish` rolls everything back.
struct Move {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    case_id: Uuid,
    action: Action,
    locked: Locked,
    to: CaseStatus,
    terms: std::sync::Arc<Terms>,
}

impl Move {
    /// Locks the case, which must be one `actor` works, before anything about it is told.
    async fn start(pool: &PgPool, actor: &User, case_id: Uuid, action: Action) -> Result<Move> {
        let terms = terms::current(pool).await?;
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
            terms,
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
        deadlines::refresh(&mut self.tx, &self.terms.schedule, self.case_id).await?;
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
    if !processes::leads(&mut *m.tx, &process, actor.id).await? {
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
    let terms = terms::current(pool).await?;
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
        terms,
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
/// `terms` are the ones the clocks are recomputed with ([`terms::current`]).
pub async fn add_message<'a>(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    terms: &Terms,
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
    if locked.status == CaseStatus::Withdrawn {
        return Err(Error::conflict(
            "case_withdrawn",
            "the case was closed as withdrawn; the customer may file it again",
        ));
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
    deadlines::refresh(&mut tx, &terms.schedule, case_id).await?;
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
    let schedule = &terms::current(pool).await?.schedule;
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
    deadlines::refresh(&mut tx, schedule, case_id).await?;
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

/// Quality director: the case is of another type than it was filed as (a `peticion` from the
/// mailbox that is really a `reclamo`). The legal term is that of the new type, counted from the
/// original receipt; the trail says from what to what and why, and the customer is told when the
/// due date changes. Not once the case is answered, nor after the term was extended (the extension
/// was granted against the old term).
pub async fn reclassify(
    pool: &PgPool,
    actor: &User,
    case_id: Uuid,
    new_type: CaseType,
    reason: &str,
) -> Result<Case> {
    require_role(actor, Role::QualityDirector, "reclassify cases")?;
    let reason = Text::<input::ReclassificationReason>::parse(reason)?.into_string();
    let terms = terms::current(pool).await?;
    let term = terms.legal_term_days(new_type)?;
    let mut tx = pool.begin().await?;
    let locked = lock(&mut tx, case_id).await?;
    processes::require_works_case(&mut *tx, actor.id, case_id).await?;
    if matches!(locked.status, CaseStatus::Answered | CaseStatus::Rated) {
        return Err(Error::conflict(
            "case_already_closed",
            "the case was already answered",
        ));
    }
    let before = get(&mut *tx, case_id).await?;
    if before.case_type == new_type {
        return Err(Error::invalid(
            "same_type",
            format!("the case is a {new_type} already"),
        ));
    }
    let inputs = deadlines::inputs(&mut tx, case_id).await?;
    if deadlines::legal_clock(&terms.schedule.calendar, &inputs, Utc::now()).extended {
        return Err(Error::conflict(
            "legal_term_extended",
            "the legal term was extended under the case's type; it cannot change type now",
        ));
    }
    sqlx::query!(
        "update cases set type = $2, legal_term_days = $3, updated_at = now() where id = $1",
        case_id,
        new_type as CaseType,
        term as i32,
    )
    .execute(&mut *tx)
    .await?;
    let comment = format!("{} → {new_type}: {reason}", before.case_type);
    let event = NewEvent {
        kind: "reclassified",
        from: None,
        to: None,
        comment: Some(&comment),
        visible: true,
    };
    append_event(&mut tx, case_id, actor.into(), event).await?;
    deadlines::refresh(&mut tx, &terms.schedule, case_id).await?;
    let case = get(&mut *tx, case_id).await?;
    if case.legal_due_date != before.legal_due_date {
        let data = serde_json::json!({
            "radicado": case.radicado,
            "type": new_type.as_str(),
            "previous_type": before.case_type.as_str(),
            "due_date": case.legal_due_date,
        });
        notifications::notify_customer(
            &mut tx,
            case_id,
            CustomerNotice {
                kind: notifications::Kind::Reclassification,
                cause: Uuid::new_v4(),
                data,
                delay: std::time::Duration::ZERO,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(case)
}

/// Staff who work the case name the visit it is about (a complaint filed without one, or the
/// wrong one): a work order of the case's own customer. The trail keeps every change.
pub async fn set_work_order(
    pool: &PgPool,
    actor: &User,
    case_id: Uuid,
    work_order_id: Uuid,
) -> Result<Case> {
    if !actor.role.is_staff() {
        return Err(Error::forbidden("staff_only", "this endpoint is for staff"));
    }
    let mut tx = pool.begin().await?;
    let locked = lock(&mut tx, case_id).await?;
    processes::require_works_case(&mut *tx, actor.id, case_id).await?;
    let owner = sqlx::query_scalar!(
        "select customer_id from work_orders where id = $1",
        work_order_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    match owner {
        None => return Err(Error::not_found("work_order_not_found", "work order")),
        Some(owner) if owner != locked.customer_id => {
            return Err(Error::invalid(
                "work_order_of_another_customer",
                "the work order is a visit to another customer",
            ));
        }
        Some(_) => {}
    }
    let previous = sqlx::query_scalar!(
        "update cases c set work_order_id = $2, updated_at = now()
         from cases old where old.id = c.id and c.id = $1
         returning old.work_order_id",
        case_id,
        work_order_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if previous != Some(work_order_id) {
        let comment = match previous {
            Some(p) => format!("work order {p} → {work_order_id}"),
            None => format!("work order {work_order_id}"),
        };
        let event = NewEvent {
            kind: "work_order_linked",
            from: None,
            to: None,
            comment: Some(&comment),
            visible: false,
        };
        append_event(&mut tx, case_id, actor.into(), event).await?;
    }
    let case = get(&mut *tx, case_id).await?;
    tx.commit().await?;
    Ok(case)
}
