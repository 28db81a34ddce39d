//! Indicator figures. Creates (and drops first) a scratch database named
//! `atiende_bench_indicators` on the given server, fills it set-based (in SQL) with 24 months of
//! cases with their clock events, ratings, visits, survey invitations and answers, quotes and
//! contracts, keeps the clock figures of every case as the scheduler does for cases filed before
//! the figures were kept, then starts the server in this process on port 0 and times
//! `GET /api/v1/staff/indicators` over HTTP as the dashboard asks for it:
//! - one month (the last complete one) and the whole 24 months;
//! - for the quality director (every case) and for the leader of one process;
//! - cold: the first call after the server starts with a new connection pool (new PostgreSQL
//!   backends, nothing prepared; the data was just written, so it is in the operating system's
//!   cache), then warm: p50 / p95 / p99 over repeated calls.
//!
//! ```sh
//! cargo run --release -p atiende-tests --bin bench-indicators -- \
//!     --server-url postgres://postgres@127.0.0.1:5432 --cases 1000000 --surveys 200000
//! ```

use std::time::{Duration, Instant};

use atiende_core::types::Role;
use atiende_server::Settings;
use chrono::{Datelike, Months, NaiveDate};
use clap::Parser;
use reqwest::StatusCode;

#[derive(Parser)]
struct Args {
    /// A PostgreSQL server where the role may create databases (no database name).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server_url: String,
    /// Cases over the months.
    #[arg(long, default_value_t = 1_000_000)]
    cases: i64,
    /// Surveys answered (each answers every question of its template); about 55 % of the
    /// invitations, 70 % of them after a visit, the rest in the June and December campaigns.
    #[arg(long, default_value_t = 200_000)]
    surveys: i64,
    /// Customers the cases, visits and surveys are spread over.
    #[arg(long, default_value_t = 150_000)]
    customers: i32,
    /// Months of data, ending with the last complete month.
    #[arg(long, default_value_t = 24)]
    months: u32,
    /// Warm calls of one month, per caller.
    #[arg(long, default_value_t = 100)]
    month_calls: usize,
    /// Warm calls of the whole range, per caller.
    #[arg(long, default_value_t = 10)]
    range_calls: usize,
    /// Keep the database afterwards (to profile its queries with EXPLAIN ANALYZE).
    #[arg(long)]
    keep: bool,
}

/// The values the generating statements take, in the order each names them.
enum Bind {
    Cases,
    Surveys,
    Customers,
    First,
    Span,
}

const DB: &str = "atiende_bench_indicators";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The value at rank ⌈q·n⌉ of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A deterministic number in [0, 1) for row `g` and purpose `k`, so every run makes the same data.
const RANDOM: &str =
    "create function bench_r(g bigint, k int) returns float8 language sql immutable parallel safe
    as $$ select (hashint8extended(g, k) & 9007199254740991)::float8 / 9007199254740992 $$";

