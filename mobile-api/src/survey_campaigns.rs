//! Survey campaigns and template versions for staff: the quality director and admins create and
//! close campaigns and keep the templates' versions; process leaders read the campaigns' figures
//! too (PRO-SIG-10 sends them the results).

use atiende_core::surveys::SurveyTemplate;
use atiende_core::surveys::campaigns::{self, NewSurveyCampaign, SurveyCampaign};
use atiende_core::surveys::templates::{self, SurveyQuestionDraft, SurveyTemplateVersion};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Path, Query, Staff};
use crate::surveys::conn;
use crate::views::Page;
use crate::{ApiState, page_limit};

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

async fn begin(state: &ApiState) -> ApiResult<Tx> {
    Ok(state.db.begin().await.map_err(atiende_core::Error::from)?)
}

async fn commit(tx: Tx) -> ApiResult<()> {
    Ok(tx.commit().await.map_err(atiende_core::Error::from)?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignParams {
    /// From `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Survey campaigns newest first, each with its figures: invited, reminded, answered, without a
/// channel and the response rate.
#[utoipa::path(get, path = "/api/v1/staff/survey-campaigns", tag = "surveys", security(("bearer" = [])),
    params(CampaignParams),
    responses((status = 200, body = Page<SurveyCampaign>),
        (status = 400, body = Problem, description = "`invalid_limit`, `invalid_query`"),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: a collaborator")))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Query(q): Query<CampaignParams>,
) -> ApiResult<axum::Json<Page<SurveyCampaign>>> {
    let limit = page_limit(q.limit)?;
    let mut conn = conn(&state).await?;
    let (items, next) = campaigns::list(&mut conn, &user, q.cursor, limit).await?;
    Ok(axum::Json(Page {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}

/// Creates a campaign: every active customer (a contract in force on the opening day, or a visit
/// completed in the six months before) or a random sample of them, each invited once on their
/// channel when it opens (at once when it opens today).
#[utoipa::path(post, path = "/api/v1/staff/survey-campaigns", tag = "surveys", security(("bearer" = [])),
    request_body = NewSurveyCampaign,
    responses((status = 201, body = SurveyCampaign),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director or an admin"),
        (status = 404, body = Problem, description = "`survey_template_not_found`, `survey_version_not_found`"),
        (status = 422, body = Problem, description = "`invalid_campaign_title`, `invalid_campaign_dates`, `invalid_sample_size`, `not_a_campaign_template`, `invalid_body`")))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Json(req): Json<NewSurveyCampaign>,
) -> ApiResult<(StatusCode, axum::Json<SurveyCampaign>)> {
    let mut tx = begin(&state).await?;
    let campaign = campaigns::create(
        &mut tx,
        &user,
        &req,
        &state.survey_campaigns.public_base_url,
        campaigns::today(),
    )
    .await?;
    commit(tx).await?;
    Ok((StatusCode::CREATED, axum::Json(campaign)))
}

/// One campaign with its figures.
#[utoipa::path(get, path = "/api/v1/staff/survey-campaigns/{id}", tag = "surveys", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SurveyCampaign),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: a collaborator"),
        (status = 404, body = Problem, description = "`survey_campaign_not_found`")))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<SurveyCampaign>> {
    let mut conn = conn(&state).await?;
    Ok(axum::Json(campaigns::get(&mut conn, &user, id).await?))
}

/// Closes a campaign before its closing date: its unanswered invitations expire (their links show
/// the expired page) and no reminder goes.
#[utoipa::path(post, path = "/api/v1/staff/survey-campaigns/{id}/close", tag = "surveys", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SurveyCampaign),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director or an admin"),
        (status = 404, body = Problem, description = "`survey_campaign_not_found`"),
        (status = 409, body = Problem, description = "`survey_campaign_closed`")))]
