-- A web filing made with a document number that is already a customer's is stored under an
-- unverified contact; it moves to that customer only when the contact on file confirms it with a
-- one-time code (see `core::link_codes`).

-- The live code of each filing's case: one at a time, a new request replaces it. Only its digest is
-- kept. `sent_to` is the verified customer it went to, null when nothing was sent (the document is
-- no customer's, or the customer has no contact on file): the row is written either way, so asking
-- reads and costs the same.
create table link_codes (
    case_id uuid primary key references cases (id),
    -- The contact the case belonged to when the code was asked for: the one a right code merges.
    contact_id uuid not null references customers (id),
    sent_to uuid references customers (id),
    code_digest bytea not null,
    expires_at timestamptz not null,
    failed_attempts integer not null default 0 check (failed_attempts >= 0),
    used_at timestamptz,
    -- Codes asked for in the current window (a day from `window_start`).
    requests integer not null check (requests > 0),
    window_start timestamptz not null,
    -- The notification that carried the code: its copy of the code is blanked once the code is
    -- used or replaced.
    notification_id bigint references notifications (id),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- Who merged a contact: staff (`merged_by` names them) or the customer, by confirming a code sent
-- to their contact on file.
alter table customers add column merged_how text check (merged_how in ('staff', 'customer_code'));
update customers set merged_how = 'staff' where merged_into is not null;
alter table customers
    add constraint customers_merged_how check ((merged_into is null) = (merged_how is null)),
    add constraint customers_merged_by_staff check (merged_how is distinct from 'staff' or merged_by is not null);
