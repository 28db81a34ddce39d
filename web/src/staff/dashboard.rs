//! `/staff`: the measurement cycle on one page for the quality director, admins and process
//! leaders (as the indicators API scopes them): the open cases closest to breaching, the
//! indicators by month as charts against their targets, the survey answers per question, the
//! follow-ups still open and the contracts about to end; `/staff/indicators.csv` exports the same
//! CSV as the API.

use std::collections::BTreeMap;

use askama::Template;
use atiende_core::calendar::local_date;
use atiende_core::clocks::{ClockState, ClockStatus};
use atiende_core::dashboard::{self, QuestionResult, View};
use atiende_core::deadlines::LegalClock;
use atiende_core::indicators::{self, Month, Query as IndicatorQuery};
use atiende_core::{Error, surveys};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::charts::{Chart, decimal};
use super::figures;
use super::{SignedIn, StaffBase};
use crate::WebState;
use crate::guard::Csrf;
use crate::lang::Lang;
use crate::pages::{self, Errors, FieldError};

/// How many cases, follow-ups and contracts each list shows.
const LIST_LENGTH: i64 = 10;

#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The months asked for: `to` defaults to this month, `from` to eleven months before `to`; each
/// refusal names its field.
pub fn parse_range(q: &RangeQuery) -> Result<IndicatorQuery, FieldError> {
    fn month(
        raw: Option<&str>,
        field: &'static str,
    ) -> Result<Option<Month>, (&'static str, &'static str)> {
        match raw.map(str::trim).filter(|r| !r.is_empty()) {
            None => Ok(None),
            Some(r) => Month::parse(r).map(Some).ok_or((field, "invalid_month")),
        }
    }
    let parsed = (|| {
        let to = month(q.to.as_deref(), "to")?.unwrap_or_else(|| Month::of(local_date(Utc::now())));
        let from = month(q.from.as_deref(), "from")?.unwrap_or_else(|| {
            Month::of(
                to.first_day()
                    .checked_sub_months(chrono::Months::new(11))
                    .unwrap_or(to.first_day()),
            )
        });
        IndicatorQuery::new(from, to, None, None).map_err(|e| match e {
            Error::Invalid { code, .. } => ("from", code),
            _ => ("from", "invalid_range"),
        })
    })();
    parsed.map_err(|(field, code)| FieldError {
        field,
        code,
        text: String::new(),
    })
}

/// A clock as a badge: what is left, paused, met or breached.
pub struct Badge {
    /// `ok`, `soon`, `paused`, `late` or `done`.
    pub class: &'static str,
    pub text: String,
}

fn hours_text(lang: Lang, secs: u64) -> String {
    let minutes = secs / 60;
    let (h, m) = (minutes / 60, minutes % 60);
    lang.t_with(
        "staff.clock.hours_minutes",
        &[("h", &h.to_string()), ("m", &format!("{m:02}"))],
    )
}

fn legal_badge(lang: Lang, c: &LegalClock) -> Badge {
    let due = c.due_date.format("%Y-%m-%d").to_string();
    match c.status {
        ClockStatus::Breached => Badge {
            class: "late",
            text: lang.t_with(
                "staff.clock.legal_breached",
                &[
                    ("days", &(-c.business_days_remaining).max(0).to_string()),
                    ("date", &due),
                ],
            ),
        },
        ClockStatus::Paused => Badge {
            class: "paused",
            text: lang.t_with("staff.clock.legal_paused", &[("date", &due)]),
        },
        ClockStatus::Met => Badge {
            class: "done",
            text: lang.t("staff.clock.met"),
        },
        _ => Badge {
            class: if c.business_days_remaining <= 2 {
                "soon"
            } else {
                "ok"
            },
            text: lang.t_with(
                "staff.clock.legal_left",
                &[
                    ("days", &c.business_days_remaining.to_string()),
                    ("date", &due),
                ],
            ),
        },
    }
}

