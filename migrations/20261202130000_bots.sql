-- Chat channels (Telegram, WhatsApp): platform updates stored before the webhook answers,
-- conversations that survive a restart, contacts that are not verified customers, files sent by
-- customers without an app user, and deliveries that carry a conversation's own replies.

-- Phone numbers in E.164, the one normalisation every channel matches by: a number written with
-- a leading + keeps its country; 12 digits starting with 57 are already Colombian; anything else
-- is a Colombian national number (+57).
create function e164(raw text) returns text
language sql immutable parallel safe as $$
    select case
        when d = '' then null
        when btrim(raw) like '+%' then '+' || d
        when length(d) = 12 and d like '57%' then '+' || d
        else '+57' || d
    end
    from (select regexp_replace(coalesce(raw, ''), '[^0-9]', '', 'g') as d) x
$$;

-- A contact is a customer record nobody has verified: someone who gave, from a chat or the web
-- form, a document number that already belongs to a customer. It files and is answered like a
-- customer but is not joined to the customer whose number it typed until staff merge them; so the
-- document number stays unique among verified customers only.
alter table customers
    add column verified boolean not null default true,
    add column phone_e164 text generated always as (e164(phone)) stored;
alter table customers drop constraint customers_document_key;
create unique index customers_document_key on customers (document_type, document_number) where verified;
create index customers_phone_e164_idx on customers (phone_e164) where phone_e164 is not null;

-- Every platform update, stored before the webhook answers and processed from here: a crash after
-- the answer loses nothing, and an update the platform sends again is stored once.
create table bot_updates (
    id bigint generated always as identity primary key,
    channel text not null check (channel in ('telegram', 'whatsapp')),
    -- Telegram's update_id; WhatsApp's message or status id.
    update_key text not null check (length(update_key) between 1 and 200),
    -- The conversation it belongs to: a Telegram chat id, a WhatsApp number (E.164).
    chat_key text not null check (length(chat_key) between 1 and 64),
    -- The update as the platform sent it; dropped once processed.
    payload jsonb,
    received_at timestamptz not null default now(),
    processed_at timestamptz,
    -- Processing that failed (the database was away, a platform did not answer) is tried again
    -- later; an update that keeps failing is set aside so the chat's next ones go on.
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error text,
    constraint bot_updates_once unique (channel, update_key)
);
create index bot_updates_pending_idx on bot_updates (channel, chat_key, id) where processed_at is null;

-- Where each chat's conversation stands. A row is locked while one process works through that
-- chat's updates, so one chat's updates are handled in order and different chats in parallel.
create table bot_conversations (
    channel text not null check (channel in ('telegram', 'whatsapp')),
    chat_key text not null check (length(chat_key) between 1 and 64),
    language text not null default 'es' check (language in ('es', 'en')),
    -- The step and what the customer has given so far.
    state jsonb not null default '{"step": "new"}',
    -- The customer's chat, once the customer is known.
    chat_id uuid references customer_chats (id),
    -- The customer's last message: WhatsApp lets a business write freely for 24 hours after it.
    last_inbound_at timestamptz,
    updated_at timestamptz not null default now(),
    primary key (channel, chat_key)
);

-- Files a customer without an app user sent from a chat: theirs to attach to their cases.
alter table blobs alter column uploaded_by drop not null;
create table blob_customer_uploads (
    sha256 text not null references blobs (sha256),
    customer_id uuid not null references customers (id),
    uploaded_at timestamptz not null default now(),
    primary key (sha256, customer_id)
);
alter table case_attachments alter column attached_by drop not null;

-- A conversation's reply is a delivery without a notification: its message is in `payload`.
-- A chat's deliveries leave in order; `progress` counts the parts of a long message already sent.
alter table deliveries
    alter column notification_id drop not null,
    add column payload jsonb,
    add column progress integer not null default 0,
    -- The platform's id for the message sent (WhatsApp reports its fate later by this id).
    add column external_message_id text,
    add constraint deliveries_has_content check (notification_id is not null or payload is not null);
create index deliveries_chat_order_idx on deliveries (channel, target, id) where state = 'pending';
create index deliveries_external_idx on deliveries (channel, external_message_id) where external_message_id is not null;
