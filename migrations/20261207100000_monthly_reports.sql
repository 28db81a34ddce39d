-- The analysis staff write for each month's customer-service report (SGC-SAC-001 REG-003). Every
-- save is a new version that is never edited, so the report can say who wrote what, and when.
create table monthly_report_analyses (
    month date not null check (extract(day from month) = 1),
    version integer not null check (version > 0),
    body text not null check (length(body) between 1 and 20000),
    author_id uuid not null references users (id),
    created_at timestamptz not null default now(),
    primary key (month, version)
);

create function monthly_report_analyses_frozen() returns trigger
language plpgsql as $$
begin
    raise exception 'a saved analysis is never changed; save a new version'
        using errcode = 'check_violation', constraint = 'monthly_report_analyses_frozen';
end
$$;
create trigger monthly_report_analyses_frozen
    before update or delete on monthly_report_analyses
    for each row execute function monthly_report_analyses_frozen();
