use atiende_tests::spawn_app;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn customers_see_only_their_own_cases(pool: PgPool) {
    let app = spawn_app(pool).await;
    let ana = app.customer("ana@test.co", "111111").await;
    let beto = app.customer("beto@test.co", "222222").await;
    let anas = app.file(&ana, "queja").await;
    let betos = app.file(&beto, "peticion").await;
    let id = anas["id"].as_str().expect("id");

    let missing = app
        .get(
            &format!("/api/v1/cases/{}", uuid::Uuid::new_v4()),
            Some(&beto),
        )
        .await;
    let foreign = app.get(&format!("/api/v1/cases/{id}"), Some(&beto)).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(
        foreign.body, missing.body,
        "someone else's case looks exactly like a missing one"
    );

    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&beto),
            json!({"body": "hola"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "case_not_found")
    );
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/rating"),
            Some(&beto),
            json!({"score": 1}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "case_not_found")
    );

    let r = app.get("/api/v1/cases", Some(&beto)).await;
    let ids: Vec<_> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, [betos["id"].clone()]);
    let r = app.get(&format!("/api/v1/cases/{id}"), Some(&ana)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["messages"].as_array().is_some_and(Vec::is_empty),
        "beto's message was not stored"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_customer_pages_through_their_cases(pool: PgPool) {
    let app = spawn_app(pool).await;
    let ana = app.customer("ana@test.co", "111111").await;
    let mut filed = Vec::new();
    for _ in 0..5 {
        filed.push(app.file(&ana, "sugerencia").await["id"].clone());
    }
    filed.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/v1/cases?limit=2".to_owned();
    loop {
        let r = app.get(&path, Some(&ana)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.extend(
            r.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|c| c["id"].clone()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/cases?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, filed, "newest first, each once");
    let r = app.get("/api/v1/cases?status=answered", Some(&ana)).await;
    assert_eq!(r.body["items"], json!([]));
}
