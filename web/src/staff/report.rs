//! `/staff/reports/{YYYY-MM}`: the monthly customer-service report (SGC-SAC-001 REG-003), a page
//! that prints as a clean document: the month's indicator tables, the charts of the year up to it,
//! and the analysis staff write for it, saved as a new version each time. The quality director and
//! admins write it; process leaders read it (with the figures of their processes).

use std::collections::BTreeSet;

use askama::Template;
use atiende_core::Error;
use atiende_core::calendar::local_date;
use atiende_core::dashboard;
use atiende_core::indicators::{self, Month, Query as IndicatorQuery};
use atiende_core::monthly_reports::{self, Analysis, MAX_ANALYSIS_CHARS};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::charts::Chart;
use super::figures::{self, TableView};
use super::{SignedIn, StaffBase, month_name};
use crate::WebState;
use crate::guard::Csrf;
use crate::lang::Lang;
use crate::pages::{self, Errors, FieldError};

/// How many months the list of reports goes back.
const LISTED_MONTHS: u32 = 24;
/// How many months the report's charts show, up to its own.
const CHART_MONTHS: u32 = 12;

fn this_month() -> Month {
    Month::of(local_date(Utc::now()))
}

fn months_back(month: Month, n: u32) -> Month {
    Month::of(
        month
            .first_day()
            .checked_sub_months(chrono::Months::new(n))
            .unwrap_or(month.first_day()),
    )
}

pub struct MonthLink {
    pub month: String,
    pub name: String,
    pub href: String,
    /// The latest version of its analysis, when it has one.
    pub version: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/reports.html")]
pub struct ReportsPage<'a> {
    pub base: StaffBase<'a>,
    pub months: Vec<MonthLink>,
}

#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    signed: SignedIn,
) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let base = signed.base(
        &state,
        lang,
        "staff.reports_title",
        "/staff/reports",
        csrf.token.clone(),
        "reports",
    );
    if let Err(e) = dashboard::view(&state.db, &signed.user, &state.commercial_process).await {
        return csrf.set_cookie(super::failure(&state, base, e));
    }
    let written = match monthly_reports::months(&state.db).await {
        Ok(written) => written,
        Err(e) => return csrf.set_cookie(super::failure(&state, base, e)),
    };
    let now = this_month();
    let mut months: BTreeSet<Month> = written.iter().map(|(m, _)| *m).collect();
    months.extend(
        figures::months(months_back(now, LISTED_MONTHS - 1), now)
            .iter()
            .filter_map(|m| Month::parse(m)),
    );
    let months = months
        .into_iter()
        .rev()
        .filter(|m| *m <= now)
        .map(|m| MonthLink {
            month: m.to_string(),
            name: month_name(lang, m),
            href: base.href(&format!("/staff/reports/{m}")),
            version: written
                .iter()
                .find(|(w, _)| *w == m)
                .map(|(_, v)| version_label(lang, *v)),
        })
        .collect();
    let page = ReportsPage { base, months };
    csrf.set_cookie(pages::private(pages::html(StatusCode::OK, &page)))
}

fn version_label(lang: Lang, version: i32) -> String {
    lang.t_with(
        "staff.analysis_version",
        &[("version", &version.to_string())],
    )
}

fn local_time(at: chrono::DateTime<Utc>) -> String {
    at.with_timezone(&atiende_core::calendar::COLOMBIA)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

pub struct VersionLink {
    pub label: String,
    pub author: String,
    pub at: String,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "staff/report.html")]
pub struct ReportPage<'a> {
    pub base: StaffBase<'a>,
    pub month: String,
    pub month_title: String,
    pub scope: Option<String>,
    pub generated: String,
    pub tables: Vec<TableView>,
    pub charts: Vec<Chart>,
    /// The version shown, and whether it is the latest.
    pub analysis: Option<Analysis>,
    /// Which version is shown, who wrote it and when.
    pub analysis_meta: String,
    /// Said when the version shown is not the latest.
    pub analysis_old: Option<String>,
    pub latest: i32,
    pub versions: Vec<VersionLink>,
    pub may_write: bool,
    /// What the form holds: the latest text, or what was sent and refused.
    pub draft: String,
    pub max_chars: usize,
    pub hint: String,
    pub saved: Option<String>,
    pub errors: Vec<FieldError>,
    pub dashboard_href: String,
}

