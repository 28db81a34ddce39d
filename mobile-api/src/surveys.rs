//! Satisfaction surveys for staff: the templates, the invitations and their answers (the
//! satisfaction register), answers taken by phone or at a visit entered against an invitation, and
//! the follow-ups low scores opened.

use std::collections::BTreeMap;

use atiende_core::surveys::follow_ups::{self, SurveyFollowUp};
use atiende_core::surveys::{
    self, Answering, InvitationFilter, StoredSurveyAnswer, SurveyInvitation, SurveyInvitationRow,
    SurveyTemplate, TakenVia,
};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Json, Path, Query, Staff};
use crate::views::Page;
use crate::{ApiState, page_limit};

pub(crate) async fn conn(
    state: &ApiState,
) -> ApiResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    Ok(state
        .db
        .acquire()
        .await
        .map_err(atiende_core::Error::from)?)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyTemplateList {
    pub templates: Vec<SurveyTemplate>,
}

/// The survey templates, each with its latest version's questions.
#[utoipa::path(get, path = "/api/v1/staff/survey-templates", tag = "surveys", security(("bearer" = [])),
    responses((status = 200, body = SurveyTemplateList),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff")))]
#[tracing::instrument(skip_all)]
pub async fn templates(
    State(state): State<ApiState>,
    Staff(_): Staff,
) -> ApiResult<axum::Json<SurveyTemplateList>> {
    let templates = surveys::templates(&mut *conn(&state).await?).await?;
    Ok(axum::Json(SurveyTemplateList { templates }))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SurveyInvitationStatus {
    Open,
    Answered,
    Expired,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvitationParams {
    #[param(inline)]
    pub status: Option<SurveyInvitationStatus>,
    pub work_order: Option<Uuid>,
    pub campaign: Option<Uuid>,
    /// From `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Survey invitations, newest first.
#[utoipa::path(get, path = "/api/v1/staff/survey-invitations", tag = "surveys", security(("bearer" = [])),
    params(InvitationParams),
    responses((status = 200, body = Page<SurveyInvitationRow>),
        (status = 400, body = Problem, description = "`invalid_limit`, `invalid_query`"),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff")))]
#[tracing::instrument(skip_all)]
pub async fn invitations(
    State(state): State<ApiState>,
    Staff(_): Staff,
    Query(q): Query<InvitationParams>,
) -> ApiResult<axum::Json<Page<SurveyInvitationRow>>> {
    let filter = InvitationFilter {
        status: q.status.map(|s| {
            match s {
                SurveyInvitationStatus::Open => "open",
                SurveyInvitationStatus::Answered => "answered",
                SurveyInvitationStatus::Expired => "expired",
            }
            .to_owned()
        }),
        work_order: q.work_order,
        campaign: q.campaign,
        before: q.cursor,
        limit: page_limit(q.limit)?,
    };
    let (items, next) = surveys::list(&state.db, &filter).await?;
    Ok(axum::Json(Page {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}

/// An invitation with its questions and the answers stored against it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyInvitationWithAnswers {
    #[serde(flatten)]
    pub invitation: SurveyInvitation,
    pub answers: Vec<StoredSurveyAnswer>,
}

async fn with_answers(state: &ApiState, id: Uuid) -> ApiResult<SurveyInvitationWithAnswers> {
    let mut conn = conn(state).await?;
    let invitation = surveys::invitation(&mut conn, id).await?;
    let answers = surveys::answers_of(&mut *conn, id).await?;
    Ok(SurveyInvitationWithAnswers {
        invitation,
        answers,
    })
}

/// One invitation and its answers.
#[utoipa::path(get, path = "/api/v1/staff/survey-invitations/{id}", tag = "surveys", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SurveyInvitationWithAnswers),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`survey_not_found`")))]
#[tracing::instrument(skip_all)]
pub async fn invitation(
    State(state): State<ApiState>,
    Staff(_): Staff,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<SurveyInvitationWithAnswers>> {
    Ok(axum::Json(with_answers(&state, id).await?))
}

/// How staff took the answers they enter.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SurveyTakenByStaff {
    Phone,
    Visit,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SurveyResponseRequest {
    /// `phone` or `visit` (PRO-SIG-10).
    pub taken_via: SurveyTakenByStaff,
    /// SurveyQuestion code → answer: a number 1–5 for a scale, `true`/`false` for yes/no, an option's
    /// value for a choice, a text of at most 2,000 characters for a free text. Optional questions
    /// may be left out.
    #[schema(value_type = Object)]
    pub answers: BTreeMap<String, serde_json::Value>,
}

/// Enters the answers a customer gave by phone or at a visit against their invitation, marked
/// with how they were taken. The invitation is answered once; a low score opens its follow-up.
#[utoipa::path(post, path = "/api/v1/staff/survey-invitations/{id}/responses", tag = "surveys", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SurveyResponseRequest,
    responses((status = 201, body = SurveyInvitationWithAnswers),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`survey_not_found`"),
        (status = 409, body = Problem, description = "`survey_answered`, `survey_expired`"),
        (status = 422, body = Problem, description = "`survey_answer_required`, `invalid_survey_score`, `invalid_survey_yes_no`, `invalid_survey_choice`, `survey_text_too_long`, `unknown_survey_question`")))]
#[tracing::instrument(skip_all)]
pub async fn respond(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<SurveyResponseRequest>,
) -> ApiResult<(StatusCode, axum::Json<SurveyInvitationWithAnswers>)> {
    let raw = req
        .answers
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(true) => "yes".to_owned(),
                serde_json::Value::Bool(false) => "no".to_owned(),
                serde_json::Value::Number(n) => n.to_string(),
                // Not an answer of any kind: refused by the question's own rule.
                _ => "\0".to_owned(),
            };
            (k, text)
        })
        .collect();
    let who = Answering {
        via: match req.taken_via {
            SurveyTakenByStaff::Phone => TakenVia::Phone,
            SurveyTakenByStaff::Visit => TakenVia::Visit,
        },
        entered_by: Some(user.id),
        low: &state.survey_low_score,
    };
    surveys::answer(&state.db, id, &raw, true, who)
        .await
        .map_err(|r| ApiError::from(r.into_error()))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(with_answers(&state, id).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowUpParams {
    /// `true`: only open ones; `false`: only closed ones.
    pub open: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyFollowUpList {
    pub follow_ups: Vec<SurveyFollowUp>,
}

/// Follow-ups opened by low scores, open ones first: all for the quality director and admins,
/// those of their processes for the rest of the staff.
#[utoipa::path(get, path = "/api/v1/staff/survey-follow-ups", tag = "surveys", security(("bearer" = [])),
    params(FollowUpParams),
    responses((status = 200, body = SurveyFollowUpList),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff")))]
#[tracing::instrument(skip_all)]
pub async fn follow_ups(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Query(q): Query<FollowUpParams>,
) -> ApiResult<axum::Json<SurveyFollowUpList>> {
    let follow_ups = follow_ups::list(&state.db, &user, q.open).await?;
    Ok(axum::Json(SurveyFollowUpList { follow_ups }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseSurveyFollowUpRequest {
    /// What was done: 1 to 4,000 characters once trimmed.
    #[schema(min_length = 1, max_length = 4000)]
    pub action: String,
}

/// Closes a follow-up with what was done: staff of its process, the quality director or admins.
#[utoipa::path(post, path = "/api/v1/staff/survey-follow-ups/{id}/close", tag = "surveys", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = CloseSurveyFollowUpRequest,
    responses((status = 200, body = SurveyFollowUp),
        (status = 403, body = Problem, description = "`staff_only`: the caller is not staff"),
        (status = 404, body = Problem, description = "`follow_up_not_found`: no such follow-up, or one of a process you are not on the staff of"),
        (status = 409, body = Problem, description = "`follow_up_closed`"),
        (status = 422, body = Problem, description = "`invalid_follow_up_action`")))]
#[tracing::instrument(skip_all)]
pub async fn close_follow_up(
    State(state): State<ApiState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
    Json(req): Json<CloseSurveyFollowUpRequest>,
) -> ApiResult<axum::Json<SurveyFollowUp>> {
    let mut tx = state.db.begin().await.map_err(atiende_core::Error::from)?;
    let closed = follow_ups::close(&mut tx, &user, id, &req.action).await?;
    tx.commit().await.map_err(atiende_core::Error::from)?;
    Ok(axum::Json(closed))
}
