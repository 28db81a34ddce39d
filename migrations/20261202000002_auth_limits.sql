-- Login limits counted atomically, per key, in fixed windows: one row per key, incremented with an
-- upsert that locks it. Keys name what is limited: an e-mail at one client address, a client
-- address, an e-mail from anywhere (see the README, "Login limits").
create table login_throttle (
    key text primary key,
    window_started_at timestamptz not null,
    attempts integer not null check (attempts >= 0)
);
create index login_throttle_window_idx on login_throttle (window_started_at);

-- Replaced by login_throttle.
drop table login_failures;

-- Short-lived tickets that open a sync WebSocket, stored only as their SHA-256 digest. A ticket
-- is as good as its session: it dies with it.
create table sync_tickets (
    ticket_hash bytea primary key,
    session_hash bytea not null references sessions (token_hash) on delete cascade,
    expires_at timestamptz not null
);
create index sync_tickets_session_idx on sync_tickets (session_hash);
create index sync_tickets_expires_idx on sync_tickets (expires_at);

-- The purge job deletes sessions that ended long ago.
create index sessions_expires_idx on sessions (expires_at);
