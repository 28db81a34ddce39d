//! The commercial register of PRO-008: quotes sent to customers and their outcome (§5.1.3), the
//! contracts they become (§5.2), and the renewal offered before a contract ends with what came of
//! it (§5.5). The staff of the commercial process keep it; the quality director and admins too.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::calendar::local_date;
use crate::error::{Error, Result, violates};
use crate::input::{self, Text};
use crate::types::{ContractStatus, QuoteOutcome, Role, VisitFrequency};

/// At most this many service lines on a quote or a contract.
pub const MAX_SERVICES: usize = 50;
/// The largest amount a quote may name, in pesos.
pub const MAX_AMOUNT_COP: i64 = 999_999_999_999;

/// Who keeps the register: the quality director, admins, and the leader and members of the
/// commercial process (`process`, a setting).
pub async fn require_commercial_staff(
    db: impl PgExecutor<'_>,
    actor: &User,
    process: &str,
) -> Result<()> {
    if matches!(actor.role, Role::QualityDirector | Role::Admin) {
        return Ok(());
    }
    if actor.role.is_staff() && crate::processes::works_in(db, actor.id, process).await? {
        return Ok(());
    }
    Err(Error::forbidden(
        "not_commercial_staff",
        format!("quotes and contracts are kept by the staff of process {process}"),
    ))
}

fn services(lines: &[String]) -> Result<Vec<String>> {
    if lines.is_empty() || lines.len() > MAX_SERVICES {
        return Err(Error::invalid(
            "invalid_services",
            format!("name 1 to {MAX_SERVICES} services"),
        ));
    }
    lines
        .iter()
        .map(|l| Text::<input::ServiceLine>::parse(l).map(Text::into_string))
        .collect()
}

async fn require_customer(conn: &mut PgConnection, customer_id: Uuid) -> Result<()> {
    let exists = sqlx::query_scalar!(
        r#"select exists(select 1 from customers where id = $1) as "e!""#,
        customer_id
    )
    .fetch_one(conn)
    .await?;
    if exists {
        Ok(())
    } else {
        Err(Error::invalid(
            "unknown_customer",
            "there is no such customer",
        ))
    }
}

/// A quote as staff send it.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewQuote {
    pub customer_id: Uuid,
    /// 1 to 50 lines, each 1 to 200 characters once trimmed.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub services: Vec<String>,
    /// Whole Colombian pesos, 0 to 999,999,999,999.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 999_999_999_999_i64)
    )]
    pub amount_cop: i64,
    /// When it was sent: not after today (Colombian time).
    pub sent_on: NaiveDate,
    /// When to call the customer about it: not before `sent_on`.
    pub follow_up_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub services: Vec<String>,
    /// Whole Colombian pesos.
    pub amount_cop: i64,
    pub sent_on: NaiveDate,
    pub follow_up_on: Option<NaiveDate>,
    /// Absent while the customer has not decided.
    pub outcome: Option<QuoteOutcome>,
    pub outcome_at: Option<DateTime<Utc>>,
    pub outcome_note: Option<String>,
    /// The contract an accepted quote became.
    pub contract_id: Option<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

async fn quote(db: impl PgExecutor<'_>, id: Uuid) -> Result<Quote> {
    sqlx::query_as!(
        Quote,
        r#"select q.id, q.customer_id, q.services, q.amount_cop, q.sent_on, q.follow_up_on,
                  q.outcome as "outcome: QuoteOutcome", q.outcome_at, q.outcome_note,
                  (select c.id from contracts c where c.quote_id = q.id) as contract_id,
                  q.created_by, q.created_at
           from quotes q where q.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("quote_not_found", "quote"))
}

