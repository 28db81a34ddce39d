//! Follow-ups a low survey score opens (PRO-008 §5.4.2, SGC-SAC-001 §4.4.4): one per invitation,
//! for the process responsible for what was scored, whose leader hears of it at once; staff close
//! it with what they did.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::auth::User;
use crate::error::{Error, Result};
use crate::notifications::{self, Kind, NewNotification, Recipient};
use crate::types::{PushUrgency, Role};

/// Longest account of what was done, in characters.
pub const MAX_ACTION: usize = 4_000;

/// Opens the invitation's follow-up, for the process of its visit or else `default_process` (none
/// when that process does not exist), and notifies the process's leader, or the quality directors
/// when it has none. Once per invitation.
pub async fn open(
    conn: &mut PgConnection,
    invitation_id: Uuid,
    lowest: i16,
    default_process: &str,
) -> Result<()> {
    let opened = sqlx::query!(
        r#"insert into survey_follow_ups (id, invitation_id, process_code, lowest_score)
           select $1, i.id,
                  coalesce(w.process_code, (select p.code from processes p where p.code = $3)),
                  $4
           from survey_invitations i left join work_orders w on w.id = i.work_order_id
           where i.id = $2
           on conflict (invitation_id) do nothing
           returning id, process_code"#,
        Uuid::new_v4(),
        invitation_id,
        default_process,
        lowest,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(opened) = opened else {
        return Ok(());
    };
    let leaders = sqlx::query_scalar!(
        r#"select p.leader_id as "id!" from processes p
           where p.code = $1 and p.leader_id is not null
           union
           select u.id from users u
           where u.role = 'quality_director' and u.active
             and not exists (select 1 from processes p where p.code = $1 and p.leader_id is not null)"#,
        opened.process_code
    )
    .fetch_all(&mut *conn)
    .await?;
    for leader in leaders {
        notifications::notify(
            conn,
            NewNotification {
                dedupe_key: format!("follow_up_opened:{}:{leader}", opened.id),
                case_id: None,
                recipient: Recipient::User(leader),
                kind: Kind::FollowUpOpened,
                urgency: PushUrgency::Normal,
                ttl: notifications::NOTICE_TTL,
                data: serde_json::json!({
                    "follow_up_id": opened.id,
                    "invitation_id": invitation_id,
                    "process": opened.process_code,
                    "score": lowest,
                }),
                delay: std::time::Duration::ZERO,
            },
        )
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyFollowUp {
    pub id: Uuid,
    pub invitation_id: Uuid,
    pub customer_id: Uuid,
    pub work_order_id: Option<Uuid>,
    /// The responsible process; none when the default process was not configured.
    pub process: Option<String>,
    pub lowest_score: i16,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<Uuid>,
    /// What staff did, once closed.
    pub action: Option<String>,
}

/// Follow-ups, open ones first then newest: all of them for the quality director and admins, those
/// of their processes for everyone else on the staff.
pub async fn list(
    db: impl PgExecutor<'_>,
    actor: &User,
    open_only: Option<bool>,
) -> Result<Vec<SurveyFollowUp>> {
    let everything = matches!(actor.role, Role::QualityDirector | Role::Admin);
    Ok(sqlx::query_as!(
        SurveyFollowUp,
        r#"select f.id, f.invitation_id, i.customer_id, i.work_order_id, f.process_code as process,
                  f.lowest_score, f.opened_at, f.closed_at, f.closed_by, f.action
           from survey_follow_ups f join survey_invitations i on i.id = f.invitation_id
           where ($1::bool is null or (f.closed_at is null) = $1)
             and ($2 or f.process_code in (select p.code from processes p where p.leader_id = $3
                                           union
                                           select m.process_code from process_members m where m.user_id = $3))
           order by f.closed_at is not null, f.opened_at desc
           limit 500"#,
        open_only,
        everything,
        actor.id,
    )
    .fetch_all(db)
    .await?)
}

/// Closes a follow-up with what was done. Staff of its process, the quality director and admins
/// may; to anyone else it does not exist.
pub async fn close(
    conn: &mut PgConnection,
    actor: &User,
    id: Uuid,
    action: &str,
) -> Result<SurveyFollowUp> {
    let action = action.trim();
    if action.is_empty() || action.chars().count() > MAX_ACTION {
        return Err(Error::invalid(
            "invalid_follow_up_action",
            format!("say what was done, in 1 to {MAX_ACTION} characters"),
        ));
    }
    let row = sqlx::query!(
        "select process_code, closed_at from survey_follow_ups where id = $1 for update",
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::not_found("follow_up_not_found", "follow-up"))?;
    let allowed = matches!(actor.role, Role::QualityDirector | Role::Admin)
        || match &row.process_code {
            Some(p) => crate::processes::works_in(&mut *conn, actor.id, p).await?,
            None => false,
        };
    if !allowed {
        return Err(Error::not_found("follow_up_not_found", "follow-up"));
    }
    if row.closed_at.is_some() {
        return Err(Error::conflict(
            "follow_up_closed",
            "the follow-up was closed already",
        ));
    }
    sqlx::query!(
        "update survey_follow_ups set closed_at = now(), closed_by = $2, action = $3 where id = $1",
        id,
        actor.id,
        action
    )
    .execute(&mut *conn)
    .await?;
    let everything = User {
        role: Role::Admin,
        ..actor.clone()
    };
    list(&mut *conn, &everything, None)
        .await?
        .into_iter()
        .find(|f| f.id == id)
        .ok_or(Error::not_found("follow_up_not_found", "follow-up"))
}