/// Every case's life, decided up front: $1 cases, $2 first day, $3 months, $4 customers. Types,
/// channels, processes and priorities in realistic shares; receipt two in three in office hours;
/// a first response within hours; one in ten asked for information (resolution and legal clocks
/// paused until the reply, or withdrawn after a month without one); one in thirty-three with the
/// legal term extended; answered within days to weeks; about half rated. What has not happened
/// by now is left undone, so the last weeks hold open cases.
const LIVES: &str = "create unlogged table bench_cases as
with base as (
    select g,
           ($2 + floor(bench_r(g, 1) * (($2 + make_interval(months => $3))::date - $2))::int)::timestamp
             + case when bench_r(g, 2) < 0.67 then interval '8 hours' + bench_r(g, 3) * interval '9 hours'
                    else bench_r(g, 3) * interval '24 hours' end as local_received,
           bench_r(g, 4) as rt, bench_r(g, 5) as rc, bench_r(g, 6) as rp, bench_r(g, 7) as rprio
    from generate_series(1, $1) g
), typed as (
    select g, local_received at time zone '-05:00'::interval as received_at,
           case when rt < 0.35 then 'peticion' when rt < 0.60 then 'queja' when rt < 0.80 then 'reclamo'
                when rt < 0.88 then 'sugerencia' when rt < 0.90 then 'denuncia'
                when rt < 0.97 then 'solicitud_informacion' else 'consulta' end as type,
           case when rc < 0.35 then 'app' when rc < 0.55 then 'whatsapp' when rc < 0.60 then 'telegram'
                when rc < 0.75 then 'web' when rc < 0.90 then 'email' when rc < 0.97 then 'phone'
                when rc < 0.99 then 'in_person' else 'letter' end as channel,
           case when rp < 0.40 then 'OPERATIVO' when rp < 0.60 then 'COMERCIAL' when rp < 0.70 then 'CALIDAD'
                when rp < 0.80 then 'FINANZAS' when rp < 0.95 then 'LOGISTICA' else 'TALENTO' end as process,
           case when rprio < 0.05 then 'critical' when rprio < 0.25 then 'high' when rprio < 0.75 then 'medium'
                else 'low' end as priority
    from base
), timed as (
    select t.*,
           case when type = 'solicitud_informacion' then 10 when type = 'consulta' then 30 else 15 end as term,
           received_at + (0.05 + 20 * bench_r(g, 8) ^ 3) * interval '1 hour' as first_at,
           bench_r(g, 9) < 0.10 as asked,
           (0.5 + 12 * bench_r(g, 10)) * interval '1 day' as waited,
           bench_r(g, 11) < 0.08 as never_replied,
           bench_r(g, 12) < 0.03 as extended,
           bench_r(g, 13) < 0.005 as left_open,
           (0.1 + 30 * bench_r(g, 14) ^ 2) * interval '1 day' as working
    from typed t
), lived as (
    select t.*,
           case when asked then first_at end as pause_at,
           case when asked and not never_replied then first_at + waited end as resume_at,
           case when asked and never_replied then first_at + interval '1 month' end as withdrawn_at,
           greatest(first_at + interval '1 minute',
                    received_at + working + case when asked then waited else interval '0' end) as answer_at
    from timed t
), known as (
    select l.*,
           coalesce(withdrawn_at <= now(), false) as withdrawn,
           not left_open and not (asked and never_replied) and answer_at <= now() as answered,
           asked and first_at <= now() and coalesce(resume_at > now(), true)
             and not coalesce(withdrawn_at <= now(), false) as waiting,
           answer_at + (0.5 + 6 * bench_r(g, 15)) * interval '1 day' as rate_at
    from lived l
)
select g, md5('case' || g)::uuid as id, received_at, type, term, channel,
       case when not answered and not withdrawn and not waiting and bench_r(g, 16) < 0.25 then null
            else process end as process,
       md5('customer' || (1 + floor(bench_r(g, 17) * $4)::int))::uuid as customer_id,
       priority,
       case priority when 'critical' then 'high' when 'high' then 'high' when 'medium' then 'medium' else 'low' end as impact,
       case priority when 'critical' then 'high' when 'high' then 'medium' when 'medium' then 'medium' else 'low' end as urgency,
       case when first_at <= now() then first_at end as first_at,
       case when pause_at <= now() then pause_at end as pause_at,
       case when resume_at <= now() then resume_at end as resume_at,
       case when withdrawn then withdrawn_at end as withdrawn_at,
       case when extended and received_at + interval '5 days' <= now()
                 and (not answered or answer_at > received_at + interval '5 days')
            then received_at + interval '5 days' end as extend_at,
       case when extended then (received_at at time zone '-05:00'::interval)::date + term * 14 / 5 end as extend_to,
       case when answered then answer_at end as answered_at,
       case when withdrawn then 'withdrawn'
            when answered and bench_r(g, 18) < 0.55 and rate_at <= now() then 'rated'
            when answered then 'answered'
            when waiting then 'waiting_customer'
            when bench_r(g, 16) < 0.25 then 'received'
            when bench_r(g, 19) < 0.5 then 'assigned'
            when bench_r(g, 19) < 0.8 then 'in_approval'
            else 'approved' end as status,
       -- The legal due date as filing and the moves keep it, near enough (business days as 7/5).
       (received_at at time zone '-05:00'::interval)::date + term * 7 / 5
         + case when extended then term * 7 / 5 else 0 end
         + case when resume_at <= now() then extract(day from waited)::int else 0 end as legal_due_date,
       case when answered then bench_r(g, 20) < 0.03 end as in_favour,
       case when answered and bench_r(g, 18) < 0.55 and rate_at <= now() then
            case when bench_r(g, 21) < 0.07 then 1 when bench_r(g, 21) < 0.15 then 2 when bench_r(g, 21) < 0.25 then 3
                 when bench_r(g, 21) < 0.50 then 4 else 5 end end::int2 as rating,
       case when answered and bench_r(g, 18) < 0.55 and rate_at <= now() then rate_at end as rated_at
