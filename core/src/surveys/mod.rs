//! Customer satisfaction surveys (PRO-008 §5.4, PRO-SIG-10). A template's questions are versioned
//! and frozen once a version is sent. An invitation asks one customer to answer one version about
//! a visit or a campaign; it is answered once, on the web page its link opens or by staff who took
//! the answers by phone or at a visit, and the answers are the satisfaction register. A score at
//! or under the threshold opens one follow-up for the responsible process.
//!
//! Links: each delivery of an invitation carries its own single-use token, made as the delivery
//! leaves ([`issue_link`]); only the token's SHA-256 is stored.

pub mod answers;
pub mod campaign_figures;
pub mod campaigns;
pub mod follow_ups;
pub mod templates;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::{new_secret, token_digest};
use crate::error::{Error, Result};
pub use answers::{Answer, Refusal, SurveyQuestion, Value};

/// PRO-008 §5.4.1: the customer is asked within 5 days of the visit.
pub const MAX_DELAY: Duration = Duration::from_secs(5 * 24 * 3600);
/// How long after a visit its invitation waits unless the settings say otherwise.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(24 * 3600);
/// How long an invitation may be answered unless the settings say otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 24 * 3600);
/// The 1–5 score at or under which a follow-up opens, unless the settings say otherwise.
pub const DEFAULT_LOW_SCORE: i16 = 2;
/// How a push service keeps an invitation for an offline phone.
pub(crate) const NOTICE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// When post-service invitations go and how long they stay open.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// After the visit's completion; at most [`MAX_DELAY`].
    pub delay: Duration,
    /// How long an invitation can be answered.
    pub window: Duration,
    /// The public base URL of the web pages, without a trailing slash.
    pub public_base_url: String,
}

/// When a score opens a follow-up and for which process.
#[derive(Debug, Clone)]
pub struct LowScore {
    /// A 1–5 score at or under this opens one.
    pub threshold: i16,
    /// The process of a follow-up whose survey is not about a visit of a process.
    pub default_process: String,
}

impl Default for LowScore {
    fn default() -> Self {
        LowScore {
            threshold: DEFAULT_LOW_SCORE,
            default_process: "SIG".to_owned(),
        }
    }
}

/// The web page a token opens, under the public base URL.
pub fn page_path(token: &str) -> String {
    format!("/s/{token}")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One round: invites the customers of the work orders completed at least `delay` ago (and at
/// most 5 days ago: later the survey would break PRO-008 §5.4.1), up to `limit`, writing each
/// invitation and its notification in one statement. Each work order is invited once, whatever
/// processes run this at once (a unique constraint, and claimed rows skipped). Returns how many.
pub async fn invite_completed(pool: &PgPool, schedule: &Schedule, limit: i64) -> Result<usize> {
    let delay = schedule.delay.min(MAX_DELAY);
    let invited = sqlx::query_scalar!(
        r#"with version as (
               -- Shared with other invitations, exclusive with an edit of its questions.
               select v.id from survey_templates t
               join survey_template_versions v on v.id = t.current_version_id
               where t.code = 'post_service'
               for share of v
           ), due as (
               select w.id, w.customer_id from work_orders w
               where w.status = 'completed'
                 and w.completed_at <= now() - make_interval(secs => $1)
                 and w.completed_at > now() - make_interval(secs => $2)
                 and not exists (select 1 from survey_invitations i where i.work_order_id = w.id)
               order by w.completed_at
               limit $3
               for update of w skip locked
           ), invited as (
               insert into survey_invitations (id, customer_id, version_id, work_order_id, expires_at)
               select gen_random_uuid(), due.customer_id, version.id, due.id,
                      now() + make_interval(secs => $4)
               from due cross join version
               on conflict (work_order_id) do nothing
               returning id, customer_id, work_order_id, expires_at
           ), notified as (
               insert into notifications (dedupe_key, customer_id, kind, urgency, ttl_secs, data)
               select 'survey_invitation:' || id, customer_id, 'survey_invitation', 'normal', $5,
                      jsonb_build_object(
                          'invitation_id', id, 'work_order_id', work_order_id, 'page', $6::text,
                          'expires_on', to_char(expires_at at time zone 'America/Bogota', 'YYYY-MM-DD'))
               from invited
               on conflict (dedupe_key) do nothing
           )
           select count(*) as "invited!" from invited"#,
        secs(delay),
        secs(MAX_DELAY),
        limit,
        secs(schedule.window),
        i32::try_from(NOTICE_TTL.as_secs()).unwrap_or(i32::MAX),
        format!("{}/s/", schedule.public_base_url),
    )
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(invited).unwrap_or(0))
}

