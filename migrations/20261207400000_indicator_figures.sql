-- What the indicators read of each case's operational clocks, kept on the case by the code that
-- writes its clock events (in the same transaction), so that a month's first-response and
-- resolution times and SLA compliance are read from the cases instead of derived again from every
-- clock event: business seconds once the clock stopped, and whether it met its target once that is
-- settled (stopped, or breached, which is final). A case never measured (clocks_measured_at null)
-- is derived from its events.
alter table cases
    add column first_response_secs bigint check (first_response_secs >= 0),
    add column first_response_met boolean,
    add column resolution_secs bigint check (resolution_secs >= 0),
    add column resolution_met boolean,
    add column clocks_measured_at timestamptz;

-- The cases filed before the figures were kept, measured in batches by the scheduler.
create table clock_measure_queue (
    case_id uuid primary key references cases (id)
);
insert into clock_measure_queue (case_id) select id from cases;

-- Surveys by the month they were answered and sent, and the scores of each answered survey read
-- from the index alone; ratings too.
create index survey_invitations_answered_idx on survey_invitations (answered_at)
    where answered_at is not null;
create index survey_invitations_sent_idx on survey_invitations (sent_at);
create index survey_answers_scores_idx on survey_answers (invitation_id) include (score)
    where score is not null;
drop index cases_rated_idx;
create index cases_rated_idx on cases (rated_at) include (rating_score, process_code, channel)
    where rating_score is not null;