from known";

/// The cases in the order they were received, numbered per year as filing numbers them.
const CASES: &str = "insert into cases (id, radicado, type, subject, description, channel, customer_id, request_hash, status,
                   impact, urgency, priority, process_code, legal_term_days, legal_due_date,
                   created_at, updated_at, received_at, answered_at, in_favor_of_customer, outcome, answer,
                   rating_score, rated_at, first_response_due_at, resolution_due_at)
select id, 'PQRS-' || extract(year from received_at at time zone '-05:00'::interval) || '-'
           || lpad(row_number() over (partition by extract(year from received_at at time zone '-05:00'::interval)
                                      order by received_at, g)::text, 6, '0'),
       type, 'Solicitud ' || g, 'Descripción de la solicitud número ' || g || ' presentada por el cliente.', channel,
       customer_id, decode(md5('hash' || g), 'hex'), status, impact, urgency, priority, process, term, legal_due_date,
       received_at, coalesce(rated_at, answered_at, received_at), received_at, answered_at, in_favour,
       case when answered_at is not null then 'Resuelto' end,
       case when answered_at is not null then 'Respuesta a la solicitud ' || g end,
       rating, rated_at,
       case when first_at is null then received_at + interval '4 hours' end,
       case when answered_at is null and withdrawn_at is null and pause_at is null then received_at + interval '2 days' end
from bench_cases order by received_at, g";

/// Each case's clock events as the moves record them (filing starts the three clocks; the first
/// word stops the first response; a request for information pauses resolution and legal term,
/// the reply resumes them; a withdrawal resumes and stops them; closing stops them), written in the
/// order they happened across all cases.
const CLOCK_EVENTS: &str = "insert into case_clock_events (case_id, clock, kind, at, extend_to)
select c.id, e.clock, e.kind, e.at, e.extend_to
from bench_cases c
cross join lateral (values
    (0, 'legal', 'start', c.received_at, null::date), (1, 'first_response', 'start', c.received_at, null),
    (2, 'resolution', 'start', c.received_at, null),
    (3, 'first_response', 'stop', c.first_at, null),
    (4, 'resolution', 'pause', c.pause_at, null), (5, 'legal', 'pause', c.pause_at, null),
    (6, 'resolution', 'resume', coalesce(c.resume_at, c.withdrawn_at), null),
    (7, 'legal', 'resume', coalesce(c.resume_at, c.withdrawn_at), null),
    (8, 'legal', 'stop', c.withdrawn_at, null), (9, 'resolution', 'stop', c.withdrawn_at, null),
    (10, 'legal', 'extend', c.extend_at, c.extend_to),
    (11, 'resolution', 'stop', c.answered_at, null), (12, 'legal', 'stop', c.answered_at, null)
) as e (seq, clock, kind, at, extend_to)
where e.at is not null
order by e.at, c.g, e.seq";

