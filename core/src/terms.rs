//! The terms every clock is computed from: the business calendar with its overrides, the working
//! hours, the warning percentages and the legal term of each case type. Filing and every move
//! read them; they change a few times a year. So each process keeps one copy per database and
//! drops it when the database says they changed.
//!
//! Triggers on the four tables announce every change (`NOTIFY atiende_terms`, see the migration
//! `terms_notify`), whoever makes it: the admin command, the API, or psql. [`listen`] hears them.
//! The copy is kept only while a listener for that database is connected: a process that runs no
//! listener (a one-off command), or whose listener lost PostgreSQL, reads the terms on every call,
//! so a stale copy lives at most as long as a notification takes to arrive.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::calendar::BusinessCalendar;
use crate::clocks::WorkingHours;
use crate::error::{Error, Result};
use crate::holidays;
use crate::types::CaseType;
use crate::worker::Ended;

/// The channel the triggers notify.
pub const CHANNEL: &str = "atiende_terms";

/// The terms as stored when they were read.
#[derive(Debug)]
pub struct Terms {
    pub schedule: Schedule,
    legal_days: HashMap<CaseType, u32>,
}

impl Terms {
    /// The legal answer term of a case type, in business days.
    pub fn legal_term_days(&self, case_type: CaseType) -> Result<u32> {
        self.legal_days
            .get(&case_type)
            .copied()
            .ok_or_else(|| Error::Internal(format!("no legal term configured for {case_type}")))
    }
}

/// The calendar and the working hours, as configured in the database.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub calendar: BusinessCalendar,
    pub hours: WorkingHours,
    /// Percentages of each term at which people are warned (the breach, 100, always alerts).
    pub warning_percents: Vec<i16>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            calendar: BusinessCalendar::default(),
            hours: WorkingHours::default(),
            warning_percents: vec![50, 75, 90],
        }
    }
}

pub async fn load_schedule(conn: &mut PgConnection) -> Result<Schedule> {
    let calendar = holidays::load_calendar(&mut *conn).await?;
    let spec = sqlx::query_scalar!("select spec from working_hours")
        .fetch_optional(&mut *conn)
        .await?;
    let hours = match spec {
        Some(spec) => WorkingHours::parse(&spec)
            .map_err(|e| Error::Internal(format!("stored working hours {spec:?}: {e}")))?,
        None => WorkingHours::default(),
    };
    let warning_percents = sqlx::query_scalar!("select warning_percents from deadline_settings")
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or_else(|| vec![50, 75, 90]);
    Ok(Schedule {
        calendar,
        hours,
        warning_percents,
    })
}

