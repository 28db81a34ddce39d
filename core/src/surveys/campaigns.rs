//! Semestral survey campaigns (PRO-SIG-10: "una encuesta semestral en los meses de junio y
//! diciembre"). A campaign invites every active customer, or a random sample of a stated size, to
//! answer one version of a template; each customer is invited once. Staff create campaigns, and
//! the scheduler opens one itself in the configured months, once per month however many processes
//! or restarts try (a unique constraint on the month). Unanswered invitations get one reminder a
//! configured number of days after they were sent; at the closing date the campaign closes and its
//! unanswered invitations expire.
//!
//! An active customer is a verified customer record (not a merged contact) with a contract in
//! force on the day the campaign opens, or a visit completed in the [`ACTIVE_MONTHS`] before.

use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::campaign_figures::get_in;
pub use super::campaign_figures::{SurveyCampaign, SurveyCampaignFigures, get, list};
use super::templates::{require_survey_manager, template_not_found, version_not_found};
use crate::auth::User;
use crate::calendar::{COLOMBIA, local_date};
use crate::error::{Error, Result};
use crate::input::{CampaignTitle, Text};

/// A customer served in this many months before a campaign opens is active.
pub const ACTIVE_MONTHS: i32 = 6;
/// The months the scheduler opens a campaign in unless the settings say otherwise.
pub const DEFAULT_MONTHS: [u32; 2] = [6, 12];
/// Days a campaign the scheduler opens stays open unless the settings say otherwise.
pub const DEFAULT_DAYS_OPEN: u32 = 30;
/// Days after an invitation of a campaign its reminder goes unless the settings say otherwise.
pub const DEFAULT_REMINDER_DAYS: u32 = 7;
/// The largest sample a campaign may ask for.
pub const MAX_SAMPLE: u32 = 100_000;
/// A campaign closes at most this many days after it opens.
pub const MAX_DAYS_OPEN: u64 = 90;
/// A campaign opens at most this many days ahead.
pub const MAX_DAYS_AHEAD: u64 = 366;

/// What the scheduler does about campaigns.
#[derive(Debug, Clone)]
pub struct CampaignSchedule {
    /// The months (1–12) the scheduler opens a campaign in; none switches that off.
    pub months: Vec<u32>,
    /// None: every active customer; else a random sample of this size.
    pub sample: Option<u32>,
    /// Days a campaign the scheduler opens stays open (1 to [`MAX_DAYS_OPEN`]).
    pub days_open: u32,
    /// How long after its invitation an unanswered customer is reminded, once.
    pub remind_after: Duration,
    /// The public base URL of the web pages, without a trailing slash.
    pub public_base_url: String,
}

impl Default for CampaignSchedule {
    fn default() -> Self {
        CampaignSchedule {
            months: DEFAULT_MONTHS.to_vec(),
            sample: None,
            days_open: DEFAULT_DAYS_OPEN,
            remind_after: Duration::from_secs(u64::from(DEFAULT_REMINDER_DAYS) * 24 * 3600),
            public_base_url: "http://127.0.0.1:8080".into(),
        }
    }
}

/// A campaign as staff ask for it.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSurveyCampaign {
    /// 1 to 200 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "[^\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
        )
    )]
    pub title: String,
    /// A template of purpose `semestral`; `semestral` when left out.
    #[serde(default)]
    pub template: Option<String>,
    /// The template's version; its current version when left out.
    #[serde(default, deserialize_with = "crate::input::optional_whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub version: Option<i32>,
    /// The first day (Colombian time), today or later, at most 366 days ahead; today when left
    /// out. Customers are drawn and invited when it opens.
    #[serde(default)]
    pub opens_on: Option<NaiveDate>,
    /// The last day answers are taken (Colombian time): not before `opens_on`, at most 90 days
    /// after it.
    pub closes_on: NaiveDate,
    /// 1 to 100,000: a random sample of this many active customers; every active customer when
    /// left out.
    #[serde(default, deserialize_with = "crate::input::optional_whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub sample_size: Option<u32>,
}

fn invalid_dates(message: impl Into<String>) -> Error {
    Error::invalid("invalid_campaign_dates", message)
}

/// The instant a Colombian day starts.
fn start_of(day: NaiveDate) -> Result<DateTime<Utc>> {
    day.and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(COLOMBIA).single())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| invalid_dates("the dates are out of range"))
}

