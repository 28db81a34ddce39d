//! The tables: each scenario's figures for both servers side by side, with their ratio and the
//! scenario's target.

use std::time::Duration;

use crate::run::Outcome;
use crate::scenarios::Scenario;

struct Row {
    label: String,
    ours: String,
    reference: String,
    ratio: String,
}

fn row(label: &str, ours: String, reference: String, ratio: Option<f64>) -> Row {
    Row {
        label: label.to_owned(),
        ours,
        reference,
        ratio: ratio
            .filter(|r| r.is_finite())
            .map_or_else(String::new, |r| format!("{r:.3}")),
    }
}

fn ratio(ours: f64, reference: f64) -> Option<f64> {
    (reference > 0.0).then(|| ours / reference)
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    let w = rows
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(10)
        .max(10);
    println!(
        "  {:<w$}  {:>16}  {:>16}  {:>9}",
        "", "atiende", "reference", "ratio"
    );
    for r in rows {
        println!(
            "  {:<w$}  {:>16}  {:>16}  {:>9}",
            r.label, r.ours, r.reference, r.ratio
        );
    }
}

/// The goal of each scenario, as the README's table of sync figures states it.
fn target(key: char) -> &'static str {
    match key {
        'a' => "atiende's server CPU at most 1/10 of the reference's (ratio <= 0.100)",
        'b' => {
            "the server is never the bottleneck (the reference saturated one core at ~1,400 changes/s)"
        }
        'c' => "p99 < 50 ms (reference: p99 about 220 ms)",
        'd' => "every change acknowledged, no connection dropped, memory bounded",
        _ => "< 100 MB with 100 devices (reference: about 220 MB)",
    }
}

fn pct(v: &[Duration], p: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    Some(v[i.min(v.len() - 1)])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1e3),
    )
}

fn msf(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn latency_rows(rows: &mut Vec<Row>, what: &str, o: &[Duration], r: &[Duration]) {
    for (name, p) in [("p50", 0.50), ("p99", 0.99), ("max", 1.0)] {
        rows.push(row(
            &format!("{what} {name}, ms"),
            ms(pct(o, p)),
            ms(pct(r, p)),
            ratio(msf(pct(o, p)), msf(pct(r, p))),
        ));
    }
}

fn offered_row(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    let offered = |x: &Outcome| x.sent as f64 / x.sending.as_secs_f64().max(1e-9);
    rows.push(row(
        "changes offered per second",
        format!("{:.0}", offered(o)),
        format!("{:.0}", offered(r)),
        None,
    ));
}

fn common_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    rows.push(row(
        "changes acknowledged / sent",
        format!("{} / {}", o.acked, o.sent),
        format!("{} / {}", r.acked, r.sent),
        None,
    ));
    if let Some(stored) = o.stored {
        rows.push(row(
            "changes stored (PostgreSQL)",
            stored.to_string(),
            "-".to_owned(),
            None,
        ));
    }
    if o.failed_setup + r.failed_setup > 0 {
        rows.push(row(
            "devices that never got ready",
            o.failed_setup.to_string(),
            r.failed_setup.to_string(),
            None,
        ));
    }
    rows.push(row(
        "connections dropped / devices",
        format!("{} / {}", o.dropped, o.devices),
        format!("{} / {}", r.dropped, r.devices),
        None,
    ));
}

fn cpu_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    let secs = o.window.as_secs_f64();
    let rsecs = r.window.as_secs_f64();
    rows.push(row(
        "server CPU, % of one core",
        format!("{:.0}", 100.0 * o.server_cpu / secs),
        format!("{:.0}", 100.0 * r.server_cpu / rsecs),
        ratio(o.server_cpu / secs, r.server_cpu / rsecs),
    ));
    if let Some(pg) = o.postgres_cpu {
        rows.push(row(
            "  PostgreSQL backends, % of one core",
            format!("{:.0}", 100.0 * pg / secs),
            "-".to_owned(),
            None,
        ));
    }
    rows.push(row(
        "driver (all devices) CPU, % of one core",
        format!("{:.0}", 100.0 * o.driver_cpu / secs),
        format!("{:.0}", 100.0 * r.driver_cpu / rsecs),
        None,
    ));
}

