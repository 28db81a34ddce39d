//! The monthly indicators against a fixed data set whose every figure was worked out by hand.
//!
//! Seven PQRS over January–March 2026 (Colombian time; working hours Monday–Friday 08:00–17:00;
//! Monday 2026-01-12 (Reyes) and Monday 2026-03-23 (San José) are holidays), written straight
//! into the tables with their clock events, as filing and the moves would have left them:
//!
//! | case | received (-05) | type, channel, process | priority | first response | resolution | answered / legal due | favour | rating |
//! |---|---|---|---|---|---|---|---|---|
//! | C1 | Fri 01-09 16:00 | queja, app, OPERATIVO, customer A | medium 4 h/24 h | Tue 01-13 09:00: 1 h Fri + holiday + 1 h = 2 h, met | Wed 01-14 12:00: 1 + 9 + 4 = 14 h, met | 01-14 / 02-02: on time | yes | 5 on 01-20 |
//! | C2 | Mon 01-19 08:00 | reclamo, whatsapp, OPERATIVO, B | high 2 h/8 h | 11:00: 3 h, breached | paused 12:00 (4 h), resumed Wed 01-21 08:00, stopped 10:00: 6 h, met | 01-21 / 02-10: on time | no | 3 on 02-03 |
//! | C3 | Tue 01-20 10:00 | peticion, app, COMERCIAL, A | low 8 h/48 h | 10:30: 0.5 h, met | running since: breached | not answered / 02-10 passed: late | — | — |
//! | C4 | Mon 02-02 16:30 | queja, phone, OPERATIVO, C | critical 1 h/4 h | 16:50: 1/3 h, met | Tue 02-03 10:00: 0.5 + 2 = 2.5 h, met | 02-03 / 02-24: on time | no | 2 on 03-10 |
//! | C5 | Tue 02-03 09:00 | reclamo, app, OPERATIVO, D | medium | 10:00: 1 h, met | Mon 03-02 09:00: 8 + 27 + 45 + 45 + 45 + 1 = 171 h, breached | 03-02 / 02-24: late | yes | 4 on 03-05 |
//! | C6 | Tue 02-10 10:00 | sugerencia, web, no process, C | medium | — (withdrawn: left out of times and terms) | | | — | — |
//! | C7 | Fri 03-20 16:00 | denuncia, email, COMERCIAL, E | high | Tue 03-24 09:00: 1 h + holiday + 1 h = 2 h, met at the due instant | 15:00: 1 + 7 = 8 h, met at the due instant | 03-24 / 04-15: on time | no | 5 on 03-25 |
//!
//! A semestral survey campaign (no visit, so no process), its 1–5 answers by invitation:
//!
//! | invitation | sent (-05) | answered (-05) | scores |
//! |---|---|---|---|
//! | I1 | 01-10 10:00 | 01-12 09:00 | 5, 4, 3 |
//! | I2 | 01-31 20:00 (February in UTC) | 02-02 10:00 | 5, 5, 4 |
//! | I3 | 02-15 10:00 | — | — |
//! | I4 | 03-01 00:30 | 03-31 23:00 (April in UTC) | 1, 1, 2 |
//!
//! Quotes (through the API): sent 01-15 accepted 02-02, sent 01-20 rejected 01-30, sent 02-10
//! expired 03-12, sent 03-05 undecided. Contracts (through the API): ending 01-31 renewed, 01-15
//! not renewed, 02-28 renewed, 03-31 undecided.

use atiende_core::types::Role;
use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

struct Case<'a> {
    name: &'a str,
    received: &'a str,
    case_type: &'a str,
    channel: &'a str,
    process: Option<&'a str>,
    customer: Uuid,
    priority: &'a str,
    status: &'a str,
    answered: Option<&'a str>,
    legal_due: &'a str,
    in_favour: Option<bool>,
    rating: Option<(i16, &'a str)>,
    /// (clock, kind, at) after the three starts.
    clock_events: &'a [(&'a str, &'a str, &'a str)],
}

async fn customer(pool: &PgPool, n: u32) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name) values ($1, 'person', 'CC', $2, $3)",
    )
    .bind(id)
    .bind(format!("7000{n}"))
    .bind(format!("Cliente {n}"))
    .execute(pool)
    .await
    .expect("customer");
    id
}

