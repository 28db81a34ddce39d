//! The commercial register (PRO-008): quotes and their outcome, contracts, and their renewal. For
//! the staff of the commercial process (`ATIENDE_COMMERCIAL_PROCESS`), the quality director and
//! admins; any other staff member gets `not_commercial_staff`.

use atiende_core::commercial::{
    self, Contract, ContractTerms, NewContract, NewQuote, Quote, QuoteDecision, RenewalOutcome,
};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Path, Query, Staff};
use crate::views::text;
use crate::{ApiState, page_limit};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegisterParams {
    /// Only this customer's.
    pub customer_id: Option<Uuid>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuoteList {
    pub quotes: Vec<Quote>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContractList {
    pub contracts: Vec<Contract>,
}

const FORBIDDEN: &str = "`staff_only`: the caller is not staff; `not_commercial_staff`: not on the staff of the commercial process";

/// Record a quote sent to a customer (PRO-008 §5.1.3).
#[utoipa::path(post, path = "/api/v1/staff/quotes", tag = "commercial", security(("bearer" = [])),
    request_body = NewQuote,
    responses((status = 201, body = Quote),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 422, body = Problem, description = "`unknown_customer`, `invalid_services`, `invalid_amount`, `sent_in_future`, `invalid_follow_up`")))]
#[tracing::instrument(skip_all)]
pub async fn create_quote(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Json(new): Json<NewQuote>,
) -> ApiResult<(StatusCode, axum::Json<Quote>)> {
    let q = commercial::create_quote(&state.db, &actor, &state.commercial_process, new).await?;
    Ok((StatusCode::CREATED, axum::Json(q)))
}

/// The quotes, latest sent first.
#[utoipa::path(get, path = "/api/v1/staff/quotes", tag = "commercial", security(("bearer" = [])),
    params(RegisterParams),
    responses((status = 200, body = QuoteList),
        (status = 400, body = Problem, description = "`invalid_limit`, `invalid_query`"),
        (status = 403, body = Problem, description = FORBIDDEN)))]
#[tracing::instrument(skip_all)]
pub async fn list_quotes(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Query(q): Query<RegisterParams>,
) -> ApiResult<axum::Json<QuoteList>> {
    let quotes = commercial::list_quotes(
        &state.db,
        &actor,
        &state.commercial_process,
        q.customer_id,
        page_limit(q.limit)?,
    )
    .await?;
    Ok(axum::Json(QuoteList { quotes }))
}

#[utoipa::path(get, path = "/api/v1/staff/quotes/{id}", tag = "commercial", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Quote),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 404, body = Problem, description = "`quote_not_found`")))]
#[tracing::instrument(skip_all)]
pub async fn get_quote(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Quote>> {
    Ok(axum::Json(
        commercial::get_quote(&state.db, &actor, &state.commercial_process, id).await?,
    ))
}

/// Record what the customer decided: accepted, rejected or expired. Once.
#[utoipa::path(post, path = "/api/v1/staff/quotes/{id}/outcome", tag = "commercial", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = QuoteDecision,
    responses((status = 200, body = Quote),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 404, body = Problem, description = "`quote_not_found`"),
        (status = 409, body = Problem, description = "`quote_already_decided`"),
        (status = 422, body = Problem, description = "`invalid_decided_at`, `invalid_comment`")))]
#[tracing::instrument(skip_all)]
pub async fn decide_quote(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
    Json(d): Json<QuoteDecision>,
) -> ApiResult<axum::Json<Quote>> {
    Ok(axum::Json(
        commercial::decide_quote(&state.db, &actor, &state.commercial_process, id, d).await?,
    ))
}

/// An accepted quote becomes a contract (PRO-008 §5.2), once.
#[utoipa::path(post, path = "/api/v1/staff/quotes/{id}/contract", tag = "commercial", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ContractTerms,
    responses((status = 201, body = Contract),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 404, body = Problem, description = "`quote_not_found`"),
        (status = 409, body = Problem, description = "`quote_not_accepted`, `quote_already_contracted`"),
        (status = 422, body = Problem, description = "`invalid_services`, `invalid_contract_dates`")))]
