-- Customer satisfaction surveys (PRO-008 §5.4, PRO-SIG-10): templates with versioned questions,
-- invitations to answer one, the answers (the satisfaction register) and the follow-ups a low score
-- opens.

create table survey_templates (
    code text primary key check (code ~ '^[a-z][a-z0-9_]{1,39}$'),
    -- `post_service`: after a completed visit (PRO-008 §5.4.1); `semestral`: the June and December
    -- campaigns (PRO-SIG-10).
    purpose text not null check (purpose in ('post_service', 'semestral')),
    name_es text not null,
    name_en text not null,
    created_at timestamptz not null default now()
);

-- A template's questions never change once a version has been sent: a change is a new version,
-- so every answer keeps the exact question it answered.
create table survey_template_versions (
    id uuid primary key,
    template_code text not null references survey_templates (code),
    version integer not null check (version > 0),
    created_at timestamptz not null default now(),
    unique (template_code, version)
);

create table survey_questions (
    version_id uuid not null references survey_template_versions (id),
    position smallint not null check (position between 1 and 50),
    -- The form field and the API's name of the question.
    code text not null check (code ~ '^[a-z][a-z0-9_]{1,39}$'),
    -- `scale`: 1 to 5; `yes_no`; `choice`: one of `options`; `text`: free text.
    kind text not null check (kind in ('scale', 'yes_no', 'choice', 'text')),
    label_es text not null,
    label_en text not null,
    -- For `choice`: [{"value": "...", "es": "...", "en": "..."}].
    options jsonb,
    required boolean not null default true,
    primary key (version_id, position),
    unique (version_id, code),
    check ((kind = 'choice') = (options is not null)),
    check (options is null or jsonb_typeof(options) = 'array')
);

-- Semestral campaigns: one invitation per customer chosen, open until `closes_at`.
create table survey_campaigns (
    id uuid primary key,
    version_id uuid not null references survey_template_versions (id),
    name text not null check (length(btrim(name)) between 1 and 200),
    opens_at timestamptz not null default now(),
    closes_at timestamptz not null,
    -- None: every active customer; else a random sample of this size.
    sample_size integer check (sample_size > 0),
    created_by uuid references users (id),
    created_at timestamptz not null default now(),
    check (closes_at > opens_at)
);

create table survey_invitations (
    id uuid primary key,
    customer_id uuid not null references customers (id),
    version_id uuid not null references survey_template_versions (id),
    -- What the survey is about: a visit, or a campaign.
    work_order_id uuid references work_orders (id),
    campaign_id uuid references survey_campaigns (id),
    sent_at timestamptz not null default now(),
    expires_at timestamptz not null,
    answered_at timestamptz,
    -- How the answer was taken: by the customer on the web page, or by staff on the phone or at a
    -- visit (PRO-SIG-10), or through a channel.
    taken_via text check (taken_via in ('web', 'email', 'app', 'chat', 'phone', 'visit')),
    -- The staff member who entered an answer taken by phone or at a visit.
    entered_by uuid references users (id),
    reminded_at timestamptz,
    check ((work_order_id is null) <> (campaign_id is null)),
    check ((answered_at is null) = (taken_via is null)),
    check (expires_at > sent_at),
    -- One survey per visit and per customer in a campaign, however many processes try.
    unique (work_order_id),
    unique (campaign_id, customer_id)
);
-- The scheduler looks for visits completed in the last few days that have no invitation yet.
create index work_orders_completed on work_orders (completed_at) where status = 'completed';

create index survey_invitations_customer on survey_invitations (customer_id);
create index survey_invitations_open on survey_invitations (expires_at) where answered_at is null;

-- The single-use links to an invitation's web page: one per delivery that carries it, made as the
-- delivery leaves; only the SHA-256 of each token is kept. Any of them opens the invitation until
-- it is answered or expires.
create table survey_links (
    token_hash bytea primary key,
    invitation_id uuid not null references survey_invitations (id),
    -- A retried delivery gets a fresh token that replaces the one its failed attempt made.
    delivery_id bigint unique,
    created_at timestamptz not null default now()
);
create index survey_links_invitation on survey_links (invitation_id);

-- The satisfaction register (PRO-008 §5.4.3): one answer per question of the invitation's version.
create table survey_answers (
    invitation_id uuid not null references survey_invitations (id),
    version_id uuid not null,
    position smallint not null,
    score smallint check (score between 1 and 5),
    yes boolean,
    choice text,
    text text check (length(text) <= 2000),
    primary key (invitation_id, position),
    foreign key (version_id, position) references survey_questions (version_id, position),
    check (num_nonnulls(score, yes, choice, text) = 1)
);

