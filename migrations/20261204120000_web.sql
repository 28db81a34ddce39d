-- The public web form (`/pqrs`).

-- POSTs per client address in fixed windows, shared by every server process: a client over the
-- limit is told when to come back, nobody is locked out for longer than a window.
create table web_post_counts (
    address text not null,
    window_start timestamptz not null,
    posts integer not null,
    primary key (address, window_start)
);
create index web_post_counts_window_idx on web_post_counts (window_start);

-- The contact each web filing registered, keyed by the filing id the form carried: the same form
-- posted twice registers once and files once.
create table web_filings (
    filing_id uuid primary key,
    customer_id uuid not null references customers (id),
    created_at timestamptz not null default now()
);
