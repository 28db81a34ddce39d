//! The monthly indicators of the quality system (SGC-SAC-001, the caracterización of customer
//! service, PRO-008): each is a [`Table`] by month (Colombian time) that says how it was
//! computed, its target when it has one, and whether each month met it.
//!
//! Each figure is one function below that reads what it needs and returns its table; [`compute`]
//! lists them. A new figure is one more function and one more line there.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::User;
use crate::calendar::{COLOMBIA, local_date};
use crate::deadlines::{self, Clock, ClockInputs, Kind, StoredEvent};
use crate::error::{Error, Result};
use crate::types::{CaseStatus, CaseType, Channel, Priority, Role};

/// The longest range asked for at once, in months.
pub const MAX_MONTHS: u32 = 36;
/// PQRS decided in the customer's favour: at most 0.5 % of the customers served (caracterización).
pub const IN_FAVOUR_TARGET: f64 = 0.5;
/// Satisfaction: at least 80 % of answers scored 4 or 5 (caracterización).
pub const SATISFACTION_TARGET: f64 = 80.0;
/// Ley 1755 de 2015: every answer within its legal term.
pub const LEGAL_TERM_TARGET: f64 = 100.0;

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month(NaiveDate);

impl Month {
    /// `YYYY-MM`, year 2000 to 2999.
    pub fn parse(raw: &str) -> Option<Month> {
        let (y, m) = raw.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i32 = y.parse().ok().filter(|y| (2000..=2999).contains(y))?;
        NaiveDate::from_ymd_opt(year, m.parse().ok()?, 1).map(Month)
    }

    pub fn of(date: NaiveDate) -> Month {
        Month(date.with_day(1).unwrap_or(date))
    }

    pub fn first_day(self) -> NaiveDate {
        self.0
    }

    pub fn next(self) -> Month {
        Month(self.0.checked_add_months(Months::new(1)).unwrap_or(self.0))
    }

    /// Months from `self` to `to`, both counted.
    pub fn span(self, to: Month) -> u32 {
        let months = |m: Month| m.0.year() * 12 + m.0.month0() as i32;
        u32::try_from(months(to) - months(self) + 1).unwrap_or(0)
    }

    /// The instant the month starts in Colombia.
    fn start(self) -> DateTime<Utc> {
        COLOMBIA
            .from_local_datetime(&self.0.and_time(chrono::NaiveTime::MIN))
            .single()
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m"))
    }
}

/// Which figures, over which months, processes and channel.
#[derive(Debug, Clone)]
pub struct Query {
    pub from: Month,
    pub to: Month,
    pub process: Option<String>,
    pub channel: Option<Channel>,
}

impl Query {
    /// `from` to `to` (both counted), at most [`MAX_MONTHS`].
    pub fn new(
        from: Month,
        to: Month,
        process: Option<String>,
        channel: Option<Channel>,
    ) -> Result<Query> {
        if from > to {
            return Err(Error::invalid("invalid_range", "from is after to"));
        }
        if from.span(to) > MAX_MONTHS {
            return Err(Error::invalid(
                "range_too_long",
                format!("ask for at most {MAX_MONTHS} months at once"),
            ));
        }
        Ok(Query {
            from,
            to,
            process,
            channel,
        })
    }

    fn months(&self) -> impl Iterator<Item = Month> {
        let to = self.to;
        std::iter::successors(Some(self.from), move |m| (*m < to).then(|| m.next()))
    }
}

/// A value in a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    Count(i64),
    Number(f64),
    Met(bool),
    Empty,
}

