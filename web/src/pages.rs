//! The layout every page shares and the pages that only say something (not found, expired form,
//! too many submissions, too large, an internal error).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::lang::Lang;
use crate::{Brand, WebState};

/// What the layout needs: the language, the company's brand, the page title and the page's own
/// path (the language switch links to it in the other language).
pub struct Base<'a> {
    pub lang: Lang,
    pub brand: &'a Brand,
    pub title: String,
    pub path: String,
}

impl<'a> Base<'a> {
    pub fn new(state: &'a WebState, lang: Lang, title: String, path: impl Into<String>) -> Self {
        Base {
            lang,
            brand: &state.brand,
            title,
            path: path.into(),
        }
    }

    pub fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }

    /// The link to this page in the other language.
    pub fn other_lang_href(&self) -> String {
        format!("{}?lang={}", self.path, self.lang.other().code())
    }

    /// A path of ours with this page's language.
    pub fn href(&self, path: &str) -> String {
        format!("{path}?lang={}", self.lang.code())
    }
}

/// A page reached by a secret link: neither cached nor named to other sites.
pub fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Renders a template with `status`; a template that fails to render is logged and becomes a
/// plain 500.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a web page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub base: Base<'a>,
    /// A stable machine code for what happened (`not_found`, `csrf`, `rate_limited`...).
    pub code: &'static str,
    pub text: String,
}

/// A page that only says something, with `status` and a stable `code`.
pub fn message(
    state: &WebState,
    lang: Lang,
    status: StatusCode,
    code: &'static str,
    title_key: &str,
    text: String,
) -> Response {
    let page = MessagePage {
        base: Base::new(state, lang, lang.t(title_key), "/pqrs"),
        code,
        text,
    };
    html(status, &page)
}

pub fn not_found(state: &WebState, lang: Lang) -> Response {
    message(
        state,
        lang,
        StatusCode::NOT_FOUND,
        "not_found",
        "page.not_found_title",
        lang.t("page.not_found_text"),
    )
}

pub fn internal_error(state: &WebState, lang: Lang) -> Response {
    message(
        state,
        lang,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "page.error_title",
        lang.t("page.error_text"),
    )
}

pub fn bad_request(state: &WebState, lang: Lang) -> Response {
    message(
        state,
        lang,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "page.bad_request_title",
        lang.t("page.bad_request_text"),
    )
}

pub fn too_large(state: &WebState, lang: Lang) -> Response {
    let text = lang.t_with(
        "page.too_large_text",
        &[
            ("count", &crate::MAX_ATTACHMENTS.to_string()),
            ("mb", &megabytes(state.blob_limit)),
        ],
    );
    message(
        state,
        lang,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "page.too_large_title",
        text,
    )
}

/// 429: when to come back, in minutes and as a time of day in Colombia.
pub fn rate_limited(
    state: &WebState,
    lang: Lang,
    wait_secs: i64,
    until: DateTime<Utc>,
) -> Response {
    let minutes = ((wait_secs + 59) / 60).max(1).to_string();
    let time = until
        .with_timezone(&atiende_core::calendar::COLOMBIA)
        .format("%H:%M")
        .to_string();
    let text = lang.t_with(
        "page.rate_limited_text",
        &[("minutes", &minutes), ("time", &time)],
    );
    message(
        state,
        lang,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "page.rate_limited_title",
        text,
    )
}

/// Bytes as whole megabytes, for the texts.
pub fn megabytes(bytes: usize) -> String {
    (bytes / (1024 * 1024)).max(1).to_string()
}

/// A field's error, shown next to the field and in the summary at the top of its form.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// The field's id, which the summary links to.
    pub field: &'static str,
    /// The stable code (`consent_required`, `invalid_document_number`...).
    pub code: &'static str,
    pub text: String,
}

impl FieldError {
    /// The error with its text from `web.error.<code>`.
    pub fn new(lang: Lang, field: &'static str, code: &'static str) -> Self {
        FieldError {
            field,
            code,
            text: lang.t(&format!("error.{code}")),
        }
    }
}

/// What a form's template asks about its errors.
pub trait Errors {
    fn errors(&self) -> &[FieldError];

    fn error(&self, field: &str) -> Option<&FieldError> {
        self.errors().iter().find(|e| e.field == field)
    }

    fn has_error(&self, field: &str) -> bool {
        self.error(field).is_some()
    }
}