fn page(schedule_base: &str) -> String {
    format!("{schedule_base}/s/")
}

/// Creates a campaign as `actor` asks (the quality director or an admin) and, when it opens
/// today, draws and invites its customers at once. Call in a transaction.
pub async fn create(
    conn: &mut PgConnection,
    actor: &User,
    req: &NewSurveyCampaign,
    public_base_url: &str,
    today: NaiveDate,
) -> Result<SurveyCampaign> {
    require_survey_manager(actor)?;
    let title = Text::<CampaignTitle>::parse(&req.title)?;
    if req
        .sample_size
        .is_some_and(|n| !(1..=MAX_SAMPLE).contains(&n))
    {
        return Err(Error::invalid(
            "invalid_sample_size",
            format!("a sample has 1 to {MAX_SAMPLE} customers"),
        ));
    }
    let opens_on = req.opens_on.unwrap_or(today);
    if opens_on < today || opens_on > today + Days::new(MAX_DAYS_AHEAD) {
        return Err(invalid_dates(format!(
            "a campaign opens today or within {MAX_DAYS_AHEAD} days"
        )));
    }
    if req.closes_on < opens_on || req.closes_on > opens_on + Days::new(MAX_DAYS_OPEN) {
        return Err(invalid_dates(format!(
            "a campaign closes on or after the day it opens, at most {MAX_DAYS_OPEN} days later"
        )));
    }
    let closes_at = start_of(req.closes_on + Days::new(1))?;
    // Opening today means now; a later day, at its start.
    let opens_at = (opens_on > today).then(|| start_of(opens_on)).transpose()?;
    let template = req.template.as_deref().unwrap_or("semestral");
    let chosen = sqlx::query!(
        r#"select t.purpose, v.id as "version_id?"
           from survey_templates t
           left join survey_template_versions v
             on v.template_code = t.code
            and v.id = case when $2::int is null then t.current_version_id
                            else (select w.id from survey_template_versions w
                                  where w.template_code = t.code and w.version = $2) end
           where t.code = $1"#,
        template,
        req.version,
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(template_not_found)?;
    if chosen.purpose != "semestral" {
        return Err(Error::invalid(
            "not_a_campaign_template",
            "campaigns use a template of purpose semestral",
        ));
    }
    let version_id = chosen.version_id.ok_or_else(version_not_found)?;
    let id = Uuid::new_v4();
    sqlx::query!(
        "insert into survey_campaigns (id, version_id, name, opens_at, closes_at, sample_size, created_by)
         values ($1, $2, $3, coalesce($4, now()), $5, $6, $7)",
        id,
        version_id,
        title.as_str(),
        opens_at,
        closes_at,
        req.sample_size.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        actor.id,
    )
    .execute(&mut *conn)
    .await?;
    draw(conn, id, public_base_url).await?;
    get_in(conn, id).await
}

/// Draws the customers of the campaign `id` and invites them, each invitation and its
/// notification written together, if the campaign has opened, is not drawn yet and has not
/// closed. Returns how many were invited. Call in a transaction.
async fn draw(conn: &mut PgConnection, id: Uuid, public_base_url: &str) -> Result<i64> {
    let Some(campaign) = sqlx::query!(
        "select version_id, sample_size from survey_campaigns
         where id = $1 and drawn_at is null and closed_at is null
           and opens_at <= now() and closes_at > now()
         for update skip locked",
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(0);
    };
    let invited = sqlx::query_scalar!(
        r#"with version as (
               -- Shared with other invitations, exclusive with an edit of its questions.
               select v.id from survey_template_versions v where v.id = $2 for share
           ), active as (
               select cu.id from customers cu
               where cu.verified and cu.merged_into is null
                 and (exists (select 1 from contracts k
                              where k.customer_id = cu.id
                                and k.starts_on <= (now() at time zone 'America/Bogota')::date
                                and k.ends_on >= (now() at time zone 'America/Bogota')::date)
                      or exists (select 1 from work_orders w
                                 where w.customer_id = cu.id and w.status = 'completed'
                                   and w.completed_at > now() - make_interval(months => $4)))
           ), drawn as (
               update survey_campaigns set drawn_at = now(), population = (select count(*) from active)
               where id = $1
               returning id, closes_at
           ), chosen as (
               select a.id from active a order by random() limit $3
           ), invited as (
               insert into survey_invitations (id, customer_id, version_id, campaign_id, expires_at)
               select gen_random_uuid(), chosen.id, version.id, drawn.id, drawn.closes_at
               from chosen cross join drawn cross join version
               on conflict (campaign_id, customer_id) do nothing
               returning id, customer_id, campaign_id, expires_at
           ), notified as (
               insert into notifications (dedupe_key, customer_id, kind, urgency, ttl_secs, data)
               select 'survey_invitation:' || id, customer_id, 'survey_invitation', 'normal', $5,
                      jsonb_build_object(
                          'invitation_id', id, 'campaign_id', campaign_id, 'page', $6::text,
                          'expires_on', to_char((expires_at - interval '1 second') at time zone 'America/Bogota', 'YYYY-MM-DD'))
               from invited
               on conflict (dedupe_key) do nothing
           )
           select count(*) as "invited!" from invited"#,
        id,
        campaign.version_id,
        i64::from(campaign.sample_size.unwrap_or(i32::MAX)),
        ACTIVE_MONTHS,
        i32::try_from(super::NOTICE_TTL.as_secs()).unwrap_or(i32::MAX),
        page(public_base_url),
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(invited)
}

/// What one scheduler round did about campaigns.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CampaignRound {
    /// Campaigns the scheduler opened for this month.
    pub opened: usize,
    /// Customers invited by campaigns that opened.
    pub invited: usize,
    pub reminded: usize,
    pub closed: usize,
}

