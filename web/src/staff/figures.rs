//! The indicators as the staff pages show them: a chart of each figure by month with its target,
//! and every table with how it was computed, its target and whether each month met it.

use std::collections::BTreeMap;

use atiende_core::indicators::{Cell, Comparison, Indicators, Month, Table};
use atiende_core::types::CaseType;

use super::charts::{self, Chart, Line, TargetLine, Unit};
use crate::lang::Lang;

/// A text of `web.staff.<key>`, or `fallback` when there is none.
fn text_or(lang: Lang, key: &str, fallback: &str) -> String {
    let t = lang.t(&format!("staff.{key}"));
    if t.starts_with("web.") {
        fallback.to_owned()
    } else {
        t
    }
}

/// The months from `from` to `to`, both counted, as `YYYY-MM`.
pub fn months(from: Month, to: Month) -> Vec<String> {
    std::iter::successors(Some(from), |m| (*m < to).then(|| m.next()))
        .map(|m| m.to_string())
        .collect()
}

fn target_line(lang: Lang, table: &Table) -> Option<TargetLine> {
    table.target.as_ref().map(|t| TargetLine {
        percent: t.percent,
        label: target_text(lang, t.percent, t.comparison),
    })
}

fn target_text(lang: Lang, percent: f64, comparison: Comparison) -> String {
    let sign = match comparison {
        Comparison::AtLeast => "≥",
        Comparison::AtMost => "≤",
    };
    format!(
        "{} {sign} {}",
        lang.t("staff.target"),
        Unit::Percent.format(lang, percent)
    )
}

fn find<'a>(ind: &'a Indicators, id: &str) -> Option<&'a Table> {
    ind.tables.iter().find(|t| t.id == id)
}

/// The name of a value in a table (a case type, a clock, a template...).
fn value_name(lang: Lang, templates: &BTreeMap<String, (String, String)>, value: &str) -> String {
    if let Ok(t) = value.parse::<CaseType>() {
        return atiende_core::texts::case_type(lang.code(), t);
    }
    if let Some((es, en)) = templates.get(value) {
        return if lang == Lang::En { en } else { es }.clone();
    }
    if value.is_empty() {
        return lang.t("staff.value.none");
    }
    text_or(lang, &format!("value.{value}"), value)
}

fn named(
    lang: Lang,
    templates: &BTreeMap<String, (String, String)>,
    lines: Vec<Line>,
) -> Vec<Line> {
    lines
        .into_iter()
        .map(|l| Line {
            name: value_name(lang, templates, &l.name),
            values: l.values,
        })
        .collect()
}

/// The charts of the indicators over `months`; `templates` names the survey templates.
pub fn charts(
    lang: Lang,
    ind: &Indicators,
    months: &[String],
    templates: &BTreeMap<String, (String, String)>,
) -> Vec<Chart> {
    let mut out = Vec::new();
    let mut add = |id: &str, lines: Vec<Line>, unit: Unit, target: Option<TargetLine>| {
        if lines.is_empty() {
            return;
        }
        out.push(charts::chart(lang, id, months, lines, unit, target));
    };
    let line = |name: String, values| Line { name, values };
    if let Some(t) = find(ind, "pqrs_by_type") {
        let lines = named(
            lang,
            templates,
            charts::by_key(t, "type", "cases", months, Some(0.0)),
        );
        add("pqrs_by_type", lines, Unit::Count, None);
    }
    if let Some(t) = find(ind, "legal_term_compliance") {
        let lines = vec![line(
            lang.t("staff.series.answered_on_time"),
            charts::by_month(t, "percent", months),
        )];
        add(
            "legal_term_compliance",
            lines,
            Unit::Percent,
            target_line(lang, t),
        );
    }
    if let Some(t) = find(ind, "sla_compliance") {
        let lines = named(
            lang,
            templates,
            charts::share_by_key(t, "clock", "met", "ended", months),
        );
        add("sla_compliance", lines, Unit::Percent, None);
    }
    if let Some(t) = find(ind, "response_times") {
        let lines = named(
            lang,
            templates,
            charts::by_key(t, "clock", "median_hours", months, None),
        );
        add("response_times", lines, Unit::Hours, None);
    }
    if let Some(t) = find(ind, "in_favour") {
        let lines = vec![line(
            lang.t("staff.series.of_customers"),
            charts::by_month(t, "percent_of_customers", months),
        )];
        add("in_favour", lines, Unit::Percent, target_line(lang, t));
    }
    if let Some(t) = find(ind, "pqrs_satisfaction") {
        let mut lines = vec![line(
            lang.t("staff.series.pqrs_ratings"),
            charts::by_month(t, "percent", months),
        )];
        if let Some(s) = find(ind, "survey_satisfaction") {
            lines.extend(named(
                lang,
                templates,
                charts::by_key(s, "template", "percent", months, None),
            ));
        }
        add("satisfaction", lines, Unit::Percent, target_line(lang, t));
    }
    if let Some(t) = find(ind, "survey_response_rate") {
        let lines = named(
            lang,
            templates,
            charts::by_key(t, "template", "percent", months, None),
        );
        add("survey_response_rate", lines, Unit::Percent, None);
    }
    if let Some(t) = find(ind, "quotes") {
        let lines = vec![
            line(
                lang.t("staff.series.quotes_sent"),
                charts::by_month(t, "sent", months),
            ),
            line(
                lang.t("staff.series.quotes_accepted"),
                charts::by_month(t, "accepted", months),
            ),
        ];
        add("quotes", lines, Unit::Count, None);
    }
    if let Some(t) = find(ind, "contract_retention") {
        let lines = vec![line(
            lang.t("staff.series.renewed"),
            charts::by_month(t, "percent", months),
        )];
        add("contract_retention", lines, Unit::Percent, None);
    }
    out
}

