-- Notifications: written to this outbox in the same transaction as the event that causes them,
-- then delivered by a worker (Web Push), retried, never lost and never sent twice for one event.

create table push_subscriptions (
    id uuid primary key,
    user_id uuid not null references users (id),
    endpoint text not null,
    p256dh text not null,
    auth text not null,
    created_at timestamptz not null default now(),
    constraint push_subscriptions_endpoint_key unique (endpoint)
);
create index push_subscriptions_user_idx on push_subscriptions (user_id);

create table notifications (
    id bigint generated always as identity primary key,
    -- One notification per cause and recipient, ever: the cause names itself here.
    dedupe_key text not null,
    case_id uuid references cases (id),
    user_id uuid not null references users (id),
    kind text not null check (kind in ('acknowledgement', 'extension', 'answer', 'deadline_warning', 'deadline_breach')),
    urgency text not null check (urgency in ('very-low', 'low', 'normal', 'high')),
    ttl_secs integer not null check (ttl_secs >= 0),
    -- What the texts are rendered from, in the recipient's language, at delivery.
    data jsonb not null,
    created_at timestamptz not null default now(),
    constraint notifications_dedupe_key unique (dedupe_key)
);
create index notifications_case_idx on notifications (case_id, id);

create table push_deliveries (
    id bigint generated always as identity primary key,
    notification_id bigint not null references notifications (id),
    subscription_id uuid references push_subscriptions (id) on delete set null,
    endpoint text not null,
    state text not null default 'pending' check (state in ('pending', 'sent', 'gone', 'failed')),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- A worker's claim; a crashed worker's claim lapses and another worker takes the delivery.
    locked_until timestamptz,
    last_status integer,
    last_error text,
    sent_at timestamptz,
    constraint push_deliveries_once unique (notification_id, endpoint)
);
create index push_deliveries_due_idx on push_deliveries (next_attempt_at) where state = 'pending';
