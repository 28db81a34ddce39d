-- Cases that would otherwise wait for ever (Ley 1755 de 2015, art. 17): a customer who does not
-- answer a request for information is reminded, and after one month the case is closed as
-- tacitly withdrawn.
alter table cases
    drop constraint cases_status_check,
    add constraint cases_status_check
    check (status in ('received', 'assigned', 'in_approval', 'approved', 'answered', 'rated',
                      'waiting_customer', 'withdrawn'));

alter table notifications
    drop constraint notifications_kind_check,
    add constraint notifications_kind_check check (kind in (
        'acknowledgement', 'extension', 'answer', 'deadline_warning', 'deadline_breach',
        'information_request', 'staff_message', 'rating_prompt', 'reclassification',
        'information_reminder', 'withdrawn'));

-- The sweep looks for the waiting cases and their latest request.
create index cases_waiting_idx on cases (updated_at) where status = 'waiting_customer';
create index case_events_information_requested_idx on case_events (case_id, id)
    where kind = 'information_requested';
