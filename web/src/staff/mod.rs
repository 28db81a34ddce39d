//! The staff's pages under `/staff`: sign-in and the session ([`session`]), the dashboard of the
//! measurement cycle with its CSV export ([`dashboard`]) and the monthly customer-service report
//! ([`report`]). Every page here is for a signed-in member of staff and says what their role may
//! see; the layout (`templates/staff/layout.html`) is shared by every staff page.

pub mod charts;
pub mod dashboard;
pub mod figures;
pub mod report;
pub mod session;

use askama::Template;
use atiende_core::Error;
use atiende_core::auth::User;
use atiende_core::indicators::Month;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::lang::Lang;
use crate::pages;
use crate::{Brand, WebState};

pub use session::SignedIn;

/// The routes of the staff's pages and their stylesheet.
pub fn router() -> Router<WebState> {
    Router::new()
        .route("/staff/login", get(session::show).post(session::sign_in))
        .route("/staff/logout", post(session::sign_out))
        .route("/staff", get(dashboard::show))
        .route("/staff/indicators.csv", get(dashboard::csv))
        .route("/staff/reports", get(report::list))
        .route(
            "/staff/reports/{month}",
            get(report::show).post(report::save),
        )
        .route("/static/staff.css", get(stylesheet))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/staff.css"),
    )
}

/// What the staff layout needs: the language, the brand, the title, the page's path (the language
/// switch links to it), the CSRF token of its forms and who is signed in.
pub struct StaffBase<'a> {
    pub lang: Lang,
    pub brand: &'a Brand,
    pub title: String,
    pub path: String,
    pub csrf: String,
    /// The signed-in member of staff's name and role, shown with the sign-out button.
    pub user: Option<(String, String)>,
    /// Which part of the navigation is current: `dashboard`, `reports`.
    pub section: &'static str,
}

impl<'a> StaffBase<'a> {
    pub fn new(
        state: &'a WebState,
        lang: Lang,
        title: String,
        path: impl Into<String>,
        csrf: String,
    ) -> Self {
        StaffBase {
            lang,
            brand: &state.brand,
            title,
            path: path.into(),
            csrf,
            user: None,
            section: "",
        }
    }

    /// The same, for a signed-in member of staff in a part of the navigation.
    pub fn signed(mut self, user: &User, section: &'static str) -> Self {
        self.user = Some((
            user.name.clone(),
            self.lang.t(&format!("staff.role.{}", user.role.as_str())),
        ));
        self.section = section;
        self
    }

    pub fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }

    /// A path of ours in this page's language (`path` may carry a query already).
    pub fn href(&self, path: &str) -> String {
        let joint = if path.contains('?') { '&' } else { '?' };
        format!("{path}{joint}lang={}", self.lang.code())
    }

    /// This page in the other language.
    pub fn other_lang_href(&self) -> String {
        let joint = if self.path.contains('?') { '&' } else { '?' };
        format!("{}{joint}lang={}", self.path, self.lang.other().code())
    }
}

impl SignedIn {
    /// The layout of a page for this member of staff: its title (a text key), path, CSRF token and
    /// part of the navigation.
    pub fn base<'a>(
        &self,
        state: &'a WebState,
        lang: Lang,
        title_key: &str,
        path: impl Into<String>,
        csrf: String,
        section: &'static str,
    ) -> StaffBase<'a> {
        StaffBase::new(state, lang, lang.t(title_key), path, csrf).signed(&self.user, section)
    }
}

/// A form POSTed to a staff page: its CSRF field, which must repeat the browser's cookie.
pub trait CsrfForm {
    fn csrf(&self) -> Option<&str>;
}

/// The form when it could be read and its CSRF token matches; else the page refusing it, with
/// nothing done.
pub fn posted<T: CsrfForm>(
    state: &WebState,
    lang: Lang,
    headers: &axum::http::HeaderMap,
    form: Result<axum::extract::Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<T, Box<Response>> {
    let Ok(axum::extract::Form(form)) = form else {
        return Err(Box::new(pages::private(pages::bad_request(state, lang))));
    };
    if !crate::guard::csrf_ok(headers, form.csrf()) {
        return Err(Box::new(pages::private(crate::guard::refused(state, lang))));
    }
    Ok(form)
}

/// A month as people read it: `marzo de 2026`, `March 2026`.
pub fn month_name(lang: Lang, month: Month) -> String {
    use chrono::Datelike;
    let day = month.first_day();
    let key = format!("month.{}", day.month());
    let name = rust_i18n::t!(&key, locale = lang.code()).into_owned();
    match lang {
        Lang::Es => format!("{name} de {}", day.year()),
        Lang::En => {
            let mut chars = name.chars();
            let capital: String = chars
                .next()
                .map(|c| c.to_uppercase().collect())
                .unwrap_or_default();
            format!("{capital}{} {}", chars.as_str(), day.year())
        }
    }
}

#[derive(Template)]
#[template(path = "staff/message.html")]
pub struct StaffMessage<'a> {
    pub base: StaffBase<'a>,
    /// A stable machine code for what happened (`role_not_allowed`, `invalid_month`...).
    pub code: &'static str,
    pub text: String,
}

/// A staff page that only says something.
pub fn message(
    base: StaffBase<'_>,
    status: StatusCode,
    code: &'static str,
    text: String,
) -> Response {
    pages::private(pages::html(status, &StaffMessage { base, code, text }))
}

/// What a refusal from `core` looks like on a staff page: not allowed (403), bad input (422), not
/// found (404); anything else is logged and becomes the opaque error page.
pub fn failure(state: &WebState, mut base: StaffBase<'_>, e: Error) -> Response {
    let lang = base.lang;
    match e {
        Error::Forbidden { code, .. } => {
            base.title = lang.t("staff.forbidden_title");
            message(
                base,
                StatusCode::FORBIDDEN,
                code,
                lang.t(&format!("staff.forbidden.{code}")),
            )
        }
        Error::Invalid { code, .. } => {
            base.title = lang.t("page.bad_request_title");
            message(
                base,
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                lang.t(&format!("error.{code}")),
            )
        }
        Error::NotFound { code, .. } => {
            base.title = lang.t("page.not_found_title");
            message(
                base,
                StatusCode::NOT_FOUND,
                code,
                lang.t("page.not_found_text"),
            )
        }
        e => {
            tracing::error!(error = %e, "a staff page");
            pages::private(pages::internal_error(state, lang))
        }
    }
}