/// Completed visits with their field-report documents, one per post-service invitation:
/// $1 surveys answered, $2 first day, $3 months, $4 customers.
const REPORT_DOCUMENTS: &str = "insert into sync_documents (document_id, kind, created_at)
select 'W' || translate(g::text, '0', 'z'), 'field_report', $2
from generate_series(1, round($1 / 0.55 * 0.7)::bigint) g";

const WORK_ORDERS: &str = "insert into work_orders (id, customer_id, process_code, address, scheduled_at, service_type, status,
                         report_document_id, created_by, created_at, completed_at)
select md5('order' || g)::uuid, md5('customer' || (1 + floor(bench_r(g, 31) * $4)::int))::uuid,
       case when bench_r(g, 32) < 0.75 then 'OPERATIVO' else 'LOGISTICA' end,
       'Calle ' || (g % 200) || ' # ' || (g % 97) || '-' || (g % 50), s.at, 'Fumigación', 'completed',
       'W' || translate(g::text, '0', 'z'), '00000000-0000-0000-0000-0000000000d1', s.at - interval '7 days',
       s.at + interval '2 hours'
from generate_series(1, round($1 / 0.55 * 0.7)::bigint) g,
     lateral (select (($2 + floor(bench_r(g, 33) * (($2 + make_interval(months => $3))::date - $2))::int)::timestamp
                       + interval '8 hours' + bench_r(g, 34) * interval '8 hours') at time zone '-05:00'::interval as at) s";

/// The post-service invitation of every visit, the day after it; 11 in 20 answered within days.
const POST_SERVICE: &str = "insert into survey_invitations (id, customer_id, version_id, work_order_id, sent_at, expires_at,
                                answered_at, taken_via)
select md5('invitation' || w.id)::uuid, w.customer_id, '5e1f0000-0000-4000-8000-000000000001', w.id,
       s.sent, s.sent + interval '15 days', case when s.answered <= now() then s.answered end,
       case when s.answered <= now()
            then (array['web', 'email', 'app', 'chat', 'phone', 'visit'])[1 + (abs(hashtext(w.id::text)) % 6)] end
from work_orders w,
     lateral (select w.completed_at + interval '1 day' as sent,
                     case when abs(hashtext(w.id::text || 'a')) % 20 < 11
                          then w.completed_at + interval '1 day'
                               + (abs(hashtext(w.id::text || 'b')) % 1000) * interval '864 seconds' end as answered) s";

/// A semestral campaign each June and December of the months, sharing the rest of the invitations.
const CAMPAIGNS: &str = "with m as (
    select d::date as month from generate_series($2, $2 + make_interval(months => $3 - 1), interval '1 month') d
    where extract(month from d) in (6, 12)
)
insert into survey_campaigns (id, version_id, name, opens_at, closes_at, sample_size, created_by)
select md5('campaign' || month)::uuid, '5e1f0000-0000-4000-8000-000000000002',
       'Encuesta semestral ' || to_char(month, 'YYYY-MM'),
       (month + interval '9 hours') at time zone '-05:00'::interval,
       (month + interval '45 days') at time zone '-05:00'::interval,
       least($4, round($1 / 0.55 * 0.3 / (select count(*) from m)))::int, '00000000-0000-0000-0000-0000000000d1'
from m";

const CAMPAIGN_INVITATIONS: &str = "insert into survey_invitations (id, customer_id, version_id, campaign_id, sent_at,
                                expires_at, answered_at, taken_via)
select md5('invitation' || k.id || i)::uuid, md5('customer' || (1 + (i + k.n * 1000) % $1))::uuid, k.version_id, k.id,
       s.sent, k.closes_at, case when s.answered <= now() then s.answered end,
       case when s.answered <= now() then (array['web', 'email', 'app', 'chat', 'phone'])[1 + i % 5] end
