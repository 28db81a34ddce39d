//! Staff taking requests for customers: customers created and found by staff, cases registered
//! from a call, a visit or a letter with the instant they were received, the habeas-data types,
//! and the quality director changing a case's type.

use atiende_core::calendar::{BusinessCalendar, COLOMBIA, local_date};
use atiende_tests::{TestApp, spawn_app};
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// 10:00 in Colombia on the day `back` business days before today.
fn business_days_ago(back: u32) -> chrono::DateTime<Utc> {
    let cal = BusinessCalendar::new([]);
    let today = local_date(Utc::now());
    let mut day = today;
    while cal.business_days_between(day, today) < back || !cal.is_business_day(day) {
        day = day.pred_opt().expect("a day before");
    }
    COLOMBIA
        .from_local_datetime(&day.and_hms_opt(10, 0, 0).expect("10:00"))
        .single()
        .expect("one instant")
        .with_timezone(&Utc)
}

fn due_after(received: chrono::DateTime<Utc>, days: u32) -> NaiveDate {
    BusinessCalendar::new([]).add_business_days(local_date(received), days)
}

async fn new_customer(app: &TestApp, token: &str, document: &str) -> Value {
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(token),
            json!({"document_type": "CC", "document_number": document, "name": "Marta Lucía Gómez",
                   "email": "marta@correo.co", "phone": "310 555 1234", "consent_channel": "phone"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

fn registration(customer: &Value, received_at: chrono::DateTime<Utc>) -> Value {
    json!({"id": Uuid::new_v4(), "customer_id": customer["id"], "type": "reclamo", "channel": "phone",
           "subject": "Cobro de una visita que no se hizo",
           "description": "Llamó a la línea de atención: le cobraron la visita del martes, que no se realizó.",
           "received_at": received_at})
}

async fn cases_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from cases")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_call_registered_days_later_runs_its_terms_from_the_call(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = new_customer(&app, &org.collaborator, "52123456").await;
    assert_eq!(customer["verified"], true);
    assert_eq!(customer["has_app_user"], false);

    let received = business_days_ago(3);
    let body = registration(&customer, received);
    let r = app
        .post("/api/v1/staff/cases", Some(&org.collaborator), body.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let case = r.body;
    assert_eq!(case["channel"], "phone");
    assert_eq!(case["customer_id"], customer["id"]);
    assert_eq!(
        case["received_at"]
            .as_str()
            .and_then(|s| s.parse::<chrono::DateTime<Utc>>().ok()),
        Some(received)
    );
    let created: chrono::DateTime<Utc> = case["created_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("created_at");
    assert!(
        Utc::now() - created < Duration::minutes(5),
        "numbered when registered"
    );
    assert_eq!(
        case["legal_due_date"],
        json!(due_after(received, 15)),
        "15 business days from the call, not from the registration"
    );
    assert_eq!(
        case["clocks"]["legal"]["business_days_remaining"],
        json!(12),
        "{}",
        case["clocks"]
    );

    // The trail names who registered it and when the call came.
    let id = case["id"].as_str().expect("id");
    let full = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&org.director))
        .await;
    let filed = full.body["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "filed"))
        .cloned()
        .expect("a filed event");
    assert_eq!(filed["actor_role"], "collaborator");
    let expected_note = format!(
        "received by phone at {}",
        received
            .with_timezone(&COLOMBIA)
            .format("%Y-%m-%d %H:%M %:z")
    );
    assert_eq!(filed["comment"], json!(expected_note));

    // The acknowledgement is the customer's, not the staff member's.
    let recipients: Vec<(Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "select user_id, customer_id from notifications where kind = 'acknowledgement' and case_id = $1",
    )
    .bind(Uuid::parse_str(id).expect("uuid"))
    .fetch_all(&app.pool)
    .await
    .expect("notifications");
    let customer_id = customer["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("customer id");
    assert_eq!(recipients, vec![(None, Some(customer_id))]);
    // With an address on file the acknowledgement leaves by e-mail: the customer called, so there
    // is no app or chat to tell them in.
    let emailed: Vec<String> = sqlx::query_scalar(
        "select d.target from deliveries d join notifications n on n.id = d.notification_id
         where n.case_id = $1 and n.kind = 'acknowledgement' and d.channel = 'email'",
    )
    .bind(Uuid::parse_str(id).expect("uuid"))
    .fetch_all(&app.pool)
    .await
    .expect("deliveries");
    assert_eq!(emailed, vec!["marta@correo.co".to_owned()]);

    // A retry registers nothing new; the same id with another body is refused.
    let again = app
        .post("/api/v1/staff/cases", Some(&org.collaborator), body.clone())
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["radicado"], case["radicado"]);
    let mut other = body;
    other["subject"] = json!("Otro asunto");
    let r = app
        .post("/api/v1/staff/cases", Some(&org.collaborator), other)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "idempotency_conflict")
    );
    assert_eq!(cases_count(&app.pool).await, 1);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_request_registered_late_shows_its_late_clocks(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = new_customer(&app, &org.collaborator, "52123457").await;
    let received = business_days_ago(10);
    let mut body = registration(&customer, received);
    body["type"] = json!("solicitud_informacion");
    body["channel"] = json!("letter");
    let r = app
        .post("/api/v1/staff/cases", Some(&org.collaborator), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["channel"], "letter");
    let due = due_after(received, 10);
    assert_eq!(r.body["legal_due_date"], json!(due));
    assert!(
        due <= local_date(Utc::now()),
        "ten business days from a letter received ten business days ago"
    );
    assert!(
        r.body["clocks"]["legal"]["business_days_remaining"]
            .as_i64()
            .is_some_and(|d| d <= 0),
        "{}",
        r.body["clocks"]
    );
    assert_eq!(
        r.body["clocks"]["first_response"]["status"], "breached",
        "{}",
        r.body["clocks"]
    );
    // Alerts whose instant has passed are due at once.
    let due_now: i64 = sqlx::query_scalar(
        "select count(*) from deadline_alerts where case_id = $1 and due_at <= now()",
    )
    .bind(
        r.body["id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
            .expect("id"),
    )
    .fetch_one(&app.pool)
    .await
    .expect("alerts");
    assert!(due_now > 0);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_registrations_are_refused_and_write_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = new_customer(&app, &org.collaborator, "52123458").await;
    let token = app.customer("cliente@test.co", "1020304050").await;
    let now = Utc::now();
    let cases = [
        (
            "channel",
            json!("app"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "channel",
            json!("web"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "received_at",
            json!(now + Duration::hours(2)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "received_in_future",
        ),
        (
            "received_at",
            json!(business_days_ago(11)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "received_too_long_ago",
        ),
        (
            "customer_id",
            json!(Uuid::new_v4()),
            StatusCode::NOT_FOUND,
            "customer_not_found",
        ),
        (
            "subject",
            json!("   "),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_subject",
        ),
        (
            "type",
            json!("felicitacion"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "received_at",
            json!("ayer"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (field, value, status, code) in cases {
        let mut body = registration(&customer, business_days_ago(1));
        body[field] = value;
        let r = app
            .post("/api/v1/staff/cases", Some(&org.collaborator), body)
            .await;
        assert_eq!((r.status, r.code()), (status, code), "{field}: {}", r.body);
    }
    let r = app
        .post(
            "/api/v1/staff/cases",
            Some(&token),
            registration(&customer, business_days_ago(1)),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
    assert_eq!(cases_count(&app.pool).await, 0);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn staff_create_and_find_customers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let created = new_customer(&app, &org.collaborator, "52123459").await;
    // The same document again is the customer already on file.
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(&org.director),
            json!({"document_type": "CC", "document_number": " 52123459 ", "name": "Otra persona", "consent_channel": "in_person"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "customer_exists")
    );
    for (field, value, code) in [
        ("email", json!("no-es-correo"), "invalid_email"),
        ("phone", json!("12"), "invalid_phone"),
        ("document_number", json!("1"), "invalid_document_number"),
        ("name", json!(" "), "invalid_name"),
        ("consent_channel", json!("app"), "invalid_body"),
    ] {
        let mut body = json!({"document_type": "CC", "document_number": "52999999", "name": "Nueva", "consent_channel": "phone"});
        body[field] = value;
        let r = app
            .post("/api/v1/staff/customers", Some(&org.collaborator), body)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{field}"
        );
    }
    let consents: i64 = sqlx::query_scalar(
        "select count(*) from consents where customer_id = $1 and channel = 'phone'",
    )
    .bind(
        created["id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
            .expect("id"),
    )
    .fetch_one(&app.pool)
    .await
    .expect("consents");
    assert_eq!(consents, 1, "the consent given on the phone is recorded");

    // A customer who registered in the app, to be found beside the one staff created.
    app.customer("cliente@test.co", "1020304050").await;
    for q in [
        "52123459",
        "marta@correo.co",
        "MARTA@CORREO.CO",
        "+57 310 555 1234",
        "3105551234",
        "lucía",
        "MARTA",
    ] {
        let r = app
            .send(
                app.client
                    .get(app.url("/api/v1/staff/customers"))
                    .query(&[("q", q)])
                    .bearer_auth(&org.collaborator),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        let ids: Vec<&Value> = r
            .body
            .as_array()
            .expect("list")
            .iter()
            .map(|c| &c["id"])
            .collect();
        assert_eq!(ids, vec![&created["id"]], "{q}");
    }
    let r = app
        .get("/api/v1/staff/customers?q=1020304050", Some(&org.director))
        .await;
    assert_eq!(r.body[0]["has_app_user"], true, "{}", r.body);
    let r = app
        .get("/api/v1/staff/customers?q=100%25", Some(&org.director))
        .await;
    assert_eq!(r.body, json!([]), "% is a literal character");
    let long = "a".repeat(201);
    let r = app
        .get(
            &format!("/api/v1/staff/customers?q={long}"),
            Some(&org.director),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_query"),
        "longer than 200 characters"
    );
    let r = app
        .get("/api/v1/staff/customers?q=x", Some(&org.director))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query")
    );
    let customer = app.login("cliente@test.co").await;
    let r = app
        .get("/api/v1/staff/customers?q=52123459", Some(&customer))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn habeas_data_requests_have_the_terms_of_ley_1581(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer("cliente@test.co", "1020304050").await;
    let today = local_date(Utc::now());
    for (kind, days) in [("datos_consulta", 10), ("datos_reclamo", 15)] {
        let case = app.file(&token, kind).await;
        assert_eq!(case["type"], kind);
        assert_eq!(
            case["legal_due_date"],
            json!(BusinessCalendar::new([]).add_business_days(today, days)),
            "{kind}"
        );
        assert!(
            case["acknowledgement"]
                .as_str()
                .is_some_and(|a| a.contains("datos personales")),
            "{}",
            case["acknowledgement"]
        );
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_director_reclassifies_and_the_term_follows_the_new_type(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let token = app.customer("cliente@test.co", "1020304050").await;
    let case = app.file(&token, "peticion").await;
    let id = case["id"].as_str().expect("id").to_owned();
    app.backdate(&id, 7).await;
    let received: chrono::DateTime<Utc> =
        sqlx::query_scalar("select received_at from cases where id = $1")
            .bind(Uuid::parse_str(&id).expect("uuid"))
            .fetch_one(&app.pool)
            .await
            .expect("received_at");
    let path = format!("/api/v1/staff/cases/{id}/reclassify");

    let r = app
        .post(
            &path,
            Some(&org.collaborator),
            json!({"type": "reclamo", "reason": "Es un cobro"}),
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
            json!({"type": "peticion", "reason": "igual"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "same_type")
    );
    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"type": "datos_consulta", "reason": " "}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "reason_required")
    );

    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"type": "datos_consulta", "reason": "Pide saber qué datos suyos tenemos"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["type"], "datos_consulta");
    assert_eq!(r.body["legal_term_days"], 10);
    assert_eq!(
        r.body["legal_due_date"],
        json!(due_after(received, 10)),
        "counted from the original receipt"
    );
    let full = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&org.director))
        .await;
    let event = full.body["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "reclassified"))
        .cloned()
        .expect("a reclassified event");
    assert_eq!(
        event["comment"],
        "peticion → datos_consulta: Pide saber qué datos suyos tenemos"
    );
    // The customer is told the new date, in the app too.
    let notice: Value = sqlx::query_scalar(
        "select data from notifications where case_id = $1 and kind = 'reclassification'",
    )
    .bind(Uuid::parse_str(&id).expect("uuid"))
    .fetch_one(&app.pool)
    .await
    .expect("a reclassification notice");
    assert_eq!(notice["due_date"], json!(due_after(received, 10)));
    assert_eq!(notice["previous_type"], "peticion");
    let mine = app.get(&format!("/api/v1/cases/{id}"), Some(&token)).await;
    assert_eq!(mine.body["type"], "datos_consulta");
    let (title, body) = atiende_core::texts::push("es", "reclassification", &notice);
    assert!(
        title.contains(mine.body["radicado"].as_str().unwrap_or("?")),
        "{title}"
    );
    assert!(
        body.contains("consulta de datos personales") && body.contains("petición"),
        "{body}"
    );

    // Once answered the type stays.
    app.answer(&org, &id, "Estos son sus datos.").await;
    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"type": "reclamo", "reason": "tarde"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "case_already_closed")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_contact_merged_into_its_customer_brings_its_cases(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let token = app.customer("cliente@test.co", "1020304050").await;
    let customer_id: Uuid =
        sqlx::query_scalar("select id from customers where document_number = '1020304050'")
            .fetch_one(&app.pool)
            .await
            .expect("customer");
    // Someone filed from the web form typing the customer's document number: a contact of its own.
    let contact_id = Uuid::new_v4();
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name, verified)
         values ($1, 'person', 'CC', '1020304050', 'Cliente por la web', false)",
    )
    .bind(contact_id)
    .execute(&app.pool)
    .await
    .expect("contact");
    let filed = atiende_core::cases::file(
        &app.pool,
        contact_id,
        None,
        atiende_core::cases::NewCase {
            id: Uuid::new_v4(),
            case_type: atiende_core::types::CaseType::Queja,
            subject: "Nadie vino".into(),
            description: "La visita no se hizo.".into(),
            channel: atiende_core::types::Channel::Web,
            chat_id: None,
            work_order_id: None,
        },
    )
    .await
    .expect("filed");
    let case_id = match filed {
        atiende_core::cases::Filed::Created(c) => c.id,
        atiende_core::cases::Filed::Existing(c) => c.id,
    };
    let mine = app.get("/api/v1/cases", Some(&token)).await;
    assert_eq!(mine.body["items"], json!([]), "not the customer's yet");

    let path = format!("/api/v1/staff/customers/{customer_id}/merge");
    let r = app
        .post(
            &path,
            Some(&org.collaborator),
            json!({"contact_id": contact_id}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "role_not_allowed")
    );
    let r = app
        .post(
            &format!("/api/v1/staff/customers/{contact_id}/merge"),
            Some(&org.director),
            json!({"contact_id": customer_id}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "customer_not_verified")
    );
    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"contact_id": customer_id}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "same_customer")
    );

    let r = app
        .post(
            &path,
            Some(&org.director),
            json!({"contact_id": contact_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"cases": 1, "chats": 0}));

    let mine = app.get("/api/v1/cases", Some(&token)).await;
    let ids: Vec<&Value> = mine.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, vec![&json!(case_id)], "the customer now sees the case");
    let staff = app
        .get(
            &format!("/api/v1/staff/cases/{case_id}"),
            Some(&org.director),
        )
        .await;
    assert!(
        staff.body["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "merged")),
        "{}",
        staff.body["events"]
    );
    let found = app
        .get("/api/v1/staff/customers?q=1020304050", Some(&org.director))
        .await;
    assert_eq!(
        found.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        found.body
    );
    assert_eq!(found.body[0]["cases"], 1);

    let r = app
        .post(&path, Some(&org.admin), json!({"contact_id": contact_id}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "contact_already_merged")
    );
}
