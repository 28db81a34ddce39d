-- Atiende foundation: customers, users and sessions, processes, PQRS cases with their append-only
-- event log, the radicado counter and the business calendar configuration.

create table customers (
    id uuid primary key,
    kind text not null check (kind in ('person', 'company')),
    document_type text not null check (document_type in ('CC', 'NIT', 'CE', 'PA')),
    document_number text not null check (document_number ~ '^[0-9A-Za-z-]{3,20}$'),
    name text not null check (length(name) between 1 and 200),
    email text,
    phone text,
    created_at timestamptz not null default now(),
    constraint customers_document_key unique (document_type, document_number)
);

-- Ley 1581 de 2012: every grant (or withdrawal) of data-processing consent is kept.
create table consents (
    id bigint generated always as identity primary key,
    customer_id uuid not null references customers (id),
    purpose text not null,
    channel text not null,
    policy_version text not null,
    granted boolean not null,
    recorded_at timestamptz not null default now()
);
create index consents_customer_idx on consents (customer_id, recorded_at);

create table users (
    id uuid primary key,
    email text not null,
    name text not null check (length(name) between 1 and 200),
    role text not null check (role in ('customer', 'technician', 'collaborator', 'process_leader', 'quality_director', 'admin')),
    customer_id uuid references customers (id),
    password_hash text not null,
    language text not null default 'es' check (language in ('es', 'en')),
    active boolean not null default true,
    created_at timestamptz not null default now(),
    check ((role = 'customer') = (customer_id is not null))
);
create unique index users_email_key on users (lower(email));

create table processes (
    code text primary key check (code ~ '^[A-Z][A-Z0-9_]{1,31}$'),
    name text not null check (length(name) between 1 and 200),
    leader_id uuid references users (id),
    created_at timestamptz not null default now()
);

create table process_members (
    process_code text not null references processes (code),
    user_id uuid not null references users (id),
    primary key (process_code, user_id)
);
create index process_members_user_idx on process_members (user_id);

-- Bearer tokens are stored only as their SHA-256 digest.
create table sessions (
    token_hash bytea primary key,
    user_id uuid not null references users (id),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz
);
create index sessions_user_idx on sessions (user_id);

create table login_failures (
    id bigint generated always as identity primary key,
    email text not null,
    failed_at timestamptz not null default now()
);
create index login_failures_email_idx on login_failures (lower(email), failed_at);

-- Legal answer terms per case type, in business days (Ley 1755 de 2015 art. 14).
create table legal_terms (
    case_type text primary key,
    business_days integer not null check (business_days between 1 and 365)
);
insert into legal_terms (case_type, business_days) values
    ('peticion', 15), ('queja', 15), ('reclamo', 15), ('sugerencia', 15), ('denuncia', 15),
    ('solicitud_informacion', 10), ('consulta', 30);

-- Admin corrections to the computed Colombian holidays.
create table holiday_overrides (
    date date primary key,
    kind text not null check (kind in ('add', 'remove')),
    name text,
    created_at timestamptz not null default now(),
    check ((kind = 'add') = (name is not null))
);

-- One row per year; the row lock serialises filings so numbers have no gaps, and a rolled-back
-- filing rolls its increment back with it.
create table radicado_counters (
    year integer primary key,
    last_number integer not null check (last_number >= 0)
);

create table cases (
    id uuid primary key,
    radicado text not null,
    type text not null check (type in ('peticion', 'queja', 'reclamo', 'sugerencia', 'denuncia', 'solicitud_informacion', 'consulta')),
    subject text not null,
    description text not null,
    channel text not null check (channel in ('app', 'telegram', 'whatsapp', 'web', 'phone', 'email')),
    customer_id uuid not null references customers (id),
    filed_by uuid references users (id),
    request_hash bytea not null,
    status text not null check (status in ('received', 'assigned', 'in_approval', 'approved', 'answered', 'rated')),
    impact text not null check (impact in ('high', 'medium', 'low')),
    urgency text not null check (urgency in ('high', 'medium', 'low')),
    priority text not null check (priority in ('critical', 'high', 'medium', 'low')),
    process_code text references processes (code),
    assignee_id uuid references users (id),
    answer text,
    in_favor_of_customer boolean,
    outcome text,
    rating_score smallint check (rating_score between 1 and 5),
    rating_comment text,
    legal_term_days integer not null,
    legal_due_date date not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    answered_at timestamptz,
    rated_at timestamptz,
    constraint cases_radicado_key unique (radicado)
);
create index cases_customer_idx on cases (customer_id, created_at desc, id desc);
create index cases_queue_idx on cases (status, legal_due_date, id);
create index cases_process_idx on cases (process_code, status);
create index cases_assignee_idx on cases (assignee_id, status);

-- ISO 10002 traceability: every transition is appended, never updated or deleted.
create table case_events (
    id bigint generated always as identity primary key,
    case_id uuid not null references cases (id),
    actor_id uuid references users (id),
    actor_role text not null,
    at timestamptz not null default now(),
    kind text not null,
    from_status text,
    to_status text,
    comment text,
    visible_to_customer boolean not null
);
create index case_events_case_idx on case_events (case_id, id);

create function case_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'case_events is append-only';
end $$;
create trigger case_events_no_update before update or delete on case_events
    for each row execute function case_events_append_only();

create table case_messages (
    id uuid primary key,
    case_id uuid not null references cases (id),
    author_id uuid not null references users (id),
    from_staff boolean not null,
    body text not null,
    created_at timestamptz not null default now()
);
create index case_messages_case_idx on case_messages (case_id, created_at);
