-- Notices that belong to a person rather than to a case, and go to the contact on file whatever
-- door a case came by:
-- - `link_code`: the one-time code that lets someone who filed on the web form link that filing
--   to the customer record their document number belongs to. It goes to the customer's address,
--   their app users and their chats, since reading it is the proof that the filer is that customer.
-- - `account_setup`: the single-use link with which a customer the company created an app user for
--   sets the first password (PRO-SIG-10: the company assigns each customer a user).
alter table notifications
    drop constraint notifications_kind_check,
    add constraint notifications_kind_check check (kind in (
        'acknowledgement', 'extension', 'answer', 'deadline_warning', 'deadline_breach',
        'information_request', 'staff_message', 'rating_prompt', 'reclassification',
        'information_reminder', 'withdrawn', 'link_code', 'account_setup'));

-- The fan-out of 20261204110000_email, plus the personal notices: e-mail to the customer's address
-- and, for a link code, every chat of theirs that has not opted out.
create or replace function notifications_fan_out() returns trigger
language plpgsql as $$
declare
    recipient uuid := coalesce(new.customer_id,
                               (select u.customer_id from users u where u.id = new.user_id));
    personal boolean := new.kind in ('link_code', 'account_setup');
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
               or (ch.follows_all_cases and ch.opted_out_at is null)
               or (new.kind = 'link_code' and ch.opted_out_at is null))
        on conflict do nothing;
    end if;
    if recipient is not null then
        insert into deliveries (notification_id, channel, target, next_attempt_at)
        select new.id, 'email', lower(btrim(cu.email)), coalesce(new.not_before, now())
        from customers cu
        where cu.id = recipient
          and btrim(cu.email) like '_%@_%'
          and (personal
               or cu.email_notifications
               or exists (select 1 from cases c
                          where c.id = new.case_id
                            and c.channel in ('email', 'web', 'phone', 'in_person', 'letter')))
        on conflict do nothing;
    end if;
    return null;
end
$$;