from (select c.*, row_number() over (order by opens_at) as n from survey_campaigns c) k,
     generate_series(1, k.sample_size) i,
     lateral (select k.opens_at + (i % 3) * interval '1 day' as sent,
                     case when bench_r(i * 10 + k.n, 35) < 0.55
                          then k.opens_at + bench_r(i * 10 + k.n, 36) * interval '40 days' end as answered) s";

/// Every question of each answered survey (free text in three of ten), stored as it was answered.
const ANSWERS: &str = "insert into survey_answers (invitation_id, version_id, position, score, yes, choice, text)
select i.id, i.version_id, q.position,
       case when q.kind = 'scale' then case when r < 0.04 then 1 when r < 0.10 then 2 when r < 0.20 then 3
                                            when r < 0.55 then 4 else 5 end end,
       case when q.kind = 'yes_no' then r >= 0.1 end,
       case when q.kind = 'choice' then (array['exceeded', 'met', 'met', 'partly', 'not_met'])[1 + floor(r * 5)::int] end,
       case when q.kind = 'text' then 'Buen servicio, gracias.' end
from survey_invitations i
join survey_questions q on q.version_id = i.version_id
cross join lateral (select (abs(hashtext(i.id::text || q.position)) % 10000) / 10000.0 as r) x
where i.answered_at is not null and (q.kind <> 'text' or x.r < 0.3)
order by i.answered_at, i.id, q.position";

/// A thousand quotes a month and half as many contracts ending, with their outcomes.
const QUOTES: &str = "insert into quotes (id, customer_id, services, amount_cop, sent_on, follow_up_on, outcome, outcome_at,
                    created_by, created_at)
select md5('quote' || g)::uuid, md5('customer' || (1 + g * 13 % $3))::uuid, array['Fumigación', 'Desratización'],
       500000 + (g % 40) * 50000, s.sent, s.sent + 10, o.outcome, case when o.outcome is not null then o.at end,
       '00000000-0000-0000-0000-0000000000d1', s.sent
from generate_series(1, $2 * 1000) g,
     lateral (select $1 + floor(bench_r(g, 41) * (($1 + make_interval(months => $2))::date - $1))::int as sent) s,
     lateral (select ((s.sent + 5 + floor(bench_r(g, 42) * 35)::int) + time '15:00') at time zone '-05:00'::interval as at) a,
     lateral (select case when a.at > now() or bench_r(g, 43) < 0.1 then null
                          when bench_r(g, 44) < 0.45 then 'accepted' when bench_r(g, 44) < 0.78 then 'rejected'
                          else 'expired' end as outcome, a.at) o";

const CONTRACTS: &str = "insert into contracts (id, customer_id, services, visit_frequency, starts_on, ends_on, status,
                       renewal_offered_at, renewal_decided_at, not_renewed_reason, created_by, created_at)
select md5('contract' || g)::uuid, md5('customer' || (1 + g * 17 % $3))::uuid, array['Fumigación'], 'monthly',
       s.ends - 365, s.ends, d.status, case when d.status <> 'active' then s.ends - 20 end,
       case when d.status <> 'active' then s.ends - 10 end, case when d.status = 'not_renewed' then 'Precio' end,
       '00000000-0000-0000-0000-0000000000d1', s.ends - 365
