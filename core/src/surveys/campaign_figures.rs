//! What staff read of survey campaigns: each campaign with its figures (invited, reminded,
//! answered, without a channel, the response rate), for the quality director, admins and process
//! leaders.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::User;
use crate::error::{Error, Result};
use crate::types::Role;

/// How a campaign is doing.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyCampaignFigures {
    /// Customers invited.
    pub invited: i64,
    /// Invitations reminded (once each).
    pub reminded: i64,
    /// Invitations answered, however they were taken.
    pub answered: i64,
    /// Invitations with no way to reach the customer (no e-mail, chat or app): staff may take
    /// these by phone or at a visit.
    pub without_channel: i64,
    /// `answered` over `invited`, in percent; none before anyone is invited.
    pub response_rate_percent: Option<f64>,
}

/// A campaign and its figures.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyCampaign {
    pub id: Uuid,
    pub title: String,
    pub template: String,
    pub version: i32,
    /// `scheduled` (not open yet), `open` or `closed`.
    pub status: String,
    pub opens_at: DateTime<Utc>,
    /// When it closes, or closed, as planned.
    pub closes_at: DateTime<Utc>,
    /// When it closed: at `closes_at`, or earlier when staff closed it.
    pub closed_at: Option<DateTime<Utc>>,
    /// The sample asked for; none for every active customer.
    pub sample_size: Option<i32>,
    /// How many active customers there were when it opened.
    pub population: Option<i32>,
    /// True when the sample asked for was larger than the active customers: every one of them was
    /// invited.
    pub sample_exceeded_population: bool,
    /// The month the scheduler opened it for (its first day); none when staff created it.
    pub scheduled_for: Option<NaiveDate>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub figures: SurveyCampaignFigures,
}

/// Who reads campaigns: the quality director, admins and process leaders (PRO-SIG-10 sends them
/// the results).
fn require_reader(actor: &User) -> Result<()> {
    if matches!(
        actor.role,
        Role::QualityDirector | Role::Admin | Role::ProcessLeader
    ) {
        Ok(())
    } else {
        Err(Error::forbidden(
            "role_not_allowed",
            "survey campaigns are for the quality director, admins and process leaders",
        ))
    }
}

async fn fetch(
    conn: &mut PgConnection,
    id: Option<Uuid>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<SurveyCampaign>> {
    let rows = sqlx::query!(
        r#"select c.id, c.name, v.template_code, v.version, c.opens_at, c.closes_at, c.closed_at,
                  c.drawn_at, c.sample_size, c.population, c.scheduled_for, c.created_by, c.created_at,
                  count(i.id) as "invited!", count(i.reminded_at) as "reminded!",
                  count(i.answered_at) as "answered!",
                  count(i.id) filter (where not exists (
                      select 1 from notifications n join deliveries d on d.notification_id = n.id
                      where n.dedupe_key = 'survey_invitation:' || i.id)) as "without_channel!"
           from survey_campaigns c
           join survey_template_versions v on v.id = c.version_id
           left join survey_invitations i on i.campaign_id = c.id
           where ($1::uuid is null or c.id = $1)
             and ($2::uuid is null
                  or (c.opens_at, c.id) < (select b.opens_at, b.id from survey_campaigns b where b.id = $2))
           group by c.id, v.template_code, v.version
           order by c.opens_at desc, c.id desc
           limit $3"#,
        id,
        before,
        i64::from(limit),
    )
    .fetch_all(&mut *conn)
    .await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|r| SurveyCampaign {
            status: if r.closed_at.is_some() || r.closes_at <= now {
                "closed"
            } else if r.drawn_at.is_none() {
                "scheduled"
            } else {
                "open"
            }
            .to_owned(),
            sample_exceeded_population: matches!((r.sample_size, r.population), (Some(s), Some(p)) if s > p),
            figures: SurveyCampaignFigures {
                invited: r.invited,
                reminded: r.reminded,
                answered: r.answered,
                without_channel: r.without_channel,
                response_rate_percent: crate::indicators::percent(r.answered, r.invited),
            },
            id: r.id,
            title: r.name,
            template: r.template_code,
            version: r.version,
            opens_at: r.opens_at,
            closes_at: r.closes_at,
            closed_at: r.closed_at,
            sample_size: r.sample_size,
            population: r.population,
            scheduled_for: r.scheduled_for,
            created_by: r.created_by,
            created_at: r.created_at,
        })
        .collect())
}

pub(super) async fn get_in(conn: &mut PgConnection, id: Uuid) -> Result<SurveyCampaign> {
    fetch(conn, Some(id), None, 1)
        .await?
        .pop()
        .ok_or(Error::not_found(
            "survey_campaign_not_found",
            "survey campaign",
        ))
}

/// The campaign `id` with its figures, for those who read campaigns.
pub async fn get(conn: &mut PgConnection, actor: &User, id: Uuid) -> Result<SurveyCampaign> {
    require_reader(actor)?;
    get_in(conn, id).await
}

/// Campaigns newest first, and the cursor of the next page.
pub async fn list(
    conn: &mut PgConnection,
    actor: &User,
    before: Option<Uuid>,
    limit: u32,
) -> Result<(Vec<SurveyCampaign>, Option<Uuid>)> {
    require_reader(actor)?;
    let mut rows = fetch(conn, None, before, limit.saturating_add(1)).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| more).map(|c| c.id);
    Ok((rows, next))
}