/// The SLA as one badge: the first-response clock while it runs, else the resolution clock.
fn sla_badge(lang: Lang, first: &ClockState, resolution: &ClockState) -> Badge {
    let (key, clock) = match first.status {
        ClockStatus::Running | ClockStatus::Paused | ClockStatus::Breached
            if resolution.status != ClockStatus::Breached =>
        {
            ("first_response", first)
        }
        _ => ("resolution", resolution),
    };
    let which = lang.t(&format!("staff.value.{key}"));
    match clock.status {
        ClockStatus::Breached => Badge {
            class: "late",
            text: lang.t_with(
                "staff.clock.sla_breached",
                &[
                    ("clock", &which),
                    ("time", &hours_text(lang, clock.overdue_secs)),
                ],
            ),
        },
        ClockStatus::Paused => Badge {
            class: "paused",
            text: lang.t_with("staff.clock.sla_paused", &[("clock", &which)]),
        },
        ClockStatus::Running => Badge {
            class: if clock.fraction >= 0.75 { "soon" } else { "ok" },
            text: lang.t_with(
                "staff.clock.sla_left",
                &[
                    ("clock", &which),
                    ("time", &hours_text(lang, clock.remaining_secs)),
                ],
            ),
        },
        _ => Badge {
            class: "done",
            text: lang.t("staff.clock.met"),
        },
    }
}

pub struct RiskRow {
    pub radicado: String,
    pub case_type: String,
    pub status: String,
    pub priority: String,
    pub process: String,
    pub customer: String,
    pub legal: Badge,
    pub sla: Badge,
}

pub struct QuestionRow {
    pub label: String,
    pub answers: i64,
    /// The figure that sums it up: mean and share scored 4–5, share of yes...
    pub summary: String,
    /// (label, answers, share) of each score or option.
    pub detail: Vec<(String, i64, String)>,
}

pub struct SurveyBlock {
    pub name: String,
    pub questions: Vec<QuestionRow>,
}

pub struct FollowUpRow {
    pub customer: String,
    pub survey: String,
    pub process: String,
    pub score: i16,
    pub opened: String,
}

pub struct ContractRow {
    pub customer: String,
    pub services: String,
    pub ends_on: String,
    pub left: String,
    pub late: bool,
    pub offered: String,
}

#[derive(Template)]
#[template(path = "staff/dashboard.html")]
pub struct DashboardPage<'a> {
    pub base: StaffBase<'a>,
    pub from: String,
    pub to: String,
    pub errors: Vec<FieldError>,
    /// The processes a leader sees, said at the top.
    pub scope: Option<String>,
    pub risks: Vec<RiskRow>,
    pub charts: Vec<Chart>,
    pub surveys: Vec<SurveyBlock>,
    pub follow_ups: Vec<FollowUpRow>,
    pub contracts: Option<Vec<ContractRow>>,
    pub csv_href: String,
    pub report_href: String,
    pub period: String,
}

impl Errors for DashboardPage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn share(lang: Lang, part: i64, whole: i64) -> String {
    if whole > 0 {
        format!("{} %", decimal(lang, part as f64 * 100.0 / whole as f64))
    } else {
        "—".to_owned()
    }
}

fn question_row(lang: Lang, q: &QuestionResult) -> QuestionRow {
    let label = if lang == Lang::En {
        &q.label_en
    } else {
        &q.label_es
    }
    .clone();
    let (summary, detail) = match q.kind.as_str() {
        "scale" => {
            let scored: i64 = q.scores.iter().sum();
            let satisfied = q.scores[3] + q.scores[4];
            let summary = lang.t_with(
                "staff.survey.scale_summary",
                &[
                    ("mean", &q.mean.map_or("—".into(), |m| decimal(lang, m))),
                    ("share", &share(lang, satisfied, scored)),
                ],
            );
            let detail = (1..=5)
                .zip(q.scores)
                .map(|(s, n)| (s.to_string(), n, share(lang, n, scored)))
                .collect();
            (summary, detail)
        }
        "yes_no" => (
            lang.t_with(
                "staff.survey.yes_summary",
                &[("share", &share(lang, q.yes, q.answers))],
            ),
            vec![
                (lang.t("survey.yes"), q.yes, share(lang, q.yes, q.answers)),
                (
                    lang.t("survey.no"),
                    q.answers - q.yes,
                    share(lang, q.answers - q.yes, q.answers),
                ),
            ],
        ),
        "choice" => (
            String::new(),
            q.choices
                .iter()
                .map(|(_, es, en, n)| {
                    (
                        if lang == Lang::En { en } else { es }.clone(),
                        *n,
                        share(lang, *n, q.answers),
                    )
                })
                .collect(),
        ),
        _ => (lang.t("staff.survey.text_summary"), Vec::new()),
    };
    QuestionRow {
        label,
        answers: q.answers,
        summary,
        detail,
    }
}