pub async fn create_quote(
    pool: &PgPool,
    actor: &User,
    process: &str,
    new: NewQuote,
) -> Result<Quote> {
    let services = services(&new.services)?;
    if !(0..=MAX_AMOUNT_COP).contains(&new.amount_cop) {
        return Err(Error::invalid(
            "invalid_amount",
            format!("the amount is 0 to {MAX_AMOUNT_COP} whole pesos"),
        ));
    }
    if new.sent_on > local_date(Utc::now()) {
        return Err(Error::invalid("sent_in_future", "sent_on is after today"));
    }
    if new.follow_up_on.is_some_and(|f| f < new.sent_on) {
        return Err(Error::invalid(
            "invalid_follow_up",
            "follow_up_on is before sent_on",
        ));
    }
    let mut tx = pool.begin().await?;
    require_commercial_staff(&mut *tx, actor, process).await?;
    require_customer(&mut tx, new.customer_id).await?;
    let id = Uuid::new_v4();
    sqlx::query!(
        "insert into quotes (id, customer_id, services, amount_cop, sent_on, follow_up_on, created_by)
         values ($1, $2, $3, $4, $5, $6, $7)",
        id,
        new.customer_id,
        &services,
        new.amount_cop,
        new.sent_on,
        new.follow_up_on,
        actor.id,
    )
    .execute(&mut *tx)
    .await?;
    let q = quote(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(q)
}

pub async fn get_quote(pool: &PgPool, actor: &User, process: &str, id: Uuid) -> Result<Quote> {
    require_commercial_staff(pool, actor, process).await?;
    quote(pool, id).await
}

/// The quotes, latest sent first, of one customer or of all.
pub async fn list_quotes(
    pool: &PgPool,
    actor: &User,
    process: &str,
    customer_id: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Quote>> {
    require_commercial_staff(pool, actor, process).await?;
    Ok(sqlx::query_as!(
        Quote,
        r#"select q.id, q.customer_id, q.services, q.amount_cop, q.sent_on, q.follow_up_on,
                  q.outcome as "outcome: QuoteOutcome", q.outcome_at, q.outcome_note,
                  (select c.id from contracts c where c.quote_id = q.id) as contract_id,
                  q.created_by, q.created_at
           from quotes q
           where ($1::uuid is null or q.customer_id = $1)
           order by q.sent_on desc, q.created_at desc, q.id
           limit $2"#,
        customer_id,
        i64::from(limit)
    )
    .fetch_all(pool)
    .await?)
}

/// What the customer decided about a quote.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuoteDecision {
    pub outcome: QuoteOutcome,
    /// When it was decided (a call taken earlier): not in the future, not before the day the
    /// quote was sent. Now when absent.
    pub decided_at: Option<DateTime<Utc>>,
    /// Up to 2,000 characters.
    pub note: Option<String>,
}

/// Records the outcome, once: a decided quote is a 409 `quote_already_decided`.
pub async fn decide_quote(
    pool: &PgPool,
    actor: &User,
    process: &str,
    id: Uuid,
    d: QuoteDecision,
) -> Result<Quote> {
    let note = d
        .note
        .as_deref()
        .map(|n| Text::<input::Comment>::parse(n).map(Text::into_string))
        .transpose()?;
    let now = Utc::now();
    let at = d.decided_at.unwrap_or(now);
    if at > now + chrono::Duration::seconds(60) {
        return Err(Error::invalid(
            "invalid_decided_at",
            "decided_at is in the future",
        ));
    }
    let mut tx = pool.begin().await?;
    require_commercial_staff(&mut *tx, actor, process).await?;
    let current = sqlx::query!(
        r#"select outcome, sent_on from quotes where id = $1 for update"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::not_found("quote_not_found", "quote"))?;
    if let Some(outcome) = current.outcome {
        return Err(Error::conflict(
            "quote_already_decided",
            format!("the quote was already {outcome}"),
        ));
    }
    if local_date(at) < current.sent_on {
        return Err(Error::invalid(
            "invalid_decided_at",
            "decided_at is before the quote was sent",
        ));
    }
    sqlx::query!(
        "update quotes set outcome = $2, outcome_at = $3, outcome_by = $4, outcome_note = $5 where id = $1",
        id,
        d.outcome as QuoteOutcome,
        at.min(now),
        actor.id,
        note,
    )
    .execute(&mut *tx)
    .await?;
    let q = quote(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(q)
}

/// A contract as staff write it.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewContract {
    pub customer_id: Uuid,
    /// 1 to 50 lines, each 1 to 200 characters once trimmed.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub services: Vec<String>,
    pub visit_frequency: VisitFrequency,
    pub starts_on: NaiveDate,
    /// Not before `starts_on`.
    pub ends_on: NaiveDate,
}

/// The contract an accepted quote becomes: the quote's customer, and its services unless others
/// are named.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContractTerms {
    /// The quote's services when absent.
    pub services: Option<Vec<String>>,
    pub visit_frequency: VisitFrequency,
    pub starts_on: NaiveDate,
    /// Not before `starts_on`.
    pub ends_on: NaiveDate,
}

/// The renewal of a contract: when the commercial process was alerted, the offer, the outcome.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Renewal {
    pub alerted_at: Option<DateTime<Utc>>,
    pub offered_at: Option<DateTime<Utc>>,
    pub offer_note: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub not_renewed_reason: Option<String>,
    /// The contract that renewed this one, when one was created.
    pub next_contract_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Contract {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub services: Vec<String>,
    pub visit_frequency: VisitFrequency,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub status: ContractStatus,
    /// The accepted quote it came from.
    pub quote_id: Option<Uuid>,
    /// The contract it renews.
    pub renews_contract_id: Option<Uuid>,
    pub renewal: Renewal,
    pub created_at: DateTime<Utc>,
}

struct ContractRow {
    id: Uuid,
    customer_id: Uuid,
    services: Vec<String>,
    visit_frequency: VisitFrequency,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
    status: ContractStatus,
    quote_id: Option<Uuid>,
    renews_contract_id: Option<Uuid>,
    renewal_alerted_at: Option<DateTime<Utc>>,
    renewal_offered_at: Option<DateTime<Utc>>,
    renewal_offer_note: Option<String>,
    renewal_decided_at: Option<DateTime<Utc>>,
    not_renewed_reason: Option<String>,
    next_contract_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<ContractRow> for Contract {
    fn from(r: ContractRow) -> Self {
        Contract {
            id: r.id,
            customer_id: r.customer_id,
            services: r.services,
            visit_frequency: r.visit_frequency,
            starts_on: r.starts_on,
            ends_on: r.ends_on,
            status: r.status,
            quote_id: r.quote_id,
            renews_contract_id: r.renews_contract_id,
            renewal: Renewal {
                alerted_at: r.renewal_alerted_at,
                offered_at: r.renewal_offered_at,
                offer_note: r.renewal_offer_note,
                decided_at: r.renewal_decided_at,
                not_renewed_reason: r.not_renewed_reason,
                next_contract_id: r.next_contract_id,
            },
            created_at: r.created_at,
        }
    }
}

/// The contracts of one customer (or all, or one by id), latest start first.
async fn contracts(
    db: impl PgExecutor<'_>,
    id: Option<Uuid>,
    customer_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Contract>> {
    let rows = sqlx::query_as!(
        ContractRow,
        r#"select c.id, c.customer_id, c.services, c.visit_frequency as "visit_frequency: VisitFrequency",
                  c.starts_on, c.ends_on, c.status as "status: ContractStatus", c.quote_id,
                  c.renews_contract_id, c.renewal_alerted_at, c.renewal_offered_at,
                  c.renewal_offer_note, c.renewal_decided_at, c.not_renewed_reason,
                  (select n.id from contracts n where n.renews_contract_id = c.id) as next_contract_id,
                  c.created_at
           from contracts c
           where ($1::uuid is null or c.id = $1) and ($2::uuid is null or c.customer_id = $2)
           order by c.starts_on desc, c.created_at desc, c.id
           limit $3"#,
        id,
        customer_id,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Contract::from).collect())
}

async fn contract(db: impl PgExecutor<'_>, id: Uuid) -> Result<Contract> {
    contracts(db, Some(id), None, 1)
        .await?
        .pop()
        .ok_or(Error::not_found("contract_not_found", "contract"))
}

fn check_dates(starts_on: NaiveDate, ends_on: NaiveDate) -> Result<()> {
    if ends_on < starts_on {
        return Err(Error::invalid(
            "invalid_contract_dates",
            "ends_on is before starts_on",
        ));
    }
    Ok(())
}

/// Writes a contract (in the caller's transaction, which checked who may).
async fn insert_contract(
    conn: &mut PgConnection,
    actor: &User,
    new: &NewContract,
    quote_id: Option<Uuid>,
    renews: Option<Uuid>,
) -> Result<Uuid> {
    let services = services(&new.services)?;
    check_dates(new.starts_on, new.ends_on)?;
    let id = Uuid::new_v4();
    sqlx::query!(
        "insert into contracts (id, customer_id, services, visit_frequency, starts_on, ends_on,
                                quote_id, renews_contract_id, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        id,
        new.customer_id,
        &services,
        new.visit_frequency as VisitFrequency,
        new.starts_on,
        new.ends_on,
        quote_id,
        renews,
        actor.id,
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if violates(&e, "contracts_quote_id_key") {
            Error::conflict(
                "quote_already_contracted",
                "the quote already became a contract",
            )
        } else {
            e.into()
        }
    })?;
    Ok(id)
}

pub async fn create_contract(
    pool: &PgPool,
    actor: &User,
    process: &str,
    new: NewContract,
) -> Result<Contract> {
    services(&new.services)?;
    check_dates(new.starts_on, new.ends_on)?;
    let mut tx = pool.begin().await?;
    require_commercial_staff(&mut *tx, actor, process).await?;
    require_customer(&mut tx, new.customer_id).await?;
    let id = insert_contract(&mut tx, actor, &new, None, None).await?;
    let c = contract(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(c)
}

/// An accepted quote becomes a contract, once.
pub async fn contract_from_quote(
    pool: &PgPool,
    actor: &User,
    process: &str,
    quote_id: Uuid,
    terms: ContractTerms,
) -> Result<Contract> {
    if let Some(s) = &terms.services {
        services(s)?;
    }
    check_dates(terms.starts_on, terms.ends_on)?;
    let mut tx = pool.begin().await?;
    require_commercial_staff(&mut *tx, actor, process).await?;
    let q = sqlx::query!(
        r#"select customer_id, services, outcome, exists(select 1 from contracts c where c.quote_id = q.id) as "contracted!"
           from quotes q where id = $1 for update"#,
        quote_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::not_found("quote_not_found", "quote"))?;
    if q.outcome.as_deref() != Some(QuoteOutcome::Accepted.as_str()) {
        return Err(Error::conflict(
            "quote_not_accepted",
            "only an accepted quote becomes a contract",
        ));
    }
    if q.contracted {
        return Err(Error::conflict(
            "quote_already_contracted",
            "the quote already became a contract",
        ));
    }
    let new = NewContract {
        customer_id: q.customer_id,
        services: terms.services.unwrap_or(q.services),
        visit_frequency: terms.visit_frequency,
        starts_on: terms.starts_on,
        ends_on: terms.ends_on,
    };
    let id = insert_contract(&mut tx, actor, &new, Some(quote_id), None).await?;
    let c = contract(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(c)
}

pub async fn get_contract(
    pool: &PgPool,
    actor: &User,
    process: &str,
    id: Uuid,
) -> Result<Contract> {
    require_commercial_staff(pool, actor, process).await?;
    contract(pool, id).await
}

pub async fn list_contracts(
    pool: &PgPool,
    actor: &User,
    process: &str,
    customer_id: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Contract>> {
    require_commercial_staff(pool, actor, process).await?;
    contracts(pool, None, customer_id, i64::from(limit)).await
}

struct Locked {
    status: ContractStatus,
    renewal_offered_at: Option<DateTime<Utc>>,
}

async fn lock_contract(conn: &mut PgConnection, id: Uuid) -> Result<Locked> {
    sqlx::query_as!(
        Locked,
        r#"select status as "status: ContractStatus", renewal_offered_at from contracts where id = $1 for update"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::not_found("contract_not_found", "contract"))
}

fn require_undecided(locked: &Locked) -> Result<()> {
    if locked.status != ContractStatus::Active {
        return Err(Error::conflict(
            "renewal_already_decided",
            format!("the renewal was already decided: {}", locked.status),
        ));
    }
    Ok(())
}

/// Records that renewal was offered to the customer (once), with what was offered.
pub async fn offer_renewal(
    pool: &PgPool,
    actor: &User,
    process: &str,
    id: Uuid,
    note: &str,
) -> Result<Contract> {
    let note = Text::<input::RenewalOffer>::parse(note)?.into_string();
    let mut tx = pool.begin().await?;
    require_commercial_staff(&mut *tx, actor, process).await?;
    let locked = lock_contract(&mut tx, id).await?;
    require_undecided(&locked)?;
    if locked.renewal_offered_at.is_some() {
        return Err(Error::conflict(
            "renewal_already_offered",
            "the renewal was already offered",
        ));
    }
    sqlx::query!(
        "update contracts set renewal_offered_at = now(), renewal_offered_by = $2, renewal_offer_note = $3 where id = $1",
        id,
        actor.id,
        note
    )
    .execute(&mut *tx)
    .await?;
    let c = contract(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(c)
}

/// What came of the renewal offer.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, tag = "outcome", rename_all = "snake_case")]
pub enum RenewalOutcome {
    /// Renewed; with `next`, the next contract is written too.
    Renewed { next: Option<NextContract> },
    /// Not renewed, and why (1 to 2,000 characters).
    NotRenewed { reason: String },
}

/// The contract that follows a renewed one: the same services and frequency unless others are
/// named, from the day after the renewed one ends unless another start is named.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NextContract {
    pub services: Option<Vec<String>>,
    pub visit_frequency: Option<VisitFrequency>,
    pub starts_on: Option<NaiveDate>,
    pub ends_on: NaiveDate,
}

/// Records the outcome of the renewal, once, after the offer; a renewal with `next` creates the
/// next contract in the same transaction.
pub async fn decide_renewal(
    pool: &PgPool,
    actor: &User,
    process: &str,
    id: Uuid,
    outcome: RenewalOutcome,
) -> Result<Contract> {
    let reason = match &outcome {
        RenewalOutcome::NotRenewed { reason } => {
            Some(Text::<input::NotRenewedReason>::parse(reason)?.into_string())
        }
        RenewalOutcome::Renewed { .. } => None,
    };
    let mut tx = pool.begin().await?;
    require_commercial_staff(&mut *tx, actor, process).await?;
    let locked = lock_contract(&mut tx, id).await?;
    require_undecided(&locked)?;
    if locked.renewal_offered_at.is_none() {
        return Err(Error::conflict(
            "renewal_not_offered",
            "record the renewal offer first",
        ));
    }
    let status = match reason {
        Some(_) => ContractStatus::NotRenewed,
        None => ContractStatus::Renewed,
    };
    sqlx::query!(
        "update contracts set status = $2, renewal_decided_at = now(), renewal_decided_by = $3,
                              not_renewed_reason = $4
         where id = $1",
        id,
        status as ContractStatus,
        actor.id,
        reason,
    )
    .execute(&mut *tx)
    .await?;
    if let RenewalOutcome::Renewed { next: Some(next) } = outcome {
        let current = contract(&mut *tx, id).await?;
        let starts_on = match next.starts_on {
            Some(d) => d,
            None => current
                .ends_on
                .checked_add_days(Days::new(1))
                .ok_or_else(|| Error::invalid("invalid_contract_dates", "ends_on is too late"))?,
        };
        let new = NewContract {
            customer_id: current.customer_id,
            services: next.services.unwrap_or(current.services),
            visit_frequency: next.visit_frequency.unwrap_or(current.visit_frequency),
            starts_on,
            ends_on: next.ends_on,
        };
        insert_contract(&mut tx, actor, &new, None, Some(id)).await?;
    }
    let c = contract(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(c)
}

/// One round of renewal alerts: every active contract that ends within `days` of `today` and was
/// not alerted yet is marked alerted and its alert written, in one statement, so each contract is
/// alerted once whatever restarts or processes run this. The leader and members of `process`
/// hear of it by push; a process with nobody in it alerts the quality directors. Returns how many
/// contracts were alerted.
pub async fn alert_renewals(
    pool: &PgPool,
    process: &str,
    days: u32,
    today: NaiveDate,
    limit: i64,
) -> Result<usize> {
    let horizon = today
        .checked_add_days(Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MAX);
    let alerted = sqlx::query_scalar!(
        r#"with due as (
               select id from contracts
               where status = 'active' and renewal_alerted_at is null and ends_on <= $2
               order by ends_on
               limit $3
               for update skip locked
           ), alerted as (
               update contracts c set renewal_alerted_at = now()
               from due where c.id = due.id
               returning c.id, c.customer_id, c.ends_on
           ), staff as (
               select m.user_id from process_members m join users u on u.id = m.user_id
               where m.process_code = $1 and u.active
               union
               select p.leader_id from processes p join users u on u.id = p.leader_id
               where p.code = $1 and u.active
           ), recipients as (
               select user_id from staff
               union
               select u.id from users u
               where u.role = 'quality_director' and u.active and not exists (select 1 from staff)
           ), notified as (
               insert into notifications (dedupe_key, user_id, kind, urgency, ttl_secs, data)
               select 'contract_renewal:' || a.id || ':' || r.user_id, r.user_id, 'contract_renewal',
                      'normal', $4,
                      jsonb_build_object('contract_id', a.id, 'customer', cu.name, 'ends_on', a.ends_on)
               from alerted a join customers cu on cu.id = a.customer_id cross join recipients r
               on conflict (dedupe_key) do nothing
           )
           select count(*) as "alerted!" from alerted"#,
        process,
        horizon,
        limit,
        i32::try_from(crate::notifications::NOTICE_TTL.as_secs()).unwrap_or(i32::MAX),
    )
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(alerted).unwrap_or(0))
}
