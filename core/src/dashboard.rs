//! What the staff dashboard shows beside the indicators: the open cases closest to breaching a
//! clock, the survey answers per question, the survey follow-ups still open and the contracts about
//! to end (SGC-SAC-001, PRO-008). Who sees what mirrors the indicators: the quality director and
//! admins everything, a process leader the processes they lead, and nobody else anything.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::User;
use crate::calendar::{COLOMBIA, local_date};
use crate::deadlines::{self, CaseClocks};
use crate::error::{Error, Result};
use crate::indicators::Month;
use crate::types::{CaseStatus, CaseType, Priority, Role};

/// What one member of staff may see on the dashboard.
#[derive(Debug, Clone)]
pub struct View {
    /// The processes whose cases, visits and follow-ups count; none: every one.
    pub processes: Option<Vec<String>>,
    /// Whether they see the commercial process's contracts.
    pub commercial: bool,
}

/// The dashboard's reader: the quality director and admins see everything, a process leader the
/// processes they lead; collaborators and anyone else are refused, with the indicators' codes.
pub async fn view(pool: &PgPool, actor: &User, commercial_process: &str) -> Result<View> {
    match actor.role {
        Role::QualityDirector | Role::Admin => Ok(View {
            processes: None,
            commercial: true,
        }),
        Role::ProcessLeader => {
            let led = sqlx::query_scalar!(
                "select code from processes where leader_id = $1 order by code",
                actor.id
            )
            .fetch_all(pool)
            .await?;
            if led.is_empty() {
                return Err(Error::forbidden(
                    "not_process_leader",
                    "you lead no process",
                ));
            }
            Ok(View {
                commercial: led.iter().any(|p| p == commercial_process),
                processes: Some(led),
            })
        }
        _ => Err(Error::forbidden(
            "role_not_allowed",
            "the dashboard is for the quality director, admins and process leaders",
        )),
    }
}

/// The instant a month starts in Colombia.
fn month_start(month: Month) -> DateTime<Utc> {
    COLOMBIA
        .from_local_datetime(&month.first_day().and_time(NaiveTime::MIN))
        .single()
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

/// An open case and its clocks as of now.
#[derive(Debug, Clone)]
pub struct AtRisk {
    pub id: Uuid,
    pub radicado: String,
    pub case_type: CaseType,
    pub status: CaseStatus,
    pub priority: Priority,
    pub process_code: Option<String>,
    pub customer_name: String,
    pub clocks: CaseClocks,
}

/// The open cases in view whose next due time (the legal date's end or a running SLA clock's due
/// instant) comes first: those already breached lead.
pub async fn at_risk(pool: &PgPool, view: &View, limit: i64) -> Result<Vec<AtRisk>> {
    let rows = sqlx::query!(
        r#"select c.id, c.radicado, c.type as "case_type: CaseType", c.status as "status: CaseStatus",
                  c.priority as "priority: Priority", c.process_code, cu.name as customer_name
           from cases c join customers cu on cu.id = c.customer_id
           where c.status not in ('answered', 'rated', 'withdrawn')
             and ($1::text[] is null or c.process_code = any($1))
           order by least(coalesce(least(c.first_response_due_at, c.resolution_due_at), 'infinity'),
                          ((c.legal_due_date + 1)::timestamp - make_interval(secs => $3)) at time zone 'UTC'), c.id
           limit $2"#,
        view.processes.as_deref(),
        limit,
        f64::from(COLOMBIA.local_minus_utc()),
    )
    .fetch_all(pool)
    .await?;
    let terms = crate::terms::current(pool).await?;
    let mut conn = pool.acquire().await?;
    let now = Utc::now();
    let mut cases = Vec::with_capacity(rows.len());
    for r in rows {
        let inputs = deadlines::inputs(&mut conn, r.id).await?;
        cases.push(AtRisk {
            id: r.id,
            radicado: r.radicado,
            case_type: r.case_type,
            status: r.status,
            priority: r.priority,
            process_code: r.process_code,
            customer_name: r.customer_name,
            clocks: deadlines::evaluate(&terms.schedule, &inputs, now),
        });
    }
    Ok(cases)
}

/// One survey question's answers over some months: every version of its template together.
#[derive(Debug, Clone)]
pub struct QuestionResult {
    pub template: String,
    pub template_name_es: String,
    pub template_name_en: String,
    pub code: String,
    /// `scale`, `yes_no`, `choice` or `text`.
    pub kind: String,
    pub label_es: String,
    pub label_en: String,
    pub answers: i64,
    /// Answers scored 1 to 5.
    pub scores: [i64; 5],
    pub mean: Option<f64>,
    pub yes: i64,
    /// (value, Spanish label, English label, answers) of each option chosen.
    pub choices: Vec<(String, String, String, i64)>,
}

/// The answers to every survey question given from `from` to `to` (Colombian months, both
/// counted); a process leader's are those of their processes' visits.
pub async fn survey_results(
    pool: &PgPool,
    view: &View,
    from: Month,
    to: Month,
) -> Result<Vec<QuestionResult>> {
    let (start, end) = (month_start(from), month_start(to.next()));
    let rows = sqlx::query!(
        r#"select v.template_code as "template!", t.name_es, t.name_en, q.code, q.kind,
                  (array_agg(q.label_es order by v.version desc))[1] as "label_es!",
                  (array_agg(q.label_en order by v.version desc))[1] as "label_en!",
                  count(*) as "answers!",
                  count(*) filter (where a.score = 1) as "s1!",
                  count(*) filter (where a.score = 2) as "s2!",
                  count(*) filter (where a.score = 3) as "s3!",
                  count(*) filter (where a.score = 4) as "s4!",
                  count(*) filter (where a.score = 5) as "s5!",
                  avg(a.score)::float8 as mean,
                  count(*) filter (where a.yes) as "yes!"
           from survey_answers a
           join survey_invitations i on i.id = a.invitation_id
           join survey_template_versions v on v.id = a.version_id
           join survey_templates t on t.code = v.template_code
           join survey_questions q on q.version_id = a.version_id and q.position = a.position
           left join work_orders w on w.id = i.work_order_id
           where i.answered_at >= $1 and i.answered_at < $2
             and ($3::text[] is null or w.process_code = any($3))
           group by v.template_code, t.name_es, t.name_en, q.code, q.kind
           order by v.template_code, min(q.position)"#,
        start,
        end,
        view.processes.as_deref(),
    )
    .fetch_all(pool)
    .await?;
    let choices = sqlx::query!(
        r#"select v.template_code as "template!", q.code, a.choice as "choice!", count(*) as "answers!",
                  (array_agg(q.options order by v.version desc))[1] as options
           from survey_answers a
           join survey_invitations i on i.id = a.invitation_id
           join survey_template_versions v on v.id = a.version_id
           join survey_questions q on q.version_id = a.version_id and q.position = a.position
           left join work_orders w on w.id = i.work_order_id
           where a.choice is not null and i.answered_at >= $1 and i.answered_at < $2
             and ($3::text[] is null or w.process_code = any($3))
           group by v.template_code, q.code, a.choice
           order by v.template_code, q.code, count(*) desc, a.choice"#,
        start,
        end,
        view.processes.as_deref(),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let choices = choices
                .iter()
                .filter(|c| c.template == r.template && c.code == r.code)
                .map(|c| {
                    let option = c
                        .options
                        .as_ref()
                        .and_then(|o| o.as_array())
                        .and_then(|o| o.iter().find(|o| o["value"] == c.choice.as_str()));
                    let label = |lang: &str| {
                        option
                            .and_then(|o| o[lang].as_str())
                            .unwrap_or(&c.choice)
                            .to_owned()
                    };
                    (c.choice.clone(), label("es"), label("en"), c.answers)
                })
                .collect();
            QuestionResult {
                template: r.template,
                template_name_es: r.name_es,
                template_name_en: r.name_en,
                code: r.code,
                kind: r.kind,
                label_es: r.label_es,
                label_en: r.label_en,
                answers: r.answers,
                scores: [r.s1, r.s2, r.s3, r.s4, r.s5],
                mean: r.mean,
                yes: r.yes,
                choices,
            }
        })
        .collect())
}

