//! The two clocks of a case, derived from its stored clock events: the legal term in business days
//! (Ley 1755 de 2015) and the operational SLA in business hours (SGC-SAC-001 §5).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::calendar::BusinessCalendar;
use crate::calendar::local_date;
use crate::clocks::{self, ClockEvent, ClockState, ClockStatus};
use crate::error::{Error, Result};
use crate::terms::{self, Schedule};
use crate::types::Priority;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    Legal,
    FirstResponse,
    Resolution,
}

impl Clock {
    pub const ALL: [Clock; 3] = [Clock::Legal, Clock::FirstResponse, Clock::Resolution];

    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Legal => "legal",
            Clock::FirstResponse => "first_response",
            Clock::Resolution => "resolution",
        }
    }

    pub fn parse(s: &str) -> Option<Clock> {
        Clock::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Pause,
    Resume,
    Extend,
    Stop,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Start,
        Kind::Pause,
        Kind::Resume,
        Kind::Extend,
        Kind::Stop,
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Pause => "pause",
            Kind::Resume => "resume",
            Kind::Extend => "extend",
            Kind::Stop => "stop",
        }
    }
}

/// One stored clock event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub clock: Clock,
    pub kind: Kind,
    pub at: DateTime<Utc>,
    pub extend_to: Option<NaiveDate>,
}

/// The legal term: a date, counted in business days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegalClock {
    pub status: ClockStatus,
    pub due_date: NaiveDate,
    /// Business days left until the due date (0 on the due date); negative once it has passed.
    pub business_days_remaining: i64,
    /// Whether the one extension (prórroga) was used.
    pub extended: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseClocks {
    pub legal: LegalClock,
    pub first_response: ClockState,
    pub resolution: ClockState,
}

/// What a case's clocks are computed from.
#[derive(Debug, Clone)]
pub struct ClockInputs {
    pub filed_at: DateTime<Utc>,
    pub legal_term_days: u32,
    pub priority: Priority,
    pub events: Vec<StoredEvent>,
}

/// Legal term per Ley 1755: counted from the business day after filing; a request for missing
/// information suspends it (art. 17) and the days spent waiting are added back on the reply; the
/// one extension (art. 14 parágrafo) sets a new date.
pub fn legal_clock(cal: &BusinessCalendar, inputs: &ClockInputs, now: DateTime<Utc>) -> LegalClock {
    let mut due = cal.add_business_days(local_date(inputs.filed_at), inputs.legal_term_days);
    let (mut paused_since, mut stopped, mut extended) = (None, None, false);
    for e in inputs.events.iter().filter(|e| e.clock == Clock::Legal) {
        let day = local_date(e.at);
        match e.kind {
            Kind::Pause if paused_since.is_none() && stopped.is_none() => paused_since = Some(day),
            Kind::Resume => {
                if let Some(since) = paused_since.take() {
                    due = cal.add_business_days(due, cal.business_days_between(since, day));
                }
            }
            Kind::Extend => {
                if let Some(to) = e.extend_to {
                    due = to;
                    extended = true;
                }
            }
            Kind::Stop if stopped.is_none() => stopped = Some(day),
            Kind::Start | Kind::Pause | Kind::Stop => {}
        }
    }
    let today = local_date(now);
    let status = match stopped {
        Some(day) if day <= due => ClockStatus::Met,
        Some(_) => ClockStatus::Breached,
        None if today > due => ClockStatus::Breached,
        None if paused_since.is_some() => ClockStatus::Paused,
        None => ClockStatus::Running,
    };
    let business_days_remaining = if today <= due {
        i64::from(cal.business_days_between(today, due))
    } else {
        -i64::from(cal.business_days_between(due, today))
    };
    LegalClock {
        status,
        due_date: due,
        business_days_remaining,
        extended,
    }
}

fn operational(inputs: &ClockInputs, clock: Clock) -> Vec<ClockEvent> {
    inputs
        .events
        .iter()
        .filter(|e| e.clock == clock)
        .filter_map(|e| match e.kind {
            Kind::Start => Some(ClockEvent::Start { at: e.at }),
            Kind::Pause => Some(ClockEvent::Pause { at: e.at }),
            Kind::Resume => Some(ClockEvent::Resume { at: e.at }),
            Kind::Stop => Some(ClockEvent::Stop { at: e.at }),
            Kind::Extend => None,
        })
        .collect()
}

