use atiende_core::clocks::WorkingHours;
use atiende_core::terms::Schedule;
use atiende_tests::{Org, TestApp, spawn_app};
use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;

async fn staff_case(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(token))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an instant: {v}"))
}

fn date(v: &Value) -> NaiveDate {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a date: {v}"))
}

async fn setup(pool: PgPool) -> (TestApp, Org, String) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    (app, org, customer)
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_new_case_carries_both_clocks(pool: PgPool) {
    let (app, org, customer) = setup(pool).await;
    let filed = app.file(&customer, "queja").await;
    let id = filed["id"].as_str().expect("id");
    let created = instant(&filed["created_at"]);
    let schedule = Schedule::default();
    let add = |hours: u64| {
        WorkingHours::default().add(
            &schedule.calendar,
            created,
            Duration::from_secs(hours * 3600),
        )
    };

    let c = staff_case(&app, &org.director, id).await;
    let clocks = &c["clocks"];
    assert_eq!(clocks["legal"]["status"], "running");
    assert_eq!(clocks["legal"]["due_date"], filed["legal_due_date"]);
    assert_eq!(clocks["legal"]["extended"], false);
    assert_eq!(clocks["first_response"]["status"], "running", "{clocks}");
    // Medium priority: 4 business hours to respond, 24 to resolve.
    assert_eq!(instant(&clocks["first_response"]["due_at"]), add(4));
    assert_eq!(instant(&clocks["resolution"]["due_at"]), add(24));

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/assign"),
            Some(&org.director),
            json!({"process": "OPERATIVO", "impact": "high", "urgency": "high"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        instant(&r.body["clocks"]["resolution"]["due_at"]),
        add(4),
        "critical: 4 business hours from filing"
    );
    assert_eq!(
        instant(&r.body["clocks"]["first_response"]["due_at"]),
        add(1)
    );

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/messages"),
            Some(&org.collaborator),
            json!({"body": "Estamos revisando."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let c = staff_case(&app, &org.director, id).await;
    assert_eq!(
        c["clocks"]["first_response"]["status"], "met",
        "the first visible staff message is the first response"
    );
    assert_eq!(c["clocks"]["resolution"]["status"], "running");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn waiting_on_the_customer_pauses_the_clocks(pool: PgPool) {
    let (app, org, customer) = setup(pool).await;
    let id = app.file(&customer, "reclamo").await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "Envíe la factura, por favor."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "waiting_customer");
    let clocks = &r.body["clocks"];
    assert_eq!(
        (
            clocks["resolution"]["status"].as_str(),
            clocks["legal"]["status"].as_str()
        ),
        (Some("paused"), Some("paused")),
        "{clocks}"
    );
    assert_eq!(clocks["first_response"]["status"], "met");

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/assign"),
            Some(&org.director),
            json!({"process": "OPERATIVO", "impact": "low", "urgency": "low"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "waiting_on_customer")
    );

    let r = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(r.body["status"], "waiting_customer");
    assert!(r.body["messages"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["body"] == "Envíe la factura, por favor.")
    }));

    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&customer),
            json!({"body": "Adjunto la factura 123."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let c = staff_case(&app, &org.director, &id).await;
    assert_eq!(
        c["status"], "received",
        "the reply returns the case to where it was"
    );
    assert_eq!(c["clocks"]["resolution"]["status"], "running");
    assert_eq!(c["clocks"]["legal"]["status"], "running");
    let kinds: Vec<_> = c["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        kinds.ends_with(&[
            "staff_message".into(),
            "information_requested".into(),
            "customer_message".into(),
            "customer_replied".into()
        ]),
        "{kinds:?}"
    );

    // Once an answer is drafted, the case no longer waits on the customer.
    app.post(
        &format!("/api/v1/staff/cases/{id}/assign"),
        Some(&org.director),
        json!({"process": "OPERATIVO", "impact": "low", "urgency": "low"}),
    )
    .await;
    app.post(
        &format!("/api/v1/staff/cases/{id}/draft"),
        Some(&org.collaborator),
        json!({"answer": "Respuesta"}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.collaborator),
            json!({"question": "¿Algo más?"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "answer_in_progress")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_legal_term_is_extended_once_with_a_reason(pool: PgPool) {
    let (app, org, customer) = setup(pool).await;
    let filed = app.file(&customer, "peticion").await;
    let id = filed["id"].as_str().expect("id");
    let due = date(&filed["legal_due_date"]);
    let cal = atiende_core::calendar::BusinessCalendar::default();
    let path = format!("/api/v1/staff/cases/{id}/extend");

    let r = app
        .post(
            &path,
            Some(&org.collaborator),
            json!({"new_due_date": cal.add_business_days(due, 5), "reason": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "role_not_allowed")
    );
    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"new_due_date": due, "reason": "Necesitamos una visita técnica."}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "extension_not_later")
    );
    let r = app.post(&path, Some(&org.director), json!({"new_due_date": cal.add_business_days(due, 16), "reason": "Necesitamos una visita técnica."})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "extension_too_long"),
        "at most twice the 15-day term"
    );
    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"new_due_date": cal.add_business_days(due, 5), "reason": " "}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "reason_required")
    );

    let new_due = cal.add_business_days(due, 15);
    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"new_due_date": new_due, "reason": "Necesitamos una visita técnica."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["legal_due_date"], new_due.to_string());
    assert_eq!(r.body["clocks"]["legal"]["extended"], true);
    assert_eq!(date(&r.body["clocks"]["legal"]["due_date"]), new_due);

    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"new_due_date": cal.add_business_days(new_due, 1), "reason": "Otra vez"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "extension_already_used")
    );

    let r = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(
        r.body["legal_due_date"],
        new_due.to_string(),
        "the customer sees the new date"
    );
    assert!(
        r.body["messages"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m["body"] == "Necesitamos una visita técnica.")),
        "{}",
        r.body
    );
    assert!(
        r.body["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "legal_term_extended"))
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_queue_finds_overdue_cases_and_orders_by_sla(pool: PgPool) {
    let (app, org, customer) = setup(pool).await;
    let fresh = app.file(&customer, "consulta").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let late = app.file(&customer, "consulta").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.backdate(&late, 60).await;
    // Any move recomputes the stored due times from the events.
    // (The director: the case is not assigned, so no collaborator works it yet.)
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{late}/messages"),
            Some(&org.director),
            json!({"body": "Revisando"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let c = staff_case(&app, &org.director, &late).await;
    assert_eq!(
        c["clocks"]["resolution"]["status"], "breached",
        "{}",
        c["clocks"]
    );
    assert_eq!(c["clocks"]["legal"]["status"], "breached");
    assert!(
        c["clocks"]["legal"]["business_days_remaining"]
            .as_i64()
            .is_some_and(|d| d < 0)
    );
    assert_eq!(
        c["clocks"]["first_response"]["status"], "breached",
        "answered, but 60 days late"
    );

    let r = app
        .get("/api/v1/staff/cases?overdue=true", Some(&org.director))
        .await;
    let ids: Vec<_> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&late));

    let r = app
        .get(
            "/api/v1/staff/cases?order=sla_due&limit=1",
            Some(&org.director),
        )
        .await;
    assert_eq!(r.body["items"][0]["id"], late.as_str());
    let cursor = r.body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let r = app
        .get(
            &format!("/api/v1/staff/cases?order=sla_due&limit=1&cursor={cursor}"),
            Some(&org.director),
        )
        .await;
    assert_eq!(r.body["items"][0]["id"], fresh.as_str());
    assert!(r.body["next_cursor"].is_null());
    let r = app
        .get(
            &format!("/api/v1/staff/cases?limit=1&cursor={cursor}"),
            Some(&org.director),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_cursor"),
        "a cursor of another order is refused"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn closing_stops_every_clock(pool: PgPool) {
    let (app, org, customer) = setup(pool).await;
    let id = app.file(&customer, "sugerencia").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.answer(&org, &id, "Gracias").await;
    let c = staff_case(&app, &org.director, &id).await;
    for clock in ["legal", "first_response", "resolution"] {
        assert_eq!(
            c["clocks"][clock]["status"], "met",
            "{clock}: {}",
            c["clocks"]
        );
    }
    let due: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as("select first_response_due_at, resolution_due_at from cases")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(due, (None, None), "nothing left for the scheduler to watch");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_expired_term_cannot_be_extended(pool: PgPool) {
    let (app, org, customer) = setup(pool).await;
    let id = app.file(&customer, "queja").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.backdate(&id, 60).await;
    let far = chrono::Utc::now().date_naive() + chrono::Duration::days(10);
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/extend"),
            Some(&org.director),
            json!({"new_due_date": far, "reason": "Tarde"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "legal_term_expired")
    );
    let events: i64 =
        sqlx::query_scalar("select count(*) from case_clock_events where kind = 'extend'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(events, 0);
}
