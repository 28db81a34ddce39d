//! Staff sign-in for the pages under `/staff`: the staff e-mail and password through core's login,
//! with the same login limits as the API's, and a session kept in a cookie the browser sends only
//! to `/staff`, never to scripts (`HttpOnly`) nor from other sites (`SameSite=Strict`). A request
//! without a live staff session is sent to the sign-in page, which brings it back afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use atiende_core::Error;
use atiende_core::auth::{self, User};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::StaffBase;
use crate::WebState;
use crate::guard::Csrf;
use crate::lang::Lang;
use crate::pages::{self, Errors, FieldError};

const SESSION_COOKIE: &str = "atiende_staff";

/// How long a browser stays signed in: a working day, then the password again (a console left
/// open on a shared desk should not stay open for the API's month).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The signed-in member of staff, and their session's token (to end it).
pub struct SignedIn {
    pub user: User,
    token: String,
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .find(|t| !t.is_empty() && t.len() <= 128)
}

/// The cookie's attributes; `Secure` when the site is reached over https.
fn cookie(state: &WebState, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if state.public_base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/staff; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// A path of ours to come back to after signing in: under `/staff`, nothing that leaves the site.
fn safe_next(next: &str) -> Option<&str> {
    let ok = (next == "/staff" || next.starts_with("/staff/") || next.starts_with("/staff?"))
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(next)
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_./~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// To the sign-in page, coming back to `uri` afterwards; a stale cookie is dropped on the way.
fn to_login(state: &WebState, lang: Lang, uri: &axum::http::Uri, stale: bool) -> Response {
    let next = uri
        .path_and_query()
        .map(|p| p.as_str())
        .and_then(safe_next)
        .unwrap_or("/staff");
    let mut response = Redirect::to(&format!(
        "/staff/login?lang={}&next={}",
        lang.code(),
        encode(next)
    ))
    .into_response();
    if stale && let Some(v) = cookie(state, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    pages::private(response)
}

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let lang = Lang::from_request_parts(parts, state)
            .await
            .unwrap_or(Lang::Es);
        let Some(token) = session_cookie(&parts.headers).map(str::to_owned) else {
            return Err(to_login(state, lang, &parts.uri, false));
        };
        match auth::authenticate(&state.db, &token).await {
            Ok(user) if user.role.is_staff() => Ok(SignedIn { user, token }),
            Ok(_) | Err(Error::Unauthenticated) => Err(to_login(state, lang, &parts.uri, true)),
            Err(e) => {
                tracing::error!(error = %e, "reading a staff session");
                Err(pages::private(pages::internal_error(state, lang)))
            }
        }
    }
}

#[derive(Template)]
#[template(path = "staff/login.html")]
pub struct LoginPage<'a> {
    pub base: StaffBase<'a>,
    pub next: String,
    pub email: String,
    pub errors: Vec<FieldError>,
}

impl Errors for LoginPage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page<'a>(
    state: &'a WebState,
    lang: Lang,
    csrf: String,
    next: Option<&str>,
    email: String,
) -> LoginPage<'a> {
    LoginPage {
        base: StaffBase::new(
            state,
            lang,
            lang.t("staff.login_title"),
            "/staff/login",
            csrf,
        ),
        next: next.and_then(safe_next).unwrap_or("/staff").to_owned(),
        email,
        errors: Vec::new(),
    }
}

#[tracing::instrument(skip_all)]
pub async fn show(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let next = query.ok().and_then(|Query(q)| q.next);
    let page = login_page(
        &state,
        lang,
        csrf.token.clone(),
        next.as_deref(),
        String::new(),
    );
    pages::private(csrf.set_cookie(pages::html(StatusCode::OK, &page)))
}

#[derive(Deserialize)]
pub struct Credentials {
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

impl super::CsrfForm for Credentials {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[tracing::instrument(skip_all)]
pub async fn sign_in(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    form: Result<Form<Credentials>, FormRejection>,
) -> Response {
    let form = match super::posted(&state, lang, &headers, form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let csrf = form.csrf.clone().unwrap_or_default();
    let refused = |status: StatusCode, field: &'static str, code: &'static str| {
        let mut page = login_page(
            &state,
            lang,
            csrf.clone(),
            form.next.as_deref(),
            form.email.trim().to_owned(),
        );
        page.errors.push(FieldError::new(lang, field, code));
        pages::private(pages::html(status, &page))
    };
    if form.email.trim().is_empty() || form.password.is_empty() {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
            "credentials_required",
        );
    }
    let client = (state.client_ip)(peer.ip(), &headers);
    let (user, session) = match auth::login(
        &state.db,
        &state.hashing,
        &state.login_limits,
        &form.email,
        &form.password,
        client,
        SESSION_TTL,
    )
    .await
    {
        Ok(signed) => signed,
        Err(Error::InvalidCredentials | Error::Forbidden { .. }) => {
            return refused(StatusCode::UNAUTHORIZED, "email", "invalid_credentials");
        }
        Err(Error::TooManyAttempts { retry_after }) => {
            let response = refused(StatusCode::TOO_MANY_REQUESTS, "email", "too_many_attempts");
            return retry(response, retry_after);
        }
        Err(Error::Busy { retry_after }) => {
            let response = refused(StatusCode::SERVICE_UNAVAILABLE, "email", "server_busy");
            return retry(response, retry_after);
        }
        Err(e) => {
            tracing::error!(error = %e, "staff sign-in");
            return pages::private(pages::internal_error(&state, lang));
        }
    };
    if !user.role.is_staff() {
        // A customer's (or a technician's) right password opens nothing here: the session just
        // made ends at once.
        if let Err(e) = auth::logout(&state.db, &session.token).await {
            tracing::error!(error = %e, "ending a refused staff sign-in");
        }
        return refused(StatusCode::FORBIDDEN, "email", "staff_only");
    }
    tracing::info!(user = %user.id, "staff signed in on the web");
    let next = form.next.as_deref().and_then(safe_next).unwrap_or("/staff");
    let mut response = Redirect::to(next).into_response();
    if let Some(v) = cookie(&state, &session.token, SESSION_TTL.as_secs()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    pages::private(response)
}

fn retry(mut response: Response, after: Duration) -> Response {
    if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[derive(Deserialize)]
pub struct SignOut {
    csrf: Option<String>,
}

impl super::CsrfForm for SignOut {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[tracing::instrument(skip_all)]
pub async fn sign_out(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    signed: SignedIn,
    form: Result<Form<SignOut>, FormRejection>,
) -> Response {
    if let Err(refused) = super::posted(&state, lang, &headers, form) {
        return *refused;
    }
    if let Err(e) = auth::logout(&state.db, &signed.token).await {
        tracing::error!(error = %e, "staff sign-out");
        return pages::private(pages::internal_error(&state, lang));
    }
    let mut response = Redirect::to(&format!("/staff/login?lang={}", lang.code())).into_response();
    if let Some(v) = cookie(&state, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    pages::private(response)
}