/// A follow-up a low survey score opened that nobody has closed yet.
#[derive(Debug, Clone)]
pub struct OpenFollowUp {
    pub id: Uuid,
    pub process_code: Option<String>,
    pub lowest_score: i16,
    pub opened_at: DateTime<Utc>,
    pub customer_name: String,
    pub template_name_es: String,
    pub template_name_en: String,
}

/// The open follow-ups in view, oldest first.
pub async fn open_follow_ups(pool: &PgPool, view: &View, limit: i64) -> Result<Vec<OpenFollowUp>> {
    Ok(sqlx::query_as!(
        OpenFollowUp,
        r#"select f.id, f.process_code, f.lowest_score, f.opened_at, cu.name as customer_name,
                  t.name_es as template_name_es, t.name_en as template_name_en
           from survey_follow_ups f
           join survey_invitations i on i.id = f.invitation_id
           join customers cu on cu.id = i.customer_id
           join survey_template_versions v on v.id = i.version_id
           join survey_templates t on t.code = v.template_code
           where f.closed_at is null and ($1::text[] is null or f.process_code = any($1))
           order by f.opened_at, f.id
           limit $2"#,
        view.processes.as_deref(),
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// An active contract that ends soon, or has ended with its renewal still undecided.
#[derive(Debug, Clone)]
pub struct EndingContract {
    pub id: Uuid,
    pub customer_name: String,
    pub services: Vec<String>,
    pub ends_on: NaiveDate,
    pub renewal_offered_at: Option<DateTime<Utc>>,
}

/// Contracts whose renewal is undecided and that end within `days` from today (Colombian date),
/// soonest first; none for who does not see the commercial process.
pub async fn ending_contracts(
    pool: &PgPool,
    view: &View,
    days: u32,
    limit: i64,
) -> Result<Vec<EndingContract>> {
    if !view.commercial {
        return Ok(Vec::new());
    }
    let today = local_date(Utc::now());
    let until = today
        .checked_add_days(Days::new(u64::from(days)))
        .unwrap_or(today);
    Ok(sqlx::query_as!(
        EndingContract,
        r#"select k.id, cu.name as customer_name, k.services, k.ends_on, k.renewal_offered_at
           from contracts k join customers cu on cu.id = k.customer_id
           where k.status = 'active' and k.ends_on <= $1
           order by k.ends_on, k.id
           limit $2"#,
        until,
        limit,
    )
    .fetch_all(pool)
    .await?)
}
