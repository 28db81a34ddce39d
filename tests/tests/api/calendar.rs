use atiende_tests::spawn_app;
use reqwest::StatusCode;
use sqlx::PgPool;

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn holidays_of_a_year_with_overrides(pool: PgPool) {
    let app = spawn_app(pool).await;
    let r = app.get("/api/v1/calendar/holidays?year=2026", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let dates: Vec<&str> = r.body["holidays"]
        .as_array()
        .expect("holidays")
        .iter()
        .filter_map(|h| h["date"].as_str())
        .collect();
    assert_eq!(dates.len(), 19, "{dates:?}");
    for expected in [
        "2026-01-01",
        "2026-01-12",
        "2026-04-02",
        "2026-04-03",
        "2026-07-13",
        "2026-11-16",
        "2026-12-08",
    ] {
        assert!(
            dates.contains(&expected),
            "{expected} missing from {dates:?}"
        );
    }

    let date = |s: &str| s.parse().expect("date");
    atiende_core::holidays::add_override(&app.pool, date("2026-11-24"), "Día cívico")
        .await
        .expect("add");
    atiende_core::holidays::remove_holiday(&app.pool, date("2026-01-12"))
        .await
        .expect("remove");
    let r = app.get("/api/v1/calendar/holidays?year=2026", None).await;
    let holidays = r.body["holidays"].as_array().expect("holidays");
    assert!(holidays.iter().any(|h| h["date"] == "2026-11-24"
        && h["source"] == "override"
        && h["name"] == "Día cívico"));
    assert!(!holidays.iter().any(|h| h["date"] == "2026-01-12"));

    for bad in ["year=1800", "year=abc"] {
        let r = app
            .get(&format!("/api/v1/calendar/holidays?{bad}"), None)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }
}
