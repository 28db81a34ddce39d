//! `GET/POST /pqrs`: the filing form and what its submission does. Everything is checked before
//! anything is written; the form carries a filing id made when it was rendered, which becomes the
//! case id, so the same form posted twice files once.

use askama::Template;
use atiende_core::blobs::{self, BlobId};
use atiende_core::cases::{self, Filed, NewCase};
use atiende_core::contacts::{self, Door, NewContact};
use atiende_core::input::{self, Text};
use atiende_core::types::{CaseType, Channel, DocumentType};
use atiende_core::{Error, auth, case_links, texts};
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::guard::{self, Csrf};
use crate::lang::Lang;
use crate::pages::{self, Base, Errors, FieldError};
use crate::{MAX_ATTACHMENTS, MAX_FIELD_BYTES, WebState};

/// The types a person may choose on the web form.
const CASE_TYPES: [CaseType; 7] = [
    CaseType::Peticion,
    CaseType::Queja,
    CaseType::Reclamo,
    CaseType::Sugerencia,
    CaseType::Denuncia,
    CaseType::DatosConsulta,
    CaseType::DatosReclamo,
];

/// What the person typed, given back when the form has errors (never the files).
#[derive(Debug, Default, Clone)]
pub struct Values {
    pub consent: bool,
    pub document_type: String,
    pub document_number: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub case_type: String,
    pub subject: String,
    pub description: String,
}

impl Values {
    pub fn is_document_type(&self, value: &str) -> bool {
        self.document_type == value
    }
    pub fn is_case_type(&self, value: &str) -> bool {
        self.case_type == value
    }
}

pub struct InputField {
    pub name: &'static str,
    pub label: String,
    pub kind: &'static str,
    pub value: String,
    pub autocomplete: &'static str,
    pub hint: Option<()>,
}

#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage<'a> {
    pub base: Base<'a>,
    pub csrf: String,
    pub filing_id: Uuid,
    pub policy: String,
    pub values: Values,
    pub errors: Vec<FieldError>,
    pub document_types: Vec<(&'static str, String)>,
    pub identity_fields: Vec<InputField>,
    pub case_types: Vec<(&'static str, String)>,
    pub attachments_hint: String,
}

impl Errors for FormPage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Template)]
#[template(path = "filed.html")]
pub struct FiledPage<'a> {
    pub base: Base<'a>,
    pub radicado: String,
    pub case_type: String,
    pub due_date: String,
    /// The case page's path, and the same as a full URL to keep.
    pub link: String,
    pub full_link: String,
    /// The form's CSRF token, for the offer to link the filing to a customer record.
    pub csrf: String,
    pub link_action: String,
}

fn form_page<'a>(
    state: &'a WebState,
    lang: Lang,
    csrf: String,
    filing_id: Uuid,
    values: Values,
    errors: Vec<FieldError>,
) -> FormPage<'a> {
    let field = |name, key: &str, kind, value: &str, autocomplete, hint| InputField {
        name,
        label: lang.t(key),
        kind,
        value: value.to_owned(),
        autocomplete,
        hint,
    };
    let identity_fields = vec![
        field(
            "document_number",
            "form.document_number",
            "text",
            &values.document_number,
            "off",
            None,
        ),
        field("name", "form.name", "text", &values.name, "name", None),
        field(
            "email",
            "form.email",
            "email",
            &values.email,
            "email",
            Some(()),
        ),
        field("phone", "form.phone", "tel", &values.phone, "tel", Some(())),
    ];
    FormPage {
        base: Base::new(state, lang, lang.t("form.title"), "/pqrs"),
        csrf,
        filing_id,
        policy: lang.t_with(
            "form.policy_text",
            &[("company", &state.brand.company_name)],
        ),
        document_types: DocumentType::ALL
            .iter()
            .map(|d| (d.as_str(), lang.t(&format!("doc_type.{}", d.as_str()))))
            .collect(),
        identity_fields,
        case_types: CASE_TYPES
            .iter()
            .map(|t| (t.as_str(), texts::case_type(lang.code(), *t)))
            .collect(),
        attachments_hint: lang.t_with(
            "form.attachments_hint",
            &[
                ("count", &MAX_ATTACHMENTS.to_string()),
                ("mb", &pages::megabytes(state.blob_limit)),
            ],
        ),
        values,
        errors,
    }
}

