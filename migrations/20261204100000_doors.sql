-- The other doors of PRO-SIG-10: a case taken by staff from a caller (the phone, the front desk, a
-- letter) and the habeas-data requests of Ley 1581 de 2012, which have terms of their own.

-- `in_person` and `letter` join the channels a case may come by; `phone` was there already.
alter table cases
    drop constraint cases_channel_check,
    add constraint cases_channel_check check (channel in (
        'app', 'telegram', 'whatsapp', 'web', 'phone', 'email', 'in_person', 'letter'));

-- Ley 1581 de 2012: a consultation of one's data is answered in 10 business days (art. 14); a claim
-- to correct, update or delete it, or to withdraw consent, in 15 (art. 15).
alter table cases
    drop constraint cases_type_check,
    add constraint cases_type_check check (type in (
        'peticion', 'queja', 'reclamo', 'sugerencia', 'denuncia', 'solicitud_informacion', 'consulta',
        'datos_consulta', 'datos_reclamo'));
insert into legal_terms (case_type, business_days) values ('datos_consulta', 10), ('datos_reclamo', 15);

-- The instant the company actually received the request. The legal term and the clocks run from
-- it; for a case staff register after taking it by phone or on paper it is earlier than
-- `created_at`, the instant it was registered.
alter table cases add column received_at timestamptz;
update cases set received_at = created_at;
alter table cases
    alter column received_at set not null,
    alter column received_at set default now(),
    add constraint cases_received_not_after_registered check (received_at <= created_at);

-- Staff look customers up by document, name, phone or e-mail.
create index customers_email_idx on customers (lower(email)) where email is not null;
create index customers_document_number_idx on customers (document_number);

-- A case's own page for someone without the app (the web form, the mailbox) is reached by a
-- secret link. The link is written in every e-mail about the case, so the token itself is kept,
-- not a digest: it guards one case, which the same database holds anyway.
create table case_links (
    case_id uuid primary key references cases (id),
    token text not null check (length(token) between 32 and 128),
    created_at timestamptz not null default now(),
    constraint case_links_token_key unique (token)
);