fn survey_blocks(lang: Lang, results: &[QuestionResult]) -> Vec<SurveyBlock> {
    let mut blocks: Vec<SurveyBlock> = Vec::new();
    let mut current = None;
    for q in results {
        if current.as_deref() != Some(q.template.as_str()) {
            current = Some(q.template.clone());
            blocks.push(SurveyBlock {
                name: if lang == Lang::En {
                    &q.template_name_en
                } else {
                    &q.template_name_es
                }
                .clone(),
                questions: Vec::new(),
            });
        }
        if let Some(b) = blocks.last_mut() {
            b.questions.push(question_row(lang, q));
        }
    }
    blocks
}

/// The survey templates' names by code, for the charts and tables.
pub async fn template_names(state: &WebState) -> Result<BTreeMap<String, (String, String)>, Error> {
    let mut conn = state.db.acquire().await?;
    Ok(surveys::templates(&mut conn)
        .await?
        .into_iter()
        .map(|t| (t.code, (t.name_es, t.name_en)))
        .collect())
}

/// The scope sentence of a process leader.
pub fn scope_text(lang: Lang, view: &View) -> Option<String> {
    view.processes
        .as_ref()
        .map(|p| lang.t_with("staff.scope_processes", &[("processes", &p.join(", "))]))
}