/// The empty form, with a new filing id.
pub async fn show(State(state): State<WebState>, lang: Lang, headers: HeaderMap) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let page = form_page(
        &state,
        lang,
        csrf.token.clone(),
        Uuid::new_v4(),
        Values::default(),
        Vec::new(),
    );
    csrf.set_cookie(pages::html(StatusCode::OK, &page))
}

/// A file as it came in the form.
struct Upload {
    file_name: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// The form as it was posted, before it is checked.
#[derive(Default)]
struct Posted {
    csrf: Option<String>,
    filing_id: Option<String>,
    honeypot: String,
    values: Values,
    uploads: Vec<Upload>,
    /// Files beyond [`MAX_ATTACHMENTS`], too large ones: known while reading.
    errors: Vec<(&'static str, &'static str, Option<String>)>,
}

enum ReadError {
    TooLarge,
    Malformed,
}

fn read_error(e: MultipartError) -> ReadError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ReadError::TooLarge
    } else {
        ReadError::Malformed
    }
}

/// Reads the multipart form within its limits: text fields of at most [`MAX_FIELD_BYTES`], files
/// of at most the blob limit, and no more than [`MAX_ATTACHMENTS`] of them kept in memory.
async fn read(mut multipart: Multipart, blob_limit: usize) -> Result<Posted, ReadError> {
    let mut posted = Posted::default();
    let mut files = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(read_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "attachments" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let content_type = field.content_type().map(str::to_owned);
            let keep = files < MAX_ATTACHMENTS;
            let mut bytes = Vec::new();
            let mut too_large = false;
            let mut any = false;
            while let Some(chunk) = field.chunk().await.map_err(read_error)? {
                any |= !chunk.is_empty();
                if too_large || !keep {
                    continue;
                }
                if bytes.len() + chunk.len() > blob_limit {
                    too_large = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(&chunk);
                }
            }
            // A file input left empty still sends a part, without a name or bytes.
            if file_name.is_empty() && !any {
                continue;
            }
            files += 1;
            if !keep {
                continue;
            }
            if too_large {
                posted
                    .errors
                    .push(("attachments", "attachment_too_large", Some(file_name)));
            } else {
                posted.uploads.push(Upload {
                    file_name,
                    content_type,
                    bytes,
                });
            }
            continue;
        }
        let mut text = Vec::new();
        let mut too_long = false;
        while let Some(chunk) = field.chunk().await.map_err(read_error)? {
            if text.len() + chunk.len() > MAX_FIELD_BYTES {
                too_long = true;
            } else if !too_long {
                text.extend_from_slice(&chunk);
            }
        }
        let text = String::from_utf8(text).map_err(|_| ReadError::Malformed)?;
        let v = &mut posted.values;
        let slot = match name.as_str() {
            "csrf" => {
                posted.csrf = Some(text);
                continue;
            }
            "filing_id" => {
                posted.filing_id = Some(text);
                continue;
            }
            "website" => {
                posted.honeypot = text;
                continue;
            }
            "consent" => {
                v.consent = text == "yes";
                continue;
            }
            "document_type" => &mut v.document_type,
            "document_number" => &mut v.document_number,
            "name" => &mut v.name,
            "email" => &mut v.email,
            "phone" => &mut v.phone,
            "case_type" => &mut v.case_type,
            "subject" => &mut v.subject,
            "description" => &mut v.description,
            _ => continue,
        };
        if too_long {
            let field: &'static str = match name.as_str() {
                "document_type" => "document_type",
                "document_number" => "document_number",
                "name" => "name",
                "email" => "email",
                "phone" => "phone",
                "case_type" => "case_type",
                "subject" => "subject",
                _ => "description",
            };
            posted.errors.push((field, "field_too_long", None));
        } else {
            *slot = text;
        }
    }
    if files > MAX_ATTACHMENTS {
        posted
            .errors
            .push(("attachments", "too_many_attachments", None));
    }
    Ok(posted)
}

/// A checked filing: nothing in it can be refused for its shape.
struct Filing {
    contact: NewContact,
    case_type: CaseType,
    subject: String,
    description: String,
    /// Each file with its blob id and canonical type.
    files: Vec<(BlobId, Upload)>,
}

