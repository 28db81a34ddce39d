//! What the apps send and receive. Field names are the contract (snake_case JSON).

use std::collections::HashMap;

use atiende_core::blobs::Attachment;
use atiende_core::cases::{Case, CaseEvent, Message};
use atiende_core::types::{CaseStatus, CaseType, Channel, DocumentType, Level, Priority, Role};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};
use uuid::Uuid;

/// The characters Rust's `trim` and `char::is_whitespace` take (Unicode White_Space), spelled out
/// for a regex character class, because `\\s` means another set in each regex dialect.
const WHITESPACE: &str =
    "\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";

/// A pattern for a text the server trims before it checks it against `inner`.
pub(crate) fn trimmed(inner: &str) -> String {
    format!("^[{WHITESPACE}]*{inner}[{WHITESPACE}]*$")
}

/// At least one character that `trim` keeps.
fn not_blank() -> String {
    format!("[^{WHITESPACE}]")
}

/// A text the server trims and refuses when blank or longer than `MAX` characters.
pub(crate) fn text<const MAX: usize>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX))
        .pattern(Some(not_blank()))
        .description(Some(format!(
            "Not blank; at most {MAX} characters once surrounding whitespace is trimmed."
        )))
        .build()
}

/// Absent, null, or a text as [`text`] says.
pub(crate) fn optional_text<const MAX: usize>() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .min_length(Some(1))
        .max_length(Some(MAX))
        .pattern(Some(not_blank()))
        .description(Some(format!(
            "Null, or not blank and at most {MAX} characters once surrounding whitespace is trimmed."
        )))
        .build()
}

/// A blob id: the SHA-256 of its bytes in lower-case hex.
pub(crate) const BLOB_ID: &str = "^[0-9a-f]{64}$";

pub(crate) fn blob_id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(BLOB_ID))
        .description(Some(
            "SHA-256 of the blob's bytes, 64 lower-case hex digits",
        ))
        .build()
}

fn attachments() -> Array {
    ArrayBuilder::new()
        .items(blob_id())
        .max_items(Some(atiende_core::blobs::MAX_ATTACHMENTS))
        .description(Some(
            "SHA-256 ids of blobs the caller uploaded with `PUT /api/v1/blobs/{sha256}` or may see; from staff, blobs the case's customer may be shown. An id that names no such blob is `unknown_attachment`.",
        ))
        .build()
}

/// A process code as `atiende_core::processes::parse_code` reads it: trimmed and upper-cased.
pub(crate) fn process_code() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed("[A-Za-z][A-Za-z0-9_]{1,31}")))
        .description(Some(
            "A process code, e.g. `OPERATIVO`: 2 to 32 letters, digits or `_`, starting with a letter; read trimmed and upper-cased.",
        ))
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(schema_with = email)]
    pub email: String,
    /// At least 8 characters and at most 1024 bytes.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    #[schema(schema_with = text::<200>)]
    pub name: String,
    #[schema(schema_with = phone)]
    pub phone: Option<String>,
    pub document_type: DocumentType,
    #[schema(schema_with = document_number)]
    pub document_number: String,
    /// Must be true: the customer accepts the data-processing policy (Ley 1581 de 2012).
    #[schema(schema_with = must_be_true)]
    pub accept_data_policy: bool,
    /// `es` (default) or `en`.
    #[schema(schema_with = language)]
    pub language: Option<String>,
}

/// As `atiende_core::auth::parse_email` reads it.
pub(crate) fn email() -> Object {
    let w = WHITESPACE;
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(254))
        .pattern(Some(trimmed(&format!(
            "[^{w}@]+@[^{w}@.][^{w}@]*\\.[^{w}@]*[^{w}@.]"
        ))))
        .description(Some(
            "An e-mail address, read trimmed and lower-cased; at most 254 bytes.",
        ))
        .build()
}

/// As `atiende_core::auth::parse_phone` reads it.
pub(crate) fn phone() -> Object {
    let w = WHITESPACE;
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(format!("^[{w}-]*\\+?([{w}-]*[0-9]){{7,15}}[{w}-]*$")))
        .description(Some(
            "7 to 15 digits, optionally after a `+`; spaces and dashes are ignored.",
        ))
        .build()
}

/// As `atiende_core::auth::parse_document_number` reads it.
pub(crate) fn document_number() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed("[A-Za-z0-9-]{3,20}")))
        .description(Some(
            "3 to 20 letters, digits or dashes; read trimmed and upper-cased.",
        ))
        .build()
}

fn must_be_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .description(Some(
            "Must be true: the customer accepts the data-processing policy (Ley 1581 de 2012).",
        ))
        .build()
}

pub(crate) fn language() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([Some("es"), Some("en"), None]))
        .description(Some("`es` (the default) or `en`."))
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordSetupRequest {
    /// The token of the link e-mailed to the customer: the last part of its path.
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
    /// At least 8 characters and at most 1024 bytes.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: Me,
}

