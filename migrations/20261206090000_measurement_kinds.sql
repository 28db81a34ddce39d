-- The notices of the measurement cycle (PRO-008 §5.4, §5.5; PRO-SIG-10):
-- - `survey_invitation`: a customer is asked to answer a satisfaction survey (after a service, or
--   in a semestral campaign);
-- - `survey_reminder`: the one reminder of an invitation still unanswered;
-- - `contract_renewal`: the commercial process is told a contract ends soon and renewal is due;
-- - `follow_up_opened`: a low score opened a follow-up task for the responsible process.
alter table notifications
    drop constraint notifications_kind_check,
    add constraint notifications_kind_check check (kind in (
        'acknowledgement', 'extension', 'answer', 'deadline_warning', 'deadline_breach',
        'information_request', 'staff_message', 'rating_prompt', 'reclassification',
        'information_reminder', 'withdrawn', 'link_code', 'account_setup', 'attachments_refused',
        'survey_invitation', 'survey_reminder', 'contract_renewal', 'follow_up_opened'));
