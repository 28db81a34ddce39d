//! Atiende's domain: customers, users and their roles, processes, PQRS cases and their lifecycle,
//! the Colombian business calendar, and their persistence in PostgreSQL. Nothing here knows HTTP.

pub mod account_setup;
pub mod auth;
pub mod blobs;
pub mod calendar;
pub mod case_links;
pub mod cases;
pub mod clocks;
pub mod commercial;
pub mod contacts;
pub mod customer_documents;
pub mod customers;
pub mod dashboard;
pub mod deadlines;
pub mod doc_id;
pub mod documents;
pub mod error;
pub mod field_reports;
pub mod holidays;
pub mod indicators;
pub mod input;
pub mod letters;
pub mod link_codes;
pub mod login_limits;
pub mod monthly_reports;
pub mod notifications;
pub mod outbox;
pub mod processes;
pub mod push_endpoint;
pub mod scheduler;
pub mod survey_documents;
pub mod surveys;
pub mod sync_tickets;
pub mod terms;
pub mod texts;
pub mod types;
pub mod work_orders;
pub mod worker;

pub use error::{Error, Result};

rust_i18n::i18n!("../locales", fallback = "es");

/// The schema, embedded so every binary migrates the database it is given.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
