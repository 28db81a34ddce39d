//! The printed acknowledgement: a case's customer hears of it by e-mail when there is an address on
//! file, otherwise by a letter staff hand over or post (PRO-SIG-10). This is what the letter says
//! and who may print it; the web crate lays it out.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::auth::User;
use crate::error::{Error, Result};
use crate::types::{CaseType, Channel, DocumentType};

/// Where the web crate serves a case's letter.
pub fn letter_path(case_id: Uuid) -> String {
    format!("/staff/cases/{case_id}/letter")
}

/// The law that sets a case type's answer term: the habeas-data requests follow Ley 1581 de 2012,
/// every other request Ley 1755 de 2015.
pub fn legal_basis(t: CaseType) -> &'static str {
    match t {
        CaseType::DatosConsulta => "Ley 1581 de 2012, art. 14",
        CaseType::DatosReclamo => "Ley 1581 de 2012, art. 15",
        _ => "Ley 1755 de 2015, art. 14",
    }
}

/// What the acknowledgement letter of a case says.
#[derive(Debug, Clone)]
pub struct Acknowledgement {
    pub case_id: Uuid,
    pub radicado: String,
    pub case_type: CaseType,
    pub channel: Channel,
    pub received_at: DateTime<Utc>,
    /// When the case was registered: the letter's date.
    pub created_at: DateTime<Utc>,
    pub legal_term_days: i32,
    pub legal_due_date: NaiveDate,
    pub customer_name: String,
    /// None for a contact known only by the address they e-mailed from.
    pub document_type: Option<DocumentType>,
    pub document_number: Option<String>,
    /// The customer's language, else their app user's, else Spanish.
    pub language: String,
}

/// The letter of case `case_id`, for a staff member who works the case or registered it; any
/// other case is as missing as one that does not exist. The caller has checked the role.
pub async fn acknowledgement(
    conn: &mut PgConnection,
    staff: &User,
    case_id: Uuid,
) -> Result<Acknowledgement> {
    if !staff.role.is_staff() {
        return Err(Error::forbidden("staff_only", "the letter is for staff"));
    }
    sqlx::query_as!(
        Acknowledgement,
        r#"select c.id as case_id, c.radicado, c.type as "case_type: CaseType",
                  c.channel as "channel: Channel", c.received_at, c.created_at,
                  c.legal_term_days, c.legal_due_date,
                  cu.name as customer_name, cu.document_type as "document_type: DocumentType",
                  cu.document_number,
                  customer_language(cu.id) as "language!"
           from cases c
           join customers cu on cu.id = c.customer_id
           cross join staff_scope($2) s
           where c.id = $1
             and (works_case(s, c.process_code, c.assignee_id) or c.filed_by = $2)"#,
        case_id,
        staff.id,
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::not_found("case_not_found", "case"))
}

/// The address the case's acknowledgement is e-mailed to, or None when it must be printed.
pub async fn acknowledgement_email(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar!(
        "select d.target from notifications n join deliveries d on d.notification_id = n.id
         where n.case_id = $1 and n.kind = 'acknowledgement' and d.channel = 'email'
         order by d.id limit 1",
        case_id
    )
    .fetch_optional(db)
    .await?)
}
