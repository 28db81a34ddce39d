//! The customer's side of a case: file, follow, talk, rate.

use atiende_core::cases::{self, CustomerCursor, Filed, NewCase};
use atiende_core::terms;
use atiende_core::types::{CaseStatus, Channel};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::case_lists::message_page;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Customer, Json, Path, Query};
use crate::views::{
    CustomerCase, FileCaseRequest, MessageRequest, MessageView, Page, RatingRequest,
};
use crate::{ApiState, page_limit};

/// Files a PQRS. The app's `id` makes it idempotent: the same id and body again answers 200 with
/// the case already filed; the same id with another body is a 409.
#[utoipa::path(post, path = "/api/v1/cases", tag = "customer", security(("bearer" = [])), request_body = FileCaseRequest,
    responses((status = 201, body = CustomerCase),
        (status = 200, body = CustomerCase, description = "already filed with this id"),
        (status = 403, body = Problem, description = "`customers_only`: the caller is not a customer"),
        (status = 409, body = Problem, description = "`idempotency_conflict`: this id was filed with another body"),
        (status = 422, body = Problem, description = "`invalid_subject`, `invalid_description`; `unknown_work_order`: `work_order_id` is not one of your visits")))]
#[tracing::instrument(skip_all)]
pub async fn file_case(
    State(state): State<ApiState>,
    who: Customer,
    Json(req): Json<FileCaseRequest>,
) -> ApiResult<(StatusCode, axum::Json<CustomerCase>)> {
    let new = NewCase {
        id: req.id,
        case_type: req.case_type,
        subject: req.subject,
        description: req.description,
        channel: Channel::App,
        chat_id: None,
        work_order_id: req.work_order_id,
    };
    let (status, case) = match cases::file(&state.db, who.customer_id, Some(&who.user), new).await?
    {
        Filed::Created(c) => (StatusCode::CREATED, c),
        Filed::Existing(c) => (StatusCode::OK, c),
    };
    Ok((
        status,
        axum::Json(CustomerCase::new(case, &who.user.language)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub status: Option<CaseStatus>,
    /// From `next_cursor` of the previous page.
    #[param(
        pattern = "^[+]?[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

pub(crate) fn encode_customer_cursor(c: CustomerCursor) -> String {
    format!("{}_{}", c.created_at.timestamp_micros(), c.id)
}

fn decode_customer_cursor(raw: &str) -> ApiResult<CustomerCursor> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server gave out",
        )
    };
    let (micros, id) = raw.split_once('_').ok_or_else(bad)?;
    let created_at = micros
        .parse()
        .ok()
        .filter(|m: &i64| *m >= 0)
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok(CustomerCursor {
        created_at,
        id: id.parse().map_err(|_| bad())?,
    })
}

/// The caller's own cases, newest first.
#[utoipa::path(get, path = "/api/v1/cases", tag = "customer", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<CustomerCase>),
        (status = 403, body = Problem, description = "`customers_only`: the caller is not a customer")))]
#[tracing::instrument(skip_all)]
pub async fn list_cases(
    State(state): State<ApiState>,
    who: Customer,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<Page<CustomerCase>>> {
    let after = q
        .cursor
        .as_deref()
        .map(decode_customer_cursor)
        .transpose()?;
    let (items, next) = cases::list_for_customer(
        &state.db,
        who.customer_id,
        q.status,
        after,
        page_limit(q.limit)?,
    )
    .await?;
    Ok(axum::Json(Page {
        items: items
            .into_iter()
            .map(|c| CustomerCase::new(c, &who.user.language))
            .collect(),
        next_cursor: next.map(encode_customer_cursor),
    }))
}

/// One of the caller's cases with what happened to it and its messages (the latest; older ones are
/// paged with `GET /api/v1/cases/{id}/events` and `/messages`). Another customer's case is a 404,
/// exactly like one that does not exist.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "customer", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = CustomerCase),
        (status = 403, body = Problem, description = "`customers_only`: the caller is not a customer"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case of yours")))]
#[tracing::instrument(skip_all)]
pub async fn get_case(
    State(state): State<ApiState>,
    who: Customer,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<CustomerCase>> {
    let case = cases::get_for_customer(&state.db, id, who.customer_id).await?;
    let (events, events_before) = cases::events(&state.db, id, true, None, cases::LATEST).await?;
    let (messages, attachments, messages_before) =
        message_page(&state.db, id, None, cases::LATEST).await?;
    let mut view = CustomerCase::new(case, &who.user.language);
    view.events = Some(events.into_iter().map(Into::into).collect());
    view.events_before = events_before.map(|n| n.to_string());
    view.messages = Some(messages);
    view.messages_before = messages_before;
    view.attachments = Some(attachments);
    Ok(axum::Json(view))
}

/// A message to staff on one of the caller's cases, optionally with blobs they uploaded or may see.
#[utoipa::path(post, path = "/api/v1/cases/{id}/messages", tag = "customer", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = MessageRequest, responses((status = 201, body = MessageView),
        (status = 403, body = Problem, description = "`customers_only`: the caller is not a customer"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case of yours"),
        (status = 409, body = Problem, description = "`case_withdrawn`: the case was closed as withdrawn; the customer may file again"),
        (status = 422, body = Problem, description = "`invalid_message`, `unknown_attachment`, `too_many_attachments`")))]
#[tracing::instrument(skip_all)]
pub async fn post_message(
    State(state): State<ApiState>,
    who: Customer,
    Path(id): Path<Uuid>,
    Json(req): Json<MessageRequest>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let (message, attachments) = cases::add_message(
        &state.db,
        &*terms::current(&state.db).await?,
        &who.user,
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

/// Rates the answer, 1–5, once, after the case is answered.
#[utoipa::path(post, path = "/api/v1/cases/{id}/rating", tag = "customer", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = RatingRequest, responses((status = 200, body = CustomerCase),
        (status = 403, body = Problem, description = "`customers_only`: the caller is not a customer"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case of yours"),
        (status = 409, body = Problem, description = "`case_not_answered`, `case_already_rated`, `waiting_on_customer`"),
        (status = 422, body = Problem, description = "`invalid_score`, `invalid_comment`")))]
#[tracing::instrument(skip_all)]
pub async fn rate(
    State(state): State<ApiState>,
    who: Customer,
    Path(id): Path<Uuid>,
    Json(req): Json<RatingRequest>,
) -> ApiResult<axum::Json<CustomerCase>> {
    let case = cases::rate(&state.db, &who.user, id, req.score, req.comment.as_deref()).await?;
    Ok(axum::Json(CustomerCase::new(case, &who.user.language)))
}