/// Makes the token of the link a delivery of an invitation carries, stores its digest, and
/// returns it; a token made earlier for the same delivery (an attempt that failed) stops working.
/// None when the invitation was answered or expired: the delivery is not worth sending.
pub async fn issue_link(
    db: impl PgExecutor<'_>,
    invitation_id: Uuid,
    delivery_id: i64,
) -> Result<Option<String>> {
    let token = new_secret("srv_");
    let issued = sqlx::query_scalar!(
        "insert into survey_links (token_hash, invitation_id, delivery_id)
         select $1, i.id, $3 from survey_invitations i
         where i.id = $2 and i.answered_at is null and i.expires_at > now()
         on conflict (delivery_id) do update set token_hash = excluded.token_hash, created_at = now()
         returning invitation_id",
        token_digest(&token),
        invitation_id,
        delivery_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(issued.map(|_| token))
}

/// What a link opens.
#[derive(Debug, Clone)]
pub enum Link {
    Open(Box<SurveyInvitation>),
    Unknown,
    Answered,
    Expired,
}

/// An invitation with the questions it asks.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyInvitation {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub template: String,
    pub template_name_es: String,
    pub template_name_en: String,
    pub version: i32,
    pub work_order_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub sent_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    /// `web`, `email`, `app`, `chat`, `phone` or `visit`, once answered.
    pub taken_via: Option<String>,
    pub questions: Vec<SurveyQuestion>,
}

async fn questions(db: impl PgExecutor<'_>, version_id: Uuid) -> Result<Vec<SurveyQuestion>> {
    let rows = sqlx::query!(
        r#"select position, code, kind, label_es, label_en, options, required
           from survey_questions where version_id = $1 order by position"#,
        version_id
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let options = match r.options {
                Some(o) => serde_json::from_value(o)
                    .map_err(|e| Error::Internal(format!("stored survey options: {e}")))?,
                None => Vec::new(),
            };
            Ok(SurveyQuestion {
                position: r.position,
                code: r.code,
                kind: r.kind,
                label_es: r.label_es,
                label_en: r.label_en,
                options,
                required: r.required,
            })
        })
        .collect()
}

/// The invitation `id`, with its questions.
pub async fn invitation(conn: &mut PgConnection, id: Uuid) -> Result<SurveyInvitation> {
    let r = sqlx::query!(
        r#"select i.id, i.customer_id, i.version_id, v.template_code, v.version, t.name_es, t.name_en,
                  i.work_order_id, i.campaign_id, i.sent_at, i.expires_at, i.answered_at, i.taken_via
           from survey_invitations i
           join survey_template_versions v on v.id = i.version_id
           join survey_templates t on t.code = v.template_code
           where i.id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::not_found("survey_not_found", "survey invitation"))?;
    Ok(SurveyInvitation {
        id: r.id,
        customer_id: r.customer_id,
        template: r.template_code,
        template_name_es: r.name_es,
        template_name_en: r.name_en,
        version: r.version,
        work_order_id: r.work_order_id,
        campaign_id: r.campaign_id,
        sent_at: r.sent_at,
        expires_at: r.expires_at,
        answered_at: r.answered_at,
        taken_via: r.taken_via,
        questions: questions(&mut *conn, r.version_id).await?,
    })
}

/// What the link with `token` opens.
pub async fn link(conn: &mut PgConnection, token: &str) -> Result<Link> {
    // Tokens are made by `new_secret`; anything much longer is not looked up.
    if token.is_empty() || token.len() > 128 {
        return Ok(Link::Unknown);
    }
    let Some(id) = sqlx::query_scalar!(
        "select invitation_id from survey_links where token_hash = $1",
        token_digest(token)
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Link::Unknown);
    };
    let invitation = invitation(conn, id).await?;
    Ok(if invitation.answered_at.is_some() {
        Link::Answered
    } else if invitation.expires_at <= Utc::now() {
        Link::Expired
    } else {
        Link::Open(Box::new(invitation))
    })
}

