-- WhatsApp: a business may write freely only within 24 hours of the customer's last message.
-- Outside that window a notification goes as a template inviting a reply, and the message itself
-- waits (`waiting`) until the customer writes; while one waits, the chat's later messages wait
-- behind it, in order.
alter table deliveries
    drop constraint deliveries_state_check,
    add constraint deliveries_state_check
        check (state in ('pending', 'waiting', 'sent', 'gone', 'failed', 'cancelled'));
drop index deliveries_chat_order_idx;
create index deliveries_chat_order_idx on deliveries (channel, target, id)
    where state in ('pending', 'waiting');

-- What a platform later reports of a message it accepted (WhatsApp's status webhooks): `sent`,
-- `delivered`, `read`, or `failed` with the platform's reason. Kept apart from the delivery so a
-- report that arrives before the send's own answer is recorded is not lost; joined by the
-- platform's message id.
create table delivery_receipts (
    channel text not null check (channel in ('telegram', 'whatsapp')),
    external_message_id text not null check (length(external_message_id) between 1 and 200),
    status text not null check (status in ('sent', 'delivered', 'read', 'failed')),
    -- The platform's error code and title, for `failed`.
    error text check (length(error) <= 1000),
    reported_at timestamptz not null,
    received_at timestamptz not null default now(),
    primary key (channel, external_message_id, status)
);
