//! The deadline scheduler: claims the alerts whose instant has passed and notifies the people
//! responsible. Safe to run in every atiende process at once: a claimed alert is skipped by the
//! others, and it is marked fired in the same statement that writes its notifications. Alerts
//! due at once (after downtime, or Monday 08:00 after a long weekend) fire as a set, not one by
//! one.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::Result;

const ALERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Alerts one round fires at most; the scheduler goes on at once while rounds come back full.
pub const BATCH: i64 = 500;

/// One round: fires up to `limit` due alerts, in one statement: the alerts are claimed and
/// marked fired, and their notifications written (the database fans them out), or none of it.
/// Warnings go to the assignee; from 75 % the process leader too; the breach also to the quality
/// directors. With nobody assigned yet, whoever can act on the case hears of it: the leader of
/// its process, or the quality directors who have to assign it. Returns how many fired.
pub async fn tick(pool: &PgPool, limit: i64) -> Result<usize> {
    let offset = crate::calendar::COLOMBIA.local_minus_utc();
    let fired = sqlx::query_scalar!(
        r#"with due as (
               select case_id, clock, percent from deadline_alerts
               where fired_at is null and due_at <= now()
               order by due_at
               limit $1
               for update skip locked
           ), fired as (
               update deadline_alerts a set fired_at = now()
               from due where a.case_id = due.case_id and a.clock = due.clock and a.percent = due.percent
               returning a.case_id, a.clock, a.percent, a.due_at
           ), alerts as (
               select f.case_id, f.clock, f.percent, f.due_at, c.radicado, c.assignee_id, p.leader_id
               from fired f
               join cases c on c.id = f.case_id
               left join processes p on p.code = c.process_code
           ), recipients as (
               select a.*, r.user_id
               from alerts a
               cross join lateral (
                   select a.assignee_id as user_id where a.assignee_id is not null
                   union
                   select a.leader_id
                   where a.leader_id is not null and (a.percent >= 75 or a.assignee_id is null)
                   union
                   select u.id from users u
                   where u.role = 'quality_director' and u.active
                     and (a.percent >= 100 or (a.assignee_id is null and a.leader_id is null))
               ) r
           ), notified as (
               insert into notifications (dedupe_key, case_id, user_id, kind, urgency, ttl_secs, data)
               select 'deadline:' || case_id || ':' || clock || ':' || percent || ':' || user_id,
                      case_id, user_id,
                      case when percent >= 100 then 'deadline_breach' else 'deadline_warning' end,
                      case when percent >= 100 then 'high' else 'normal' end,
                      $2,
                      jsonb_build_object(
                          'radicado', radicado, 'clock', clock, 'percent', percent,
                          'due', to_char(due_at at time zone make_interval(secs => $3), 'YYYY-MM-DD HH24:MI'))
               from recipients
               on conflict (dedupe_key) do nothing
           )
           select count(*) as "fired!" from fired"#,
        limit,
        i32::try_from(ALERT_TTL.as_secs()).unwrap_or(i32::MAX),
        f64::from(offset),
    )
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(fired).unwrap_or(0))
}