from generate_series(1, $2 * 500) g,
     lateral (select $1 + floor(bench_r(g, 51) * (($1 + make_interval(months => $2))::date - $1))::int as ends) s,
     lateral (select case when s.ends - 10 > current_date or bench_r(g, 52) < 0.1 then 'active'
                          when bench_r(g, 53) < 0.75 then 'renewed' else 'not_renewed' end as status) d";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let today = atiende_core::calendar::local_date(chrono::Utc::now());
    let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).ok_or("today")?;
    let last = this_month
        .checked_sub_months(Months::new(1))
        .ok_or("last month")?;
    let first = this_month
        .checked_sub_months(Months::new(args.months))
        .ok_or("first month")?;
    let (mut admin, pool) = atiende_tests::scratch_database(&args.server_url, DB, 8).await?;

    eprintln!(
        "creating {} cases, about {} answered surveys, {} customers, {} months from {first}…",
        args.cases, args.surveys, args.customers, args.months
    );
    let started = Instant::now();
    use Bind::*;
    let steps: [(&str, &str, &[Bind]); 16] = [
        ("random numbers", RANDOM, &[]),
        (
            "director",
            "insert into users (id, email, name, role, password_hash) values ('00000000-0000-0000-0000-0000000000d1', 'director.datos@bench.invalid', 'Director', 'quality_director', 'x')",
            &[],
        ),
        (
            "processes",
            "insert into processes (code, name) values ('OPERATIVO', 'Operativo'), ('CALIDAD', 'Calidad'), ('FINANZAS', 'Finanzas'), ('LOGISTICA', 'Logística'), ('TALENTO', 'Talento humano') on conflict do nothing",
            &[],
        ),
        (
            "customers",
            "insert into customers (id, kind, document_type, document_number, name, created_at)
             select md5('customer' || g)::uuid, case when g % 4 = 0 then 'company' else 'person' end,
                    case when g % 4 = 0 then 'NIT' else 'CC' end, (10000000 + g)::text, 'Cliente ' || g, $1::date - 365
             from generate_series(1, $2) g",
            &[First, Customers],
        ),
        ("case lives", LIVES, &[Cases, First, Span, Customers]),
        ("cases", CASES, &[]),
        ("clock events", CLOCK_EVENTS, &[]),
        ("report documents", REPORT_DOCUMENTS, &[Surveys, First]),
        ("visits", WORK_ORDERS, &[Surveys, First, Span, Customers]),
        ("post-service invitations", POST_SERVICE, &[]),
        ("campaigns", CAMPAIGNS, &[Surveys, First, Span, Customers]),
        ("campaign invitations", CAMPAIGN_INVITATIONS, &[Customers]),
        ("survey answers", ANSWERS, &[]),
        ("quotes", QUOTES, &[First, Span, Customers]),
        ("contracts", CONTRACTS, &[First, Span, Customers]),
        ("staging", "drop table bench_cases", &[]),
    ];
    // Bulk loading: the rows are consistent by construction, so the foreign-key checks (triggers)
    // are skipped for these statements, on this one connection.
    let mut conn = pool.acquire().await?;
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    for (what, sql, binds) in steps {
        let t0 = Instant::now();
        let mut q = sqlx::query(sql);
        for b in binds {
            q = match b {
                Cases => q.bind(args.cases),
                Surveys => q.bind(args.surveys),
                Customers => q.bind(args.customers),
                First => q.bind(first),
                Span => q.bind(i32::try_from(args.months)?),
            };
        }
        let done = q.execute(&mut *conn).await?.rows_affected();
        eprintln!(
            "  {what}: {done} rows in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    sqlx::query("set session_replication_role = origin")
        .execute(&mut *conn)
        .await?;
    drop(conn);
    eprintln!(
        "created in {:.1} s; keeping each case's clock figures…",
        started.elapsed().as_secs_f64()
    );

    // As after an upgrade: every case is queued and the scheduler's batches measure them, two at
    // a time (one per core).
    let t0 = Instant::now();
    sqlx::query("insert into clock_measure_queue (case_id) select id from cases")
        .execute(&pool)
        .await?;
    let measurers: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0;
                loop {
                    match atiende_core::deadlines::measure_queued(
                        &pool,
                        atiende_core::scheduler::BATCH,
                    )
                    .await?
                    {
                        0 => return Ok::<_, atiende_core::Error>(n),
                        k => n += k,
                    }
                    if n % 100_000 < atiende_core::scheduler::BATCH as usize {
                        eprintln!("  {n} cases measured by one of two…");
                    }
                }
            })
        })
        .collect();
    let mut measured = 0;
    for m in measurers {
        measured += m.await??;
    }
    let took = t0.elapsed();
    eprintln!(
        "kept the clock figures of {measured} cases in {:.1} s ({:.0} cases/s); vacuum analyze…",
        took.as_secs_f64(),
        measured as f64 / took.as_secs_f64()
    );
    sqlx::query("vacuum analyze").execute(&pool).await?;

    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from cases), (select count(*) from case_clock_events),
                (select count(*) from survey_invitations), (select count(*) from survey_invitations where answered_at is not null),
                (select count(*) from survey_answers)",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "data: {} cases with {} clock events, {} survey invitations of which {} answered ({} answers), {} months {first} – {last}; generated and measured in {:.0} s",
        counts.0,
        counts.1,
        counts.2,
        counts.3,
        counts.4,
        args.months,
        started.elapsed().as_secs_f64()
    );
    pool.close().await;

    let month = last.format("%Y-%m").to_string();
    let from = first.format("%Y-%m").to_string();
    let scenarios = [
        (
            "director",
            "one month",
            format!("from={month}&to={month}"),
            args.month_calls,
        ),
        (
            "OPERATIVO leader",
            "one month",
            format!("from={month}&to={month}"),
            args.month_calls,
        ),
        (
            "director",
            "24 months",
            format!("from={from}&to={month}"),
            args.range_calls,
        ),
        (
            "OPERATIVO leader",
            "24 months",
            format!("from={from}&to={month}"),
            args.range_calls,
        ),
    ];
    let settings = Settings {
        // The workers have nothing to do; the scheduler would only measure an empty queue.
        scheduler_interval_ms: 3_600_000,
        ..Settings::default()
    };
    // Logged in on a server of their own, so the first call of each server below is cold.
    let setup = atiende_tests::spawn_app_with(
        sqlx::PgPool::connect(&format!("{}/{DB}", args.server_url)).await?,
        settings.clone(),
    )
    .await;
    let (_, director) = setup
        .staff("director@bench.invalid", Role::QualityDirector, None)
        .await;
    let (_, leader) = setup
        .staff(
            "lider@bench.invalid",
            Role::ProcessLeader,
            Some("OPERATIVO"),
        )
        .await;
    setup.stop().await;
    println!(
        "GET /api/v1/staff/indicators over HTTP, server in this process (pool of {}); cold = the first call after the server starts with a new pool",
        settings.db_max_connections
    );
    for (who, span, query, calls) in scenarios {
        // A new server and pool for each: its first call is cold.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(settings.db_max_connections)
            .connect(&format!("{}/{DB}", args.server_url))
            .await?;
        let app = atiende_tests::spawn_app_with(pool, settings.clone()).await;
        let token = if who == "director" {
            &director
        } else {
            &leader
        };
        let url = app.url(&format!("/api/v1/staff/indicators?{query}"));
        let call = || async {
            let t0 = Instant::now();
            let r = app.client.get(&url).bearer_auth(token).send().await?;
            let status = r.status();
            let body = r.bytes().await?;
            if status != StatusCode::OK {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)).into());
            }
            Ok::<_, Box<dyn std::error::Error>>((t0.elapsed(), body.len()))
        };
        let (cold, size) = call().await?;
        let mut warm = Vec::with_capacity(calls);
        for _ in 0..calls {
            warm.push(call().await?.0);
        }
        warm.sort();
        println!(
            "{who}, {span} ({query}): cold {:.0} ms; warm p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({calls} calls, {} kB of JSON)",
            ms(cold),
            ms(quantile(&warm, 0.5)),
            ms(quantile(&warm, 0.95)),
            ms(quantile(&warm, 0.99)),
            size / 1024
        );
        app.stop().await;
    }
    if args.keep {
        eprintln!("kept the database {DB}");
    } else {
        atiende_tests::drop_scratch_database(&mut admin, DB).await?;
    }
    Ok(())
}
