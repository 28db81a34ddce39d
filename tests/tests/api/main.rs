//! End-to-end tests of the HTTP API against a real PostgreSQL: each test gets its own migrated
//! database from `#[sqlx::test]` and starts the real server on an ephemeral port.

mod auth;
mod bad_input;
mod calendar;
mod deadlines;
mod filing;
mod isolation;
mod lifecycle;
mod ops;
mod push;
mod scheduler;
