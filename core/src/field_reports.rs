//! Field reports as rows: the sync server hands over each report document's content as JSON after
//! every stored change, and this module validates it and writes `field_reports` and
//! `field_report_products`, so that reports and indicators never parse CRDTs. Content that does
//! not validate is not projected; the reason is kept for staff to see.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::doc_id::DocumentId;
use crate::documents::{self, Mode};
use crate::error::{Error, Result};

const MAX_TEXT: usize = 4_000;
const MAX_ITEMS: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    pub name: String,
    pub active_ingredient: Option<String>,
    pub registration_number: Option<String>,
    pub lot: Option<String>,
    pub quantity: Option<f64>,
    pub unit: Option<String>,
    pub dose: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signature {
    /// SHA-256 of the signature image, uploaded with `PUT /api/v1/blobs/{sha256}`.
    pub blob: String,
    pub signed_by: Option<String>,
}

/// A field report's content, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldReport {
    pub arrival_at: Option<DateTime<Utc>>,
    pub departure_at: Option<DateTime<Utc>>,
    pub treatment_type: Option<String>,
    pub areas_treated: Vec<String>,
    pub target_pest: Option<String>,
    pub products: Vec<Product>,
    pub observations: Option<String>,
    pub recommendations: Option<String>,
    /// SHA-256 hashes of the photos.
    pub photos: Vec<String>,
    pub signature: Option<Signature>,
    pub completed: bool,
}

fn opt_text(v: Option<&Value>, field: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.chars().count() > MAX_TEXT {
                Err(format!("{field} has more than {MAX_TEXT} characters"))
            } else if t.is_empty() {
                Ok(None)
            } else {
                Ok(Some(t.to_owned()))
            }
        }
        Some(_) => Err(format!("{field} must be text")),
    }
}

fn opt_time(v: Option<&Value>, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    match opt_text(v, field)? {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| format!("{field} must be an RFC 3339 date and time, not {s:?}")),
    }
}

fn list<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], String> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) if items.len() <= MAX_ITEMS => Ok(items),
        Some(Value::Array(_)) => Err(format!("{field} has more than {MAX_ITEMS} entries")),
        Some(_) => Err(format!("{field} must be a list")),
    }
}

/// Whether `s` is a SHA-256 in lowercase hex, the way blobs are named.
pub fn is_blob_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn blob(v: &Value, field: &str) -> Result<String, String> {
    match v.as_str() {
        Some(s) if is_blob_hash(s) => Ok(s.to_owned()),
        _ => Err(format!(
            "{field} must be the SHA-256 of an uploaded blob (64 lowercase hex digits)"
        )),
    }
}

fn product(i: usize, v: &Value) -> Result<Product, String> {
    let Value::Object(p) = v else {
        return Err(format!("products[{i}] must be an object"));
    };
    let field = |name: &str| format!("products[{i}].{name}");
    let name = opt_text(p.get("name"), &field("name"))?
        .ok_or_else(|| format!("products[{i}].name is required"))?;
    let quantity = match p.get("quantity") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(q) if q.is_finite() && q >= 0.0 => Some(q),
            _ => return Err(format!("{} must be zero or more", field("quantity"))),
        },
        Some(_) => return Err(format!("{} must be a number", field("quantity"))),
    };
    let dose = match p.get("dose") {
        Some(Value::Number(n)) => Some(n.to_string()),
        other => opt_text(other, &field("dose"))?,
    };
    Ok(Product {
        name,
        active_ingredient: opt_text(p.get("active_ingredient"), &field("active_ingredient"))?,
        registration_number: opt_text(p.get("registration_number"), &field("registration_number"))?,
        lot: opt_text(p.get("lot"), &field("lot"))?,
        quantity,
        unit: opt_text(p.get("unit"), &field("unit"))?,
        dose,
    })
}

