//! PQRS cases: filing with a gapless radicado and the legal due date, the PRO-SIG-10 lifecycle
//! with its role rules, the append-only event log, messages, and the queries behind the apps.
//!
//! The module is laid out as the work is: [`filing`] takes a case in, [`queries`] reads cases,
//! [`lifecycle`] says which move is legal from which status (pure, no database), and [`moves`]
//! makes the moves. The types every part shares are here.

mod filing;
mod lifecycle;
mod moves;
mod queries;
mod waiting;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::User;
use crate::types::{CaseStatus, CaseType, Channel, Level, Priority, Role};

pub use filing::{
    Filed, MAX_BACKDATE_BUSINESS_DAYS, NewCase, Registration, file, file_received, register,
};
pub use lifecycle::{Action, next_status};
pub use moves::{
    Assignment, Closing, add_message, approve, assign, close, comment_rating, draft,
    extend_legal_term, rate, reclassify, request_info, return_draft, set_work_order,
};
pub use queries::{
    CustomerCursor, LATEST, MessageCursor, QueueCursor, QueueFilter, QueueOrder, VisitCase, events,
    fetch_many, for_work_order, get, get_for_customer, get_for_staff, list_for_customer, messages,
    staff_queue,
};
pub use waiting::{DEFAULT_REMINDER_AFTER, Swept, sweep as sweep_waiting};

/// The rating prompt follows the answer after the customer had a while to read it.
pub const RATING_PROMPT_DELAY: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize)]
pub struct Case {
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
    pub process_code: Option<String>,
    pub assignee_id: Option<Uuid>,
    pub answer: Option<String>,
    pub in_favor_of_customer: Option<bool>,
    pub outcome: Option<String>,
    pub rating_score: Option<i16>,
    pub rating_comment: Option<String>,
    pub legal_term_days: i32,
    pub legal_due_date: NaiveDate,
    /// When the company received the request; the legal term runs from it.
    pub received_at: DateTime<Utc>,
    /// When the case was registered (numbered); later than `received_at` for a case staff took
    /// by phone, at the front desk or by letter.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub rated_at: Option<DateTime<Utc>>,
    /// The visit the case is about, when it names one.
    pub work_order_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseEvent {
    pub id: i64,
    pub kind: String,
    pub actor_id: Option<Uuid>,
    pub actor_role: String,
    pub at: DateTime<Utc>,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: Uuid,
    /// The user who wrote it, or the customer when they have no app user.
    pub author_id: Option<Uuid>,
    pub author_customer_id: Option<Uuid>,
    pub from_staff: bool,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// Who acts on a case: a user of the apps (staff, or a customer's app user), or a customer who
/// has no app user (writing from a chat or the web form).
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    User(&'a User),
    Customer(Uuid),
}

impl<'a> From<&'a User> for Actor<'a> {
    fn from(user: &'a User) -> Self {
        Actor::User(user)
    }
}

impl Actor<'_> {
    pub fn user_id(self) -> Option<Uuid> {
        match self {
            Actor::User(u) => Some(u.id),
            Actor::Customer(_) => None,
        }
    }

    pub fn role(self) -> Role {
        match self {
            Actor::User(u) => u.role,
            Actor::Customer(_) => Role::Customer,
        }
    }

    /// The customer acting, or the one an app user belongs to.
    pub fn customer_id(self) -> Option<Uuid> {
        match self {
            Actor::User(u) => u.customer_id,
            Actor::Customer(id) => Some(id),
        }
    }
}
