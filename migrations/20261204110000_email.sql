-- E-mail joins the outbox's channels. What a customer must hear about a case leaves by e-mail too
-- when the case came by e-mail or the web form (the door it came by is the one they use), when
-- staff took it by phone, at the front desk or by letter (the address on file is the only written
-- door such a customer has), or when the customer chose e-mail for everything.

-- The customer asked to hear of every case by e-mail as well.
alter table customers add column email_notifications boolean not null default false;

-- The language a customer reads where no app user or chat says it (the web form, the mailbox).
-- Unknown until a door records it: e-mails then use the app user's language, else Spanish.
alter table customers add column language text check (language in ('es', 'en'));

-- The fan-out of 20261202102000_outbox_channels, unchanged for push and chats, plus one `email`
-- delivery to the customer's address. Staff alerts stay push only.
create or replace function notifications_fan_out() returns trigger
language plpgsql as $$
declare
    recipient uuid := coalesce(new.customer_id,
                               (select u.customer_id from users u where u.id = new.user_id));
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
    if recipient is not null then
        insert into deliveries (notification_id, channel, target, next_attempt_at)
        select new.id, 'email', lower(btrim(cu.email)), coalesce(new.not_before, now())
        from customers cu
        where cu.id = recipient
          and btrim(cu.email) like '_%@_%'
          and (cu.email_notifications
               or exists (select 1 from cases c
                          where c.id = new.case_id
                            and c.channel in ('email', 'web', 'phone', 'in_person', 'letter')))
        on conflict do nothing;
    end if;
    return null;
end
$$;
