//! Customers as staff handle them: the company creates a customer for someone who called or came
//! to the front desk (PRO-SIG-10 gives every customer a user the company assigns), and looks
//! customers up by document, name, phone or e-mail.

use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

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
}

/// A customer as staff see it in a search or after creating one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomerSummary {
    pub id: Uuid,
    pub document_type: DocumentType,
    pub document_number: String,
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

/// Creates a verified customer (the caller has checked that staff or an admin asks). A document
/// number that is already a verified customer's is a conflict: staff search for that customer
/// instead.
pub async fn create(pool: &PgPool, new: NewCustomer) -> Result<CustomerSummary> {
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
    let mut tx = pool.begin().await?;
    let id = Uuid::new_v4();
    let inserted = sqlx::query!(
        "insert into customers (id, kind, document_type, document_number, name, email, phone, verified)
         values ($1, $2, $3, $4, $5, $6, $7, true)",
        id,
        new.document_type.customer_kind() as _,
        new.document_type as DocumentType,
        number,
        name,
        email,
        phone,
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
    tx.commit().await?;
    get(pool, id).await
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
           where c.document_number = upper($1)
              or lower(c.email) = lower($1)
              or ($2::text is not null and c.phone_e164 = e164($2))
              or c.name ilike $3
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
