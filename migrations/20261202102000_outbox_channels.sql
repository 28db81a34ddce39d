-- One outbox, several channels, and customers without an app user.
--
-- A notification's recipient is a staff or app user, or a customer (with or without app users).
-- Inserting a notification fans it out (the trigger below, the one place that does) into one
-- delivery per channel target: Web Push subscriptions, and the customer's chats. One worker loop
-- claims, sends and records every channel's deliveries.

-- A chat on a messaging platform that belongs to one customer; a customer may have several.
create table customer_chats (
    id uuid primary key,
    customer_id uuid not null references customers (id),
    channel text not null check (channel in ('telegram', 'whatsapp')),
    -- The platform's id for the chat: a Telegram chat id, a WhatsApp number (E.164).
    external_id text not null check (length(external_id) between 1 and 64),
    language text not null default 'es' check (language in ('es', 'en')),
    -- The customer asked here for news of their cases filed elsewhere too.
    follows_all_cases boolean not null default false,
    -- STOP: nothing but what concerns the customer's own cases filed from this chat.
    opted_out_at timestamptz,
    created_at timestamptz not null default now(),
    constraint customer_chats_external_key unique (channel, external_id),
    constraint customer_chats_id_customer_key unique (id, customer_id)
);
create index customer_chats_customer_idx on customer_chats (customer_id);

-- The chat a case was filed from (one of its customer's): what the customer must hear about the
-- case leaves by that door.
alter table cases
    add column chat_id uuid,
    add constraint cases_chat_fkey foreign key (chat_id, customer_id) references customer_chats (id, customer_id);

-- Messages written by a customer who has no app user (a chat, the web form).
alter table case_messages
    alter column author_id drop not null,
    add column author_customer_id uuid references customers (id),
    add constraint case_messages_one_author check ((author_id is null) <> (author_customer_id is null));

alter table notifications
    alter column user_id drop not null,
    add column customer_id uuid references customers (id),
    add constraint notifications_one_recipient check ((user_id is null) <> (customer_id is null)),
    -- A notification that should not leave before then (the rating prompt follows the answer).
    add column not_before timestamptz,
    drop constraint notifications_kind_check,
    add constraint notifications_kind_check check (kind in (
        'acknowledgement', 'extension', 'answer', 'deadline_warning', 'deadline_breach',
        'information_request', 'staff_message', 'rating_prompt'));

-- Web Push deliveries become deliveries of any channel; the rows there are push deliveries.
alter table push_deliveries rename to deliveries;
alter sequence push_deliveries_id_seq rename to deliveries_id_seq;
alter index push_deliveries_pkey rename to deliveries_pkey;
alter table deliveries rename column endpoint to target;
alter table deliveries
    add column channel text not null default 'push' check (channel in ('push', 'telegram', 'whatsapp', 'email')),
    add column chat_id uuid references customer_chats (id) on delete set null,
    drop constraint push_deliveries_once,
    add constraint deliveries_once unique (notification_id, channel, target);
alter table deliveries alter column channel drop default;
alter table deliveries rename constraint push_deliveries_notification_id_fkey to deliveries_notification_id_fkey;
alter table deliveries rename constraint push_deliveries_subscription_id_fkey to deliveries_subscription_id_fkey;
-- `cancelled`: no longer worth sending (a rating prompt for an answer already rated).
alter table deliveries
    drop constraint push_deliveries_state_check,
    add constraint deliveries_state_check check (state in ('pending', 'sent', 'gone', 'failed', 'cancelled'));
drop index push_deliveries_due_idx;
create index deliveries_due_idx on deliveries (channel, next_attempt_at) where state = 'pending';
create index notifications_customer_idx on notifications (customer_id) where customer_id is not null;

-- The fan-out. A user hears on their Web Push subscriptions. A customer hears on the
-- subscriptions of their active app users, in the chat the case came from, and in the chats
-- where they asked for news of every case (unless they opted out there).
create function notifications_fan_out() returns trigger
language plpgsql as $$
begin
    insert into deliveries (notification_id, channel, target, subscription_id, next_attempt_at)
    select new.id, 'push', s.endpoint, s.id, coalesce(new.not_before, now())
    from push_subscriptions s
    where s.user_id = new.user_id
    union all
    select new.id, 'push', s.endpoint, s.id, coalesce(new.not_before, now())
    from users u join push_subscriptions s on s.user_id = u.id
    where u.customer_id = new.customer_id and u.active
    on conflict do nothing;
    if new.customer_id is not null then
        insert into deliveries (notification_id, channel, target, chat_id, next_attempt_at)
        select new.id, ch.channel, ch.external_id, ch.id, coalesce(new.not_before, now())
        from customer_chats ch
        where ch.customer_id = new.customer_id
          and (ch.id = (select c.chat_id from cases c where c.id = new.case_id)
               or (ch.follows_all_cases and ch.opted_out_at is null))
        on conflict do nothing;
    end if;
    return null;
end
$$;

create trigger notifications_fan_out
    after insert on notifications
    for each row execute function notifications_fan_out();