pub fn report(sc: &Scenario, o: &Outcome, r: &Outcome) {
    let mut rows = Vec::new();
    match sc.key {
        'a' => {
            let per = |x: &Outcome, cpu: f64| cpu * 1000.0 / x.acked.max(1) as f64;
            rows.push(row(
                "server CPU, s",
                format!("{:.3}", o.server_cpu),
                format!("{:.3}", r.server_cpu),
                ratio(o.server_cpu, r.server_cpu),
            ));
            rows.push(row(
                "server CPU per 1,000 changes, s",
                format!("{:.3}", per(o, o.server_cpu)),
                format!("{:.3}", per(r, r.server_cpu)),
                ratio(per(o, o.server_cpu), per(r, r.server_cpu)),
            ));
            if let Some(pg) = o.postgres_cpu {
                let both = o.server_cpu + pg;
                rows.push(row(
                    "  PostgreSQL backends CPU, s",
                    format!("{pg:.3}"),
                    "-".to_owned(),
                    None,
                ));
                rows.push(row(
                    "  server + PostgreSQL per 1,000 changes, s",
                    format!("{:.3}", per(o, both)),
                    format!("{:.3}", per(r, r.server_cpu)),
                    ratio(per(o, both), per(r, r.server_cpu)),
                ));
            }
            rows.push(row(
                "wall time, s",
                format!("{:.2}", o.busy.as_secs_f64()),
                format!("{:.2}", r.busy.as_secs_f64()),
                ratio(o.busy.as_secs_f64(), r.busy.as_secs_f64()),
            ));
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            rows.push(row(
                "driver CPU, s",
                format!("{:.3}", o.driver_cpu),
                format!("{:.3}", r.driver_cpu),
                None,
            ));
            common_rows(&mut rows, o, r);
        }
        'b' => {
            let rate = |x: &Outcome| x.acked as f64 / x.busy.as_secs_f64().max(1e-9);
            offered_row(&mut rows, o, r);
            rows.push(row(
                "changes acknowledged per second",
                format!("{:.0}", rate(o)),
                format!("{:.0}", rate(r)),
                ratio(rate(o), rate(r)),
            ));
            rows.push(row(
                "start to last acknowledgement, s",
                format!("{:.2}", o.busy.as_secs_f64()),
                format!("{:.2}", r.busy.as_secs_f64()),
                ratio(o.busy.as_secs_f64(), r.busy.as_secs_f64()),
            ));
            cpu_rows(&mut rows, o, r);
            rows.push(row(
                "server CPU per 1,000 changes, s",
                format!("{:.3}", o.server_cpu * 1000.0 / o.acked.max(1) as f64),
                format!("{:.3}", r.server_cpu * 1000.0 / r.acked.max(1) as f64),
                ratio(
                    o.server_cpu / o.acked.max(1) as f64,
                    r.server_cpu / r.acked.max(1) as f64,
                ),
            ));
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            common_rows(&mut rows, o, r);
        }
        'c' => {
            rows.push(row(
                "arrivals seen / expected",
                format!("{} / {}", o.arrivals.len(), o.expected_arrivals),
                format!("{} / {}", r.arrivals.len(), r.expected_arrivals),
                None,
            ));
            latency_rows(&mut rows, "change → other device", &o.arrivals, &r.arrivals);
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            cpu_rows(&mut rows, o, r);
            common_rows(&mut rows, o, r);
        }
        'd' => {
            offered_row(&mut rows, o, r);
            common_rows(&mut rows, o, r);
            let lost =
                |x: &Outcome| 100.0 * (x.sent - x.acked.min(x.sent)) as f64 / x.sent.max(1) as f64;
            rows.push(row(
                "acknowledgements missing, %",
                format!("{:.1}", lost(o)),
                format!("{:.1}", lost(r)),
                None,
            ));
            rows.push(row(
                "peak RSS, MB",
                mb(o.peak_kb),
                mb(r.peak_kb),
                ratio(o.peak_kb as f64, r.peak_kb as f64),
            ));
            rows.push(row(
                "start to last acknowledgement, s",
                format!("{:.2}", o.busy.as_secs_f64()),
                format!("{:.2}", r.busy.as_secs_f64()),
                None,
            ));
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            cpu_rows(&mut rows, o, r);
        }
        _ => {
            rows.push(row(
                "RSS before any connection, MB",
                mb(o.rss_idle_kb),
                mb(r.rss_idle_kb),
                ratio(o.rss_idle_kb as f64, r.rss_idle_kb as f64),
            ));
            rows.push(row(
                &format!("RSS with {} devices connected, MB", o.devices),
                mb(o.rss_kb),
                mb(r.rss_kb),
                ratio(o.rss_kb as f64, r.rss_kb as f64),
            ));
            rows.push(row(
                "peak RSS, MB",
                mb(o.peak_kb),
                mb(r.peak_kb),
                ratio(o.peak_kb as f64, r.peak_kb as f64),
            ));
            common_rows(&mut rows, o, r);
        }
    }
    print_table(&sc.title, &rows);
    println!("  target: {}", target(sc.key));
    for (side, x) in [("atiende", o), ("reference", r)] {
        for (why, count) in &x.drop_reasons {
            println!("  {side}: {count} × {why}");
        }
    }
}
