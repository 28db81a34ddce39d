use atiende_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

async fn counts(app: &TestApp) -> (i64, i64, i64) {
    let q = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(&app.pool);
    (
        q("select count(*) from cases").await.expect("cases"),
        q("select count(*) from case_events").await.expect("events"),
        q("select count(*) from users").await.expect("users"),
    )
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_input_gets_a_problem_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let case = app.file(&customer, "queja").await;
    let id = case["id"].as_str().expect("id");
    let before = counts(&app).await;

    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/cases"))
            .bearer_auth(&customer)
            .header("content-type", content_type)
            .body(body)
    };
    let cases = [
        (app.send(raw("{\"id\": ", "application/json")).await, StatusCode::BAD_REQUEST, "malformed_json"),
        (app.send(raw("not json at all", "application/json")).await, StatusCode::BAD_REQUEST, "malformed_json"),
        (app.send(raw("{}", "text/plain")).await, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (
            app.post("/api/v1/cases", Some(&customer), json!({"id": uuid::Uuid::new_v4(), "type": "felicitacion", "subject": "s", "description": "d"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (app.post("/api/v1/cases", Some(&customer), json!({"id": uuid::Uuid::new_v4(), "type": "queja", "subject": "s"})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (app.post("/api/v1/cases", Some(&customer), json!({"id": "not-a-uuid", "type": "queja", "subject": "s", "description": "d"})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (app.post("/api/v1/cases", Some(&customer), json!({"id": uuid::Uuid::new_v4(), "type": "queja", "subject": "  ", "description": "d"})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_subject"),
        (
            app.post("/api/v1/cases", Some(&customer), json!({"id": uuid::Uuid::new_v4(), "type": "queja", "subject": "s", "description": "x".repeat(70_000)})).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            app.post("/api/v1/cases", Some(&customer), json!({"id": uuid::Uuid::new_v4(), "type": "queja", "subject": "s", "description": "x".repeat(20_000)})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_description",
        ),
        (app.get("/api/v1/cases/not-a-uuid", Some(&customer)).await, StatusCode::BAD_REQUEST, "invalid_id"),
        (app.get("/api/v1/cases?limit=0", Some(&customer)).await, StatusCode::BAD_REQUEST, "invalid_limit"),
        (app.get("/api/v1/cases?cursor=garbage", Some(&customer)).await, StatusCode::BAD_REQUEST, "invalid_cursor"),
        (app.get("/api/v1/cases?status=lost", Some(&customer)).await, StatusCode::BAD_REQUEST, "invalid_query"),
        (app.get("/api/v1/staff/cases?due_before=2026-02-30", Some(&org.director)).await, StatusCode::BAD_REQUEST, "invalid_query"),
        (app.post(&format!("/api/v1/cases/{id}/rating"), Some(&customer), json!({"score": 9})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_score"),
        (app.post(&format!("/api/v1/cases/{id}/rating"), Some(&customer), json!({"score": "five"})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            app.post(&format!("/api/v1/staff/cases/{id}/assign"), Some(&org.director), json!({"process": "OPERATIVO", "impact": "huge", "urgency": "low"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            app.post(&format!("/api/v1/staff/cases/{id}/assign"), Some(&org.director), json!({"process": "NO_EXISTE", "impact": "low", "urgency": "low"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_process",
        ),
        (
            app.post(&format!("/api/v1/staff/cases/{id}/assign"), Some(&org.director), json!({"process": "OPERATIVO", "assignee": uuid::Uuid::new_v4(), "impact": "low", "urgency": "low"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "assignee_not_in_process",
        ),
        (
            app.post(&format!("/api/v1/staff/cases/{}/assign", uuid::Uuid::new_v4()), Some(&org.director), json!({"process": "OPERATIVO", "impact": "low", "urgency": "low"})).await,
            StatusCode::NOT_FOUND,
            "case_not_found",
        ),
        (app.get("/api/v1/no/such/route", None).await, StatusCode::NOT_FOUND, "not_found"),
        (app.send(app.client.delete(app.url("/api/v1/cases"))).await, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (app.get("/api/v1/cases", None).await, StatusCode::UNAUTHORIZED, "unauthenticated"),
        (app.get("/api/v1/cases", Some("atd_forged")).await, StatusCode::UNAUTHORIZED, "unauthenticated"),
    ];
    for (i, (reply, status, code)) in cases.iter().enumerate() {
        assert_eq!(
            (reply.status, reply.code()),
            (*status, *code),
            "case {i}: {}",
            reply.body
        );
        assert_eq!(
            reply
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "case {i}"
        );
        assert_eq!(reply.body["status"], status.as_u16(), "case {i}");
        assert!(
            reply.body["detail"].is_string() && reply.body["type"].is_string(),
            "case {i}"
        );
    }
    assert_eq!(counts(&app).await, before, "nothing was written");

    // After all that, the case is exactly as it was.
    let r = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(
        (r.body["status"].clone(), r.body["subject"].clone()),
        (case["status"].clone(), case["subject"].clone())
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_return_without_a_reason_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let id = app.file(&customer, "queja").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
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
            &format!("/api/v1/staff/cases/{id}/return"),
            Some(&org.leader),
            json!({"comment": ""}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "comment_required")
    );
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/close"),
            Some(&org.director),
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        "closing needs in_favor_of_customer"
    );
    let r = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&org.leader))
        .await;
    assert_eq!(r.body["status"], "in_approval");
}
