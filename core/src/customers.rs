//! Customers as staff handle them: the company creates a customer for someone who called or came
//! to the front desk (PRO-SIG-10 gives every customer a user the company assigns), and looks
//! customers up by document, name, phone or e-mail.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::account_setup::{self, Invitation};
use crate::auth::{self, parse_document_number, parse_email, parse_name, parse_phone};
use crate::error::{Error, Result, violates};
use crate::types::DocumentType;

/// A customer staff register.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub document_type: DocumentType,
    pub document_number: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The customer accepted the data-processing policy (Ley 1581 de 2012) where staff took the
    /// request: the channel it was given on (`phone`, `in_person`, `letter`).
    pub consent_channel: String,
    /// `es` or `en`: what the customer reads (e-mails, the printed acknowledgement, the app).
    pub language: Option<String>,
}

/// The customer's app user, created with the customer (see [`crate::account_setup`]).
#[derive(Debug, Clone, Copy)]
pub struct AppUser {
    /// The staff member asking; none from the command line.
    pub created_by: Option<Uuid>,
    /// How long the link to set the password works.
    pub link_ttl: std::time::Duration,
}

/// A customer as staff see it in a search or after creating one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomerSummary {
    pub id: Uuid,
    /// None for a contact known only by the address it wrote from to the service mailbox.
    pub document_type: Option<DocumentType>,
    pub document_number: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// False for a contact nobody has verified (from a chat or the web form): staff may merge it.
    pub verified: bool,
    /// How many cases the customer has filed.
    pub cases: i64,
    /// Whether the customer has an active app user.
    pub has_app_user: bool,
}

