//! Line charts of the indicators by month, drawn on the server as SVG (plotters) so that the pages
//! need no JavaScript and print as they show. Each chart carries its target as a dashed line
//! (`class="target"`); its legend and its figures are HTML beside it, readable by everyone.

use atiende_core::indicators::{Cell, Table};
use plotters::prelude::*;

use crate::lang::Lang;

const WIDTH: u32 = 560;
const HEIGHT: u32 = 300;
/// The series' colours: dark enough on white for text-level contrast, apart from one another.
pub const PALETTE: [&str; 6] = [
    "#0B5CAD", "#9A4A00", "#1E6B34", "#6A3D9A", "#00707A", "#4A4F55",
];
const TARGET: RGBColor = RGBColor(0xB3, 0x26, 0x1E);
/// How plotters writes the target's colour, which marks its line for the page.
const TARGET_STROKE: &str = "stroke=\"#B3261E\"";

fn rgb(hex: &str) -> RGBColor {
    let c = |i: usize| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    RGBColor(c(1), c(3), c(5))
}

/// What the values of a chart measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Percent,
    Hours,
    Count,
}

impl Unit {
    pub fn format(self, lang: Lang, v: f64) -> String {
        match self {
            Unit::Percent => format!("{} %", decimal(lang, v)),
            Unit::Hours => format!("{} h", decimal(lang, v)),
            Unit::Count => format!("{v:.0}"),
        }
    }
}

/// A number with at most two decimals and no trailing zeros; a decimal comma in Spanish.
pub fn decimal(lang: Lang, v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    match lang {
        Lang::Es => s.replace('.', ","),
        Lang::En => s.to_owned(),
    }
}

/// One line of a chart: its name and a value (or nothing to measure) for each month.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A chart as a page shows it: the SVG, its legend, and its figures as a table.
pub struct Chart {
    pub id: String,
    pub title: String,
    pub note: String,
    pub svg: String,
    /// (colour, name) of each line, then the target's when there is one.
    pub legend: Vec<(String, String)>,
    pub target: Option<String>,
    /// The lines' names, and each month with their values written out.
    pub names: Vec<String>,
    pub rows: Vec<(String, Vec<String>)>,
}

/// The target as the chart draws it: its value, and its label (which says floor or ceiling).
pub struct TargetLine {
    pub percent: f64,
    pub label: String,
}

/// The chart `id`, titled and explained by the texts `web.staff.chart.<id>` and
/// `web.staff.chart_note.<id>`.
pub fn chart(
    lang: Lang,
    id: &str,
    months: &[String],
    lines: Vec<Line>,
    unit: Unit,
    target: Option<TargetLine>,
) -> Chart {
    let title = lang.t(&format!("staff.chart.{id}"));
    let note = lang.t(&format!("staff.chart_note.{id}"));
    let svg = draw(lang, id, &title, months, &lines, unit, target.as_ref()).unwrap_or_else(|e| {
        tracing::error!(error = %e, chart = id, "drawing a chart");
        String::new()
    });
    Chart {
        id: id.to_owned(),
        title,
        note,
        svg,
        legend: lines
            .iter()
            .zip(PALETTE.iter().cycle())
            .map(|(l, c)| ((*c).to_owned(), l.name.clone()))
            .collect(),
        target: target.map(|t| t.label),
        names: lines.iter().map(|l| l.name.clone()).collect(),
        rows: months
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let cells = lines
                    .iter()
                    .map(|l| match l.values.get(i).copied().flatten() {
                        Some(v) => unit.format(lang, v),
                        None => "—".to_owned(),
                    })
                    .collect();
                (m.clone(), cells)
            })
            .collect(),
    }
}

/// `2026-03` as `03/26`, short enough for an axis.
fn short_month(month: &str) -> String {
    match month.split_once('-') {
        Some((y, m)) => format!("{m}/{}", y.get(2..).unwrap_or(y)),
        None => month.to_owned(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn draw(
    lang: Lang,
    id: &str,
    title: &str,
    months: &[String],
    lines: &[Line],
    unit: Unit,
    target: Option<&TargetLine>,
) -> Result<String, Box<dyn std::error::Error>> {
    let n = months.len().max(1);
    let highest = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .copied()
        .chain(target.map(|t| t.percent))
        .fold(0.0f64, f64::max);
    let top = match unit {
        // Percentages show on their whole scale, unless every figure is small (a ceiling such
        // as 0.5 % would be lost on it).
        Unit::Percent if highest > 10.0 => 105.0,
        _ if highest <= 0.0 => 1.0,
        _ => highest * 1.2,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_range = -0.5f64..(n as f64 - 0.5);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(54)
            .build_cartesian_2d(x_range, 0f64..top)?;
        let month_label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            months
                .get(i as usize)
                .map(|m| short_month(m))
                .unwrap_or_default()
        };
        // An axis of counts may have ticks between whole numbers: they keep their decimals.
        let value_label = |y: &f64| match unit {
            Unit::Count => decimal(lang, *y),
            _ => unit.format(lang, *y),
        };
        chart
            .configure_mesh()
            .x_labels(n.min(6))
            .y_labels(6)
            .x_label_formatter(&month_label)
            .y_label_formatter(&value_label)
            .label_style(("sans-serif", 15, &RGBColor(0x1B, 0x1F, 0x24)))
            .axis_style(RGBColor(0x55, 0x5D, 0x66))
            .bold_line_style(RGBColor(0xDD, 0xE1, 0xE5))
            .light_line_style(TRANSPARENT)
            .disable_x_mesh()
            .draw()?;
        if let Some(t) = target {
            chart.draw_series(LineSeries::new(
                [(-0.5, t.percent), (n as f64 - 0.5, t.percent)],
                TARGET.stroke_width(2),
            ))?;
        }
        for (line, colour) in lines.iter().zip(PALETTE.iter().cycle()) {
            let colour = rgb(colour);
            let points: Vec<(f64, f64)> = line
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
                .collect();
            // A month with nothing to measure breaks the line.
            let mut run: Vec<(f64, f64)> = Vec::new();
            for (i, v) in line.values.iter().enumerate() {
                match v {
                    Some(v) => run.push((i as f64, *v)),
                    None => {
                        if run.len() > 1 {
                            chart.draw_series(LineSeries::new(
                                run.clone(),
                                colour.stroke_width(3),
                            ))?;
                        }
                        run.clear();
                    }
                }
            }
            if run.len() > 1 {
                chart.draw_series(LineSeries::new(run, colour.stroke_width(3)))?;
            }
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour.filled())),
            )?;
        }
        root.present()?;
    }
    let title_id = format!("{id}-title");
    let opened = svg.find(">\n").map_or(0, |i| i + 2);
    let mut out = String::with_capacity(svg.len() + 200);
    out.push_str(&svg[..opened]);
    out.push_str(&format!(
        "<title id=\"{title_id}\">{}</title>\n",
        escape(title)
    ));
    out.push_str(&svg[opened..]);
    Ok(out
        .replacen(
            "<svg ",
            &format!("<svg class=\"chart\" role=\"img\" aria-labelledby=\"{title_id}\" "),
            1,
        )
        .replace(
            TARGET_STROKE,
            &format!("class=\"target\" {TARGET_STROKE} stroke-dasharray=\"8 5\""),
        ))
}

