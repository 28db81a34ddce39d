//! Operational SLA clocks in business hours (SGC-SAC-001 §5).
//!
//! Each case has a first-response clock and a resolution clock whose targets depend on the
//! priority and count only working time: by default Monday–Friday 08:00–17:00 in America/Bogota
//! (UTC−05:00 all year, no DST), skipping the holidays of the [`BusinessCalendar`]. A clock pauses
//! while the case waits on the customer, so its due time moves by exactly the paused business time.
//! The state of a clock is always derived from its stored [`ClockEvent`]s, never from a mutable
//! due date.
//!
//! Conventions used throughout:
//! - Working time of a day is the half-open interval `[start, end)` local time: at exactly `end`
//!   the office is closed, but business time that runs out exactly at `end` is due at `end`
//!   (Monday 08:00 plus 9 h is Monday 17:00, not Tuesday 08:00).
//! - Business time is only counted from 0001-01-01 to 9999-12-31 23:59:59 UTC: instants outside
//!   that range count as its ends, and [`WorkingHours::add`] saturates at 9999-12-31 23:59:59 UTC
//!   (or returns `from` if `from` is already later). This bounds the work done for absurd inputs.
//! - Leap-second instants count as the last nanosecond of their second.

use std::fmt;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc,
    Weekday,
};

use crate::calendar::{BusinessCalendar, COLOMBIA};
use crate::types::Priority;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const DAY_NANOS: u64 = 86_400 * NANOS_PER_SEC;
/// Last year in which business time is counted (see the module docs).
const LAST_YEAR: i32 = 9999;
/// Spans of at most this many days are counted day by day (cheap bit lookups); longer spans by
/// weekday arithmetic minus the holidays of each year, so the cost is per year, not per day.
const SHORT_SPAN_DAYS: u64 = 62;

// Built in const context so that a mistake here fails compilation instead of panicking at runtime.
const OPENING: NaiveTime = match NaiveTime::from_hms_opt(8, 0, 0) {
    Some(t) => t,
    None => panic!("08:00 is a valid time"),
};
const CLOSING: NaiveTime = match NaiveTime::from_hms_opt(17, 0, 0) {
    Some(t) => t,
    None => panic!("17:00 is a valid time"),
};
const ALL_DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// When staff work. Default: Monday–Friday 08:00–17:00 at UTC−05:00 (America/Bogota).
///
/// The fields are public for reading; build values with [`WorkingHours::new`] or
/// [`WorkingHours::parse`], which validate. Hand-built invalid values never panic: duplicate days
/// count once, and no day or `start >= end` means there is no business time at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    pub offset: FixedOffset,
    pub days: Vec<Weekday>,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Default for WorkingHours {
    fn default() -> Self {
        Self {
            offset: COLOMBIA,
            days: ALL_DAYS[..5].to_vec(),
            start: OPENING,
            end: CLOSING,
        }
    }
}

