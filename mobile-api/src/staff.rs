//! The staff's side: the queue, and the moves of PRO-SIG-10 (assign, draft, approve, return, close).

use atiende_core::cases::{self, Assignment, Closing, QueueCursor, QueueFilter, QueueOrder};
use atiende_core::terms;
use atiende_core::types::CaseStatus;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::case_lists::message_page;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Json, Path, Query, Staff};
use crate::views::{
    ApproveRequest, AssignRequest, CloseRequest, DraftRequest, ExtendRequest, MessageRequest,
    MessageView, Page, RequestInfoRequest, ReturnRequest, StaffCase,
};
use crate::{ApiState, page_limit};

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrderParam {
    LegalDue,
    SlaDue,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueParams {
    pub status: Option<CaseStatus>,
    /// Process code (compared trimmed and upper-cased).
    pub process: Option<String>,
    pub assignee: Option<Uuid>,
    /// Only cases whose legal due date is before this date (`YYYY-MM-DD`).
    pub due_before: Option<NaiveDate>,
    /// `true`: only cases past their legal date or a running SLA clock's due time.
    pub overdue: Option<bool>,
    /// `legal_due` (default): soonest legal due date first; `sla_due`: soonest SLA due time first.
    #[param(inline)]
    pub order: Option<QueueOrderParam>,
    /// From `next_cursor` of the previous page in the same `order`: a cursor of the other order
    /// is `invalid_cursor`.
    #[param(
        pattern = "^(L[0-9]{4}-[0-9]{2}-[0-9]{2}|S[+]?[0-9]{1,18})_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// `L<date>_<id>` in legal-due order, `S<micros>_<id>` in SLA order; a cursor of the other order
/// is refused rather than silently restarting the list.
fn decode_queue_cursor(raw: &str, order: QueueOrder) -> ApiResult<QueueCursor> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server gave out for this order",
        )
    };
    let (key, id) = raw.split_once('_').ok_or_else(bad)?;
    let id = id.parse().map_err(|_| bad())?;
    match (order, key.split_at_checked(1)) {
        (QueueOrder::LegalDue, Some(("L", due))) => Ok(QueueCursor::Legal {
            due: due.parse().map_err(|_| bad())?,
            id,
        }),
        (QueueOrder::SlaDue, Some(("S", micros))) => {
            let due = micros
                .parse()
                .ok()
                .filter(|m: &i64| *m >= 0)
                .and_then(chrono::DateTime::from_timestamp_micros)
                .ok_or_else(bad)?;
            Ok(QueueCursor::Sla { due, id })
        }
        _ => Err(bad()),
    }
}

fn encode_queue_cursor(c: QueueCursor) -> String {
    match c {
        QueueCursor::Legal { due, id } => format!("L{due}_{id}"),
        QueueCursor::Sla { due, id } => format!("S{}_{id}", due.timestamp_micros()),
    }
}

/// The cases the caller works (the quality director: all; collaborators and leaders: their
/// processes' and those assigned to them; admins: none), soonest legal due date first.
#[utoipa::path(get, path = "/api/v1/staff/cases", tag = "staff", security(("bearer" = [])), params(QueueParams),
    responses((status = 200, body = Page<StaffCase>),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff")))]
#[tracing::instrument(skip_all)]
pub async fn queue(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Query(q): Query<QueueParams>,
) -> ApiResult<axum::Json<Page<StaffCase>>> {
    let order = match q.order {
        Some(QueueOrderParam::SlaDue) => QueueOrder::SlaDue,
        _ => QueueOrder::LegalDue,
    };
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_queue_cursor(c, order))
        .transpose()?;
    let filter = QueueFilter {
        status: q.status,
        process: q.process.map(|p| p.trim().to_uppercase()),
        assignee: q.assignee,
        due_before: q.due_before,
        overdue: q.overdue.unwrap_or(false),
    };
    let (items, next) = cases::staff_queue(
        &state.db,
        &user,
        &filter,
        order,
        after,
        page_limit(q.limit)?,
    )
    .await?;
    Ok(axum::Json(Page {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor: next.map(encode_queue_cursor),
    }))
}

async fn full_view(state: &ApiState, case: cases::Case) -> ApiResult<StaffCase> {
    let (events, events_before) =
        cases::events(&state.db, case.id, false, None, cases::LATEST).await?;
    let (messages, attachments, messages_before) =
        message_page(&state.db, case.id, None, cases::LATEST).await?;
    let id = case.id;
    let mut view = StaffCase::from(case);
    view.clocks = Some(atiende_core::deadlines::case_clocks(&state.db, id).await?);
    view.events = Some(events.into_iter().map(Into::into).collect());
    view.events_before = events_before.map(|n| n.to_string());
    view.messages = Some(messages);
    view.messages_before = messages_before;
    view.attachments = Some(attachments);
    Ok(view)
}

