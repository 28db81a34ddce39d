//! A case's events, messages and notifications, page by page. The case views carry the latest
//! [`cases::LATEST`] of each with the cursor of the older ones (`events_before`,
//! `messages_before`); these lists go further back, `limit` at a time, each page oldest first.

use atiende_core::blobs;
use atiende_core::cases::{self, MessageCursor};
use atiende_core::notifications::{self, NotificationView};
use axum::extract::State;
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Customer, Path, Query, Staff};
use crate::views::{
    AttachmentView, EventView, MessageView, Page, StaffEventView, with_attachments,
};
use crate::{ApiState, page_limit};

/// A page of events or notifications.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaseListParams {
    /// `events_before` of the case view, or `next_cursor` of a page: the page holds what came
    /// just before it. Without it, the latest.
    #[param(pattern = "^[+]?0*[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A page of messages.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageListParams {
    /// `messages_before` of the case view, or `next_cursor` of a page: the page holds what came
    /// just before it. Without it, the latest.
    #[param(
        pattern = "^[+]?[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

fn bad_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "the cursor is not one this server gave out for this list",
    )
}

/// Events and notifications: their id.
fn decode_id(raw: &str) -> ApiResult<i64> {
    raw.parse().ok().filter(|n| *n > 0).ok_or_else(bad_cursor)
}

/// Messages: `<microseconds>_<id>` of the oldest message of the page before.
pub(crate) fn encode_message_cursor(c: MessageCursor) -> String {
    format!("{}_{}", c.created_at.timestamp_micros(), c.id)
}

fn decode_message_cursor(raw: &str) -> ApiResult<MessageCursor> {
    let (micros, id) = raw.split_once('_').ok_or_else(bad_cursor)?;
    let created_at = micros
        .parse()
        .ok()
        .filter(|m: &i64| *m >= 0)
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(bad_cursor)?;
    Ok(MessageCursor {
        created_at,
        id: id.parse().map_err(|_| bad_cursor())?,
    })
}

/// Messages with their attachments, and the attachments of the case itself.
pub(crate) async fn message_page(
    db: &PgPool,
    case_id: Uuid,
    before: Option<MessageCursor>,
    limit: u32,
) -> ApiResult<(Vec<MessageView>, Vec<AttachmentView>, Option<String>)> {
    let (messages, next) = cases::messages(db, case_id, before, limit).await?;
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let attachments = blobs::case_attachments(db, case_id, &ids).await?;
    let (messages, on_case) = with_attachments(messages, attachments);
    Ok((messages, on_case, next.map(encode_message_cursor)))
}

async fn messages(
    state: &ApiState,
    case_id: Uuid,
    q: MessageListParams,
) -> ApiResult<axum::Json<Page<MessageView>>> {
    let before = q.cursor.as_deref().map(decode_message_cursor).transpose()?;
    let (items, _, next_cursor) =
        message_page(&state.db, case_id, before, page_limit(q.limit)?).await?;
    Ok(axum::Json(Page { items, next_cursor }))
}

/// Older messages of one of the caller's cases (the case view has the latest).
#[utoipa::path(get, path = "/api/v1/cases/{id}/messages", tag = "customer", security(("bearer" = [])),
    params(("id" = Uuid, Path), MessageListParams),
    responses((status = 200, body = Page<MessageView>),
        (status = 403, body = Problem, description = "`customers_only`: the caller is not a customer"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case of yours")))]
#[tracing::instrument(skip_all)]
pub async fn customer_messages(
    State(state): State<ApiState>,
    who: Customer,
    Path(id): Path<Uuid>,
    Query(q): Query<MessageListParams>,
) -> ApiResult<axum::Json<Page<MessageView>>> {
    cases::get_for_customer(&state.db, id, who.customer_id).await?;
    messages(&state, id, q).await
}

/// Older events of one of the caller's cases, those the customer sees.
#[utoipa::path(get, path = "/api/v1/cases/{id}/events", tag = "customer", security(("bearer" = [])),
    params(("id" = Uuid, Path), CaseListParams),
    responses((status = 200, body = Page<EventView>),
        (status = 403, body = Problem, description = "`customers_only`: the caller is not a customer"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case of yours")))]
#[tracing::instrument(skip_all)]
pub async fn customer_events(
    State(state): State<ApiState>,
    who: Customer,
    Path(id): Path<Uuid>,
    Query(q): Query<CaseListParams>,
) -> ApiResult<axum::Json<Page<EventView>>> {
    cases::get_for_customer(&state.db, id, who.customer_id).await?;
    let before = q.cursor.as_deref().map(decode_id).transpose()?;
    let (events, next) = cases::events(&state.db, id, true, before, page_limit(q.limit)?).await?;
    Ok(axum::Json(Page {
        items: events.into_iter().map(Into::into).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

async fn require_works_case(state: &ApiState, staff: &Staff, id: Uuid) -> ApiResult<()> {
    atiende_core::processes::require_works_case(&state.db, staff.0.id, id).await?;
    Ok(())
}

/// Older messages of a case the caller works (the case view has the latest).
#[utoipa::path(get, path = "/api/v1/staff/cases/{id}/messages", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path), MessageListParams),
    responses((status = 200, body = Page<MessageView>),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work")))]
#[tracing::instrument(skip_all)]
pub async fn staff_messages(
    State(state): State<ApiState>,
    staff: Staff,
    Path(id): Path<Uuid>,
    Query(q): Query<MessageListParams>,
) -> ApiResult<axum::Json<Page<MessageView>>> {
    require_works_case(&state, &staff, id).await?;
    messages(&state, id, q).await
}

/// Older events of a case the caller works: the full ISO 10002 trail.
#[utoipa::path(get, path = "/api/v1/staff/cases/{id}/events", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path), CaseListParams),
    responses((status = 200, body = Page<StaffEventView>),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work")))]
#[tracing::instrument(skip_all)]
pub async fn staff_events(
    State(state): State<ApiState>,
    staff: Staff,
    Path(id): Path<Uuid>,
    Query(q): Query<CaseListParams>,
) -> ApiResult<axum::Json<Page<StaffEventView>>> {
    require_works_case(&state, &staff, id).await?;
    let before = q.cursor.as_deref().map(decode_id).transpose()?;
    let (events, next) = cases::events(&state.db, id, false, before, page_limit(q.limit)?).await?;
    Ok(axum::Json(Page {
        items: events.into_iter().map(StaffEventView::from).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// Staff: the notifications a case caused and where each delivery stands, the latest first
/// page, each page oldest first.
#[utoipa::path(get, path = "/api/v1/staff/cases/{id}/notifications", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path), CaseListParams),
    responses((status = 200, body = Page<NotificationView>),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work")))]
#[tracing::instrument(skip_all)]
pub async fn case_notifications(
    State(state): State<ApiState>,
    staff: Staff,
    Path(id): Path<Uuid>,
    Query(q): Query<CaseListParams>,
) -> ApiResult<axum::Json<Page<NotificationView>>> {
    require_works_case(&state, &staff, id).await?;
    let before = q.cursor.as_deref().map(decode_id).transpose()?;
    let mut conn = state
        .db
        .acquire()
        .await
        .map_err(atiende_core::Error::from)?;
    let (items, next) =
        notifications::for_case(&mut conn, id, before, page_limit(q.limit)?).await?;
    Ok(axum::Json(Page {
        items,
        next_cursor: next.map(|n| n.to_string()),
    }))
}
