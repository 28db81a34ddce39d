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
        'a' => {
            "server + PostgreSQL at most 1/5 of the reference's CPU (ratio <= 0.200), the server \
             alone at most 1/10 (ratio <= 0.100)"
        }
        'b' => {
            "the server is never the bottleneck (the reference saturated one core at ~1,400 changes/s)"
        }
        'c' => "p99 < 50 ms (reference: p99 about 220 ms)",
        'd' => "every change acknowledged, no connection dropped, memory bounded",
        'e' => "< 100 MB with 100 devices, server + PostgreSQL (reference: about 220 MB)",
        _ => {
            "memory < 500 MB (server + PostgreSQL), change → other device p99 < 50 ms, no \
             connection dropped"
        }
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Whether Atiende's figures meet the scenario's target, where it is a number.
fn verdict(key: char, o: &Outcome, r: &Outcome) -> Option<String> {
    let pg = o.postgres_cpu.unwrap_or(0.0);
    let p99 = |x: &[Duration]| msf(pct(x, 0.99));
    match key {
        'a' => {
            let alone = ratio(
                o.server_cpu / o.acked.max(1) as f64,
                r.server_cpu / r.acked.max(1) as f64,
            )?;
            let both = ratio(
                (o.server_cpu + pg) / o.acked.max(1) as f64,
                r.server_cpu / r.acked.max(1) as f64,
            )?;
            Some(format!(
                "server + PostgreSQL {both:.3} of the reference's CPU per change (<= 0.200): {}; \
                 server alone {alone:.3} (<= 0.100): {}",
                met(both <= 0.2),
                met(alone <= 0.1)
            ))
        }
        'c' => Some(format!(
            "change → other device p99 {:.1} ms (< 50): {}",
            p99(&o.arrivals),
            met(p99(&o.arrivals) < 50.0)
        )),
        'e' => {
            let both = o.rss_kb + o.postgres_kb.unwrap_or(0);
            Some(format!(
                "server + PostgreSQL {} MB (< 100): {}",
                mb(both),
                met(both < 100 * 1024)
            ))
        }
        'f' => {
            let both = o.peak_with_postgres_kb.max(o.peak_kb);
            Some(format!(
                "peak server + PostgreSQL {} MB (< 500): {}; change → other device p99 {:.1} ms \
                 (< 50): {}; {} connections dropped (0): {}",
                mb(both),
                met(both < 500 * 1024),
                p99(&o.arrivals),
                met(p99(&o.arrivals) < 50.0),
                o.dropped,
                met(o.dropped == 0 && o.failed_setup == 0)
            ))
        }
        _ => None,
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
    if let Some((projected, refused)) = o.projected {
        rows.push(row(
            "field reports projected / refused",
            format!("{projected} / {refused}"),
            "-".to_owned(),
            None,
        ));
    }
    if o.projections_left > 0 {
        rows.push(row(
            "field reports still to project after 60 s",
            o.projections_left.to_string(),
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
    let pg = o.postgres_cpu.unwrap_or(0.0);
    let theirs = r.server_cpu / rsecs;
    rows.push(row(
        "server + PostgreSQL CPU, % of one core",
        format!("{:.0}", 100.0 * (o.server_cpu + pg) / secs),
        format!("{:.0}", 100.0 * theirs),
        ratio((o.server_cpu + pg) / secs, theirs),
    ));
    rows.push(row(
        "  server alone, % of one core",
        format!("{:.0}", 100.0 * o.server_cpu / secs),
        format!("{:.0}", 100.0 * theirs),
        ratio(o.server_cpu / secs, theirs),
    ));
    rows.push(row(
        "  PostgreSQL backends, % of one core",
        format!("{:.0}", 100.0 * pg / secs),
        "-".to_owned(),
        None,
    ));
    rows.push(row(
        "driver (all devices) CPU, % of one core",
        format!("{:.0}", 100.0 * o.driver_cpu / secs),
        format!("{:.0}", 100.0 * r.driver_cpu / rsecs),
        None,
    ));
}

/// CPU seconds per 1,000 acknowledged changes: server + PostgreSQL first, then the server alone.
fn cpu_per_change_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    let per = |x: &Outcome, cpu: f64| cpu * 1000.0 / x.acked.max(1) as f64;
    let pg = o.postgres_cpu.unwrap_or(0.0);
    let theirs = per(r, r.server_cpu);
    rows.push(row(
        "server + PostgreSQL CPU per 1,000 changes, s",
        format!("{:.3}", per(o, o.server_cpu + pg)),
        format!("{theirs:.3}"),
        ratio(per(o, o.server_cpu + pg), theirs),
    ));
    rows.push(row(
        "  server alone per 1,000 changes, s",
        format!("{:.3}", per(o, o.server_cpu)),
        format!("{theirs:.3}"),
        ratio(per(o, o.server_cpu), theirs),
    ));
    rows.push(row(
        "  PostgreSQL backends per 1,000 changes, s",
        format!("{:.3}", per(o, pg)),
        "-".to_owned(),
        None,
    ));
}

/// Memory at one moment: the server's RSS plus the PostgreSQL backends' `Pss` first, then the
/// server alone and the backends alone; the reference is one process (its RSS).
fn memory_rows(rows: &mut Vec<Row>, label: &str, server_kb: u64, pg_kb: Option<u64>, r_kb: u64) {
    let pg = pg_kb.unwrap_or(0);
    rows.push(row(
        &format!("{label}: server + PostgreSQL, MB"),
        mb(server_kb + pg),
        mb(r_kb),
        ratio((server_kb + pg) as f64, r_kb as f64),
    ));
    rows.push(row(
        "  server alone (RSS), MB",
        mb(server_kb),
        mb(r_kb),
        ratio(server_kb as f64, r_kb as f64),
    ));
    rows.push(row(
        "  PostgreSQL backends (Pss), MB",
        mb(pg),
        "-".to_owned(),
        None,
    ));
}

/// Memory with every device connected once the load is over, and the peak.
fn connected_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    let label = format!("with {} devices connected", o.devices);
    memory_rows(rows, &label, o.rss_kb, o.postgres_kb, r.rss_kb);
    peak_rows(rows, o, r);
}

fn arrival_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    rows.push(row(
        "arrivals seen / expected",
        format!("{} / {}", o.arrivals.len(), o.expected_arrivals),
        format!("{} / {}", r.arrivals.len(), r.expected_arrivals),
        None,
    ));
    latency_rows(rows, "change → other device", &o.arrivals, &r.arrivals);
}

/// The peak: sampled server RSS plus backends' `Pss` against the reference's own high-water mark
/// (`VmHWM`, which sampling cannot miss), then the server's high-water mark alone.
fn peak_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    let with_pg = o.peak_with_postgres_kb.max(o.peak_kb);
    rows.push(row(
        "peak: server + PostgreSQL, MB",
        mb(with_pg),
        mb(r.peak_kb),
        ratio(with_pg as f64, r.peak_kb as f64),
    ));
    rows.push(row(
        "  server alone (peak RSS), MB",
        mb(o.peak_kb),
        mb(r.peak_kb),
        ratio(o.peak_kb as f64, r.peak_kb as f64),
    ));
}