/// The case with its latest events (the ISO 10002 trail) and messages; older ones are paged with
/// `GET /api/v1/staff/cases/{id}/events` and `/messages`.
#[utoipa::path(get, path = "/api/v1/staff/cases/{id}", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work")))]
#[tracing::instrument(skip_all)]
pub async fn get_case(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<StaffCase>> {
    let mut conn = state
        .db
        .acquire()
        .await
        .map_err(atiende_core::Error::from)?;
    let case = cases::get_for_staff(&mut conn, &user, id).await?;
    drop(conn);
    Ok(axum::Json(full_view(&state, case).await?))
}

/// Quality director: send the case to a process (and optionally a collaborator) with its priority.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/assign", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = AssignRequest, responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director assigns"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`case_past_assignment`, `waiting_on_customer`"),
        (status = 422, body = Problem, description = "`invalid_process_code`, `unknown_process`, `assignee_not_in_process`")))]
#[tracing::instrument(skip_all)]
pub async fn assign(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<AssignRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let a = Assignment {
        process: req.process,
        assignee: req.assignee,
        impact: req.impact,
        urgency: req.urgency,
    };
    let case = cases::assign(&state.db, &user, id, a).await?;
    Ok(axum::Json(full_view(&state, case).await?))
}

/// Collaborator of the assigned process: write the answer and send it for approval.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/draft", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = DraftRequest, responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`, `not_assignee`"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`case_not_assigned`, `draft_pending_approval`, `answer_already_approved`, `waiting_on_customer`"),
        (status = 422, body = Problem, description = "`invalid_answer`")))]
#[tracing::instrument(skip_all)]
pub async fn draft(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<DraftRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let case = cases::draft(&state.db, &user, id, &req.answer).await?;
    Ok(axum::Json(full_view(&state, case).await?))
}

/// Leader of the case's process: approve the draft. The body may be `{}`.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/approve", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = ApproveRequest, responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`, `not_process_leader`"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`no_draft_to_review`, `waiting_on_customer`"),
        (status = 422, body = Problem, description = "`invalid_comment`")))]
#[tracing::instrument(skip_all)]
pub async fn approve(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<ApproveRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let case = cases::approve(&state.db, &user, id, req.comment.as_deref()).await?;
    Ok(axum::Json(full_view(&state, case).await?))
}

/// Leader of the case's process: send the draft back with a comment saying what to change.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/return", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = ReturnRequest, responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`, `not_process_leader`"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`no_draft_to_review`, `waiting_on_customer`"),
        (status = 422, body = Problem, description = "`comment_required`")))]
#[tracing::instrument(skip_all)]
pub async fn return_draft(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<ReturnRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let case = cases::return_draft(&state.db, &user, id, &req.comment).await?;
    Ok(axum::Json(full_view(&state, case).await?))
}

/// Quality director: close the case and send the approved answer, recording the outcome.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/close", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = CloseRequest, responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director closes"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`answer_not_approved`, `case_already_closed`, `waiting_on_customer`"),
        (status = 422, body = Problem, description = "`invalid_outcome`")))]
#[tracing::instrument(skip_all)]
pub async fn close(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<CloseRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let closing = Closing {
        in_favor_of_customer: req.in_favor_of_customer,
        outcome: req.outcome,
    };
    let case = cases::close(&state.db, &user, id, closing).await?;
    Ok(axum::Json(full_view(&state, case).await?))
}

/// A message to the customer on the case, optionally with blobs the caller uploaded or may see.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/messages", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = MessageRequest, responses((status = 201, body = MessageView),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`case_withdrawn`: the case was closed as withdrawn; the customer may file again"),
        (status = 422, body = Problem, description = "`invalid_message`, `unknown_attachment`, `too_many_attachments`")))]
#[tracing::instrument(skip_all)]
pub async fn post_message(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<MessageRequest>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let (message, attachments) = cases::add_message(
        &state.db,
        &*terms::current(&state.db).await?,
        &user,
        id,
        &req.body,
        &req.attachments,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(MessageView::new(message, attachments)),
    ))
}

/// Staff: ask the customer for missing information. The case waits on the customer and its
/// resolution and legal clocks pause until the customer replies with a message.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/request-info", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = RequestInfoRequest, responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`answer_in_progress`, `waiting_on_customer`"),
        (status = 422, body = Problem, description = "`invalid_question`")))]
#[tracing::instrument(skip_all)]
pub async fn request_info(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<RequestInfoRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let case = cases::request_info(&state.db, &user, id, &req.question).await?;
    Ok(axum::Json(full_view(&state, case).await?))
}

/// Quality director: extend the legal term once, before it expires, to at most twice its length.
/// The reason is sent to the customer.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/extend", tag = "staff", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = ExtendRequest, responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director extends"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work"),
        (status = 409, body = Problem, description = "`extension_already_used`, `legal_term_expired`, `case_already_closed`"),
        (status = 422, body = Problem, description = "`reason_required`, `extension_not_later`, `extension_too_long`")))]
#[tracing::instrument(skip_all)]
pub async fn extend(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<ExtendRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let case =
        cases::extend_legal_term(&state.db, &user, id, req.new_due_date, &req.reason).await?;
    Ok(axum::Json(full_view(&state, case).await?))
}
