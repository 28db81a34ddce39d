-- Early warnings and breach alerts. Each running clock of an open case has one row per threshold
-- with the instant it is reached, rewritten whenever the clock's events change; the scheduler
-- claims the rows whose instant has passed, so finding due work reads an index, never the cases.

create table deadline_settings (
    id boolean primary key default true check (id),
    -- Percentages of each term at which the responsible people are warned; 100 is the breach.
    warning_percents smallint[] not null check (0 < all (warning_percents) and 100 > all (warning_percents))
);
insert into deadline_settings (warning_percents) values ('{50,75,90}');

create table deadline_alerts (
    case_id uuid not null references cases (id),
    clock text not null check (clock in ('legal', 'first_response', 'resolution')),
    percent smallint not null check (percent between 1 and 100),
    due_at timestamptz not null,
    fired_at timestamptz,
    primary key (case_id, clock, percent)
);
create index deadline_alerts_due_idx on deadline_alerts (due_at) where fired_at is null;