// Written by hand: a derived `oneOf` would match a whole number twice (integer and number).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Cell {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{SchemaType, Type};
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([
                Type::String,
                Type::Number,
                Type::Boolean,
                Type::Null,
            ]))
            .description(Some(
                "text, a count, a number (percentages and hours, two decimals), whether the \
                 target was met, or null when there was nothing to measure",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Cell {}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Cell {
        Cell::Count(n)
    }
}

impl From<Option<f64>> for Cell {
    fn from(n: Option<f64>) -> Cell {
        n.map_or(Cell::Empty, |n| Cell::Number(round2(n)))
    }
}

impl From<Option<bool>> for Cell {
    fn from(b: Option<bool>) -> Cell {
        b.map_or(Cell::Empty, Cell::Met)
    }
}

/// Whether a figure must stay at or above its target, or at or below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    AtLeast,
    AtMost,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Target {
    /// A percentage.
    pub percent: f64,
    pub comparison: Comparison,
    /// Where the target comes from.
    pub source: &'static str,
}

impl Target {
    fn met(&self, value: Option<f64>) -> Option<bool> {
        value.map(|v| match self.comparison {
            Comparison::AtLeast => round2(v) >= self.percent,
            Comparison::AtMost => round2(v) <= self.percent,
        })
    }
}

/// One figure by month: its rows under its columns, how it was computed and its target.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Table {
    /// Stable name (`legal_term_compliance`): `?table=` picks it for CSV.
    pub id: &'static str,
    /// How it was computed.
    pub method: &'static str,
    /// With a target, the column `met` says whether each month met it (empty with nothing to measure).
    pub target: Option<Target>,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Indicators {
    /// `YYYY-MM`.
    pub from: String,
    pub to: String,
    pub process: Option<String>,
    pub channel: Option<Channel>,
    /// The processes whose cases are counted; absent when every case is.
    pub processes: Option<Vec<String>>,
    pub tables: Vec<Table>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// What a caller may read: every case (quality director, admin), or the cases of the processes
/// they lead (a process leader). Quotes and contracts go with the commercial process.
struct Scope {
    processes: Option<Vec<String>>,
    commercial: bool,
}

async fn scope(pool: &PgPool, actor: &User, q: &Query, commercial_process: &str) -> Result<Scope> {
    let led = match actor.role {
        Role::QualityDirector | Role::Admin => None,
        Role::ProcessLeader => Some(
            sqlx::query_scalar!(
                "select code from processes where leader_id = $1 order by code",
                actor.id
            )
            .fetch_all(pool)
            .await?,
        ),
        _ => {
            return Err(Error::forbidden(
                "role_not_allowed",
                "indicators are for the quality director, admins and process leaders",
            ));
        }
    };
    let processes = match (led, &q.process) {
        (None, None) => None,
        (None, Some(p)) => Some(vec![p.clone()]),
        (Some(led), None) if led.is_empty() => {
            return Err(Error::forbidden(
                "not_process_leader",
                "you lead no process",
            ));
        }
        (Some(led), None) => Some(led),
        (Some(led), Some(p)) if led.contains(p) => Some(vec![p.clone()]),
        (Some(_), Some(p)) => {
            return Err(Error::forbidden(
                "not_process_leader",
                format!("you do not lead process {p}"),
            ));
        }
    };
    let commercial = q.channel.is_none()
        && processes
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == commercial_process));
    Ok(Scope {
        processes,
        commercial,
    })
}

/// What every figure reads from.
struct Ctx<'a> {
    pool: &'a PgPool,
    q: &'a Query,
    scope: Scope,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    today: NaiveDate,
    offset: f64,
}

/// Every figure of the months asked for.
pub async fn compute(
    pool: &PgPool,
    actor: &User,
    q: &Query,
    commercial_process: &str,
) -> Result<Indicators> {
    if let Some(p) = &q.process
        && crate::processes::find(pool, p).await?.is_none()
    {
        return Err(Error::invalid(
            "unknown_process",
            format!("there is no process {p}"),
        ));
    }
    let scope = scope(pool, actor, q, commercial_process).await?;
    let ctx = Ctx {
        pool,
        q,
        start: q.from.start(),
        end: q.to.next().start(),
        today: local_date(Utc::now()),
        offset: f64::from(COLOMBIA.local_minus_utc()),
        scope,
    };
    // Each figure reads on a connection of its own, so they are read side by side.
    // Surveys are about visits and campaigns, not about a door: no channel narrows them.
    let surveys = ctx.q.channel.is_none();
    let (cases, clocks, ratings, surveyed, responses, quoted, retained) = tokio::try_join!(
        case_tables(&ctx),
        clock_tables(&ctx),
        pqrs_satisfaction(&ctx),
        wanted(surveys, survey_satisfaction(&ctx)),
        wanted(surveys, survey_response_rate(&ctx)),
        wanted(ctx.scope.commercial, quotes(&ctx)),
        wanted(ctx.scope.commercial, contract_retention(&ctx)),
    )?;
    let mut tables = cases;
    tables.extend(clocks);
    tables.push(ratings);
    tables.extend(
        [surveyed, responses, quoted, retained]
            .into_iter()
            .flatten(),
    );
    Ok(Indicators {
        from: q.from.to_string(),
        to: q.to.to_string(),
        process: q.process.clone(),
        channel: q.channel,
        processes: ctx.scope.processes.clone(),
        tables,
    })
}

