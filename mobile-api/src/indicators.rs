//! The monthly indicators, as JSON for charts or as CSV for a spreadsheet.

use atiende_core::calendar::local_date;
use atiende_core::indicators::{self, Indicators, Month, Query as IndicatorQuery};
use atiende_core::types::Channel;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Query, Staff};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IndicatorParams {
    /// First month, `YYYY-MM` (Colombian time); default 11 months before `to`.
    #[param(pattern = "^[0-9]{4}-[0-9]{2}$")]
    pub from: Option<String>,
    /// Last month, `YYYY-MM`; default this month. At most 36 months from `from`.
    #[param(pattern = "^[0-9]{4}-[0-9]{2}$")]
    pub to: Option<String>,
    /// Only the PQRS of this process (a process leader: one they lead).
    pub process: Option<String>,
    /// Only the PQRS filed through this channel.
    pub channel: Option<String>,
    /// `csv` for CSV (like `Accept: text/csv`), `json` (the default).
    pub format: Option<String>,
    /// With CSV: only this table (its `id`); all of them, one after the other, otherwise.
    pub table: Option<String>,
}

fn month(raw: Option<&str>, name: &str) -> ApiResult<Option<Month>> {
    raw.map(|r| {
        Month::parse(r.trim()).ok_or_else(|| {
            ApiError::from(atiende_core::Error::invalid(
                "invalid_month",
                format!("{name} is a month written YYYY-MM"),
            ))
        })
    })
    .transpose()
}

fn wants_csv(params: &IndicatorParams, headers: &HeaderMap) -> ApiResult<bool> {
    match params.format.as_deref() {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => {
            Err(atiende_core::Error::invalid("invalid_format", "format is csv or json").into())
        }
        None => Ok(headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))),
    }
}

/// Quality director and admins: every PQRS; a process leader: the PQRS of the processes they
/// lead. By month (Colombian time): PQRS by type, channel, process and status; first-response
/// and resolution times in business hours; legal-term compliance; SLA compliance by priority;
/// decisions in the customer's favour; satisfaction with PQRS answers; and, for whoever sees the
/// commercial process without a channel filter, quotes and contract retention. Each table says
/// how it was computed, its target and whether each month met it. As CSV with `format=csv` or
/// `Accept: text/csv` (`;`, decimal comma, UTF-8 with a byte-order mark).
#[utoipa::path(get, path = "/api/v1/staff/indicators", tag = "indicators", security(("bearer" = [])),
    params(IndicatorParams),
    responses((status = 200, content((Indicators = "application/json"), (String = "text/csv"))),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: a collaborator; `not_process_leader`: a process leader asking for a process they do not lead, or leading none"),
        (status = 422, body = Problem, description = "`invalid_month`, `invalid_range`: `from` is after `to`, `range_too_long`: more than 36 months, `invalid_process_code`, `unknown_process`, `invalid_channel`, `invalid_format`, `unknown_table`")))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    Staff(actor): Staff,
    headers: HeaderMap,
    Query(params): Query<IndicatorParams>,
) -> ApiResult<Response> {
    let csv = wants_csv(&params, &headers)?;
    let to = month(params.to.as_deref(), "to")?
        .unwrap_or_else(|| Month::of(local_date(chrono::Utc::now())));
    let from = match month(params.from.as_deref(), "from")? {
        Some(m) => m,
        None => Month::of(
            to.first_day()
                .checked_sub_months(chrono::Months::new(11))
                .unwrap_or(to.first_day()),
        ),
    };
    let process = params
        .process
        .as_deref()
        .map(atiende_core::processes::parse_code)
        .transpose()?;
    let channel = params
        .channel
        .as_deref()
        .map(|c| {
            c.trim().parse::<Channel>().map_err(|_| {
                atiende_core::Error::invalid(
                    "invalid_channel",
                    format!(
                        "channel is one of: {}",
                        Channel::ALL
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        })
        .transpose()?;
    let query = IndicatorQuery::new(from, to, process, channel)?;
    let found = indicators::compute(&state.db, &actor, &query, &state.commercial_process).await?;
    if !csv {
        return Ok(axum::Json(found).into_response());
    }
    csv_response(&found, params.table.as_deref())
}

fn csv_response(found: &Indicators, table: Option<&str>) -> ApiResult<Response> {
    let tables: Vec<_> = found
        .tables
        .iter()
        .filter(|t| table.is_none_or(|id| t.id == id))
        .collect();
    if tables.is_empty() {
        return Err(atiende_core::Error::invalid(
            "unknown_table",
            "no table of these indicators has that id",
        )
        .into());
    }
    let name = format!(
        "attachment; filename=\"indicadores-{}-{}{}.csv\"",
        found.from,
        found.to,
        table.map(|t| format!("-{t}")).unwrap_or_default()
    );
    let disposition =
        HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("attachment"));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        indicators::csv(&tables),
    )
        .into_response())
}
