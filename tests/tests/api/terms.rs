//! The terms filing reads (legal terms, calendar, working hours) are read once per process while
//! its listener is connected, and read again after any change, however it is made.

use std::time::Duration;

use atiende_core::calendar::{BusinessCalendar, HolidayOverride, local_date};
use atiende_core::terms;
use atiende_tests::{TestApp, spawn_app};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::PgPool;

/// A filed case's legal term in business days (as the customer sees it: from the day it was
/// filed to its due date), its due date, and the day it was filed.
fn term_of(case: &Value) -> (u32, NaiveDate, NaiveDate) {
    let created: DateTime<Utc> = case["created_at"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("created_at");
    let due = case["legal_due_date"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("legal_due_date");
    let filed_on = local_date(created);
    let calendar = BusinessCalendar::default();
    let days = (1..=60)
        .find(|&days| calendar.add_business_days(filed_on, days) == due)
        .expect("a due date within 60 business days");
    (days, due, filed_on)
}

async fn until_kept(app: &TestApp) {
    for _ in 0..200 {
        if terms::kept(&app.pool) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the terms listener never connected");
}

/// Files peticiones until one has `days` as its legal term; gives up after 10 s.
async fn file_until_term(app: &TestApp, token: &str, days: u32) -> Value {
    for _ in 0..100 {
        let case = app.file(token, "peticion").await;
        if term_of(&case).0 == days {
            return case;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("filing never used a legal term of {days} days");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn filing_reads_the_terms_once_until_they_change(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    until_kept(&app).await;

    let first = app.file(&customer, "peticion").await;
    let loads = terms::loads(&app.pool);
    for _ in 0..5 {
        let again = app.file(&customer, "reclamo").await;
        assert_eq!(term_of(&again).0, 15);
    }
    assert_eq!(
        terms::loads(&app.pool),
        loads,
        "the terms were read again with nothing changed"
    );
    assert_eq!(term_of(&first).0, 15);

    // An admin changes a legal term straight in the database, as psql would: the next filings
    // use it, without a restart.
    sqlx::query("update legal_terms set business_days = 20 where case_type = 'peticion'")
        .execute(&app.pool)
        .await
        .expect("change the term");
    let case = file_until_term(&app, &customer, 20).await;
    let (_, due, filed_on) = term_of(&case);
    assert_eq!(
        due,
        BusinessCalendar::default().add_business_days(filed_on, 20)
    );
    assert!(terms::loads(&app.pool) > loads);

    // A holiday declared through the admin functions moves the next due date.
    let loads = terms::loads(&app.pool);
    let (_, due_before, _) = term_of(&app.file(&customer, "peticion").await);
    atiende_core::holidays::add_override(&app.pool, due_before, "Día cívico")
        .await
        .expect("declare a holiday");
    let with_holiday = BusinessCalendar::new([HolidayOverride::Add {
        date: due_before,
        name: "Día cívico".into(),
    }]);
    let mut moved = false;
    for _ in 0..100 {
        let (_, due, on) = term_of(&app.file(&customer, "peticion").await);
        if due == with_holiday.add_business_days(on, 20) {
            assert_ne!(due, BusinessCalendar::default().add_business_days(on, 20));
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        moved,
        "the holiday on {due_before} never moved the due date"
    );
    assert!(terms::loads(&app.pool) > loads);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn without_a_listener_the_terms_are_read_every_time(pool: PgPool) {
    assert!(!terms::kept(&pool));
    let before = terms::loads(&pool);
    let a = terms::current(&pool).await.expect("terms");
    let b = terms::current(&pool).await.expect("terms");
    assert_eq!(terms::loads(&pool), before + 2);
    assert_eq!(
        a.legal_term_days(atiende_core::types::CaseType::Consulta)
            .expect("consulta"),
        30
    );
    assert_eq!(b.schedule.warning_percents, vec![50, 75, 90]);
}