/// Opens the sync WebSocket: connect to `url` (or add `?ticket=` to the sync URL) until
/// `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncTicket {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
    /// `ws://` or `wss://` URL of the sync endpoint with the ticket.
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub language: String,
    pub customer_id: Option<Uuid>,
    /// Codes of the processes a staff member belongs to or leads.
    pub processes: Vec<String>,
    /// A customer's outbox document (`automerge:` URL): PQRS drafted offline, ratings and survey
    /// answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_url: Option<String>,
    /// A customer's inbox document, written by the server: radicados, statuses, answers, survey
    /// invitations with their questions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox_url: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FileCaseRequest {
    /// Generated by the app; sending the same id and body again returns the same case.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub case_type: CaseType,
    #[schema(schema_with = text::<200>)]
    pub subject: String,
    #[schema(schema_with = text::<10000>)]
    pub description: String,
    /// The visit the case is about: one of the caller's own work orders (`unknown_work_order`
    /// otherwise).
    #[serde(default)]
    pub work_order_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rating {
    pub score: i16,
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub kind: String,
    pub at: DateTime<Utc>,
    pub actor_role: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub comment: Option<String>,
}

impl From<CaseEvent> for EventView {
    fn from(e: CaseEvent) -> Self {
        EventView {
            kind: e.kind,
            at: e.at,
            actor_role: e.actor_role,
            from_status: e.from_status,
            to_status: e.to_status,
            comment: e.comment,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffEventView {
    pub id: i64,
    pub actor_id: Option<Uuid>,
    #[serde(flatten)]
    pub event: EventView,
}

impl From<CaseEvent> for StaffEventView {
    fn from(e: CaseEvent) -> Self {
        StaffEventView {
            id: e.id,
            actor_id: e.actor_id,
            event: e.into(),
        }
    }
}

/// A blob attached to a case or message; download it from `GET /api/v1/blobs/{sha256}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    pub sha256: String,
    pub content_type: String,
    /// Bytes.
    pub size: i64,
}

impl From<Attachment> for AttachmentView {
    fn from(a: Attachment) -> Self {
        AttachmentView {
            sha256: a.sha256,
            content_type: a.content_type,
            size: a.size,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub from_staff: bool,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub attachments: Vec<AttachmentView>,
}

impl MessageView {
    pub fn new(m: Message, attachments: Vec<Attachment>) -> Self {
        MessageView {
            id: m.id,
            from_staff: m.from_staff,
            body: m.body,
            created_at: m.created_at,
            attachments: attachments.into_iter().map(Into::into).collect(),
        }
    }
}

/// A case's messages with their attachments, and the attachments of the case itself.
pub fn with_attachments(
    messages: Vec<Message>,
    attachments: Vec<Attachment>,
) -> (Vec<MessageView>, Vec<AttachmentView>) {
    let mut by_message: HashMap<Uuid, Vec<Attachment>> = HashMap::new();
    let mut on_case = Vec::new();
    for a in attachments {
        match a.message_id {
            Some(id) => by_message.entry(id).or_default().push(a),
            None => on_case.push(a.into()),
        }
    }
    let views = messages
        .into_iter()
        .map(|m| {
            let mine = by_message.remove(&m.id).unwrap_or_default();
            MessageView::new(m, mine)
        })
        .collect();
    (views, on_case)
}

/// A case as its customer sees it: no internal drafts, reviews or assignees.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerCase {
    pub id: Uuid,
    pub radicado: String,
    #[serde(rename = "type")]
    pub case_type: CaseType,
    pub subject: String,
    pub description: String,
    pub channel: Channel,
    pub status: CaseStatus,
    pub priority: Priority,
    /// The date by which the company must answer (Ley 1755 de 2015), `YYYY-MM-DD`.
    pub legal_due_date: NaiveDate,
    /// When the company received the request; the legal term runs from it.
    pub received_at: DateTime<Utc>,
    /// When the case was registered and numbered: later than `received_at` when staff registered
    /// a call, a visit or a letter afterwards.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The filing acknowledgement in the customer's language: radicado and legal answer date.
    pub acknowledgement: String,
    /// The answer, once the case is closed.
    pub answer: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub rating: Option<Rating>,
    /// The visit the case is about, when it names one.
    pub work_order_id: Option<Uuid>,
    /// On the single-case view, the latest events (at most 50), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
    /// Present when older events exist: the `cursor` for `GET /api/v1/cases/{id}/events`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_before: Option<String>,
    /// On the single-case view, the latest messages (at most 50), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageView>>,
    /// Present when older messages exist: the `cursor` for `GET /api/v1/cases/{id}/messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_before: Option<String>,
    /// Blobs attached to the case itself rather than to a message, on the single-case view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentView>>,
}

fn rating(c: &Case) -> Option<Rating> {
    c.rating_score.map(|score| Rating {
        score,
        comment: c.rating_comment.clone(),
    })
}

impl CustomerCase {
    /// The customer's view of a case, with texts in `language`.
    pub fn new(c: Case, language: &str) -> Self {
        let acknowledgement = atiende_core::texts::acknowledgement(
            language,
            c.case_type,
            &c.radicado,
            c.legal_due_date,
        );
        let answered = matches!(c.status, CaseStatus::Answered | CaseStatus::Rated);
        CustomerCase {
            rating: rating(&c),
            id: c.id,
            radicado: c.radicado,
            case_type: c.case_type,
            subject: c.subject,
            description: c.description,
            channel: c.channel,
            status: c.status,
            priority: c.priority,
            legal_due_date: c.legal_due_date,
            received_at: c.received_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            acknowledgement,
            answer: if answered { c.answer } else { None },
            answered_at: c.answered_at,
            work_order_id: c.work_order_id,
            events: None,
            events_before: None,
            messages: None,
            messages_before: None,
            attachments: None,
        }
    }
}

/// A case as staff see it, with the internal fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffCase {
    pub id: Uuid,
    pub radicado: String,
    #[serde(rename = "type")]
    pub case_type: CaseType,
    pub subject: String,
    pub description: String,
    pub channel: Channel,
    pub status: CaseStatus,
    pub priority: Priority,
    pub impact: Level,
    pub urgency: Level,
    pub customer_id: Uuid,
    pub process: Option<String>,
    pub assignee_id: Option<Uuid>,
    /// The draft or approved answer.
    pub answer: Option<String>,
    pub in_favor_of_customer: Option<bool>,
    pub outcome: Option<String>,
    pub rating: Option<Rating>,
    pub legal_term_days: i32,
    pub legal_due_date: NaiveDate,
    /// When the company received the request; the legal term runs from it.
    pub received_at: DateTime<Utc>,
    /// When the case was registered and numbered: later than `received_at` when staff registered
    /// a call, a visit or a letter afterwards.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    /// The visit the case is about, when it names one.
    pub work_order_id: Option<Uuid>,
    /// The legal term and the SLA clocks, on the single-case view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clocks: Option<atiende_core::deadlines::CaseClocks>,
    /// On the single-case view, the latest events (at most 50), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<StaffEventView>>,
    /// Present when older events exist: the `cursor` for `GET /api/v1/staff/cases/{id}/events`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_before: Option<String>,
    /// On the single-case view, the latest messages (at most 50), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageView>>,
    /// Present when older messages exist: the `cursor` for `GET /api/v1/staff/cases/{id}/messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_before: Option<String>,
    /// Blobs attached to the case itself rather than to a message, on the single-case view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentView>>,
}

impl From<Case> for StaffCase {
    fn from(c: Case) -> Self {
        StaffCase {
            rating: rating(&c),
            id: c.id,
            radicado: c.radicado,
            case_type: c.case_type,
            subject: c.subject,
            description: c.description,
            channel: c.channel,
            status: c.status,
            priority: c.priority,
            impact: c.impact,
            urgency: c.urgency,
            customer_id: c.customer_id,
            process: c.process_code,
            assignee_id: c.assignee_id,
            answer: c.answer,
            in_favor_of_customer: c.in_favor_of_customer,
            outcome: c.outcome,
            legal_term_days: c.legal_term_days,
            legal_due_date: c.legal_due_date,
            received_at: c.received_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            answered_at: c.answered_at,
            work_order_id: c.work_order_id,
            clocks: None,
            events: None,
            events_before: None,
            messages: None,
            messages_before: None,
            attachments: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignRequest {
    #[schema(schema_with = process_code)]
    pub process: String,
    /// A collaborator of that process; optional.
    pub assignee: Option<Uuid>,
    pub impact: Level,
    pub urgency: Level,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DraftRequest {
    #[schema(schema_with = text::<20000>)]
    pub answer: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ApproveRequest {
    #[schema(schema_with = optional_text::<2000>)]
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReturnRequest {
    /// What to change.
    #[schema(schema_with = text::<2000>)]
    pub comment: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CloseRequest {
    pub in_favor_of_customer: bool,
    #[schema(schema_with = optional_text::<2000>)]
    pub outcome: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RatingRequest {
    /// 1 (bad) to 5 (excellent).
    #[serde(deserialize_with = "atiende_core::input::whole_number")]
    #[schema(minimum = 1, maximum = 5)]
    pub score: i64,
    /// At most 2000 characters once trimmed; a blank comment is no comment.
    #[schema(nullable, max_length = 2000)]
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageRequest {
    #[schema(schema_with = text::<5000>)]
    pub body: String,
    /// SHA-256 ids of blobs the caller uploaded with `PUT /api/v1/blobs/{sha256}` or may see, at
    /// most 10; from staff, blobs the case's customer may be shown.
    #[serde(default)]
    #[schema(schema_with = attachments)]
    pub attachments: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HolidayView {
    pub date: NaiveDate,
    pub name: String,
    #[schema(schema_with = holiday_source)]
    pub source: String,
}

fn holiday_source() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["law", "override"]))
        .description(Some(
            "`law`: a national holiday by law; `override`: declared by the admin.",
        ))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HolidaysResponse {
    pub year: i32,
    pub holidays: Vec<HolidayView>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestInfoRequest {
    /// What the customer must send; they see it as a message.
    #[schema(schema_with = text::<5000>)]
    pub question: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ExtendRequest {
    /// The new legal due date, `YYYY-MM-DD`.
    pub new_due_date: NaiveDate,
    /// Why, sent to the customer.
    #[schema(schema_with = text::<2000>)]
    pub reason: String,
}
