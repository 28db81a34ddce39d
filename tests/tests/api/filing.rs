use std::collections::{BTreeMap, BTreeSet};

use atiende_core::calendar::BusinessCalendar;
use atiende_core::calendar::local_date;
use atiende_tests::{follows, radicado_parts, spawn_app};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn filing_gives_a_radicado_and_the_legal_due_date(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let calendar = BusinessCalendar::default();
    let mut previous: Option<String> = None;
    for (case_type, days) in [
        ("peticion", 15),
        ("solicitud_informacion", 10),
        ("consulta", 30),
        ("denuncia", 15),
    ] {
        let c = app.file(&customer, case_type).await;
        // The case's own filing date, not the test's clock: a test running across midnight in
        // Bogotá would otherwise expect the wrong day.
        let created_at: DateTime<Utc> = c["created_at"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("an RFC 3339 created_at");
        let today = local_date(created_at);
        let radicado = c["radicado"].as_str().expect("radicado");
        assert_eq!(radicado_parts(radicado).0, today.year(), "{radicado}");
        match &previous {
            None => assert_eq!(radicado_parts(radicado).1, 1, "{radicado}"),
            Some(p) => assert!(follows(p, radicado), "{radicado} after {p}"),
        }
        previous = Some(radicado.to_owned());
        assert_eq!(c["type"], case_type);
        let due: NaiveDate = c["legal_due_date"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("a YYYY-MM-DD due date");
        assert_eq!(due, calendar.add_business_days(today, days), "{case_type}");
        let expected_ack = format!(
            "Recibimos su {} con el radicado {}. Le daremos respuesta a más tardar el {}.",
            atiende_core::texts::case_type("es", case_type.parse().expect("type")),
            c["radicado"].as_str().expect("radicado"),
            atiende_core::texts::long_date("es", due),
        );
        assert_eq!(c["acknowledgement"], expected_ack.as_str());
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn filing_twice_with_one_id_files_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let body = json!({"id": Uuid::new_v4(), "type": "reclamo", "subject": "Factura duplicada", "description": "Me cobraron dos veces."});
    let first = app
        .post("/api/v1/cases", Some(&customer), body.clone())
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app
        .post("/api/v1/cases", Some(&customer), body.clone())
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a retry is answered with the case already filed"
    );
    assert_eq!(again.body["radicado"], first.body["radicado"]);

    let mut changed = body.clone();
    changed["description"] = json!("Otra cosa");
    let r = app.post("/api/v1/cases", Some(&customer), changed).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "idempotency_conflict")
    );

    let other = app.customer("otro@test.co", "99887766").await;
    let r = app.post("/api/v1/cases", Some(&other), body.clone()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "idempotency_conflict"),
        "another customer cannot reach the case by its id"
    );

    // Retries racing each other still file once.
    let racing = json!({"id": Uuid::new_v4(), "type": "queja", "subject": "Ruido", "description": "Mucho ruido en la visita."});
    let replies = futures_join(&app, &customer, &racing, 20).await;
    let created = replies
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{replies:?}"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 2);
}

async fn futures_join(
    app: &atiende_tests::TestApp,
    token: &str,
    body: &serde_json::Value,
    n: usize,
) -> Vec<StatusCode> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let req = app
            .client
            .post(app.url("/api/v1/cases"))
            .bearer_auth(token)
            .json(body);
        tasks.spawn(async move { req.send().await.map(|r| r.status()) });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.expect("task").expect("request"));
    }
    out
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn two_hundred_concurrent_filings_get_gapless_radicados(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(
            app.customer(&format!("c{i}@test.co"), &format!("10000{i}"))
                .await,
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let body = json!({"id": Uuid::new_v4(), "type": "peticion", "subject": format!("Solicitud {i}"), "description": "Concurrente"});
        let req = app
            .client
            .post(app.url("/api/v1/cases"))
            .bearer_auth(&tokens[i % 4])
            .json(&body);
        tasks.spawn(async move {
            let r = req.send().await.expect("request");
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<serde_json::Value>().await.expect("json")["radicado"]
                .as_str()
                .expect("radicado")
                .to_owned()
        });
    }
    // Numbers restart each year: a run across New Year's midnight splits them in two.
    let mut numbers: BTreeMap<i32, BTreeSet<u32>> = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let radicado = r.expect("filing task");
        let (year, n) = radicado_parts(&radicado);
        assert!(
            numbers.entry(year).or_default().insert(n),
            "duplicate radicado {radicado}"
        );
    }
    assert_eq!(numbers.values().map(BTreeSet::len).sum::<usize>(), 200);
    for (year, numbers) in numbers {
        assert_eq!(
            numbers,
            (1..=numbers.len() as u32).collect::<BTreeSet<_>>(),
            "no gaps, no duplicates in {year}"
        );
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_failed_filing_does_not_burn_a_number(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let first = app.file(&customer, "queja").await;
    // Fails inside the filing transaction, after the counter was taken.
    sqlx::query(
        "alter table case_events add constraint reject_events check (kind <> 'filed') not valid",
    )
    .execute(&app.pool)
    .await
    .expect("add constraint");
    let r = app
        .post(
            "/api/v1/cases",
            Some(&customer),
            json!({"id": Uuid::new_v4(), "type": "queja", "subject": "s", "description": "d"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.code(), "internal_error");
    assert!(
        !r.body.to_string().contains("reject_events"),
        "database detail leaked: {}",
        r.body
    );
    sqlx::query("alter table case_events drop constraint reject_events")
        .execute(&app.pool)
        .await
        .expect("drop constraint");
    let next = app.file(&customer, "queja").await;
    let (first, next) = (
        first["radicado"].as_str().expect("radicado"),
        next["radicado"].as_str().expect("radicado"),
    );
    assert!(follows(first, next), "{next} after {first}");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_acknowledgement_speaks_the_customers_language(pool: PgPool) {
    let app = spawn_app(pool).await;
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "john@test.co", "password": atiende_tests::PASSWORD, "name": "John", "document_type": "PA",
                   "document_number": "X1234567", "accept_data_policy": true, "language": "en"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.body["token"].as_str().expect("token").to_owned();
    let c = app.file(&token, "queja").await;
    let ack = c["acknowledgement"].as_str().expect("acknowledgement");
    assert!(
        ack.starts_with("We received your complaint with filing number PQRS-"),
        "{ack}"
    );
    assert!(
        ack.contains(&atiende_core::texts::long_date(
            "en",
            c["legal_due_date"]
                .as_str()
                .and_then(|d| d.parse().ok())
                .expect("date")
        )),
        "{ack}"
    );
}