#[tracing::instrument(skip_all)]
pub async fn contract_from_quote(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
    Json(terms): Json<ContractTerms>,
) -> ApiResult<(StatusCode, axum::Json<Contract>)> {
    let c =
        commercial::contract_from_quote(&state.db, &actor, &state.commercial_process, id, terms)
            .await?;
    Ok((StatusCode::CREATED, axum::Json(c)))
}

/// Record a contract (PRO-008 §5.2).
#[utoipa::path(post, path = "/api/v1/staff/contracts", tag = "commercial", security(("bearer" = [])),
    request_body = NewContract,
    responses((status = 201, body = Contract),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 422, body = Problem, description = "`unknown_customer`, `invalid_services`, `invalid_contract_dates`")))]
#[tracing::instrument(skip_all)]
pub async fn create_contract(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Json(new): Json<NewContract>,
) -> ApiResult<(StatusCode, axum::Json<Contract>)> {
    let c = commercial::create_contract(&state.db, &actor, &state.commercial_process, new).await?;
    Ok((StatusCode::CREATED, axum::Json(c)))
}

/// The contracts, latest start first.
#[utoipa::path(get, path = "/api/v1/staff/contracts", tag = "commercial", security(("bearer" = [])),
    params(RegisterParams),
    responses((status = 200, body = ContractList),
        (status = 400, body = Problem, description = "`invalid_limit`, `invalid_query`"),
        (status = 403, body = Problem, description = FORBIDDEN)))]
#[tracing::instrument(skip_all)]
pub async fn list_contracts(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Query(q): Query<RegisterParams>,
) -> ApiResult<axum::Json<ContractList>> {
    let contracts = commercial::list_contracts(
        &state.db,
        &actor,
        &state.commercial_process,
        q.customer_id,
        page_limit(q.limit)?,
    )
    .await?;
    Ok(axum::Json(ContractList { contracts }))
}

#[utoipa::path(get, path = "/api/v1/staff/contracts/{id}", tag = "commercial", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Contract),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 404, body = Problem, description = "`contract_not_found`")))]
#[tracing::instrument(skip_all)]
pub async fn get_contract(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Contract>> {
    Ok(axum::Json(
        commercial::get_contract(&state.db, &actor, &state.commercial_process, id).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewalOfferRequest {
    /// What was offered, and how (a call, a visit, a proposal sent).
    #[schema(schema_with = text::<2000>)]
    pub note: String,
}

/// Record that renewal was offered to the customer (PRO-008 §5.5). Once.
#[utoipa::path(post, path = "/api/v1/staff/contracts/{id}/renewal-offer", tag = "commercial", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RenewalOfferRequest,
    responses((status = 200, body = Contract),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 404, body = Problem, description = "`contract_not_found`"),
        (status = 409, body = Problem, description = "`renewal_already_offered`, `renewal_already_decided`"),
        (status = 422, body = Problem, description = "`invalid_note`")))]
#[tracing::instrument(skip_all)]
pub async fn offer_renewal(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<RenewalOfferRequest>,
) -> ApiResult<axum::Json<Contract>> {
    Ok(axum::Json(
        commercial::offer_renewal(&state.db, &actor, &state.commercial_process, id, &req.note)
            .await?,
    ))
}

/// Record what came of the renewal offer: `renewed` (with `next`, the next contract is written
/// too) or `not_renewed` with the reason. Once, after the offer.
#[utoipa::path(post, path = "/api/v1/staff/contracts/{id}/renewal", tag = "commercial", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RenewalOutcome,
    responses((status = 200, body = Contract),
        (status = 403, body = Problem, description = FORBIDDEN),
        (status = 404, body = Problem, description = "`contract_not_found`"),
        (status = 409, body = Problem, description = "`renewal_not_offered`, `renewal_already_decided`"),
        (status = 422, body = Problem, description = "`reason_required`, `invalid_services`, `invalid_contract_dates`")))]
#[tracing::instrument(skip_all)]
pub async fn decide_renewal(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    Path(id): Path<Uuid>,
    Json(outcome): Json<RenewalOutcome>,
) -> ApiResult<axum::Json<Contract>> {
    Ok(axum::Json(
        commercial::decide_renewal(&state.db, &actor, &state.commercial_process, id, outcome)
            .await?,
    ))
}
