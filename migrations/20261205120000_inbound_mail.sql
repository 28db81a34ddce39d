-- The service mailbox read over IMAP: every message is stored as it arrived before anything is
-- done with it, processed once by its key across restarts and server processes, and only then
-- marked seen in the mailbox.

-- Someone who writes to the mailbox from an address no customer has is an unverified contact
-- known by that address only: no document until staff merge them into a customer. A verified
-- customer always has a document.
alter table customers
    alter column document_type drop not null,
    alter column document_number drop not null,
    add constraint customers_document_whole
        check ((document_type is null) = (document_number is null)),
    add constraint customers_verified_have_document
        check (document_number is not null or not verified);

create table inbound_mail (
    id bigint generated always as identity primary key,
    -- The `Message-ID` (without angle brackets) or, for a message without one, `sha256:` and the
    -- digest of its bytes: the same message fetched twice, under any UID, is one row.
    message_key text not null constraint inbound_mail_key unique,
    -- Where it was read: `user@host/folder`, the folder's UIDVALIDITY and the message's UID.
    mailbox text not null,
    uid_validity bigint not null,
    uid bigint not null,
    -- The whole message as the server gave it; for a message over the size limit, its header.
    raw bytea not null,
    size bigint not null check (size >= 0),
    body_skipped boolean not null default false,
    -- When the mailbox received it (IMAP INTERNALDATE): the legal term runs from then.
    arrived_at timestamptz,
    -- The id a case filed from it gets, so that a retry after a crash files the same case.
    filing_id uuid not null default gen_random_uuid(),
    state text not null default 'pending'
        check (state in ('pending', 'filed', 'replied', 'ignored', 'failed')),
    -- Why it was ignored or failed, for staff.
    reason text,
    attempts integer not null default 0,
    -- A process working on it holds it until then; a crashed process's lease lapses.
    locked_until timestamptz,
    customer_id uuid references customers (id),
    case_id uuid references cases (id),
    case_message_id uuid references case_messages (id),
    stored_at timestamptz not null default now(),
    processed_at timestamptz
);
create index inbound_mail_pending_idx on inbound_mail (id) where state = 'pending';
create index inbound_mail_case_idx on inbound_mail (case_id) where case_id is not null;

-- The highest UID stored per folder and UIDVALIDITY: what arrived after it is fetched even if a
-- person reading the mailbox marked it seen first.
create table imap_cursors (
    mailbox text not null,
    uid_validity bigint not null,
    last_uid bigint not null,
    primary key (mailbox, uid_validity)
);

-- A message that came with attachments Atiende does not accept: the customer is told which
-- types are accepted.
alter table notifications
    drop constraint notifications_kind_check,
    add constraint notifications_kind_check check (kind in (
        'acknowledgement', 'extension', 'answer', 'deadline_warning', 'deadline_breach',
        'information_request', 'staff_message', 'rating_prompt', 'reclassification',
        'information_reminder', 'withdrawn', 'link_code', 'account_setup',
        'attachments_refused'));