/// A table's cell as text, and whether it says a target was met.
pub struct CellView {
    pub text: String,
    /// `met`, `unmet` or empty.
    pub class: &'static str,
}

/// An indicator table as a page shows it.
pub struct TableView {
    pub id: &'static str,
    pub title: String,
    pub method: String,
    pub target: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<CellView>>,
}

/// Every table, with only the rows of `only` when given (the month of a report).
pub fn tables(
    lang: Lang,
    ind: &Indicators,
    only: Option<&str>,
    templates: &BTreeMap<String, (String, String)>,
) -> Vec<TableView> {
    ind.tables
        .iter()
        .map(|t| {
            let month = t.columns.iter().position(|c| *c == "month");
            let rows = t
                .rows
                .iter()
                .filter(|r| match (only, month.and_then(|i| r.get(i))) {
                    (Some(m), Some(Cell::Text(v))) => v == m,
                    _ => true,
                })
                .map(|r| {
                    r.iter()
                        .zip(&t.columns)
                        .map(|(c, column)| cell(lang, c, column, templates))
                        .collect()
                })
                .collect();
            TableView {
                id: t.id,
                title: text_or(lang, &format!("table.{}", t.id), t.id),
                method: text_or(lang, &format!("method.{}", t.id), t.method),
                target: t.target.as_ref().map(|g| {
                    format!(
                        "{} ({})",
                        target_text(lang, g.percent, g.comparison),
                        text_or(lang, &format!("source.{}", t.id), g.source)
                    )
                }),
                columns: t
                    .columns
                    .iter()
                    .map(|c| text_or(lang, &format!("column.{c}"), c))
                    .collect(),
                rows,
            }
        })
        .collect()
}

fn cell(
    lang: Lang,
    c: &Cell,
    column: &str,
    templates: &BTreeMap<String, (String, String)>,
) -> CellView {
    let plain = |text: String| CellView { text, class: "" };
    match c {
        Cell::Text(s) if column == "month" => plain(s.clone()),
        Cell::Text(s) if column == "process" => plain(if s.is_empty() {
            lang.t("staff.value.none")
        } else {
            s.clone()
        }),
        Cell::Text(s) => plain(value_name(lang, templates, s)),
        Cell::Count(n) => plain(n.to_string()),
        Cell::Number(x) if column.contains("percent") => plain(Unit::Percent.format(lang, *x)),
        Cell::Number(x) if column.ends_with("hours") => plain(Unit::Hours.format(lang, *x)),
        Cell::Number(x) => plain(charts::decimal(lang, *x)),
        Cell::Met(true) => CellView {
            text: lang.t("staff.met_yes"),
            class: "met",
        },
        Cell::Met(false) => CellView {
            text: lang.t("staff.met_no"),
            class: "unmet",
        },
        Cell::Empty => plain("—".to_owned()),
    }
}
