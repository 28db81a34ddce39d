//! Cases that would wait for ever (Ley 1755 de 2015, art. 17): the customer who does not answer a
//! request for information is reminded once, and a month after the request the case is closed as
//! tacitly withdrawn, with nothing counted as late.

use std::time::Duration;

use atiende_core::cases::sweep_waiting;
use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const REMIND_AFTER: Duration = Duration::from_secs(15 * 24 * 3600);

/// The server's own scheduler waits an hour between rounds, so the test decides when rounds run.
async fn app(pool: PgPool) -> (TestApp, Org, String) {
    let settings = Settings {
        scheduler_interval_ms: 3_600_000,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool, settings).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    (app, org, customer)
}

/// A case filed, assigned and waiting on the customer's answer to a question.
async fn waiting_case(app: &TestApp, org: &Org, customer: &str) -> String {
    let case = app.file(customer, "reclamo").await;
    let id = case["id"].as_str().expect("id").to_owned();
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/assign"),
            Some(&org.director),
            json!({"process": "OPERATIVO", "assignee": org.collaborator_id, "impact": "medium", "urgency": "medium"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.collaborator),
            json!({"question": "¿Cuál es el número de la factura?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "waiting_customer");
    id
}

/// Moves everything the case did `interval` into the past, as if it had happened then (the trail
/// is append-only, so the test lifts that rule for a moment).
async fn age(app: &TestApp, id: &str, interval: &str) {
    let id: Uuid = id.parse().expect("uuid");
    let mut tx = app.pool.begin().await.expect("tx");
    for sql in [
        "alter table case_events disable trigger case_events_no_update",
        "alter table case_clock_events disable trigger case_clock_events_no_update",
        "update case_events set at = at - $2::interval where case_id = $1",
        "update case_clock_events set at = at - $2::interval where case_id = $1",
        "update cases set created_at = created_at - $2::interval, received_at = received_at - $2::interval where id = $1",
        "alter table case_events enable trigger case_events_no_update",
        "alter table case_clock_events enable trigger case_clock_events_no_update",
    ] {
        let q = sqlx::query(sql);
        let q = if sql.contains("$1") {
            q.bind(id).bind(interval)
        } else {
            q
        };
        q.execute(&mut *tx).await.expect(sql);
    }
    tx.commit().await.expect("commit");
}

async fn notices(app: &TestApp, id: &str, kind: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "select data from notifications where case_id = $1::uuid and kind = $2 order by id",
    )
    .bind(id)
    .bind(kind)
    .fetch_all(&app.pool)
    .await
    .expect("notifications")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_unanswered_request_is_reminded_once_then_withdrawn_after_a_month(pool: PgPool) {
    let (app, org, customer) = app(pool).await;
    let id = waiting_case(&app, &org, &customer).await;

    // Ten days on: nothing yet.
    age(&app, &id, "10 days").await;
    let swept = sweep_waiting(&app.pool, REMIND_AFTER, 100)
        .await
        .expect("sweep");
    assert_eq!((swept.reminded, swept.withdrawn), (0, 0));

    // Sixteen days on: one reminder, however many rounds run.
    age(&app, &id, "6 days").await;
    for round in 0..3 {
        let swept = sweep_waiting(&app.pool, REMIND_AFTER, 100)
            .await
            .expect("sweep");
        assert_eq!(
            (swept.reminded, swept.withdrawn),
            (usize::from(round == 0), 0)
        );
    }
    let reminders = notices(&app, &id, "information_reminder").await;
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    let requested: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select at from case_events where case_id = $1::uuid and kind = 'information_requested'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("request");
    let withdraw_on = atiende_core::calendar::local_date(requested)
        .checked_add_months(chrono::Months::new(1))
        .expect("a month later");
    assert_eq!(reminders[0]["withdraw_on"], json!(withdraw_on));
    let (_, body) = atiende_core::texts::push("es", "information_reminder", &reminders[0]);
    assert!(body.contains("desistimiento"), "{body}");

    // A month and a day after the request: withdrawn, once.
    age(&app, &id, "16 days").await;
    let swept = sweep_waiting(&app.pool, REMIND_AFTER, 100)
        .await
        .expect("sweep");
    assert_eq!((swept.reminded, swept.withdrawn), (0, 1));
    let swept = sweep_waiting(&app.pool, REMIND_AFTER, 100)
        .await
        .expect("sweep");
    assert_eq!(swept.withdrawn, 0);

    let mine = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(mine.body["status"], "withdrawn", "{}", mine.body);
    let event = mine.body["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "withdrawn"))
        .cloned()
        .expect("the customer sees why");
    assert!(
        event["comment"]
            .as_str()
            .is_some_and(|c| c.contains("art. 17")),
        "{event}"
    );
    let told = notices(&app, &id, "withdrawn").await;
    assert_eq!(told.len(), 1);
    let (_, body) = atiende_core::texts::push("en", "withdrawn", &told[0]);
    assert!(body.contains("file it again"), "{body}");

    // Nothing counts as late, and no alert is left to fire.
    let staff = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&org.director))
        .await;
    let clocks = &staff.body["clocks"];
    assert_ne!(clocks["legal"]["status"], "breached", "{clocks}");
    assert_ne!(clocks["resolution"]["status"], "running", "{clocks}");
    let pending: i64 = sqlx::query_scalar(
        "select count(*) from deadline_alerts where case_id = $1::uuid and fired_at is null",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("alerts");
    assert_eq!(pending, 0);

    // The case takes no more moves or messages.
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&customer),
            json!({"body": "Aquí está la factura 123"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "case_withdrawn")
    );
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/draft"),
            Some(&org.collaborator),
            json!({"answer": "Respuesta"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "case_withdrawn")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_customer_who_answers_keeps_the_case(pool: PgPool) {
    let (app, org, customer) = app(pool).await;
    let id = waiting_case(&app, &org, &customer).await;
    age(&app, &id, "20 days").await;
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&customer),
            json!({"body": "La factura es la 123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    age(&app, &id, "20 days").await;
    let swept = sweep_waiting(&app.pool, REMIND_AFTER, 100)
        .await
        .expect("sweep");
    assert_eq!((swept.reminded, swept.withdrawn), (0, 0));
    let mine = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(mine.body["status"], "assigned");
}