/// A table only when it is wanted (the future does nothing until awaited).
async fn wanted(wanted: bool, table: impl Future<Output = Result<Table>>) -> Result<Option<Table>> {
    if wanted {
        table.await.map(Some)
    } else {
        Ok(None)
    }
}

const BY_MONTH: &str = "PQRS received in the month (Colombian time)";

/// The counts by type, channel, process and status, the legal-term compliance and the decisions
/// in the customer's favour: one pass over the cases received in the months, grouped in SQL.
async fn case_tables(ctx: &Ctx<'_>) -> Result<Vec<Table>> {
    let rows = sqlx::query!(
        r#"select to_char(received_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  type as "case_type!: CaseType", channel as "channel!: Channel", process_code,
                  status as "status!: CaseStatus",
                  count(*) as "cases!",
                  count(*) filter (where status <> 'withdrawn'
                                     and (answered_at is not null or legal_due_date < $6)) as "legal_due!",
                  count(*) filter (where status <> 'withdrawn' and answered_at is not null
                                     and (answered_at at time zone make_interval(secs => $3))::date <= legal_due_date) as "legal_on_time!",
                  count(*) filter (where in_favor_of_customer is not null) as "decided!",
                  count(*) filter (where in_favor_of_customer) as "in_favour!"
           from cases
           where received_at >= $1 and received_at < $2
             and ($4::text[] is null or process_code = any($4))
             and ($5::text is null or channel = $5)
           group by 1, 2, 3, 4, 5"#,
        ctx.start,
        ctx.end,
        ctx.offset,
        ctx.scope.processes.as_deref(),
        ctx.q.channel.map(Channel::as_str),
        ctx.today,
    )
    .fetch_all(ctx.pool)
    .await?;
    let served: BTreeMap<String, i64> = sqlx::query!(
        r#"select to_char(received_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  count(distinct customer_id) as "customers!"
           from cases
           where received_at >= $1 and received_at < $2
             and ($4::text[] is null or process_code = any($4))
             and ($5::text is null or channel = $5)
           group by 1"#,
        ctx.start,
        ctx.end,
        ctx.offset,
        ctx.scope.processes.as_deref(),
        ctx.q.channel.map(Channel::as_str),
    )
    .fetch_all(ctx.pool)
    .await?
    .into_iter()
    .map(|r| (r.month, r.customers))
    .collect();

    let mut by_type: BTreeMap<(String, &str), i64> = BTreeMap::new();
    let mut by_channel: BTreeMap<(String, &str), i64> = BTreeMap::new();
    let mut by_process: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut by_status: BTreeMap<(String, &str), i64> = BTreeMap::new();
    // month → (legal due, on time, decided, in favour)
    let mut sums: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for r in rows {
        *by_type
            .entry((r.month.clone(), r.case_type.as_str()))
            .or_default() += r.cases;
        *by_channel
            .entry((r.month.clone(), r.channel.as_str()))
            .or_default() += r.cases;
        *by_process
            .entry((r.month.clone(), r.process_code.unwrap_or_default()))
            .or_default() += r.cases;
        *by_status
            .entry((r.month.clone(), r.status.as_str()))
            .or_default() += r.cases;
        let s = sums.entry(r.month).or_default();
        for (i, n) in [r.legal_due, r.legal_on_time, r.decided, r.in_favour]
            .into_iter()
            .enumerate()
        {
            s[i] += n;
        }
    }
    let count_table = |id, method, column, counts: Vec<(String, String, i64)>| Table {
        id,
        method,
        target: None,
        columns: vec!["month", column, "cases"],
        rows: counts
            .into_iter()
            .map(|(m, k, n)| vec![m.into(), k.into(), n.into()])
            .collect(),
    };
    let owned = |m: BTreeMap<(String, &str), i64>| -> Vec<(String, String, i64)> {
        m.into_iter()
            .map(|((m, k), n)| (m, k.to_owned(), n))
            .collect()
    };

    let legal_target = Target {
        percent: LEGAL_TERM_TARGET,
        comparison: Comparison::AtLeast,
        source: "Ley 1755 de 2015: every answer within its legal term",
    };
    let favour_target = Target {
        percent: IN_FAVOUR_TARGET,
        comparison: Comparison::AtMost,
        source: "caracterización of customer service: PQRSD in the user's favour ≤ 0.5 % of users",
    };
    let mut legal = Vec::new();
    let mut favour = Vec::new();
    for month in ctx.q.months().map(|m| m.to_string()) {
        let [due, on_time, decided, in_favour] = sums.get(&month).copied().unwrap_or_default();
        let legal_pct = percent(on_time, due);
        legal.push(vec![
            month.clone().into(),
            due.into(),
            on_time.into(),
            legal_pct.into(),
            legal_target.met(legal_pct).into(),
        ]);
        let customers = served.get(&month).copied().unwrap_or_default();
        let of_customers = percent(in_favour, customers);
        favour.push(vec![
            month.into(),
            customers.into(),
            decided.into(),
            in_favour.into(),
            of_customers.into(),
            favour_target.met(of_customers).into(),
            percent(in_favour, decided).into(),
        ]);
    }
    Ok(vec![
        count_table("pqrs_by_type", BY_MONTH, "type", owned(by_type)),
        count_table("pqrs_by_channel", BY_MONTH, "channel", owned(by_channel)),
        count_table(
            "pqrs_by_process",
            "PQRS received in the month (Colombian time), by the process they are assigned to (empty: not assigned yet)",
            "process",
            by_process
                .into_iter()
                .map(|((m, k), n)| (m, k, n))
                .collect(),
        ),
        count_table(
            "pqrs_by_status",
            "PQRS received in the month (Colombian time), by their status today",
            "status",
            owned(by_status),
        ),
        Table {
            id: "legal_term_compliance",
            method: "PQRS received in the month, not withdrawn, that were answered or whose legal due date (with its extension and the days waiting on the customer) has passed: the share answered on or before the legal due date (Colombian dates)",
            target: Some(legal_target),
            columns: vec!["month", "due", "on_time", "percent", "met"],
            rows: legal,
        },
        Table {
            id: "in_favour",
            method: "PQRS received in the month decided in the customer's favour, over the customers who filed PQRS in the month (the caracterización's measure, against the target) and, beside it, over the PQRS decided",
            target: Some(favour_target),
            columns: vec![
                "month",
                "customers_served",
                "decided",
                "in_favour",
                "percent_of_customers",
                "met",
                "percent_of_decided",
            ],
            rows: favour,
        },
    ])
}

