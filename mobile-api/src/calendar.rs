//! The business calendar, public: apps show customers which days do not count.

use atiende_core::calendar::HolidaySource;
use atiende_core::holidays;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Query;
use crate::views::{HolidayView, HolidaysResponse};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HolidayParams {
    /// 1984–2200; defaults to the current year (in Bogotá).
    #[param(minimum = 1984, maximum = 2200)]
    pub year: Option<i32>,
}

/// Colombian national holidays of a year, with the admin's overrides applied.
#[utoipa::path(get, path = "/api/v1/calendar/holidays", tag = "calendar", params(HolidayParams),
    responses((status = 200, body = HolidaysResponse),
        (status = 400, body = Problem, description = "`invalid_year`: not 1984–2200")))]
#[tracing::instrument(skip_all)]
pub async fn holidays(
    State(state): State<ApiState>,
    Query(q): Query<HolidayParams>,
) -> ApiResult<axum::Json<HolidaysResponse>> {
    use chrono::Datelike;
    let year = q
        .year
        .unwrap_or_else(|| atiende_core::calendar::local_date(chrono::Utc::now()).year());
    if !(1984..=2200).contains(&year) {
        return Err(ApiError::bad_request(
            "invalid_year",
            "the year must be between 1984 and 2200",
        ));
    }
    let calendar = holidays::load_calendar(&state.db).await?;
    let holidays = calendar
        .holidays(year)
        .into_iter()
        .map(|h| HolidayView {
            date: h.date,
            name: h.name,
            source: match h.source {
                HolidaySource::Law => "law".into(),
                HolidaySource::Override => "override".into(),
            },
        })
        .collect();
    Ok(axum::Json(HolidaysResponse { year, holidays }))
}