impl CampaignRound {
    pub fn busiest(&self) -> usize {
        self.invited.max(self.reminded).max(self.closed)
    }
}

/// One round: opens this month's campaign if `today` is in one of the configured months, draws
/// the campaigns whose opening day came, reminds once, and closes the campaigns whose closing
/// came. Safe in every process at once.
pub async fn round(
    pool: &PgPool,
    schedule: &CampaignSchedule,
    today: NaiveDate,
    limit: i64,
) -> Result<CampaignRound> {
    let mut done = CampaignRound::default();
    if let Some(invited) = open_scheduled(pool, schedule, today).await? {
        done.opened = 1;
        done.invited += usize::try_from(invited).unwrap_or(0);
    }
    done.invited += usize::try_from(draw_due(pool, &schedule.public_base_url).await?).unwrap_or(0);
    done.reminded = remind(pool, schedule, limit).await?;
    done.closed = close_due(pool).await?;
    Ok(done)
}

/// Opens the campaign of `today`'s month if that month is one of the schedule's, and invites its
/// customers, in one transaction: once per month, however many processes try at once (the unique
/// month makes all but one insert nothing). Returns how many were invited when it opened one.
pub async fn open_scheduled(
    pool: &PgPool,
    schedule: &CampaignSchedule,
    today: NaiveDate,
) -> Result<Option<i64>> {
    if !schedule.months.contains(&today.month()) {
        return Ok(None);
    }
    let Some(month) = today.with_day(1) else {
        return Ok(None);
    };
    let days = i32::try_from(u64::from(schedule.days_open).min(MAX_DAYS_OPEN)).unwrap_or(30);
    let mut tx = pool.begin().await?;
    let opened = sqlx::query_scalar!(
        r#"insert into survey_campaigns (id, version_id, name, opens_at, closes_at, sample_size, scheduled_for)
           select $1, t.current_version_id, $2, now(),
                  ((now() at time zone 'America/Bogota')::date + $3::int + 1)::timestamp at time zone 'America/Bogota',
                  $4, $5
           from survey_templates t
           where t.code = 'semestral' and t.current_version_id is not null
           on conflict (scheduled_for) do nothing
           returning id"#,
        Uuid::new_v4(),
        format!("Semestral {}", month.format("%Y-%m")),
        days,
        schedule
            .sample
            .map(|n| i32::try_from(n.min(MAX_SAMPLE)).unwrap_or(i32::MAX)),
        month,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = opened else {
        return Ok(None);
    };
    let invited = draw(&mut tx, id, &schedule.public_base_url).await?;
    tx.commit().await?;
    tracing::info!(%id, invited, month = %month.format("%Y-%m"), "semestral survey campaign opened");
    Ok(Some(invited))
}

/// Draws the campaigns staff created for a later day whose opening came.
async fn draw_due(pool: &PgPool, public_base_url: &str) -> Result<i64> {
    let due = sqlx::query_scalar!(
        "select id from survey_campaigns
         where drawn_at is null and closed_at is null and opens_at <= now() and closes_at > now()
         order by opens_at limit 10"
    )
    .fetch_all(pool)
    .await?;
    let mut invited = 0;
    for id in due {
        let mut tx = pool.begin().await?;
        invited += draw(&mut tx, id, public_base_url).await?;
        tx.commit().await?;
    }
    Ok(invited)
}

/// Reminds, once, the customers who have not answered an invitation of an open campaign sent at
/// least `remind_after` ago, up to `limit`: the reminder and its notification in one statement,
/// each invitation claimed so that no two processes remind it. Returns how many.
pub async fn remind(pool: &PgPool, schedule: &CampaignSchedule, limit: i64) -> Result<usize> {
    let reminded = sqlx::query_scalar!(
        r#"with due as (
               select i.id from survey_invitations i
               join survey_campaigns c on c.id = i.campaign_id
               where i.campaign_id is not null and i.reminded_at is null and i.answered_at is null
                 and i.expires_at > now() and c.closed_at is null and c.closes_at > now()
                 and i.sent_at <= now() - make_interval(secs => $1)
               order by i.sent_at
               limit $2
               for update of i skip locked
           ), reminded as (
               update survey_invitations i set reminded_at = now()
               from due where i.id = due.id and i.reminded_at is null
               returning i.id, i.customer_id, i.campaign_id, i.expires_at
           ), notified as (
               insert into notifications (dedupe_key, customer_id, kind, urgency, ttl_secs, data)
               select 'survey_reminder:' || id, customer_id, 'survey_reminder', 'normal', $3,
                      jsonb_build_object(
                          'invitation_id', id, 'campaign_id', campaign_id, 'page', $4::text,
                          'expires_on', to_char((expires_at - interval '1 second') at time zone 'America/Bogota', 'YYYY-MM-DD'))
               from reminded
               on conflict (dedupe_key) do nothing
           )
           select count(*) as "reminded!" from reminded"#,
        schedule.remind_after.as_secs_f64(),
        limit,
        i32::try_from(super::NOTICE_TTL.as_secs()).unwrap_or(i32::MAX),
        page(&schedule.public_base_url),
    )
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(reminded).unwrap_or(0))
}

