//! `/pqrs/caso/{token}/vincular`: whoever holds a web filing's secret link asks for a one-time
//! code, sent to the contact on file of the customer whose document number the filing gives, and
//! types it to add the filing to that customer's record ([`atiende_core::link_codes`]). The page
//! reads the same whether or not the number is a customer's.

use askama::Template;
use atiende_core::link_codes::{self, Confirmed, Requested};
use atiende_core::{Error, calendar, case_links, texts};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use crate::WebState;
use crate::guard;
use crate::lang::Lang;
use crate::pages::{self, Base, Errors, FieldError};

#[derive(Template)]
#[template(path = "link.html")]
pub struct LinkPage<'a> {
    pub base: Base<'a>,
    pub csrf: String,
    pub notice: Option<String>,
    pub notice_code: &'static str,
    pub confirm_action: String,
    pub link_action: String,
    pub case_path: String,
    pub errors: Vec<FieldError>,
}

impl Errors for LinkPage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// The path a case page's link offer posts to.
pub fn action(case_path: &str) -> String {
    format!("{case_path}/vincular")
}

/// Either form of the page: asking for a code (no `code`) or typing it.
#[derive(Deserialize)]
pub struct Posted {
    csrf: Option<String>,
    #[serde(default)]
    code: String,
}

enum Act {
    Ask,
    Confirm,
}

/// The case a link opens, with its radicado.
async fn open(state: &WebState, token: &str) -> Result<Option<(Uuid, String)>, Error> {
    let mut conn = state.db.acquire().await?;
    let Some(id) = case_links::case_for(&mut conn, token).await? else {
        return Ok(None);
    };
    let radicado = sqlx::query_scalar!("select radicado from cases where id = $1", id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some((id, radicado)))
}

fn page<'a>(
    state: &'a WebState,
    lang: Lang,
    token: &str,
    radicado: &str,
    csrf: String,
    notice: Option<(&'static str, String)>,
    errors: Vec<FieldError>,
) -> LinkPage<'a> {
    let case_path = format!("/pqrs/caso/{token}");
    let link_action = action(&case_path);
    let (notice_code, notice) = match notice {
        Some((code, text)) => (code, Some(text)),
        None => ("", None),
    };
    LinkPage {
        base: Base::new(
            state,
            lang,
            lang.t_with("link.title", &[("radicado", radicado)]),
            link_action.clone(),
        ),
        csrf,
        notice,
        notice_code,
        confirm_action: format!("{link_action}/codigo"),
        link_action,
        case_path,
        errors,
    }
}

/// Back to the case page, which says the filing is linked.
fn to_linked_case(lang: Lang, token: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!("/pqrs/caso/{token}?lang={}&done=linked", lang.code()),
        )],
    )
        .into_response()
}

/// What asking for a code says: the same whether or not one was sent.
fn asked(lang: Lang, requested: Requested) -> (StatusCode, &'static str, String) {
    match requested {
        Requested::Made { minutes } => (
            StatusCode::OK,
            "link_code_sent",
            lang.t_with("link.sent", &[("minutes", &minutes.to_string())]),
        ),
        Requested::TooMany { until } => {
            let time = until
                .with_timezone(&calendar::COLOMBIA)
                .format("%H:%M")
                .to_string();
            let date = texts::long_date(lang.code(), calendar::local_date(until));
            (
                StatusCode::TOO_MANY_REQUESTS,
                "link_code_too_many",
                lang.t_with("link.too_many", &[("time", &time), ("date", &date)]),
            )
        }
        // Handled before: the page goes back to the linked case.
        Requested::Linked => (StatusCode::OK, "link_code_linked", lang.t("link.linked")),
    }
}

/// Why a typed code linked nothing.
fn refused(lang: Lang, confirmed: Confirmed) -> (StatusCode, FieldError) {
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    match confirmed {
        Confirmed::Wrong { tries_left } if tries_left > 0 => {
            let mut e = FieldError::new(lang, "code", "link_code_wrong");
            e.text = lang.t_with(
                "error.link_code_wrong",
                &[("tries", &tries_left.to_string())],
            );
            (invalid, e)
        }
        Confirmed::Wrong { .. } => (invalid, FieldError::new(lang, "code", "link_code_dead")),
        Confirmed::Malformed => (
            invalid,
            FieldError::new(lang, "code", "link_code_malformed"),
        ),
        Confirmed::Used => (
            StatusCode::CONFLICT,
            FieldError::new(lang, "code", "link_code_used"),
        ),
        Confirmed::Expired | Confirmed::Linked => {
            (invalid, FieldError::new(lang, "code", "link_code_expired"))
        }
    }
}

async fn act(
    state: &WebState,
    lang: Lang,
    headers: &HeaderMap,
    token: &str,
    form: Posted,
    act: Act,
) -> Result<Response, Error> {
    if !guard::csrf_ok(headers, form.csrf.as_deref()) {
        return Ok(guard::refused(state, lang));
    }
    let Some((case_id, radicado)) = open(state, token).await? else {
        return Ok(pages::not_found(state, lang));
    };
    let csrf = form.csrf.unwrap_or_default();
    let (status, notice, errors) = match act {
        Act::Ask => match link_codes::request(&state.db, case_id, state.link_code_ttl).await? {
            Requested::Linked => return Ok(to_linked_case(lang, token)),
            requested => {
                let (status, code, text) = asked(lang, requested);
                (status, Some((code, text)), Vec::new())
            }
        },
        Act::Confirm => match link_codes::confirm(&state.db, case_id, &form.code).await? {
            Confirmed::Linked => return Ok(to_linked_case(lang, token)),
            confirmed => {
                let (status, error) = refused(lang, confirmed);
                (status, None, vec![error])
            }
        },
    };
    let p = page(state, lang, token, &radicado, csrf, notice, errors);
    Ok(pages::html(status, &p))
}

async fn respond(
    state: WebState,
    lang: Lang,
    headers: HeaderMap,
    token: String,
    form: Result<Form<Posted>, FormRejection>,
    what: Act,
) -> Response {
    let Ok(Form(form)) = form else {
        return pages::bad_request(&state, lang);
    };
    act(&state, lang, &headers, &token, form, what)
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "linking a web filing to its customer");
            pages::internal_error(&state, lang)
        })
}

/// `POST /pqrs/caso/{token}/vincular`: a new code, sent when there is someone to send it to.
pub async fn ask(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<Posted>, FormRejection>,
) -> Response {
    respond(state, lang, headers, token, form, Act::Ask).await
}

/// `POST /pqrs/caso/{token}/vincular/codigo`: the typed code.
pub async fn confirm(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<Posted>, FormRejection>,
) -> Response {
    respond(state, lang, headers, token, form, Act::Confirm).await
}
