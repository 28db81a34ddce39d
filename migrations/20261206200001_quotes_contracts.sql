-- The commercial register of PRO-008: quotes (§5.1.3) and the contracts they become (§5.2), with
-- the renewal offered before a contract ends and its outcome (§5.5, the retention indicator).

-- The commercial process is alerted of renewals due; it is created here when it is not there yet
-- (ATIENDE_COMMERCIAL_PROCESS names another code when the company uses one).
insert into processes (code, name) values ('COMERCIAL', 'Comercial') on conflict (code) do nothing;

create table quotes (
    id uuid primary key,
    customer_id uuid not null references customers (id),
    -- One line per service quoted.
    services text[] not null check (cardinality(services) between 1 and 50),
    -- Colombian pesos, whole: prices are quoted without cents.
    amount_cop bigint not null check (amount_cop between 0 and 999999999999),
    sent_on date not null,
    follow_up_on date check (follow_up_on >= sent_on),
    outcome text check (outcome in ('accepted', 'rejected', 'expired')),
    outcome_at timestamptz,
    outcome_by uuid references users (id),
    outcome_note text,
    created_by uuid not null references users (id),
    created_at timestamptz not null default now(),
    check ((outcome is null) = (outcome_at is null))
);
create index quotes_customer_idx on quotes (customer_id, sent_on desc);
create index quotes_sent_idx on quotes (sent_on);
create index quotes_outcome_idx on quotes (outcome_at) where outcome_at is not null;

create table contracts (
    id uuid primary key,
    customer_id uuid not null references customers (id),
    services text[] not null check (cardinality(services) between 1 and 50),
    visit_frequency text not null check (visit_frequency in (
        'weekly', 'biweekly', 'monthly', 'bimonthly', 'quarterly', 'semiannual', 'annual', 'on_demand')),
    starts_on date not null,
    ends_on date not null check (ends_on >= starts_on),
    -- `active` until the renewal is decided: `renewed` or `not_renewed`.
    status text not null default 'active' check (status in ('active', 'renewed', 'not_renewed')),
    -- The accepted quote it came from, and the contract it renews: each at most once.
    quote_id uuid unique references quotes (id),
    renews_contract_id uuid unique references contracts (id),
    -- When the commercial process was alerted that the renewal is due (set once, by the scheduler).
    renewal_alerted_at timestamptz,
    renewal_offered_at timestamptz,
    renewal_offered_by uuid references users (id),
    renewal_offer_note text,
    renewal_decided_at timestamptz,
    renewal_decided_by uuid references users (id),
    not_renewed_reason text,
    created_by uuid not null references users (id),
    created_at timestamptz not null default now(),
    check ((status = 'active') = (renewal_decided_at is null)),
    check ((status = 'not_renewed') = (not_renewed_reason is not null)),
    check (renewal_decided_at is null or renewal_offered_at is not null)
);
create index contracts_customer_idx on contracts (customer_id, starts_on desc);
create index contracts_ends_idx on contracts (ends_on);
-- What the renewal scheduler looks for: active contracts not alerted yet, by end date.
create index contracts_renewal_due_idx on contracts (ends_on) where status = 'active' and renewal_alerted_at is null;