/// How an answer reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TakenVia {
    Web,
    Email,
    App,
    Chat,
    Phone,
    Visit,
}

impl TakenVia {
    pub fn as_str(self) -> &'static str {
        match self {
            TakenVia::Web => "web",
            TakenVia::Email => "email",
            TakenVia::App => "app",
            TakenVia::Chat => "chat",
            TakenVia::Phone => "phone",
            TakenVia::Visit => "visit",
        }
    }
}

/// Why answers were not stored.
#[derive(Debug)]
pub enum Refused {
    /// Some answers break their question's rule; nothing was stored.
    Invalid(Vec<Refusal>),
    /// The invitation was answered already (by another tab, or staff).
    Answered,
    Expired,
    Other(Error),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Other(e)
    }
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Refused::Other(e.into())
    }
}

impl Refused {
    /// The refusal as an API error with its stable code.
    pub fn into_error(self) -> Error {
        match self {
            Refused::Invalid(refusals) => {
                let first = refusals.first();
                Error::invalid(
                    first.map_or("survey_answer_required", |r| r.code),
                    format!(
                        "the answer to {} is not valid",
                        first.map_or("a question", |r| r.question.as_str())
                    ),
                )
            }
            Refused::Answered => {
                Error::conflict("survey_answered", "the survey was answered already")
            }
            Refused::Expired => {
                Error::conflict("survey_expired", "the survey can no longer be answered")
            }
            Refused::Other(e) => e,
        }
    }
}

/// Who answers and how.
pub struct Answering<'a> {
    pub via: TakenVia,
    /// The staff member entering answers taken by phone or at a visit.
    pub entered_by: Option<Uuid>,
    pub low: &'a LowScore,
}

/// Checks and stores the answers to the invitation `id`, marks it answered and, for a low score,
/// opens its follow-up and tells the process's leader: all in one transaction, or nothing. An
/// invitation is answered once: a second submission is refused and stores nothing.
pub async fn answer(
    pool: &PgPool,
    id: Uuid,
    raw: &BTreeMap<String, String>,
    strict: bool,
    who: Answering<'_>,
) -> Result<SurveyInvitation, Refused> {
    let mut tx = pool.begin().await?;
    let done = answer_in(&mut tx, id, raw, strict, who).await?;
    tx.commit().await?;
    Ok(done)
}

/// [`answer`] in the caller's transaction, so that what else the caller writes (a chat's
/// conversation) commits or rolls back with the answers.
pub async fn answer_in(
    tx: &mut PgConnection,
    id: Uuid,
    raw: &BTreeMap<String, String>,
    strict: bool,
    who: Answering<'_>,
) -> Result<SurveyInvitation, Refused> {
    let inv = invitation(&mut *tx, id).await?;
    let parsed = answers::parse(&inv.questions, raw, strict).map_err(Refused::Invalid)?;
    let claimed = sqlx::query!(
        r#"update survey_invitations set answered_at = now(), taken_via = $2, entered_by = $3
           where id = $1 and answered_at is null and expires_at > now()
           returning version_id"#,
        id,
        who.via.as_str(),
        who.entered_by,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(claimed) = claimed else {
        // A statement of its own sees what another transaction committed meanwhile.
        let now = invitation(&mut *tx, id).await?;
        return Err(if now.answered_at.is_some() {
            Refused::Answered
        } else {
            Refused::Expired
        });
    };
    for a in &parsed {
        let (score, yes, choice, text) = match &a.value {
            Value::Score(n) => (Some(*n), None, None, None),
            Value::Yes(b) => (None, Some(*b), None, None),
            Value::SurveyChoice(c) => (None, None, Some(c.as_str()), None),
            Value::Text(t) => (None, None, None, Some(t.as_str())),
        };
        sqlx::query!(
            "insert into survey_answers (invitation_id, version_id, position, score, yes, choice, text)
             values ($1, $2, $3, $4, $5, $6, $7)",
            id,
            claimed.version_id,
            a.position,
            score,
            yes,
            choice,
            text,
        )
        .execute(&mut *tx)
        .await?;
    }
    if let Some(lowest) = answers::lowest_score(&parsed).filter(|s| *s <= who.low.threshold) {
        follow_ups::open(&mut *tx, id, lowest, &who.low.default_process).await?;
    }
    Ok(invitation(&mut *tx, id).await?)
}

/// One stored answer, with its question.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredSurveyAnswer {
    pub position: i16,
    pub question: String,
    pub kind: String,
    pub score: Option<i16>,
    pub yes: Option<bool>,
    pub choice: Option<String>,
    pub text: Option<String>,
}

