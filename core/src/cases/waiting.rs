//! Cases that would otherwise wait for ever (Ley 1755 de 2015, art. 17): a customer who has not
//! answered a request for information is reminded after a while, and one month after the request
//! the case is closed as tacitly withdrawn (desistimiento tácito): an event, a notice saying why
//! and that the customer may file again, and its clocks stopped with the waiting not counted, so
//! nothing counts as answered late. Safe in every process at once: each case is locked while it is withdrawn, and a
//! reminder is a notification with its own dedupe key.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::deadlines::{self, Clock, Kind};
use crate::error::Result;
use crate::notifications::{self, CustomerNotice, NOTICE_TTL};
use crate::terms;
use crate::types::CaseStatus;

use super::queries::get;

/// When the customer is reminded, counted from the request for information.
pub const DEFAULT_REMINDER_AFTER: Duration = Duration::from_secs(15 * 24 * 3600);

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub reminded: usize,
    pub withdrawn: usize,
}

/// One round: reminds up to `limit` customers whose case has waited `remind_after` since the
/// request, and withdraws up to `limit` cases whose request is a month old.
pub async fn sweep(pool: &PgPool, remind_after: Duration, limit: i64) -> Result<Swept> {
    let offset = f64::from(crate::calendar::COLOMBIA.local_minus_utc());
    let remind_secs = remind_after.as_secs_f64();
    let reminded = sqlx::query_scalar!(
        r#"with waiting as (
               select c.id, c.customer_id, c.radicado, c.type, r.id as request_id, r.at as requested_at
               from cases c
               cross join lateral (
                   select e.id, e.at from case_events e
                   where e.case_id = c.id and e.kind = 'information_requested'
                   order by e.id desc limit 1
               ) r
               where c.status = 'waiting_customer'
                 and r.at + make_interval(secs => $1) <= now()
                 and r.at + interval '1 month' > now()
                 and not exists (
                     select 1 from notifications n
                     where n.dedupe_key = 'information_reminder:' || r.id)
               limit $2
           ), sent as (
               insert into notifications (dedupe_key, case_id, customer_id, kind, urgency, ttl_secs, data)
               select 'information_reminder:' || request_id, id, customer_id, 'information_reminder',
                      'normal', $3,
                      jsonb_build_object('radicado', radicado, 'type', type,
                          'withdraw_on', ((requested_at + interval '1 month') at time zone make_interval(secs => $4))::date)
               from waiting
               on conflict (dedupe_key) do nothing
               returning 1
           )
           select count(*) as "n!" from sent"#,
        remind_secs,
        limit,
        NOTICE_TTL.as_secs() as i32,
        offset,
    )
    .fetch_one(pool)
    .await?;

    let due: Vec<Uuid> = sqlx::query_scalar!(
        r#"select c.id from cases c
           where c.status = 'waiting_customer'
             and (select max(e.at) from case_events e
                  where e.case_id = c.id and e.kind = 'information_requested') + interval '1 month' <= now()
           order by c.updated_at
           limit $1"#,
        limit
    )
    .fetch_all(pool)
    .await?;
    let mut withdrawn = 0;
    for id in due {
        if withdraw(pool, id).await? {
            withdrawn += 1;
        }
    }
    Ok(Swept {
        reminded: usize::try_from(reminded).unwrap_or(0),
        withdrawn,
    })
}

/// Closes one case as tacitly withdrawn, unless the customer answered (or another process
/// withdrew it) since it was picked.
async fn withdraw(pool: &PgPool, case_id: Uuid) -> Result<bool> {
    let terms = terms::current(pool).await?;
    let mut tx = pool.begin().await?;
    let status = sqlx::query_scalar!(
        r#"select status as "status: CaseStatus" from cases where id = $1 for update skip locked"#,
        case_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if status != Some(CaseStatus::WaitingCustomer) {
        return Ok(false);
    }
    sqlx::query!(
        "update cases set status = 'withdrawn', resume_status = null, updated_at = now() where id = $1",
        case_id
    )
    .execute(&mut *tx)
    .await?;
    // The request suspended the legal term and the resolution clock; the suspension ends with the
    // case, so the waiting does not count against the company (a stop while paused would).
    for clock in [Clock::Legal, Clock::Resolution] {
        deadlines::record(&mut tx, case_id, clock, Kind::Resume, None, None).await?;
    }
    for clock in [Clock::Legal, Clock::FirstResponse, Clock::Resolution] {
        if !deadlines::is_stopped(&mut tx, case_id, clock).await? {
            deadlines::record(&mut tx, case_id, clock, Kind::Stop, None, None).await?;
        }
    }
    sqlx::query!(
        "insert into case_events (case_id, actor_id, actor_role, kind, from_status, to_status, comment, visible_to_customer)
         values ($1, null, 'system', 'withdrawn', 'waiting_customer', 'withdrawn', $2, true)",
        case_id,
        "the customer did not answer the request for information within one month (Ley 1755 de 2015, art. 17)",
    )
    .execute(&mut *tx)
    .await?;
    deadlines::refresh(&mut tx, &terms.schedule, case_id).await?;
    let case = get(&mut *tx, case_id).await?;
    notifications::notify_customer(
        &mut tx,
        case_id,
        CustomerNotice {
            kind: notifications::Kind::Withdrawn,
            cause: case_id,
            data: serde_json::json!({"radicado": case.radicado, "type": case.case_type.as_str()}),
            delay: Duration::ZERO,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