/// Closes the campaigns whose closing came; their unanswered invitations expire. Returns how many.
pub async fn close_due(pool: &PgPool) -> Result<usize> {
    let closed = sqlx::query_scalar!(
        r#"with due as (
               select id from survey_campaigns
               where closed_at is null and closes_at <= now()
               for update skip locked
           ), closed as (
               update survey_campaigns c set closed_at = now()
               from due where c.id = due.id
               returning c.id
           ), expired as (
               update survey_invitations i set expires_at = now()
               from closed
               where i.campaign_id = closed.id and i.answered_at is null
                 and i.expires_at > now() and i.sent_at < now()
           )
           select count(*) as "closed!" from closed"#
    )
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(closed).unwrap_or(0))
}

/// Closes the campaign `id` now, as `actor` (the quality director or an admin) asks: its
/// unanswered invitations expire and no reminder goes. Call in a transaction.
pub async fn close(conn: &mut PgConnection, actor: &User, id: Uuid) -> Result<SurveyCampaign> {
    require_survey_manager(actor)?;
    let closed = sqlx::query_scalar!(
        "update survey_campaigns set closed_at = now(), closed_by = $2
         where id = $1 and closed_at is null
         returning id",
        id,
        actor.id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if closed.is_none() {
        get_in(conn, id).await?;
        return Err(Error::conflict(
            "survey_campaign_closed",
            "the campaign is closed already",
        ));
    }
    sqlx::query!(
        "update survey_invitations set expires_at = now()
         where campaign_id = $1 and answered_at is null and expires_at > now() and sent_at < now()",
        id
    )
    .execute(&mut *conn)
    .await?;
    get_in(conn, id).await
}

/// Today in Colombia, the day campaigns are counted in.
pub fn today() -> NaiveDate {
    local_date(Utc::now())
}