impl WorkingHours {
    /// Validates (start < end, at least one day, no duplicate days, no leap-second times); clear
    /// error text.
    /// The days are stored sorted Monday first, so equal schedules compare equal.
    pub fn new(
        offset: FixedOffset,
        mut days: Vec<Weekday>,
        start: NaiveTime,
        end: NaiveTime,
    ) -> Result<Self, String> {
        if days.is_empty() {
            return Err("working hours need at least one working day".to_owned());
        }
        days.sort_by_key(Weekday::num_days_from_monday);
        if let Some(pair) = days.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "working day {} is listed more than once",
                day_name(pair[0])
            ));
        }
        if start.nanosecond() >= 1_000_000_000 || end.nanosecond() >= 1_000_000_000 {
            return Err("working hours cannot start or end on a leap second".to_owned());
        }
        if start >= end {
            return Err(format!(
                "opening time {} must be before closing time {} (shifts past midnight are not supported)",
                start.format("%H:%M:%S"),
                end.format("%H:%M:%S")
            ));
        }
        Ok(Self {
            offset,
            days,
            start,
            end,
        })
    }

    /// Parses e.g. "mon-fri 08:00-17:00 -05:00" or "mon,tue,wed,thu,fri,sat 07:30-12:30 -05:00"
    /// (for settings files/env).
    ///
    /// Days: a comma-separated list of days or ranges (`mon-fri`, ranges run Monday→Sunday), in
    /// English (`mon`, `monday`) or Spanish (`lun`, `mié`, `sáb`…), any case. Times: `HH:MM` or
    /// `HH:MM:SS`. Offset: `±HH:MM`, `±HHMM`, `±HH`, `Z` or `UTC`; it may be left out, meaning
    /// −05:00 (Colombia). [`fmt::Display`] writes the same format back.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let context = |e: String| format!("working hours {spec:?}: {e}");
        let parts: Vec<&str> = spec.split_whitespace().collect();
        let (days, times, offset) = match parts.as_slice() {
            [days, times] => (*days, *times, None),
            [days, times, offset] => (*days, *times, Some(*offset)),
            _ => {
                return Err(context(
                    "expected \"<days> <HH:MM>-<HH:MM> [<UTC offset>]\", e.g. \"mon-fri 08:00-17:00 -05:00\""
                        .to_owned(),
                ));
            }
        };
        let days = parse_days(days).map_err(context)?;
        let (start, end) = times.split_once('-').ok_or_else(|| {
            context(format!(
                "expected opening and closing time as \"HH:MM-HH:MM\", got {times:?}"
            ))
        })?;
        let start = parse_time(start).map_err(context)?;
        let end = parse_time(end).map_err(context)?;
        let offset = match offset {
            Some(o) => parse_offset(o).map_err(context)?,
            None => COLOMBIA,
        };
        Self::new(offset, days, start, end).map_err(context)
    }

    /// The instant that is `amount` of business time after `from` (if `from` is outside working
    /// time, counting starts at the next opening). Zero amount returns `from` unchanged if `from`
    /// is inside working time, else the next opening.
    ///
    /// Saturates at 9999-12-31 23:59:59 UTC (also when there is no working time at all); never
    /// returns an instant before `from`.
    pub fn add(
        &self,
        cal: &BusinessCalendar,
        from: DateTime<Utc>,
        amount: Duration,
    ) -> DateTime<Utc> {
        let (first, last) = (horizon_start(), horizon_end());
        if from >= last {
            return from;
        }
        let spec = Spec::of(self);
        spec.add_local(cal, spec.local_of(from.max(first)), amount.as_nanos())
            .map_or(last, |local| spec.utc_of(local))
            // Only differs for a leap-second `from`, which counts as the nanosecond before it.
            .max(from)
    }

    /// Business time between two instants (zero if `to <= from`).
    pub fn between(
        &self,
        cal: &BusinessCalendar,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Duration {
        let (first, last) = (horizon_start(), horizon_end());
        let (from, to) = (from.clamp(first, last), to.clamp(first, last));
        if to <= from {
            return Duration::ZERO;
        }
        let spec = Spec::of(self);
        duration_from_nanos(spec.between_local(cal, spec.local_of(from), spec.local_of(to)))
    }
}

impl fmt::Display for WorkingHours {
    /// The [`WorkingHours::parse`] format, consecutive days written as ranges:
    /// "mon-fri 08:00-17:00 -05:00".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut days: Vec<u32> = self
            .days
            .iter()
            .map(Weekday::num_days_from_monday)
            .collect();
        days.sort_unstable();
        days.dedup();
        let mut runs: Vec<String> = Vec::new();
        let mut i = 0;
        while let Some(&first) = days.get(i) {
            let mut j = i;
            while days.get(j + 1).is_some_and(|&next| next == days[j] + 1) {
                j += 1;
            }
            let name = |n: u32| ALL_DAYS.get(n as usize).map_or("?", |d| day_name(*d));
            runs.push(if j == i {
                name(first).to_owned()
            } else {
                format!("{}-{}", name(first), name(days[j]))
            });
            i = j + 1;
        }
        let time = |t: NaiveTime| {
            if t.second() == 0 {
                t.format("%H:%M").to_string()
            } else {
                t.format("%H:%M:%S").to_string()
            }
        };
        write!(
            f,
            "{} {}-{} {}",
            runs.join(","),
            time(self.start),
            time(self.end),
            self.offset
        )
    }
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

