//! Operational SLA clocks: hand-checked due times (written in Bogota local time), event rules,
//! and property-style checks of `add`/`between` against each other and a brute-force oracle.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use atiende_core::calendar::{BusinessCalendar, HolidayOverride};
use atiende_core::clocks::{
    ClockEvent, ClockStatus, WorkingHours, evaluate, instant_of_fraction, sla_targets,
};
use atiende_core::types::Priority;
use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeDelta, TimeZone, Timelike, Utc,
    Weekday,
};

/// An instant given in Bogota local time (UTC−05:00).
fn bog(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    FixedOffset::west_opt(5 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn cal() -> BusinessCalendar {
    BusinessCalendar::default()
}

fn start(at: DateTime<Utc>) -> ClockEvent {
    ClockEvent::Start { at }
}
fn pause(at: DateTime<Utc>) -> ClockEvent {
    ClockEvent::Pause { at }
}
fn resume(at: DateTime<Utc>) -> ClockEvent {
    ClockEvent::Resume { at }
}
fn stop(at: DateTime<Utc>) -> ClockEvent {
    ClockEvent::Stop { at }
}
fn extend(at: DateTime<Utc>, by: Duration) -> ClockEvent {
    ClockEvent::Extend { at, by }
}

#[test]
fn targets_by_priority() {
    assert_eq!(sla_targets(Priority::Critical), (hours(1), hours(4)));
    assert_eq!(sla_targets(Priority::High), (hours(2), hours(8)));
    assert_eq!(sla_targets(Priority::Medium), (hours(4), hours(24)));
    assert_eq!(sla_targets(Priority::Low), (hours(8), hours(48)));
}

#[test]
fn default_is_weekdays_eight_to_five_in_bogota() {
    let h = WorkingHours::default();
    assert_eq!(h.offset, FixedOffset::west_opt(5 * 3600).unwrap());
    assert_eq!(
        h.days,
        [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri
        ]
    );
    assert_eq!(h.start, NaiveTime::from_hms_opt(8, 0, 0).unwrap());
    assert_eq!(h.end, NaiveTime::from_hms_opt(17, 0, 0).unwrap());
    assert_eq!(
        WorkingHours::parse("mon-fri 08:00-17:00 -05:00").unwrap(),
        h
    );
    assert_eq!(h.to_string(), "mon-fri 08:00-17:00 -05:00");
}

#[test]
fn critical_filed_monday_afternoon_first_response_next_morning() {
    let (h, cal) = (WorkingHours::default(), cal());
    let filed = bog(2026, 3, 2, 16, 30);
    assert_eq!(
        filed
            .with_timezone(&FixedOffset::west_opt(18000).unwrap())
            .weekday(),
        Weekday::Mon
    );
    let (first, _) = sla_targets(Priority::Critical);
    assert_eq!(h.add(&cal, filed, first), bog(2026, 3, 3, 8, 30));
}

#[test]
fn critical_filed_friday_afternoon_resolution_on_monday() {
    let (h, cal) = (WorkingHours::default(), cal());
    let (_, resolution) = sla_targets(Priority::Critical);
    assert_eq!(
        h.add(&cal, bog(2026, 3, 6, 16, 0), resolution),
        bog(2026, 3, 9, 11, 0)
    );
}

#[test]
fn filed_on_saturday_counts_from_monday_opening() {
    let (h, cal) = (WorkingHours::default(), cal());
    let saturday = bog(2026, 3, 7, 10, 0);
    assert_eq!(h.add(&cal, saturday, Duration::ZERO), bog(2026, 3, 9, 8, 0));
    assert_eq!(h.add(&cal, saturday, hours(1)), bog(2026, 3, 9, 9, 0));
    // The clock runs but consumes nothing over the weekend.
    let events = [start(saturday)];
    let sunday = evaluate(&h, &cal, hours(1), &events, bog(2026, 3, 8, 12, 0));
    assert_eq!(sunday.status, ClockStatus::Running);
    assert_eq!(sunday.elapsed_secs, 0);
    assert_eq!(sunday.due_at, Some(bog(2026, 3, 9, 9, 0)));
    let monday = evaluate(&h, &cal, hours(1), &events, bog(2026, 3, 9, 8, 15));
    assert_eq!(monday.elapsed_secs, 15 * 60);
}

#[test]
fn skips_a_colombian_holiday() {
    let (h, cal) = (WorkingHours::default(), cal());
    // Independencia de Cartagena (Wednesday Nov 11) moves to Monday 2026-11-16.
    assert!(cal.is_holiday(ymd(2026, 11, 16)));
    assert_eq!(
        h.add(&cal, bog(2026, 11, 13, 16, 0), hours(4)),
        bog(2026, 11, 17, 11, 0)
    );
    assert_eq!(
        h.between(&cal, bog(2026, 11, 13, 16, 0), bog(2026, 11, 17, 11, 0)),
        hours(4)
    );
    // An admin override is honoured as well.
    let with_override = BusinessCalendar::new([HolidayOverride::Add {
        date: ymd(2026, 11, 17),
        name: "Día cívico".into(),
    }]);
    assert_eq!(
        h.add(&with_override, bog(2026, 11, 13, 16, 0), hours(4)),
        bog(2026, 11, 18, 11, 0)
    );
}

#[test]
fn low_priority_resolution_spans_a_weekend() {
    let (h, cal) = (WorkingHours::default(), cal());
    let (_, resolution) = sla_targets(Priority::Low);
    // Wed 7 h + Thu 9 + Fri 9 + Mon 9 + Tue 9 = 43 h, then 5 h on Wednesday.
    let filed = bog(2026, 3, 4, 10, 0);
    assert_eq!(h.add(&cal, filed, resolution), bog(2026, 3, 11, 13, 0));
    assert_eq!(h.between(&cal, filed, bog(2026, 3, 11, 13, 0)), resolution);
}

#[test]
fn pause_moves_due_time_by_the_paused_business_time() {
    let (h, cal) = (WorkingHours::default(), cal());
    let target = hours(48);
    let started = bog(2026, 3, 2, 9, 0);
    let unpaused_due = bog(2026, 3, 9, 12, 0);
    assert_eq!(h.add(&cal, started, target), unpaused_due);

    let events = [
        start(started),
        pause(bog(2026, 3, 3, 10, 0)),
        resume(bog(2026, 3, 4, 10, 0)),
    ];
    // While paused: no due time (it depends on the resume), the elapsed time is frozen.
    let paused = evaluate(&h, &cal, target, &events[..2], bog(2026, 3, 3, 15, 0));
    assert_eq!(paused.status, ClockStatus::Paused);
    assert_eq!(paused.due_at, None);
    assert_eq!(paused.elapsed_secs, 10 * 3600);
    assert_eq!(paused.remaining_secs, 38 * 3600);
    assert_eq!(
        instant_of_fraction(&h, &cal, target, &events[..2], 1.0),
        None
    );

    let running = evaluate(&h, &cal, target, &events, bog(2026, 3, 4, 11, 0));
    assert_eq!(running.status, ClockStatus::Running);
    assert_eq!(running.elapsed_secs, 11 * 3600);
    let due = running.due_at.unwrap();
    // Tue 10:00–17:00 plus Wed 08:00–10:00: 9 business hours.
    assert_eq!(due, bog(2026, 3, 10, 12, 0));
    assert_eq!(h.between(&cal, unpaused_due, due), hours(9));
    assert_eq!(
        instant_of_fraction(&h, &cal, target, &events, 1.0),
        Some(due)
    );

    // A pause spanning a month costs nothing while paused.
    let long = [
        start(started),
        pause(bog(2026, 3, 3, 10, 0)),
        resume(bog(2026, 4, 6, 10, 0)),
    ];
    let state = evaluate(&h, &cal, target, &long, bog(2026, 4, 6, 10, 0));
    assert_eq!(state.elapsed_secs, 10 * 3600);
    assert_eq!(
        state.due_at,
        Some(h.add(&cal, bog(2026, 4, 6, 10, 0), hours(38)))
    );
}

#[test]
fn met_and_breached() {
    let (h, cal) = (WorkingHours::default(), cal());
    let (first, _) = sla_targets(Priority::Critical);
    let t0 = bog(2026, 3, 2, 9, 0);
    let due = bog(2026, 3, 2, 10, 0);

    let early = evaluate(
        &h,
        &cal,
        first,
        &[start(t0), stop(bog(2026, 3, 2, 9, 59))],
        due,
    );
    assert_eq!(early.status, ClockStatus::Met);
    assert_eq!(early.due_at, None);
    assert_eq!(
        (early.elapsed_secs, early.remaining_secs, early.overdue_secs),
        (59 * 60, 60, 0)
    );

    let on_time = evaluate(&h, &cal, first, &[start(t0), stop(due)], due);
    assert_eq!(on_time.status, ClockStatus::Met);
    assert_eq!(on_time.remaining_secs, 0);

    let late_stop = [start(t0), stop(bog(2026, 3, 2, 10, 1))];
    let late = evaluate(&h, &cal, first, &late_stop, bog(2026, 3, 3, 12, 0));
    assert_eq!(late.status, ClockStatus::Breached);
    assert_eq!(late.due_at, Some(due));
    assert_eq!((late.remaining_secs, late.overdue_secs), (0, 60));

    // Running past the due time is breached before anyone stops it; exactly at it, not yet.
    let running = evaluate(&h, &cal, first, &[start(t0)], bog(2026, 3, 2, 10, 30));
    assert_eq!(running.status, ClockStatus::Breached);
    assert_eq!(running.due_at, Some(due));
    assert_eq!(running.overdue_secs, 30 * 60);
    let at_due = evaluate(&h, &cal, first, &[start(t0)], due);
    assert_eq!(at_due.status, ClockStatus::Running);
    assert_eq!(at_due.remaining_secs, 0);

    // A breach survives a later pause and stop.
    let hidden = [
        start(t0),
        pause(bog(2026, 3, 2, 11, 0)),
        resume(bog(2026, 3, 3, 9, 0)),
        stop(bog(2026, 3, 3, 9, 5)),
    ];
    let s = evaluate(&h, &cal, first, &hidden[..2], bog(2026, 3, 2, 12, 0));
    assert_eq!((s.status, s.due_at), (ClockStatus::Breached, Some(due)));
    let s = evaluate(&h, &cal, first, &hidden, bog(2026, 3, 4, 12, 0));
    assert_eq!((s.status, s.due_at), (ClockStatus::Breached, Some(due)));
    assert_eq!(s.overdue_secs, (60 + 5) * 60);

    // Due at closing time, answered after closing: late by the wall clock, though no business
    // time passed after the target.
    let evening = [start(bog(2026, 3, 2, 16, 0)), stop(bog(2026, 3, 2, 17, 30))];
    let s = evaluate(&h, &cal, first, &evening, bog(2026, 3, 3, 9, 0));
    assert_eq!(s.status, ClockStatus::Breached);
    assert_eq!(s.due_at, Some(bog(2026, 3, 2, 17, 0)));
    assert_eq!((s.elapsed_secs, s.overdue_secs), (3600, 0));

    // Stopped while waiting on the customer, before the due time: met.
    let closed_while_paused = [
        start(t0),
        pause(bog(2026, 3, 2, 9, 30)),
        stop(bog(2026, 3, 5, 9, 0)),
    ];
    let s = evaluate(&h, &cal, first, &closed_while_paused, bog(2026, 3, 9, 9, 0));
    assert_eq!(s.status, ClockStatus::Met);
    assert_eq!(s.elapsed_secs, 30 * 60);
}

#[test]
fn fraction_and_warning_instants() {
    let (h, cal) = (WorkingHours::default(), cal());
    let (_, resolution) = sla_targets(Priority::Critical);
    let events = [start(bog(2026, 3, 2, 16, 0))];
    let at = |f: f64| instant_of_fraction(&h, &cal, resolution, &events, f);
    assert_eq!(at(0.5), Some(bog(2026, 3, 3, 9, 0)));
    assert_eq!(at(0.75), Some(bog(2026, 3, 3, 10, 0)));
    assert_eq!(at(0.9), Some(bog(2026, 3, 3, 10, 36)));
    assert_eq!(at(1.0), Some(bog(2026, 3, 3, 11, 0)));
    assert_eq!(at(0.0), Some(bog(2026, 3, 2, 16, 0)));
    assert_eq!(at(-3.0), Some(bog(2026, 3, 2, 16, 0)));
    assert_eq!(at(f64::NAN), None);
    assert!(at(f64::INFINITY).unwrap() > bog(9999, 1, 1, 0, 0));

    let s = evaluate(&h, &cal, resolution, &events, bog(2026, 3, 3, 9, 0));
    assert_eq!(s.fraction, 0.5);
    assert_eq!(s.due_at, at(1.0));
    let s = evaluate(&h, &cal, resolution, &events, bog(2026, 3, 3, 10, 36));
    assert!((s.fraction - 0.9).abs() < 1e-12);
    let s = evaluate(&h, &cal, resolution, &events, bog(2026, 3, 3, 13, 0));
    assert_eq!(s.fraction, 1.5);
    assert_eq!(s.status, ClockStatus::Breached);
    assert_eq!(at(1.0), s.due_at);

    // A fraction passed before a pause is reported as the past instant it was passed at.
    let resumed = [
        start(bog(2026, 3, 2, 9, 0)),
        pause(bog(2026, 3, 2, 11, 30)),
        resume(bog(2026, 3, 2, 14, 0)),
    ];
    let at = |f: f64| instant_of_fraction(&h, &cal, hours(4), &resumed, f);
    assert_eq!(at(0.5), Some(bog(2026, 3, 2, 11, 0)));
    assert_eq!(at(0.75), Some(bog(2026, 3, 2, 14, 30)));
    assert_eq!(at(1.0), Some(bog(2026, 3, 2, 15, 30)));

    // Only running clocks have warning instants.
    let none = |events: &[ClockEvent]| instant_of_fraction(&h, &cal, hours(4), events, 0.5);
    assert_eq!(none(&[]), None);
    assert_eq!(none(&resumed[..2]), None);
    assert_eq!(
        none(&[start(bog(2026, 3, 2, 9, 0)), stop(bog(2026, 3, 2, 10, 0))]),
        None
    );

    // Zero target: reached as soon as started.
    let zero = evaluate(&h, &cal, Duration::ZERO, &[], bog(2026, 3, 2, 9, 0));
    assert_eq!((zero.status, zero.fraction), (ClockStatus::NotStarted, 0.0));
    let zero = evaluate(
        &h,
        &cal,
        Duration::ZERO,
        &[start(bog(2026, 3, 2, 9, 0))],
        bog(2026, 3, 2, 9, 0),
    );
    assert_eq!(zero.fraction, 1.0);
}

#[test]
fn extensions_move_the_due_time_only_before_it() {
    let (h, cal) = (WorkingHours::default(), cal());
    let t0 = bog(2026, 3, 2, 9, 0);
    let in_time = [start(t0), extend(bog(2026, 3, 2, 9, 30), hours(2))];
    let s = evaluate(&h, &cal, hours(1), &in_time, bog(2026, 3, 2, 10, 30));
    assert_eq!(s.status, ClockStatus::Running);
    assert_eq!(s.due_at, Some(bog(2026, 3, 2, 12, 0)));
    assert_eq!(s.remaining_secs, 90 * 60);
    assert!((s.fraction - 0.5).abs() < 1e-12);

    // Granted while paused or before the start: counts.
    let paused = [
        extend(t0, mins(30)),
        start(t0),
        pause(bog(2026, 3, 2, 9, 15)),
        extend(bog(2026, 3, 2, 12, 0), mins(30)),
        resume(bog(2026, 3, 3, 8, 0)),
    ];
    let s = evaluate(&h, &cal, hours(1), &paused, bog(2026, 3, 3, 8, 0));
    assert_eq!(s.due_at, Some(bog(2026, 3, 3, 9, 45)));

    // Too late (at or after the due time): ignored, the breach stays.
    for late_at in [bog(2026, 3, 2, 10, 0), bog(2026, 3, 2, 10, 30)] {
        let late = [start(t0), extend(late_at, hours(8))];
        let s = evaluate(&h, &cal, hours(1), &late, bog(2026, 3, 2, 11, 0));
        assert_eq!(s.status, ClockStatus::Breached, "{late_at}");
        assert_eq!(s.due_at, Some(bog(2026, 3, 2, 10, 0)));
    }
}

#[test]
fn add_zero() {
    let (h, cal) = (WorkingHours::default(), cal());
    let inside = bog(2026, 3, 3, 10, 17) + TimeDelta::nanoseconds(123_456_789);
    assert_eq!(h.add(&cal, inside, Duration::ZERO), inside);
    let opening = bog(2026, 3, 3, 8, 0);
    assert_eq!(h.add(&cal, opening, Duration::ZERO), opening);
    // Before opening, at closing (closed), after closing, on Friday evening.
    assert_eq!(h.add(&cal, bog(2026, 3, 3, 6, 0), Duration::ZERO), opening);
    assert_eq!(
        h.add(&cal, bog(2026, 3, 3, 17, 0), Duration::ZERO),
        bog(2026, 3, 4, 8, 0)
    );
    assert_eq!(
        h.add(&cal, bog(2026, 3, 6, 20, 0), Duration::ZERO),
        bog(2026, 3, 9, 8, 0)
    );
    // Business time that runs out exactly at closing is due at closing.
    assert_eq!(h.add(&cal, opening, hours(9)), bog(2026, 3, 3, 17, 0));
    assert_eq!(
        h.add(&cal, opening, hours(9) + mins(1)),
        bog(2026, 3, 4, 8, 1)
    );
}

#[test]
fn between_basics() {
    let (h, cal) = (WorkingHours::default(), cal());
    let a = bog(2026, 3, 2, 9, 0);
    assert_eq!(h.between(&cal, a, a), Duration::ZERO);
    assert_eq!(h.between(&cal, bog(2026, 3, 3, 9, 0), a), Duration::ZERO);
    assert_eq!(h.between(&cal, a, bog(2026, 3, 2, 20, 0)), hours(8));
    assert_eq!(
        h.between(&cal, bog(2026, 3, 7, 0, 0), bog(2026, 3, 9, 0, 0)),
        Duration::ZERO
    );
    // A whole year: 9 h per business day of the calendar.
    let days = cal.business_days_between(ymd(2025, 12, 31), ymd(2026, 12, 31));
    assert_eq!(
        h.between(&cal, bog(2026, 1, 1, 0, 0), bog(2027, 1, 1, 0, 0)),
        hours(9 * u64::from(days))
    );
}

#[test]
fn custom_hours_saturday_mornings() {
    let cal = cal();
    let h = WorkingHours::parse("mon,tue,wed,thu,fri,sat 07:30-12:30 -05:00").unwrap();
    assert_eq!(h.days.len(), 6);
    assert_eq!(h.to_string(), "mon-sat 07:30-12:30 -05:00");
    assert_eq!(WorkingHours::parse(&h.to_string()).unwrap(), h);
    assert_eq!(WorkingHours::parse("lun-vie,sáb 07:30-12:30").unwrap(), h);
    assert_eq!(WorkingHours::parse("Mon-Sat 07:30-12:30 -0500").unwrap(), h);
    // Friday 12:00 + 1 h: 30 min Friday, 30 min Saturday.
    assert_eq!(
        h.add(&cal, bog(2026, 3, 6, 12, 0), hours(1)),
        bog(2026, 3, 7, 8, 0)
    );
    // Saturday 12:00 + 1 h: 30 min Saturday, 30 min Monday.
    assert_eq!(
        h.add(&cal, bog(2026, 3, 7, 12, 0), hours(1)),
        bog(2026, 3, 9, 8, 0)
    );
    // A holiday on a working Saturday is not worked: Christmas 2027 is a Saturday.
    assert_eq!(ymd(2027, 12, 25).weekday(), Weekday::Sat);
    assert_eq!(
        h.add(&cal, bog(2027, 12, 24, 12, 0), hours(1)),
        bog(2027, 12, 27, 8, 0)
    );

    // Other offsets and days.
    let india = WorkingHours::parse("sun 09:00-18:00 +05:30").unwrap();
    assert_eq!(
        india.offset,
        FixedOffset::east_opt(5 * 3600 + 1800).unwrap()
    );
    assert_eq!(india.days, [Weekday::Sun]);
    let utc = WorkingHours::parse("mon-fri 08:00-17:00 Z").unwrap();
    assert_eq!(utc.offset, FixedOffset::east_opt(0).unwrap());
    assert_eq!(WorkingHours::parse("mon-fri 08:00-17:00 UTC").unwrap(), utc);
    assert_eq!(
        WorkingHours::parse("mon-fri 08:00:00-17:00:00").unwrap(),
        WorkingHours::default()
    );
}

#[test]
fn working_hours_errors() {
    let bad = [
        ("", "expected"),
        ("mon-fri", "expected"),
        ("mon-fri 08:00-17:00 -05:00 extra", "expected"),
        ("fri-mon 08:00-17:00", "backwards"),
        ("mon-fri 17:00-08:00", "before closing"),
        ("mon-fri 08:00-08:00", "before closing"),
        ("mon,mon 08:00-17:00", "more than once"),
        ("mon-fri,fri 08:00-17:00", "more than once"),
        ("xyz 08:00-17:00", "unknown day"),
        ("mon-fri 8-17", "invalid time"),
        ("mon-fri 08:00", "HH:MM-HH:MM"),
        ("mon-fri 08:00-25:00", "invalid time"),
        ("mon-fri 08:00-17:00 bogota", "UTC offset"),
        ("mon-fri 08:00-17:00 -05:99", "UTC offset"),
        ("mon-fri 08:00-17:00 +25:00", "UTC offset"),
        ("mon-fri 08:00-17:00 -5:00:00:00", "UTC offset"),
        ("mon-fri 08:00-17:00 +", "UTC offset"),
        ("mon-fri 08:00-17:00 -ñ", "UTC offset"),
    ];
    for (spec, needle) in bad {
        let err = WorkingHours::parse(spec).unwrap_err();
        assert!(err.contains(needle), "{spec:?}: {err}");
    }
    let offset = FixedOffset::west_opt(5 * 3600).unwrap();
    let t = |h: u32| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    assert!(
        WorkingHours::new(offset, vec![], t(8), t(17))
            .unwrap_err()
            .contains("at least one")
    );
    let sorted = WorkingHours::new(offset, vec![Weekday::Fri, Weekday::Mon], t(8), t(17)).unwrap();
    assert_eq!(sorted.days, [Weekday::Mon, Weekday::Fri]);
    let leap = NaiveTime::from_hms_nano_opt(16, 59, 59, 1_500_000_000).unwrap();
    assert!(WorkingHours::new(offset, vec![Weekday::Mon], t(8), leap).is_err());
}

#[test]
fn nonsensical_event_sequences_are_tolerated() {
    let (h, cal) = (WorkingHours::default(), cal());
    let t = |hh: u32, mm: u32| bog(2026, 3, 2, hh, mm);
    let target = hours(4);
    let now = t(16, 0);
    let eval = |events: &[ClockEvent]| evaluate(&h, &cal, target, events, now);
    let plain = eval(&[start(t(9, 0))]);
    assert_eq!(plain.elapsed_secs, 7 * 3600);

    // Resume without pause, a second start, pause while paused: ignored.
    assert_eq!(
        eval(&[start(t(9, 0)), resume(t(10, 0)), start(t(11, 0))]),
        plain
    );
    let double_pause = eval(&[
        start(t(9, 0)),
        pause(t(10, 0)),
        pause(t(11, 0)),
        resume(t(12, 0)),
    ]);
    assert_eq!(double_pause.elapsed_secs, 5 * 3600);
    // Nothing before the start, nothing after the stop.
    let s = eval(&[pause(t(8, 0)), stop(t(8, 30)), resume(t(8, 45))]);
    assert_eq!(s.status, ClockStatus::NotStarted);
    assert_eq!((s.elapsed_secs, s.remaining_secs), (0, 4 * 3600));
    let s = eval(&[
        start(t(9, 0)),
        stop(t(10, 0)),
        resume(t(11, 0)),
        start(t(12, 0)),
        stop(t(15, 0)),
        extend(t(15, 0), hours(1)),
    ]);
    assert_eq!((s.status, s.elapsed_secs), (ClockStatus::Met, 3600));
    // Timestamps going backwards count as the previous accepted event's instant.
    let s = eval(&[start(t(9, 0)), pause(t(10, 0)), resume(t(9, 30))]);
    assert_eq!(
        (s.status, s.elapsed_secs),
        (ClockStatus::Breached, 7 * 3600)
    );
    // Events after `now` are not seen yet.
    let s = eval(&[start(t(9, 0)), pause(t(17, 0))]);
    assert_eq!(s, plain);
    let s = eval(&[start(t(18, 0))]);
    assert_eq!(s.status, ClockStatus::NotStarted);
    // Empty.
    assert_eq!(eval(&[]).status, ClockStatus::NotStarted);
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn schedules() -> Vec<WorkingHours> {
    [
        "mon-fri 08:00-17:00 -05:00",
        "mon-sat 07:30-12:30 -05:00",
        "sat,sun 00:00-23:59:59 +14:00",
        "wed 22:00-23:30 -12:00",
        "mon-sun 00:00-00:00:01 +05:30",
    ]
    .iter()
    .map(|s| WorkingHours::parse(s).unwrap())
    .collect()
}

/// A random instant in 2024–2028, sometimes on a round minute (to hit boundaries exactly).
fn random_instant(rng: &mut Rng) -> DateTime<Utc> {
    let base = bog(2024, 1, 1, 0, 0);
    let secs = rng.below(5 * 365 * 86_400) as i64;
    let t = base + TimeDelta::seconds(secs);
    match rng.below(3) {
        0 => t.with_second(0).unwrap().with_minute(0).unwrap(),
        1 => t,
        _ => t + TimeDelta::nanoseconds(rng.below(1_000_000_000) as i64),
    }
}

/// Business time by brute force: every day of the span, one at a time.
fn oracle_between(
    h: &WorkingHours,
    cal: &BusinessCalendar,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Duration {
    let (a, b) = (
        from.with_timezone(&h.offset).naive_local(),
        to.with_timezone(&h.offset).naive_local(),
    );
    let mut total = TimeDelta::zero();
    let mut day = a.date();
    while day <= b.date() {
        if h.days.contains(&day.weekday()) && !cal.is_holiday(day) {
            let open = day.and_time(h.start).max(a);
            let close = day.and_time(h.end).min(b);
            if close > open {
                total += close - open;
            }
        }
        day = day.succ_opt().unwrap();
    }
    total.to_std().unwrap()
}

#[test]
fn between_inverts_add_and_matches_brute_force() {
    let cal = cal();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for h in schedules() {
        let day_len = (h.end - h.start).to_std().unwrap();
        for i in 0..400 {
            let a = random_instant(&mut rng);
            let d = match i % 4 {
                0 => Duration::from_secs(rng.below(3 * 3600)),
                1 => Duration::from_secs(rng.below(60 * 3600)),
                2 => day_len * (1 + rng.below(20) as u32),
                // Up to ~2000 working days: several years, through the whole-year steps.
                _ => Duration::new(rng.below(600 * 3600), rng.below(1_000_000_000) as u32)
                    .min(day_len * 2000),
            };
            let b = h.add(&cal, a, d);
            assert!(b >= a, "{h} {a} {d:?}");
            assert_eq!(
                h.between(&cal, a, b),
                d,
                "{h} from {a} adding {d:?} gave {b}"
            );
            // The earliest such instant: one nanosecond less is not enough.
            if !d.is_zero() {
                let before = b - TimeDelta::nanoseconds(1);
                assert!(h.between(&cal, a, before) < d, "{h} {a} {d:?}");
            }
            // Additive: adding in two steps lands in the same place (when the middle is not a
            // closing time, where a zero-length step would jump to the next opening).
            let part = Duration::from_nanos(rng.below(d.as_nanos() as u64 + 1));
            let mid = h.add(&cal, a, part);
            if h.between(&cal, a, mid) == part && !part.is_zero() && part != d {
                assert_eq!(h.add(&cal, mid, d - part), b, "{h} {a} {part:?} {d:?}");
            }
            // Monotonic in the amount.
            assert!(h.add(&cal, a, part) <= b);
        }
        for _ in 0..60 {
            let a = random_instant(&mut rng);
            let b = a + TimeDelta::seconds(rng.below(800 * 86_400) as i64);
            assert_eq!(
                h.between(&cal, a, b),
                oracle_between(&h, &cal, a, b),
                "{h} {a} {b}"
            );
        }
    }
}

#[test]
fn huge_and_extreme_inputs_saturate_without_panicking() {
    let cal = cal();
    let far = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
    let min = DateTime::<Utc>::MIN_UTC;
    let max = DateTime::<Utc>::MAX_UTC;
    for h in schedules() {
        assert_eq!(h.add(&cal, bog(2026, 3, 2, 9, 0), Duration::MAX), far);
        assert_eq!(h.add(&cal, max, hours(1)), max);
        assert_eq!(h.add(&cal, far, hours(1)), far);
        assert!(h.add(&cal, min, hours(1)) > min);
        assert_eq!(h.between(&cal, max, min), Duration::ZERO);
        // Counted from year 1 to 9999 at least a second a day.
        let all = h.between(&cal, min, max);
        assert!(all > Duration::from_secs(9000 * 52), "{h} {all:?}");
        // A thousand years of business time is computed per year, not per day.
        let thousand = Duration::from_secs(1000 * 365 * 86_400);
        let end = h.add(&cal, bog(2026, 3, 2, 9, 0), thousand);
        assert!(end > bog(3000, 1, 1, 0, 0) && end <= far, "{h} {end}");
        if end < far {
            assert_eq!(h.between(&cal, bog(2026, 3, 2, 9, 0), end), thousand);
        }
    }
    // Hand-built values that `new` would reject: no business time at all.
    let h = WorkingHours::default();
    let empty = WorkingHours {
        days: vec![],
        ..h.clone()
    };
    let backwards = WorkingHours {
        start: h.end,
        end: h.start,
        ..h.clone()
    };
    let duplicated = WorkingHours {
        days: vec![Weekday::Mon, Weekday::Mon],
        ..h.clone()
    };
    let a = bog(2026, 3, 2, 9, 0);
    for odd in [&empty, &backwards] {
        assert_eq!(odd.add(&cal, a, hours(1)), far);
        assert_eq!(odd.add(&cal, a, Duration::ZERO), far);
        assert_eq!(odd.between(&cal, a, bog(2027, 1, 1, 0, 0)), Duration::ZERO);
        let s = evaluate(odd, &cal, hours(1), &[start(a)], bog(2027, 1, 1, 0, 0));
        assert_eq!((s.status, s.due_at), (ClockStatus::Running, Some(far)));
    }
    assert_eq!(duplicated.between(&cal, a, bog(2026, 3, 3, 9, 0)), hours(8));
}

#[test]
fn random_event_sequences_never_panic_and_stay_consistent() {
    let cal = cal();
    let mut rng = Rng(0xC10C_0000_0000_0042);
    let extremes = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        DateTime::<Utc>::UNIX_EPOCH,
    ];
    let hours_list = schedules();
    for round in 0..1000 {
        let h = &hours_list[round % hours_list.len()];
        let pick_time = |rng: &mut Rng| {
            if rng.below(40) == 0 {
                extremes[rng.below(extremes.len() as u64) as usize]
            } else {
                bog(2026, 3, 2, 0, 0) + TimeDelta::minutes(rng.below(30 * 24 * 60) as i64)
            }
        };
        let n = rng.below(9) as usize;
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            let at = pick_time(&mut rng);
            events.push(match rng.below(5) {
                0 => start(at),
                1 => pause(at),
                2 => resume(at),
                3 => stop(at),
                _ => extend(
                    at,
                    if rng.below(20) == 0 {
                        Duration::MAX
                    } else {
                        mins(rng.below(600))
                    },
                ),
            });
        }
        let target = match rng.below(20) {
            0 => Duration::ZERO,
            1 => Duration::MAX,
            _ => mins(rng.below(3000)),
        };
        let now = pick_time(&mut rng);
        let s = evaluate(h, &cal, target, &events, now);
        assert!(s.remaining_secs == 0 || s.overdue_secs == 0, "{s:?}");
        assert!(s.fraction >= 0.0 && !s.fraction.is_nan(), "{s:?}");
        match s.status {
            ClockStatus::NotStarted => {
                assert_eq!((s.elapsed_secs, s.due_at), (0, None));
            }
            ClockStatus::Running => {
                assert!(
                    s.due_at.is_some_and(|due| due >= now),
                    "{s:?} {events:?} {now}"
                );
                assert_eq!(s.overdue_secs, 0);
            }
            ClockStatus::Breached => {
                assert!(
                    s.due_at.is_some_and(|due| due < now),
                    "{s:?} {events:?} {now}"
                );
            }
            ClockStatus::Paused | ClockStatus::Met => assert_eq!(s.due_at, None),
        }
        for f in [0.0, 0.5, 0.9, 1.0, 2.0, -1.0, f64::NAN, f64::INFINITY] {
            let at = instant_of_fraction(h, &cal, target, &events, f);
            if f == 1.0 && at.is_some() {
                // With every event seen, a running clock's due time is the 100 % instant.
                let last = events.iter().map(event_at).max().unwrap();
                let s = evaluate(h, &cal, target, &events, last);
                if matches!(s.status, ClockStatus::Running | ClockStatus::Breached) {
                    assert_eq!(at, s.due_at, "{events:?}");
                }
            }
        }
    }
}

fn event_at(e: &ClockEvent) -> DateTime<Utc> {
    match e {
        ClockEvent::Start { at }
        | ClockEvent::Pause { at }
        | ClockEvent::Resume { at }
        | ClockEvent::Extend { at, .. }
        | ClockEvent::Stop { at } => *at,
    }
}
