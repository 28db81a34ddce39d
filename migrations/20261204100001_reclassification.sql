-- The customer is told when the quality director changes a case's type and its legal due date
-- moves with it.
alter table notifications
    drop constraint notifications_kind_check,
    add constraint notifications_kind_check check (kind in (
        'acknowledgement', 'extension', 'answer', 'deadline_warning', 'deadline_breach',
        'information_request', 'staff_message', 'rating_prompt', 'reclassification'));