impl Errors for ReportPage<'_> {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    version: Option<i32>,
    saved: Option<i32>,
}

/// The month of the path, when it is one that has begun.
fn month_of(raw: &str) -> Result<Month, Error> {
    let month = Month::parse(raw).ok_or(Error::not_found("invalid_month", "report"))?;
    if month > this_month() {
        return Err(Error::not_found("month_in_future", "report"));
    }
    Ok(month)
}

/// What the page shows besides the form.
struct Shown {
    version: Option<i32>,
    saved: Option<i32>,
    draft: Option<String>,
    error: Option<&'static str>,
}

async fn render(
    state: &WebState,
    lang: Lang,
    signed: &SignedIn,
    csrf: String,
    raw_month: &str,
    shown: Shown,
) -> Response {
    let path = format!("/staff/reports/{raw_month}");
    let base = signed.base(state, lang, "staff.report_title", path, csrf, "reports");
    let view = match dashboard::view(&state.db, &signed.user, &state.commercial_process).await {
        Ok(view) => view,
        Err(e) => return super::failure(state, base, e),
    };
    let month = match month_of(raw_month) {
        Ok(month) => month,
        Err(e) => return super::failure(state, base, e),
    };
    match content(state, lang, signed, base, month, &view, shown).await {
        Ok((status, page)) => pages::private(pages::html(status, &page)),
        Err((base, e)) => super::failure(state, base, e),
    }
}

async fn content<'a>(
    state: &'a WebState,
    lang: Lang,
    signed: &SignedIn,
    base: StaffBase<'a>,
    month: Month,
    view: &dashboard::View,
    shown: Shown,
) -> Result<(StatusCode, ReportPage<'a>), (StaffBase<'a>, Error)> {
    let query = match IndicatorQuery::new(months_back(month, CHART_MONTHS - 1), month, None, None) {
        Ok(q) => q,
        Err(e) => return Err((base, e)),
    };
    let found =
        match indicators::compute(&state.db, &signed.user, &query, &state.commercial_process).await
        {
            Ok(found) => found,
            Err(e) => return Err((base, e)),
        };
    let (templates, versions) = match (
        super::dashboard::template_names(state).await,
        monthly_reports::versions(&state.db, month).await,
    ) {
        (Ok(t), Ok(v)) => (t, v),
        (Err(e), _) | (_, Err(e)) => return Err((base, e)),
    };
    let months = figures::months(query.from, query.to);
    let latest = versions.first().map_or(0, |v| v.version);
    let analysis = match shown.version {
        Some(n) => versions.iter().find(|v| v.version == n).cloned(),
        None => versions.first().cloned(),
    };
    if shown.version.is_some() && analysis.is_none() {
        return Err((
            base,
            Error::not_found("version_not_found", "analysis version"),
        ));
    }
    let errors = shown
        .error
        .map(|code| vec![FieldError::new(lang, "body", code)])
        .unwrap_or_default();
    let status = match shown.error {
        Some("analysis_changed") => StatusCode::CONFLICT,
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::OK,
    };
    let href = |v: i32| base.href(&format!("/staff/reports/{month}?version={v}"));
    let page = ReportPage {
        month: month.to_string(),
        month_title: lang.t_with(
            "staff.report_heading",
            &[("month", &month_name(lang, month))],
        ),
        scope: super::dashboard::scope_text(lang, view),
        generated: lang.t_with("staff.report_generated", &[("at", &local_time(Utc::now()))]),
        tables: figures::tables(lang, &found, Some(&month.to_string()), &templates),
        charts: figures::charts(lang, &found, &months, &templates),
        analysis_meta: analysis
            .as_ref()
            .map(|a| {
                lang.t_with(
                    "staff.analysis_meta",
                    &[
                        ("version", &a.version.to_string()),
                        ("author", &a.author_name),
                        ("at", &local_time(a.created_at)),
                    ],
                )
            })
            .unwrap_or_default(),
        analysis_old: analysis
            .as_ref()
            .filter(|a| a.version != latest)
            .map(|_| lang.t_with("staff.analysis_old", &[("latest", &latest.to_string())])),
        versions: versions
            .iter()
            .map(|v| VersionLink {
                label: version_label(lang, v.version),
                author: v.author_name.clone(),
                at: local_time(v.created_at),
                href: href(v.version),
                current: analysis.as_ref().is_some_and(|a| a.version == v.version),
            })
            .collect(),
        draft: shown
            .draft
            .unwrap_or_else(|| versions.first().map(|v| v.body.clone()).unwrap_or_default()),
        analysis,
        latest,
        may_write: monthly_reports::may_write(&signed.user),
        max_chars: MAX_ANALYSIS_CHARS,
        hint: lang.t_with(
            "staff.analysis_hint",
            &[("max", &MAX_ANALYSIS_CHARS.to_string())],
        ),
        saved: shown
            .saved
            .map(|v| lang.t_with("staff.analysis_saved", &[("version", &v.to_string())])),
        errors,
        dashboard_href: base.href(&format!("/staff?from={}&to={month}", query.from)),
        base,
    };
    Ok((status, page))
}