fn parse_weekday(s: &str) -> Result<Weekday, String> {
    let lower = s.trim().to_lowercase();
    // Spanish names too: these settings are written by Colombian administrators.
    let spanish = match lower.as_str() {
        "lun" | "lunes" => Some(Weekday::Mon),
        "mar" | "martes" => Some(Weekday::Tue),
        "mie" | "mié" | "miercoles" | "miércoles" => Some(Weekday::Wed),
        "jue" | "jueves" => Some(Weekday::Thu),
        "vie" | "viernes" => Some(Weekday::Fri),
        "sab" | "sáb" | "sabado" | "sábado" => Some(Weekday::Sat),
        "dom" | "domingo" => Some(Weekday::Sun),
        _ => None,
    };
    match spanish {
        Some(d) => Ok(d),
        None => lower
            .parse::<Weekday>()
            .map_err(|_| format!("unknown day {s:?} (use mon, tue, wed, thu, fri, sat, sun)")),
    }
}

fn parse_days(s: &str) -> Result<Vec<Weekday>, String> {
    let mut days = Vec::new();
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_weekday(a)?, parse_weekday(b)?);
                let (lo, hi) = (a.num_days_from_monday(), b.num_days_from_monday());
                if lo > hi {
                    return Err(format!(
                        "day range {item:?} runs backwards (ranges go from mon to sun; list the days instead)"
                    ));
                }
                days.extend(
                    ALL_DAYS
                        .iter()
                        .skip(lo as usize)
                        .take((hi - lo + 1) as usize),
                );
            }
            None => days.push(parse_weekday(item)?),
        }
    }
    Ok(days)
}

fn parse_time(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .map_err(|_| format!("invalid time {s:?} (expected HH:MM, 00:00 to 23:59)"))
}

fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    let err = || {
        format!("invalid UTC offset {s:?} (expected e.g. -05:00; zones with DST are not supported)")
    };
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0).ok_or_else(err);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(err()),
    };
    let fields: Vec<&str> = if rest.contains(':') {
        rest.split(':').collect()
    } else if rest.len() == 4 && rest.is_ascii() {
        vec![&rest[..2], &rest[2..]]
    } else {
        vec![rest]
    };
    if fields.len() > 3 || fields.iter().any(|f| f.is_empty() || f.len() > 2) {
        return Err(err());
    }
    let mut secs = 0i32;
    for (i, field) in fields.iter().enumerate() {
        let n: i32 = field.parse().map_err(|_| err())?;
        if i > 0 && n >= 60 {
            return Err(err());
        }
        secs += n * [3600, 60, 1][i];
    }
    FixedOffset::east_opt(sign * secs).ok_or_else(err)
}

/// First instant at which business time is counted (see the module docs).
fn horizon_start() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |n| n.and_utc())
}

/// Last instant at which business time is counted, and where [`WorkingHours::add`] saturates.
fn horizon_end() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(LAST_YEAR, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map_or(DateTime::<Utc>::MAX_UTC, |n| n.and_utc())
}

/// Nanoseconds since midnight; a leap second counts as the last nanosecond of its second.
fn tod_nanos(t: NaiveTime) -> u64 {
    u64::from(t.num_seconds_from_midnight()) * NANOS_PER_SEC
        + u64::from(t.nanosecond().min(999_999_999))
}

fn duration_from_nanos(n: u128) -> Duration {
    let per_sec = u128::from(NANOS_PER_SEC);
    let secs = u64::try_from(n / per_sec).unwrap_or(u64::MAX);
    let sub = u32::try_from(n % per_sec).unwrap_or(0);
    Duration::new(secs, sub)
}

/// [`WorkingHours`] reduced to numbers, tolerant of hand-built invalid values.
#[derive(Debug, Clone, Copy)]
struct Spec {
    /// Bit `n` set iff the weekday `n` days after Monday is a working day.
    mask: u8,
    open: u64,
    close: u64,
    offset_secs: i32,
}

impl Spec {
    fn of(h: &WorkingHours) -> Self {
        let mask = h
            .days
            .iter()
            .fold(0u8, |m, d| m | 1 << d.num_days_from_monday());
        let open = tod_nanos(h.start);
        Self {
            mask,
            open,
            close: tod_nanos(h.end).max(open),
            offset_secs: h.offset.local_minus_utc(),
        }
    }

