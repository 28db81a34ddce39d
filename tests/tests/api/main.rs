//! End-to-end tests of the HTTP API against a real PostgreSQL: each test gets its own migrated
//! database from `#[sqlx::test]` and starts the real server on an ephemeral port.

mod app_users;
mod auth;
mod bad_input;
mod blobs;
mod calendar;
mod case_lists;
mod channels;
mod contract;
mod deadlines;
mod email;
mod filing;
mod intake;
mod isolation;
mod js_sync;
mod letters;
mod lifecycle;
mod login_limits;
mod mailbox;
mod ops;
mod outbox;
mod push;
mod scheduler;
mod sessions;
mod smtp_receiver;
mod staff_scope;
mod surveys;
mod sync_support;
mod telegram;
mod terms;
mod web;
mod web_browser;
mod web_link_code;
mod whatsapp;
mod withdrawal;
mod work_orders;
