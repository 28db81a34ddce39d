//! `GET /staff/cases/{id}/letter`: the acknowledgement of a case as a letter to print, for a
//! customer without an e-mail address on file (PRO-SIG-10: the acknowledgement goes to the
//! customer, by e-mail or as a letter staff hand over or post). For staff who work the case or
//! registered it, with their bearer token as on `/api/v1`; in the customer's language unless
//! `?lang=` asks for the other.

use askama::Template;
use atiende_core::auth::{self, User};
use atiende_core::letters::{self, Acknowledgement};
use atiende_core::{Error, calendar, texts};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use crate::lang::Lang;
use crate::pages;
use crate::{Brand, WebState};

#[derive(Template)]
#[template(path = "letter.html")]
pub struct LetterPage<'a> {
    pub lang: Lang,
    pub brand: &'a Brand,
    pub title: String,
    pub place_and_date: String,
    pub customer_name: String,
    pub document: String,
    pub radicado: String,
    pub case_type: String,
    pub received: String,
    pub due: String,
    pub legal_basis: String,
    pub body: Vec<String>,
}

impl LetterPage<'_> {
    pub fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }
}

#[derive(Deserialize)]
pub struct LetterQuery {
    lang: Option<String>,
}

/// Who asks: a staff member's bearer token, else the refusal the API gives.
async fn staff(state: &WebState, headers: &HeaderMap) -> Result<User, (StatusCode, &'static str)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer_token)
        .ok_or((StatusCode::UNAUTHORIZED, "unauthenticated"))?;
    let user = match auth::authenticate(&state.db, token).await {
        Ok(user) => user,
        Err(Error::Unauthenticated) => return Err((StatusCode::UNAUTHORIZED, "unauthenticated")),
        Err(e) => {
            tracing::error!(error = %e, "authenticating for a letter");
            return Err((StatusCode::INTERNAL_SERVER_ERROR, "internal_error"));
        }
    };
    if user.role.is_staff() {
        Ok(user)
    } else {
        Err((StatusCode::FORBIDDEN, "staff_only"))
    }
}

fn refusal(state: &WebState, lang: Lang, status: StatusCode, code: &'static str) -> Response {
    let mut response = pages::message(
        state,
        lang,
        status,
        code,
        "letter.refused_title",
        lang.t(&format!("letter.{code}")),
    );
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

pub async fn show(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<LetterQuery>,
) -> Response {
    let user = match staff(&state, &headers).await {
        Ok(user) => user,
        Err((status, code)) => return refusal(&state, lang, status, code),
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return refusal(&state, lang, StatusCode::NOT_FOUND, "case_not_found");
    };
    let found = match state.db.acquire().await {
        Ok(mut conn) => letters::acknowledgement(&mut conn, &user, id).await,
        Err(e) => Err(e.into()),
    };
    let mut response = match found {
        Ok(letter) => {
            // The customer's language, unless staff ask for the other with `?lang=`.
            let asked = query.lang.as_deref().and_then(Lang::from_accept_language);
            let lang = asked.unwrap_or(if letter.language == "en" {
                Lang::En
            } else {
                Lang::Es
            });
            pages::html(StatusCode::OK, &page(&state, lang, letter))
        }
        Err(Error::NotFound { .. }) => {
            return refusal(&state, lang, StatusCode::NOT_FOUND, "case_not_found");
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a case's letter");
            pages::internal_error(&state, lang)
        }
    };
    // A customer's personal data: not kept by caches.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(state: &WebState, lang: Lang, l: Acknowledgement) -> LetterPage<'_> {
    let code = lang.code();
    let date = |at| texts::long_date(code, calendar::local_date(at));
    let received_local = l.received_at.with_timezone(&calendar::COLOMBIA);
    let received = lang.t_with(
        "letter.at_time",
        &[
            ("date", &date(l.received_at)),
            ("time", &received_local.format("%H:%M").to_string()),
        ],
    );
    let case_type = texts::case_type(code, l.case_type);
    let due = texts::long_date(code, l.legal_due_date);
    let legal_basis = letters::legal_basis(l.case_type).to_owned();
    let channel = lang.t(&format!("letter.channel.{}", l.channel.as_str()));
    let status_url = format!("{}/pqrs/estado", state.public_base_url);
    let today = date(l.created_at);
    let place_and_date = match &state.brand.city {
        Some(city) => format!("{city}, {today}"),
        None => today,
    };
    let body = vec![
        lang.t_with(
            "letter.received",
            &[
                ("case_type", &case_type),
                ("received", &received),
                ("channel", &channel),
                ("radicado", &l.radicado),
            ],
        ),
        lang.t_with(
            "letter.term",
            &[
                ("law", &legal_basis),
                ("days", &l.legal_term_days.to_string()),
                ("due", &due),
            ],
        ),
        lang.t_with(
            "letter.follow",
            &[("url", &status_url), ("radicado", &l.radicado)],
        ),
    ];
    LetterPage {
        lang,
        brand: &state.brand,
        title: lang.t_with("letter.title", &[("radicado", &l.radicado)]),
        place_and_date,
        customer_name: l.customer_name,
        document: match (l.document_type, l.document_number) {
            (Some(t), Some(n)) => format!("{} {n}", lang.t(&format!("doc_type.{}", t.as_str()))),
            _ => String::new(),
        },
        radicado: l.radicado,
        case_type,
        received,
        due,
        legal_basis,
        body,
    }
}