    fn day_len(&self) -> u64 {
        self.close - self.open
    }

    fn works_on(&self, d: Weekday) -> bool {
        self.mask & (1 << d.num_days_from_monday()) != 0
    }

    fn is_working(&self, cal: &BusinessCalendar, d: NaiveDate) -> bool {
        self.works_on(d.weekday()) && !cal.is_holiday(d)
    }

    /// Working nanoseconds of a working day within `[lo, hi)` (times of day in nanoseconds).
    fn overlap(&self, lo: u64, hi: u64) -> u64 {
        hi.min(self.close).saturating_sub(lo.max(self.open))
    }

    /// Local wall-clock time of `t`, which the callers keep within the horizon.
    fn local_of(&self, t: DateTime<Utc>) -> NaiveDateTime {
        let utc = t.naive_utc();
        let utc = if utc.nanosecond() >= 1_000_000_000 {
            utc.with_nanosecond(999_999_999).unwrap_or(utc)
        } else {
            utc
        };
        utc.checked_add_signed(TimeDelta::seconds(i64::from(self.offset_secs)))
            .unwrap_or(utc)
    }

    fn utc_of(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let last = horizon_end();
        local
            .checked_sub_signed(TimeDelta::seconds(i64::from(self.offset_secs)))
            .map_or(last, |n| n.and_utc().min(last))
    }

    /// Working days `d` with `lo <= d < hi`.
    fn working_days(&self, cal: &BusinessCalendar, lo: NaiveDate, hi: NaiveDate) -> u64 {
        let n = u64::try_from((hi - lo).num_days()).unwrap_or(0);
        if n <= SHORT_SPAN_DAYS {
            return lo
                .iter_days()
                .take_while(|d| *d < hi)
                .filter(|d| self.is_working(cal, *d))
                .count() as u64;
        }
        // Whole weeks contribute one day per working weekday; the remainder starts on lo's weekday.
        let first = lo.weekday().num_days_from_monday();
        let mut count = n / 7 * u64::from(self.mask.count_ones());
        count += (0..n % 7)
            .filter(|i| self.mask & (1 << ((u64::from(first) + i) % 7)) != 0)
            .count() as u64;
        let last = hi.pred_opt().unwrap_or(hi);
        for year in lo.year()..=last.year() {
            // Sorted by date, so two holidays on one day are adjacent and counted once.
            let mut previous = None;
            for h in cal.holidays(year) {
                if h.date >= lo
                    && h.date < hi
                    && previous != Some(h.date)
                    && self.works_on(h.date.weekday())
                {
                    count = count.saturating_sub(1);
                }
                previous = Some(h.date);
            }
        }
        count
    }

    /// Business nanoseconds in `[a, b)`, local times.
    fn between_local(&self, cal: &BusinessCalendar, a: NaiveDateTime, b: NaiveDateTime) -> u128 {
        if b <= a || self.mask == 0 || self.day_len() == 0 {
            return 0;
        }
        let (da, db) = (a.date(), b.date());
        let (ta, tb) = (tod_nanos(a.time()), tod_nanos(b.time()));
        if da == db {
            return if self.is_working(cal, da) {
                u128::from(self.overlap(ta, tb))
            } else {
                0
            };
        }
        let first = if self.is_working(cal, da) {
            self.overlap(ta, DAY_NANOS)
        } else {
            0
        };
        let last = if self.is_working(cal, db) {
            self.overlap(0, tb)
        } else {
            0
        };
        let middle = match da.succ_opt() {
            Some(next) if next < db => self.working_days(cal, next, db),
            _ => 0,
        };
        u128::from(first) + u128::from(last) + u128::from(middle) * u128::from(self.day_len())
    }