/// Creates a verified customer (the caller has checked that staff or an admin asks), and with
/// `app_user` their app user, whose link to set the password goes to the customer's e-mail. A
/// document number that is already a verified customer's is a conflict: staff search for that
/// customer instead. Nothing is written when any part is refused.
pub async fn create(
    pool: &PgPool,
    new: NewCustomer,
    app_user: Option<AppUser>,
) -> Result<(CustomerSummary, Option<Invitation>)> {
    let name = parse_name(&new.name)?;
    let number = parse_document_number(&new.document_number)?;
    let email = new.email.as_deref().map(parse_email).transpose()?;
    let phone = new.phone.as_deref().map(parse_phone).transpose()?;
    if !matches!(
        new.consent_channel.as_str(),
        "phone" | "in_person" | "letter"
    ) {
        return Err(Error::invalid(
            "invalid_channel",
            "consent is taken by phone, in_person or letter",
        ));
    }
    if let Some(l) = new.language.as_deref()
        && l != "es"
        && l != "en"
    {
        return Err(Error::invalid(
            "invalid_language",
            "language must be es or en",
        ));
    }
    let mut tx = pool.begin().await?;
    let id = Uuid::new_v4();
    let inserted = sqlx::query!(
        "insert into customers (id, kind, document_type, document_number, name, email, phone, verified, language)
         values ($1, $2, $3, $4, $5, $6, $7, true, $8)",
        id,
        new.document_type.customer_kind() as _,
        new.document_type as DocumentType,
        number,
        name,
        email,
        phone,
        new.language,
    )
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if violates(&e, "customers_document_key") => {
            return Err(Error::conflict(
                "customer_exists",
                format!(
                    "a customer with document {} {number} exists already",
                    new.document_type.as_str()
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    auth::record_consent(&mut *tx, id, true, &new.consent_channel).await?;
    let invitation = match app_user {
        Some(a) => Some(account_setup::invite(&mut tx, id, a.created_by, a.link_ttl).await?),
        None => None,
    };
    tx.commit().await?;
    Ok((get(pool, id).await?, invitation))
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<CustomerSummary> {
    sqlx::query_as!(
        CustomerSummary,
        r#"select c.id, c.document_type as "document_type: DocumentType", c.document_number, c.name,
                  c.email, c.phone, c.verified,
                  (select count(*) from cases k where k.customer_id = c.id) as "cases!",
                  exists (select 1 from users u where u.customer_id = c.id and u.active) as "has_app_user!"
           from customers c where c.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("customer_not_found", "customer"))
}

/// Most customers a search returns.
pub const SEARCH_LIMIT: i64 = 50;

/// Customers whose document number, e-mail or phone is `q`, or whose name contains it (in any
/// case), verified ones first, then by name. For staff only: the caller checks.
pub async fn search(db: impl PgExecutor<'_>, q: &str, limit: i64) -> Result<Vec<CustomerSummary>> {
    let q = q.trim();
    if q.chars().count() < 2 || q.chars().count() > 200 {
        return Err(Error::invalid(
            "invalid_query",
            "search with 2 to 200 characters: a document number, a name, a phone or an e-mail",
        ));
    }
    // The name is matched as a substring; % and _ in what was typed are literal.
    let pattern = format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let digits = q.chars().filter(char::is_ascii_digit).count();
    // e164 reads anything; only a query that looks like a phone number is compared as one.
    let phone = (digits >= 7 && parse_phone(q).is_ok()).then(|| q.to_owned());
    Ok(sqlx::query_as!(
        CustomerSummary,
        r#"select c.id, c.document_type as "document_type: DocumentType", c.document_number, c.name,
                  c.email, c.phone, c.verified,
                  (select count(*) from cases k where k.customer_id = c.id) as "cases!",
                  exists (select 1 from users u where u.customer_id = c.id and u.active) as "has_app_user!"
           from customers c
           where c.merged_into is null
             and (c.document_number = upper($1)
              or lower(c.email) = lower($1)
              or ($2::text is not null and c.phone_e164 = e164($2))
              or c.name ilike $3)
           order by c.verified desc, c.name, c.id
           limit $4"#,
        q,
        phone,
        pattern,
        limit.clamp(1, SEARCH_LIMIT),
    )
    .fetch_all(db)
    .await?)
}

/// What a merge moved from the contact to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Merged {
    pub cases: i64,
    pub chats: i64,
}

/// Who merges a contact into a customer.
#[derive(Debug, Clone, Copy)]
pub enum MergedBy<'a> {
    /// The quality director or an admin (the caller checks).
    Staff(&'a crate::auth::User),
    /// The customer, by confirming a one-time code sent to their contact on file
    /// ([`crate::link_codes`]).
    CustomerCode,
}

/// Merges the unverified contact `contact_id` into the verified customer `customer_id`: the
/// contact's cases (each with a `merged` event in its trail), chats, messages, notifications,
/// files, consents and work orders become the customer's, and the contact is kept, marked as
/// merged, for the record. The quality director or an admin decides (the caller checks); a contact
/// with an app user is not a contact to merge.
pub async fn merge(
    pool: &PgPool,
    actor: &crate::auth::User,
    customer_id: Uuid,
    contact_id: Uuid,
) -> Result<Merged> {
    let mut tx = pool.begin().await?;
    let merged = merge_in(&mut tx, MergedBy::Staff(actor), customer_id, contact_id).await?;
    tx.commit().await?;
    Ok(merged)
}

/// [`merge`] inside the caller's transaction, by staff or by the customer's confirmation.
pub async fn merge_in(
    tx: &mut PgConnection,
    by: MergedBy<'_>,
    customer_id: Uuid,
    contact_id: Uuid,
) -> Result<Merged> {
    if customer_id == contact_id {
        return Err(Error::invalid(
            "same_customer",
            "a customer cannot be merged into itself",
        ));
    }
    // Both rows locked, in a fixed order so two merges never wait on each other crosswise.
    let rows = sqlx::query!(
        r#"select id, verified, merged_into,
                  exists (select 1 from users u where u.customer_id = c.id) as "has_user!"
           from customers c where id = any($1) order by id for update"#,
        &[customer_id, contact_id][..]
    )
    .fetch_all(&mut *tx)
    .await?;
    let find = |id: Uuid| rows.iter().find(|r| r.id == id);
    let target = find(customer_id).ok_or(Error::not_found("customer_not_found", "customer"))?;
    let contact = find(contact_id).ok_or(Error::not_found("contact_not_found", "contact"))?;
    if !target.verified {
        return Err(Error::invalid(
            "customer_not_verified",
            "merge a contact into a verified customer",
        ));
    }
    if contact.verified || contact.has_user {
        return Err(Error::invalid(
            "not_a_contact",
            "only an unverified contact without an app user can be merged into a customer",
        ));
    }
    if contact.merged_into.is_some() {
        return Err(Error::conflict(
            "contact_already_merged",
            "the contact was merged already",
        ));
    }
    // Cases and chats in one statement: a case names its chat together with its customer.
    let moved = sqlx::query!(
        r#"with chats as (
               update customer_chats set customer_id = $1 where customer_id = $2 returning id
           ), cases as (
               update cases set customer_id = $1, updated_at = now() where customer_id = $2 returning id
           )
           select array(select id from cases) as "cases!", (select count(*) from chats) as "chats!""#,
        customer_id,
        contact_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    for sql in [
        "update case_messages set author_customer_id = $1 where author_customer_id = $2",
        "update notifications set customer_id = $1 where customer_id = $2",
        "update consents set customer_id = $1 where customer_id = $2",
        "update work_orders set customer_id = $1 where customer_id = $2",
        "insert into blob_customer_uploads (sha256, customer_id, uploaded_at)
         select sha256, $1, uploaded_at from blob_customer_uploads where customer_id = $2
         on conflict do nothing",
        "delete from blob_customer_uploads where customer_id = $2",
    ] {
        sqlx::query(sql)
            .bind(customer_id)
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
    }
    let (actor_id, actor_role, how, note) = match by {
        MergedBy::Staff(user) => (
            Some(user.id),
            user.role.as_str(),
            "staff",
            format!("contact {contact_id} merged into customer {customer_id}"),
        ),
        MergedBy::CustomerCode => (
            None,
            crate::types::Role::Customer.as_str(),
            "customer_code",
            format!(
                "contact {contact_id} merged into customer {customer_id}: linked by the customer's \
                 confirmation with a one-time code sent to their contact on file"
            ),
        ),
    };
    sqlx::query!(
        "insert into case_events (case_id, actor_id, actor_role, kind, comment, visible_to_customer)
         select id, $2, $3, 'merged', $4, false from unnest($1::uuid[]) as m (id)",
        &moved.cases,
        actor_id,
        actor_role,
        note,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "update customers set merged_into = $1, merged_at = now(), merged_by = $3, merged_how = $4
         where id = $2",
        customer_id,
        contact_id,
        actor_id,
        how,
    )
    .execute(&mut *tx)
    .await?;
    Ok(Merged {
        cases: i64::try_from(moved.cases.len()).unwrap_or(i64::MAX),
        chats: moved.chats,
    })
}