pub fn evaluate(schedule: &Schedule, inputs: &ClockInputs, now: DateTime<Utc>) -> CaseClocks {
    let (first, resolution) = clocks::sla_targets(inputs.priority);
    let (hours, cal) = (&schedule.hours, &schedule.calendar);
    CaseClocks {
        legal: legal_clock(cal, inputs, now),
        first_response: clocks::evaluate(
            hours,
            cal,
            first,
            &operational(inputs, Clock::FirstResponse),
            now,
        ),
        resolution: clocks::evaluate(
            hours,
            cal,
            resolution,
            &operational(inputs, Clock::Resolution),
            now,
        ),
    }
}

/// The instant a running, unstopped clock is due: what the queue orders by and the scheduler
/// looks for. None while paused or once stopped.
pub fn pending_due(
    inputs: &ClockInputs,
    clock: Clock,
    state: &ClockState,
) -> Option<DateTime<Utc>> {
    let stopped = inputs
        .events
        .iter()
        .any(|e| e.clock == clock && e.kind == Kind::Stop);
    if stopped { None } else { state.due_at }
}

/// When each warning and the breach of each running clock fall: (clock, percent, instant).
pub fn alert_instants(
    schedule: &Schedule,
    inputs: &ClockInputs,
    clocks: &CaseClocks,
) -> Vec<(Clock, i16, DateTime<Utc>)> {
    let mut percents = schedule.warning_percents.clone();
    percents.push(100);
    let mut out = Vec::new();
    let (first, resolution) = clocks::sla_targets(inputs.priority);
    for (clock, target, state) in [
        (Clock::FirstResponse, first, &clocks.first_response),
        (Clock::Resolution, resolution, &clocks.resolution),
    ] {
        if pending_due(inputs, clock, state).is_none() {
            continue;
        }
        let events = operational(inputs, clock);
        for &p in &percents {
            let fraction = f64::from(p) / 100.0;
            if let Some(at) = clocks::instant_of_fraction(
                &schedule.hours,
                &schedule.calendar,
                target,
                &events,
                fraction,
            ) {
                out.push((clock, p, at));
            }
        }
    }
    let legal = &clocks.legal;
    let legal_stopped = inputs
        .events
        .iter()
        .any(|e| e.clock == Clock::Legal && e.kind == Kind::Stop);
    if !legal_stopped && legal.status != ClockStatus::Paused {
        let cal = &schedule.calendar;
        let filed = local_date(inputs.filed_at);
        let days = cal.business_days_between(filed, legal.due_date);
        let offset = schedule.hours.offset;
        for &p in &percents {
            // Warnings at the opening of the business day that reaches the percentage; the breach
            // the moment the due date is over.
            let (day, time) = if p >= 100 {
                (
                    legal.due_date.succ_opt().unwrap_or(legal.due_date),
                    chrono::NaiveTime::MIN,
                )
            } else {
                let n = (u32::try_from(p).unwrap_or(0) * days).div_ceil(100);
                (cal.add_business_days(filed, n), schedule.hours.start)
            };
            if let Some(at) = day.and_time(time).and_local_timezone(offset).single() {
                out.push((Clock::Legal, p, at.with_timezone(&Utc)));
            }
        }
    }
    out
}

