//! Work orders: staff schedule visits and assign technicians; technicians list theirs with the
//! URL of each field report document, which they then sync offline.

use atiende_core::cases::{self, VisitCase};
use atiende_core::field_reports::{self, ReportView};
use atiende_core::work_orders::{self, NewWorkOrder, WorkOrder};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiResult, Problem};
use crate::extract::{Authenticated, Json, Path, Staff};
use crate::views::StaffCase;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TechniciansRequest {
    /// 1 to 10 users with the technician role (a repeated id counts once).
    #[schema(min_items = 1)]
    pub technicians: Vec<Uuid>,
}

/// A work order with its projected field report, for staff.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffWorkOrder {
    #[serde(flatten)]
    pub work_order: WorkOrder,
    pub report: ReportView,
    /// The cases about this visit (complaints, claims), oldest first.
    pub cases: Vec<VisitCase>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderList {
    pub work_orders: Vec<WorkOrder>,
}

#[utoipa::path(post, path = "/api/v1/staff/work-orders", tag = "work orders", security(("bearer" = [])),
    request_body = NewWorkOrder,
    responses((status = 201, body = WorkOrder),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `not_process_member`: you are not on the staff of that process"),
        (status = 422, body = Problem, description = "`invalid_process_code`, `unknown_process`, `unknown_customer`, `invalid_technicians`, `invalid_address`, `invalid_service_type`")))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Json(new): Json<NewWorkOrder>,
) -> ApiResult<(StatusCode, axum::Json<WorkOrder>)> {
    let order = work_orders::create(&state.db, &actor, new).await?;
    Ok((StatusCode::CREATED, axum::Json(order)))
}

/// The work order and its report as projected from the document, with the reason the latest
/// content was not projected, if it was not.
#[utoipa::path(get, path = "/api/v1/staff/work-orders/{id}", tag = "work orders", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = StaffWorkOrder),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`work_order_not_found`: no such work order, or one of a process you are not on the staff of")))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<StaffWorkOrder>> {
    let mut conn = state
        .db
        .acquire()
        .await
        .map_err(atiende_core::Error::from)?;
    let work_order = work_orders::get_for_staff(&mut conn, &actor, id).await?;
    let report = field_reports::view(&mut conn, id).await?;
    let cases = cases::for_work_order(&mut *conn, id).await?;
    Ok(axum::Json(StaffWorkOrder {
        work_order,
        report,
        cases,
    }))
}

/// Replaces the technicians; those removed stop receiving the report at once.
#[utoipa::path(put, path = "/api/v1/staff/work-orders/{id}/technicians", tag = "work orders", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = TechniciansRequest,
    responses((status = 200, body = WorkOrder),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`work_order_not_found`: no such work order, or one of a process you are not on the staff of"),
        (status = 422, body = Problem, description = "`invalid_technicians`")))]
#[tracing::instrument(skip_all)]
pub async fn set_technicians(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<TechniciansRequest>,
) -> ApiResult<axum::Json<WorkOrder>> {
    Ok(axum::Json(
        work_orders::set_technicians(&state.db, &actor, id, &req.technicians).await?,
    ))
}

/// The calling technician's work orders, soonest first, each with its report's Automerge URL.
#[utoipa::path(get, path = "/api/v1/technician/work-orders", tag = "work orders", security(("bearer" = [])),
    responses((status = 200, body = WorkOrderList),
        (status = 403, body = Problem, description = "`technicians_only`")))]
#[tracing::instrument(skip_all)]
pub async fn mine(
    State(state): State<ApiState>,
    who: Authenticated,
) -> ApiResult<axum::Json<WorkOrderList>> {
    let work_orders = work_orders::for_technician(&state.db, &who.user).await?;
    Ok(axum::Json(WorkOrderList { work_orders }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseWorkOrderRequest {
    /// A work order of the case's own customer.
    pub work_order_id: Uuid,
}

/// Staff who work the case: name the visit the case is about (or another one); the trail keeps
/// each change. The work order then lists the case.
#[utoipa::path(put, path = "/api/v1/staff/cases/{id}/work-order", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = CaseWorkOrderRequest,
    responses((status = 200, body = StaffCase),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`case_not_found`: no such case, or one you do not work; `work_order_not_found`"),
        (status = 422, body = Problem, description = "`work_order_of_another_customer`")))]
#[tracing::instrument(skip_all)]
pub async fn set_case_work_order(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<CaseWorkOrderRequest>,
) -> ApiResult<axum::Json<StaffCase>> {
    let case = cases::set_work_order(&state.db, &actor, id, req.work_order_id).await?;
    Ok(axum::Json(StaffCase::from(case)))
}
