use atiende_core::blobs::BlobId;
use atiende_server::Settings;
use atiende_tests::{Reply, TestApp, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A real 1×1 PNG.
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xdf, 0xc0, 0x00,
    0x00, 0x04, 0x01, 0x01, 0x80, 0xc5, 0x2a, 0x18, 0x5d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A real one-page PDF.
const PDF: &str = concat!(
    "%PDF-1.4\n",
    "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n",
    "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n",
    "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>\nendobj\n",
    "xref\n0 4\n",
    "0000000000 65535 f \n",
    "0000000009 00000 n \n",
    "0000000058 00000 n \n",
    "0000000115 00000 n \n",
    "trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n186\n%%EOF\n",
);

pub(crate) fn id(bytes: &[u8]) -> String {
    BlobId::of(bytes).to_string()
}

/// A PDF bigger than the 64 KiB JSON limit: the same document with a long comment after it.
fn big_pdf(size: usize) -> Vec<u8> {
    let mut b = PDF.as_bytes().to_vec();
    b.push(b'%');
    b.resize(size, b'x');
    b
}

async fn put(app: &TestApp, token: &str, id: &str, content_type: &str, bytes: &[u8]) -> Reply {
    app.send(
        app.client
            .put(app.url(&format!("/api/v1/blobs/{id}")))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes.to_vec()),
    )
    .await
}

pub(crate) async fn upload(app: &TestApp, token: &str, content_type: &str, bytes: &[u8]) -> String {
    let r = put(app, token, &id(bytes), content_type, bytes).await;
    assert!(
        matches!(r.status, StatusCode::CREATED | StatusCode::OK),
        "{}",
        r.body
    );
    id(bytes)
}

struct Download {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Download {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn download(app: &TestApp, token: &str, id: &str) -> Download {
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/blobs/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request reaches the server");
    Download {
        status: resp.status(),
        headers: resp.headers().clone(),
        bytes: resp.bytes().await.expect("body").to_vec(),
    }
}

/// Writes `request` on a fresh connection and returns all the server answers before it closes.
async fn raw_http(app: &TestApp, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("the server answers and closes")
    .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_png_and_a_pdf_round_trip_and_are_stored_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = app.customer("cliente@test.co", "1020304050").await;

    for (content_type, bytes) in [("image/png", PNG), ("application/pdf", PDF.as_bytes())] {
        let hash = id(bytes);
        let r = put(&app, &customer, &hash, content_type, bytes).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["sha256"], hash.as_str());
        assert_eq!(r.body["content_type"], content_type);
        assert_eq!(r.body["size"], bytes.len());

        let again = put(&app, &customer, &hash, content_type, bytes).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.body, r.body);

        let d = download(&app, &customer, &hash).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.bytes, bytes);
        assert_eq!(d.header("content-type"), content_type);
        assert_eq!(
            d.header("cache-control"),
            "private, max-age=31536000, immutable"
        );
        assert_eq!(d.header("etag"), format!("\"{hash}\""));