    /// The local instant `amount` business nanoseconds after `from`; `None` past the horizon.
    fn add_local(
        &self,
        cal: &BusinessCalendar,
        from: NaiveDateTime,
        amount: u128,
    ) -> Option<NaiveDateTime> {
        if self.mask == 0 || self.day_len() == 0 {
            return None;
        }
        let day = u128::from(self.day_len());
        let at = |date: NaiveDate, tod: u64| {
            let time = NaiveTime::from_num_seconds_from_midnight_opt(
                u32::try_from(tod / NANOS_PER_SEC).ok()?,
                u32::try_from(tod % NANOS_PER_SEC).ok()?,
            )?;
            Some(date.and_time(time))
        };
        let mut left = amount;
        let mut date = from.date();
        let tod = tod_nanos(from.time());
        if self.is_working(cal, date) && tod < self.close {
            let pos = tod.max(self.open);
            let available = u128::from(self.close - pos);
            if left <= available {
                return at(date, pos + u64::try_from(left).ok()?);
            }
            left -= available;
        }
        // No year has more than 366 working days: answer absurd amounts without walking there.
        let years = u128::try_from(i64::from(LAST_YEAR) + 2 - i64::from(date.year())).unwrap_or(0);
        if left > day * 366 * years {
            return None;
        }
        date = date.succ_opt()?;
        loop {
            // Local dates may run one day into LAST_YEAR + 1 for offsets east of UTC.
            if date.year() > LAST_YEAR + 1 {
                return None;
            }
            let next_year = NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)?;
            let days_left = u128::try_from((next_year - date).num_days()).unwrap_or(0);
            if left > day * days_left {
                // Cannot end this year even if every day worked: skip the rest of it in one step.
                left =
                    left.saturating_sub(day * u128::from(self.working_days(cal, date, next_year)));
                date = next_year;
                continue;
            }
            // Ends this year unless holidays and rest days push it on: step whole days.
            while date < next_year {
                if self.is_working(cal, date) {
                    if left <= day {
                        return at(date, self.open + u64::try_from(left).ok()?);
                    }
                    left -= day;
                }
                date = date.succ_opt()?;
            }
        }
    }
}

/// Priority of a case for the operational SLA.
/// (first response, resolution) targets in business time (SGC-SAC-001 §5).
pub fn sla_targets(p: Priority) -> (Duration, Duration) {
    let hours = |h: u64| Duration::from_secs(h * 3600);
    match p {
        Priority::Critical => (hours(1), hours(4)),
        Priority::High => (hours(2), hours(8)),
        Priority::Medium => (hours(4), hours(24)),
        Priority::Low => (hours(8), hours(48)),
    }
}

/// What happened to one clock, in order. Stored as rows; the clock state is derived from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockEvent {
    Start {
        at: DateTime<Utc>,
    },
    /// Waiting on the customer.
    Pause {
        at: DateTime<Utc>,
    },
    Resume {
        at: DateTime<Utc>,
    },
    /// Adds business time to the target (a legal extension uses a different clock; this is generic).
    Extend {
        at: DateTime<Utc>,
        by: Duration,
    },
    /// Met: first response given / case closed.
    Stop {
        at: DateTime<Utc>,
    },
}

impl ClockEvent {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Start { at }
            | Self::Pause { at }
            | Self::Resume { at }
            | Self::Extend { at, .. }
            | Self::Stop { at } => *at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClockStatus {
    Running,
    Paused,
    Met,
    Breached,
    NotStarted,
}

/// The state of a clock as of some instant. Not `Eq`: `fraction` is a float.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockState {
    /// `Breached` wins over running or paused: once a clock ran past its due time it stays
    /// breached, also after a pause or a stop. `Met` means stopped at or before the due time.
    pub status: ClockStatus,
    /// When the target is reached if nothing else happens:
    /// - `Running`: the projected due time (possibly equal to now, never in the past);
    /// - `Breached`: the instant the target was reached (in the past);
    /// - `Paused`, `Met`, `NotStarted`: `None` — while paused it depends on when the clock resumes,
    ///   and a met or unstarted clock has none. Use `remaining_secs` to show what is left.
    pub due_at: Option<DateTime<Utc>>,
    /// Business time consumed so far (excluding paused intervals), serialised as whole seconds.
    pub elapsed_secs: u64,
    /// target − elapsed, saturating at 0 (whole seconds, rounded down).
    pub remaining_secs: u64,
    /// Business time consumed past the target (whole seconds). Can be 0 for a breached clock that
    /// reached its target at closing time and was stopped after closing: late by the wall clock,
    /// but without any business time past the target.
    pub overdue_secs: u64,
    /// elapsed / target, for early warnings at 50 %, 75 %, 90 %. With a zero target: 0 before the
    /// start, 1 after.
    pub fraction: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running { since: DateTime<Utc> },
    Paused,
    Stopped,
}

