use std::collections::BTreeMap;

use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

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

async fn assign(app: &TestApp, org: &Org, id: &str) {
    let r = app
        .post(&format!("/api/v1/staff/cases/{id}/assign"), Some(&org.director), json!({"process": "OPERATIVO", "assignee": org.collaborator_id, "impact": "medium", "urgency": "medium"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn pending_alerts(app: &TestApp, id: &str) -> Vec<(String, i16)> {
    sqlx::query_as("select clock, percent from deadline_alerts where case_id = $1::uuid and fired_at is null order by clock, percent")
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .expect("alerts")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn alerts_follow_the_clocks(pool: PgPool) {
    let (app, org, customer) = app(pool).await;
    let case = app.file(&customer, "queja").await;
    let id = case["id"].as_str().expect("id");
    let all: Vec<(String, i16)> = ["first_response", "legal", "resolution"]
        .iter()
        .flat_map(|c| [50, 75, 90, 100].map(|p| (c.to_string(), p)))
        .collect();
    assert_eq!(
        pending_alerts(&app, id).await,
        all,
        "filing schedules every warning and breach"
    );
    let breach: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select due_at from deadline_alerts where clock = 'resolution' and percent = 100",
    )
    .fetch_one(&app.pool)
    .await
    .expect("breach");
    let c = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&org.director))
        .await;
    assert_eq!(
        c.body["clocks"]["resolution"]["due_at"]
            .as_str()
            .and_then(|d| d.parse().ok()),
        Some(breach),
        "the breach alert is the due time"
    );

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "¿Dirección?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        pending_alerts(&app, id).await,
        [],
        "paused and answered clocks alert nobody"
    );
    app.post(
        &format!("/api/v1/cases/{id}/messages"),
        Some(&customer),
        json!({"body": "Calle 1"}),
    )
    .await;
    let expected: Vec<_> = all
        .iter()
        .filter(|(c, _)| c != "first_response")
        .cloned()
        .collect();
    assert_eq!(
        pending_alerts(&app, id).await,
        expected,
        "the reply brings them back"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn warnings_and_breaches_reach_the_people_responsible(pool: PgPool) {
    let (app, org, customer) = app(pool).await;
    let id = app.file(&customer, "reclamo").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assign(&app, &org, &id).await;
    app.backdate(&id, 60).await;
    assign(&app, &org, &id).await; // recomputes the alerts from the backdated events

    assert_eq!(
        atiende_core::scheduler::tick(&app.pool, 1000)
            .await
            .expect("tick"),
        12,
        "4 thresholds × 3 clocks"
    );
    assert_eq!(
        atiende_core::scheduler::tick(&app.pool, 1000)
            .await
            .expect("tick"),
        0,
        "each alert fires once"
    );

    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select u.email, n.kind, n.data->>'percent' from notifications n join users u on u.id = n.user_id
         where n.kind like 'deadline%' order by 1, 2, 3",
    )
    .fetch_all(&app.pool)
    .await
    .expect("notifications");
    let mut per_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (email, kind, percent) in rows {
        per_user
            .entry(email)
            .or_default()
            .push(format!("{kind}:{percent}"));
    }
    let times3 = |items: &[&str]| -> Vec<String> {
        items
            .iter()
            .flat_map(|i| std::iter::repeat_n(i.to_string(), 3))
            .collect()
    };
    assert_eq!(
        per_user["colab@test.co"],
        times3(&[
            "deadline_breach:100",
            "deadline_warning:50",
            "deadline_warning:75",
            "deadline_warning:90"
        ])
    );
    assert_eq!(
        per_user["lider@test.co"],
        times3(&[
            "deadline_breach:100",
            "deadline_warning:75",
            "deadline_warning:90"
        ])
    );
    assert_eq!(
        per_user["director@test.co"],
        times3(&["deadline_breach:100"])
    );
    assert_eq!(per_user.len(), 3, "nobody else: {per_user:?}");
    // Each names its instant in Colombian time.
    let instants: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "select n.data->>'due', a.due_at from notifications n
         join deadline_alerts a on a.case_id = n.case_id and a.clock = n.data->>'clock'
              and a.percent = (n.data->>'percent')::smallint
         where n.kind like 'deadline%'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("instants");
    assert_eq!(instants.len(), 24);
    for (due, at) in instants {
        let local = at.with_timezone(&atiende_core::calendar::COLOMBIA);
        assert_eq!(due, local.format("%Y-%m-%d %H:%M").to_string());
    }
    let high: i64 = sqlx::query_scalar(
        "select count(*) from notifications where kind = 'deadline_breach' and urgency = 'high'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(high, 9, "a breach is urgent");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn two_schedulers_never_fire_one_alert_twice(pool: PgPool) {
    let options = pool.connect_options().as_ref().clone();
    let (app, org, customer) = app(pool).await;
    for _ in 0..15 {
        let id = app.file(&customer, "peticion").await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        assign(&app, &org, &id).await;
        app.backdate(&id, 60).await;
        assign(&app, &org, &id).await;
    }
    // Two processes' schedulers: separate pools, running at once, in small rounds.
    let other = sqlx::postgres::PgPoolOptions::new()
        .connect_with(options)
        .await
        .expect("second pool");
    let run = |pool: PgPool| async move {
        let mut fired = 0;
        loop {
            match atiende_core::scheduler::tick(&pool, 7).await.expect("tick") {
                0 => return fired,
                n => fired += n,
            }
        }
    };
    let (a, b) = tokio::join!(run(app.pool.clone()), run(other));
    assert_eq!(
        a + b,
        15 * 12,
        "every alert fired, none twice (a={a}, b={b})"
    );
    let breaches: i64 =
        sqlx::query_scalar("select count(*) from notifications where kind = 'deadline_breach'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(
        breaches,
        15 * 3 * 3,
        "assignee, leader and director, per clock, per case"
    );
}