/// What the clocks of the months' cases measured: the business seconds of each stopped clock by
/// month and clock, and by month, priority and clock how many ended (stopped, or ran past their
/// target) and how many of those met it.
#[derive(Default)]
struct Measured {
    times: BTreeMap<(String, &'static str), Vec<u64>>,
    sla: BTreeMap<(String, &'static str, &'static str), (i64, i64)>,
}

impl Measured {
    fn add(
        &mut self,
        month: &str,
        priority: Priority,
        clock: Clock,
        stopped_secs: Option<u64>,
        met: Option<bool>,
    ) {
        if let Some(secs) = stopped_secs {
            self.times
                .entry((month.to_owned(), clock.as_str()))
                .or_default()
                .push(secs);
        }
        if let Some(met) = met {
            let g = self
                .sla
                .entry((month.to_owned(), priority.as_str(), clock.as_str()))
                .or_default();
            g.0 += 1;
            g.1 += i64::from(met);
        }
    }
}

/// First-response and resolution times, and the SLA compliance by priority: each case's clocks as
/// the case view derives them from its stored events (working hours, holidays, pauses while
/// waiting on the customer). The code that writes a case's clock events keeps what they measure on
/// the case (`deadlines::settled`), so those figures are read from the cases; only cases never
/// measured are derived from their events here.
async fn clock_tables(ctx: &Ctx<'_>) -> Result<Vec<Table>> {
    let now = Utc::now();
    let mut measured = Measured::default();
    let rows = sqlx::query!(
        r#"select to_char(received_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  priority as "priority: Priority",
                  first_response_secs, first_response_met, first_response_due_at < $6 as first_response_late,
                  resolution_secs, resolution_met, resolution_due_at < $6 as resolution_late
           from cases
           where received_at >= $1 and received_at < $2 and status <> 'withdrawn'
             and clocks_measured_at is not null
             and ($4::text[] is null or process_code = any($4))
             and ($5::text is null or channel = $5)"#,
        ctx.start,
        ctx.end,
        ctx.offset,
        ctx.scope.processes.as_deref(),
        ctx.q.channel.map(Channel::as_str),
        now,
    )
    .fetch_all(ctx.pool)
    .await?;
    let secs = |s: Option<i64>| s.map(|s| u64::try_from(s).unwrap_or(0));
    // A clock not settled when it was last measured is breached once its due instant has passed.
    let met = |met: Option<bool>, late: Option<bool>| met.or(late.filter(|l| *l).map(|_| false));
    for r in rows {
        measured.add(
            &r.month,
            r.priority,
            Clock::FirstResponse,
            secs(r.first_response_secs),
            met(r.first_response_met, r.first_response_late),
        );
        measured.add(
            &r.month,
            r.priority,
            Clock::Resolution,
            secs(r.resolution_secs),
            met(r.resolution_met, r.resolution_late),
        );
    }
    derive_unmeasured(ctx, now, &mut measured).await?;
    let sla = sla_compliance(&measured.sla);
    Ok(vec![response_times(measured.times), sla])
}

/// The cases whose clock figures were never kept (written into the tables by other means):
/// derived from their events.
async fn derive_unmeasured(
    ctx: &Ctx<'_>,
    now: DateTime<Utc>,
    measured: &mut Measured,
) -> Result<()> {
    let terms = crate::terms::current(ctx.pool).await?;
    let rows = sqlx::query!(
        r#"select c.id, to_char(c.received_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  c.received_at, c.legal_term_days, c.priority as "priority: Priority",
                  e.clock, e.kind, e.at, e.extend_to
           from cases c
           join case_clock_events e on e.case_id = c.id
           where c.received_at >= $1 and c.received_at < $2 and c.status <> 'withdrawn'
             and c.clocks_measured_at is null
             and ($4::text[] is null or c.process_code = any($4))
             and ($5::text is null or c.channel = $5)
           order by c.id, e.id"#,
        ctx.start,
        ctx.end,
        ctx.offset,
        ctx.scope.processes.as_deref(),
        ctx.q.channel.map(Channel::as_str),
    )
    .fetch_all(ctx.pool)
    .await?;
    let mut current: Option<(Uuid, String, ClockInputs)> = None;
    let finish = |case: Option<(Uuid, String, ClockInputs)>, out: &mut Measured| {
        if let Some((_, month, inputs)) = case {
            let clocks = deadlines::evaluate(&terms.schedule, &inputs, now);
            for (clock, state) in [
                (Clock::FirstResponse, clocks.first_response),
                (Clock::Resolution, clocks.resolution),
            ] {
                let settled = deadlines::settled(&inputs, clock, &state);
                out.add(
                    &month,
                    inputs.priority,
                    clock,
                    settled.secs.map(|_| state.elapsed_secs),
                    settled.met,
                );
            }
        }
    };
    for r in rows {
        let (Some(clock), Some(kind)) = (Clock::parse(&r.clock), Kind::parse(&r.kind)) else {
            return Err(Error::Internal(format!(
                "stored clock event {} {}",
                r.clock, r.kind
            )));
        };
        if current.as_ref().is_none_or(|(id, ..)| *id != r.id) {
            finish(current.take(), measured);
            current = Some((
                r.id,
                r.month,
                ClockInputs {
                    filed_at: r.received_at,
                    legal_term_days: u32::try_from(r.legal_term_days).unwrap_or(0),
                    priority: r.priority,
                    events: Vec::new(),
                },
            ));
        }
        if let Some((_, _, inputs)) = current.as_mut() {
            inputs.events.push(StoredEvent {
                clock,
                kind,
                at: r.at,
                extend_to: r.extend_to,
            });
        }
    }
    finish(current.take(), measured);
    Ok(())
}

fn hours(secs: u64) -> f64 {
    secs as f64 / 3600.0
}

/// Mean, median (the mean of the middle two of an even count) and p90 (nearest rank: the
/// ⌈0.9·n⌉-th smallest), in hours.
fn summary(mut secs: Vec<u64>) -> (Option<f64>, Option<f64>, Option<f64>) {
    if secs.is_empty() {
        return (None, None, None);
    }
    secs.sort_unstable();
    let n = secs.len();
    let mean = secs.iter().map(|s| *s as f64).sum::<f64>() / n as f64 / 3600.0;
    let median = if n % 2 == 1 {
        hours(secs[n / 2])
    } else {
        (hours(secs[n / 2 - 1]) + hours(secs[n / 2])) / 2.0
    };
    let rank = (n * 9).div_ceil(10).max(1);
    (Some(mean), Some(median), Some(hours(secs[rank - 1])))
}

fn response_times(groups: BTreeMap<(String, &'static str), Vec<u64>>) -> Table {
    Table {
        id: "response_times",
        method: "PQRS received in the month, not withdrawn, whose clock has stopped (first response: the first word to the customer; resolution: the answer): business hours from receipt to the stop, counting only working hours on business days and leaving out the time waiting on the customer; median of an even count is the mean of the middle two, p90 the nearest-rank 90th percentile",
        target: None,
        columns: vec![
            "month",
            "clock",
            "cases",
            "mean_hours",
            "median_hours",
            "p90_hours",
        ],
        rows: groups
            .into_iter()
            .map(|((month, clock), secs)| {
                let n = secs.len() as i64;
                let (mean, median, p90) = summary(secs);
                vec![
                    month.into(),
                    clock.into(),
                    n.into(),
                    mean.into(),
                    median.into(),
                    p90.into(),
                ]
            })
            .collect(),
    }
}

fn sla_compliance(groups: &BTreeMap<(String, &'static str, &'static str), (i64, i64)>) -> Table {
    Table {
        id: "sla_compliance",
        method: "PQRS received in the month, not withdrawn, by priority and clock (SGC-SAC-001 §5: critical 1 h / 4 h, high 2 h / 8 h, medium 4 h / 24 h, low 8 h / 48 h of business time): of the clocks that stopped or ran past their target, the share stopped in time",
        target: None,
        columns: vec!["month", "priority", "clock", "ended", "met", "percent"],
        rows: groups
            .iter()
            .map(|((month, priority, clock), &(ended, met))| {
                vec![
                    month.as_str().into(),
                    (*priority).into(),
                    (*clock).into(),
                    ended.into(),
                    met.into(),
                    percent(met, ended).into(),
                ]
            })
            .collect(),
    }
}

/// Satisfaction with PQRS answers: ratings given in the month.
async fn pqrs_satisfaction(ctx: &Ctx<'_>) -> Result<Table> {
    let counts: BTreeMap<String, (i64, i64)> = sqlx::query!(
        r#"select to_char(rated_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  count(*) as "answers!", count(*) filter (where rating_score >= 4) as "satisfied!"
           from cases
           where rated_at >= $1 and rated_at < $2 and rating_score is not null
             and ($4::text[] is null or process_code = any($4))
             and ($5::text is null or channel = $5)
           group by 1"#,
        ctx.start,
        ctx.end,
        ctx.offset,
        ctx.scope.processes.as_deref(),
        ctx.q.channel.map(Channel::as_str),
    )
    .fetch_all(ctx.pool)
    .await?
    .into_iter()
    .map(|r| (r.month, (r.answers, r.satisfied)))
    .collect();
    let target = Target {
        percent: SATISFACTION_TARGET,
        comparison: Comparison::AtLeast,
        source: "caracterización of customer service: % customer satisfaction 80 %",
    };
    let rows = ctx
        .q
        .months()
        .map(|m| {
            let (answers, satisfied) = counts.get(&m.to_string()).copied().unwrap_or_default();
            let pct = percent(satisfied, answers);
            vec![
                m.to_string().into(),
                answers.into(),
                satisfied.into(),
                pct.into(),
                target.met(pct).into(),
            ]
        })
        .collect();
    Ok(Table {
        id: "pqrs_satisfaction",
        method: "ratings of PQRS answers given in the month (Colombian time): the share scored 4 or 5 of 5",
        target: Some(target),
        columns: vec!["month", "answers", "satisfied", "percent", "met"],
        rows,
    })
}

/// Quotes sent in the month, and those decided in the month by outcome.
/// One row per month and survey template (each template apart, with zeros where it has none):
/// the month, the template, then the cells `row` makes of the pair of counts.
async fn template_rows(
    ctx: &Ctx<'_>,
    counts: &BTreeMap<(String, String), (i64, i64)>,
    row: impl Fn(i64, i64) -> Vec<Cell>,
) -> Result<Vec<Vec<Cell>>> {
    let templates = sqlx::query_scalar!("select code from survey_templates order by code")
        .fetch_all(ctx.pool)
        .await?;
    let mut rows = Vec::new();
    for m in ctx.q.months() {
        let month = m.to_string();
        for t in &templates {
            let (a, b) = counts
                .get(&(month.clone(), t.clone()))
                .copied()
                .unwrap_or_default();
            let mut cells = vec![month.clone().into(), t.clone().into()];
            cells.extend(row(a, b));
            rows.push(cells);
        }
    }
    Ok(rows)
}

async fn survey_satisfaction(ctx: &Ctx<'_>) -> Result<Table> {
    let counts: BTreeMap<(String, String), (i64, i64)> = sqlx::query!(
        r#"select to_char(i.answered_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  v.template_code as "template!",
                  sum(a.answers)::int8 as "answers!", sum(a.satisfied)::int8 as "satisfied!"
           from survey_invitations i
           join survey_template_versions v on v.id = i.version_id
           left join work_orders w on w.id = i.work_order_id
           -- Each invitation's own answers, through its key: never a pass over every answer.
           cross join lateral (
               select count(*) as answers, count(*) filter (where score >= 4) as satisfied
               from survey_answers where invitation_id = i.id and score is not null
           ) a
           where i.answered_at >= $1 and i.answered_at < $2
             and ($4::text[] is null or w.process_code = any($4))
           group by 1, 2"#,
        ctx.start,
        ctx.end,
        ctx.offset,
        ctx.scope.processes.as_deref(),
    )
    .fetch_all(ctx.pool)
    .await?
    .into_iter()
    .map(|r| ((r.month, r.template), (r.answers, r.satisfied)))
    .collect();
    let target = Target {
        percent: SATISFACTION_TARGET,
        comparison: Comparison::AtLeast,
        source: "caracterización of customer service: % customer satisfaction 80 %",
    };
    let rows = template_rows(ctx, &counts, |answers, satisfied| {
        let pct = percent(satisfied, answers);
        vec![
            answers.into(),
            satisfied.into(),
            pct.into(),
            target.met(pct).into(),
        ]
    })
    .await?;
    Ok(Table {
        id: "survey_satisfaction",
        method: "answers to the 1–5 questions of the surveys answered in the month (Colombian time), \
                 each template apart: the share scored 4 or 5; a process narrows it to surveys of \
                 its visits",
        target: Some(target),
        columns: vec![
            "month",
            "template",
            "answers",
            "satisfied",
            "percent",
            "met",
        ],
        rows,
    })
}

async fn survey_response_rate(ctx: &Ctx<'_>) -> Result<Table> {
    let counts: BTreeMap<(String, String), (i64, i64)> = sqlx::query!(
        r#"select to_char(i.sent_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  v.template_code as "template!",
                  count(*) as "sent!", count(i.answered_at) as "answered!"
           from survey_invitations i
           join survey_template_versions v on v.id = i.version_id
           left join work_orders w on w.id = i.work_order_id
           where i.sent_at >= $1 and i.sent_at < $2
             and ($4::text[] is null or w.process_code = any($4))
           group by 1, 2"#,
        ctx.start,
        ctx.end,
        ctx.offset,
        ctx.scope.processes.as_deref(),
    )
    .fetch_all(ctx.pool)
    .await?
    .into_iter()
    .map(|r| ((r.month, r.template), (r.sent, r.answered)))
    .collect();
    let rows = template_rows(ctx, &counts, |sent, answered| {
        vec![sent.into(), answered.into(), percent(answered, sent).into()]
    })
    .await?;
    Ok(Table {
        id: "survey_response_rate",
        method: "survey invitations sent in the month (Colombian time), each template apart, and \
                 how many of them were answered, whenever",
        target: None,
        columns: vec!["month", "template", "sent", "answered", "percent"],
        rows,
    })
}

async fn quotes(ctx: &Ctx<'_>) -> Result<Table> {
    let sent: BTreeMap<String, i64> = sqlx::query!(
        r#"select to_char(sent_on, 'YYYY-MM') as "month!", count(*) as "n!"
           from quotes where sent_on >= $1 and sent_on < $2 group by 1"#,
        ctx.q.from.first_day(),
        ctx.q.to.next().first_day(),
    )
    .fetch_all(ctx.pool)
    .await?
    .into_iter()
    .map(|r| (r.month, r.n))
    .collect();
    let decided: BTreeMap<String, [i64; 3]> = sqlx::query!(
        r#"select to_char(outcome_at at time zone make_interval(secs => $3), 'YYYY-MM') as "month!",
                  count(*) filter (where outcome = 'accepted') as "accepted!",
                  count(*) filter (where outcome = 'rejected') as "rejected!",
                  count(*) filter (where outcome = 'expired') as "expired!"
           from quotes where outcome_at >= $1 and outcome_at < $2 group by 1"#,
        ctx.start,
        ctx.end,
        ctx.offset,
    )
    .fetch_all(ctx.pool)
    .await?
    .into_iter()
    .map(|r| (r.month, [r.accepted, r.rejected, r.expired]))
    .collect();
    let rows = ctx
        .q
        .months()
        .map(|m| {
            let m = m.to_string();
            let s = sent.get(&m).copied().unwrap_or_default();
            let [a, r, e] = decided.get(&m).copied().unwrap_or_default();
            vec![m.into(), s.into(), a.into(), r.into(), e.into()]
        })
        .collect();
    Ok(Table {
        id: "quotes",
        method: "quotes sent in the month (by their sent date), and quotes decided in the month (Colombian time) by outcome; every process and channel",
        target: None,
        columns: vec!["month", "sent", "accepted", "rejected", "expired"],
        rows,
    })
}

/// Contract retention (PRO-008 §5.5): of the contracts ending in the month, those renewed.
async fn contract_retention(ctx: &Ctx<'_>) -> Result<Table> {
    let counts: BTreeMap<String, [i64; 3]> = sqlx::query!(
        r#"select to_char(ends_on, 'YYYY-MM') as "month!", count(*) as "due!",
                  count(*) filter (where status = 'renewed') as "renewed!",
                  count(*) filter (where status = 'not_renewed') as "not_renewed!"
           from contracts where ends_on >= $1 and ends_on < $2 group by 1"#,
        ctx.q.from.first_day(),
        ctx.q.to.next().first_day(),
    )
    .fetch_all(ctx.pool)
    .await?
    .into_iter()
    .map(|r| (r.month, [r.due, r.renewed, r.not_renewed]))
    .collect();
    let rows = ctx
        .q
        .months()
        .map(|m| {
            let m = m.to_string();
            let [due, renewed, lost] = counts.get(&m).copied().unwrap_or_default();
            vec![
                m.into(),
                due.into(),
                renewed.into(),
                lost.into(),
                (due - renewed - lost).into(),
                percent(renewed, due).into(),
            ]
        })
        .collect();
    Ok(Table {
        id: "contract_retention",
        method: "contracts ending in the month, which are due for renewal: the share renewed (those not decided yet count as not renewed)",
        target: None,
        columns: vec![
            "month",
            "due_for_renewal",
            "renewed",
            "not_renewed",
            "undecided",
            "percent",
        ],
        rows,
    })
}

/// The months' figures as CSV for a spreadsheet in a Spanish locale: UTF-8 with a byte-order
/// mark, `;` between fields, decimal comma, fields quoted when they hold `;`, `"`, a line break
/// or surrounding spaces. With several tables, each comes after a line naming it and how it was
/// computed, and a blank line separates them.
pub fn csv(tables: &[&Table]) -> String {
    let mut out = String::from("\u{feff}");
    let one = tables.len() == 1;
    for (i, t) in tables.iter().enumerate() {
        if !one {
            if i > 0 {
                out.push_str("\r\n");
            }
            line(
                &mut out,
                [t.id.to_owned(), t.method.to_owned()]
                    .iter()
                    .map(String::as_str),
            );
        }
        line(&mut out, t.columns.iter().copied());
        for row in &t.rows {
            let cells: Vec<String> = row.iter().map(cell_text).collect();
            line(&mut out, cells.iter().map(String::as_str));
        }
    }
    out
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Text(s) => s.clone(),
        Cell::Count(n) => n.to_string(),
        Cell::Number(x) => format!("{x}").replace('.', ","),
        Cell::Met(true) => "sí".into(),
        Cell::Met(false) => "no".into(),
        Cell::Empty => String::new(),
    }
}

fn line<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(';');
        }
        let quote = f.contains([';', '"', '\n', '\r']) || f.trim() != f;
        if quote {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        let h = |x: u64| x * 3600;
        assert_eq!(summary(vec![h(1), h(3)]), (Some(2.0), Some(2.0), Some(3.0)));
        let ten: Vec<u64> = (1..=10).map(h).collect();
        assert_eq!(summary(ten), (Some(5.5), Some(5.5), Some(9.0)));
        assert_eq!(summary(vec![]), (None, None, None));
    }

    #[test]
    fn months() {
        let m = |s| Month::parse(s).expect(s);
        assert_eq!(m("2026-01").span(m("2028-12")), 36);
        assert!(Month::parse("2026-13").is_none() && Month::parse("26-01").is_none());
        assert!(Month::parse("+026-01").is_none() && Month::parse("2026-1").is_none());
        assert_eq!(m("2026-12").next().to_string(), "2027-01");
    }

    #[test]
    fn csv_for_a_spanish_spreadsheet() {
        let t = Table {
            id: "x",
            method: "m",
            target: None,
            columns: vec!["month", "name", "percent"],
            rows: vec![vec!["2026-01".into(), "a; \"b\"".into(), Some(12.5).into()]],
        };
        assert_eq!(
            csv(&[&t]),
            "\u{feff}month;name;percent\r\n2026-01;\"a; \"\"b\"\"\";12,5\r\n"
        );
    }
}
