//! The web form in a real browser: headless Chromium (Debian's `chromium`, which `scripts/test`
//! installs) driven over the DevTools protocol at a phone's 360 px width, in Spanish and English.
//! It fills and sends the form with an attachment, checks the status, replies and rates on the
//! case's page, and saves a screenshot of each page: in `docs/web/` (linked from the README) when
//! `ATIENDE_UPDATE_SCREENSHOTS` is set, else in the system's temporary directory.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use atiende_tests::{Org, TestApp, spawn_app};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WIDTH: u32 = 360;

/// A headless Chromium and one of its pages (the staff dashboard's test drives it too).
pub(crate) struct Browser {
    process: Child,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    width: u32,
    _profile: TempDir,
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        let profile = TempDir(
            std::env::temp_dir().join(format!("atiende-chromium-{}", uuid::Uuid::new_v4())),
        );
        let mut process = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                &format!("--user-data-dir={}", profile.0.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium (Debian's `chromium` package; scripts/test installs it)");
        let stderr = process.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("chromium's output") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium ended without a DevTools endpoint");
        })
        .await
        .expect("chromium starts within 30 s");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = endpoint
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .expect("port")
            .to_owned();
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("list targets")
            .json()
            .await
            .expect("targets");
        let page_url = targets
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page")
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(page_url.as_str())
            .await
            .expect("connect to the page");
        let mut browser = Browser {
            process,
            page,
            next_id: 0,
            width: WIDTH,
            _profile: profile,
        };
        browser.set_width(WIDTH).await;
        browser.call("Page.enable", json!({})).await;
        browser
    }

    /// Sends a DevTools command and waits for its result (events in between are skipped).
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params}).to_string();
        self.page.send(Message::text(command)).await.expect("send");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.page.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer in 30 s"))
                .expect("the page's socket is open")
                .expect("a message");
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    pub(crate) async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until the page at a path starting with `path` has loaded.
    pub(crate) async fn loaded(&mut self, path: &str) {
        let check = format!(
            "document.readyState === 'complete' && location.pathname.startsWith({})",
            json!(path)
        );
        for _ in 0..300 {
            if self.eval(&check).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let at = self.eval("location.href").await;
        panic!("{path} did not load (at {at})");
    }

    pub(crate) async fn open(&mut self, url: &str, path: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.loaded(path).await;
    }

    /// Types into the field with this id, as a person would leave it.
    pub(crate) async fn fill(&mut self, id: &str, value: &str) {
        let js = format!(
            "(() => {{ const e = document.getElementById({}); e.focus(); e.value = {}; return true; }})()",
            json!(id),
            json!(value)
        );
        assert_eq!(self.eval(&js).await, json!(true));
    }

    pub(crate) async fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ document.querySelector({}).click(); return true; }})()",
            json!(selector)
        );
        assert_eq!(self.eval(&js).await, json!(true));
    }

    /// Clicks a submit button and waits for the page the form leads to.
    pub(crate) async fn submit(&mut self, selector: &str) {
        self.eval("window.__before_submit = true").await;
        self.click(selector).await;
        for _ in 0..300 {
            let ready = self
                .eval("window.__before_submit !== true && document.readyState === 'complete' && document.body !== null")
                .await;
            if ready == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("submitting {selector} led to no page");
    }

    pub(crate) async fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .expect("text")
            .to_owned()
    }

    /// Lays pages out at `width` CSS pixels: a phone below 600, a desk above.
    pub(crate) async fn set_width(&mut self, width: u32) {
        self.width = width;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 740, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
    }

    /// The whole page as a PNG at the phone's width, saved as `{name}.png` in `docs/web/`.
    async fn screenshot(&mut self, name: &str) {
        self.screenshot_in("web", name).await;
    }

    /// The whole page as a PNG at the current width, saved as `{name}.png`: in `docs/{dir}/`
    /// when `ATIENDE_UPDATE_SCREENSHOTS` is set, else in the system's temporary directory.
    pub(crate) async fn screenshot_in(&mut self, dir: &str, name: &str) {
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .await
            .as_u64()
            .expect("height");
        let width = self.width;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        self.set_width(width).await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("data"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        // The README's pictures change only when asked: every run would otherwise rewrite them
        // (new links, new dates) in everyone's checkout.
        let dir = if std::env::var_os("ATIENDE_UPDATE_SCREENSHOTS").is_some() {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../docs")
                .join(dir)
        } else {
            std::env::temp_dir().join(format!("atiende-{dir}-screenshots"))
        };
        std::fs::create_dir_all(&dir).expect("the screenshots' directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("save the screenshot");
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.page.close(None).await;
        let _ = self.process.kill().await;
    }
}

/// What each language's run expects to read.
struct Texts {
    lang: &'static str,
    errors: &'static str,
    filed: &'static str,
    received: &'static str,
    waiting: &'static str,
    replied: &'static str,
    rated: &'static str,
}

const ES: Texts = Texts {
    lang: "es",
    errors: "El formulario tiene errores",
    filed: "Recibimos su solicitud",
    received: "Recibida",
    waiting: "Esperando su respuesta",
    replied: "Recibimos su respuesta.",
    rated: "Gracias por calificar: 4 de 5.",
};

const EN: Texts = Texts {
    lang: "en",
    errors: "The form has errors",
    filed: "We received your request",
    received: "Received",
    waiting: "Waiting for your reply",
    replied: "We received your reply.",
    rated: "Thank you for rating: 4 out of 5.",
};

async fn walk_through(app: &TestApp, org: &Org, browser: &mut Browser, t: &Texts, document: &str) {
    let l = t.lang;
    browser
        .open(&app.url(&format!("/pqrs?lang={l}")), "/pqrs")
        .await;
    browser.screenshot(&format!("form-{l}")).await;

    // Sent empty: every error next to its field and in the summary.
    browser.submit("form button[type=submit]").await;
    assert!(browser.text().await.contains(t.errors));
    browser.screenshot(&format!("form-errors-{l}")).await;

    browser.click("#consent").await;
    browser.fill("document_type", "CC").await;
    browser.fill("document_number", document).await;
    browser.fill("name", "Ana Pérez").await;
    browser.fill("email", "ana@example.co").await;
    browser.fill("case_type", "queja").await;
    browser.fill("subject", "Visita incumplida").await;
    browser
        .fill("description", "El técnico no llegó a la visita del martes.")
        .await;
    let photo = std::env::temp_dir().join(format!("atiende-web-{l}-{}.png", uuid::Uuid::new_v4()));
    std::fs::write(&photo, PIXEL_PNG).expect("the attachment");
    let document_node = browser.call("DOM.getDocument", json!({})).await["root"]["nodeId"].clone();
    let input = browser
        .call(
            "DOM.querySelector",
            json!({"nodeId": document_node, "selector": "#attachments"}),
        )
        .await["nodeId"]
        .clone();
    browser
        .call(
            "DOM.setFileInputFiles",
            json!({"nodeId": input, "files": [photo.display().to_string()]}),
        )
        .await;
    browser.submit("form button[type=submit]").await;
    let _ = std::fs::remove_file(&photo);
    assert!(
        browser.text().await.contains(t.filed),
        "{}",
        browser.text().await
    );
    browser.screenshot(&format!("filed-{l}")).await;
    let radicado = browser
        .eval("document.getElementById('radicado').textContent.trim()")
        .await
        .as_str()
        .expect("radicado")
        .to_owned();
    let link = browser
        .eval("document.getElementById('case-link').getAttribute('href')")
        .await
        .as_str()
        .expect("link")
        .to_owned();
    let (id, attachments): (uuid::Uuid, i64) = sqlx::query_as(
        "select c.id, (select count(*) from case_attachments a where a.case_id = c.id)
         from cases c where c.radicado = $1",
    )
    .bind(&radicado)
    .fetch_one(&app.pool)
    .await
    .expect("the case");
    assert_eq!(attachments, 1, "the photo went with the case");

    browser
        .open(&app.url(&format!("/pqrs/estado?lang={l}")), "/pqrs/estado")
        .await;
    browser.fill("radicado", &radicado).await;
    browser.fill("document_number", document).await;
    browser.submit("form button[type=submit]").await;
    assert!(
        browser.text().await.contains(t.received),
        "{}",
        browser.text().await
    );
    browser.screenshot(&format!("status-{l}")).await;

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "¿Podría indicarnos la dirección de la visita?"}),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    browser.open(&app.url(&link), "/pqrs/caso/").await;
    assert!(browser.text().await.contains(t.waiting));
    browser.fill("body", "Calle 10 # 20-30, Bogotá.").await;
    browser.submit("form button[type=submit]").await;
    assert!(
        browser.text().await.contains(t.replied),
        "{}",
        browser.text().await
    );
    browser.screenshot(&format!("case-reply-{l}")).await;

    app.answer(
        org,
        &id.to_string(),
        "Reprogramamos la visita para el jueves.",
    )
    .await;
    browser.open(&app.url(&link), "/pqrs/caso/").await;
    browser.click("#score-4").await;
    browser.fill("comment", "Bien").await;
    browser.screenshot(&format!("case-answered-{l}")).await;
    browser.submit("form button[type=submit]").await;
    assert!(
        browser.text().await.contains(t.rated),
        "{}",
        browser.text().await
    );
    let score: Option<i16> = sqlx::query_scalar("select rating_score from cases where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("rating");
    assert_eq!(score, Some(4));
    let width = browser.eval("document.documentElement.scrollWidth").await;
    assert_eq!(width, json!(WIDTH), "nothing wider than the phone");
}

/// A 1×1 PNG.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_phone_browser_files_follows_replies_and_rates_in_both_languages(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let mut browser = Browser::start().await;
    walk_through(&app, &org, &mut browser, &ES, "1020304050").await;
    walk_through(&app, &org, &mut browser, &EN, "5566778899").await;
    browser.stop().await;
    app.stop().await;
}
