//! Colombian business calendar for legal terms (Ley 1755 de 2015): business days are
//! Monday–Friday minus national holidays, and holidays are rules plus admin overrides.
//!
//! The rules are those in force since 1984 (Ley 51 de 1983) plus later laws, each with the
//! year it took effect. Years before 1984 get the same rules, so they are not historical.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, Utc, Weekday};

/// Colombia's time, UTC−05:00 all year (there is no daylight saving): filing dates, radicado
/// years, legal due dates and the default working hours are read in it. The one definition.
// Built in const context so that a mistake here fails compilation instead of panicking at runtime.
pub const COLOMBIA: FixedOffset = match FixedOffset::west_opt(5 * 3600) {
    Some(o) => o,
    None => panic!("UTC-05:00 is a valid offset"),
};

/// The date in Colombia at an instant.
pub fn local_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&COLOMBIA).date_naive()
}

/// Where a holiday comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HolidaySource {
    Law,
    Override,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
    pub source: HolidaySource,
}

/// An admin's correction to the computed calendar (a new law adds a day, or a computed day is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolidayOverride {
    Add { date: NaiveDate, name: String },
    Remove { date: NaiveDate },
}

/// What a holiday's date is computed from.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    /// A calendar date (month, day).
    Date(u32, u32),
    /// Days after (or before, if negative) Easter Sunday.
    Easter(i64),
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    name: &'static str,
    anchor: Anchor,
    /// Ley 51 de 1983 ("ley Emiliani"): the rest day is the next Monday unless it is one.
    to_monday: bool,
    /// First year the rule applies; `i32::MIN` for the rules that predate 1984.
    since: i32,
}

const fn rule(name: &'static str, anchor: Anchor, to_monday: bool) -> Rule {
    Rule {
        name,
        anchor,
        to_monday,
        since: i32::MIN,
    }
}

/// National holidays by law, as data: a new law is a new row with its `since` year, and until a
/// release carries it an admin can add the day with a [`HolidayOverride`].
const RULES: &[Rule] = &[
    rule("Año Nuevo", Anchor::Date(1, 1), false),
    rule("Día de los Reyes Magos", Anchor::Date(1, 6), true),
    rule("San José", Anchor::Date(3, 19), true),
    rule("Jueves Santo", Anchor::Easter(-3), false),
    rule("Viernes Santo", Anchor::Easter(-2), false),
    rule("Día del Trabajo", Anchor::Date(5, 1), false),
    rule("Ascensión del Señor", Anchor::Easter(39), true),
    rule("Corpus Christi", Anchor::Easter(60), true),
    rule("Sagrado Corazón de Jesús", Anchor::Easter(68), true),
    rule("San Pedro y San Pablo", Anchor::Date(6, 29), true),
    // Ley 2578 de 2026 (June 1) added July 9, moved per Ley 51 de 1983; first observed 2026-07-13.
    Rule {
        name: "Día de Nuestra Señora del Rosario de Chiquinquirá",
        anchor: Anchor::Date(7, 9),
        to_monday: true,
        since: 2026,
    },
    rule("Día de la Independencia", Anchor::Date(7, 20), false),
    rule("Batalla de Boyacá", Anchor::Date(8, 7), false),
    rule("La Asunción de la Virgen", Anchor::Date(8, 15), true),
    rule("Día de la Raza", Anchor::Date(10, 12), true),
    rule("Todos los Santos", Anchor::Date(11, 1), true),
    rule("Independencia de Cartagena", Anchor::Date(11, 11), true),
    rule("La Inmaculada Concepción", Anchor::Date(12, 8), false),
    rule("Navidad", Anchor::Date(12, 25), false),
];