/// The answers of an invitation, in the order of its questions.
pub async fn answers_of(db: impl PgExecutor<'_>, id: Uuid) -> Result<Vec<StoredSurveyAnswer>> {
    Ok(sqlx::query_as!(
        StoredSurveyAnswer,
        r#"select a.position, q.code as question, q.kind, a.score, a.yes, a.choice, a.text
           from survey_answers a
           join survey_questions q on q.version_id = a.version_id and q.position = a.position
           where a.invitation_id = $1 order by a.position"#,
        id
    )
    .fetch_all(db)
    .await?)
}

/// A template and its current version's questions: the version new invitations use.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyTemplate {
    pub code: String,
    /// `post_service` or `semestral`.
    pub purpose: String,
    pub name_es: String,
    pub name_en: String,
    pub version: i32,
    pub questions: Vec<SurveyQuestion>,
}

pub async fn templates(conn: &mut PgConnection) -> Result<Vec<SurveyTemplate>> {
    let rows = sqlx::query!(
        r#"select t.code, t.purpose, t.name_es, t.name_en, v.id as version_id, v.version
           from survey_templates t
           join survey_template_versions v on v.id = t.current_version_id
           order by t.code"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(SurveyTemplate {
            questions: questions(&mut *conn, r.version_id).await?,
            code: r.code,
            purpose: r.purpose,
            name_es: r.name_es,
            name_en: r.name_en,
            version: r.version,
        });
    }
    Ok(out)
}

/// An invitation in a staff list.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyInvitationRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub template: String,
    pub version: i32,
    pub work_order_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    /// `open`, `answered` or `expired`.
    pub status: String,
    pub sent_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub taken_via: Option<String>,
}

/// Which invitations a staff list shows.
#[derive(Debug, Clone, Default)]
pub struct InvitationFilter {
    /// `open`, `answered` or `expired`.
    pub status: Option<String>,
    pub work_order: Option<Uuid>,
    pub campaign: Option<Uuid>,
    /// Newest first, those sent before this one (a cursor: the last id of the previous page).
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// Invitations newest first, and the cursor of the next page.
pub async fn list(
    db: impl PgExecutor<'_>,
    f: &InvitationFilter,
) -> Result<(Vec<SurveyInvitationRow>, Option<Uuid>)> {
    let mut rows = sqlx::query_as!(
        SurveyInvitationRow,
        r#"select i.id, i.customer_id, v.template_code as template, v.version, i.work_order_id,
                  i.campaign_id,
                  case when i.answered_at is not null then 'answered'
                       when i.expires_at <= now() then 'expired' else 'open' end as "status!",
                  i.sent_at, i.expires_at, i.answered_at, i.taken_via
           from survey_invitations i
           join survey_template_versions v on v.id = i.version_id
           where ($1::text is null
                  or ($1 = 'answered' and i.answered_at is not null)
                  or ($1 = 'expired' and i.answered_at is null and i.expires_at <= now())
                  or ($1 = 'open' and i.answered_at is null and i.expires_at > now()))
             and ($2::uuid is null or i.work_order_id = $2)
             and ($3::uuid is null or i.campaign_id = $3)
             and ($4::uuid is null or (i.sent_at, i.id) < (select b.sent_at, b.id from survey_invitations b where b.id = $4))
           order by i.sent_at desc, i.id desc
           limit $5"#,
        f.status,
        f.work_order,
        f.campaign,
        f.before,
        i64::from(f.limit) + 1,
    )
    .fetch_all(db)
    .await?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    let next = rows.last().filter(|_| more).map(|r| r.id);
    Ok((rows, next))
}
