-- Work orders and their field reports, the customers' outbox and inbox documents, and the queues
-- through which the server projects synced documents into rows (and rows into the inbox).

-- A technicians' visit to a customer. Its field report is one sync document, edited offline by
-- the assigned technicians and projected into `field_reports` after every stored change.
create table work_orders (
    id uuid primary key,
    customer_id uuid not null references customers (id),
    process_code text not null references processes (code),
    address text not null check (length(address) between 1 and 500),
    scheduled_at timestamptz not null,
    service_type text not null check (length(service_type) between 1 and 100),
    status text not null default 'scheduled' check (status in ('scheduled', 'completed')),
    report_document_id text not null unique references sync_documents (document_id),
    created_by uuid not null references users (id),
    created_at timestamptz not null default now(),
    completed_at timestamptz,
    check ((status = 'completed') = (completed_at is not null))
);
create index work_orders_customer_idx on work_orders (customer_id, scheduled_at);

create table work_order_technicians (
    work_order_id uuid not null references work_orders (id),
    user_id uuid not null references users (id),
    assigned_at timestamptz not null default now(),
    primary key (work_order_id, user_id)
);
create index work_order_technicians_user_idx on work_order_technicians (user_id);

-- The last valid content of each field report. When the document holds content that does not
-- validate, these columns keep the last valid projection and `projection_error` says why.
create table field_reports (
    work_order_id uuid primary key references work_orders (id),
    arrival_at timestamptz,
    departure_at timestamptz,
    treatment_type text,
    areas_treated text[] not null default '{}',
    target_pest text,
    observations text,
    recommendations text,
    photos text[] not null default '{}',
    signature_blob text,
    signed_by text,
    completed boolean not null default false,
    -- The document heads the columns above reflect (empty before the first projection).
    heads text[] not null default '{}',
    projected_at timestamptz,
    projection_error text,
    error_heads text[],
    error_at timestamptz
);

create table field_report_products (
    work_order_id uuid not null references work_orders (id),
    position integer not null check (position >= 0),
    name text not null,
    active_ingredient text,
    registration_number text,
    lot text,
    quantity numeric,
    unit text,
    dose text,
    primary key (work_order_id, position)
);

-- Each customer's two documents: the outbox they write PQRS drafts and ratings into, and the
-- inbox only the server writes (radicados, statuses, answers, rating prompts).
create table customer_documents (
    customer_id uuid primary key references customers (id),
    outbox_document_id text not null unique references sync_documents (document_id),
    inbox_document_id text not null unique references sync_documents (document_id),
    created_at timestamptz not null default now()
);

-- What the server did with each draft of an outbox (keyed by the device's UUID, which becomes
-- the case id): filed once, or refused with a reason the inbox shows.
create table outbox_drafts (
    id uuid primary key,
    customer_id uuid not null references customers (id),
    case_id uuid references cases (id),
    error_code text,
    error text,
    -- The draft content last looked at: a corrected draft is tried again, an unchanged one is not.
    content_hash bytea not null,
    processed_at timestamptz not null default now(),
    check ((case_id is null) = (error_code is not null))
);

-- Documents whose stored content changed since they were last projected. Filled by a trigger on
-- `sync_changes`, so no stored change is ever missed. A worker leases a row (a short statement,
-- so storing changes never waits for a projection), does the work, and deletes the row only if
-- no change came meanwhile (`queued_at` unchanged); a worker that dies leaves a lease that lapses.
-- A document is projected once `since` is a moment old, so a burst of changes costs one projection.
create table sync_projection_queue (
    document_id text primary key references sync_documents (document_id),
    queued_at timestamptz not null default clock_timestamp(),
    since timestamptz not null default clock_timestamp(),
    leased_until timestamptz
);

create function sync_changes_queue_projection() returns trigger language plpgsql as $$
begin
    -- A field report projects into its work order's rows; one without a work order has none.
    insert into sync_projection_queue (document_id)
    select d.document_id from sync_documents d
    where d.document_id = new.document_id
      and (d.kind = 'customer_outbox'
           or (d.kind = 'field_report'
               and exists (select 1 from work_orders w where w.report_document_id = d.document_id)))
    on conflict (document_id) do update set queued_at = clock_timestamp(), leased_until = null;
    return null;
end $$;
create trigger sync_changes_projection after insert on sync_changes
    for each row execute function sync_changes_queue_projection();

-- Cases whose state changed since it was last written into their customer's inbox; worked the
-- same way as the projection queue.
create table sync_inbox_queue (
    case_id uuid primary key references cases (id),
    queued_at timestamptz not null default clock_timestamp(),
    since timestamptz not null default clock_timestamp(),
    leased_until timestamptz
);

create function case_events_queue_inbox() returns trigger language plpgsql as $$
begin
    insert into sync_inbox_queue (case_id) values (new.case_id)
    on conflict (case_id) do update set queued_at = clock_timestamp(), leased_until = null;
    return null;
end $$;
create trigger case_events_inbox after insert on case_events
    for each row execute function case_events_queue_inbox();
