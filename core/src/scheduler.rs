//! The deadline scheduler: claims the alerts whose instant has passed and notifies the people
//! responsible. Safe to run in every atiende process at once: a claimed alert is skipped by the
//! others, and it is marked fired in the same transaction that writes its notifications.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::Result;
use crate::notifications::{self, Kind, NewNotification, Recipient};

const ALERT_TTL: Duration = Duration::from_secs(24 * 3600);

struct Due {
    case_id: Uuid,
    clock: String,
    percent: i16,
    due_at: DateTime<Utc>,
}

/// One round: fires up to `limit` due alerts. Returns how many fired.
pub async fn tick(pool: &PgPool, limit: i64) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let due = sqlx::query_as!(
        Due,
        "with due as (
             select case_id, clock, percent from deadline_alerts
             where fired_at is null and due_at <= now()
             order by due_at
             limit $1
             for update skip locked
         )
         update deadline_alerts a set fired_at = now()
         from due where a.case_id = due.case_id and a.clock = due.clock and a.percent = due.percent
         returning a.case_id, a.clock, a.percent, a.due_at",
        limit
    )
    .fetch_all(&mut *tx)
    .await?;
    for alert in &due {
        notify(&mut tx, alert).await?;
    }
    tx.commit().await?;
    Ok(due.len())
}

/// Warnings go to the assignee; from 75 % the process leader too; the breach also to the quality
/// director. With nobody assigned yet, whoever can act on the case hears of it: the leader of its
/// process, or the quality director who has to assign it.
async fn notify(conn: &mut PgConnection, alert: &Due) -> Result<()> {
    let case = sqlx::query!(
        "select c.radicado, c.assignee_id, p.leader_id as \"leader_id?\"
         from cases c left join processes p on p.code = c.process_code where c.id = $1",
        alert.case_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let breach = alert.percent >= 100;
    let mut recipients = BTreeSet::new();
    recipients.extend(case.assignee_id);
    if alert.percent >= 75 || case.assignee_id.is_none() {
        recipients.extend(case.leader_id);
    }
    if breach || recipients.is_empty() {
        let directors =
            sqlx::query_scalar!("select id from users where role = 'quality_director' and active")
                .fetch_all(&mut *conn)
                .await?;
        recipients.extend(directors);
    }
    let due = alert
        .due_at
        .with_timezone(&crate::cases::local_offset())
        .format("%Y-%m-%d %H:%M")
        .to_string();
    for user_id in recipients {
        let n = NewNotification {
            dedupe_key: format!(
                "deadline:{}:{}:{}:{user_id}",
                alert.case_id, alert.clock, alert.percent
            ),
            case_id: Some(alert.case_id),
            recipient: Recipient::User(user_id),
            kind: if breach {
                Kind::DeadlineBreach
            } else {
                Kind::DeadlineWarning
            },
            urgency: if breach { "high" } else { "normal" },
            ttl: ALERT_TTL,
            data: serde_json::json!({"radicado": case.radicado, "clock": alert.clock, "percent": alert.percent, "due": due}),
            delay: Duration::ZERO,
        };
        notifications::notify(&mut *conn, n).await?;
    }
    Ok(())
}