/// Easter Sunday of `year` (Gregorian), by the anonymous Gregorian (Meeus/Jones/Butcher) algorithm.
/// `None` only for years chrono cannot represent.
fn easter_sunday(year: i32) -> Option<NaiveDate> {
    // Euclidean division keeps the formula valid for the proleptic years chrono allows.
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let n = h + l - 7 * m + 114;
    let month = u32::try_from(n.div_euclid(31)).ok()?;
    let day = u32::try_from(n.rem_euclid(31) + 1).ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

fn next_monday_or_same(date: NaiveDate) -> Option<NaiveDate> {
    let ahead = (7 - date.weekday().num_days_from_monday()) % 7;
    date.checked_add_days(Days::new(u64::from(ahead)))
}

/// (date, name) of each law holiday of `year`, in `RULES` order.
fn law_holidays(year: i32) -> impl Iterator<Item = (NaiveDate, &'static str)> {
    let easter = easter_sunday(year);
    RULES
        .iter()
        .filter(move |r| r.since <= year)
        .filter_map(move |r| {
            let base = match r.anchor {
                Anchor::Date(month, day) => NaiveDate::from_ymd_opt(year, month, day)?,
                Anchor::Easter(offset) => {
                    let easter = easter?;
                    let delta = Days::new(offset.unsigned_abs());
                    if offset >= 0 {
                        easter.checked_add_days(delta)?
                    } else {
                        easter.checked_sub_days(delta)?
                    }
                }
            };
            let date = if r.to_monday {
                next_monday_or_same(base)?
            } else {
                base
            };
            Some((date, r.name))
        })
}

/// Colombian national holidays of `year` by law (Ley 51 de 1983 "ley Emiliani", Easter-based days,
/// and later laws), sorted by date. Two holidays moved to the same Monday are two entries.
/// Empty for years chrono cannot represent.
pub fn colombian_holidays(year: i32) -> Vec<Holiday> {
    let mut out: Vec<Holiday> = law_holidays(year)
        .map(|(date, name)| Holiday {
            date,
            name: name.to_owned(),
            source: HolidaySource::Law,
        })
        .collect();
    // Stable, so same-day holidays keep the order of the law table.
    out.sort_by_key(|h| h.date);
    out
}

/// Words of a day-of-year bitset; 6 × 64 ≥ 366.
const WORDS: usize = 6;

/// One bit per day of a year, indexed by `ordinal0`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DayBits([u64; WORDS]);

impl DayBits {
    fn set(&mut self, i: u32, on: bool) {
        let (w, b) = ((i / 64) as usize, i % 64);
        if let Some(word) = self.0.get_mut(w) {
            if on {
                *word |= 1 << b;
            } else {
                *word &= !(1 << b);
            }
        }
    }

    fn get(&self, i: u32) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    /// Mask of the bits `lo <= i < hi` within word `w`.
    fn mask(w: usize, lo: u32, hi: u32) -> u64 {
        let start = (w as u32) * 64;
        let lo = lo.clamp(start, start + 64) - start;
        let hi = hi.clamp(start, start + 64) - start;
        if lo >= hi {
            return 0;
        }
        let upper = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
        upper & !((1u64 << lo) - 1)
    }

    /// Number of set bits with `lo <= i < hi`.
    fn count(&self, lo: u32, hi: u32) -> u32 {
        self.0
            .iter()
            .enumerate()
            .map(|(w, word)| (word & Self::mask(w, lo, hi)).count_ones())
            .sum()
    }

    /// Index of the `n`-th (1-based) set bit at or after `lo`.
    fn nth_from(&self, lo: u32, n: u32) -> Option<u32> {
        if n == 0 {
            return None;
        }
        let mut left = n;
        for (w, word) in self.0.iter().enumerate() {
            let mut bits = word & Self::mask(w, lo, u32::MAX);
            let ones = bits.count_ones();
            if left > ones {
                left -= ones;
                continue;
            }
            for _ in 1..left {
                bits &= bits - 1;
            }
            return Some((w as u32) * 64 + bits.trailing_zeros());
        }
        None
    }
}

/// `WEEKDAYS[p]` has bit j set iff day j is Monday–Friday when day 0 is `p` days after a Monday.
const WEEKDAYS: [u64; 7] = {
    let mut patterns = [0u64; 7];
    let mut p = 0;
    while p < 7 {
        let mut j = 0;
        while j < 64 {
            if (p + j) % 7 < 5 {
                patterns[p] |= 1 << j;
            }
            j += 1;
        }
        p += 1;
    }
    patterns
};

/// A year of the calendar, precomputed so day-by-day questions are bit lookups.
#[derive(Debug, Clone, Copy)]
struct YearInfo {
    holidays: DayBits,
    business: DayBits,
    len: u32,
}

/// Beyond this many cached years (only reachable with absurd dates), years are computed on demand
/// so a hostile input cannot grow memory without bound.
const CACHE_MAX_YEARS: usize = 1024;

#[derive(Debug, Default)]
struct Inner {
    /// Overrides by year, in the order given: a later one wins over an earlier one on the same date.
    overrides: HashMap<i32, Vec<HolidayOverride>>,
    years: RwLock<HashMap<i32, YearInfo>>,
}

/// The national holidays plus admin overrides. Cheap to clone (clones share one cache), Send + Sync.
#[derive(Debug, Clone, Default)]
pub struct BusinessCalendar {
    inner: Arc<Inner>,
}

fn override_date(o: &HolidayOverride) -> NaiveDate {
    match o {
        HolidayOverride::Add { date, .. } | HolidayOverride::Remove { date } => *date,
    }
}

fn is_weekday(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

impl BusinessCalendar {
    pub fn new(overrides: impl IntoIterator<Item = HolidayOverride>) -> Self {
        let mut by_year: HashMap<i32, Vec<HolidayOverride>> = HashMap::new();
        for o in overrides {
            by_year.entry(override_date(&o).year()).or_default().push(o);
        }
        Self {
            inner: Arc::new(Inner {
                overrides: by_year,
                years: RwLock::default(),
            }),
        }
    }

    fn overrides(&self, year: i32) -> &[HolidayOverride] {
        self.inner
            .overrides
            .get(&year)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Holidays of the year after overrides, sorted (source Law or Override).
    pub fn holidays(&self, year: i32) -> Vec<Holiday> {
        let mut out = colombian_holidays(year);
        for o in self.overrides(year) {
            match o {
                HolidayOverride::Remove { date } => out.retain(|h| h.date != *date),
                HolidayOverride::Add { date, name } => out.push(Holiday {
                    date: *date,
                    name: name.clone(),
                    source: HolidaySource::Override,
                }),
            }
        }
        out.sort_by_key(|h| h.date);
        out
    }

    fn compute_year(&self, year: i32) -> Option<YearInfo> {
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let len = NaiveDate::from_ymd_opt(year, 12, 31)?.ordinal();
        let mut holidays = DayBits::default();
        for (date, _) in law_holidays(year) {
            holidays.set(date.ordinal0(), true);
        }
        for o in self.overrides(year) {
            let add = matches!(o, HolidayOverride::Add { .. });
            holidays.set(override_date(o).ordinal0(), add);
        }
        let first_weekday = jan1.weekday().num_days_from_monday() as usize;
        let mut business = DayBits::default();
        for (w, word) in business.0.iter_mut().enumerate() {
            let weekdays = WEEKDAYS[(first_weekday + 64 * w) % 7];
            *word = weekdays & !holidays.0[w] & DayBits::mask(w, 0, len);
        }
        Some(YearInfo {
            holidays,
            business,
            len,
        })
    }

    /// `None` only for years chrono cannot represent.
    fn year(&self, year: i32) -> Option<YearInfo> {
        // A panic while holding the lock cannot leave a half-written entry, so poison is harmless.
        let cached = self
            .inner
            .years
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&year)
            .copied();
        if cached.is_some() {
            return cached;
        }
        let info = self.compute_year(year)?;
        let mut years = self
            .inner
            .years
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if years.len() < CACHE_MAX_YEARS {
            years.insert(year, info);
        }
        Some(info)
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.year(date.year())
            .is_some_and(|y| y.holidays.get(date.ordinal0()))
    }

    /// Monday–Friday and not a holiday.
    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        match self.year(date.year()) {
            Some(y) => y.business.get(date.ordinal0()),
            None => is_weekday(date),
        }
    }

    /// The due date of a term of `days` business days for something filed on `filed`: counting starts
    /// the business day after filing, so the result is the `days`-th business day strictly after `filed`
    /// (filed on a Saturday or holiday: the next business day is day 1). `days == 0` returns `filed`.
    /// Saturates at `NaiveDate::MAX` if the term would end after chrono's last date.
    pub fn add_business_days(&self, filed: NaiveDate, days: u32) -> NaiveDate {
        if days == 0 {
            return filed;
        }
        let mut left = days;
        let mut year = filed.year();
        // ordinal0 of the day after `filed`.
        let mut from = filed.ordinal();
        // Whole years are skipped with a popcount, so long terms cost per year, not per day.
        while let Some(info) = self.year(year) {
            // No year has more than 262 weekdays: answer absurd terms without walking to chrono's last year.
            let years_left = i64::from(NaiveDate::MAX.year()) - i64::from(year) + 1;
            if i64::from(left) > 262 * years_left {
                break;
            }
            let available = info.business.count(from, info.len);
            if left <= available {
                return info
                    .business
                    .nth_from(from, left)
                    .and_then(|i| NaiveDate::from_yo_opt(year, i + 1))
                    .unwrap_or(NaiveDate::MAX);
            }
            left -= available;
            let Some(next) = year.checked_add(1) else {
                break;
            };
            year = next;
            from = 0;
        }
        NaiveDate::MAX
    }

    /// Number of business days d with from < d <= to (0 if to <= from). Used for "how many business days are left".
    pub fn business_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        if to <= from {
            return 0;
        }
        let mut total = 0u32;
        for year in from.year()..=to.year() {
            let Some(info) = self.year(year) else {
                continue;
            };
            let lo = if year == from.year() {
                from.ordinal()
            } else {
                0
            };
            let hi = if year == to.year() {
                to.ordinal()
            } else {
                info.len
            };
            // At most ~262 per year over chrono's ~524k years: far below u32::MAX.
            total = total.saturating_add(info.business.count(lo, hi));
        }
        total
    }

    /// The next business day strictly after `date`.
    pub fn next_business_day(&self, date: NaiveDate) -> NaiveDate {
        self.add_business_days(date, 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_late_evening_in_bogota_is_still_the_day_before_in_utc() {
        let late_evening = DateTime::parse_from_rfc3339("2026-01-01T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(local_date(late_evening), ymd(2025, 12, 31));
    }

    #[test]
    fn easter_known_dates() {
        for (y, m, d) in [
            (1984, 4, 22),
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2038, 4, 25),
            (2285, 3, 22),
        ] {
            assert_eq!(easter_sunday(y), Some(ymd(y, m, d)), "{y}");
        }
    }

    #[test]
    fn easter_is_a_sunday_in_range_for_every_chrono_year() {
        for y in NaiveDate::MIN.year()..=NaiveDate::MAX.year() {
            let e = easter_sunday(y).unwrap();
            assert_eq!(e.weekday(), Weekday::Sun, "{y}");
            assert!(e >= ymd(y, 3, 22) && e <= ymd(y, 4, 25), "{y}: {e}");
        }
    }

    #[test]
    fn bit_helpers() {
        let mut b = DayBits::default();
        for i in [0, 63, 64, 127, 200, 365] {
            b.set(i, true);
        }
        assert_eq!(b.count(0, 366), 6);
        assert_eq!(b.count(1, 365), 4);
        assert_eq!(b.count(64, 64), 0);
        assert_eq!(b.nth_from(0, 1), Some(0));
        assert_eq!(b.nth_from(1, 1), Some(63));
        assert_eq!(b.nth_from(1, 3), Some(127));
        assert_eq!(b.nth_from(128, 2), Some(365));
        assert_eq!(b.nth_from(128, 3), None);
        b.set(63, false);
        assert!(!b.get(63) && b.get(64));
    }
}