fn check(lang: Lang, state: &WebState, posted: Posted) -> Result<Filing, Vec<FieldError>> {
    let v = &posted.values;
    let mut errors: Vec<FieldError> = Vec::new();
    let mut fail = |field, code| errors.push(FieldError::new(lang, field, code));
    if !v.consent {
        fail("consent", "consent_required");
    }
    let document_type = v.document_type.parse::<DocumentType>().ok();
    if document_type.is_none() {
        fail("document_type", "invalid_document_type");
    }
    if auth::parse_document_number(&v.document_number).is_err() {
        fail("document_number", "invalid_document_number");
    }
    if auth::parse_name(&v.name).is_err() {
        fail("name", "invalid_name");
    }
    let email = Some(v.email.trim()).filter(|e| !e.is_empty());
    let phone = Some(v.phone.trim()).filter(|p| !p.is_empty());
    if email.is_some_and(|e| auth::parse_email(e).is_err()) {
        fail("email", "invalid_email");
    }
    if phone.is_some_and(|p| auth::parse_phone(p).is_err()) {
        fail("phone", "invalid_phone");
    }
    if email.is_none() && phone.is_none() {
        fail("email", "contact_required");
    }
    let case_type = CASE_TYPES
        .iter()
        .find(|t| t.as_str() == v.case_type)
        .copied();
    if case_type.is_none() {
        fail("case_type", "invalid_case_type");
    }
    let subject = Text::<input::Subject>::parse(&v.subject).ok();
    if subject.is_none() {
        fail("subject", "invalid_subject");
    }
    let description = Text::<input::Description>::parse(&v.description).ok();
    if description.is_none() {
        fail("description", "invalid_description");
    }
    let mut files = Vec::new();
    for upload in posted.uploads {
        let id = BlobId::of(&upload.bytes);
        if blobs::verify(&id, upload.content_type.as_deref(), &upload.bytes).is_err() {
            let text = lang.t_with(
                "error.attachment_unsupported",
                &[("file", &upload.file_name)],
            );
            errors.push(FieldError {
                field: "attachments",
                code: "attachment_unsupported",
                text,
            });
        } else {
            files.push((id, upload));
        }
    }
    for (field, code, file) in posted.errors {
        let mut e = FieldError::new(lang, field, code);
        e.text = lang.t_with(
            &format!("error.{code}"),
            &[
                ("file", file.as_deref().unwrap_or_default()),
                ("count", &MAX_ATTACHMENTS.to_string()),
                ("mb", &pages::megabytes(state.blob_limit)),
            ],
        );
        // Replaces a field's own error: a too long text is that field's only problem.
        errors.retain(|x| x.field != field || field == "attachments");
        errors.push(e);
    }
    match (document_type, case_type, subject, description) {
        (Some(document_type), Some(case_type), Some(subject), Some(description))
            if errors.is_empty() =>
        {
            Ok(Filing {
                contact: NewContact {
                    name: v.name.clone(),
                    document_type,
                    document_number: v.document_number.clone(),
                    phone: phone.map(str::to_owned),
                    email: email.map(str::to_owned),
                    language: Some(lang.code().to_owned()),
                },
                case_type,
                subject: subject.into_string(),
                description: description.into_string(),
                files,
            })
        }
        _ => Err(errors),
    }
}

