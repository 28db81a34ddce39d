-- Two clocks per case (DESIGN.md "Time"): the legal term in business days and the operational SLA
-- in business hours. Clocks are derived from these append-only events; the due columns on cases
-- are a cache of that derivation, rewritten in the same transaction as each event, for ordering
-- the queue and finding what is due with an index.

alter table cases drop constraint cases_status_check;
alter table cases add constraint cases_status_check
    check (status in ('received', 'assigned', 'in_approval', 'approved', 'answered', 'rated', 'waiting_customer'));
-- Where a case goes back to when the customer answers a request for information.
alter table cases add column resume_status text
    check (resume_status is null or resume_status in ('received', 'assigned'));
alter table cases add column first_response_due_at timestamptz;
alter table cases add column resolution_due_at timestamptz;
create index cases_resolution_due_idx on cases (resolution_due_at) where resolution_due_at is not null;

create table case_clock_events (
    id bigint generated always as identity primary key,
    case_id uuid not null references cases (id),
    clock text not null check (clock in ('legal', 'first_response', 'resolution')),
    kind text not null check (kind in ('start', 'pause', 'resume', 'extend', 'stop')),
    at timestamptz not null,
    -- A legal extension (prórroga) names the new due date.
    extend_to date,
    actor_id uuid references users (id),
    check ((kind = 'extend') = (extend_to is not null))
);
create index case_clock_events_case_idx on case_clock_events (case_id, id);
create trigger case_clock_events_no_update before update or delete on case_clock_events
    for each row execute function case_events_append_only();

-- Working hours of the operational SLA, one row, shared by every atiende process.
create table working_hours (
    id boolean primary key default true check (id),
    spec text not null
);
insert into working_hours (spec) values ('mon-fri 08:00-17:00 -05:00');

-- Cases filed before clocks existed start their clocks at filing.
insert into case_clock_events (case_id, clock, kind, at)
select c.id, k.clock, 'start', c.created_at
from cases c cross join (values ('legal'), ('first_response'), ('resolution')) as k (clock)
where c.status not in ('answered', 'rated');
