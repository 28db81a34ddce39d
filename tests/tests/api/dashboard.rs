//! The staff's web pages through the real server: sign-in and its session cookie, the login
//! limits, CSRF, who sees which dashboard, the CSV export, and the monthly report's versioned
//! analysis, each asserting what the page says and what was written. The data set is the
//! indicators test's (January–March 2026).

use atiende_server::Settings;
use atiende_tests::{PASSWORD, TestApp, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use sqlx::PgPool;

use crate::indicators::world;
use crate::web::hidden;

/// A browser's state on the staff pages: its cookies and the CSRF token of its forms.
struct Staff {
    client: reqwest::Client,
    csrf_cookie: String,
    csrf: String,
    session: Option<String>,
}

/// What a page answered.
struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    fn says(&self, code: &str) -> bool {
        self.body.contains(&format!("data-code=\"{code}\""))
    }
}

impl Staff {
    /// Opens the sign-in page, as a browser does first.
    async fn open(app: &TestApp) -> Staff {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut staff = Staff {
            client,
            csrf_cookie: String::new(),
            csrf: String::new(),
            session: None,
        };
        let page = staff.get(app, "/staff/login").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        staff.csrf_cookie = page
            .set_cookie("atiende_csrf")
            .and_then(|c| c.split(';').next().map(str::to_owned))
            .expect("the CSRF cookie");
        staff.csrf = hidden(&page.body, "csrf");
        staff
    }

    fn cookies(&self) -> String {
        match &self.session {
            Some(s) => format!("{}; atiende_staff={s}", self.csrf_cookie),
            None => self.csrf_cookie.clone(),
        }
    }