/// A table's column, by name.
fn column(table: &Table, name: &str) -> Option<usize> {
    table.columns.iter().position(|c| *c == name)
}

fn number(cell: Option<&Cell>) -> Option<f64> {
    match cell? {
        Cell::Count(n) => Some(*n as f64),
        Cell::Number(x) => Some(*x),
        _ => None,
    }
}

fn text(cell: Option<&Cell>) -> String {
    match cell {
        Some(Cell::Text(s)) => s.clone(),
        _ => String::new(),
    }
}

/// The table's `value` column by month (one row per month).
pub fn by_month(table: &Table, value: &str, months: &[String]) -> Vec<Option<f64>> {
    let (Some(m), Some(v)) = (column(table, "month"), column(table, value)) else {
        return vec![None; months.len()];
    };
    months
        .iter()
        .map(|month| {
            table
                .rows
                .iter()
                .find(|r| text(r.get(m)) == *month)
                .and_then(|r| number(r.get(v)))
        })
        .collect()
}

/// The table's `value` column summed by month and `key` (rows by month and key): each key a
/// line, in the order the keys first appear; a month without rows counts `missing`.
pub fn by_key(
    table: &Table,
    key: &str,
    value: &str,
    months: &[String],
    missing: Option<f64>,
) -> Vec<Line> {
    let (Some(m), Some(k), Some(v)) = (
        column(table, "month"),
        column(table, key),
        column(table, value),
    ) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = Vec::new();
    for r in &table.rows {
        let name = text(r.get(k));
        if !keys.contains(&name) {
            keys.push(name);
        }
    }
    keys.into_iter()
        .map(|name| Line {
            values: months
                .iter()
                .map(|month| {
                    let found: Vec<f64> = table
                        .rows
                        .iter()
                        .filter(|r| text(r.get(m)) == *month && text(r.get(k)) == name)
                        .filter_map(|r| number(r.get(v)))
                        .collect();
                    if found.is_empty() {
                        missing
                    } else {
                        Some(found.iter().sum())
                    }
                })
                .collect(),
            name,
        })
        .collect()
}

/// The share `part` over `whole`, summed by month and `key` over the rows (as the SLA compliance
/// of every priority together, by clock).
pub fn share_by_key(
    table: &Table,
    key: &str,
    part: &str,
    whole: &str,
    months: &[String],
) -> Vec<Line> {
    let parts = by_key(table, key, part, months, None);
    let wholes = by_key(table, key, whole, months, None);
    parts
        .into_iter()
        .zip(wholes)
        .map(|(p, w)| Line {
            name: p.name,
            values: p
                .values
                .iter()
                .zip(&w.values)
                .map(|(p, w)| match (p, w) {
                    (Some(p), Some(w)) if *w > 0.0 => Some(p * 100.0 / w),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_line_is_marked_and_dashed() {
        let months = vec!["2026-01".to_owned(), "2026-02".to_owned()];
        let c = chart(
            Lang::Es,
            "satisfaction",
            &months,
            vec![Line {
                name: "PQRS".into(),
                values: vec![Some(50.5), Some(90.0)],
            }],
            Unit::Percent,
            Some(TargetLine {
                percent: 80.0,
                label: "Meta".into(),
            }),
        );
        assert!(
            c.svg.starts_with("<svg class=\"chart\" role=\"img\""),
            "{}",
            c.svg
        );
        assert!(
            c.svg
                .contains("<title id=\"satisfaction-title\">Satisfacción del cliente</title>")
        );
        assert_eq!(c.svg.matches("class=\"target\"").count(), 1, "{}", c.svg);
        assert!(c.svg.contains("stroke-dasharray"));
        assert_eq!(c.rows[0], ("2026-01".to_owned(), vec!["50,5 %".to_owned()]));
        assert_eq!(c.rows[1], ("2026-02".to_owned(), vec!["90 %".to_owned()]));
    }
}
