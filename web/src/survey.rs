//! `/s/{token}`: the page a survey invitation's link opens (see `atiende_core::surveys`), where the
//! customer answers it once, on any phone, without JavaScript. A link that is unknown gets 404; one
//! whose survey was answered or has expired gets 410.

use std::collections::BTreeMap;

use askama::Template;
use atiende_core::surveys::{self, Answering, Link, Refusal, Refused, SurveyInvitation, TakenVia};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::WebState;
use crate::guard::{self, Csrf};
use crate::lang::Lang;
use crate::pages::{self, Base};

/// One question as the page shows it, with what was chosen or typed and why it was refused.
pub struct QuestionView {
    pub code: String,
    pub label: String,
    pub kind: String,
    pub required: bool,
    /// (value, label) of each radio button.
    pub options: Vec<(String, String)>,
    pub value: String,
    /// (code, text) of the error.
    pub error: Option<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "survey.html")]
pub struct SurveyPage<'a> {
    pub base: Base<'a>,
    pub csrf: String,
    pub intro: String,
    pub action: String,
    pub questions: Vec<QuestionView>,
    pub errors: Vec<Refusal>,
}

/// The page of a link that opens no survey, with the stable code of why.
fn dead(state: &WebState, lang: Lang, code: &'static str) -> Response {
    let status = if code == "survey_not_found" {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::GONE
    };
    pages::message(
        state,
        lang,
        status,
        code,
        "survey.dead_title",
        lang.t(&format!("survey.{code}")),
    )
}

fn page<'a>(
    state: &'a WebState,
    lang: Lang,
    token: &str,
    csrf: String,
    invitation: &SurveyInvitation,
    values: &BTreeMap<String, String>,
    errors: Vec<Refusal>,
) -> SurveyPage<'a> {
    let path = surveys::page_path(token);
    let name = if lang == Lang::En {
        &invitation.template_name_en
    } else {
        &invitation.template_name_es
    };
    let questions = invitation
        .questions
        .iter()
        .map(|q| {
            let options = match q.kind.as_str() {
                "scale" => (1..=5)
                    .map(|n| (n.to_string(), lang.t(&format!("case.score_{n}"))))
                    .collect(),
                "yes_no" => vec![
                    ("yes".to_owned(), lang.t("survey.yes")),
                    ("no".to_owned(), lang.t("survey.no")),
                ],
                "choice" => q
                    .options
                    .iter()
                    .map(|o| {
                        let label = if lang == Lang::En { &o.en } else { &o.es };
                        (o.value.clone(), label.clone())
                    })
                    .collect(),
                _ => Vec::new(),
            };
            QuestionView {
                code: q.code.clone(),
                label: q.label(lang.code()).to_owned(),
                kind: q.kind.clone(),
                required: q.required,
                options,
                value: values.get(&q.code).cloned().unwrap_or_default(),
                error: errors
                    .iter()
                    .find(|e| e.question == q.code)
                    .map(|e| (e.code, lang.t(&format!("error.{}", e.code)))),
            }
        })
        .collect();
    SurveyPage {
        base: Base::new(state, lang, name.clone(), path.clone()),
        csrf,
        intro: lang.t("survey.intro"),
        action: path,
        questions,
        errors,
    }
}

pub async fn show(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let opened = match state.db.acquire().await {
        Ok(mut conn) => surveys::link(&mut conn, &token).await,
        Err(e) => Err(e.into()),
    };
    let response = match opened {
        Ok(Link::Open(invitation)) => {
            let page = page(
                &state,
                lang,
                &token,
                csrf.token.clone(),
                &invitation,
                &BTreeMap::new(),
                Vec::new(),
            );
            pages::html(StatusCode::OK, &page)
        }
        Ok(Link::Unknown) => dead(&state, lang, "survey_not_found"),
        Ok(Link::Answered) => dead(&state, lang, "survey_answered"),
        Ok(Link::Expired) => dead(&state, lang, "survey_expired"),
        Err(e) => {
            tracing::error!(error = %e, "opening a survey link");
            pages::internal_error(&state, lang)
        }
    };
    pages::private(csrf.set_cookie(response))
}

pub async fn submit(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(fields)) = form else {
        return pages::private(pages::bad_request(&state, lang));
    };
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut csrf = None;
    for (name, value) in fields {
        if name == "csrf" {
            csrf = Some(value);
        } else if value.len() <= crate::MAX_FIELD_BYTES {
            values.insert(name, value);
        } else {
            // Longer than any answer may be: refused as too long, and not echoed back.
            values.insert(name, "x".repeat(surveys::answers::MAX_TEXT + 1));
        }
    }
    if !guard::csrf_ok(&headers, csrf.as_deref()) {
        return pages::private(guard::refused(&state, lang));
    }
    let csrf = csrf.unwrap_or_default();
    let opened = match state.db.acquire().await {
        Ok(mut conn) => surveys::link(&mut conn, &token).await,
        Err(e) => Err(e.into()),
    };
    let invitation = match opened {
        Ok(Link::Open(invitation)) => invitation,
        Ok(Link::Unknown) => return pages::private(dead(&state, lang, "survey_not_found")),
        Ok(Link::Answered) => return pages::private(dead(&state, lang, "survey_answered")),
        Ok(Link::Expired) => return pages::private(dead(&state, lang, "survey_expired")),
        Err(e) => {
            tracing::error!(error = %e, "opening a survey link");
            return pages::private(pages::internal_error(&state, lang));
        }
    };
    let who = Answering {
        via: TakenVia::Web,
        entered_by: None,
        low: &state.survey_low_score,
    };
    let response = match surveys::answer(&state.db, invitation.id, &values, false, who).await {
        Ok(_) => pages::message(
            &state,
            lang,
            StatusCode::OK,
            "survey_thanks",
            "survey.done_title",
            lang.t("survey.done_text"),
        ),
        Err(Refused::Invalid(errors)) => {
            let page = page(&state, lang, &token, csrf, &invitation, &values, errors);
            pages::html(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(Refused::Answered) => dead(&state, lang, "survey_answered"),
        Err(Refused::Expired) => dead(&state, lang, "survey_expired"),
        Err(Refused::Other(e)) => {
            tracing::error!(error = %e, "storing survey answers");
            pages::internal_error(&state, lang)
        }
    };
    pages::private(response)
}
