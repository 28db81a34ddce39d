//! Work orders and their field reports: staff create them, technicians list theirs with the
//! report's document URL, and every stored change to the report is projected into rows that
//! staff read over REST (or the reason it was not).

use atiende_core::types::Role;
use atiende_tests::{Reply, TestApp, spawn_app};
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::blobs::upload;
use crate::sync_support::{edit, eventually, read};

/// A distinct JPEG (as far as the server checks: its magic number) per `n`.
fn jpeg(n: u8) -> Vec<u8> {
    let mut b = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0".to_vec();
    b.push(n);
    b
}

struct Visit {
    app: TestApp,
    director: String,
    /// A collaborator of another process: the visit is not theirs to see.
    outsider: String,
    tech: (uuid::Uuid, String),
    other_tech: (uuid::Uuid, String),
    customer: String,
    customer_id: String,
}

async fn visit(pool: PgPool) -> Visit {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let tech = app
        .staff("ana.tecnica@test.co", Role::Technician, None)
        .await;
    let other_tech = app
        .staff("beto.tecnico@test.co", Role::Technician, None)
        .await;
    let customer = app.customer("cliente@test.co", "900123").await;
    let me = app.get("/api/v1/me", Some(&customer)).await;
    let customer_id = me.body["customer_id"]
        .as_str()
        .expect("customer id")
        .to_owned();
    Visit {
        app,
        director: org.director,
        outsider: org.other_collaborator,
        tech,
        other_tech,
        customer,
        customer_id,
    }
}

fn new_order(v: &Visit, technicians: &[uuid::Uuid]) -> Value {
    json!({
        "customer_id": v.customer_id,
        "process": "OPERATIVO",
        "address": "Calle 10 # 20-30, Bogotá",
        "scheduled_at": "2026-12-02T14:00:00Z",
        "service_type": "fumigación",
        "technicians": technicians,
    })
}