async fn insert(pool: &PgPool, c: &Case<'_>) {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into cases (id, radicado, type, subject, description, channel, customer_id, request_hash, status,
                            impact, urgency, priority, process_code, legal_term_days, legal_due_date,
                            received_at, created_at, answered_at, in_favor_of_customer, rating_score, rated_at)
         values ($1, $2, $3, 'Asunto', 'Descripción', $4, $5, '\\x00', $6, 'medium', 'medium', $7, $8, 15, $9::date,
                 $10::timestamptz, $10::timestamptz, $11::timestamptz, $12, $13, $14::timestamptz)",
    )
    .bind(id)
    .bind(format!("PQRS-2026-{}", c.name))
    .bind(c.case_type)
    .bind(c.channel)
    .bind(c.customer)
    .bind(c.status)
    .bind(c.priority)
    .bind(c.process)
    .bind(c.legal_due)
    .bind(c.received)
    .bind(c.answered)
    .bind(c.in_favour)
    .bind(c.rating.map(|r| r.0))
    .bind(c.rating.map(|r| r.1))
    .execute(pool)
    .await
    .expect("case");
    let starts = [
        ("legal", "start", c.received),
        ("first_response", "start", c.received),
        ("resolution", "start", c.received),
    ];
    for (clock, kind, at) in starts.iter().chain(c.clock_events) {
        sqlx::query(
            "insert into case_clock_events (case_id, clock, kind, at) values ($1, $2, $3, $4::timestamptz)",
        )
        .bind(id)
        .bind(clock)
        .bind(kind)
        .bind(at)
        .execute(pool)
        .await
        .expect("clock event");
    }
}

async fn cases(pool: &PgPool) {
    let [a, b, c, d, e] = [
        customer(pool, 1).await,
        customer(pool, 2).await,
        customer(pool, 3).await,
        customer(pool, 4).await,
        customer(pool, 5).await,
    ];
    let all = [
        Case {
            name: "C1",
            received: "2026-01-09 16:00-05",
            case_type: "queja",
            channel: "app",
            process: Some("OPERATIVO"),
            customer: a,
            priority: "medium",
            status: "rated",
            answered: Some("2026-01-14 12:00-05"),
            legal_due: "2026-02-02",
            in_favour: Some(true),
            rating: Some((5, "2026-01-20 10:00-05")),
            clock_events: &[
                ("first_response", "stop", "2026-01-13 09:00-05"),
                ("resolution", "stop", "2026-01-14 12:00-05"),
                ("legal", "stop", "2026-01-14 12:00-05"),
            ],
        },
        Case {
            name: "C2",
            received: "2026-01-19 08:00-05",
            case_type: "reclamo",
            channel: "whatsapp",
            process: Some("OPERATIVO"),
            customer: b,
            priority: "high",
            status: "rated",
            answered: Some("2026-01-21 10:00-05"),
            legal_due: "2026-02-10",
            in_favour: Some(false),
            rating: Some((3, "2026-02-03 10:00-05")),
            clock_events: &[
                ("first_response", "stop", "2026-01-19 11:00-05"),
                ("resolution", "pause", "2026-01-19 12:00-05"),
                ("legal", "pause", "2026-01-19 12:00-05"),
                ("resolution", "resume", "2026-01-21 08:00-05"),
                ("legal", "resume", "2026-01-21 08:00-05"),
                ("resolution", "stop", "2026-01-21 10:00-05"),
                ("legal", "stop", "2026-01-21 10:00-05"),
            ],
        },
        Case {
            name: "C3",
            received: "2026-01-20 10:00-05",
            case_type: "peticion",
            channel: "app",
            process: Some("COMERCIAL"),
            customer: a,
            priority: "low",
            status: "assigned",
            answered: None,
            legal_due: "2026-02-10",
            in_favour: None,
            rating: None,
            clock_events: &[("first_response", "stop", "2026-01-20 10:30-05")],
        },
        Case {
            name: "C4",
            received: "2026-02-02 16:30-05",
            case_type: "queja",
            channel: "phone",
            process: Some("OPERATIVO"),
            customer: c,
            priority: "critical",
            status: "rated",
            answered: Some("2026-02-03 10:00-05"),
            legal_due: "2026-02-24",
            in_favour: Some(false),
            rating: Some((2, "2026-03-10 10:00-05")),
            clock_events: &[
                ("first_response", "stop", "2026-02-02 16:50-05"),
                ("resolution", "stop", "2026-02-03 10:00-05"),
                ("legal", "stop", "2026-02-03 10:00-05"),
            ],
        },
        Case {
            name: "C5",
            received: "2026-02-03 09:00-05",
            case_type: "reclamo",
            channel: "app",
            process: Some("OPERATIVO"),
            customer: d,
            priority: "medium",
            status: "rated",
            answered: Some("2026-03-02 09:00-05"),
            legal_due: "2026-02-24",
            in_favour: Some(true),
            rating: Some((4, "2026-03-05 10:00-05")),
            clock_events: &[
                ("first_response", "stop", "2026-02-03 10:00-05"),
                ("resolution", "stop", "2026-03-02 09:00-05"),
                ("legal", "stop", "2026-03-02 09:00-05"),
            ],
        },
        Case {
            name: "C6",
            received: "2026-02-10 10:00-05",
            case_type: "sugerencia",
            channel: "web",
            process: None,
            customer: c,
            priority: "medium",
            status: "withdrawn",
            answered: None,
            legal_due: "2026-03-03",
            in_favour: None,
            rating: None,
            clock_events: &[
                ("first_response", "stop", "2026-02-10 11:00-05"),
                ("resolution", "pause", "2026-02-10 11:00-05"),
                ("resolution", "stop", "2026-03-13 11:00-05"),
            ],
        },
        Case {
            name: "C7",
            received: "2026-03-20 16:00-05",
            case_type: "denuncia",
            channel: "email",
            process: Some("COMERCIAL"),
            customer: e,
            priority: "high",
            status: "rated",
            answered: Some("2026-03-24 15:00-05"),
            legal_due: "2026-04-15",
            in_favour: Some(false),
            rating: Some((5, "2026-03-25 10:00-05")),
            clock_events: &[
                ("first_response", "stop", "2026-03-24 09:00-05"),
                ("resolution", "stop", "2026-03-24 15:00-05"),
                ("legal", "stop", "2026-03-24 15:00-05"),
            ],
        },
    ];
    for c in &all {
        insert(pool, c).await;
    }
}