/// Replaces a case's pending alerts with those of its clocks now; alerts that fired stay fired.
pub(crate) async fn rewrite_alerts(
    conn: &mut PgConnection,
    case_id: Uuid,
    alerts: &[(Clock, i16, DateTime<Utc>)],
) -> Result<()> {
    sqlx::query!(
        "delete from deadline_alerts where case_id = $1 and fired_at is null",
        case_id
    )
    .execute(&mut *conn)
    .await?;
    let clocks: Vec<String> = alerts.iter().map(|a| a.0.as_str().to_owned()).collect();
    let percents: Vec<i16> = alerts.iter().map(|a| a.1).collect();
    let instants: Vec<DateTime<Utc>> = alerts.iter().map(|a| a.2).collect();
    sqlx::query!(
        "insert into deadline_alerts (case_id, clock, percent, due_at)
         select $1, x.clock, x.percent, x.due_at from unnest($2::text[], $3::int2[], $4::timestamptz[]) as x (clock, percent, due_at)
         on conflict (case_id, clock, percent) do nothing",
        case_id,
        &clocks,
        &percents,
        &instants,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn inputs(conn: &mut PgConnection, case_id: Uuid) -> Result<ClockInputs> {
    let case = sqlx::query!(
        r#"select received_at, legal_term_days, priority as "priority: Priority" from cases where id = $1"#,
        case_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::not_found("case_not_found", "case"))?;
    let rows = sqlx::query!(
        "select clock, kind, at, extend_to from case_clock_events where case_id = $1 order by id",
        case_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let events = rows
        .into_iter()
        .map(|r| {
            let unknown =
                |what: &str, v: &str| Error::Internal(format!("stored clock {what} {v:?}"));
            Ok(StoredEvent {
                clock: Clock::parse(&r.clock).ok_or_else(|| unknown("name", &r.clock))?,
                kind: Kind::parse(&r.kind).ok_or_else(|| unknown("event", &r.kind))?,
                at: r.at,
                extend_to: r.extend_to,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ClockInputs {
        filed_at: case.received_at,
        legal_term_days: u32::try_from(case.legal_term_days).unwrap_or(0),
        priority: case.priority,
        events,
    })
}

/// A case's clocks as of now.
pub async fn case_clocks(pool: &PgPool, case_id: Uuid) -> Result<CaseClocks> {
    let terms = terms::current(pool).await?;
    let inputs = inputs(&mut *pool.acquire().await?, case_id).await?;
    Ok(evaluate(&terms.schedule, &inputs, Utc::now()))
}

pub(crate) async fn record(
    conn: &mut PgConnection,
    case_id: Uuid,
    clock: Clock,
    kind: Kind,
    actor: Option<Uuid>,
    extend_to: Option<NaiveDate>,
) -> Result<()> {
    sqlx::query!(
        "insert into case_clock_events (case_id, clock, kind, at, extend_to, actor_id)
         values ($1, $2, $3, now(), $4, $5)",
        case_id,
        clock.as_str(),
        kind.as_str(),
        extend_to,
        actor,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Rewrites the cached due columns of a case from its clock events; called in the transaction that
/// wrote the events, so the cache never disagrees with them after a commit.
pub(crate) async fn refresh(
    conn: &mut PgConnection,
    schedule: &Schedule,
    case_id: Uuid,
) -> Result<CaseClocks> {
    let inputs = inputs(&mut *conn, case_id).await?;
    // The transaction's own time, so events written in it count as already happened.
    let now: DateTime<Utc> = sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(&mut *conn)
        .await?;
    let clocks = evaluate(schedule, &inputs, now);
    rewrite_alerts(
        &mut *conn,
        case_id,
        &alert_instants(schedule, &inputs, &clocks),
    )
    .await?;
    let first = settled(&inputs, Clock::FirstResponse, &clocks.first_response);
    let resolution = settled(&inputs, Clock::Resolution, &clocks.resolution);
    sqlx::query!(
        "update cases set legal_due_date = $2, first_response_due_at = $3, resolution_due_at = $4,
                          first_response_secs = $5, first_response_met = $6,
                          resolution_secs = $7, resolution_met = $8, clocks_measured_at = $9
         where id = $1",
        case_id,
        clocks.legal.due_date,
        pending_due(&inputs, Clock::FirstResponse, &clocks.first_response),
        pending_due(&inputs, Clock::Resolution, &clocks.resolution),
        first.secs,
        first.met,
        resolution.secs,
        resolution.met,
        now,
    )
    .execute(conn)
    .await?;
    Ok(clocks)
}

/// What the indicators keep of an operational clock on its case: the business seconds once it
/// stopped, and whether it met its target once that is settled (stopped, or breached: a breach is
/// final). A clock still running in time is breached once `now` passes its pending due instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub secs: Option<i64>,
    pub met: Option<bool>,
}

pub fn settled(inputs: &ClockInputs, clock: Clock, state: &ClockState) -> Settled {
    let stopped = inputs
        .events
        .iter()
        .any(|e| e.clock == clock && e.kind == Kind::Stop);
    Settled {
        secs: stopped.then(|| i64::try_from(state.elapsed_secs).unwrap_or(i64::MAX)),
        met: match state.status {
            ClockStatus::Met => Some(true),
            ClockStatus::Breached => Some(false),
            _ => None,
        },
    }
}

/// Measures up to `batch` of the cases filed before their clock figures were kept (the queue the
/// migration `indicator_figures` filled): their figures from their events, as [`refresh`] writes
/// them. Returns how many were measured; each process may run it, a case is measured once.
pub async fn measure_queued(pool: &PgPool, batch: i64) -> Result<usize> {
    let terms = terms::current(pool).await?;
    let mut tx = pool.begin().await?;
    // Locked like a move locks its case, so a move's own refresh is never overwritten.
    let ids = sqlx::query_scalar!(
        "with q as (
             delete from clock_measure_queue
             where case_id in (select case_id from clock_measure_queue limit $1 for update skip locked)
             returning case_id
         )
         select c.id from cases c join q on q.case_id = c.id order by c.id for update of c",
        batch
    )
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let now: DateTime<Utc> = sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(&mut *tx)
        .await?;
    let cases = inputs_of(&mut tx, &ids).await?;
    let ids: Vec<Uuid> = cases.iter().map(|(id, _)| *id).collect();
    let mut figures: [Vec<Option<i64>>; 2] = Default::default();
    let mut met: [Vec<Option<bool>>; 2] = Default::default();
    for (_, inputs) in &cases {
        let clocks = evaluate(&terms.schedule, inputs, now);
        for (i, (clock, state)) in [
            (Clock::FirstResponse, &clocks.first_response),
            (Clock::Resolution, &clocks.resolution),
        ]
        .into_iter()
        .enumerate()
        {
            let s = settled(inputs, clock, state);
            figures[i].push(s.secs);
            met[i].push(s.met);
        }
    }
    let [first_secs, resolution_secs] = figures;
    let [first_met, resolution_met] = met;
    sqlx::query!(
        "update cases c set first_response_secs = x.first_secs, first_response_met = x.first_met,
                            resolution_secs = x.resolution_secs, resolution_met = x.resolution_met,
                            clocks_measured_at = $6
         from unnest($1::uuid[], $2::int8[], $3::bool[], $4::int8[], $5::bool[])
              as x (id, first_secs, first_met, resolution_secs, resolution_met)
         where c.id = x.id",
        &ids,
        &first_secs as &[Option<i64>],
        &first_met as &[Option<bool>],
        &resolution_secs as &[Option<i64>],
        &resolution_met as &[Option<bool>],
        now,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids.len())
}

/// The clock inputs of several cases, by id.
async fn inputs_of(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<(Uuid, ClockInputs)>> {
    let rows = sqlx::query!(
        r#"select c.id, c.received_at, c.legal_term_days, c.priority as "priority: Priority",
                  e.clock as "clock?", e.kind as "kind?", e.at as "at?", e.extend_to
           from cases c
           left join case_clock_events e on e.case_id = c.id
           where c.id = any($1)
           order by c.id, e.id"#,
        ids
    )
    .fetch_all(conn)
    .await?;
    let mut out: Vec<(Uuid, ClockInputs)> = Vec::with_capacity(ids.len());
    for r in rows {
        if out.last().is_none_or(|(id, _)| *id != r.id) {
            out.push((
                r.id,
                ClockInputs {
                    filed_at: r.received_at,
                    legal_term_days: u32::try_from(r.legal_term_days).unwrap_or(0),
                    priority: r.priority,
                    events: Vec::new(),
                },
            ));
        }
        let (Some(clock), Some(kind), Some(at)) = (r.clock, r.kind, r.at) else {
            continue;
        };
        let unknown = |what: &str, v: &str| Error::Internal(format!("stored clock {what} {v:?}"));
        let event = StoredEvent {
            clock: Clock::parse(&clock).ok_or_else(|| unknown("name", &clock))?,
            kind: Kind::parse(&kind).ok_or_else(|| unknown("event", &kind))?,
            at,
            extend_to: r.extend_to,
        };
        if let Some((_, inputs)) = out.last_mut() {
            inputs.events.push(event);
        }
    }
    Ok(out)
}

/// Whether a clock has been stopped already.
pub(crate) async fn is_stopped(
    conn: &mut PgConnection,
    case_id: Uuid,
    clock: Clock,
) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from case_clock_events where case_id = $1 and clock = $2 and kind = 'stop') as "stopped!""#,
        case_id,
        clock.as_str()
    )
    .fetch_one(conn)
    .await?)
}