async fn content(
    state: &WebState,
    lang: Lang,
    signed: &SignedIn,
    view: &View,
    query: &IndicatorQuery,
    page: &mut DashboardPage<'_>,
) -> Result<(), Error> {
    let found =
        indicators::compute(&state.db, &signed.user, query, &state.commercial_process).await?;
    let months = figures::months(query.from, query.to);
    let templates = template_names(state).await?;
    page.charts = figures::charts(lang, &found, &months, &templates);
    page.risks = dashboard::at_risk(&state.db, view, LIST_LENGTH)
        .await?
        .into_iter()
        .map(|c| RiskRow {
            radicado: c.radicado,
            case_type: atiende_core::texts::case_type(lang.code(), c.case_type),
            status: lang.t(&format!("staff.value.{}", c.status.as_str())),
            priority: lang.t(&format!("staff.value.{}", c.priority.as_str())),
            process: c.process_code.unwrap_or_else(|| lang.t("staff.value.none")),
            customer: c.customer_name,
            legal: legal_badge(lang, &c.clocks.legal),
            sla: sla_badge(lang, &c.clocks.first_response, &c.clocks.resolution),
        })
        .collect();
    let results = dashboard::survey_results(&state.db, view, query.from, query.to).await?;
    page.surveys = survey_blocks(lang, &results);
    page.follow_ups = dashboard::open_follow_ups(&state.db, view, LIST_LENGTH)
        .await?
        .into_iter()
        .map(|f| FollowUpRow {
            customer: f.customer_name,
            survey: if lang == Lang::En {
                f.template_name_en
            } else {
                f.template_name_es
            },
            process: f.process_code.unwrap_or_else(|| lang.t("staff.value.none")),
            score: f.lowest_score,
            opened: local_date(f.opened_at).format("%Y-%m-%d").to_string(),
        })
        .collect();
    if view.commercial {
        let today = local_date(Utc::now());
        page.contracts = Some(
            dashboard::ending_contracts(&state.db, view, state.contract_renewal_days, LIST_LENGTH)
                .await?
                .into_iter()
                .map(|k| {
                    let days = (k.ends_on - today).num_days();
                    ContractRow {
                        customer: k.customer_name,
                        services: k.services.join(", "),
                        ends_on: k.ends_on.format("%Y-%m-%d").to_string(),
                        left: if days < 0 {
                            lang.t_with("staff.contracts.ended", &[("days", &(-days).to_string())])
                        } else {
                            lang.t_with("staff.contracts.left", &[("days", &days.to_string())])
                        },
                        late: days < 0,
                        offered: match k.renewal_offered_at {
                            Some(at) => local_date(at).format("%Y-%m-%d").to_string(),
                            None => lang.t("staff.contracts.not_offered"),
                        },
                    }
                })
                .collect(),
        );
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn show(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    signed: SignedIn,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let path = match (&q.from, &q.to) {
        (Some(f), Some(t)) if Month::parse(f).is_some() && Month::parse(t).is_some() => {
            format!("/staff?from={f}&to={t}")
        }
        _ => "/staff".to_owned(),
    };
    let base = signed.base(
        &state,
        lang,
        "staff.dashboard_title",
        path,
        csrf.token.clone(),
        "dashboard",
    );
    let view = match dashboard::view(&state.db, &signed.user, &state.commercial_process).await {
        Ok(view) => view,
        Err(e) => return csrf.set_cookie(super::failure(&state, base, e)),
    };
    let range = parse_range(&q);
    let mut page = DashboardPage {
        base,
        from: q.from.clone().unwrap_or_default(),
        to: q.to.clone().unwrap_or_default(),
        errors: Vec::new(),
        scope: scope_text(lang, &view),
        risks: Vec::new(),
        charts: Vec::new(),
        surveys: Vec::new(),
        follow_ups: Vec::new(),
        contracts: None,
        csv_href: String::new(),
        report_href: String::new(),
        period: String::new(),
    };
    let query = match range {
        Ok(query) => query,
        Err(mut e) => {
            e.text = lang.t(&format!("error.{}", e.code));
            page.errors.push(e);
            return pages::private(
                csrf.set_cookie(pages::html(StatusCode::UNPROCESSABLE_ENTITY, &page)),
            );
        }
    };
    page.from = query.from.to_string();
    page.to = query.to.to_string();
    page.period = lang.t_with(
        "staff.period",
        &[
            ("from", &super::month_name(lang, query.from)),
            ("to", &super::month_name(lang, query.to)),
        ],
    );
    page.csv_href = page.base.href(&format!(
        "/staff/indicators.csv?from={}&to={}",
        query.from, query.to
    ));
    page.report_href = page.base.href(&format!("/staff/reports/{}", query.to));
    let response = match content(&state, lang, &signed, &view, &query, &mut page).await {
        Ok(()) => pages::private(pages::html(StatusCode::OK, &page)),
        Err(e) => super::failure(&state, page.base, e),
    };
    csrf.set_cookie(response)
}

/// The indicators of the months asked for as the API's CSV (`;`, decimal comma, UTF-8 with a
/// byte-order mark), to the same readers as the dashboard.
#[tracing::instrument(skip_all)]
pub async fn csv(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    signed: SignedIn,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let csrf = Csrf::from_headers(&headers);
    let base = signed.base(
        &state,
        lang,
        "staff.dashboard_title",
        "/staff",
        csrf.token.clone(),
        "dashboard",
    );
    let query = match parse_range(&q) {
        Ok(query) => query,
        Err(e) => {
            return super::failure(&state, base, Error::invalid(e.code, "bad range"));
        }
    };
    let found =
        match indicators::compute(&state.db, &signed.user, &query, &state.commercial_process).await
        {
            Ok(found) => found,
            Err(e) => return super::failure(&state, base, e),
        };
    let tables: Vec<_> = found.tables.iter().collect();
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"indicadores-{}-{}.csv\"",
        found.from, found.to
    ))
    .unwrap_or(HeaderValue::from_static("attachment"));
    pages::private(
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            indicators::csv(&tables),
        )
            .into_response(),
    )
}