async fn commercial(app: &TestApp, token: &str) {
    let customer = customer(&app.pool, 9).await;
    for (sent, outcome) in [
        ("2026-01-15", Some(("accepted", "2026-02-02T15:00:00Z"))),
        ("2026-01-20", Some(("rejected", "2026-01-30T15:00:00Z"))),
        ("2026-02-10", Some(("expired", "2026-03-12T15:00:00Z"))),
        ("2026-03-05", None),
    ] {
        let q = app
            .post(
                "/api/v1/staff/quotes",
                Some(token),
                json!({"customer_id": customer, "services": ["Fumigación"], "amount_cop": 800_000, "sent_on": sent}),
            )
            .await;
        assert_eq!(q.status, StatusCode::CREATED, "{}", q.body);
        if let Some((outcome, at)) = outcome {
            let id = q.body["id"].as_str().expect("id");
            let r = app
                .post(
                    &format!("/api/v1/staff/quotes/{id}/outcome"),
                    Some(token),
                    json!({"outcome": outcome, "decided_at": at}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    }
    for (ends, outcome) in [
        ("2026-01-31", Some(json!({"outcome": "renewed"}))),
        (
            "2026-01-15",
            Some(json!({"outcome": "not_renewed", "reason": "Precio"})),
        ),
        ("2026-02-28", Some(json!({"outcome": "renewed"}))),
        ("2026-03-31", None),
    ] {
        let k = app
            .post(
                "/api/v1/staff/contracts",
                Some(token),
                json!({"customer_id": customer, "services": ["Fumigación"], "visit_frequency": "monthly",
                       "starts_on": "2025-01-01", "ends_on": ends}),
            )
            .await;
        assert_eq!(k.status, StatusCode::CREATED, "{}", k.body);
        if let Some(outcome) = outcome {
            let id = k.body["id"].as_str().expect("id");
            let offer = app
                .post(
                    &format!("/api/v1/staff/contracts/{id}/renewal-offer"),
                    Some(token),
                    json!({"note": "Llamada"}),
                )
                .await;
            assert_eq!(offer.status, StatusCode::OK, "{}", offer.body);
            let r = app
                .post(
                    &format!("/api/v1/staff/contracts/{id}/renewal"),
                    Some(token),
                    outcome,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    }
}

/// The campaign of the table in the header: invitations with their answers to the semestral
/// template's three 1–5 questions, plus a choice and a yes/no that satisfaction does not count.
async fn surveys(pool: &PgPool) {
    const SEMESTRAL: &str = "5e1f0000-0000-4000-8000-000000000002";
    let campaign = Uuid::new_v4();
    sqlx::query(
        "insert into survey_campaigns (id, version_id, name, opens_at, closes_at)
         values ($1, $2::uuid, 'Primer semestre', '2026-01-05T08:00:00-05:00', '2026-06-30T17:00:00-05:00')",
    )
    .bind(campaign)
    .bind(SEMESTRAL)
    .execute(pool)
    .await
    .expect("campaign");
    let invitations: [(&str, Option<&str>, [i16; 3]); 4] = [
        (
            "2026-01-10T10:00:00-05:00",
            Some("2026-01-12T09:00:00-05:00"),
            [5, 4, 3],
        ),
        (
            "2026-01-31T20:00:00-05:00",
            Some("2026-02-02T10:00:00-05:00"),
            [5, 5, 4],
        ),
        ("2026-02-15T10:00:00-05:00", None, [0; 3]),
        (
            "2026-03-01T00:30:00-05:00",
            Some("2026-03-31T23:00:00-05:00"),
            [1, 1, 2],
        ),
    ];
    for (n, (sent, answered, scores)) in invitations.into_iter().enumerate() {
        let id = Uuid::new_v4();
        sqlx::query(
            "insert into survey_invitations (id, customer_id, version_id, campaign_id, sent_at,
                                             expires_at, answered_at, taken_via)
             values ($1, $2, $3::uuid, $4, $5::timestamptz, '2026-07-15T00:00:00-05:00',
                     $6::timestamptz, case when $6 is null then null else 'web' end)",
        )
        .bind(id)
        .bind(customer(pool, 90 + n as u32).await)
        .bind(SEMESTRAL)
        .bind(campaign)
        .bind(sent)
        .bind(answered)
        .execute(pool)
        .await
        .expect("invitation");
        if answered.is_none() {
            continue;
        }
        for (position, score) in (1i16..).zip(scores) {
            sqlx::query(
                "insert into survey_answers (invitation_id, version_id, position, score)
                 values ($1, $2::uuid, $3, $4)",
            )
            .bind(id)
            .bind(SEMESTRAL)
            .bind(position)
            .bind(score)
            .execute(pool)
            .await
            .expect("score");
        }
        sqlx::query(
            "insert into survey_answers (invitation_id, version_id, position, choice) values ($1, $2::uuid, 4, 'met')",
        )
        .bind(id)
        .bind(SEMESTRAL)
        .execute(pool)
        .await
        .expect("choice");
        sqlx::query(
            "insert into survey_answers (invitation_id, version_id, position, yes) values ($1, $2::uuid, 5, true)",
        )
        .bind(id)
        .bind(SEMESTRAL)
        .execute(pool)
        .await
        .expect("yes/no");
    }
}

pub(crate) async fn world(pool: PgPool) -> (TestApp, Org) {
    let settings = Settings {
        scheduler_interval_ms: 3_600_000,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool, settings).await;
    let org = app.org().await;
    cases(&app.pool).await;
    surveys(&app.pool).await;
    commercial(&app, &org.director).await;
    (app, org)
}

fn table<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no table {id}: {body}"))
}

const RANGE: &str = "/api/v1/staff/indicators?from=2026-01&to=2026-03";

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn every_indicator_matches_the_hand_computation(pool: PgPool) {
    let (app, org) = world(pool).await;
    let r = app.get(RANGE, Some(&org.director)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = &r.body;
    let rows = |id: &str| table(b, id)["rows"].clone();

    assert_eq!(
        rows("pqrs_by_type"),
        json!([
            ["2026-01", "peticion", 1],
            ["2026-01", "queja", 1],
            ["2026-01", "reclamo", 1],
            ["2026-02", "queja", 1],
            ["2026-02", "reclamo", 1],
            ["2026-02", "sugerencia", 1],
            ["2026-03", "denuncia", 1]
        ])
    );
    assert_eq!(
        rows("pqrs_by_channel"),
        json!([
            ["2026-01", "app", 2],
            ["2026-01", "whatsapp", 1],
            ["2026-02", "app", 1],
            ["2026-02", "phone", 1],
            ["2026-02", "web", 1],
            ["2026-03", "email", 1]
        ])
    );
    assert_eq!(
        rows("pqrs_by_process"),
        json!([
            ["2026-01", "COMERCIAL", 1],
            ["2026-01", "OPERATIVO", 2],
            ["2026-02", "", 1],
            ["2026-02", "OPERATIVO", 2],
            ["2026-03", "COMERCIAL", 1]
        ])
    );
    assert_eq!(
        rows("pqrs_by_status"),
        json!([
            ["2026-01", "assigned", 1],
            ["2026-01", "rated", 2],
            ["2026-02", "rated", 2],
            ["2026-02", "withdrawn", 1],
            ["2026-03", "rated", 1]
        ])
    );
    // January: C1 and C2 on time, C3 unanswered past its date: 2 of 3. February: C4 on time, C5
    // late, C6 withdrawn (left out): 1 of 2. March: C7, 1 of 1. Target 100 %.
    let legal = table(b, "legal_term_compliance");
    assert_eq!(legal["target"]["percent"], json!(100.0));
    assert_eq!(legal["target"]["comparison"], "at_least");
    assert_eq!(
        legal["rows"],
        json!([
            ["2026-01", 3, 2, 66.67, false],
            ["2026-02", 2, 1, 50.0, false],
            ["2026-03", 1, 1, 100.0, true]
        ])
    );
    // Customers who filed in the month: January A and B (2), one case in favour (C1) of two
    // decided; February C and D (2), C5 in favour of two decided; March E, none of one.
    let favour = table(b, "in_favour");
    assert_eq!(favour["target"]["percent"], json!(0.5));
    assert_eq!(favour["target"]["comparison"], "at_most");
    assert_eq!(
        favour["rows"],
        json!([
            ["2026-01", 2, 2, 1, 50.0, false, 50.0],
            ["2026-02", 2, 2, 1, 50.0, false, 50.0],
            ["2026-03", 1, 1, 0, 0.0, true, 0.0]
        ])
    );
    // Ratings by the month given: January C1 (5); February C2 (3); March C5 (4), C4 (2), C7 (5).
    let satisfaction = table(b, "pqrs_satisfaction");
    assert_eq!(satisfaction["target"]["percent"], json!(80.0));
    assert_eq!(
        satisfaction["rows"],
        json!([
            ["2026-01", 1, 1, 100.0, true],
            ["2026-02", 1, 0, 0.0, false],
            ["2026-03", 3, 2, 66.67, false]
        ])
    );
    // First response: January 2, 3 and 0.5 h (mean 5.5 / 3, median 2, p90 the 3rd of 3);
    // February 1/3 h and 1 h; March 2 h. Resolution: January 14 and 6 h (C3 not stopped);
    // February 2.5 and 171 h; March 8 h.
    assert_eq!(
        rows("response_times"),
        json!([
            ["2026-01", "first_response", 3, 1.83, 2.0, 3.0],
            ["2026-01", "resolution", 2, 10.0, 10.0, 14.0],
            ["2026-02", "first_response", 2, 0.67, 0.67, 1.0],
            ["2026-02", "resolution", 2, 86.75, 86.75, 171.0],
            ["2026-03", "first_response", 1, 2.0, 2.0, 2.0],
            ["2026-03", "resolution", 1, 8.0, 8.0, 8.0]
        ])
    );
    // C2's first response (3 h of 2) and C3's running resolution, C5's resolution (171 h of 24)
    // are the breaches; C7 met both at the very instant they were due.
    assert_eq!(
        rows("sla_compliance"),
        json!([
            ["2026-01", "high", "first_response", 1, 0, 0.0],
            ["2026-01", "high", "resolution", 1, 1, 100.0],
            ["2026-01", "low", "first_response", 1, 1, 100.0],
            ["2026-01", "low", "resolution", 1, 0, 0.0],
            ["2026-01", "medium", "first_response", 1, 1, 100.0],
            ["2026-01", "medium", "resolution", 1, 1, 100.0],
            ["2026-02", "critical", "first_response", 1, 1, 100.0],
            ["2026-02", "critical", "resolution", 1, 1, 100.0],
            ["2026-02", "medium", "first_response", 1, 1, 100.0],
            ["2026-02", "medium", "resolution", 1, 0, 0.0],
            ["2026-03", "high", "first_response", 1, 1, 100.0],
            ["2026-03", "high", "resolution", 1, 1, 100.0]
        ])
    );
    assert_eq!(
        rows("quotes"),
        json!([
            ["2026-01", 2, 0, 1, 0],
            ["2026-02", 1, 1, 0, 0],
            ["2026-03", 1, 0, 0, 1]
        ])
    );
    assert_eq!(
        rows("contract_retention"),
        json!([
            ["2026-01", 2, 1, 1, 0, 50.0],
            ["2026-02", 1, 1, 0, 0, 100.0],
            ["2026-03", 1, 0, 0, 1, 0.0]
        ])
    );
    // Survey answers by the month answered (Colombian time), template by template: January I1
    // (5, 4, 3: two of three), February I2 (5, 5, 4: all), March I4 (1, 1, 2: none, though
    // answered on April 1st in UTC). No visit was surveyed.
    let surveyed = table(b, "survey_satisfaction");
    assert_eq!(surveyed["target"]["percent"], json!(80.0));
    assert_eq!(
        surveyed["rows"],
        json!([
            ["2026-01", "post_service", 0, 0, null, null],
            ["2026-01", "semestral", 3, 2, 66.67, false],
            ["2026-02", "post_service", 0, 0, null, null],
            ["2026-02", "semestral", 3, 3, 100.0, true],
            ["2026-03", "post_service", 0, 0, null, null],
            ["2026-03", "semestral", 3, 0, 0.0, false]
        ])
    );
    // Invitations by the month sent (Colombian time): January I1 and I2 (sent on January 31st at
    // 20:00, February in UTC), both answered; February I3, unanswered; March I4, answered.
    assert_eq!(
        rows("survey_response_rate"),
        json!([
            ["2026-01", "post_service", 0, 0, null],
            ["2026-01", "semestral", 2, 2, 100.0],
            ["2026-02", "post_service", 0, 0, null],
            ["2026-02", "semestral", 1, 0, 0.0],
            ["2026-03", "post_service", 0, 0, null],
            ["2026-03", "semestral", 1, 1, 100.0]
        ])
    );
    for t in b["tables"].as_array().expect("tables") {
        assert!(t["method"].as_str().is_some_and(|m| m.len() > 20), "{t}");
    }

    // Filters: the PQRS of one process, or one channel, leave quotes and contracts out.
    let operativo = app
        .get(&format!("{RANGE}&process=operativo"), Some(&org.director))
        .await;
    assert_eq!(operativo.status, StatusCode::OK, "{}", operativo.body);
    assert_eq!(
        table(&operativo.body, "pqrs_by_type")["rows"],
        json!([
            ["2026-01", "queja", 1],
            ["2026-01", "reclamo", 1],
            ["2026-02", "queja", 1],
            ["2026-02", "reclamo", 1]
        ])
    );
    assert!(
        operativo.body["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .all(|t| t["id"] != "quotes" && t["id"] != "contract_retention")
    );
    let app_channel = app
        .get(&format!("{RANGE}&channel=app"), Some(&org.director))
        .await;
    // Surveys come by no door: a channel leaves them out.
    assert!(
        app_channel.body["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .all(|t| !t["id"].as_str().is_some_and(|id| id.starts_with("survey_")))
    );
    assert_eq!(
        table(&app_channel.body, "legal_term_compliance")["rows"],
        json!([
            ["2026-01", 2, 1, 50.0, false],
            ["2026-02", 1, 0, 0.0, false],
            ["2026-03", 0, 0, null, null]
        ])
    );

    // A process leader sees the processes they lead.
    let leader = app.get(RANGE, Some(&org.leader)).await;
    assert_eq!(leader.status, StatusCode::OK, "{}", leader.body);
    assert_eq!(leader.body["processes"], json!(["OPERATIVO"]));
    assert_eq!(
        table(&leader.body, "pqrs_by_process")["rows"],
        json!([["2026-01", "OPERATIVO", 2], ["2026-02", "OPERATIVO", 2]])
    );
    // The campaign surveyed no visit of OPERATIVO: nothing of it is the leader's.
    assert_eq!(
        table(&leader.body, "survey_response_rate")["rows"][1],
        json!(["2026-01", "semestral", 0, 0, null])
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn indicators_as_csv_for_a_spanish_spreadsheet(pool: PgPool) {
    let (app, org) = world(pool).await;
    let expected = "\u{feff}month;due;on_time;percent;met\r\n2026-01;3;2;66,67;no\r\n2026-02;2;1;50;no\r\n2026-03;1;1;100;sí\r\n";
    let by_accept = app
        .client
        .get(app.url(&format!("{RANGE}&table=legal_term_compliance")))
        .bearer_auth(&org.director)
        .header("accept", "text/csv")
        .send()
        .await
        .expect("csv");
    assert_eq!(by_accept.status(), StatusCode::OK);
    assert_eq!(
        by_accept.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(by_accept.text().await.expect("text"), expected);
    let by_param = app
        .client
        .get(app.url(&format!("{RANGE}&table=legal_term_compliance&format=csv")))
        .bearer_auth(&org.director)
        .send()
        .await
        .expect("csv");
    assert_eq!(by_param.text().await.expect("text"), expected);
    // Every table, each after a line with its id and how it was computed (quoted: it has `;`
    // or not, as needed).
    let all = app
        .client
        .get(app.url(&format!("{RANGE}&format=csv")))
        .bearer_auth(&org.director)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(all.starts_with("\u{feff}pqrs_by_type;"), "{all}");
    assert!(all.contains("\r\n\r\nresponse_times;"), "{all}");
    assert!(
        all.contains("2026-02;resolution;2;86,75;86,75;171\r\n"),
        "{all}"
    );
    assert!(all.contains("2026-01;2;1;1;0;50\r\n"), "{all}");
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_indicator_queries_are_refused(pool: PgPool) {
    let settings = Settings {
        scheduler_interval_ms: 3_600_000,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool, settings).await;
    let org = app.org().await;
    for (query, status, code) in [
        (
            "from=2026-13&to=2026-12",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_month",
        ),
        (
            "from=26-01",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_month",
        ),
        (
            "from=2026-03&to=2026-01",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_range",
        ),
        (
            "from=2023-01&to=2026-01",
            StatusCode::UNPROCESSABLE_ENTITY,
            "range_too_long",
        ),
        (
            "channel=fax",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_channel",
        ),
        (
            "process=1x",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_process_code",
        ),
        (
            "process=NADA",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_process",
        ),
        (
            "format=xml",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_format",
        ),
        (
            "format=csv&table=nada",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_table",
        ),
    ] {
        let r = app
            .get(
                &format!("/api/v1/staff/indicators?{query}"),
                Some(&org.director),
            )
            .await;
        assert_eq!((r.status, r.code()), (status, code), "{query}: {}", r.body);
    }
    // 36 months is the most.
    let longest = app
        .get(
            "/api/v1/staff/indicators?from=2024-01&to=2026-12",
            Some(&org.director),
        )
        .await;
    assert_eq!(longest.status, StatusCode::OK, "{}", longest.body);
    for (token, status, code) in [
        (&org.collaborator, StatusCode::FORBIDDEN, "role_not_allowed"),
        (&org.technician, StatusCode::FORBIDDEN, "staff_only"),
    ] {
        let r = app.get("/api/v1/staff/indicators", Some(token)).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    }
    let other = app
        .get(
            "/api/v1/staff/indicators?process=COMERCIAL",
            Some(&org.leader),
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::FORBIDDEN, "not_process_leader")
    );
    let (_, idle) = app
        .staff("lider.sin.proceso@test.co", Role::ProcessLeader, None)
        .await;
    let none = app.get("/api/v1/staff/indicators", Some(&idle)).await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::FORBIDDEN, "not_process_leader")
    );
    let customer = app.customer("cliente@test.co", "900123").await;
    let r = app.get("/api/v1/staff/indicators", Some(&customer)).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
    app.stop().await;
}

/// The code that writes a case's clock events keeps what they measure on the case, and the
/// indicators read that: cases taken through the moves (late, paused and resumed, extended,
/// reprioritised after the first response, breached while running, running in time) give the
/// same times and SLA compliance as derived again from their events, and as measured afresh from
/// the queue the migration fills.
#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn kept_clock_figures_match_the_events(pool: PgPool) {
    let settings = Settings {
        scheduler_interval_ms: 3_600_000,
        ..Settings::default()
    };
    let app = spawn_app_with(pool, settings).await;
    let org = app.org().await;
    let customer = app.customer("figuras@test.co", "71000").await;
    let post = |path: String, token: String, body: Value| {
        let app = &app;
        async move {
            let r = app.post(&path, Some(&token), body).await;
            assert!(r.status.is_success(), "{path}: {}", r.body);
            r.body
        }
    };
    let file = || async {
        app.file(&customer, "reclamo").await["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let staff = |id: &str, what: &str| format!("/api/v1/staff/cases/{id}/{what}");

    // Filed ten days ago: the first word is late; the customer is asked for information and
    // answers; the legal term is extended; then the answer.
    let late = file().await;
    app.backdate(&late, 10).await;
    let said = json!({"body": "Estamos revisando su caso."});
    post(staff(&late, "messages"), org.director.clone(), said.clone()).await;
    post(
        staff(&late, "request-info"),
        org.director.clone(),
        json!({"question": "Envíe la factura, por favor."}),
    )
    .await;
    post(
        format!("/api/v1/cases/{late}/messages"),
        customer.clone(),
        json!({"body": "Aquí está la factura."}),
    )
    .await;
    let due = app
        .get(&format!("/api/v1/staff/cases/{late}"), Some(&org.director))
        .await
        .body["legal_due_date"]
        .as_str()
        .and_then(|d| d.parse::<chrono::NaiveDate>().ok())
        .expect("legal due date");
    let extended = atiende_core::calendar::BusinessCalendar::default().add_business_days(due, 3);
    post(
        staff(&late, "extend"),
        org.director.clone(),
        json!({"new_due_date": extended, "reason": "Requiere visita técnica"}),
    )
    .await;
    app.answer(&org, &late, "Reembolsamos la visita.").await;

    // Answered at once, its priority set after the first response stopped.
    let quick = file().await;
    post(
        staff(&quick, "messages"),
        org.director.clone(),
        said.clone(),
    )
    .await;
    app.answer(&org, &quick, "Reprogramamos la visita.").await;

    // Ten days old and still open, assigned as critical: both clocks breached while running.
    let open = file().await;
    app.backdate(&open, 10).await;
    post(
        staff(&open, "assign"),
        org.director.clone(),
        json!({"process": "OPERATIVO", "impact": "high", "urgency": "high"}),
    )
    .await;
    // Just filed: both clocks running in time.
    file().await;

    assert_eq!(
        app.count("select count(*) from cases where clocks_measured_at is null")
            .await,
        0,
        "filing and every move keep the figures"
    );
    let today = atiende_core::calendar::local_date(chrono::Utc::now());
    let month = |d: chrono::NaiveDate| d.format("%Y-%m").to_string();
    let range = format!(
        "/api/v1/staff/indicators?from={}&to={}",
        month(today - chrono::Days::new(10)),
        month(today)
    );
    let clocks = || async {
        let r = app.get(&range, Some(&org.director)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        [
            table(&r.body, "response_times")["rows"].clone(),
            table(&r.body, "sla_compliance")["rows"].clone(),
        ]
    };
    let kept = clocks().await;
    let [times, sla] = &kept;
    let sum = |rows: &Value, clock: &str, col: usize| -> i64 {
        rows.as_array()
            .expect("rows")
            .iter()
            .filter(|r| r[2] == clock || r[1] == clock)
            .map(|r| r[col].as_i64().expect("count"))
            .sum()
    };
    // Two resolutions stopped (the late one and the quick one); the late first word and the open
    // case's two clocks are breaches, the quick first word met; the new case is still running.
    assert_eq!(sum(times, "resolution", 2), 2, "{times}");
    assert_eq!(sum(times, "first_response", 2), 2, "{times}");
    assert_eq!(
        (sum(sla, "first_response", 3), sum(sla, "first_response", 4)),
        (3, 1),
        "{sla}"
    );
    assert_eq!(sum(sla, "resolution", 3), 3, "{sla}");
    assert!(sum(sla, "resolution", 4) <= 2, "{sla}");

    let stored = || async {
        sqlx::query_as::<_, (Uuid, Option<i64>, Option<bool>, Option<i64>, Option<bool>)>(
            "select id, first_response_secs, first_response_met, resolution_secs, resolution_met
             from cases order by id",
        )
        .fetch_all(&app.pool)
        .await
        .expect("figures")
    };
    let figures = stored().await;
    sqlx::query("update cases set clocks_measured_at = null")
        .execute(&app.pool)
        .await
        .expect("forget");
    assert_eq!(clocks().await, kept, "derived from the events");

    sqlx::query("insert into clock_measure_queue (case_id) select id from cases")
        .execute(&app.pool)
        .await
        .expect("queue");
    while atiende_core::deadlines::measure_queued(&app.pool, 2)
        .await
        .expect("measure")
        > 0
    {}
    assert_eq!(stored().await, figures, "measured afresh");
    assert_eq!(clocks().await, kept);
    app.stop().await;
}
