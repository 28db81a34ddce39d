//! `/pqrs/caso/{token}`: a case's own page for whoever holds its secret link: status, dates, the
//! messages, the answer; a reply while the case waits on the customer; a rating once answered.

use askama::Template;
use atiende_core::cases::{self, Actor, Case};
use atiende_core::types::{CaseStatus, Channel};
use atiende_core::{Error, calendar, case_links, link_codes, terms, texts};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::WebState;
use crate::guard::{self, Csrf};
use crate::lang::Lang;
use crate::pages::{self, Base, Errors, FieldError};
use crate::status::CaseFacts;

pub struct MessageView {
    pub from_staff: bool,
    pub author: String,
    pub date: String,
    pub body: String,
}

#[derive(Template)]
#[template(path = "case.html")]
pub struct CasePage<'a> {
    pub base: Base<'a>,
    pub csrf: String,
    pub c: CaseFacts,
    pub subject: String,
    pub answer: Option<String>,
    pub messages: Vec<MessageView>,
    pub can_reply: bool,
    pub can_rate: bool,
    pub rated: Option<String>,
    pub notice: Option<String>,
    pub reply_action: String,
    pub rate_action: String,
    /// The filing was added to the customer's record by a code.
    pub linked: bool,
    /// Whether the page offers to link a web filing to the filer's customer record.
    pub offer_link: bool,
    pub link_action: String,
    pub errors: Vec<FieldError>,
}

impl Errors for CasePage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// The case a link opens.
async fn open(state: &WebState, token: &str) -> Result<Option<Case>, Error> {
    let mut conn = state.db.acquire().await?;
    match case_links::case_for(&mut conn, token).await? {
        Some(id) => Ok(Some(cases::get(&mut *conn, id).await?)),
        None => Ok(None),
    }
}

/// How a case page answers: its status code, a notice at the top, the errors of its forms.
struct Outcome {
    status: StatusCode,
    notice: Option<String>,
    errors: Vec<FieldError>,
}

impl Outcome {
    fn ok(notice: Option<String>) -> Self {
        Outcome {
            status: StatusCode::OK,
            notice,
            errors: Vec::new(),
        }
    }

    fn invalid(error: FieldError) -> Self {
        Outcome {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            notice: None,
            errors: vec![error],
        }
    }
}

async fn render(
    state: &WebState,
    lang: Lang,
    token: &str,
    case: Case,
    csrf: String,
    outcome: Outcome,
) -> Result<Response, Error> {
    let Outcome {
        status,
        notice,
        errors,
    } = outcome;
    let (messages, _) = cases::messages(&state.db, case.id, None, cases::LATEST).await?;
    let messages = messages
        .into_iter()
        .map(|m| MessageView {
            from_staff: m.from_staff,
            author: if m.from_staff {
                state.brand.company_name.clone()
            } else {
                lang.t("case.from_you")
            },
            date: texts::long_date(lang.code(), calendar::local_date(m.created_at)),
            body: m.body,
        })
        .collect();
    let path = format!("/pqrs/caso/{token}");
    let answered = matches!(case.status, CaseStatus::Answered | CaseStatus::Rated);
    let linked = link_codes::linked(&state.db, case.id).await?;
    let page = CasePage {
        base: Base::new(
            state,
            lang,
            lang.t_with("case.title", &[("radicado", &case.radicado)]),
            path.clone(),
        ),
        csrf,
        can_reply: case.status == CaseStatus::WaitingCustomer,
        can_rate: case.status == CaseStatus::Answered,
        rated: case
            .rating_score
            .map(|s| lang.t_with("case.rated", &[("score", &s.to_string())])),
        answer: case.answer.clone().filter(|_| answered),
        subject: case.subject.clone(),
        messages,
        notice,
        reply_action: format!("{path}/respuesta"),
        rate_action: format!("{path}/calificacion"),
        linked,
        // Offered on every web filing alike, whatever its document number.
        offer_link: case.channel == Channel::Web,
        link_action: crate::link::action(&path),
        errors,
        c: CaseFacts::new(
            lang,
            case.radicado,
            case.case_type,
            case.status,
            case.received_at,
            case.legal_due_date,
            case.answered_at,
        ),
    };
    Ok(pages::html(status, &page))
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

pub async fn show(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let notice = match done.done.as_deref() {
        Some("reply") => Some(lang.t("case.replied")),
        Some("linked") => Some(lang.t("link.linked")),
        _ => None,
    };
    let result = match open(&state, &token).await {
        Ok(Some(case)) => {
            render(
                &state,
                lang,
                &token,
                case,
                csrf.token.clone(),
                Outcome::ok(notice),
            )
            .await
        }
        Ok(None) => Ok(pages::not_found(&state, lang)),
        Err(e) => Err(e),
    };
    let response = result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "showing a case page");
        pages::internal_error(&state, lang)
    });
    csrf.set_cookie(response)
}