pub fn report(sc: &Scenario, o: &Outcome, r: &Outcome) {
    let mut rows = Vec::new();
    match sc.key {
        'a' => {
            cpu_per_change_rows(&mut rows, o, r);
            rows.push(row(
                "server + PostgreSQL CPU, s",
                format!("{:.3}", o.server_cpu + o.postgres_cpu.unwrap_or(0.0)),
                format!("{:.3}", r.server_cpu),
                ratio(o.server_cpu + o.postgres_cpu.unwrap_or(0.0), r.server_cpu),
            ));
            rows.push(row(
                "  server alone, s",
                format!("{:.3}", o.server_cpu),
                format!("{:.3}", r.server_cpu),
                ratio(o.server_cpu, r.server_cpu),
            ));
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
            cpu_per_change_rows(&mut rows, o, r);
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            common_rows(&mut rows, o, r);
        }
        'c' => {
            arrival_rows(&mut rows, o, r);
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
            peak_rows(&mut rows, o, r);
            rows.push(row(
                "start to last acknowledgement, s",
                format!("{:.2}", o.busy.as_secs_f64()),
                format!("{:.2}", r.busy.as_secs_f64()),
                None,
            ));
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            cpu_rows(&mut rows, o, r);
        }
        'e' => {
            memory_rows(
                &mut rows,
                "before any connection",
                o.rss_idle_kb,
                o.postgres_idle_kb,
                r.rss_idle_kb,
            );
            connected_rows(&mut rows, o, r);
            common_rows(&mut rows, o, r);
        }
        _ => {
            rows.push(row(
                "connecting and opening every document, s",
                format!("{:.1}", o.setup.as_secs_f64()),
                format!("{:.1}", r.setup.as_secs_f64()),
                ratio(o.setup.as_secs_f64(), r.setup.as_secs_f64()),
            ));
            connected_rows(&mut rows, o, r);
            arrival_rows(&mut rows, o, r);
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            cpu_rows(&mut rows, o, r);
            common_rows(&mut rows, o, r);
        }
    }
    if r.failure.is_some() {
        // Its figures are those of a run that never started.
        for row in &mut rows {
            row.reference = "-".to_owned();
            row.ratio.clear();
        }
    }
    print_table(&sc.title, &rows);
    println!("  target: {}", target(sc.key));
    if let Some(verdict) = verdict(sc.key, o, r) {
        println!("  {verdict}");
    }
    for (side, x) in [("atiende", o), ("reference", r)] {
        if let Some(why) = &x.failure {
            println!("  {side}: {why}");
        }
        for (why, count) in &x.drop_reasons {
            println!("  {side}: {count} × {why}");
        }
    }
}