/// The events folded into one pass: what every question about the clock is answered from.
struct Fold<'a> {
    hours: &'a WorkingHours,
    cal: &'a BusinessCalendar,
    /// The target with the accepted extensions.
    target: Duration,
    phase: Phase,
    /// Closed running intervals (start, end, business time in them), in order.
    segments: Vec<(DateTime<Utc>, DateTime<Utc>, Duration)>,
    /// Business time of the closed intervals.
    elapsed: Duration,
    /// The instant the target was reached, once a closed interval reached it.
    reached: Option<DateTime<Utc>>,
    /// Whether the clock ran at some instant after `reached`.
    late: bool,
}

impl Fold<'_> {
    /// The due time of the interval running since `since`, given the business time used before it.
    fn projected_due(&self, since: DateTime<Utc>) -> DateTime<Utc> {
        self.reached.unwrap_or_else(|| {
            self.hours
                .add(self.cal, since, self.target.saturating_sub(self.elapsed))
        })
    }

    fn close(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) {
        let used = self.hours.between(self.cal, start, end);
        if self.reached.is_none() {
            let left = self.target.saturating_sub(self.elapsed);
            if used >= left {
                // `due <= end` except for a zero remainder in an interval without working time.
                let due = self.hours.add(self.cal, start, left);
                if due <= end {
                    self.reached = Some(due);
                }
            }
        }
        self.elapsed = self.elapsed.saturating_add(used);
        if self.reached.is_some_and(|due| end > due) {
            self.late = true;
        }
        self.segments.push((start, end, used));
    }

    /// Applies one event at `at`; returns whether it was accepted (see [`evaluate`] for the rules).
    fn apply(&mut self, event: &ClockEvent, at: DateTime<Utc>) -> bool {
        match (event, self.phase) {
            (ClockEvent::Start { .. }, Phase::NotStarted) => {
                self.phase = Phase::Running { since: at };
                true
            }
            (ClockEvent::Pause { .. }, Phase::Running { since }) => {
                self.close(since, at);
                self.phase = Phase::Paused;
                true
            }
            (ClockEvent::Resume { .. }, Phase::Paused) => {
                self.phase = Phase::Running { since: at };
                true
            }
            (ClockEvent::Stop { .. }, Phase::Running { since }) => {
                self.close(since, at);
                self.phase = Phase::Stopped;
                true
            }
            (ClockEvent::Stop { .. }, Phase::Paused) => {
                self.phase = Phase::Stopped;
                true
            }
            (ClockEvent::Extend { by, .. }, phase) => {
                let in_time = match phase {
                    Phase::Stopped => false,
                    _ if self.reached.is_some() => false,
                    Phase::Running { since } => at < self.projected_due(since),
                    Phase::NotStarted | Phase::Paused => true,
                };
                if in_time {
                    self.target = self.target.saturating_add(*by);
                }
                in_time
            }
            _ => false,
        }
    }
}

/// Folds the events accepted up to `now` (all of them if `None`).
fn fold<'a>(
    hours: &'a WorkingHours,
    cal: &'a BusinessCalendar,
    target: Duration,
    events: &[ClockEvent],
    now: Option<DateTime<Utc>>,
) -> Fold<'a> {
    let mut f = Fold {
        hours,
        cal,
        target,
        phase: Phase::NotStarted,
        segments: Vec::new(),
        elapsed: Duration::ZERO,
        reached: None,
        late: false,
    };
    let mut last_accepted: Option<DateTime<Utc>> = None;
    for event in events {
        // The stored order wins over timestamps that disagree with it (skewed server clocks).
        let at = last_accepted.map_or(event.at(), |last| event.at().max(last));
        if now.is_some_and(|now| at > now) {
            continue;
        }
        if f.apply(event, at) {
            last_accepted = Some(at);
        }
    }
    f
}