-- A low score opens one follow-up for the responsible process (PRO-008 §5.4.2), which staff close
-- with what they did.
create table survey_follow_ups (
    id uuid primary key,
    invitation_id uuid not null unique references survey_invitations (id),
    -- None when the configured default process does not exist: the quality director assigns it.
    process_code text references processes (code),
    lowest_score smallint not null check (lowest_score between 1 and 5),
    opened_at timestamptz not null default now(),
    closed_at timestamptz,
    closed_by uuid references users (id),
    action text check (length(action) <= 4000),
    check ((closed_at is null) = (action is null))
);
create index survey_follow_ups_open on survey_follow_ups (opened_at) where closed_at is null;

create function survey_questions_frozen() returns trigger
language plpgsql as $$
begin
    if exists (select 1 from survey_invitations i
               where i.version_id = coalesce(new.version_id, old.version_id)
                  or i.version_id = old.version_id) then
        raise exception 'the questions of a survey version that has invitations do not change; make a new version'
            using errcode = 'check_violation', constraint = 'survey_questions_frozen';
    end if;
    return coalesce(new, old);
end
$$;
create trigger survey_questions_frozen
    before insert or update or delete on survey_questions
    for each row execute function survey_questions_frozen();

-- The fan-out of 20261205090000_personal_notices, plus the survey notices: they belong to no case
-- and go to the customer's e-mail (PRO-SIG-10 sends surveys by e-mail) and every chat of theirs
-- that has not opted out, as well as their app.
create or replace function notifications_fan_out() returns trigger
language plpgsql as $$
declare
    recipient uuid := coalesce(new.customer_id,
                               (select u.customer_id from users u where u.id = new.user_id));
    personal boolean := new.kind in ('link_code', 'account_setup', 'survey_invitation',
                                     'survey_reminder');
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
               or (new.kind in ('link_code', 'survey_invitation', 'survey_reminder')
                   and ch.opted_out_at is null))
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

-- The two templates the procedures describe, in Spanish and English.
insert into survey_templates (code, purpose, name_es, name_en) values
    ('post_service', 'post_service', 'Encuesta de satisfacción post-servicio', 'Post-service satisfaction survey'),
    ('semestral', 'semestral', 'Encuesta semestral de satisfacción del cliente', 'Half-yearly customer satisfaction survey');
insert into survey_template_versions (id, template_code, version) values
    ('5e1f0000-0000-4000-8000-000000000001', 'post_service', 1),
    ('5e1f0000-0000-4000-8000-000000000002', 'semestral', 1);
insert into survey_questions (version_id, position, code, kind, label_es, label_en, options, required) values
    ('5e1f0000-0000-4000-8000-000000000001', 1, 'service_quality', 'scale',
     '¿Cómo califica la calidad del servicio prestado?', 'How do you rate the quality of the service?', null, true),
    ('5e1f0000-0000-4000-8000-000000000001', 2, 'punctuality', 'scale',
     '¿Cómo califica la puntualidad de la visita?', 'How do you rate the punctuality of the visit?', null, true),
    ('5e1f0000-0000-4000-8000-000000000001', 3, 'technician_attention', 'scale',
     '¿Cómo califica la atención del técnico?', 'How do you rate the technician''s attention?', null, true),
    ('5e1f0000-0000-4000-8000-000000000001', 4, 'would_recommend', 'yes_no',
     '¿Recomendaría nuestros servicios?', 'Would you recommend our services?', null, true),
    ('5e1f0000-0000-4000-8000-000000000001', 5, 'comments', 'text',
     'Comentarios o sugerencias', 'Comments or suggestions', null, false),
    ('5e1f0000-0000-4000-8000-000000000002', 1, 'service_quality', 'scale',
     '¿Cómo califica la calidad de nuestros servicios en este semestre?', 'How do you rate the quality of our services this half-year?', null, true),
    ('5e1f0000-0000-4000-8000-000000000002', 2, 'punctuality', 'scale',
     '¿Cómo califica la puntualidad de nuestras visitas?', 'How do you rate the punctuality of our visits?', null, true),
    ('5e1f0000-0000-4000-8000-000000000002', 3, 'technician_attention', 'scale',
     '¿Cómo califica la atención de nuestros técnicos?', 'How do you rate the attention of our technicians?', null, true),
    ('5e1f0000-0000-4000-8000-000000000002', 4, 'expectations', 'choice',
     '¿El servicio cumplió sus expectativas?', 'Did the service meet your expectations?',
     '[{"value": "exceeded", "es": "Las superó", "en": "It exceeded them"},
       {"value": "met", "es": "Las cumplió", "en": "It met them"},
       {"value": "partly", "es": "Las cumplió en parte", "en": "It partly met them"},
       {"value": "not_met", "es": "No las cumplió", "en": "It did not meet them"}]', true),
    ('5e1f0000-0000-4000-8000-000000000002', 5, 'would_recommend', 'yes_no',
     '¿Recomendaría nuestros servicios?', 'Would you recommend our services?', null, true),
    ('5e1f0000-0000-4000-8000-000000000002', 6, 'comments', 'text',
     'Comentarios o sugerencias', 'Comments or suggestions', null, false);
