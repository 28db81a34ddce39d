//! Server-rendered pages for people without the app: the public PQRS form, a case's status and
//! its own page reached by a secret link, the page where a company-created app user sets the first
//! password, the satisfaction survey a customer's link opens, the acknowledgement letter staff
//! print, and the staff's own pages behind their sign-in: the dashboard of the indicators and the
//! monthly customer-service report ([`staff`]). Plain HTML forms that work without JavaScript; texts from `locales/web.yml` in Spanish
//! and English; the layout and CSS are shared by every page this crate serves
//! (`templates/layout.html`, `static/atiende.css`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::PgPool;

mod account;
mod case_page;
mod filing;
mod guard;
mod lang;
mod letter;
mod link;
mod pages;
mod staff;
mod status;
mod survey;

pub use lang::Lang;

rust_i18n::i18n!("../locales", fallback = "es");

/// At most this many attachments go with one web filing.
pub const MAX_ATTACHMENTS: usize = 5;

/// The largest text field the pages read, in bytes (the description's 10,000 characters, in
/// UTF-8, fit).
pub const MAX_FIELD_BYTES: usize = 48 * 1024;

/// Resolves a request's client address from its TCP peer and headers (the server decides which
/// proxies are trusted to name the client in `X-Forwarded-For`).
pub type ClientIp = Arc<dyn Fn(IpAddr, &HeaderMap) -> IpAddr + Send + Sync>;

/// What a company makes the pages look like.
#[derive(Debug, Clone)]
pub struct Brand {
    pub company_name: String,
    /// Shown in the header when set.
    pub logo_url: Option<String>,
    /// The main colour, `#rgb` or `#rrggbb` (checked by the settings).
    pub color: String,
    /// Where the company writes from, before the date of its letters.
    pub city: Option<String>,
}

#[derive(Clone)]
pub struct WebState {
    pub db: PgPool,
    pub brand: Arc<Brand>,
    /// The largest attachment, in bytes (the same as every blob's).
    pub blob_limit: usize,
    /// POSTs one client address may make per window.
    pub posts_per_window: u32,
    pub window_secs: u32,
    pub client_ip: ClientIp,
    /// Where this site is reached from outside, without a trailing slash: the case's link is
    /// shown in full.
    pub public_base_url: String,
    /// How long a code that links a web filing to its customer lives.
    pub link_code_ttl: std::time::Duration,
    /// Bounds the password hashes computed at once (shared with the API's).
    pub hashing: atiende_core::auth::Hashing,
    /// When a survey score opens a follow-up.
    pub survey_low_score: atiende_core::surveys::LowScore,
    /// The staff sign-in counts failures as the API's login does.
    pub login_limits: atiende_core::login_limits::LoginLimits,
    /// The process that keeps quotes and contracts (whoever sees it sees contracts ending).
    pub commercial_process: String,
    /// How many days before its end a contract shows as about to end.
    pub contract_renewal_days: u32,
}

impl WebState {
    /// The largest filing form: every attachment at its largest, and the text fields.
    fn filing_body_limit(&self) -> usize {
        MAX_ATTACHMENTS * self.blob_limit + 16 * MAX_FIELD_BYTES
    }
}

/// The public pages under `/pqrs` and `/cuenta`, the staff's pages and letters under `/staff`,
/// and the stylesheets.
pub fn router(state: WebState) -> Router {
    let filing_limit = state.filing_body_limit();
    Router::new()
        .route(
            "/pqrs",
            get(filing::show)
                .post(filing::submit)
                .layer(DefaultBodyLimit::max(filing_limit)),
        )
        .route("/pqrs/estado", get(status::show).post(status::lookup))
        .route("/pqrs/caso/{token}", get(case_page::show))
        .route(
            "/pqrs/caso/{token}/respuesta",
            axum::routing::post(case_page::reply),
        )
        .route(
            "/pqrs/caso/{token}/calificacion",
            axum::routing::post(case_page::rate),
        )
        .route(
            "/pqrs/caso/{token}/vincular",
            axum::routing::post(link::ask),
        )
        .route(
            "/pqrs/caso/{token}/vincular/codigo",
            axum::routing::post(link::confirm),
        )
        .route(
            "/cuenta/clave/{token}",
            get(account::show).post(account::set),
        )
        .route("/s/{token}", get(survey::show).post(survey::submit))
        .route("/staff/cases/{id}/letter", get(letter::show))
        .route("/static/atiende.css", get(stylesheet))
        .merge(staff::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::limit_posts,
        ))
        .with_state(state)
}

/// The stylesheet every page links; a company restyles it through [`Brand`] or by serving its own.
async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/atiende.css"),
    )
}

/// Deletes the post counters of windows that have ended, a day back; the server runs it with its
/// other purges.
pub async fn purge(db: &PgPool) -> Result<u64, sqlx::Error> {
    guard::purge(db).await
}