/// Sets the warning percentages every atiende process uses (each between 1 and 99).
pub async fn set_warning_percents(db: impl PgExecutor<'_>, percents: &[i16]) -> Result<()> {
    if percents.iter().any(|p| !(1..=99).contains(p)) {
        return Err(Error::invalid(
            "invalid_warning_percents",
            "each warning is a percentage from 1 to 99",
        ));
    }
    sqlx::query!(
        "insert into deadline_settings (id, warning_percents) values (true, $1)
         on conflict (id) do update set warning_percents = excluded.warning_percents",
        percents
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces the working hours every atiende process uses, e.g. `mon-fri 08:00-17:00 -05:00`.
pub async fn set_working_hours(db: impl PgExecutor<'_>, spec: &str) -> Result<WorkingHours> {
    let hours =
        WorkingHours::parse(spec).map_err(|e| Error::invalid("invalid_working_hours", e))?;
    sqlx::query!(
        "insert into working_hours (id, spec) values (true, $1)
         on conflict (id) do update set spec = excluded.spec",
        hours.to_string()
    )
    .execute(db)
    .await?;
    Ok(hours)
}

/// Reads the terms from the database, bypassing any copy.
pub async fn load(pool: &PgPool) -> Result<Terms> {
    let mut conn = pool.acquire().await?;
    let schedule = load_schedule(&mut conn).await?;
    let rows = sqlx::query!("select case_type, business_days from legal_terms")
        .fetch_all(&mut *conn)
        .await?;
    let mut legal_days = HashMap::new();
    for row in rows {
        let case_type: CaseType = row.case_type.parse().map_err(|_| {
            Error::Internal(format!(
                "unknown case type {:?} in legal_terms",
                row.case_type
            ))
        })?;
        let days = u32::try_from(row.business_days)
            .map_err(|_| Error::Internal(format!("negative legal term for {case_type}")))?;
        legal_days.insert(case_type, days);
    }
    Ok(Terms {
        schedule,
        legal_days,
    })
}

/// The terms of `pool`'s database: the process's copy while it is kept, else read now.
pub async fn current(pool: &PgPool) -> Result<Arc<Terms>> {
    let cache = cache_for(pool);
    let generation = {
        let state = cache.lock();
        if let Some(terms) = &state.terms {
            return Ok(terms.clone());
        }
        (state.listeners > 0).then_some(state.generation)
    };
    let terms = Arc::new(load(pool).await?);
    if let Some(generation) = generation {
        let mut state = cache.lock();
        // A change heard while reading makes what was read possibly old: not kept.
        if state.listeners > 0 && state.generation == generation {
            state.terms = Some(terms.clone());
        }
    }
    cache.lock().loads += 1;
    Ok(terms)
}

/// Whether a listener for `pool`'s database is connected in this process, so the terms are kept.
pub fn kept(pool: &PgPool) -> bool {
    cache_for(pool).lock().listeners > 0
}

/// How many times this process has read the terms of `pool`'s database (tests watch it).
pub fn loads(pool: &PgPool) -> u64 {
    cache_for(pool).lock().loads
}

/// Listens for changes to the terms of `pool`'s database until `stop` completes, dropping the
/// process's copy at each, and keeping one only while connected. Reconnects after a failure.
pub async fn listen(pool: PgPool, stop: impl Future<Output = ()>) {
    crate::worker::session(
        "terms listener",
        (Duration::from_millis(100), Duration::from_secs(5)),
        stop,
        || listen_once(&pool),
    )
    .await;
}

/// One listening connection: returns when it fails, or when the pool is closed.
async fn listen_once(pool: &PgPool) -> Result<Ended> {
    match hear_changes(pool).await {
        sqlx::Error::PoolClosed => Ok(Ended::Finished("the database pool was closed")),
        e => Err(e.into()),
    }
}

/// Drops the copy at each change heard, until the connection fails; returns why it did.
async fn hear_changes(pool: &PgPool) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(CHANNEL).await {
        return e;
    }
    // Changes made while nobody listened were not heard: start from the database.
    let listening = Listening::start(cache_for(pool));
    loop {
        // `Ok(None)` means sqlx reconnected on its own, and what was said meanwhile is lost:
        // either way the copy goes.
        if let Err(e) = listener.try_recv().await {
            return e;
        }
        listening.cache.changed();
    }
}

/// A connected listener's hold on a cache; the copy is dropped and no longer kept when it goes.
struct Listening {
    cache: Arc<Cache>,
}

impl Listening {
    fn start(cache: Arc<Cache>) -> Listening {
        {
            let mut state = cache.lock();
            state.listeners += 1;
            state.forget();
        }
        Listening { cache }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        state.listeners = state.listeners.saturating_sub(1);
        state.forget();
    }
}

#[derive(Default)]
struct Cache(Mutex<State>);

#[derive(Default)]
struct State {
    terms: Option<Arc<Terms>>,
    /// Bumped at every change heard, so a read that overlapped one is not kept.
    generation: u64,
    listeners: u32,
    loads: u64,
}

impl State {
    fn forget(&mut self) {
        self.terms = None;
        self.generation += 1;
    }
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.lock().forget();
    }
}

/// One cache per database a process talks to (tests run many databases in one process).
fn cache_for(pool: &PgPool) -> Arc<Cache> {
    static CACHES: LazyLock<Mutex<HashMap<String, Arc<Cache>>>> = LazyLock::new(Default::default);
    let options = pool.connect_options();
    let key = format!(
        "{}|{}|{:?}|{}",
        options.get_host(),
        options.get_port(),
        options.get_socket(),
        options.get_database().unwrap_or_default()
    );
    CACHES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_default()
        .clone()
}
