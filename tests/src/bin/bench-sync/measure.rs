//! CPU time and memory of processes, read from `/proc`: the server under test, the PostgreSQL
//! backends serving it, and this driver.

use std::collections::HashMap;

use sqlx::PgPool;

/// Marks the driver's own database sessions, which are left out of PostgreSQL's CPU figures.
pub const DRIVER_APP: &str = "bench-sync-driver";

/// Clock ticks per second, the unit of CPU times in `/proc`.
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU time of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: &str, hz: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces; the fields after it do not.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / hz
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| kb_field(&s, key))
        .unwrap_or(0)
}

/// Every PostgreSQL backend serving the scratch database but ours.
async fn backends(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "select pid from pg_stat_activity where datname = current_database() \
         and coalesce(application_name, '') <> $1",
    )
    .bind(DRIVER_APP)
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

/// CPU seconds of every PostgreSQL backend serving the scratch database but ours.
pub async fn backend_cpu(pool: &PgPool, hz: f64) -> HashMap<i32, f64> {
    backends(pool)
        .await
        .into_iter()
        .map(|pid| (pid, cpu_seconds(&pid.to_string(), hz)))
        .collect()
}

/// Memory of the PostgreSQL backends serving the scratch database but ours, in kB: the sum of
/// their proportional set sizes (`Pss` in `/proc/<pid>/smaps_rollup`). Each backend's RSS counts
/// every page of shared buffers it has touched, so RSS summed over backends counts the shared
/// memory once per backend; `Pss` charges a shared page to each process mapping it in equal
/// parts, so the sum counts each page once among them (their fair part of `shared_buffers`).
pub async fn backend_pss_kb(pool: &PgPool) -> u64 {
    backends(pool)
        .await
        .into_iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                .ok()
                .and_then(|s| kb_field(&s, "Pss"))
                .unwrap_or(0)
        })
        .sum()
}

/// `key:   1234 kB` in a `/proc` file.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn cpu_delta(before: &HashMap<i32, f64>, after: &HashMap<i32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, t)| t - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}