    async fn read(resp: reqwest::Response) -> Page {
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    async fn get(&self, app: &TestApp, path: &str) -> Page {
        let resp = self
            .client
            .get(app.url(path))
            .header(COOKIE, self.cookies())
            .send()
            .await
            .expect("GET");
        Staff::read(resp).await
    }

    async fn post(&self, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Page {
        let resp = self
            .client
            .post(app.url(path))
            .header(COOKIE, self.cookies())
            .form(fields)
            .send()
            .await
            .expect("POST");
        Staff::read(resp).await
    }

    async fn sign_in(&self, app: &TestApp, email: &str, password: &str) -> Page {
        self.post(
            app,
            "/staff/login",
            &[
                ("csrf", &self.csrf),
                ("email", email),
                ("password", password),
                ("next", "/staff"),
            ],
        )
        .await
    }

    /// Signs in and keeps the session cookie.
    async fn signed_in(app: &TestApp, email: &str) -> Staff {
        let mut staff = Staff::open(app).await;
        let page = staff.sign_in(app, email, PASSWORD).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let cookie = page
            .set_cookie("atiende_staff")
            .expect("the session cookie");
        staff.session = Some(
            cookie
                .split(';')
                .next()
                .and_then(|c| c.strip_prefix("atiende_staff="))
                .expect("value")
                .to_owned(),
        );
        staff
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn staff_sign_in_with_a_strict_cookie_and_sign_out_ends_the_session(pool: PgPool) {
    let app = spawn_app(pool).await;
    let _org = app.org().await;
    let mut staff = Staff::open(&app).await;

    // Without a session the dashboard sends to the sign-in page, which comes back to it.
    let away = staff.get(&app, "/staff?from=2026-01&to=2026-03").await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(
        away.location(),
        "/staff/login?lang=es&next=/staff%3Ffrom%3D2026-01%26to%3D2026-03"
    );

    let wrong = staff
        .sign_in(&app, "director@test.co", "not the password")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.says("invalid_credentials"), "{}", wrong.body);
    assert!(wrong.set_cookie("atiende_staff").is_none());
    assert!(!wrong.body.contains("not the password"));

    let no_csrf = staff
        .post(
            &app,
            "/staff/login",
            &[("email", "director@test.co"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert!(no_csrf.says("csrf"));
    assert!(no_csrf.set_cookie("atiende_staff").is_none());

    let page = staff.sign_in(&app, "director@test.co", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/staff");
    let cookie = page.set_cookie("atiende_staff").expect("session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/staff",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http here: {cookie}");
    let token = cookie
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("atiende_staff="))
        .expect("token")
        .to_owned();
    staff.session = Some(token.clone());

    let dashboard = staff.get(&app, "/staff").await;
    assert_eq!(dashboard.status, StatusCode::OK, "{}", dashboard.body);
    assert!(dashboard.body.contains("Tablero de servicio al cliente"));
    assert!(!dashboard.body.contains(&token), "the session never shows");
    assert_eq!(
        dashboard
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );

    // Signing out needs the form's token, and ends the session everywhere.
    let refused = staff.post(&app, "/staff/logout", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(staff.get(&app, "/staff").await.status, StatusCode::OK);
    let out = staff
        .post(&app, "/staff/logout", &[("csrf", &staff.csrf)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let cleared = out.set_cookie("atiende_staff").expect("cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = staff.get(&app, "/staff").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location().starts_with("/staff/login"));
    let api = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_cookie_is_secure_when_the_site_is_reached_over_https(pool: PgPool) {
    let settings = Settings {
        public_base_url: "https://pqrs.empresa.co".into(),
        ..Settings::default()
    };
    let app = spawn_app_with(pool, settings).await;
    let _org = app.org().await;
    let staff = Staff::open(&app).await;
    let page = staff.sign_in(&app, "director@test.co", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let cookie = page.set_cookie("atiende_staff").expect("cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn customers_are_refused_and_failed_sign_ins_are_limited(pool: PgPool) {
    let app = spawn_app(pool).await;
    let _org = app.org().await;
    app.customer("cliente@example.co", "1020304050").await;
    let live = "select count(*) from sessions s join users u on u.id = s.user_id
                where u.email = 'cliente@example.co' and s.revoked_at is null";
    let before = app.count(live).await;
    let staff = Staff::open(&app).await;
    let customer = staff.sign_in(&app, "cliente@example.co", PASSWORD).await;
    assert_eq!(customer.status, StatusCode::FORBIDDEN);
    assert!(customer.says("staff_only"), "{}", customer.body);
    assert!(customer.set_cookie("atiende_staff").is_none());
    assert_eq!(app.count(live).await, before, "its session ended at once");

    // The API's limits: five failures for one e-mail from one address, then a wait.
    for _ in 0..5 {
        let r = staff.sign_in(&app, "lider@test.co", "wrong password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let limited = staff.sign_in(&app, "lider@test.co", PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.says("too_many_attempts"), "{}", limited.body);
    assert!(limited.headers.get(RETRY_AFTER).is_some());
    assert!(limited.set_cookie("atiende_staff").is_none());
    // Another member of staff at the same address is not locked out.
    let other = staff.sign_in(&app, "director@test.co", PASSWORD).await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
    app.stop().await;
}

const RANGE: &str = "from=2026-01&to=2026-03";

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn each_role_sees_its_own_dashboard_and_csv(pool: PgPool) {
    let (app, org) = world(pool).await;

    let collaborator = Staff::signed_in(&app, "colab@test.co").await;
    for path in [
        format!("/staff?{RANGE}"),
        format!("/staff/indicators.csv?{RANGE}"),
        "/staff/reports".to_owned(),
        "/staff/reports/2026-03".to_owned(),
    ] {
        let page = collaborator.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.says("role_not_allowed"), "{path}: {}", page.body);
    }

    let director = Staff::signed_in(&app, "director@test.co").await;
    let page = director.get(&app, &format!("/staff?{RANGE}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    // C3 (COMERCIAL) is the one case still open, long past its legal date.
    assert!(body.contains("PQRS-2026-C3"), "{body}");
    assert!(body.contains("badge late"));
    assert!(body.contains("<svg class=\"chart\" role=\"img\""));
    assert!(body.contains("id=\"chart-legal_term_compliance\""));
    assert!(body.contains("id=\"chart-satisfaction\""));
    assert!(body.contains("class=\"target\""), "the target lines");
    // The semestral campaign's three answers to its first question: 5, 5 and 1 in the months.
    assert!(body.contains("Encuesta semestral de satisfacción del cliente"));
    assert!(
        body.contains("id=\"contracts\""),
        "the contract ending 03-31"
    );
    assert!(!body.contains("data-code=\"scope\""));

    let csv = director
        .get(&app, &format!("/staff/indicators.csv?{RANGE}"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(
        csv.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    let api = app
        .client
        .get(app.url(&format!("/api/v1/staff/indicators?{RANGE}&format=csv")))
        .bearer_auth(&org.director)
        .send()
        .await
        .expect("API")
        .text()
        .await
        .expect("CSV");
    assert_eq!(csv.body, api, "the same CSV as the API");
    assert!(csv.body.starts_with('\u{feff}'));
    assert!(csv.body.contains("legal_term_compliance"));
    assert!(csv.body.contains("2026-01;3;2;66,67;no"));

    let leader = Staff::signed_in(&app, "lider@test.co").await;
    let page = leader.get(&app, &format!("/staff?{RANGE}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.says("scope"));
    assert!(page.body.contains("OPERATIVO"));
    assert!(!page.body.contains("PQRS-2026-C3"), "a COMERCIAL case");
    assert!(
        !page.body.contains("id=\"contracts\""),
        "contracts are COMERCIAL's"
    );
    let csv = leader
        .get(&app, &format!("/staff/indicators.csv?{RANGE}"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.contains(";OPERATIVO;"));
    assert!(!csv.body.contains("COMERCIAL"), "{}", csv.body);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn months_and_ranges_out_of_bounds_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let _org = app.org().await;
    let director = Staff::signed_in(&app, "director@test.co").await;
    for (query, code) in [
        ("from=2026-13&to=2026-12", "invalid_month"),
        ("from=2026-1&to=2026-12", "invalid_month"),
        ("from=2026-03&to=2026-01", "invalid_range"),
        ("from=2023-01&to=2026-01", "range_too_long"),
    ] {
        let page = director.get(&app, &format!("/staff?{query}")).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(page.says(code), "{query}: {}", page.body);
        let csv = director
            .get(&app, &format!("/staff/indicators.csv?{query}"))
            .await;
        assert_eq!(csv.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(csv.says(code), "{query}");
    }
    // Thirty-six months are the most at once.
    let widest = director.get(&app, "/staff?from=2023-02&to=2026-01").await;
    assert_eq!(widest.status, StatusCode::OK);
    for (path, code) in [
        ("/staff/reports/2026-3", "invalid_month"),
        ("/staff/reports/marzo", "invalid_month"),
        ("/staff/reports/2999-01", "month_in_future"),
    ] {
        let page = director.get(&app, path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.says(code), "{path}: {}", page.body);
    }
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_monthly_report_keeps_every_version_of_its_analysis(pool: PgPool) {
    let (app, _org) = world(pool).await;
    let director = Staff::signed_in(&app, "director@test.co").await;
    let path = "/staff/reports/2026-03";
    let page = director.get(&app, path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("SGC-SAC-001 · REG-003"));
    assert!(
        page.body
            .contains("Informe de servicio al cliente: marzo de 2026")
    );
    assert!(page.body.contains("id=\"table-legal_term_compliance\""));
    assert!(page.body.contains("class=\"target\""));
    // The targets say where they come from in the page's language.
    assert!(
        page.body
            .contains("Ley 1755 de 2015: toda respuesta dentro de su término legal")
    );
    assert!(!page.body.contains("every answer within its legal term"));
    assert!(
        page.body.contains("name=\"body\""),
        "the director writes it"
    );
    let saved = "select count(*) from monthly_report_analyses";

    let no_csrf = director
        .post(&app, path, &[("base", "0"), ("body", "Sin token")])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count(saved).await, 0);

    let csrf = director.csrf.clone();
    let save = |base: &'static str, body: String| {
        let csrf = csrf.clone();
        let director = &director;
        let app = &app;
        async move {
            director
                .post(
                    app,
                    path,
                    &[("csrf", &csrf), ("base", base), ("body", &body)],
                )
                .await
        }
    };
    let first = save(
        "0",
        "Primera versión: el término legal no se cumplió en enero.".into(),
    )
    .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert_eq!(first.location(), "/staff/reports/2026-03?lang=es&saved=1");
    let second = save("1", "Segunda versión.".into()).await;
    assert_eq!(second.location(), "/staff/reports/2026-03?lang=es&saved=2");

    // Written over version 1 after version 2 was saved: refused, the text kept in the form.
    let stale = save("1", "Texto de otra pestaña".into()).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.says("analysis_changed"));
    assert!(stale.body.contains("Texto de otra pestaña"));
    let blank = save("2", "   ".into()).await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(blank.says("analysis_required"));
    let too_long = save("2", "a".repeat(20_001)).await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_long.says("analysis_too_long"));
    assert_eq!(app.count(saved).await, 2);
    let longest = save("2", "é".repeat(20_000)).await;
    assert_eq!(longest.status, StatusCode::SEE_OTHER, "{}", longest.body);
    assert_eq!(app.count(saved).await, 3);

    let page = director.get(&app, "/staff/reports/2026-03?saved=3").await;
    assert!(page.says("analysis_saved"));
    assert!(page.body.contains("data-version=\"3\""));
    assert!(page.body.contains("Versión 3, escrita por"));
    assert!(page.body.contains("id=\"versions\""));
    let old = director.get(&app, "/staff/reports/2026-03?version=1").await;
    assert!(old.body.contains("Primera versión: el término legal"));
    assert!(old.body.contains("hay una versión más reciente (3)"));
    let missing = director.get(&app, "/staff/reports/2026-03?version=9").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let authors = app
        .count(
            "select count(*) from monthly_report_analyses a join users u on u.id = a.author_id
             where u.email = 'director@test.co' and a.month = '2026-03-01'",
        )
        .await;
    assert_eq!(authors, 3);

    let list = director.get(&app, "/staff/reports").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("data-month=\"2026-03\""));
    assert!(list.body.contains("Versión 3"));

    // A process leader reads the report and cannot write it.
    let leader = Staff::signed_in(&app, "lider@test.co").await;
    let read = leader.get(&app, path).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read.body.contains("Segunda versión.") || read.body.contains("ééé"));
    assert!(!read.body.contains("name=\"body\""));
    let write = leader
        .post(
            &app,
            path,
            &[("csrf", &leader.csrf), ("base", "3"), ("body", "Del líder")],
        )
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert!(write.says("report_read_only"));
    assert_eq!(app.count(saved).await, 3);
    app.stop().await;
}
