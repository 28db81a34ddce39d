use std::collections::BTreeSet;

use atiende_tests::{follows, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn health_readiness_metrics_and_request_ids(pool: PgPool) {
    let app = spawn_app(pool).await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.headers.get("x-request-id").is_some(),
        "every response carries a request id"
    );
    let r = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", "abc-123"),
        )
        .await;
    assert_eq!(
        r.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("abc-123")
    );

    app.get(&format!("/api/v1/cases/{}", uuid::Uuid::new_v4()), None)
        .await;
    let r = app.get("/metrics", None).await;
    let text = r.body.as_str().expect("text");
    assert!(
        text.contains(
            r#"atiende_http_requests_total{method="GET",route="/api/v1/cases/{id}",status="401"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("atiende_db_pool_connections"), "{text}");
}

/// The request-count series in a `/metrics` page.
fn request_series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("atiende_http_requests_total{"))
        .collect()
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn made_up_methods_do_not_create_series(pool: PgPool) {
    let app = spawn_app(pool).await;
    let made_up = |name: &str| reqwest::Method::from_bytes(name.as_bytes()).expect("a token");
    let r = app
        .send(
            app.client
                .request(made_up("FROBNICATE"), app.url("/healthz")),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let before = app.get("/metrics", None).await;
    let before = before.body.as_str().expect("text").to_owned();
    assert!(
        before.contains(
            r#"atiende_http_requests_total{method="other",route="/healthz",status="405"} 1"#
        ),
        "{before}"
    );

    for name in ["XYZZY", "PLUGH", "A1B2C3", "FROBNICATE2"] {
        app.send(app.client.request(made_up(name), app.url("/healthz")))
            .await;
    }
    let after = app.get("/metrics", None).await;
    let after = after.body.as_str().expect("text");
    assert!(
        !["FROBNICATE", "XYZZY", "PLUGH", "A1B2C3"]
            .iter()
            .any(|m| after.contains(m)),
        "{after}"
    );
    assert!(
        after.contains(
            r#"atiende_http_requests_total{method="other",route="/healthz",status="405"} 5"#
        ),
        "{after}"
    );
    // The only new series is the first scrape's own GET /metrics.
    let new: Vec<_> = request_series(after)
        .into_iter()
        .filter(|l| {
            let labels = l.rsplit_once(' ').map_or(*l, |(k, _)| k);
            !before.contains(labels)
        })
        .collect();
    assert_eq!(
        new,
        [r#"atiende_http_requests_total{method="GET",route="/metrics",status="200"} 1"#],
        "{after}"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn readiness_fails_when_migrations_are_missing(pool: PgPool) {
    let app = spawn_app(pool).await;
    sqlx::query("delete from _sqlx_migrations")
        .execute(&app.pool)
        .await
        .expect("forget migrations");
    let r = app.get("/readyz", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "migrations_pending")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_openapi_document_matches_the_router(pool: PgPool) {
    let app = spawn_app(pool).await;
    let r = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        r.body["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in r.body["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<_> = atiende_mobile_api::served_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    assert_eq!(documented, served, "documented vs served");

    // And each documented route is really answered by the running server (not a 404 or 405).
    let sample = uuid::Uuid::new_v4().to_string();
    for (method, path) in &documented {
        let url = app.url(&path.replace("{id}", &sample));
        let req = match method.as_str() {
            "GET" => app.client.get(url),
            "POST" => app.client.post(url).json(&json!({})),
            "DELETE" => app.client.delete(url),
            "PUT" => app.client.put(url).json(&json!({})),
            other => panic!("unexpected method {other}"),
        };
        let r = app.send(req).await;
        assert!(
            r.status != StatusCode::METHOD_NOT_ALLOWED && r.code() != "not_found",
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
    }
    for schema in [
        "CustomerCase",
        "StaffCase",
        "Problem",
        "FileCaseRequest",
        "CaseStatus",
    ] {
        assert!(
            r.body["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_restarted_server_keeps_everything(pool: PgPool) {
    let options = pool.connect_options().as_ref().clone();
    let app = spawn_app(pool).await;
    let customer = app.customer("ana@test.co", "52123456").await;
    let filed = app.file(&customer, "queja").await;
    app.stop().await;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(options)
        .await
        .expect("reconnect");
    let app = spawn_app(pool).await;
    let r = app
        .get(
            &format!("/api/v1/cases/{}", filed["id"].as_str().expect("id")),
            Some(&customer),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the token and the case survived: {}",
        r.body
    );
    assert_eq!(r.body["radicado"], filed["radicado"]);
    let next = app.file(&customer, "queja").await;
    let (first, next) = (
        filed["radicado"].as_str().expect("radicado"),
        next["radicado"].as_str().expect("radicado"),
    );
    assert!(
        follows(first, next),
        "the counter survived: {next} after {first}"
    );
}
