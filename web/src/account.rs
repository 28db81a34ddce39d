//! `/cuenta/clave/{token}`: the page the single-use link e-mailed to a customer opens, where the
//! app user the company created for them gets its first password (see
//! `atiende_core::account_setup`). A link that is unknown, used, replaced or expired gets a page
//! that says so.

use askama::Template;
use atiende_core::Error;
use atiende_core::account_setup::{self, Link};
use atiende_core::auth::Password;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::WebState;
use crate::guard::{self, Csrf};
use crate::lang::Lang;
use crate::pages::{self, Base, Errors, FieldError};

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage<'a> {
    pub base: Base<'a>,
    pub csrf: String,
    pub intro: String,
    pub email: String,
    pub action: String,
    pub errors: Vec<FieldError>,
}

impl Errors for PasswordPage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// The page for a link that opens nothing, with the stable code of why.
fn dead(state: &WebState, lang: Lang, link: &Link) -> Response {
    let (status, code) = match link {
        Link::Used => (StatusCode::GONE, "setup_link_used"),
        Link::Replaced => (StatusCode::GONE, "setup_link_replaced"),
        Link::Expired => (StatusCode::GONE, "setup_link_expired"),
        _ => (StatusCode::NOT_FOUND, "setup_link_not_found"),
    };
    pages::message(
        state,
        lang,
        status,
        code,
        "password.dead_title",
        lang.t(&format!("password.{code}")),
    )
}

fn form_page<'a>(
    state: &'a WebState,
    lang: Lang,
    token: &str,
    csrf: String,
    name: &str,
    email: &str,
) -> PasswordPage<'a> {
    let path = account_setup::page_path(token);
    PasswordPage {
        base: Base::new(state, lang, lang.t("password.title"), path.clone()),
        csrf,
        intro: lang.t_with("password.intro", &[("name", name), ("email", email)]),
        email: email.to_owned(),
        action: path,
        errors: Vec::new(),
    }
}

pub async fn show(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let response = match account_setup::link(&state.db, &token).await {
        Ok(Link::Open { email, name, .. }) => {
            let page = form_page(&state, lang, &token, csrf.token.clone(), &name, &email);
            pages::html(StatusCode::OK, &page)
        }
        Ok(other) => dead(&state, lang, &other),
        Err(e) => {
            tracing::error!(error = %e, "opening a password link");
            pages::internal_error(&state, lang)
        }
    };
    pages::private(csrf.set_cookie(response))
}

#[derive(Deserialize)]
pub struct NewPassword {
    csrf: Option<String>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn set(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<NewPassword>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return pages::private(pages::bad_request(&state, lang));
    };
    if !guard::csrf_ok(&headers, form.csrf.as_deref()) {
        return pages::private(guard::refused(&state, lang));
    }
    pages::private(
        set_password(&state, lang, &token, form)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "setting a password from its link");
                pages::internal_error(&state, lang)
            }),
    )
}

async fn set_password(
    state: &WebState,
    lang: Lang,
    token: &str,
    form: NewPassword,
) -> Result<Response, Error> {
    let (name, email) = match account_setup::link(&state.db, token).await? {
        Link::Open { name, email, .. } => (name, email),
        other => return Ok(dead(state, lang, &other)),
    };
    let csrf = form.csrf.unwrap_or_default();
    let invalid = |code: &'static str| {
        let mut page = form_page(state, lang, token, csrf.clone(), &name, &email);
        page.errors.push(FieldError::new(lang, "password", code));
        pages::html(StatusCode::UNPROCESSABLE_ENTITY, &page)
    };
    let password = match Password::parse(form.password.clone()) {
        Ok(p) => p,
        Err(Error::Invalid { code, .. }) => return Ok(invalid(code)),
        Err(e) => return Err(e),
    };
    if form.password != form.password_confirm {
        return Ok(invalid("password_mismatch"));
    }
    match account_setup::set_password(&state.db, &state.hashing, token, &password).await {
        Ok(user) => Ok(pages::message(
            state,
            lang,
            StatusCode::OK,
            "password_set",
            "password.done_title",
            lang.t_with("password.done_text", &[("email", &user.email)]),
        )),
        // Another tab, or a newer link, came first.
        Err(Error::NotFound { .. }) => Ok(dead(state, lang, &Link::Unknown)),
        Err(Error::Conflict { code, .. }) => {
            let link = match code {
                "setup_link_replaced" => Link::Replaced,
                "setup_link_expired" => Link::Expired,
                _ => Link::Used,
            };
            Ok(dead(state, lang, &link))
        }
        Err(Error::Busy { .. }) => Ok(pages::message(
            state,
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "page.error_title",
            lang.t("password.busy"),
        )),
        Err(e) => Err(e),
    }
}