async fn create(v: &Visit) -> Value {
    let r = v
        .app
        .post(
            "/api/v1/staff/work-orders",
            Some(&v.director),
            new_order(v, &[v.tech.0]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn staff_view(v: &Visit, id: &str) -> Reply {
    v.app
        .get(
            &format!("/api/v1/staff/work-orders/{id}"),
            Some(&v.director),
        )
        .await
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn technicians_list_their_work_orders_with_the_report_url(pool: PgPool) {
    let v = visit(pool).await;
    let order = create(&v).await;
    assert_eq!(order["status"], "scheduled");
    let url = order["report_url"].as_str().expect("report url");
    assert!(url.starts_with("automerge:"), "{url}");

    let mine = v
        .app
        .get("/api/v1/technician/work-orders", Some(&v.tech.1))
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(mine.body["work_orders"][0]["id"], order["id"]);
    assert_eq!(mine.body["work_orders"][0]["report_url"], url);
    let others = v
        .app
        .get("/api/v1/technician/work-orders", Some(&v.other_tech.1))
        .await;
    assert_eq!(others.body["work_orders"], json!([]));

    // The report starts with its lists in place, so offline edits add to the same lists.
    let doc = read(&v.app.pool, url).await;
    assert_eq!(doc["products"], json!([]));
    assert_eq!(doc["completed"], json!(false));
    assert_eq!(doc["address"], "Calle 10 # 20-30, Bogotá");

    let id = order["id"].as_str().expect("id");
    let theirs = v
        .app
        .get(
            &format!("/api/v1/staff/work-orders/{id}"),
            Some(&v.outsider),
        )
        .await;
    assert_eq!(
        (theirs.status, theirs.code()),
        (StatusCode::NOT_FOUND, "work_order_not_found")
    );
    assert_eq!(staff_view(&v, id).await.status, StatusCode::OK);
    // Changing its technicians is as closed to them as reading it, and names no process.
    let theirs = v
        .app
        .put(
            &format!("/api/v1/staff/work-orders/{id}/technicians"),
            Some(&v.outsider),
            json!({"technicians": [v.other_tech.0]}),
        )
        .await;
    assert_eq!(
        (theirs.status, theirs.code()),
        (StatusCode::NOT_FOUND, "work_order_not_found"),
        "{}",
        theirs.body
    );
    assert_eq!(
        staff_view(&v, id).await.body["technicians"],
        json!([v.tech.0])
    );

    let customer = v
        .app
        .get("/api/v1/technician/work-orders", Some(&v.customer))
        .await;
    assert_eq!(customer.status, StatusCode::FORBIDDEN);
    assert_eq!(customer.code(), "technicians_only");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_work_orders_are_refused_and_nothing_is_written(pool: PgPool) {
    let v = visit(pool).await;
    let cases: Vec<(Option<&str>, Value, StatusCode, &str)> = vec![
        (
            Some(&v.director),
            new_order(&v, &[]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_technicians",
        ),
        (
            Some(&v.director),
            // A customer's user id is not a technician.
            new_order(&v, &[uuid::Uuid::new_v4()]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_technicians",
        ),
        (
            Some(&v.director),
            json!({"customer_id": uuid::Uuid::new_v4(), "process": "OPERATIVO", "address": "x",
                   "scheduled_at": "2026-12-02T14:00:00Z", "service_type": "x", "technicians": [v.tech.0]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_customer",
        ),
        (
            Some(&v.director),
            json!({"customer_id": v.customer_id, "process": "NO_EXISTE", "address": "x",
                   "scheduled_at": "2026-12-02T14:00:00Z", "service_type": "x", "technicians": [v.tech.0]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_process",
        ),
        (
            Some(&v.director),
            json!({"customer_id": v.customer_id, "process": "OPERATIVO", "address": " ",
                   "scheduled_at": "2026-12-02T14:00:00Z", "service_type": "x", "technicians": [v.tech.0]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_address",
        ),
        (
            Some(&v.director),
            json!({"customer_id": v.customer_id, "scheduled_at": "mañana"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some(&v.customer),
            new_order(&v, &[v.tech.0]),
            StatusCode::FORBIDDEN,
            "staff_only",
        ),
        (
            Some(&v.tech.1),
            new_order(&v, &[v.tech.0]),
            StatusCode::FORBIDDEN,
            "staff_only",
        ),
        (
            None,
            new_order(&v, &[v.tech.0]),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
    ];
    for (token, body, status, code) in cases {
        let r = v.app.post("/api/v1/staff/work-orders", token, body).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    }
    let r = v
        .app
        .send(
            v.app
                .client
                .post(v.app.url("/api/v1/staff/work-orders"))
                .bearer_auth(&v.director)
                .header("content-type", "application/json")
                .body("{\"customer_id\": "),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );

    let stored: i64 = sqlx::query_scalar("select count(*) from work_orders")
        .fetch_one(&v.app.pool)
        .await
        .expect("count");
    let documents: i64 =
        sqlx::query_scalar("select count(*) from sync_documents where kind = 'field_report'")
            .fetch_one(&v.app.pool)
            .await
            .expect("count");
    assert_eq!((stored, documents), (0, 0));

    let unknown = staff_view(&v, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "work_order_not_found")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn stored_report_changes_become_rows_and_a_signed_report_completes_the_visit(pool: PgPool) {
    let v = visit(pool).await;
    let order = create(&v).await;
    let id = order["id"].as_str().expect("id").to_owned();
    let url = order["report_url"].as_str().expect("url").to_owned();
    // The technician's phone uploads what the report names (here before it syncs).
    let photo = upload(&v.app, &v.tech.1, "image/jpeg", &jpeg(1)).await;
    let signature = upload(&v.app, &v.tech.1, "image/jpeg", &jpeg(2)).await;

    edit(&v.app.pool, &url, |doc| {
        doc.put(ROOT, "arrival_at", "2026-12-02T14:05:00Z")?;
        doc.put(ROOT, "treatment_type", "aspersión")?;
        doc.put(ROOT, "target_pest", "cucarachas")?;
        let (_, areas) = doc.get(ROOT, "areas_treated")?.expect("areas list");
        doc.insert(&areas, 0, "cocina")?;
        doc.insert(&areas, 1, "bodega")?;
        let (_, products) = doc.get(ROOT, "products")?.expect("products list");
        let p = doc.insert_object(&products, 0, ObjType::Map)?;
        doc.put(&p, "name", "Cipermetrina 20 EC")?;
        doc.put(&p, "active_ingredient", "cipermetrina")?;
        doc.put(&p, "registration_number", "RSCO-0123")?;
        doc.put(&p, "lot", "L-77")?;
        doc.put(&p, "quantity", 1.5)?;
        doc.put(&p, "unit", "L")?;
        doc.put(&p, "dose", "10 ml/L")?;
        let (_, photos) = doc.get(ROOT, "photos")?.expect("photos list");
        doc.insert(&photos, 0, photo.as_str())?;
        Ok(())
    })
    .await;
    let seen = eventually(|| async {
        let r = staff_view(&v, &id).await;
        (r.body["report"]["treatment_type"] == "aspersión").then_some(r)
    })
    .await;
    let report = &seen.body["report"];
    assert_eq!(report["areas_treated"], json!(["cocina", "bodega"]));
    assert_eq!(report["products"][0]["name"], "Cipermetrina 20 EC");
    assert_eq!(report["products"][0]["quantity"], json!(1.5));
    assert_eq!(report["products"][0]["lot"], "L-77");
    assert_eq!(report["photos"], json!([photo]));
    assert_eq!(report["projection_error"], Value::Null);
    assert_eq!(seen.body["status"], "scheduled");

    // Content that breaks a rule is not projected; staff see why and the last good rows stay.
    edit(&v.app.pool, &url, |doc| {
        doc.put(ROOT, "departure_at", "2026-12-02T13:00:00Z")?;
        Ok(())
    })
    .await;
    let refused = eventually(|| async {
        let r = staff_view(&v, &id).await;
        r.body["report"]["projection_error"]
            .is_string()
            .then_some(r)
    })
    .await;
    assert_eq!(
        refused.body["report"]["projection_error"],
        "departure_at is before arrival_at"
    );
    assert_eq!(refused.body["report"]["departure_at"], Value::Null);
    assert_eq!(refused.body["report"]["treatment_type"], "aspersión");

    // Completed without a signature is refused too.
    edit(&v.app.pool, &url, |doc| {
        doc.put(ROOT, "departure_at", "2026-12-02T15:00:00Z")?;
        doc.put(ROOT, "completed", true)?;
        Ok(())
    })
    .await;
    eventually(|| async {
        let r = staff_view(&v, &id).await;
        (r.body["report"]["projection_error"]
            == "a completed report needs the customer's signature")
            .then_some(r)
    })
    .await;

    let customer_user: uuid::Uuid =
        sqlx::query_scalar("select id from users where email = 'cliente@test.co'")
            .fetch_one(&v.app.pool)
            .await
            .expect("customer user");
    let access_before: i64 = sqlx::query_scalar(
        "select count(*) from sync_document_access a join work_orders w on w.report_document_id = a.document_id
         where w.id = $1::uuid and a.user_id = $2",
    )
    .bind(&id)
    .bind(customer_user)
    .fetch_one(&v.app.pool)
    .await
    .expect("access");
    assert_eq!(
        access_before, 0,
        "the customer sees the report only once completed"
    );

    edit(&v.app.pool, &url, |doc| {
        let s = doc.put_object(ROOT, "signature", ObjType::Map)?;
        doc.put(&s, "blob", signature.as_str())?;
        doc.put(&s, "signed_by", "Cliente de prueba")?;
        Ok(())
    })
    .await;
    let done = eventually(|| async {
        let r = staff_view(&v, &id).await;
        (r.body["status"] == "completed").then_some(r)
    })
    .await;
    assert_eq!(done.body["report"]["signature"]["blob"], json!(signature));
    assert_eq!(done.body["report"]["projection_error"], Value::Null);
    assert!(done.body["completed_at"].is_string());
    let mode: String = sqlx::query_scalar(
        "select a.mode from sync_document_access a join work_orders w on w.report_document_id = a.document_id
         where w.id = $1::uuid and a.user_id = $2",
    )
    .bind(&id)
    .bind(customer_user)
    .fetch_one(&v.app.pool)
    .await
    .expect("customer access");
    assert_eq!(mode, "read");
    let referenced: Vec<String> = sqlx::query_scalar(
        "select b.sha256 from document_blobs b join work_orders w on w.report_document_id = b.document_id
         where w.id = $1::uuid order by 1",
    )
    .bind(&id)
    .fetch_all(&v.app.pool)
    .await
    .expect("blobs");
    let mut expected = vec![photo, signature];
    expected.sort();
    assert_eq!(referenced, expected);
    v.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn reassigning_technicians_moves_write_access(pool: PgPool) {
    let v = visit(pool).await;
    let order = create(&v).await;
    let id = order["id"].as_str().expect("id");
    let r = v
        .app
        .put(
            &format!("/api/v1/staff/work-orders/{id}/technicians"),
            Some(&v.director),
            json!({"technicians": [v.other_tech.0]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["technicians"], json!([v.other_tech.0]));
    let modes: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "select a.user_id, a.mode from sync_document_access a
         join work_orders w on w.report_document_id = a.document_id
         where w.id = $1::uuid and a.user_id = any($2)",
    )
    .bind(id)
    .bind(vec![v.tech.0, v.other_tech.0])
    .fetch_all(&v.app.pool)
    .await
    .expect("access");
    assert_eq!(modes, vec![(v.other_tech.0, "write".to_owned())]);
    let first = v
        .app
        .get("/api/v1/technician/work-orders", Some(&v.tech.1))
        .await;
    assert_eq!(first.body["work_orders"], json!([]));

    let r = v
        .app
        .put(
            &format!("/api/v1/staff/work-orders/{id}/technicians"),
            Some(&v.customer),
            json!({"technicians": [v.tech.0]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn changes_stored_while_no_server_runs_are_projected_when_one_starts(pool: PgPool) {
    let v = visit(pool.clone()).await;
    let order = create(&v).await;
    let id = order["id"].as_str().expect("id").to_owned();
    let url = order["report_url"].as_str().expect("url").to_owned();
    v.app.stop().await;

    edit(&pool, &url, |doc| {
        doc.put(ROOT, "target_pest", "roedores")?;
        Ok(())
    })
    .await;
    // A worker that died holding the row: its lease has lapsed.
    sqlx::query("update sync_projection_queue set leased_until = now() - interval '1 second'")
        .execute(&pool)
        .await
        .expect("lapse the lease");

    let app = spawn_app(pool).await;
    let director = app.login("director@test.co").await;
    let seen = eventually(|| async {
        let r = app
            .get(&format!("/api/v1/staff/work-orders/{id}"), Some(&director))
            .await;
        (r.body["report"]["target_pest"] == "roedores").then_some(r)
    })
    .await;
    assert_eq!(seen.body["report"]["projection_error"], Value::Null);
    // The row goes right after the projection commits.
    eventually(|| async {
        let queued: i64 = sqlx::query_scalar("select count(*) from sync_projection_queue")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        (queued == 0).then_some(())
    })
    .await;
    app.stop().await;
}

async fn download(app: &TestApp, token: &str, hash: &str) -> (StatusCode, Vec<u8>) {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/blobs/{hash}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("reply");
    (r.status(), r.bytes().await.expect("body").to_vec())
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_report_shows_only_blobs_its_technicians_upload(pool: PgPool) {
    let v = visit(pool).await;
    let other = v.app.customer("otro@test.co", "900456").await;
    let theirs = upload(&v.app, &other, "image/jpeg", &jpeg(10)).await;
    let signature = upload(&v.app, &v.tech.1, "image/jpeg", &jpeg(11)).await;
    // Taken on the phone, not uploaded yet when the report syncs.
    let late = jpeg(12);
    let late_hash = atiende_core::blobs::BlobId::of(&late).to_string();

    let order = create(&v).await;
    let id = order["id"].as_str().expect("id").to_owned();
    let url = order["report_url"].as_str().expect("url").to_owned();
    edit(&v.app.pool, &url, |doc| {
        let (_, photos) = doc.get(ROOT, "photos")?.expect("photos list");
        doc.insert(&photos, 0, theirs.as_str())?;
        doc.insert(&photos, 1, late_hash.as_str())?;
        doc.put(ROOT, "arrival_at", "2026-12-02T14:05:00Z")?;
        doc.put(ROOT, "departure_at", "2026-12-02T15:00:00Z")?;
        let s = doc.put_object(ROOT, "signature", ObjType::Map)?;
        doc.put(&s, "blob", signature.as_str())?;
        doc.put(&s, "signed_by", "Cliente de prueba")?;
        doc.put(ROOT, "completed", true)?;
        Ok(())
    })
    .await;
    let done = eventually(|| async {
        let r = staff_view(&v, &id).await;
        (r.body["status"] == "completed").then_some(r)
    })
    .await;
    assert_eq!(done.body["report"]["photos"], json!([theirs, late_hash]));

    // The customer reads the completed report: its signature, not another customer's photo.
    assert_eq!(
        download(&v.app, &v.customer, &signature).await,
        (StatusCode::OK, jpeg(11))
    );
    assert_eq!(
        download(&v.app, &v.customer, &theirs).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        download(&v.app, &v.customer, &late_hash).await.0,
        StatusCode::NOT_FOUND
    );

    // Someone who does not write the report uploading those bytes attaches nothing.
    for token in [&other, &v.other_tech.1, &v.director] {
        upload(&v.app, token, "image/jpeg", &late).await;
    }
    assert_eq!(
        download(&v.app, &v.customer, &late_hash).await.0,
        StatusCode::NOT_FOUND
    );

    // The technician's upload arrives: now it is the report's photo.
    upload(&v.app, &v.tech.1, "image/jpeg", &late).await;
    assert_eq!(
        download(&v.app, &v.customer, &late_hash).await,
        (StatusCode::OK, late.clone())
    );
    assert_eq!(
        download(&v.app, &v.customer, &theirs).await.0,
        StatusCode::NOT_FOUND
    );
    v.app.stop().await;
}
