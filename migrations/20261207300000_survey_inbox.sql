-- Survey invitations in the customer's inbox document: an invitation whose state changed (sent,
-- answered) since it was last written there, worked the same way as the case inbox queue.
create table sync_survey_queue (
    invitation_id uuid primary key references survey_invitations (id),
    queued_at timestamptz not null default clock_timestamp(),
    since timestamptz not null default clock_timestamp(),
    leased_until timestamptz
);

create function survey_invitations_queue_inbox() returns trigger language plpgsql as $$
begin
    insert into sync_survey_queue (invitation_id) values (new.id)
    on conflict (invitation_id) do update set queued_at = clock_timestamp(), leased_until = null;
    return null;
end $$;
create trigger survey_invitations_inbox after insert or update of answered_at on survey_invitations
    for each row execute function survey_invitations_queue_inbox();