        let cached = app
            .client
            .get(app.url(&format!("/api/v1/blobs/{hash}")))
            .bearer_auth(&customer)
            .header("if-none-match", format!("\"{hash}\""))
            .send()
            .await
            .expect("request");
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    }
    assert_eq!(app.count("select count(*) from blobs").await, 2);

    // A blob far past the 64 KiB JSON limit but within the blob limit.
    let big = big_pdf(200 * 1024);
    let r = put(&app, &customer, &id(&big), "application/pdf", &big).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(download(&app, &customer, &id(&big)).await.bytes, big);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn uploads_that_are_not_what_they_claim_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = app.customer("cliente@test.co", "1020304050").await;

    let r = put(&app, &customer, &id(b"other bytes"), "image/png", PNG).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "blob_hash_mismatch")
    );

    let text = b"esto no es una foto";
    for declared in ["text/plain", "image/png"] {
        let r = put(&app, &customer, &id(text), declared, text).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_blob_type"),
            "{declared}"
        );
    }

    // A real PNG declared as something else it is not, or as nothing.
    for declared in ["application/pdf", "image/jpeg", "application/octet-stream"] {
        let r = put(&app, &customer, &id(PNG), declared, PNG).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_blob_type"),
            "{declared}"
        );
    }
    let r = app
        .send(
            app.client
                .put(app.url(&format!("/api/v1/blobs/{}", id(PNG))))
                .bearer_auth(&customer)
                .body(PNG.to_vec()),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_blob_type")
    );

    for bad in [
        id(PNG).to_uppercase(),
        id(PNG)[1..].to_owned(),
        "nope".into(),
    ] {
        let r = put(&app, &customer, &bad, "image/png", PNG).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_blob_id"),
            "{bad}"
        );
        let d = download(&app, &customer, &bad).await;
        assert_eq!(d.status, StatusCode::BAD_REQUEST);
        assert_eq!(d.json()["code"], "invalid_blob_id");
    }

    let r = app
        .send(
            app.client
                .put(app.url(&format!("/api/v1/blobs/{}", id(PNG))))
                .header("content-type", "image/png")
                .body(PNG.to_vec()),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert_eq!(app.count("select count(*) from blobs").await, 0);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn blobs_past_the_configured_limit_are_refused(pool: PgPool) {
    let settings = Settings {
        blob_max_bytes: 1024,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool, settings).await;
    let customer = app.customer("cliente@test.co", "1020304050").await;

    let exact = big_pdf(1024);
    let r = put(&app, &customer, &id(&exact), "application/pdf", &exact).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // A declared length past the limit is refused before the body is sent: the client waits for
    // `100 Continue`, which never comes.
    let big = big_pdf(4096);
    let head = |framing: &str| {
        format!(
            "PUT /api/v1/blobs/{} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {customer}\r\n\
             content-type: application/pdf\r\n{framing}\r\nconnection: close\r\n\r\n",
            id(&big)
        )
    };
    let declared = head("content-length: 4096\r\nexpect: 100-continue");
    let response = raw_http(&app, declared.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(!response.contains("100 Continue"), "{response}");
    assert!(
        response.contains("\"code\":\"body_too_large\""),
        "{response}"
    );

    // Without a length the limit holds while reading: the client sends a little past it, then waits.
    let mut chunked = head("transfer-encoding: chunked").into_bytes();
    chunked.extend_from_slice(b"400\r\n");
    chunked.extend_from_slice(&big[..1024]);
    chunked.extend_from_slice(b"\r\n200\r\n");
    chunked.extend_from_slice(&big[1024..1536]);
    let response = raw_http(&app, &chunked).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("\"code\":\"body_too_large\""),
        "{response}"
    );

    assert_eq!(app.count("select count(*) from blobs").await, 1);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn only_those_who_may_see_a_blob_can_download_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let owner = app.customer("cliente@test.co", "1020304050").await;
    let other = app.customer("otro@test.co", "9080706050").await;
    let photo = upload(&app, &owner, "image/png", PNG).await;

    let missing = download(&app, &other, &id(b"never uploaded")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["code"], "blob_not_found");
    for token in [&other, &org.director, &org.technician] {
        let d = download(&app, token, &photo).await;
        assert_eq!(d.status, missing.status);
        assert_eq!(
            d.json(),
            missing.json(),
            "the same answer as a missing blob"
        );
    }

    // A field report's photo: whoever may open the report's document may download it.
    let technician_photo = upload(&app, &org.technician, "application/pdf", PDF.as_bytes()).await;
    assert_eq!(
        download(&app, &other, &technician_photo).await.status,
        StatusCode::NOT_FOUND
    );
    let doc = "2Xsp8ifiBqsUm9Yn1Pme8hUcmYeh";
    sqlx::query("insert into sync_documents (document_id, kind) values ($1, 'field_report')")
        .bind(doc)
        .execute(&app.pool)
        .await
        .expect("document");
    sqlx::query(
        "insert into sync_document_access (document_id, user_id, mode) values ($1, $2, 'read')",
    )
    .bind(doc)
    .bind(app.user_id("otro@test.co").await)
    .execute(&app.pool)
    .await
    .expect("access");
    sqlx::query("insert into document_blobs (document_id, sha256) values ($1, $2)")
        .bind(doc)
        .bind(&technician_photo)
        .execute(&app.pool)
        .await
        .expect("document blob");
    let d = download(&app, &other, &technician_photo).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.bytes, PDF.as_bytes());
    assert_eq!(
        download(&app, &owner, &technician_photo).await.status,
        StatusCode::NOT_FOUND
    );

    // Uploading the same bytes proves one has them: afterwards one may read them too.
    let r = put(&app, &other, &photo, "image/png", PNG).await;
    assert_eq!(r.status, StatusCode::CREATED, "first upload by this user");
    assert_eq!(download(&app, &other, &photo).await.bytes, PNG);
    assert_eq!(app.count("select count(*) from blobs").await, 2);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn message_attachments_are_seen_by_the_case_customer_and_staff(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let other = app.customer("otro@test.co", "9080706050").await;
    let case = app.file(&customer, "reclamo").await;
    let case_id = case["id"].as_str().expect("id");
    // The staff who work the case are OPERATIVO's (and the director).
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{case_id}/assign"),
            Some(&org.director),
            json!({"process": "OPERATIVO", "impact": "low", "urgency": "low"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let photo = upload(&app, &customer, "image/png", PNG).await;

    let r = app
        .post(
            &format!("/api/v1/cases/{case_id}/messages"),
            Some(&customer),
            json!({"body": "Adjunto la foto del daño.", "attachments": [photo, photo]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let expected = json!([{"sha256": photo, "content_type": "image/png", "size": PNG.len()}]);
    assert_eq!(r.body["attachments"], expected, "duplicates collapse");

    let mine = app
        .get(&format!("/api/v1/cases/{case_id}"), Some(&customer))
        .await;
    assert_eq!(mine.body["messages"][0]["attachments"], expected);
    let staff_view = app
        .get(
            &format!("/api/v1/staff/cases/{case_id}"),
            Some(&org.director),
        )
        .await;
    assert_eq!(staff_view.body["messages"][0]["attachments"], expected);
    assert_eq!(staff_view.body["attachments"], json!([]));

    let d = download(&app, &org.collaborator, &photo).await;
    assert_eq!((d.status, d.bytes.as_slice()), (StatusCode::OK, PNG));
    for token in [&other, &org.technician, &org.other_collaborator, &org.admin] {
        let d = download(&app, token, &photo).await;
        assert_eq!(
            (d.status, d.json()["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("blob_not_found"))
        );
    }

    // Staff attach what they uploaded and what they may already see; the customer sees both.
    let report = upload(&app, &org.collaborator, "application/pdf", PDF.as_bytes()).await;
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{case_id}/messages"),
            Some(&org.collaborator),
            json!({"body": "Le enviamos el informe de la visita.", "attachments": [report, photo]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["attachments"][0]["content_type"], "application/pdf");
    assert_eq!(r.body["attachments"][1]["sha256"], photo.as_str());
    let d = download(&app, &customer, &report).await;
    assert_eq!(
        (d.status, d.bytes.as_slice()),
        (StatusCode::OK, PDF.as_bytes())
    );
    assert_eq!(
        download(&app, &other, &report).await.status,
        StatusCode::NOT_FOUND
    );
    let mine = app
        .get(&format!("/api/v1/cases/{case_id}"), Some(&customer))
        .await;
    assert_eq!(
        mine.body["messages"][1]["attachments"][0]["sha256"],
        report.as_str()
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_bad_attachment_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let other = app.customer("otro@test.co", "9080706050").await;
    let case = app.file(&customer, "queja").await;
    let case_id = case["id"].as_str().expect("id");
    let photo = upload(&app, &customer, "image/png", PNG).await;
    let someone_elses = upload(&app, &other, "application/pdf", PDF.as_bytes()).await;

    for attachments in [
        json!([photo, someone_elses]),
        json!([photo, id(b"never uploaded")]),
        json!([photo, "not-a-hash"]),
    ] {
        let r = app
            .post(
                &format!("/api/v1/cases/{case_id}/messages"),
                Some(&customer),
                json!({"body": "Adjunto", "attachments": attachments}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_attachment"),
            "{attachments}"
        );
    }
    let eleven: Vec<String> = (0..11).map(|i| id(format!("{i}").as_bytes())).collect();
    let r = app
        .post(
            &format!("/api/v1/cases/{case_id}/messages"),
            Some(&customer),
            json!({"body": "Adjunto", "attachments": eleven}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "too_many_attachments")
    );
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{case_id}/messages"),
            Some(&org.director),
            json!({"body": "Respuesta", "attachments": [id(b"never uploaded")]}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_attachment")
    );
    // Someone else's case stays a 404, attachments or not.
    let r = app
        .post(
            &format!("/api/v1/cases/{case_id}/messages"),
            Some(&other),
            json!({"body": "Hola", "attachments": [someone_elses]}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "case_not_found")
    );

    assert_eq!(app.count("select count(*) from case_messages").await, 0);
    assert_eq!(app.count("select count(*) from case_attachments").await, 0);
    assert_eq!(
        app.count(
            "select count(*) from case_events where kind in ('customer_message', 'staff_message')"
        )
        .await,
        0
    );
    assert_eq!(
        app.count("select count(*) from case_clock_events where kind = 'stop'")
            .await,
        0,
        "the refused staff message did not meet the first response"
    );
    assert_eq!(
        download(&app, &customer, &someone_elses).await.status,
        StatusCode::NOT_FOUND
    );
    let view = app
        .get(&format!("/api/v1/cases/{case_id}"), Some(&customer))
        .await;
    assert_eq!(view.body["messages"], json!([]));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn staff_cannot_show_one_customer_another_customers_blob(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let other = app.customer("otro@test.co", "9080706050").await;
    let case_id = app.file(&customer, "queja").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let other_case = app.file(&other, "queja").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // The other customer's photo, on their own case: the director may see it there.
    let theirs = upload(&app, &other, "image/png", PNG).await;
    let r = app
        .post(
            &format!("/api/v1/cases/{other_case}/messages"),
            Some(&other),
            json!({"body": "Foto", "attachments": [theirs]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        download(&app, &org.director, &theirs).await.status,
        StatusCode::OK
    );
    // Uploading the same bytes again does not make them the director's to pass on.
    upload(&app, &org.director, "image/png", PNG).await;

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{case_id}/messages"),
            Some(&org.director),
            json!({"body": "Mire esta foto", "attachments": [theirs]}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_attachment"),
        "{}",
        r.body
    );
    let on_case = |sql: &'static str| {
        let pool = app.pool.clone();
        let case_id = case_id.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(uuid::Uuid::parse_str(&case_id).expect("uuid"))
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        on_case("select count(*) from case_messages where case_id = $1").await,
        0
    );
    assert_eq!(
        on_case("select count(*) from case_attachments where case_id = $1").await,
        0
    );
    assert_eq!(
        download(&app, &customer, &theirs).await.status,
        StatusCode::NOT_FOUND
    );

    // What the director uploads themself (bytes no customer sent) goes to this case.
    let own = upload(&app, &org.director, "application/pdf", PDF.as_bytes()).await;
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{case_id}/messages"),
            Some(&org.director),
            json!({"body": "Adjunto el informe", "attachments": [own]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(download(&app, &customer, &own).await.status, StatusCode::OK);
}
