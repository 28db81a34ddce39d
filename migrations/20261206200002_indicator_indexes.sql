-- The monthly indicators read cases by the month they were received and ratings by the month they
-- were given.
create index cases_received_idx on cases (received_at);
create index cases_rated_idx on cases (rated_at) where rating_score is not null;
