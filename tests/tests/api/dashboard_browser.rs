//! The staff dashboard and the monthly report in a real browser (headless Chromium, as the web
//! form's test drives it): sign in, read the charts with their target lines on a phone and on a
//! desk, change the months, export the CSV with the session cookie, open the month's report,
//! save its analysis and print it to PDF. Screenshots go to `docs/dashboard/` (linked from the
//! README) when `ATIENDE_UPDATE_SCREENSHOTS` is set.

use atiende_tests::PASSWORD;
use serde_json::json;
use sqlx::PgPool;

use crate::indicators::world;
use crate::web_browser::Browser;

const DOCS: &str = "dashboard";

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_director_reads_the_dashboard_exports_and_writes_the_report(pool: PgPool) {
    let (app, _org) = world(pool).await;
    let mut browser = Browser::start().await;

    // Not signed in: the sign-in page, which leads back to the months asked for (in Spanish:
    // the browser itself asks for English).
    browser
        .open(
            &app.url("/staff?lang=es&from=2026-01&to=2026-03"),
            "/staff/login",
        )
        .await;
    browser.fill("email", "director@test.co").await;
    browser.fill("password", PASSWORD).await;
    browser.submit("main form button[type=submit]").await;
    browser.loaded("/staff").await;
    assert_eq!(
        browser.eval("location.search").await,
        json!("?lang=es&from=2026-01&to=2026-03")
    );
    let text = browser.text().await;
    assert!(text.contains("Casos más cerca de vencer"), "{text}");
    assert!(text.contains("PQRS-2026-C3"), "{text}");
    let charts = browser
        .eval("document.querySelectorAll('svg.chart').length")
        .await;
    assert!(charts.as_u64().expect("count") >= 6, "{charts}");
    assert_eq!(
        browser
            .eval("document.querySelector('#chart-satisfaction svg .target') !== null")
            .await,
        json!(true),
        "the 80 % target line"
    );
    assert_eq!(
        browser.eval("document.documentElement.scrollWidth").await,
        json!(360),
        "nothing wider than the phone"
    );
    browser.screenshot_in(DOCS, "dashboard-phone").await;

    // The month selector is a plain GET form.
    browser.fill("from", "2026-02").await;
    browser.submit("form.range button[type=submit]").await;
    assert_eq!(
        browser.eval("location.search").await,
        json!("?lang=es&from=2026-02&to=2026-03")
    );

    // The export link carries the session cookie (same site) and gives the API's CSV.
    let csv = browser
        .eval("fetch(document.getElementById('csv').href).then(r => r.text())")
        .await;
    let csv = csv.as_str().expect("CSV");
    let bom = browser
        .eval("fetch(document.getElementById('csv').href).then(r => r.arrayBuffer()).then(b => Array.from(new Uint8Array(b).slice(0, 3)))")
        .await;
    assert_eq!(
        bom,
        json!([0xEF, 0xBB, 0xBF]),
        "UTF-8 with a byte-order mark"
    );
    assert!(csv.contains("legal_term_compliance"), "{csv}");
    assert!(csv.contains("2026-02;2;1;50;no"), "{csv}");

    browser.set_width(1280).await;
    browser
        .open(&app.url("/staff?lang=es&from=2026-01&to=2026-03"), "/staff")
        .await;
    browser.screenshot_in(DOCS, "dashboard").await;

    browser.click("#report").await;
    browser.loaded("/staff/reports/2026-03").await;
    assert!(browser.text().await.contains("SGC-SAC-001 · REG-003"));
    browser
        .fill(
            "body",
            "En marzo se cumplió el término legal en todas las PQRS. La satisfacción de la \
             encuesta semestral bajó: se abrió un plan de acción con el proceso operativo.",
        )
        .await;
    browser.submit("main form button[type=submit]").await;
    browser.loaded("/staff/reports/2026-03").await;
    let text = browser.text().await;
    assert!(
        text.contains("Se guardó la versión 1 del análisis."),
        "{text}"
    );
    assert!(text.contains("Versión 1, escrita por"), "{text}");
    browser.screenshot_in(DOCS, "report").await;

    // Printed, the page is the document alone: no navigation, no form.
    browser
        .call("Emulation.setEmulatedMedia", json!({"media": "print"}))
        .await;
    assert_eq!(
        browser
            .eval("getComputedStyle(document.querySelector('header.site')).display + ' ' + getComputedStyle(document.querySelector('#body').closest('section')).display")
            .await,
        json!("none none")
    );
    browser
        .call("Emulation.setEmulatedMedia", json!({"media": ""}))
        .await;
    let pdf = browser
        .call("Page.printToPDF", json!({"printBackground": true}))
        .await;
    let pdf = pdf["data"].as_str().expect("PDF");
    assert!(pdf.starts_with("JVBERi"), "a PDF");
    assert!(pdf.len() > 10_000, "with its tables and charts");

    browser.stop().await;
    app.stop().await;
}