#[derive(Deserialize)]
pub struct Reply {
    csrf: Option<String>,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
pub struct Rating {
    csrf: Option<String>,
    #[serde(default)]
    score: String,
    #[serde(default)]
    comment: String,
}

/// What a POST on a case page does, once its link and CSRF token are good.
enum Act {
    Reply(String),
    Rate(String, String),
}

async fn act(
    state: &WebState,
    lang: Lang,
    headers: &HeaderMap,
    token: &str,
    csrf: Option<String>,
    act: Act,
) -> Result<Response, Error> {
    if !guard::csrf_ok(headers, csrf.as_deref()) {
        return Ok(guard::refused(state, lang));
    }
    let csrf = csrf.unwrap_or_default();
    let Some(case) = open(state, token).await? else {
        return Ok(pages::not_found(state, lang));
    };
    let actor = Actor::Customer(case.customer_id);
    let (result, done, field) = match act {
        Act::Reply(body) => {
            if case.status != CaseStatus::WaitingCustomer {
                return not_now(state, lang, token, case, csrf).await;
            }
            let terms = terms::current(&state.db).await?;
            let r = cases::add_message(&state.db, &terms, actor, case.id, &body, &[])
                .await
                .map(|_| ());
            (r, "reply", "body")
        }
        Act::Rate(score, comment) => {
            if case.status != CaseStatus::Answered {
                return not_now(state, lang, token, case, csrf).await;
            }
            let Ok(score) = score.trim().parse::<i64>() else {
                let e = FieldError::new(lang, "score", "invalid_score");
                return render(state, lang, token, case, csrf, Outcome::invalid(e)).await;
            };
            let comment = Some(comment.as_str()).filter(|c| !c.trim().is_empty());
            let r = cases::rate(&state.db, actor, case.id, score, comment)
                .await
                .map(|_| ());
            (r, "rate", "score")
        }
    };
    match result {
        Ok(()) => Ok((
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!("/pqrs/caso/{token}?lang={}&done={done}", lang.code()),
            )],
        )
            .into_response()),
        Err(Error::Invalid { code, .. }) => {
            let field = if code == "invalid_comment" {
                "comment"
            } else {
                field
            };
            let e = FieldError::new(lang, field, code);
            render(state, lang, token, case, csrf, Outcome::invalid(e)).await
        }
        Err(Error::Conflict { .. }) => not_now(state, lang, token, case, csrf).await,
        Err(e) => Err(e),
    }
}

/// The case no longer waits for what was posted (replied or rated already, in another tab).
async fn not_now(
    state: &WebState,
    lang: Lang,
    token: &str,
    case: Case,
    csrf: String,
) -> Result<Response, Error> {
    render(
        state,
        lang,
        token,
        case,
        csrf,
        Outcome {
            status: StatusCode::CONFLICT,
            notice: Some(lang.t("case.not_now")),
            errors: Vec::new(),
        },
    )
    .await
}

fn finish(state: &WebState, lang: Lang, r: Result<Response, Error>) -> Response {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "acting on a case page");
        pages::internal_error(state, lang)
    })
}

pub async fn reply(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<Reply>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return pages::bad_request(&state, lang);
    };
    let r = act(
        &state,
        lang,
        &headers,
        &token,
        form.csrf,
        Act::Reply(form.body),
    )
    .await;
    finish(&state, lang, r)
}

pub async fn rate(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<Rating>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return pages::bad_request(&state, lang);
    };
    let r = act(
        &state,
        lang,
        &headers,
        &token,
        form.csrf,
        Act::Rate(form.score, form.comment),
    )
    .await;
    finish(&state, lang, r)
}
