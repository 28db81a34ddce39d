//! `GET/POST /pqrs/estado`: a case's status by radicado and the filer's document number. A
//! radicado that does not exist and one filed with another document read the same: same text,
//! same status code, one query either way.

use askama::Template;
use atiende_core::types::{CaseStatus, CaseType};
use atiende_core::{auth, calendar, texts};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::WebState;
use crate::guard::{self, Csrf};
use crate::lang::Lang;
use crate::pages::{self, Base, Errors, FieldError};

/// A case's status and dates as the public pages show them.
pub struct CaseFacts {
    pub radicado: String,
    pub status_code: &'static str,
    pub status: String,
    pub case_type: String,
    pub received: String,
    pub due: String,
    pub answered: Option<String>,
}

impl CaseFacts {
    pub fn new(
        lang: Lang,
        radicado: String,
        case_type: CaseType,
        status: CaseStatus,
        received_at: DateTime<Utc>,
        due: NaiveDate,
        answered_at: Option<DateTime<Utc>>,
    ) -> Self {
        let date = |at| texts::long_date(lang.code(), calendar::local_date(at));
        CaseFacts {
            radicado,
            status_code: status.as_str(),
            status: lang.t(&format!("case_status.{}", status.as_str())),
            case_type: texts::case_type(lang.code(), case_type),
            received: date(received_at),
            due: texts::long_date(lang.code(), due),
            answered: answered_at.map(date),
        }
    }
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage<'a> {
    pub base: Base<'a>,
    pub csrf: String,
    pub radicado: String,
    pub document_number: String,
    pub found: Option<CaseFacts>,
    pub not_found: bool,
    pub errors: Vec<FieldError>,
}

impl Errors for StatusPage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn page(state: &WebState, lang: Lang, csrf: String) -> StatusPage<'_> {
    StatusPage {
        base: Base::new(state, lang, lang.t("status.title"), "/pqrs/estado"),
        csrf,
        radicado: String::new(),
        document_number: String::new(),
        found: None,
        not_found: false,
        errors: Vec::new(),
    }
}

pub async fn show(State(state): State<WebState>, lang: Lang, headers: HeaderMap) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let p = page(&state, lang, csrf.token.clone());
    csrf.set_cookie(pages::html(StatusCode::OK, &p))
}

#[derive(Deserialize)]
pub struct Lookup {
    csrf: Option<String>,
    #[serde(default)]
    radicado: String,
    #[serde(default)]
    document_number: String,
}

pub async fn lookup(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    form: Result<Form<Lookup>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return pages::bad_request(&state, lang);
    };
    if !guard::csrf_ok(&headers, form.csrf.as_deref()) {
        return guard::refused(&state, lang);
    }
    let mut p = page(&state, lang, form.csrf.clone().unwrap_or_default());
    let radicado = form.radicado.trim().to_uppercase();
    if radicado.is_empty() {
        p.errors
            .push(FieldError::new(lang, "radicado", "radicado_required"));
    }
    if form.document_number.trim().is_empty() {
        p.errors.push(FieldError::new(
            lang,
            "document_number",
            "document_required",
        ));
    }
    p.radicado = form.radicado.chars().take(64).collect();
    p.document_number = form.document_number.chars().take(64).collect();
    if !p.errors.is_empty() {
        return pages::html(StatusCode::UNPROCESSABLE_ENTITY, &p);
    }
    // A malformed number matches nothing, like a wrong one.
    let number = auth::parse_document_number(&form.document_number).unwrap_or_default();
    let found = sqlx::query!(
        r#"select c.radicado, c.type as "case_type: CaseType", c.status as "status: CaseStatus",
                  c.received_at, c.legal_due_date, c.answered_at
           from cases c join customers cu on cu.id = c.customer_id
           where c.radicado = $1 and cu.document_number = $2"#,
        radicado,
        number,
    )
    .fetch_optional(&state.db)
    .await;
    match found {
        Ok(Some(c)) => {
            p.found = Some(CaseFacts::new(
                lang,
                c.radicado,
                c.case_type,
                c.status,
                c.received_at,
                c.legal_due_date,
                c.answered_at,
            ));
            pages::html(StatusCode::OK, &p)
        }
        Ok(None) => {
            p.not_found = true;
            pages::html(StatusCode::NOT_FOUND, &p)
        }
        Err(e) => {
            tracing::error!(error = %e, "looking up a case's status");
            pages::internal_error(&state, lang)
        }
    }
}
