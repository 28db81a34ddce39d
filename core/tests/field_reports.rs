//! The rules a field report's content must meet before it becomes rows.

use atiende_core::field_reports::{Product, parse};
use serde_json::{Value, json};

fn report() -> Value {
    json!({
        "work_order_id": "8c1f5a0e-8a51-4c51-9d7e-6f1b2b0f6b11",
        "arrival_at": "2026-12-02T09:05:00-05:00",
        "departure_at": "2026-12-02T10:40:00-05:00",
        "treatment_type": "aspersión",
        "areas_treated": ["cocina", "bodega"],
        "target_pest": "cucarachas",
        "products": [{
            "name": "Cipermetrina 20 EC", "active_ingredient": "cipermetrina",
            "registration_number": "RSCO-0123", "lot": "L-77", "quantity": 1.5, "unit": "L", "dose": 10
        }],
        "observations": "  actividad alta en la cocina  ",
        "recommendations": null,
        "photos": ["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],
        "signature": {"blob": "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", "signed_by": "Ana"},
        "completed": true
    })
}

fn with(key: &str, value: Value) -> Value {
    let mut r = report();
    r[key] = value;
    r
}

#[test]
fn a_complete_report_parses_with_times_in_utc_and_text_trimmed() {
    let r = parse(&report()).expect("valid");
    assert_eq!(
        r.arrival_at.map(|t| t.to_rfc3339()),
        Some("2026-12-02T14:05:00+00:00".to_owned())
    );
    assert_eq!(
        r.observations.as_deref(),
        Some("actividad alta en la cocina")
    );
    assert_eq!(r.recommendations, None);
    assert_eq!(r.areas_treated, vec!["cocina", "bodega"]);
    assert_eq!(
        r.products,
        vec![Product {
            name: "Cipermetrina 20 EC".into(),
            active_ingredient: Some("cipermetrina".into()),
            registration_number: Some("RSCO-0123".into()),
            lot: Some("L-77".into()),
            quantity: Some(1.5),
            unit: Some("L".into()),
            dose: Some("10".into()),
        }]
    );
    assert!(r.completed);
    assert_eq!(
        r.signature.expect("signature").signed_by.as_deref(),
        Some("Ana")
    );
}

#[test]
fn the_report_the_server_creates_is_valid_before_anyone_edits_it() {
    let empty = json!({
        "work_order_id": "x", "address": "Calle 1", "scheduled_at": "2026-12-02T14:00:00+00:00",
        "service_type": "fumigación", "arrival_at": null, "departure_at": null,
        "treatment_type": null, "target_pest": null, "observations": null,
        "recommendations": null, "signature": null, "areas_treated": [], "products": [],
        "photos": [], "completed": false
    });
    let r = parse(&empty).expect("valid");
    assert!(!r.completed && r.products.is_empty() && r.signature.is_none());
}

#[test]
fn each_broken_rule_is_named_for_staff() {
    let cases = [
        (
            with("arrival_at", json!("ayer")),
            "arrival_at must be an RFC 3339 date and time",
        ),
        (
            with("departure_at", json!("2026-12-02T08:00:00-05:00")),
            "departure_at is before arrival_at",
        ),
        (
            with("areas_treated", json!("cocina")),
            "areas_treated must be a list",
        ),
        (
            with("areas_treated", json!([""])),
            "areas_treated[0] is empty",
        ),
        (
            with("products", json!([{"quantity": 1}])),
            "products[0].name is required",
        ),
        (
            with("products", json!([{"name": "X", "quantity": -1}])),
            "products[0].quantity must be zero or more",
        ),
        (
            with("products", json!([{"name": "X", "quantity": "mucho"}])),
            "products[0].quantity must be a number",
        ),
        (
            with("products", json!(["X"])),
            "products[0] must be an object",
        ),
        (
            with("photos", json!(["foto.jpg"])),
            "photos[0] must be the SHA-256",
        ),
        (
            with("signature", json!({"signed_by": "Ana"})),
            "signature.blob must be the SHA-256",
        ),
        (
            with("signature", Value::Null),
            "a completed report needs the customer's signature",
        ),
        (
            with("completed", json!("sí")),
            "completed must be true or false",
        ),
        (with("observations", json!(42)), "observations must be text"),
        (
            with("observations", json!("x".repeat(4_001))),
            "observations has more than 4000 characters",
        ),
        (
            with("photos", Value::Array(vec![json!("a".repeat(64)); 201])),
            "photos has more than 200 entries",
        ),
        (
            json!(["not", "an", "object"]),
            "the report is not an object",
        ),
    ];
    for (content, expected) in cases {
        let err = parse(&content).expect_err(expected);
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}