#[tracing::instrument(skip_all)]
pub async fn show(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    signed: SignedIn,
    Path(month): Path<String>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Response {
    let csrf = Csrf::from_headers(&headers);
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let shown = Shown {
        version: q.version,
        saved: q.saved,
        draft: None,
        error: None,
    };
    let response = render(&state, lang, &signed, csrf.token.clone(), &month, shown).await;
    csrf.set_cookie(response)
}

#[derive(Deserialize)]
pub struct AnalysisForm {
    csrf: Option<String>,
    #[serde(default)]
    base: i32,
    #[serde(default)]
    body: String,
}

impl super::CsrfForm for AnalysisForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[tracing::instrument(skip_all)]
pub async fn save(
    State(state): State<WebState>,
    lang: Lang,
    headers: HeaderMap,
    signed: SignedIn,
    Path(raw_month): Path<String>,
    form: Result<Form<AnalysisForm>, FormRejection>,
) -> Response {
    let form = match super::posted(&state, lang, &headers, form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let csrf = form.csrf.clone().unwrap_or_default();
    let base = || {
        signed.base(
            &state,
            lang,
            "staff.report_title",
            format!("/staff/reports/{raw_month}"),
            csrf.clone(),
            "reports",
        )
    };
    if let Err(e) = dashboard::view(&state.db, &signed.user, &state.commercial_process).await {
        return super::failure(&state, base(), e);
    }
    let month = match month_of(&raw_month) {
        Ok(month) => month,
        Err(e) => return super::failure(&state, base(), e),
    };
    match monthly_reports::save(&state.db, &signed.user, month, form.base, &form.body).await {
        Ok(saved) => {
            tracing::info!(month = %month, version = saved.version, "monthly report analysis saved");
            pages::private(
                Redirect::to(&format!(
                    "/staff/reports/{month}?lang={}&saved={}",
                    lang.code(),
                    saved.version
                ))
                .into_response(),
            )
        }
        Err(Error::Invalid { code, .. } | Error::Conflict { code, .. }) => {
            // What was written comes back in the form, unless it is far past any analysis.
            let draft = if form.body.len() <= 4 * MAX_ANALYSIS_CHARS + 16 {
                form.body
            } else {
                String::new()
            };
            let shown = Shown {
                version: None,
                saved: None,
                draft: Some(draft),
                error: Some(code),
            };
            render(&state, lang, &signed, csrf.clone(), &raw_month, shown).await
        }
        Err(e) => super::failure(&state, base(), e),
    }
}