/// Validates a report document's content. The error is a sentence for staff.
pub fn parse(content: &Value) -> Result<FieldReport, String> {
    let Value::Object(doc) = content else {
        return Err("the report is not an object".into());
    };
    let areas_treated = list(doc.get("areas_treated"), "areas_treated")?
        .iter()
        .enumerate()
        .map(|(i, a)| {
            opt_text(Some(a), &format!("areas_treated[{i}]"))?
                .ok_or_else(|| format!("areas_treated[{i}] is empty"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let products = list(doc.get("products"), "products")?
        .iter()
        .enumerate()
        .map(|(i, p)| product(i, p))
        .collect::<Result<Vec<_>, _>>()?;
    let photos = list(doc.get("photos"), "photos")?
        .iter()
        .enumerate()
        .map(|(i, p)| blob(p, &format!("photos[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let signature = match doc.get("signature") {
        None | Some(Value::Null) => None,
        Some(Value::Object(s)) => Some(Signature {
            blob: blob(s.get("blob").unwrap_or(&Value::Null), "signature.blob")?,
            signed_by: opt_text(s.get("signed_by"), "signature.signed_by")?,
        }),
        Some(_) => return Err("signature must be an object with a blob".into()),
    };
    let completed = match doc.get("completed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("completed must be true or false".into()),
    };
    let report = FieldReport {
        arrival_at: opt_time(doc.get("arrival_at"), "arrival_at")?,
        departure_at: opt_time(doc.get("departure_at"), "departure_at")?,
        treatment_type: opt_text(doc.get("treatment_type"), "treatment_type")?,
        areas_treated,
        target_pest: opt_text(doc.get("target_pest"), "target_pest")?,
        products,
        observations: opt_text(doc.get("observations"), "observations")?,
        recommendations: opt_text(doc.get("recommendations"), "recommendations")?,
        photos,
        signature,
        completed,
    };
    if let (Some(a), Some(d)) = (report.arrival_at, report.departure_at)
        && d < a
    {
        return Err("departure_at is before arrival_at".into());
    }
    if report.completed && report.signature.is_none() {
        return Err("a completed report needs the customer's signature".into());
    }
    Ok(report)
}

/// What projecting one document did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projected {
    /// The rows now reflect these heads.
    Updated,
    /// The same heads were projected before.
    Unchanged,
    /// The content does not validate; the reason is stored.
    Invalid(String),
    /// The document belongs to no work order.
    Orphan,
}

/// Makes the blobs the report references readable by whoever may read the report, but only
/// those a writer of the report (one of its technicians) uploaded: a hash typed into the report
/// does not open someone else's blob. A hash nobody has uploaded yet is pending; the upload of a
/// writer attaches it ([`crate::blobs::store`]). Both sides hold the hash's lock
/// ([`crate::blobs::lock`]) while they look, so a report and its photo arriving together cannot
/// each miss the other. Blobs no longer referenced are let go; those attached stay attached.
async fn attach_blobs(conn: &mut PgConnection, doc: &str, mut blobs: Vec<String>) -> Result<()> {
    sqlx::query!(
        "delete from document_blobs where document_id = $1 and not (sha256 = any($2))",
        doc,
        &blobs
    )
    .execute(&mut *conn)
    .await?;
    blobs.sort_unstable();
    blobs.dedup();
    // In one order, so two projections never wait on each other's locks.
    for hash in &blobs {
        crate::blobs::lock(&mut *conn, hash).await?;
    }
    sqlx::query!(
        "insert into document_blobs (document_id, sha256)
         select $1, h from unnest($2::text[]) h
         where exists (select 1 from blob_uploads u
                       join sync_document_access a on a.user_id = u.user_id
                       where u.sha256 = h and a.document_id = $1 and a.mode = 'write')
         on conflict do nothing",
        doc,
        &blobs
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Projects the content of the field report document `doc` at `heads`, idempotently. A completed,
/// signed report completes its work order and opens the report to the customer, read-only.
pub async fn project(
    conn: &mut PgConnection,
    doc: DocumentId,
    heads: &[String],
    content: &Value,
) -> Result<Projected> {
    let key = doc.to_string();
    let Some(order) = sqlx::query!(
        r#"select w.id, w.customer_id, w.status, f.heads, f.error_heads
           from work_orders w join field_reports f on f.work_order_id = w.id
           where w.report_document_id = $1
           for update of f"#,
        key
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Projected::Orphan);
    };
    if order.heads == heads || order.error_heads.as_deref() == Some(heads) {
        return Ok(Projected::Unchanged);
    }
    let report = match parse(content) {
        Ok(r) => r,
        Err(reason) => {
            sqlx::query!(
                "update field_reports set projection_error = $2, error_heads = $3, error_at = now()
                 where work_order_id = $1",
                order.id,
                reason,
                heads
            )
            .execute(&mut *conn)
            .await?;
            return Ok(Projected::Invalid(reason));
        }
    };
    sqlx::query!(
        "update field_reports set arrival_at = $2, departure_at = $3, treatment_type = $4,
             areas_treated = $5, target_pest = $6, observations = $7, recommendations = $8,
             photos = $9, signature_blob = $10, signed_by = $11, completed = $12, heads = $13,
             projected_at = now(), projection_error = null, error_heads = null, error_at = null
         where work_order_id = $1",
        order.id,
        report.arrival_at,
        report.departure_at,
        report.treatment_type,
        &report.areas_treated,
        report.target_pest,
        report.observations,
        report.recommendations,
        &report.photos,
        report.signature.as_ref().map(|s| s.blob.clone()),
        report.signature.as_ref().and_then(|s| s.signed_by.clone()),
        report.completed,
        heads,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "delete from field_report_products where work_order_id = $1",
        order.id
    )
    .execute(&mut *conn)
    .await?;
    for (i, p) in report.products.iter().enumerate() {
        sqlx::query!(
            "insert into field_report_products
                 (work_order_id, position, name, active_ingredient, registration_number, lot, quantity, unit, dose)
             values ($1, $2, $3, $4, $5, $6, $7::float8::numeric, $8, $9)",
            order.id,
            i as i32,
            p.name,
            p.active_ingredient,
            p.registration_number,
            p.lot,
            p.quantity,
            p.unit,
            p.dose,
        )
        .execute(&mut *conn)
        .await?;
    }
    let mut blobs = report.photos.clone();
    blobs.extend(report.signature.iter().map(|s| s.blob.clone()));
    attach_blobs(&mut *conn, &key, blobs).await?;
    if report.completed && order.status != "completed" {
        sqlx::query!(
            "update work_orders set status = 'completed', completed_at = now() where id = $1",
            order.id
        )
        .execute(&mut *conn)
        .await?;
        let customers = sqlx::query_scalar!(
            "select id from users where customer_id = $1 and active",
            order.customer_id
        )
        .fetch_all(&mut *conn)
        .await?;
        for user in customers {
            documents::grant(&mut *conn, doc, user, Mode::Read).await?;
        }
    }
    Ok(Projected::Updated)
}

/// The projected report as staff see it, with the reason the latest content was refused, if it was.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportView {
    #[serde(flatten)]
    pub report: FieldReport,
    pub projected_at: Option<DateTime<Utc>>,
    pub projection_error: Option<String>,
    pub error_at: Option<DateTime<Utc>>,
}

pub async fn view(db: &mut PgConnection, work_order_id: Uuid) -> Result<ReportView> {
    let Some(r) = sqlx::query!(
        "select arrival_at, departure_at, treatment_type, areas_treated, target_pest, observations,
                recommendations, photos, signature_blob, signed_by, completed, projected_at,
                projection_error, error_at
         from field_reports where work_order_id = $1",
        work_order_id
    )
    .fetch_optional(&mut *db)
    .await?
    else {
        return Err(Error::not_found("work_order_not_found", "work order"));
    };
    let products = sqlx::query!(
        r#"select name, active_ingredient, registration_number, lot, quantity::float8 as quantity,
                  unit, dose
           from field_report_products where work_order_id = $1 order by position"#,
        work_order_id
    )
    .fetch_all(&mut *db)
    .await?
    .into_iter()
    .map(|p| Product {
        name: p.name,
        active_ingredient: p.active_ingredient,
        registration_number: p.registration_number,
        lot: p.lot,
        quantity: p.quantity,
        unit: p.unit,
        dose: p.dose,
    })
    .collect();
    Ok(ReportView {
        report: FieldReport {
            arrival_at: r.arrival_at,
            departure_at: r.departure_at,
            treatment_type: r.treatment_type,
            areas_treated: r.areas_treated,
            target_pest: r.target_pest,
            products,
            observations: r.observations,
            recommendations: r.recommendations,
            photos: r.photos,
            signature: r.signature_blob.map(|blob| Signature {
                blob,
                signed_by: r.signed_by,
            }),
            completed: r.completed,
        },
        projected_at: r.projected_at,
        projection_error: r.projection_error,
        error_at: r.error_at,
    })
}
