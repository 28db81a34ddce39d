-- Semestral survey campaigns (PRO-SIG-10: June and December) and the version of each template
-- that new invitations use.

-- Staff choose a template's current version; it must be a version of that template.
alter table survey_template_versions
    add constraint survey_template_versions_template_id_key unique (template_code, id);
alter table survey_templates
    add column current_version_id uuid,
    add constraint survey_templates_current_version_fkey
        foreign key (code, current_version_id)
        references survey_template_versions (template_code, id);
update survey_templates t
set current_version_id = (select v.id from survey_template_versions v
                          where v.template_code = t.code
                          order by v.version desc limit 1);

alter table survey_campaigns
    -- The month the scheduler opened the campaign for (its first day): once per month, however
    -- many processes or restarts try. Null for a campaign staff created.
    add column scheduled_for date
        constraint survey_campaigns_scheduled_for_key unique
        check (extract(day from scheduled_for) = 1),
    -- When the customers were drawn (at the opening), and how many active customers there were.
    add column drawn_at timestamptz,
    add column population integer check (population >= 0),
    -- When it closed: at `closes_at` by the scheduler, or earlier by staff (`closed_by`). Its
    -- unanswered invitations expire then.
    add column closed_at timestamptz,
    add column closed_by uuid references users (id),
    add check (closed_by is null or closed_at is not null);

-- The scheduler looks for campaigns to draw and to close, and campaign invitations to remind.
create index survey_campaigns_pending on survey_campaigns (opens_at) where drawn_at is null;
create index survey_campaigns_open on survey_campaigns (closes_at) where closed_at is null;
create index survey_invitations_campaign on survey_invitations (campaign_id);
create index survey_invitations_to_remind on survey_invitations (sent_at)
    where campaign_id is not null and reminded_at is null and answered_at is null;