/// Derives the state of a clock with `target` business time from its events, as of `now`.
///
/// Rules for event sequences (none of them panics):
/// - Events are taken in slice order. An event dated before the last accepted one counts as
///   happening at that instant, and events dated after `now` are not seen yet.
/// - Accepted: `Start` when not started; `Pause` when running; `Resume` when paused; `Stop` when
///   running or paused (stopping a paused clock adds no time); `Extend` when not stopped and
///   strictly before the due time (while paused or not started: if the target was not reached
///   before). Everything else is redundant or nonsensical and ignored — a second `Start`, `Resume`
///   without `Pause`, `Pause` while paused, anything before `Start` except `Extend`, anything after
///   `Stop`, and a late `Extend` (an extension cannot erase a breach).
/// - A clock stopped after its due time is `Breached`; stopped at or before it, `Met`.
pub fn evaluate(
    hours: &WorkingHours,
    cal: &BusinessCalendar,
    target: Duration,
    events: &[ClockEvent],
    now: DateTime<Utc>,
) -> ClockState {
    let f = fold(hours, cal, target, events, Some(now));
    let (status, due_at, elapsed) = match f.phase {
        Phase::NotStarted => (ClockStatus::NotStarted, None, Duration::ZERO),
        Phase::Running { since } => {
            let due = f.projected_due(since);
            let elapsed = f.elapsed.saturating_add(hours.between(cal, since, now));
            let status = if f.late || now > due {
                ClockStatus::Breached
            } else {
                ClockStatus::Running
            };
            (status, Some(due), elapsed)
        }
        Phase::Paused | Phase::Stopped if f.late => (ClockStatus::Breached, f.reached, f.elapsed),
        Phase::Paused => (ClockStatus::Paused, None, f.elapsed),
        Phase::Stopped => (ClockStatus::Met, None, f.elapsed),
    };
    let fraction = if !f.target.is_zero() {
        elapsed.as_secs_f64() / f.target.as_secs_f64()
    } else if f.phase == Phase::NotStarted {
        0.0
    } else {
        1.0
    };
    ClockState {
        status,
        due_at,
        elapsed_secs: elapsed.as_secs(),
        remaining_secs: f.target.saturating_sub(elapsed).as_secs(),
        overdue_secs: elapsed.saturating_sub(f.target).as_secs(),
        fraction,
    }
}

/// `fraction` of `target`, rounded to the nanosecond; `None` for NaN. Negative counts as 0 and
/// infinite saturates, so the instant is the start or the far date.
fn scale(target: Duration, fraction: f64) -> Option<Duration> {
    if fraction.is_nan() {
        return None;
    }
    if fraction <= 0.0 {
        return Some(Duration::ZERO);
    }
    if fraction == 1.0 {
        // Exact, whatever the float precision of large targets.
        return Some(target);
    }
    // Float-to-int `as` saturates, which is the intent for huge products.
    let nanos = (target.as_nanos() as f64 * fraction).round() as u128;
    Some(duration_from_nanos(nanos))
}

/// The instant at which a running clock reaches `fraction` (e.g. 0.5) of its target given its
/// events so far, or None if paused/stopped/not started (or `fraction` is NaN). A scheduler stores
/// this so it can find due work with an index instead of scanning cases.
///
/// Uses the target as extended so far and the same event rules as [`evaluate`] (all events
/// count: there is no `now`). If the clock already passed `fraction` before a pause, the answer is
/// that past instant; `instant_of_fraction(.., 1.0)` equals the `due_at` of a running or
/// breached-and-running clock.
pub fn instant_of_fraction(
    hours: &WorkingHours,
    cal: &BusinessCalendar,
    target: Duration,
    events: &[ClockEvent],
    fraction: f64,
) -> Option<DateTime<Utc>> {
    let f = fold(hours, cal, target, events, None);
    let Phase::Running { since } = f.phase else {
        return None;
    };
    let threshold = scale(f.target, fraction)?;
    let mut used = Duration::ZERO;
    for &(start, end, in_segment) in &f.segments {
        if used.saturating_add(in_segment) >= threshold {
            let at = hours.add(cal, start, threshold.saturating_sub(used));
            if at <= end {
                return Some(at);
            }
        }
        used = used.saturating_add(in_segment);
    }
    Some(hours.add(cal, since, threshold.saturating_sub(used)))
}
