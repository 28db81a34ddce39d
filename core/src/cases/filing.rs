//! Filing: the radicado from a gapless yearly counter, the legal due date and the clocks, the
//! acknowledgement and the first alerts, all in one statement; a retried filing returns the first case.

use chrono::{DateTime, Datelike, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::User;
use crate::calendar::local_date;
use crate::deadlines::{self, Clock, Kind};
use crate::error::{Error, Result, violates};
use crate::input::{self, Text};
use crate::notifications;
use crate::terms;
use crate::types::{CaseType, Channel, Level, Priority};

use super::Case;
use super::queries::get;

/// What a customer (or a channel on their behalf) files.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// Chosen by the device, so retries and offline syncs file once.
    pub id: Uuid,
    pub case_type: CaseType,
    pub subject: String,
    pub description: String,
    pub channel: Channel,
    /// The customer's chat it came from, whose replies go back there.
    pub chat_id: Option<Uuid>,
    /// The customer's visit the case is about (one of their own work orders).
    pub work_order_id: Option<Uuid>,
}

pub enum Filed {
    Created(Case),
    /// The same request arrived before: this is the case it created.
    Existing(Case),
}

fn request_hash(customer_id: Uuid, c: &NewCase, received_at: Option<DateTime<Utc>>) -> Vec<u8> {
    let mut h = Sha256::new();
    // Staff registering a case also say when it was received; a retry says the same.
    if let Some(at) = received_at {
        h.update(at.timestamp_micros().to_be_bytes());
    }
    for part in [
        customer_id.as_bytes().as_slice(),
        c.case_type.as_str().as_bytes(),
        c.subject.as_bytes(),
        c.description.as_bytes(),
        c.channel.as_str().as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    // Only when named, so the requests filed before cases named visits keep their hashes.
    if let Some(order) = c.work_order_id {
        h.update(b"work_order");
        h.update(order.as_bytes());
    }
    h.finalize().to_vec()
}

/// Files a case: radicado, legal due date, priority and the `filed` event, in one transaction.
/// Filing the same id again returns the first case when the content is the same and is a conflict
/// when it is not.
pub async fn file(
    pool: &PgPool,
    customer_id: Uuid,
    filed_by: Option<&User>,
    new: NewCase,
) -> Result<Filed> {
    file_received(pool, customer_id, filed_by, new, None).await
}

/// Files a case received earlier, at `received_at` (a call, a visit or a letter staff register
/// afterwards, or an e-mail that reached the service mailbox while no server read it): the legal
/// term and the clocks run from then, so a clock may be late already; the radicado is numbered
/// now, when it is registered. `None` means received now; an instant in the future counts as now.
pub async fn file_received(
    pool: &PgPool,
    customer_id: Uuid,
    filed_by: Option<&User>,
    new: NewCase,
    received_at: Option<DateTime<Utc>>,
) -> Result<Filed> {
    let new = NewCase {
        subject: Text::<input::Subject>::parse(&new.subject)?.into_string(),
        description: Text::<input::Description>::parse(&new.description)?.into_string(),
        ..new
    };
    let hash = request_hash(customer_id, &new, received_at);
    if let Some(existing) = existing_filing(pool, new.id, customer_id, &hash).await? {
        return Ok(Filed::Existing(existing));
    }
    if let Some(order) = new.work_order_id {
        require_own_work_order(pool, customer_id, order).await?;
    }

    let now = Utc::now();
    let received = received_at.unwrap_or(now).min(now);
    let filed_on = local_date(received);
    let terms = terms::current(pool).await?;
    let (term, schedule) = (terms.legal_term_days(new.case_type)?, &terms.schedule);
    let due = schedule.calendar.add_business_days(filed_on, term);
    let (impact, urgency) = (Level::Medium, Level::Medium);
    let priority = Priority::from_matrix(impact, urgency);
    // The clocks start now: their due times and alert instants are written with the case.
    let start = |clock: Clock| deadlines::StoredEvent {
        clock,
        kind: Kind::Start,
        at: received,
        extend_to: None,
    };
    let inputs = deadlines::ClockInputs {
        filed_at: received,
        legal_term_days: term,
        priority,
        events: vec![
            start(Clock::Legal),
            start(Clock::FirstResponse),
            start(Clock::Resolution),
        ],
    };
    let clocks = deadlines::evaluate(schedule, &inputs, now);
    let (first_due, resolution_due) = (clocks.first_response.due_at, clocks.resolution.due_at);
    let alerts = deadlines::alert_instants(schedule, &inputs, &clocks);
    let alert_clocks: Vec<String> = alerts.iter().map(|a| a.0.as_str().to_owned()).collect();
    let alert_percents: Vec<i16> = alerts.iter().map(|a| a.1).collect();
    let alert_instants: Vec<DateTime<Utc>> = alerts.iter().map(|a| a.2).collect();
    let actor_role = filed_by.map_or("system", |u| u.role.as_str());
    // The trail says when a case registered afterwards was actually received.
    let note = received_at.map(|at| {
        format!(
            "received by {} at {}",
            new.channel,
            at.with_timezone(&crate::calendar::COLOMBIA)
                .format("%Y-%m-%d %H:%M %:z")
        )
    });

    let mut tx = pool.begin().await?;
    // The counter row stays locked until commit: one statement, then commit, keeps that short.
    let inserted = sqlx::query_scalar!(
        "with n as (
             insert into radicado_counters (year, last_number) values ($2, 1)
             on conflict (year) do update set last_number = radicado_counters.last_number + 1
             returning last_number
         ), c as (
             insert into cases (id, radicado, type, subject, description, channel, customer_id, filed_by,
                                request_hash, status, impact, urgency, priority, legal_term_days,
                                legal_due_date, created_at, updated_at, first_response_due_at, resolution_due_at,
                                chat_id, received_at, work_order_id, first_response_met, resolution_met,
                                clocks_measured_at)
             select $1, 'PQRS-' || $2::int || '-' || lpad(n.last_number::text, greatest(6, length(n.last_number::text)), '0'),
                    $3, $4, $5, $6, $7, $8, $9, 'received', $10, $11, $12, $13, $14, $15, $15, $17, $18, $23, $24, $26,
                    $27, $28, $15
             from n
             returning id, radicado
         ), e as (
             insert into case_events (case_id, actor_id, actor_role, at, kind, from_status, to_status, visible_to_customer, comment)
             select c.id, $8, $16, $15, 'filed', null, 'received', true, $25 from c
         ), k as (
             insert into case_clock_events (case_id, clock, kind, at)
             select c.id, k.clock, 'start', $24
             from c cross join (values ('legal'), ('first_response'), ('resolution')) as k (clock)
         ), a as (
             -- The acknowledgement, in this one statement (the counter row is locked until commit);
             -- the database fans it out as it does every notification.
             insert into notifications (dedupe_key, case_id, customer_id, kind, urgency, ttl_secs, data)
             select 'acknowledgement:' || c.id, c.id, $7, 'acknowledgement', 'normal', $19,
                    jsonb_build_object('radicado', c.radicado, 'type', $3::text, 'due_date', $14::date)
             from c
         ), al as (
             insert into deadline_alerts (case_id, clock, percent, due_at)
             select c.id, x.clock, x.percent, x.due_at
             from c cross join unnest($20::text[], $21::int2[], $22::timestamptz[]) as x (clock, percent, due_at)
         )
         select radicado from c",
        new.id,
        filed_on.year(),
        new.case_type as CaseType,
        new.subject,
        new.description,
        new.channel as Channel,
        customer_id,
        filed_by.map(|u| u.id),
        hash,
        impact as Level,
        urgency as Level,
        priority as Priority,
        term as i32,
        due,
        now,
        actor_role,
        first_due,
        resolution_due,
        notifications::NOTICE_TTL.as_secs() as i32,
        &alert_clocks,
        &alert_percents,
        &alert_instants,
        new.chat_id,
        received,
        note,
        new.work_order_id,
        // A case received earlier may be late already.
        deadlines::settled(&inputs, Clock::FirstResponse, &clocks.first_response).met,
        deadlines::settled(&inputs, Clock::Resolution, &clocks.resolution).met,
    )
    .fetch_one(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {
            tx.commit().await?;
            Ok(Filed::Created(get(pool, new.id).await?))
        }
        // A concurrent request with the same id won; its case is the answer (or the conflict).
        Err(e) if violates(&e, "cases_pkey") => {
            drop(tx);
            existing_filing(pool, new.id, customer_id, &hash)
                .await?
                .map(Filed::Existing)
                .ok_or_else(|| Error::Internal("a case id conflicted but no case has it".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// A case names only a visit of its own customer; any other work order (another customer's, or
/// none at all) is refused the same way, so the answer tells nothing about other customers.
async fn require_own_work_order(db: &PgPool, customer_id: Uuid, work_order_id: Uuid) -> Result<()> {
    let owner = sqlx::query_scalar!(
        "select customer_id from work_orders where id = $1",
        work_order_id
    )
    .fetch_optional(db)
    .await?;
    if owner == Some(customer_id) {
        Ok(())
    } else {
        Err(Error::invalid(
            "unknown_work_order",
            "the work order is not one of the customer's visits",
        ))
    }
}

/// How far back staff may date a request they register: a call or a letter is registered within
/// this many business days of its receipt.
pub const MAX_BACKDATE_BUSINESS_DAYS: u32 = 10;

/// A request a staff member registers for a customer who called, came to the front desk or
/// wrote a letter.
#[derive(Debug, Clone)]
pub struct Registration {
    pub customer_id: Uuid,
    pub case: NewCase,
    /// When the company actually received it.
    pub received_at: DateTime<Utc>,
}

/// Registers a case taken by staff (`channel` phone, in person or letter) with the instant it was
/// received: never in the future, at most [`MAX_BACKDATE_BUSINESS_DAYS`] business days back. The
/// customer hears of it as of any case; the staff member is named in the trail as who registered it.
pub async fn register(pool: &PgPool, staff: &User, r: Registration) -> Result<Filed> {
    if !staff.role.is_staff() {
        return Err(Error::forbidden(
            "role_not_allowed",
            "only staff register cases for customers",
        ));
    }
    if !matches!(
        r.case.channel,
        Channel::Phone | Channel::InPerson | Channel::Letter
    ) {
        return Err(Error::invalid(
            "invalid_channel",
            "staff register cases received by phone, in_person or letter",
        ));
    }
    let now = Utc::now();
    // A few seconds of clock difference between the staff member's device and the server.
    if r.received_at > now + chrono::Duration::seconds(60) {
        return Err(Error::invalid(
            "received_in_future",
            "received_at is in the future",
        ));
    }
    let terms = terms::current(pool).await?;
    let back = terms
        .schedule
        .calendar
        .business_days_between(local_date(r.received_at), local_date(now));
    if back > MAX_BACKDATE_BUSINESS_DAYS {
        return Err(Error::invalid(
            "received_too_long_ago",
            format!(
                "received_at is {back} business days ago; a case is registered within \
                 {MAX_BACKDATE_BUSINESS_DAYS} business days of its receipt"
            ),
        ));
    }
    let exists = sqlx::query_scalar!(
        "select exists (select 1 from customers where id = $1) as \"e!\"",
        r.customer_id
    )
    .fetch_one(pool)
    .await?;
    if !exists {
        return Err(Error::not_found("customer_not_found", "customer"));
    }
    file_received(
        pool,
        r.customer_id,
        Some(staff),
        r.case,
        Some(r.received_at.min(now)),
    )
    .await
}

async fn existing_filing(
    db: &PgPool,
    id: Uuid,
    customer_id: Uuid,
    hash: &[u8],
) -> Result<Option<Case>> {
    // A contact merged into a customer since (by staff, or by a link code) still files the same
    // request once: its case is the customer's now.
    let row = sqlx::query!(
        "select customer_id, request_hash,
                (select merged_into from customers where id = $2) as merged_into
         from cases where id = $1",
        id,
        customer_id,
    )
    .fetch_optional(db)
    .await?;
    match row {
        None => Ok(None),
        Some(r)
            if (r.customer_id == customer_id || r.merged_into == Some(r.customer_id))
                && r.request_hash == hash =>
        {
            Ok(Some(get(db, id).await?))
        }
        Some(_) => Err(Error::conflict(
            "idempotency_conflict",
            "a different case was already filed with this id; generate a new id for a new case",
        )),
    }
}