/// Files the case from a posted form.
pub async fn submit(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let Ok(multipart) = multipart else {
        return pages::bad_request(&state, lang);
    };
    let posted = match read(multipart, state.blob_limit).await {
        Ok(p) => p,
        Err(ReadError::TooLarge) => return pages::too_large(&state, lang),
        Err(ReadError::Malformed) => return pages::bad_request(&state, lang),
    };
    if !guard::csrf_ok(&headers, posted.csrf.as_deref()) {
        return guard::refused(&state, lang);
    }
    let Some(filing_id) = posted
        .filing_id
        .as_deref()
        .and_then(|id| Uuid::parse_str(id).ok())
    else {
        return pages::bad_request(&state, lang);
    };
    let csrf = posted.csrf.clone().unwrap_or_default();
    if !posted.honeypot.is_empty() {
        return decoy(&state, lang, filing_id, csrf);
    }
    let values = posted.values.clone();
    let filing = match check(lang, &state, posted) {
        Ok(f) => f,
        Err(errors) => {
            let page = form_page(&state, lang, csrf, filing_id, values, errors);
            return pages::html(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    match file(&state, lang, filing_id, filing, csrf).await {
        Ok(page) => pages::html(StatusCode::OK, &page),
        Err(Error::Conflict { .. }) => pages::message(
            &state,
            lang,
            StatusCode::CONFLICT,
            "idempotency_conflict",
            "page.conflict_title",
            lang.t("page.conflict_text"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "filing from the web form");
            pages::internal_error(&state, lang)
        }
    }
}

/// Registers the filer (once per filing id), stores the files as theirs, files the case and
/// attaches them, and makes the case's link.
async fn file<'a>(
    state: &'a WebState,
    lang: Lang,
    filing_id: Uuid,
    filing: Filing,
    csrf: String,
) -> Result<FiledPage<'a>, Error> {
    let mut tx = state.db.begin().await?;
    let (registered, customer_id) = filer(&mut tx, filing_id, &filing.contact).await?;
    tx.commit().await?;
    let mut hashes = Vec::with_capacity(filing.files.len());
    for (id, upload) in &filing.files {
        let verified = blobs::verify(id, upload.content_type.as_deref(), &upload.bytes)
            .map_err(|e| Error::Internal(format!("a checked attachment failed again: {e}")))?;
        hashes.push(
            blobs::store_for_customer(&state.db, customer_id, verified)
                .await?
                .sha256,
        );
    }
    let new = NewCase {
        id: filing_id,
        case_type: filing.case_type,
        subject: filing.subject,
        description: filing.description,
        channel: Channel::Web,
        chat_id: None,
        work_order_id: None,
    };
    let case = match cases::file(&state.db, registered, None, new).await? {
        Filed::Created(c) | Filed::Existing(c) => c,
    };
    let mut tx = state.db.begin().await?;
    if !hashes.is_empty() {
        blobs::attach_customer_blobs(&mut tx, case.id, None, &hashes, customer_id).await?;
    }
    let token = case_links::token_for(&mut tx, case.id).await?;
    tx.commit().await?;
    Ok(FiledPage {
        base: Base::new(state, lang, lang.t("filed.title"), "/pqrs"),
        radicado: case.radicado,
        case_type: texts::case_type(lang.code(), case.case_type),
        due_date: texts::long_date(lang.code(), case.legal_due_date),
        full_link: format!("{}/pqrs/caso/{token}", state.public_base_url),
        link_action: crate::link::action(&format!("/pqrs/caso/{token}")),
        link: format!("/pqrs/caso/{token}"),
        csrf,
    })
}

/// Who a filing is made for: the record it registered the first time this filing id was posted,
/// else a new registration ([`contacts::register`] never hands out someone else's); and that
/// record's owner now, the customer it was merged into if it was.
async fn filer(
    conn: &mut PgConnection,
    filing_id: Uuid,
    contact: &NewContact,
) -> Result<(Uuid, Uuid), Error> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('web_filing:' || $1::uuid::text, 0))",
        filing_id
    )
    .execute(&mut *conn)
    .await?;
    let known = sqlx::query!(
        r#"select w.customer_id, coalesce(c.merged_into, c.id) as "owner!"
           from web_filings w join customers c on c.id = w.customer_id
           where w.filing_id = $1"#,
        filing_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(known) = known {
        return Ok((known.customer_id, known.owner));
    }
    let registered = contacts::register(&mut *conn, contact, Door::Web).await?;
    sqlx::query!(
        "insert into web_filings (filing_id, customer_id) values ($1, $2)",
        filing_id,
        registered.customer_id
    )
    .execute(&mut *conn)
    .await?;
    Ok((registered.customer_id, registered.customer_id))
}

/// What a filled honeypot gets: a page like the acknowledgement, with nothing filed.
fn decoy(state: &WebState, lang: Lang, filing_id: Uuid, csrf: String) -> Response {
    let today = atiende_core::calendar::local_date(Utc::now());
    let number = filing_id.as_u128() % 1_000_000;
    let page = FiledPage {
        base: Base::new(state, lang, lang.t("filed.title"), "/pqrs"),
        radicado: format!("PQRS-{}-{number:06}", chrono::Datelike::year(&today)),
        case_type: texts::case_type(lang.code(), CaseType::Peticion),
        due_date: texts::long_date(lang.code(), today + chrono::Days::new(21)),
        full_link: format!(
            "{}/pqrs/caso/pqrs_{}",
            state.public_base_url,
            filing_id.simple()
        ),
        link: format!("/pqrs/caso/pqrs_{}", filing_id.simple()),
        link_action: crate::link::action(&format!("/pqrs/caso/pqrs_{}", filing_id.simple())),
        csrf,
    };
    pages::html(StatusCode::OK, &page)
}
