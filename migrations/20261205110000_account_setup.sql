-- App users the company creates for its customers (PRO-SIG-10: the company assigns each customer a
-- user). Such a user has no password until the customer sets one through a single-use link sent to
-- their e-mail; only customers' users may be without one.
alter table users
    alter column password_hash drop not null,
    add constraint users_password_set_check check (password_hash is not null or role = 'customer');

-- One link per row. The token is made when the e-mail is written and only its SHA-256 is kept
-- (`token_hash`), so the secret is never stored in clear; a fresh link replaces the live one.
create table account_setups (
    id uuid primary key,
    user_id uuid not null references users (id),
    -- The staff member who asked for it; null from the command line.
    created_by uuid references users (id),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    token_hash bytea unique,
    issued_at timestamptz,
    used_at timestamptz,
    replaced_at timestamptz,
    check (expires_at > created_at)
);
create unique index account_setups_live_key on account_setups (user_id)
    where used_at is null and replaced_at is null;

-- What a customer reads: the language recorded on the customer, else their first app user's, else
-- Spanish.
create function customer_language(customer uuid) returns text language sql stable as $$
    select coalesce(
        (select c.language from customers c where c.id = customer),
        (select u.language from users u
         where u.customer_id = customer and u.active
         order by u.created_at limit 1),
        'es')
$$;