#[tracing::instrument(skip_all)]
pub async fn close(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<SurveyCampaign>> {
    let mut tx = begin(&state).await?;
    let campaign = campaigns::close(&mut tx, &user, id).await?;
    commit(tx).await?;
    Ok(axum::Json(campaign))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyTemplateVersionList {
    pub versions: Vec<SurveyTemplateVersion>,
}

/// Every version of a template, newest first, with its questions, whether it is current and
/// whether invitations froze it.
#[utoipa::path(get, path = "/api/v1/staff/survey-templates/{code}/versions", tag = "surveys", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = SurveyTemplateVersionList),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`survey_template_not_found`")))]
#[tracing::instrument(skip_all)]
pub async fn versions(
    State(state): State<ApiState>,
    Staff(_): Staff,
    Path(code): Path<String>,
) -> ApiResult<axum::Json<SurveyTemplateVersionList>> {
    let mut conn = conn(&state).await?;
    let versions = templates::versions(&mut conn, &code).await?;
    Ok(axum::Json(SurveyTemplateVersionList { versions }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SurveyVersionRequest {
    /// 1 to 20 questions, asked in this order.
    #[schema(min_items = 1, max_items = 20)]
    pub questions: Vec<SurveyQuestionDraft>,
}

const QUESTION_ERRORS: &str = "`invalid_survey_question_count`, `invalid_survey_question_code`, `duplicate_survey_question`, `invalid_survey_label`, `invalid_survey_options`, `invalid_survey_option`, `duplicate_survey_option`, `invalid_body`";

/// Writes the next version of a template. It is not used until it is made current.
#[utoipa::path(post, path = "/api/v1/staff/survey-templates/{code}/versions", tag = "surveys", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = SurveyVersionRequest,
    responses((status = 201, body = SurveyTemplateVersion),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director or an admin"),
        (status = 404, body = Problem, description = "`survey_template_not_found`"),
        (status = 422, body = Problem, description = QUESTION_ERRORS)))]
#[tracing::instrument(skip_all)]
pub async fn create_version(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(code): Path<String>,
    Json(req): Json<SurveyVersionRequest>,
) -> ApiResult<(StatusCode, axum::Json<SurveyTemplateVersion>)> {
    let mut tx = begin(&state).await?;
    let version = templates::create_version(&mut tx, &user, &code, &req.questions).await?;
    commit(tx).await?;
    Ok((StatusCode::CREATED, axum::Json(version)))
}

/// Replaces the questions of a version no invitation uses yet.
#[utoipa::path(put, path = "/api/v1/staff/survey-templates/{code}/versions/{version}", tag = "surveys", security(("bearer" = [])),
    params(("code" = String, Path), ("version" = i32, Path)), request_body = SurveyVersionRequest,
    responses((status = 200, body = SurveyTemplateVersion),
        (status = 400, body = Problem, description = "`invalid_id`: the version is not a number"),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director or an admin"),
        (status = 404, body = Problem, description = "`survey_template_not_found`, `survey_version_not_found`"),
        (status = 409, body = Problem, description = "`survey_version_frozen`: invitations use it; make a new version"),
        (status = 422, body = Problem, description = QUESTION_ERRORS)))]
#[tracing::instrument(skip_all)]
pub async fn edit_version(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path((code, number)): Path<(String, i32)>,
    Json(req): Json<SurveyVersionRequest>,
) -> ApiResult<axum::Json<SurveyTemplateVersion>> {
    let mut tx = begin(&state).await?;
    let version = templates::edit_version(&mut tx, &user, &code, number, &req.questions).await?;
    commit(tx).await?;
    Ok(axum::Json(version))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrentSurveyVersionRequest {
    /// The version new invitations of the template use from now on.
    #[serde(deserialize_with = "atiende_core::input::whole_number")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub version: i32,
}

/// Chooses the version new invitations of a template use; those sent keep theirs.
#[utoipa::path(put, path = "/api/v1/staff/survey-templates/{code}/current", tag = "surveys", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = CurrentSurveyVersionRequest,
    responses((status = 200, body = SurveyTemplate),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff; `role_not_allowed`: only the quality director or an admin"),
        (status = 404, body = Problem, description = "`survey_template_not_found`, `survey_version_not_found`"),
        (status = 422, body = Problem, description = "`invalid_body`")))]
#[tracing::instrument(skip_all)]
pub async fn set_current(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(code): Path<String>,
    Json(req): Json<CurrentSurveyVersionRequest>,
) -> ApiResult<axum::Json<SurveyTemplate>> {
    let mut tx = begin(&state).await?;
    let template = templates::set_current(&mut tx, &user, &code, req.version).await?;
    commit(tx).await?;
    Ok(axum::Json(template))
}
